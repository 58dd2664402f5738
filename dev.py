#!/usr/bin/env python3
"""Set up and run portlane from a clean clone with nothing but Python 3.11+.

    python3 dev.py demo [DEMO OPTIONS]   # create .venv, install, run `portlane demo`
    python3 dev.py test [PYTEST OPTIONS] # create .venv, install, run the whole test suite (2 workers)
    python3 dev.py portlane ARGS...      # any other portlane command in the venv

The virtual environment lives in ``.venv`` and is reinstalled only when ``pyproject.toml``
(or this file) changes. No root, no network beyond the Python package index.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".portlane-installed"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
#: ``dev.py test``: pytest-xdist's two workers, grouped (tests/conftest.py)
XDIST = ("-n", "2", "--dist", "loadgroup")

#: Packages installed without their declared dependencies (none: the OCR weights ship inside
#: portlane itself, so nothing that declares the Qt build of OpenCV is installed any more).
NO_DEPS: tuple[str, ...] = ()


def _fingerprint() -> str:
    h = hashlib.sha256()
    for name in ("pyproject.toml", "dev.py"):
        h.update((ROOT / name).read_bytes())
    h.update(sys.version.encode())
    return h.hexdigest()


def ensure_env() -> None:
    # ruff's target (py311) is the package's; dev.py itself runs on whatever python3 is on PATH
    if sys.version_info < (3, 11):  # noqa: UP036
        sys.exit(f"portlane needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    fp = _fingerprint()
    if STAMP.exists() and STAMP.read_text() == fp and PY.exists():
        return
    if not PY.exists():
        print("dev.py: creating .venv", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    print("dev.py: installing portlane and its dependencies into .venv (first run takes a minute)", file=sys.stderr)
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
    if NO_DEPS:
        subprocess.run([*pip, "--no-deps", *NO_DEPS], check=True)
    STAMP.write_text(fp)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    ensure_env()
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if cmd == "demo":
        args = [str(BIN / "portlane"), "demo", *rest]
    elif cmd == "test":
        # two workers, the end-to-end tests one after another on one of them (tests/conftest.py);
        # `dev.py test -n 0` runs everything in one process
        workers = () if any(a.startswith("-n") or a == "no:xdist" for a in rest) else XDIST
        args = [str(PY), "-m", "pytest", *workers, *rest]
    elif cmd == "portlane":
        args = [str(BIN / "portlane"), *rest]
    else:
        print(f"dev.py: unknown command {cmd!r} (demo, test, portlane)", file=sys.stderr)
        return 2
    return run(args, env)


def run(args: list[str], env: dict[str, str]) -> int:
    """Run the command and exit with its code. ^C reaches the child too (one process group): it
    stops cleanly and says so; dev.py only waits for it, without a traceback of its own. A
    SIGTERM sent to dev.py is passed on to the child, which stops the same way."""
    import signal

    child = subprocess.Popen(args, cwd=ROOT, env=env)
    signal.signal(signal.SIGTERM, lambda signum, _frame: child.send_signal(signum))
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            continue  # the child got the same ^C; its exit code (130) is ours


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
