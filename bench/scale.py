"""Shared by the scale scenarios (``lanes_bench``, ``latency_bench``, ``soak_bench``).

The port is the chaos suite's (``chaos.Port``): Mosquitto as its own process, every lane
daemon and the scanner daemon as their own processes (``portlane daemon lane|scanner``, what
systemd starts, each with its own state directory), and the wire-level simulators, traffic,
central platform and observers in the bench process. What this module adds:

* ``ScalePort``: that port with a central platform that notes when it publishes a release
  (``TimedCentral``) and gate simulators that note when the first byte of an open frame
  arrives (their ``on_command`` hook) — both ``time.monotonic_ns()`` in this one process;
* ``proc_sample``: CPU seconds, RSS, threads and open fds of a process from ``/proc``;
* ``LoopLag``: how late this process's event loop wakes up — the simulators' timestamps
  cannot be more precise than that;
* a task-count probe (``bench/probe/sitecustomize.py``) the daemons load when
  ``PORTLANE_BENCH_PROBE`` is set: a thread writing ``len(asyncio.all_tasks())`` to a file;
* ``shield``: with ``rt``, once every daemon is online, the port's processes (daemons,
  Mosquitto, this process; every thread) run under ``SCHED_RR`` so that other work on a shared
  machine does not interleave with them — what a host dedicated to the site would show. Among
  themselves they still take turns (round robin); the disk is not shielded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chaos  # bench/ is not a package
from portlane.edge.platform import CentralPlatform

__all__ = [
    "FsyncProbe",
    "LoopLag",
    "ProcSample",
    "ScalePort",
    "TimedCentral",
    "percentiles",
    "proc_sample",
    "scale_port",
    "shield",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
PROBE_DIR = Path(__file__).resolve().parent / "probe"
#: How often the task-count probe in each daemon writes its figure.
PROBE_PERIOD_S = 1.0
#: Sixteen to thirty-two daemons importing portlane at once on two busy cores take a while.
START_TIMEOUT_S = 240.0
#: Real-time priority of a shielded port (``shield``): the lowest, above every normal process.
RT_PRIORITY = 1


@dataclass(frozen=True, slots=True)
class ProcSample:
    cpu_s: float  # user + system, since the process started
    rss_kb: int
    threads: int
    fds: int
    pss_kb: int | None = None  # proportional share: shared pages (interpreter, libraries) split
    uss_kb: int | None = None  # private to this process: what another lane daemon adds


def _rollup(pid: int) -> tuple[int | None, int | None]:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None, None
    kb = {k: int(v.split()[0]) for k, _, v in (ln.partition(":") for ln in text.splitlines()[1:]) if v.strip()}
    return kb.get("Pss"), kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)


def proc_sample(pid: int) -> ProcSample | None:
    """CPU, RSS, threads and fds of ``pid`` (None when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, IndexError):
        return None
    # fields[0] is field 3 (state): utime 14, stime 15, num_threads 20, rss 24 (pages)
    pss, uss = _rollup(pid)
    return ProcSample(
        cpu_s=(int(fields[11]) + int(fields[12])) / CLK_TCK,
        rss_kb=int(fields[21]) * PAGE_KB,
        threads=int(fields[17]),
        fds=fds,
        pss_kb=pss,
        uss_kb=uss,
    )


def probe_read(pid: int) -> dict[str, float]:
    """What the probe in ``pid`` wrote last: ``tasks``, and ``py_heap_kb`` under tracemalloc."""
    path = Path(os.environ.get("PORTLANE_BENCH_PROBE", "/nonexistent")) / f"{pid}.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def percentiles(xs: Sequence[float], ps: Sequence[int] = (50, 95, 99)) -> dict[str, float | None]:
    """Nearest-rank percentiles (``p50`` …) plus ``max`` and ``n``."""
    s = sorted(xs)
    out: dict[str, float | None] = {}
    for p in ps:
        out[f"p{p}"] = round(s[max(0, math.ceil(p / 100 * len(s)) - 1)], 2) if s else None
    out["max"] = round(s[-1], 2) if s else None
    out["n"] = len(s)
    return out


def shield(pids: Sequence[int]) -> list[str]:
    """Put every thread of ``pids`` under ``SCHED_RR`` (``RT_PRIORITY``); threads they start
    later inherit it. Returns what could not be shielded (needs root or CAP_SYS_NICE)."""
    failed = []
    for pid in pids:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError as exc:
            failed.append(f"{pid}: {exc}")
            continue
        for tid in tids:
            try:
                os.sched_setscheduler(tid, os.SCHED_RR, os.sched_param(RT_PRIORITY))
            except OSError as exc:
                failed.append(f"{pid}/{tid}: {exc}")
    return failed


class LoopLag:
    """How late this event loop runs a 10 ms timer, sampled for as long as it runs."""

    PERIOD_S = 0.01

    def __init__(self) -> None:
        self.lags_ms: list[float] = []

    async def run(self) -> None:
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(self.PERIOD_S)
            self.lags_ms.append((time.monotonic() - t0 - self.PERIOD_S) * 1000)


class FsyncProbe:
    """How long one small write + fsync takes on the daemons' filesystem, every half second
    while it runs (in a thread): the lane's nonce store, journal and outbox are SQLite with
    ``synchronous=FULL``, so a command waits for the disk."""

    PERIOD_S = 0.5

    def __init__(self, folder: Path) -> None:
        self.path = folder / "fsync-probe"
        self.ms: list[float] = []

    def _once(self) -> float:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            t0 = time.perf_counter()
            os.write(fd, b"x" * 512)
            os.fsync(fd)
            return (time.perf_counter() - t0) * 1000
        finally:
            os.close(fd)

    async def run(self) -> None:
        while True:
            self.ms.append(await asyncio.to_thread(self._once))
            await asyncio.sleep(self.PERIOD_S)


class TimedCentral(CentralPlatform):
    """The central platform, noting when it publishes each lane's release decisions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.release_ns: dict[str, int] = {}  # lane -> time the latest release was published

    def sent(self, topic: str, payload: bytes) -> None:
        t = time.monotonic_ns()  # handed to the broker now (the library's on_sent)
        if topic.endswith("/cmd/decision") and (json.loads(payload).get("args") or {}).get("verdict") == "release":
            # The lane opens on the last agency's release; each one overwrites the previous.
            self.release_ns[topic.split("/")[3]] = t
        super().sent(topic, payload)


class ScalePort(chaos.Port):
    """``chaos.Port`` with timed releases and timed gate frames (see the module docstring)."""

    central_cls = TimedCentral
    start_timeout_s = START_TIMEOUT_S

    def __init__(
        self,
        lanes: int,
        vehicles: int,
        seed: int,
        root: Path,
        *,
        think_s: float | None = None,
        inspect: float | None = None,
        rt: bool = False,
    ) -> None:
        super().__init__(lanes, vehicles, seed, root)
        self.rt = rt
        self.shield_failed: list[str] = []
        if think_s is not None:
            self.think_s = think_s
        if inspect is not None:
            self.inspect_ratio = inspect
        self.release_to_open_ms: dict[str, list[float]] = {lid: [] for lid in self.lane_ids}
        self.opens = 0

    async def start(self, **kwargs: Any) -> None:
        await super().start(**kwargs)
        assert self.sims is not None
        hooked = 0
        for h in self.sims.handles:
            sim = getattr(h, "sim", None)
            if sim is not None and hasattr(sim, "on_command"):
                sim.on_command = self._gate_command
                hooked += 1
        if not hooked:
            raise RuntimeError("no gate simulator with an on_command hook")
        if self.rt:
            broker = self.broker_pid()
            pids = [os.getpid(), *self.daemon_pids().values(), *([broker] if broker else [])]
            self.shield_failed = shield(pids)

    def _gate_command(self, world: Any, command: str, t_ns: int) -> None:
        if command != "open":
            return
        self.opens += 1
        central = self.central
        assert isinstance(central, TimedCentral)
        t_release = central.release_ns.pop(world.lane_id, None)
        if t_release is not None:
            self.release_to_open_ms[world.lane_id].append((t_ns - t_release) / 1e6)

    def daemon_pids(self) -> dict[str, int]:
        return {u: d.proc.pid for u, d in self.daemons.items() if d.proc is not None and d.proc.poll() is None}

    def broker_pid(self) -> int | None:
        proc = getattr(self.broker, "_proc", None) or getattr(self.broker, "proc", None)
        return getattr(proc, "pid", None)

    def traffic_figures(self) -> dict[str, Any]:
        """What sizes a broker: events per passage and bytes per event (the envelope as compact
        JSON, signature included when the units sign), from every event the live observer saw."""
        assert self.live is not None
        events = self.live.events
        sizes = [len(json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode()) for e in events]
        by_type: dict[str, list[int]] = {}
        for e, n in zip(events, sizes, strict=True):
            by_type.setdefault(str(e.get("type", "?")).removeprefix("portlane."), []).append(n)
        passages = self.completed()
        return {
            "events": len(events),
            "passages": passages,
            "events_per_passage": round(len(events) / passages, 1) if passages else None,
            "bytes_per_event": percentiles([float(n) for n in sizes]),
            "bytes_per_event_mean": round(sum(sizes) / len(sizes)) if sizes else None,
            "bytes_by_type_max": {t: max(ns) for t, ns in sorted(by_type.items())},
            "count_by_type": {t: len(ns) for t, ns in sorted(by_type.items())},
        }

    def stage_gaps_ms(self, start: str, end: str) -> list[float]:
        """Per completed passage: ms from stage ``start`` to stage ``end`` (both present)."""
        assert self.live is not None
        out = []
        for e in self.live.events:
            if e["type"] != "portlane.passage.completed":
                continue
            ms = e["data"].get("stage_ms") or {}
            if start in ms and end in ms:
                out.append(float(ms[end] - ms[start]))
        return out


def enable_probe(root: Path, *, tracemalloc: bool = False) -> None:
    """Daemons started from now on load ``bench/probe/sitecustomize.py`` (task counts; with
    ``tracemalloc``, Python's heap too — it slows every allocation down)."""
    if tracemalloc:
        os.environ["PYTHONTRACEMALLOC"] = "1"
    probe = root / "probe"
    probe.mkdir(exist_ok=True)
    os.environ["PORTLANE_BENCH_PROBE"] = str(probe)
    os.environ["PORTLANE_BENCH_PROBE_PERIOD"] = str(PROBE_PERIOD_S)
    path = os.environ.get("PYTHONPATH", "")
    if str(PROBE_DIR) not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(x for x in (str(PROBE_DIR), path) if x)


def disable_probe() -> None:
    os.environ.pop("PYTHONTRACEMALLOC", None)
    os.environ.pop("PORTLANE_BENCH_PROBE", None)
    os.environ.pop("PORTLANE_BENCH_PROBE_PERIOD", None)
    parts = [x for x in os.environ.get("PYTHONPATH", "").split(os.pathsep) if x and x != str(PROBE_DIR)]
    if parts:
        os.environ["PYTHONPATH"] = os.pathsep.join(parts)
    else:
        os.environ.pop("PYTHONPATH", None)


@contextlib.asynccontextmanager
async def scale_port(
    lanes: int,
    vehicles: int,
    seed: int,
    *,
    think_s: float | None = None,
    inspect: float | None = None,
    probe: bool = False,
    tracemalloc: bool = False,
    rt: bool = False,
) -> AsyncIterator[ScalePort]:
    """A started ``ScalePort`` in a fresh directory; closed (every process stopped) after."""
    root = Path(tempfile.mkdtemp(prefix=f"portlane-scale-{lanes}-"))
    if probe:
        enable_probe(root, tracemalloc=tracemalloc)
    port = ScalePort(lanes, vehicles, seed, root, think_s=think_s, inspect=inspect, rt=rt)
    try:
        await port.start()
        yield port
    finally:
        try:
            await port.close()
        finally:
            if rt:
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))  # the next port starts as usual
            if probe:
                disable_probe()
            shutil.rmtree(root, ignore_errors=True)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
