"""systemd/: the unit files parse, carry notify/watchdog and hardening, and verify."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from unit_files import BINARY, SERVICES, SYSTEMD, one, parse_unit, values


@pytest.mark.parametrize("name", SERVICES)
def test_service_notify_watchdog_restart(name: str) -> None:
    u = parse_unit(SYSTEMD / name)
    s = "Service"
    assert one(u, s, "Type") == "notify"
    assert one(u, s, "NotifyAccess") == "main"
    assert 5 <= int(one(u, s, "WatchdogSec")) <= 60
    assert one(u, s, "Restart") == "on-failure"
    # EX_CONFIG (78): a broken file is reported in one line and not restarted in a loop.
    assert one(u, s, "RestartPreventExitStatus") == "78"
    assert int(one(u, "Unit", "StartLimitBurst")) >= 3
    assert int(one(u, "Unit", "StartLimitIntervalSec")) >= 60
    assert int(one(u, s, "TimeoutStopSec")) >= 10
    assert one(u, s, "ExecStart").startswith(f"{BINARY} daemon ")
    if "recognition" not in name:  # `systemctl reload`: SIGHUP, taken in place where it can be
        assert one(u, s, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(u, "Unit", "PartOf") == "portlane.target"
    assert one(u, "Install", "WantedBy") == "portlane.target"
    sock = [v for v in values(u, s, "Environment") if v.startswith("PORTLANE_CONTROL=")]
    assert len(sock) == 1 and sock[0].startswith("PORTLANE_CONTROL=/run/portlane/") and sock[0].endswith(".sock")


@pytest.mark.parametrize("name", SERVICES)
def test_service_hardening(name: str) -> None:
    u = parse_unit(SYSTEMD / name)
    s = "Service"
    expected = {
        "User": "portlane",
        "Group": "portlane",
        "ProtectSystem": "strict",
        "StateDirectory": "portlane",
        "RuntimeDirectory": "portlane",
        "RuntimeDirectoryPreserve": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "ProtectKernelModules": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "SystemCallArchitectures": "native",
        "RuntimeDirectoryMode": "0750",
        "UMask": "0007",
    }
    for key, value in expected.items():
        assert one(u, s, key) == value, key
    assert "@system-service" in values(u, s, "SystemCallFilter")
    # nothing may run as root or gain privileges back
    assert not values(u, s, "PermissionsStartOnly") and not any(v.startswith("+") for v in values(u, s, "ExecStart"))


def test_serial_access_only_where_needed() -> None:
    lane = parse_unit(SYSTEMD / "portlane-lane@.service")
    assert one(lane, "Service", "SupplementaryGroups") == "dialout"
    assert one(lane, "Service", "DevicePolicy") == "closed"
    assert {"char-ttyUSB rw", "char-ttyS rw"} <= set(values(lane, "Service", "DeviceAllow"))
    rec = parse_unit(SYSTEMD / "portlane-recognition.service")
    assert one(rec, "Service", "PrivateDevices") == "yes" and not values(rec, "Service", "SupplementaryGroups")


def test_lane_unit_runs_the_lane_named_by_the_instance() -> None:
    u = parse_unit(SYSTEMD / "portlane-lane@.service")
    assert one(u, "Service", "ExecStart") == f"{BINARY} daemon lane --site /etc/portlane/site.yaml --lane %i"
    assert "PORTLANE_CONTROL=/run/portlane/lane-%i.sock" in values(u, "Service", "Environment")
    s = parse_unit(SYSTEMD / "portlane-scanner@.service")
    assert one(s, "Service", "ExecStart").endswith("daemon scanner --site /etc/portlane/site.yaml --scanner %i")


def test_target_sysusers_and_udev() -> None:
    t = parse_unit(SYSTEMD / "portlane.target")
    assert one(t, "Install", "WantedBy") == "multi-user.target"
    sysusers = [
        line.split()
        for line in (SYSTEMD / "sysusers.d" / "portlane.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert sysusers[0][:2] == ["u", "portlane"] and ["m", "portlane", "dialout"] in sysusers
    rules = [
        line
        for line in (SYSTEMD / "99-portlane-serial.rules").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules and all("==" in r for r in rules)
    assert all('SYMLINK+="portlane/' in r for r in rules if 'SUBSYSTEM=="tty"' in r)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart is executable; the real binary lives in the install's venv.
    for f in [*SERVICES, "portlane.target"]:
        text = (SYSTEMD / f).read_text(encoding="utf-8").replace(BINARY, "/bin/true")
        (tmp_path / f).write_text(text, encoding="utf-8")
    units = [
        tmp_path / "portlane-lane@c1.service",
        tmp_path / "portlane-scanner@xray-1.service",
        tmp_path / "portlane-recognition.service",
        tmp_path / "portlane.target",
    ]
    res = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, units)], capture_output=True, text=True, timeout=60
    )
    # Unknown keys and bad values are only warnings (exit 0): any output at all is a failure.
    assert res.returncode == 0 and res.stderr.strip() == "" and res.stdout.strip() == "", res.stderr
