"""A lane's book of pre-decisions at capacity (issue 20): match latency, the write of one use,
and the time to load the book at start.

    python bench/run.py predecisions [--vehicles 25000] [--agencies 2]

The book is filled with ``vehicles`` declared trucks × ``agencies`` (the default fills the
50,000 of ``DEFAULT_CAPACITY``), written to its SQLite file in one go, then: ``match`` of a
declared truck (every agency's pre-decision must be found among the 50,000 and checked), the
``sync`` after a match marks two of them used (the write that must be on disk before the gate
moves), and ``open`` of the file by a fresh store (a lane daemon's start). Signing is not
measured: the book holds verified pre-decisions.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from portlane.edge.contract.events import PlateRead
from portlane.edge.lane.passage import Identity
from portlane.edge.lane.predecision_rules import Declared, FullMatch, Observed
from portlane.edge.lane.predecision_store import PredecisionStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine

NOW = 1_800_000_000.0
AGENCIES = ("customs", "border", "quarantine", "maritime", "transport")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vehicles", type=int, default=25_000)
    ap.add_argument("--agencies", type=int, default=2, choices=range(1, len(AGENCIES) + 1))
    return ap


def _declared(i: int, agency: str) -> Declared:
    return Declared(
        id=f"v{i}-{agency}",
        agency=agency,
        verdict="release",
        plates=frozenset({f"粤B{i:05d}"}),
        tag_id=f"E2{i:018d}",
        containers=(),
        gross_weight_kg=20_000,
        weight_tolerance_kg=500,
        seals=None,
        lanes=frozenset({"c1"}),
        window_start=NOW - 60,
        window_end=NOW + 3600,
        valid_until=NOW + 7200,
        key_id=f"{agency}-key",
        nonce=f"nonce-{i}-{agency}",
        issued_at=NOW - 600,
        digest="0" * 64,
    )


def _truck(i: int) -> Observed:
    plate = PlateRead(text=f"粤B{i:05d}", kind="cn", confidence=0.97)
    return Observed.from_identity(Identity(plates=(plate,), tag_id=f"E2{i:018d}", weight_kg=20_100, confidence=0.97))


def _q(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return round(s[int(p * (len(s) - 1))] * 1000, 3)


async def main(*, vehicles: int, agencies: int) -> dict[str, Any]:
    return _measure(vehicles, agencies)  # synchronous: the book and its store do no async I/O


def _measure(vehicles: int, agencies: int) -> dict[str, Any]:
    ags = AGENCIES[:agencies]
    tmp = Path(tempfile.mkdtemp(prefix="predecisions-bench-"))
    path = tmp / "predecisions-c1.db"
    store = PredecisionStore(clock=lambda: NOW, capacity=vehicles * agencies)
    store.open(path)
    t0 = time.perf_counter()
    for i in range(vehicles):
        for a in ags:
            assert store.book.add(_declared(i, a), NOW).accepted
    add_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.sync()
    first_sync_s = time.perf_counter() - t0
    match_s: list[float] = []
    use_sync_s: list[float] = []
    step = max(1, vehicles // 500)
    for i in range(0, vehicles, step):
        truck = _truck(i)
        t0 = time.perf_counter()
        result = store.book.match(truck, lane="c1", agencies=ags, now=NOW)
        match_s.append(time.perf_counter() - t0)
        assert isinstance(result, FullMatch)
        store.book.use(result.ids, f"c1-p{i}", NOW)
        t0 = time.perf_counter()
        store.sync()
        use_sync_s.append(time.perf_counter() - t0)
    store.close()
    t0 = time.perf_counter()
    again = PredecisionStore(clock=lambda: NOW, capacity=vehicles * agencies)
    again.open(path)
    open_s = time.perf_counter() - t0
    assert len(again.book) == vehicles * agencies
    again.close()
    size = os.path.getsize(path)
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    return {
        "entries": vehicles * agencies,
        "agencies": agencies,
        "add_per_s": round(vehicles * agencies / add_s),
        "first_sync_s": round(first_sync_s, 2),
        "match_ms": {"p50": _q(match_s, 0.5), "p99": _q(match_s, 0.99), "n": len(match_s)},
        "sync_after_use_ms": {"p50": _q(use_sync_s, 0.5), "p99": _q(use_sync_s, 0.99), "n": len(use_sync_s)},
        "open_s": round(open_s, 2),
        "file_mb": round(size / 1e6, 1),
        "machine": machine(),
    }
