"""Soak: every lane busy for hours of simulated time; nothing may grow.

    python bench/run.py soak [--lanes 16] [--sim-minutes 120] [--seed 7]

The port is ``scale.ScalePort`` (lane and scanner daemons as their own processes, as systemd
runs them; Mosquitto; simulators, traffic and central platform in the bench process) at the
demo's time factor 0.1, so 120 simulated minutes take 12 wall minutes. Vehicles keep coming
on every lane for the whole run. Each simulated minute, for every daemon: RSS, threads and
open fds (``/proc``), asyncio tasks (the bench probe, ``bench/probe/sitecustomize.py``),
outbox depth and retained events (its control socket).

Pass: over the second half of the run (the first half is warm-up: caches, SQLite pages,
the allocator's arenas), the least-squares slope of every series stays below its threshold
(``THRESHOLDS``, per simulated hour) in every daemon — no monotone growth. Retained events
grow by design until the outbox's retention window (24 h) starts purging; they are reported,
not judged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chaos
from harness import machine, markdown_table
from portlane.edge.demo.broker import MosquittoBroker
from portlane.edge.ops.control import request
from scale import loadavg, probe_read, proc_sample, scale_port

#: Largest slope (per simulated hour) over the second half that still counts as flat. RSS: a
#: leak of 10 kB per passage at ~100 passages per simulated hour and lane would show as 1 MB/h.
THRESHOLDS = {"rss_mb": 1.0, "threads": 0.5, "fds": 0.5, "tasks": 1.0, "outbox_depth": 1.0}
SERIES = ("rss_mb", "threads", "fds", "tasks", "outbox_depth", "outbox_retained", "py_heap_mb")
#: A control-socket answer within this long (the daemon is busy but never that busy).
CONTROL_S = 5.0


def slope_per_hour(t_min: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ``ys`` over ``t_min`` (minutes), per hour."""
    pts = [(t, y) for t, y in zip(t_min, ys, strict=True) if y is not None]
    if len(pts) < 3:
        return None
    ts, vs = [p[0] for p in pts], [p[1] for p in pts]
    mt, mv = statistics.fmean(ts), statistics.fmean(vs)
    den = sum((t - mt) ** 2 for t in ts)
    return None if den == 0 else 60 * sum((t - mt) * (v - mv) for t, v in zip(ts, vs, strict=True)) / den


async def _outbox(control: Path) -> dict[str, Any] | None:
    with contextlib.suppress(Exception):
        answer = await request(control, "outbox", timeout_s=CONTROL_S)
        if isinstance(answer.get("outbox"), dict):
            return dict(answer["outbox"])
        answer = await request(control, "status", timeout_s=CONTROL_S)
        if isinstance(answer.get("outbox"), dict):
            return dict(answer["outbox"])
    return None


def judge(series: dict[str, dict[str, list[Any]]]) -> dict[str, Any]:
    """Per daemon and series: slope over the second half (per simulated hour) and the verdict."""
    verdicts: dict[str, Any] = {}
    for unit, s in series.items():
        t = s["t_min"]
        half = len(t) // 2
        row: dict[str, Any] = {}
        for name in SERIES:
            ys = s.get(name) or [None] * len(t)  # a series this run did not record
            slope = slope_per_hour(t[half:], ys[half:])
            limit = THRESHOLDS.get(name)
            row[name] = {
                "slope_per_sim_hour": None if slope is None else round(slope, 3),
                "first": ys[0] if ys else None,
                "last": ys[-1] if ys else None,
                "flat": None if limit is None or slope is None else slope <= limit,
            }
        verdicts[unit] = row
    return verdicts


async def run(lanes: int, sim_minutes: float, seed: int, tracemalloc: bool = False) -> dict[str, Any]:
    tf = chaos.TIME_FACTOR
    wall_s = sim_minutes * 60 * tf
    # A passenger lane passes a car every ~15 s of simulated time; every lane must have traffic
    # to the end (120 simulated minutes on 16 lanes: ~9,700 registrations, a 680 kB signed
    # command, under the 1 MiB packet limit).
    per_lane = int(sim_minutes * 60 / 12) + 4
    load_before = loadavg()
    series: dict[str, dict[str, list[Any]]] = {}
    async with scale_port(lanes, lanes * per_lane, seed, probe=True, tracemalloc=tracemalloc) as port:
        port.drive()
        t0 = time.monotonic()
        k = 0
        while (elapsed := time.monotonic() - t0) < wall_s:
            for unit, d in port.daemons.items():
                if d.proc is None or d.proc.poll() is not None:
                    continue
                s = series.setdefault(unit, {"t_min": [], **{n: [] for n in SERIES}})
                ps = proc_sample(d.proc.pid)
                ob = await _outbox(d.control)
                s["t_min"].append(round(elapsed / 60 / tf, 2))
                s["rss_mb"].append(None if ps is None else round(ps.rss_kb / 1024, 2))
                s["threads"].append(None if ps is None else ps.threads)
                s["fds"].append(None if ps is None else ps.fds)
                probe = probe_read(d.proc.pid)
                s["tasks"].append(probe.get("tasks"))
                heap = probe.get("py_heap_kb")
                s["py_heap_mb"].append(None if heap is None else round(heap / 1024, 2))
                s["outbox_depth"].append(None if ob is None else ob.get("depth"))
                s["outbox_retained"].append(None if ob is None else ob.get("retained"))
            k += 1
            # Sampling period: one simulated minute (a measuring clock, not synchronisation).
            await asyncio.sleep(max(0.0, t0 + k * 60 * tf - time.monotonic()))
        passages = port.completed()
        traffic = port.traffic_figures()
        ran_out = [lid for lid, t in zip(port.plan.per_lane, port.traffic, strict=False) if t.done()]
        died = [u for u, d in port.daemons.items() if d.proc is None or d.proc.poll() is not None]
    verdicts = judge(series)
    flat = all(v["flat"] is not False for row in verdicts.values() for v in row.values())
    failed = sorted(
        f"{u}.{n} ({v['slope_per_sim_hour']}/h)"
        for u, row in verdicts.items()
        for n, v in row.items()
        if v["flat"] is False
    )
    table_rows = []
    for name in SERIES:
        slopes = [
            row[name]["slope_per_sim_hour"] for row in verdicts.values() if row[name]["slope_per_sim_hour"] is not None
        ]
        firsts = [row[name]["first"] for row in verdicts.values() if row[name]["first"] is not None]
        lasts = [row[name]["last"] for row in verdicts.values() if row[name]["last"] is not None]
        table_rows.append(
            {
                "series": name,
                "first (mean over daemons)": round(statistics.fmean(firsts), 1) if firsts else None,
                "last (mean)": round(statistics.fmean(lasts), 1) if lasts else None,
                "max slope, 2nd half, per sim hour": max(slopes) if slopes else None,
                "threshold": THRESHOLDS.get(name, "reported only"),
                "flat in every daemon": all(row[name]["flat"] is not False for row in verdicts.values())
                if name in THRESHOLDS
                else "—",
            }
        )
    return {
        "ok": flat and not died and passages > 0 and not ran_out,
        "flat": flat,
        "not_flat": failed,
        "lanes": lanes,
        "sim_minutes": sim_minutes,
        "time_factor": tf,
        "wall_s": round(wall_s, 1),
        "passages": passages,
        "daemons_died": died,
        "traffic": traffic,
        "lanes_out_of_vehicles": ran_out,  # idle before the end: their second half shows an idle lane
        "thresholds_per_sim_hour": THRESHOLDS,
        "verdicts": verdicts,
        "series": series,
        "tracemalloc": tracemalloc,
        "table": markdown_table(table_rows, list(table_rows[0])),
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    }


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="soak: tasks/threads/fds/RSS/outbox depth per daemon stay flat")
    ap.add_argument("--lanes", type=int, default=16)
    ap.add_argument("--sim-minutes", type=float, default=120.0, help="simulated minutes (wall = ×0.1)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--tracemalloc", action="store_true", help="daemons trace Python's heap (py_heap_mb; slows them down)"
    )
    return ap


async def main(lanes: int = 16, sim_minutes: float = 120.0, seed: int = 7, tracemalloc: bool = False) -> dict[str, Any]:
    if not MosquittoBroker.available():
        return {"ok": False, "error": "needs mosquitto"}
    before = machine()
    out = await run(lanes, sim_minutes, seed, tracemalloc)
    return {**out, "machine": before, "machine_after": machine()}
