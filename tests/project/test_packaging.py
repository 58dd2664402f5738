"""A lane controller installs without the recognition, demo and console stacks.

The core dependencies are what the lane daemon, the scanner daemon and the technician's CLI
need; cv2/numpy/onnxruntime (extra ``ocr``), amqtt/aiomqtt/Pillow (extra ``demo``) and aiohttp
(extra ``console``) are not. These tests run the real daemons as systemd would — in a child
process, ``READY=1`` on ``NOTIFY_SOCKET``, SIGTERM to stop — with those libraries made
unimportable, against a real broker and virtual devices.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from portlane.edge.demo.broker import BrokerProcess

from tests.virtual_lane import site_dict

ROOT = Path(__file__).resolve().parents[2]
EXTRAS_ONLY = ("cv2", "numpy", "onnxruntime", "pyclipper", "amqtt", "aiomqtt", "PIL", "aiohttp")

BLOCKER = f"""
import importlib.abc, sys
class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRAS_ONLY!r}:
            raise ImportError(f"{{name}} is not installed on a lane controller", name=name)
        return None
sys.meta_path.insert(0, _Blocked())
"""


def test_the_core_dependencies_exclude_the_extras() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    for name in ("opencv", "onnxruntime", "numpy", "amqtt", "aiomqtt", "aiohttp", "pillow"):
        assert name not in core, f"{name} is a dependency of every lane controller"
    assert {"ocr", "demo", "console", "dev"} <= set(project["optional-dependencies"])


def test_cli_starts_and_lists_its_commands_without_the_extras() -> None:
    code = BLOCKER + "from portlane.edge.cli import main\nraise SystemExit(main(['--help']))\n"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "demo" in res.stdout and "daemon" in res.stdout


@pytest.mark.parametrize("kind", ["lane", "scanner"])
def test_a_daemon_runs_under_systemd_without_the_extras(kind: str, broker: BrokerProcess, tmp_path: Path) -> None:
    raw = site_dict(("c1",), url=broker.url)
    raw["state_dir"] = str(tmp_path / "state")
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(raw, allow_unicode=True))
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_path = tmp_path / "notify.sock"
    notify.bind(str(notify_path))
    notify.settimeout(30)
    unit = ["--lane", "c1"] if kind == "lane" else ["--scanner", "xray-1"]
    code = BLOCKER + "from portlane.edge.cli import main\nraise SystemExit(main(sys.argv[1:]))\n"
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "PORTLANE_CONTROL": str(tmp_path / "ctl.sock")}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "daemon", kind, "--site", str(site), *unit],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        messages: list[str] = []
        while not any("READY=1" in m for m in messages):
            messages.append(notify.recv(4096).decode())
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        # a clean stop by SIGTERM: 143, which the unit files list in SuccessExitStatus=
        assert proc.returncode == 143, err[-2000:]
        assert "stopped by SIGTERM (exit 143)" in err.splitlines()[-1]
        assert not [m for m in EXTRAS_ONLY if f"No module named '{m}'" in err]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()


def test_a_daemon_with_a_broken_site_file_says_so_in_one_line(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("site: {id: x, name: y}\nlanes: [\n")  # truncated YAML
    res = subprocess.run(
        [sys.executable, "-m", "portlane.edge", "daemon", "lane", "--site", str(site), "--lane", "c1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode in (2, 78)  # usage error (the CLI) or EX_CONFIG (the daemon)
    assert "Traceback" not in res.stderr and str(site) in res.stderr
    assert len([line for line in res.stderr.splitlines() if line.strip()]) <= 3


def test_a_daemon_with_a_corrupt_state_file_says_so_in_one_line_and_exits_78(tmp_path: Path) -> None:
    raw = site_dict(("c1",), url="mqtt://127.0.0.1:1")
    raw["state_dir"] = str(tmp_path / "state")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "nonces-c1.db").write_bytes(b"this is not a database" * 100)
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(raw, allow_unicode=True))
    res = subprocess.run(
        [sys.executable, "-m", "portlane.edge", "daemon", "lane", "--site", str(site), "--lane", "c1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 78, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "nonces-c1.db" in res.stderr
