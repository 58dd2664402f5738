"""The small shared library of ``bench/``: machine description, results on disk, tables.

Every scenario (``bench/<name>.py``) exposes ``async def main(**options) -> dict`` and a
``__main__`` that prints the same dict as JSON; ``python bench/run.py NAME [OPTIONS]`` runs
one and also writes ``bench/results/NAME.json`` (with the command line and the machine), so
that docs/benchmarks.md can quote each figure with the command and machine that produced it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["RESULTS", "cpu_hogs", "machine", "markdown_table", "write_result"]

RESULTS = Path(__file__).resolve().parent / "results"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mosquitto_version() -> str | None:
    exe = shutil.which("mosquitto")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-h"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = out.splitlines()[0] if out else ""
    return first.removeprefix("mosquitto version ").strip() or None


def machine() -> dict[str, Any]:
    """What the figures were measured on, including how busy the machine was."""
    load = os.getloadavg()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "mosquitto": _mosquitto_version(),
        "loadavg_1m": round(load[0], 2),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def write_result(name: str, result: dict[str, Any], *, argv: Sequence[str] | None = None) -> Path:
    """Write ``bench/results/NAME.json``: the result, the command and the machine."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    doc = {"command": " ".join(["python", *(argv if argv is not None else sys.argv)]), **result}
    doc.setdefault("machine", machine())
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub table of ``rows`` (thousands separated)."""

    def fmt(v: Any) -> str:
        if isinstance(v, bool) or v is None:
            return str(v)
        if isinstance(v, int):
            return f"{v:,}"
        if isinstance(v, float):
            return f"{v:,.2f}"
        return str(v)

    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(out)


@contextlib.asynccontextmanager
async def cpu_hogs(n: int) -> AsyncIterator[None]:
    """``n`` busy processes for the duration (CPU starvation: three on a 2-core machine is
    what wedged the demo in issue 11)."""
    hogs = [await asyncio.create_subprocess_exec(sys.executable, "-c", "while True: pass") for _ in range(n)]
    try:
        yield
    finally:
        for h in hogs:
            h.kill()
            await h.wait()
