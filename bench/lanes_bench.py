"""Lanes per host: 1, 4, 8, 16 (32) lanes on one machine, as a site runs them.

    python bench/run.py lanes [--lanes 1,4,8,16] [--warmup 20] [--window 60] [--seed 7]

For each lane count a fresh port (``scale.ScalePort``: Mosquitto, one ``portlane daemon lane``
process per lane and the scanner daemon, simulators + traffic + central platform in the bench
process) runs traffic at the demo's time factor (0.1: physical times ×0.1, so every lane goes
through vehicles ten times faster than on a real site). After ``--warmup`` seconds the
window opens: CPU seconds and RSS of every process (``/proc``) and the passages completed are
taken at both ends of ``--window`` seconds. Reported per lane count: CPU % of one core and
RSS per lane daemon (mean, max), the scanner, Mosquitto and the bench process (simulators),
passages per wall hour for the whole host (at ×10 pace) and per simulated hour per lane, and
the load average before and after (other work shares the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chaos
from harness import machine, markdown_table
from portlane.edge.demo.broker import MosquittoBroker
from scale import ProcSample, loadavg, proc_sample, scale_port

#: Seconds of simulated time per vehicle and lane the plan must cover: a passenger lane passes
#: a car every ~15 s of simulated time, so every lane has traffic to the end of the window
#: (vehicles left over are simply not driven).
SIM_S_PER_VEHICLE = 10.0


def _cpu_pct(a: ProcSample | None, b: ProcSample | None, wall: float) -> float | None:
    if a is None or b is None or wall <= 0:
        return None
    return round(100 * (b.cpu_s - a.cpu_s) / wall, 1)


async def run_one(lanes: int, warmup: float, window: float, seed: int, inspect: float) -> dict[str, Any]:
    per_lane = int((warmup + window) / (SIM_S_PER_VEHICLE * chaos.TIME_FACTOR)) + 2
    load_before = loadavg()
    t_start = time.monotonic()
    async with scale_port(lanes, lanes * per_lane, seed, inspect=inspect) as port:
        start_s = time.monotonic() - t_start
        port.drive()
        await asyncio.sleep(warmup)  # a measuring window, not synchronisation
        pids = port.daemon_pids()
        pids["mosquitto"] = port.broker_pid() or 0
        pids["bench"] = os.getpid()
        a = {u: proc_sample(p) for u, p in pids.items()}
        done_a = port.completed()
        by_lane_a = {lid: port.completed(lid) for lid in port.lane_ids}
        t0 = time.monotonic()
        await asyncio.sleep(window)
        wall = time.monotonic() - t0
        b = {u: proc_sample(p) for u, p in pids.items()}
        done_b = port.completed()
        by_lane = {lid: port.completed(lid) - by_lane_a[lid] for lid in port.lane_ids}
        kinds = {la["id"]: la["kind"] for la in port.raw["lanes"]}
        inspected = sum(1 for e in port.live.events if e["type"] == "portlane.scan.started") if port.live else 0
        failed = [u for u, d in port.daemons.items() if d.proc is None or d.proc.poll() is not None]
        ran_out = [lid for lid, t in zip(port.plan.per_lane, port.traffic, strict=False) if t.done()]
    lane_ids = [u for u in pids if u in port.lane_ids]
    cpu = [c for u in lane_ids if (c := _cpu_pct(a[u], b[u], wall)) is not None]
    rss = [s.rss_kb / 1024 for u in lane_ids if (s := b[u]) is not None]
    pss = [s.pss_kb / 1024 for u in lane_ids if (s := b[u]) is not None and s.pss_kb is not None]
    uss = [s.uss_kb / 1024 for u in lane_ids if (s := b[u]) is not None and s.uss_kb is not None]
    scanner = next((u for u in port.scanner_ids), None)
    passages = done_b - done_a
    return {
        "lanes": lanes,
        "start_s": round(start_s, 1),
        "window_s": round(wall, 1),
        "passages_in_window": passages,
        "passages_per_wall_hour": round(passages / wall * 3600),
        "passages_per_sim_hour_per_lane": round(passages / wall * 3600 * chaos.TIME_FACTOR / lanes, 1),
        "per_sim_hour_per_lane_by_kind": {
            kind: round(
                sum(n for lid, n in by_lane.items() if kinds[lid] == kind)
                / wall
                * 3600
                * chaos.TIME_FACTOR
                / max(1, sum(1 for k in kinds.values() if k == kind)),
                1,
            )
            for kind in sorted(set(kinds.values()))
        },
        "scans_started_whole_run": inspected,
        "lane_cpu_pct_mean": round(statistics.fmean(cpu), 1) if cpu else None,
        "lane_cpu_pct_max": max(cpu) if cpu else None,
        "lane_rss_mb_mean": round(statistics.fmean(rss), 1) if rss else None,
        "lane_rss_mb_max": round(max(rss), 1) if rss else None,
        "lane_pss_mb_mean": round(statistics.fmean(pss), 1) if pss else None,
        "lane_uss_mb_mean": round(statistics.fmean(uss), 1) if uss else None,
        "lanes_cpu_pct_total": round(sum(cpu), 1),
        "scanner_cpu_pct": _cpu_pct(a.get(scanner or ""), b.get(scanner or ""), wall),
        "mosquitto_cpu_pct": _cpu_pct(a["mosquitto"], b["mosquitto"], wall),
        "bench_cpu_pct": _cpu_pct(a["bench"], b["bench"], wall),
        "daemons_died": failed,
        "lanes_out_of_vehicles": ran_out,  # traffic finished before the window closed: idle lanes
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    }


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="lane daemons per host: CPU, RSS, passages per hour")
    ap.add_argument("--lanes", default="1,4,8,16", help="comma-separated lane counts")
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds of traffic before the window")
    ap.add_argument("--window", type=float, default=60.0, help="seconds measured")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--inspect", type=float, default=0.3, help="share of cargo passages the platform sends to the shared scanner"
    )
    return ap


async def main(
    lanes: str = "1,4,8,16", warmup: float = 20.0, window: float = 60.0, seed: int = 7, inspect: float = 0.3
) -> dict[str, Any]:
    if not MosquittoBroker.available():
        return {"ok": False, "error": "needs mosquitto"}
    before = machine()
    rows = []
    for n in (int(x) for x in lanes.split(",") if x):
        try:
            row = await run_one(n, warmup, window, seed, inspect)
        except Exception as exc:  # a lane count that breaks the harness is reported, not raised
            row = {"lanes": n, "error": f"{type(exc).__name__}: {exc}"[:400], "loadavg_after": loadavg()}
        print(row, file=sys.stderr, flush=True)
        rows.append(row)
    cols = [
        "lanes",
        "passages_per_wall_hour",
        "passages_per_sim_hour_per_lane",
        "lane_cpu_pct_mean",
        "lane_cpu_pct_max",
        "lane_rss_mb_mean",
        "lane_rss_mb_max",
        "lane_pss_mb_mean",
        "lane_uss_mb_mean",
        "scanner_cpu_pct",
        "mosquitto_cpu_pct",
        "bench_cpu_pct",
        "loadavg_before",
        "loadavg_after",
    ]
    return {
        "ok": all("error" not in r and not r["daemons_died"] and r["passages_in_window"] > 0 for r in rows),
        "time_factor": chaos.TIME_FACTOR,
        "inspect_ratio": inspect,
        "warmup_s": warmup,
        "window_s": window,
        "rows": rows,
        "table": markdown_table(rows, cols),
        "machine": before,
        "machine_after": machine(),
    }
