"""The demo under CPU starvation, run after run: issue 11's acceptance criterion.

    python bench/run.py demo_load [--runs 10] [--hogs 3] [--lanes 4] [--vehicles 40] [--seed 7]

Runs ``portlane demo --lanes L --vehicles V --seed S --json`` ``runs`` times, one after the
other, as a user would type it, with ``hogs`` busy processes on the machine for the whole
series. A run passes with rc 0, every vehicle a passage, 0 events lost and 0 invariant
violations; the series passes when every run does. Each run's figures and, for a failed run,
its stuck lanes and violations are kept.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import cpu_hogs, markdown_table

#: One run's deadline; the demo's own ``--timeout`` is set just below it so its JSON comes out.
RUN_TIMEOUT_S = 900.0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--hogs", type=int, default=3, help="busy processes during the series (default 3)")
    p.add_argument("--lanes", type=int, default=4)
    p.add_argument("--vehicles", type=int, default=40)
    p.add_argument("--seed", type=int, default=7)
    return p


async def _one(i: int, lanes: int, vehicles: int, seed: int) -> dict[str, Any]:
    argv = [sys.executable, "-m", "portlane.edge", "demo", "--lanes", str(lanes), "--vehicles", str(vehicles)]
    argv += ["--seed", str(seed), "--json", "--timeout", str(RUN_TIMEOUT_S - 60)]
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"}
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return {"run": i, "rc": None, "ok": False, "wall_s": round(time.monotonic() - t0, 1), "note": "killed"}
    row: dict[str, Any] = {"run": i, "rc": proc.returncode, "wall_s": round(time.monotonic() - t0, 1)}
    try:
        s = json.loads(out)
    except ValueError:
        return {**row, "ok": False, "note": "no JSON on stdout"}
    row |= {k: s.get(k) for k in ("passages", "events_lost", "invariant_violations", "timed_out")}
    row["ok"] = (proc.returncode == 0 and s.get("passages") == vehicles and s.get("events_lost") == 0) and s.get(
        "invariant_violations"
    ) == 0
    if not row["ok"]:
        row["stuck_lanes"] = s.get("stuck_lanes")
        row["violations"] = s.get("violations")
    return row


async def main(
    runs: int = 10, hogs: int = 3, lanes: int = 4, vehicles: int = 40, seed: int = 7, **_: Any
) -> dict[str, Any]:
    rows = []
    async with cpu_hogs(hogs):
        for i in range(1, runs + 1):
            row = await _one(i, lanes, vehicles, seed)
            print(json.dumps(row, ensure_ascii=False), file=sys.stderr, flush=True)
            rows.append(row)
    passed = sum(1 for r in rows if r["ok"])
    walls = sorted(r["wall_s"] for r in rows)
    return {
        "scenario": "demo_load",
        "runs": runs,
        "hogs": hogs,
        "lanes": lanes,
        "vehicles": vehicles,
        "seed": seed,
        "passed": passed,
        "wall_s": {"min": walls[0], "max": walls[-1]} if walls else None,
        "rows": rows,
        "load_after": os.getloadavg()[0],
        "ok": passed == runs,
    }


def table(result: dict[str, Any]) -> str:
    return markdown_table(
        result["rows"], ["run", "rc", "passages", "events_lost", "invariant_violations", "timed_out", "wall_s"]
    )


if __name__ == "__main__":
    res = asyncio.run(main(**vars(parser().parse_args())))
    print(json.dumps(res, ensure_ascii=False))
    print(table(res), file=sys.stderr)
    sys.exit(0 if res["ok"] else 1)
