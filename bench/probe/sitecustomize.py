"""Bench-only probe, loaded by the daemons a scale scenario starts (``bench/scale.py`` puts this
folder on ``PYTHONPATH`` and sets ``PORTLANE_BENCH_PROBE``): a daemon thread writes the
process's asyncio task count to ``$PORTLANE_BENCH_PROBE/<pid>.json`` every
``$PORTLANE_BENCH_PROBE_PERIOD`` seconds, so the soak can watch tasks the way it watches
threads and fds in /proc — and, when the daemon runs with ``PYTHONTRACEMALLOC=1``, the size of
Python's own heap (SQLite's page cache is not in it). Without the variable it does nothing. It
adds one thread.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import tracemalloc
from pathlib import Path


def _install(folder: Path, period: float) -> None:
    loops: list[asyncio.AbstractEventLoop] = []
    run_forever = asyncio.BaseEventLoop.run_forever

    def patched(self: asyncio.BaseEventLoop) -> None:
        loops.append(self)
        run_forever(self)

    asyncio.BaseEventLoop.run_forever = patched  # type: ignore[method-assign]
    out = folder / f"{os.getpid()}.json"

    def watch() -> None:
        while True:
            time.sleep(period)
            live = [lp for lp in loops if lp.is_running()]
            if not live:
                continue
            try:
                n = sum(len(asyncio.all_tasks(lp)) for lp in live)
            except RuntimeError:  # the task set changed while we counted: next time
                continue
            doc: dict[str, float] = {"tasks": n, "t": time.time()}
            if tracemalloc.is_tracing():  # PYTHONTRACEMALLOC=1: Python's own heap, not SQLite's
                doc["py_heap_kb"] = tracemalloc.get_traced_memory()[0] / 1024
            tmp = out.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc))
            tmp.replace(out)

    threading.Thread(target=watch, name="bench-probe", daemon=True).start()


if os.environ.get("PORTLANE_BENCH_PROBE"):
    _install(Path(os.environ["PORTLANE_BENCH_PROBE"]), float(os.environ.get("PORTLANE_BENCH_PROBE_PERIOD", "1")))
