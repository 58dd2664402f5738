"""SIGINT and SIGTERM stop each daemon, started by hand against simulators, cleanly: exit 130 or
143, no traceback, and a last log line that says why it stopped (issue 24: a daemon started by
hand simply ended; SIGTERM was exit 0 and ^C a KeyboardInterrupt). The demo's own signal tests
are in test_demo.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

#: Starting a daemon (imports, site file, devices, broker) on a busy 2-core machine.
READY_S = 60.0


@pytest.fixture(scope="module")
def simulated_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``portlane sim site`` in the background: one lane and the scanner, an embedded broker."""
    work = tmp_path_factory.mktemp("sim")
    argv = ["sim", "site", "--out", str(work / "site.yaml"), "--lanes", "1", "--detach", "--json"]
    res = subprocess.run(
        [sys.executable, "-m", "portlane.edge", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    pid = json.loads(res.stdout)["pid"]
    try:
        yield work / "site.yaml"
    finally:
        os.kill(pid, signal.SIGTERM)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("kind", ["lane", "scanner"])
def test_a_signal_stops_a_daemon_with_one_line(
    simulated_site: Path, tmp_path: Path, kind: str, sig: signal.Signals, code: int
) -> None:
    unit = ["--lane", "c1"] if kind == "lane" else ["--scanner", "xray-1"]
    run_dir = tmp_path / "run"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(READY_S)
    env = {k: v for k, v in os.environ.items() if k != "PORTLANE_CONTROL"}
    env |= {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "PORTLANE_RUN_DIR": str(run_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "portlane.edge", "daemon", kind, "--site", str(simulated_site), *unit],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        messages: list[str] = []
        while not any("READY=1" in m for m in messages):  # ready as systemd sees it
            messages.append(notify.recv(4096).decode())
        # Started by hand, it listens where the CLI looks (was /run/portlane/control.sock).
        assert (run_dir / f"{'lane-c1' if kind == 'lane' else 'scanner-xray-1'}.sock").is_socket()
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        notify.close()
    assert proc.returncode == code, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    last = err.strip().splitlines()[-1]
    assert f"stopped by {sig.name} (exit {code})" in last, last
