"""``portlane demo``: a whole simulated port on one machine.

The composition root for simulations (with ``edge/cli``, the only part of ``edge`` that may
import ``sim_devices``): it starts a broker (the embedded one unless ``--broker``), the
wire-level device simulators of every lane, the lane daemons and the scanner daemon — the
same classes systemd runs — a traffic generator, a central-platform simulator that signs
its decisions, and an independent subscriber that counts what really reached the broker.

Invariants checked at the end, from the broker's side and the simulated physics:
  * every gate opening follows a release/divert of that passage, or an override;
  * no barrier arm came down on a vehicle (the simulated controller counts strikes);
  * exactly one ``passage.completed`` per passage, at most one scan per passage;
  * ``seq`` strictly increasing per unit, no gaps (``events_lost``), duplicates counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import importlib.resources
import logging
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from portlane.edge.config import Site, parse_site
from portlane.edge.contract.events import STAGES
from portlane.edge.demo.broker import EmbeddedBroker
from portlane.edge.demo.observer import EventObserver
from portlane.edge.lane.daemon import LaneDaemon
from portlane.edge.lane.logic import LaneTimeouts
from portlane.edge.scanner.daemon import ScannerDaemon
from portlane.sim_devices.central import CentralPlatform
from portlane.sim_devices.scanner import ScannerWorld
from portlane.sim_devices.traffic import TrafficPlan, make_plan, run_lane
from portlane.sim_devices.world import LaneWorld

__all__ = ["DemoOptions", "run_demo"]

log = logging.getLogger(__name__)

#: Site files ship as package data of ``portlane.firmware_config`` (a regular package).
SITES_DIR = Path(str(importlib.resources.files("portlane.firmware_config"))) / "sites"
DEFAULT_SITE = SITES_DIR / "zhuhai-hzmb-cargo.yaml"
KEYS_FILE = SITES_DIR.parent / "demo_keys.yaml"
#: Lane order for --lanes N: small demos still mix cargo and passenger lanes.
LANE_ORDER = ("c1", "c2", "p1", "c3", "p2", "c4")


@dataclass
class DemoOptions:
    lanes: int = 4
    vehicles: int = 40
    seed: int = 7
    broker: str | None = None
    time_factor: float = 0.1
    inspect_ratio: float = 0.25
    inject_forged: int = 0
    site_file: Path = DEFAULT_SITE
    live: bool = True
    timeout_s: float = 600.0
    recognition: bool = False
    secure: bool = False  # shipped Mosquitto config: TLS, client certificates, ACL (edge/demo/secure.py)
    console: tuple[str, int] | None = None  # serve the site console here (edge/console)
    console_db: Path | None = None  # keep the console's database here


@dataclass
class DemoRun:
    opts: DemoOptions
    site: Site
    plan: TrafficPlan
    worlds: dict[str, LaneWorld]
    scanner_world: ScannerWorld
    lanes: dict[str, LaneDaemon] = field(default_factory=dict)
    scanner: ScannerDaemon | None = None
    central: CentralPlatform | None = None
    observer: EventObserver | None = None
    vehicles_passed: int = 0
    recogniser: Any = None
    started: float = field(default_factory=time.monotonic)


def _select_lanes(raw: dict[str, Any], n: int) -> dict[str, Any]:
    """Take ``n`` lanes of the site (cloning cargo lanes beyond the configured ones)."""
    by_id = {lane["id"]: lane for lane in raw["lanes"]}
    order = [x for x in LANE_ORDER if x in by_id] + [x for x in by_id if x not in LANE_ORDER]
    chosen = [copy.deepcopy(by_id[x]) for x in order[:n]]
    template = next(lane for lane in raw["lanes"] if lane["kind"] == "cargo")
    i = len([x for x in by_id if x.startswith("c")])
    while len(chosen) < n:
        i += 1
        clone = copy.deepcopy(template)
        clone["id"] = f"c{i}"
        chosen.append(clone)
    raw = copy.deepcopy(raw)
    raw["lanes"] = chosen
    ids = {lane["id"] for lane in chosen}
    for s in raw.get("scanners", []):
        s["lanes"] = [lane["id"] for lane in chosen if lane.get("scanner") == s["id"]]
        for lane in chosen:
            if lane.get("scanner") == s["id"] and lane["id"] not in s["lanes"]:
                s["lanes"].append(lane["id"])
    raw["scanners"] = [s for s in raw.get("scanners", []) if s["lanes"]]
    for lane in chosen:
        if lane.get("scanner") and lane["scanner"] not in {s["id"] for s in raw["scanners"]}:
            lane["scanner"] = None
    assert ids
    return raw


def _apply_links(raw: dict[str, Any], links: dict[str, Any]) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    for lane in raw["lanes"]:
        lk = links["lanes"].get(lane["id"], {})
        for dev, cfg in lane["devices"].items():
            if dev == "cameras":
                for cam_id, cam in cfg.items():
                    if cam_id in lk.get("cameras", {}):
                        cam["link"] = lk["cameras"][cam_id]
            elif dev in lk:
                cfg["link"] = lk[dev]
    for s in raw.get("scanners", []):
        if s["id"] in links.get("scanners", {}):
            s["device"]["link"] = links["scanners"][s["id"]]
    return raw


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return round(s[k], 1)


def check_invariants(
    events: list[dict[str, Any]], worlds: dict[str, LaneWorld], scanner_world: ScannerWorld | None
) -> list[str]:
    """Invariants over what the broker saw. Returns human-readable violations."""
    violations: list[str] = []
    authorised: set[str] = set()
    completed: dict[str, int] = defaultdict(int)
    scans: dict[str, int] = defaultdict(int)
    for ev in sorted(events, key=lambda e: (e["source"], e["seq"])):
        t, d = ev["type"].removeprefix("portlane."), ev["data"]
        pid = d.get("passage_id")
        if t in ("passage.released", "passage.diverted") or t == "override.applied":
            authorised.add(pid or f"override@{ev['source']}")
        elif t == "gate.moved" and d["action"] == "open":
            key = pid if d["cause"] != "override" else (pid or f"override@{ev['source']}")
            if key not in authorised:
                violations.append(f"{ev['source']}: gate opened for {pid} without release/override")
        elif t == "passage.completed":
            completed[pid] += 1
        elif t == "scan.started":
            scans[pid] += 1
    violations += [f"passage {p} completed {n} times" for p, n in completed.items() if n != 1]
    violations += [f"passage {p} scanned {n} times" for p, n in scans.items() if n > 1]
    for lane, w in worlds.items():
        if w.arm_strikes:
            violations.append(f"{lane}: barrier arm came down on a vehicle {w.arm_strikes} times")
    return violations


async def run_demo(opts: DemoOptions, *, on_tick: Any = None) -> dict[str, Any]:
    from portlane.sim_devices.catalog import start_site

    raw_all = yaml.safe_load(opts.site_file.read_text(encoding="utf-8"))
    raw = _select_lanes(raw_all, opts.lanes)
    keys = yaml.safe_load(KEYS_FILE.read_text(encoding="utf-8"))
    lanes_kind = {lane["id"]: lane["kind"] for lane in raw["lanes"]}
    plan = make_plan(lanes_kind, opts.vehicles, seed=opts.seed, swapped_ratio=0.05)
    worlds = {lane: LaneWorld(lane, time_factor=opts.time_factor) for lane in lanes_kind}
    for i, w in enumerate(worlds.values()):
        w.arm_move_s = 1.0 + (i % 3) * 0.5  # gates take 1–2 s to move
    scanner_world = ScannerWorld(time_factor=opts.time_factor, seed=opts.seed)
    scanner_ids = [s["id"] for s in raw.get("scanners", [])]

    broker: EmbeddedBroker | None = None
    protocol: str | None = None
    secure = None
    if opts.secure:
        from portlane.edge.demo.secure import OBSERVER, secure_demo

        secure = secure_demo(raw)
        raw = secure.raw
        await secure.broker.start()
        url = secure.broker.url
    elif opts.broker:
        url = opts.broker
    else:
        broker = EmbeddedBroker()
        await broker.start()
        url, protocol = broker.url, "3.1.1"

    stop = asyncio.Event()
    exits = contextlib.AsyncExitStack()
    state_dir = Path(tempfile.mkdtemp(prefix="portlane-demo-"))
    sims = await start_site(
        raw, worlds, scanner_worlds={sid: scanner_world for sid in scanner_ids}, time_factor=opts.time_factor
    )
    try:
        site = parse_site(_apply_links(raw, sims.links), file=str(opts.site_file))
        run = DemoRun(opts, site, plan, worlds, scanner_world)
        run.observer = EventObserver(
            url, site.site.id, protocol=protocol or "auto", tls=secure.link_tls(OBSERVER) if secure else None
        )
        if opts.console or opts.console_db:
            from portlane.edge.console.service import demo_console

            await exits.enter_async_context(
                demo_console(
                    site,
                    broker_url=url,
                    broker_protocol=protocol,
                    http=opts.console,
                    db=opts.console_db,
                    time_factor=opts.time_factor,
                    signing_key=(keys["key_id"], keys["private_key"]),
                )
            )
        recogniser = None
        if opts.recognition:
            from portlane.edge.lane.recognition import LocalRecogniser, camera_rois

            # one worker thread, one set of ONNX sessions for all lanes
            recogniser = LocalRecogniser(rois=camera_rois(site))
        run.recogniser = recogniser
        # With recognition, a lane's frames queue behind other lanes' on one worker: allow for it.
        timeouts = LaneTimeouts(identify_s=30.0 if recogniser else 3.0, decision_s=60.0, exit_s=60.0)
        for lane_cfg in site.lanes:
            run.lanes[lane_cfg.id] = LaneDaemon(
                site,
                lane_cfg,
                state_dir=state_dir,
                broker_url=url,
                broker_protocol=protocol,
                timeouts=timeouts,
                recogniser=recogniser,
            )
        for s in site.scanners:
            run.scanner = ScannerDaemon(site, s, state_dir=state_dir, broker_url=url, broker_protocol=protocol)
        run.central = CentralPlatform(
            url,
            site.site.id,
            key_id=keys["key_id"],
            private_key_b64=keys["private_key"],
            lanes={
                lc.id: {"kind": lc.kind, "agencies": [a.value for a in lc.agencies], "scanner": lc.scanner}
                for lc in site.lanes
            },
            inspect_ratio=opts.inspect_ratio,
            forged=opts.inject_forged,
            seed=opts.seed,
            think_s=2.0 * opts.time_factor,
            protocol=protocol or "auto",
            registrations=plan.registrations,
            tls_files=secure.tls_files("platform") if secure else None,
        )
        completed = asyncio.Event()

        def on_event(ev: dict[str, Any]) -> None:
            done = sum(1 for e in run.observer.events if e["type"] == "portlane.passage.completed")  # type: ignore[union-attr]
            if done >= plan.total:
                completed.set()

        run.observer.on_event(on_event)
        async with asyncio.TaskGroup() as tg:
            bg = [
                tg.create_task(run.observer.link.run(), name="observer"),
                tg.create_task(run.central.run(), name="central"),
                tg.create_task(scanner_world.run(), name="scanner-physics"),
            ]
            bg += [tg.create_task(w.run(), name=f"{lane}-physics") for lane, w in worlds.items()]
            daemons = [tg.create_task(d.run(stop), name=f"lane-{lid}") for lid, d in run.lanes.items()]
            if run.scanner:
                daemons.append(tg.create_task(run.scanner.run(stop), name="scanner"))
            await asyncio.wait_for(run.observer.link.wait_connected(), 30)
            await asyncio.wait_for(run.central.wait_connected(), 30)
            for d in run.lanes.values():
                await asyncio.wait_for(d.link.wait_connected(), 30)
            await asyncio.wait_for(run.central.wait_registered(run.lanes), 30)
            traffic = [
                tg.create_task(run_lane(worlds[lane], vs, headway_s=1.0), name=f"traffic-{lane}")
                for lane, vs in plan.per_lane.items()
            ]
            ticker = tg.create_task(_ticker(run, on_tick), name="live") if on_tick else None
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(opts.timeout_s):
                        await completed.wait()
                if not completed.is_set():
                    log.error(
                        "demo: timed out after %.0f s; lanes now: %s",
                        opts.timeout_s,
                        {
                            lid: (
                                d.logic.stage.value,
                                d.logic.in_service,
                                worlds[lid].position.value,
                                d.logic.sensors,
                                d.devices.slots["gate"].supervisor.health.value,
                            )
                            for lid, d in run.lanes.items()
                        },
                    )
                else:
                    run.vehicles_passed = sum(sum(r) for r in await asyncio.gather(*traffic))
                    if opts.inject_forged and run.central.forged_left:
                        await run.central.flush_forgeries(next(iter(run.lanes)))
                    # Let the rejections of the last forgeries reach the observer.
                    with contextlib.suppress(TimeoutError):
                        await run.observer.wait_for(
                            lambda: _count(run, "command.rejected") >= opts.inject_forged, timeout=30
                        )
            finally:
                stop.set()
                await asyncio.gather(*daemons, return_exceptions=True)
                # Everything the daemons published before they stopped is on the broker.
                expected = {lid: d.outbox.last_seq for lid, d in run.lanes.items()}
                if run.scanner:
                    expected[run.scanner.cfg.id] = run.scanner.outbox.last_seq
                with contextlib.suppress(TimeoutError):
                    await run.observer.wait_for(
                        lambda: all(run.observer.units[u].max_seq >= s for u, s in expected.items() if s),  # type: ignore[union-attr]
                        timeout=10,
                    )
                if ticker:
                    ticker.cancel()
                for t in [*bg, *traffic]:
                    t.cancel()
        return summarise(run, expected)
    finally:
        await exits.aclose()
        await sims.close()
        if broker is not None:
            await broker.stop()
        if secure is not None:
            await secure.close()


def _count(run: DemoRun, type_: str) -> int:
    assert run.observer is not None
    return sum(1 for e in run.observer.events if e["type"] == f"portlane.{type_}")


async def _ticker(run: DemoRun, on_tick: Any) -> None:
    while True:
        on_tick(run)
        await asyncio.sleep(0.25)


def _recognition_summary(run: DemoRun, completed: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How many passages the cameras identified exactly (against the traffic generator's truth)."""
    if run.recogniser is None:
        return None
    truth = {tuple(sorted(v.plates)) for vs in run.plan.per_lane.values() for v in vs}
    boxes = {c for vs in run.plan.per_lane.values() for v in vs for c in v.containers}
    identified = [
        e["data"]
        for e in run.observer.events  # type: ignore[union-attr]
        if e["type"] == "portlane.vehicle.identified" and not e["data"].get("corrected_by")
    ]
    plates_ok = sum(1 for d in identified if tuple(sorted(p["text"] for p in d["plates"])) in truth)
    cont = [c["number"] for d in identified for c in d["containers"]]
    lat = sorted(run.recogniser.latencies)
    return {
        "identifications": len(identified),
        "plates_exact": plates_ok,
        "containers_read": len(cont),
        "containers_exact": sum(1 for c in cont if c in boxes),
        "exceptions": dict(Counter(x for d in identified for x in d.get("exceptions", []))),
        "batch_latency_ms": {"p50": _pct([x * 1000 for x in lat], 0.5), "p95": _pct([x * 1000 for x in lat], 0.95)},
    }


def summarise(run: DemoRun, expected: dict[str, int]) -> dict[str, Any]:
    obs = run.observer
    assert obs is not None
    completed = [e["data"] for e in obs.events if e["type"] == "portlane.passage.completed"]
    stage_ms: dict[str, dict[str, float]] = {}
    for st in STAGES:
        vals = [float(c["stage_ms"][st]) for c in completed if st in c.get("stage_ms", {})]
        if vals:
            stage_ms[st] = {"p50": _pct(vals, 0.5), "p95": _pct(vals, 0.95)}
    published = sum(expected.values())
    scanner = run.scanner
    waits = [float(x) for x in (scanner.queue_waits_ms if scanner else [])]
    violations = check_invariants(obs.events, run.worlds, run.scanner_world)
    if len(completed) < run.vehicles_passed:
        violations.append(f"{run.vehicles_passed - len(completed)} vehicles passed the barrier without a passage")
    rejected_reasons: dict[str, int] = defaultdict(int)
    for e in obs.events:
        if e["type"] == "portlane.command.rejected":
            rejected_reasons[e["data"]["reason"]] += 1
    return {
        "passages": len(completed),
        "released": sum(1 for c in completed if c["outcome"] == "released"),
        "inspected": sum(1 for c in completed if c["inspected"]),
        "diverted": sum(1 for c in completed if c["outcome"] == "diverted"),
        "overrides": _count(run, "override.applied"),
        "events_published": published,
        "events_received": obs.received,
        "events_lost": obs.lost(expected),
        "duplicates": obs.duplicates,
        "out_of_order": sum(u.out_of_order for u in obs.units.values()),
        "invariant_violations": len(violations),
        "violations": violations[:20],
        "scans": _count(run, "scan.completed"),
        "scans_ordered": len(run.central.stats.inspected_passages) if run.central else 0,
        "scanner_utilisation": scanner.utilisation() if scanner else 0.0,
        "scan_queue_wait_ms": {"p50": _pct(waits, 0.5), "p95": _pct(waits, 0.95)},
        "rejected_commands": sum(rejected_reasons.values()),
        "rejected_by_reason": dict(rejected_reasons),
        "identity_corrections": _count(run, "identity.corrected"),
        "stage_ms": stage_ms,
        "recognition": _recognition_summary(run, completed),
        "time_factor": run.opts.time_factor,
        "wall_s": round(time.monotonic() - run.started, 1),
    }
