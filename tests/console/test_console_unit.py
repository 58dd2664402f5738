"""systemd/portlane-console.service: hardened like the other units, and it runs the console."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from unit_files import BINARY, SYSTEMD, one, parse_unit, values

UNIT = SYSTEMD / "portlane-console.service"


def test_console_unit_is_notify_watchdog_and_restarts() -> None:
    u = parse_unit(UNIT)
    s = "Service"
    assert one(u, s, "Type") == "notify" and one(u, s, "NotifyAccess") == "main"
    assert 5 <= int(one(u, s, "WatchdogSec")) <= 60
    assert one(u, s, "Restart") == "on-failure"
    assert int(one(u, "Unit", "StartLimitBurst")) >= 3 and int(one(u, "Unit", "StartLimitIntervalSec")) >= 60
    assert int(one(u, s, "TimeoutStopSec")) >= 10
    assert one(u, s, "ExecStart") == (
        f"{BINARY} console serve --site /etc/portlane/site.yaml --config /etc/portlane/console.yaml"
    )
    assert one(u, "Unit", "PartOf") == "portlane.target" and one(u, "Install", "WantedBy") == "portlane.target"


def test_console_unit_hardening() -> None:
    u = parse_unit(UNIT)
    s = "Service"
    expected = {
        "User": "portlane",
        "Group": "portlane",
        "ProtectSystem": "strict",
        "StateDirectory": "portlane",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",  # no serial ports: it only talks to the broker and browsers
        "ProtectHome": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "ProtectKernelModules": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "SystemCallArchitectures": "native",
        "UMask": "0007",
    }
    for key, value in expected.items():
        assert one(u, s, key) == value, key
    assert "@system-service" in values(u, s, "SystemCallFilter")
    assert not values(u, s, "SupplementaryGroups") and not values(u, s, "ReadWritePaths")
    assert not any(v.startswith("+") for v in values(u, s, "ExecStart"))


def test_console_unit_loads_the_credentials_of_its_clients_entry() -> None:
    import re

    from portlane.edge.config import load_site

    site = load_site(SYSTEMD.parent / "firmware_config" / "sites" / "zhuhai-hzmb-cargo.yaml")
    assert any(c.id == "console" and c.role == "console" for c in site.clients)
    assert site.broker.tls is not None
    creds = dict(re.findall(r"(?m)^LoadCredential=([^:\s]+):(\S+)$", UNIT.read_text()))
    names = {site.broker.tls.ca_file, site.broker.tls.cert_file, site.broker.tls.key_file, "signing.key"}
    assert set(creds) == names
    assert all(path == f"/etc/portlane/pki/units/console/{name}" for name, path in creds.items())


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_console_unit_verifies(tmp_path: Path) -> None:
    for f in ("portlane-console.service", "portlane.target"):
        (tmp_path / f).write_text((SYSTEMD / f).read_text(encoding="utf-8").replace(BINARY, "/bin/true"))
    res = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / "portlane-console.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0 and res.stderr.strip() == "" and res.stdout.strip() == "", res.stderr


def test_console_sits_on_top_and_the_lane_controller_does_not_need_its_web_server() -> None:
    """Nothing below the console imports it (only the CLI and the demo start it), and the CLI
    and the lane daemon start without aiohttp (the ``console`` extra)."""
    import sys

    from source_imports import ROOT, imports

    bad = []
    for path in (ROOT / "edge").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(("edge/console/", "edge/cli/", "edge/demo/")):
            continue
        bad += [f"{rel} imports {n}" for n in imports(path) if n.startswith("portlane.edge.console")]
    for path in (ROOT / "edge" / "console").rglob("*.py"):
        names = imports(path)
        bad += [
            f"{path.name} imports {n}" for n in names if n.startswith(("portlane.sim_devices", "portlane.edge.demo"))
        ]
        if path.name not in ("web.py", "service.py"):
            bad += [f"{path.name} imports aiohttp" for n in names if n.split(".")[0] == "aiohttp"]
    assert not bad, "\n".join(bad)
    code = (
        "import sys\n"
        "import portlane.edge.cli as cli, portlane.edge.lane.daemon, portlane.edge.console.service\n"
        "cli.build_parser()\n"
        "assert 'aiohttp' not in sys.modules, 'aiohttp imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
