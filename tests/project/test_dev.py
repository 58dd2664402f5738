"""``python3 dev.py …`` on ^C: the command it runs stops (same process group, as a terminal
sends it), and dev.py waits for it and exits with its code — no KeyboardInterrupt traceback
of its own (issue 24)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not (ROOT / ".venv" / ".portlane-installed").exists(), reason="dev.py has not set up .venv here")
def test_ctrl_c_through_dev_py_is_no_traceback() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "dev.py"), "portlane", "sim", "io", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline() or "null")  # the simulator runs
        assert ready is not None and ready["device"] == "io"
        os.killpg(proc.pid, signal.SIGINT)  # ^C: the whole foreground group
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert proc.returncode == 0  # `portlane sim` stopped by the user: 0, and dev.py says the same
