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
  * ``seq`` strictly increasing per unit, no gaps (``events_lost``), duplicates counted;
  * no radiation alarm released before an adjudication that lets it go, no automatic release
    with a seal exception (``cargo_report.py``, which also counts the cargo lanes' figures).

When it gives up (``--timeout``) the summary still comes out, with ``timed_out`` and what
each unfinished lane was doing (``stuck_lanes``). Whatever happens, it leaves nothing behind:
the temporary state directory is removed and every simulator, daemon and broker stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import logging
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from portlane.edge.config import MqttProtocol, Site, parse_site
from portlane.edge.contract.events import STAGES
from portlane.edge.delivery.state import check_state_dir
from portlane.edge.demo.broker import EmbeddedBroker
from portlane.edge.demo.cargo_report import cargo_summary, cargo_violations
from portlane.edge.demo.observer import EventObserver
from portlane.edge.demo.options import DEFAULT_SITE, SITES_DIR, DemoOptions, check_broker_url, load_demo_site
from portlane.edge.demo.sitegen import LANE_ORDER, demo_site
from portlane.edge.errors import BrokerUnreachableError, DemoError, PortlaneError, UsageError
from portlane.edge.lane.daemon import LaneDaemon
from portlane.edge.lane.passage import LaneTimeouts
from portlane.edge.scanner.daemon import ScannerDaemon
from portlane.edge.trust.pki import provision_unit_keys
from portlane.sim_devices.cargo_desk import CargoDesk
from portlane.sim_devices.central import CentralPlatform
from portlane.sim_devices.scanner import ScannerWorld
from portlane.sim_devices.traffic import TrafficPlan, make_plan, run_lane
from portlane.sim_devices.world import LaneWorld

__all__ = [
    "DEFAULT_SITE",
    "LANE_ORDER",
    "BrokerUnreachableError",
    "DemoError",
    "DemoOptions",
    "UsageError",
    "run_demo",
]

if TYPE_CHECKING:  # the PKI stack loads only with --secure
    from portlane.edge.demo.secure import SecureDemo

log = logging.getLogger(__name__)

KEYS_FILE = SITES_DIR.parent / "demo_keys.yaml"
#: How long the demo waits for an external broker (--broker) to accept a TCP connection before
#: it says the broker is unreachable. A broker on the local network answers in milliseconds;
#: this covers one that is still starting.
BROKER_WAIT_S = 5.0
#: Then every client (observer, platform, each lane) must have its MQTT session within this
#: long, plus CONNECT_PER_LANE_S per lane: dozens of lanes start at once on a busy machine.
CONNECT_WAIT_S = 30.0
CONNECT_PER_LANE_S = 1.0
#: At the end: how long the daemons' last events may take to reach the observer.
DRAIN_WAIT_S = 10.0
#: How often the live view is redrawn.
TICK_S = 0.25
#: Cargo traffic (issue 21): a share of trucks with a radioactive load (NORM, medical, a real
#: source in turn) and a share arriving with a seal tampered with or foreign. Real traffic alarms
#: about one truck in a hundred; a demo shows every case within a few dozen trucks.
RADIATION_RATIO = 0.1
SEAL_FAULT_RATIO = 0.08


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
    passed_by_lane: dict[str, int] = field(default_factory=dict)
    recogniser: Any = None
    started: float = field(default_factory=time.monotonic)
    timed_out: bool = False
    stuck: dict[str, dict[str, Any]] = field(default_factory=dict)


def _select_lanes(raw: dict[str, Any], n: int) -> dict[str, Any]:
    """Kept for callers of the old name: ``sitegen.demo_site``."""
    return demo_site(raw, n)


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


async def run_demo(opts: DemoOptions, *, on_tick: Callable[[DemoRun], None] | None = None) -> dict[str, Any]:
    """Run the simulated port; return the summary (also when it gives up: ``timed_out``).

    Raises ``UsageError`` (bad option, a site the demo cannot simulate), ``ConfigError``
    (the site file), ``BrokerUnreachableError`` (--broker does not answer) or ``StateError``
    (the temporary state directory cannot be written). Leaves nothing behind: the state
    directory is removed, every task, simulator and broker stopped."""
    from portlane.sim_devices.catalog import SimulatorUnavailableError, start_site

    opts = opts.validated()
    raw = demo_site(load_demo_site(opts.site_file), opts.lanes, cameras=opts.with_cameras)
    keys = yaml.safe_load(KEYS_FILE.read_text(encoding="utf-8"))
    lanes_kind = {lane["id"]: lane["kind"] for lane in raw["lanes"]}
    plan = make_plan(
        lanes_kind,
        opts.vehicles,
        seed=opts.seed,
        swapped_ratio=0.05,
        radiation_ratio=RADIATION_RATIO,
        seal_fault_ratio=SEAL_FAULT_RATIO,
    )
    worlds = {lane: LaneWorld(lane, time_factor=opts.time_factor) for lane in lanes_kind}
    for i, w in enumerate(worlds.values()):
        w.arm_move_s = 1.0 + (i % 3) * 0.5  # gates take 1–2 s to move
    scanner_world = ScannerWorld(time_factor=opts.time_factor, seed=opts.seed)
    scanner_ids = [s["id"] for s in raw.get("scanners", [])]

    tmp = tempfile.TemporaryDirectory(prefix="portlane-demo-")  # removed below, whatever happens
    broker: EmbeddedBroker | None = None
    secure: SecureDemo | None = None
    try:
        state_dir = Path(tmp.name) / "state"
        check_state_dir(state_dir, min_free_mb=1.0)
        protocol: MqttProtocol | None = None
        if not opts.secure:
            # Every lane and scanner signs its events, as on a real site: the lanes act only on
            # scan results the scanner's key signed, the scanner only on requests a lane signed.
            raw = provision_unit_keys(raw, Path(tmp.name) / "keys", keep_existing=True)
        if opts.secure:
            from portlane.edge.demo.secure import secure_demo

            secure = secure_demo(raw)
            raw = secure.raw
            await secure.broker.start()
            url = secure.broker.url
        elif opts.broker:
            url = opts.broker
            await _probe_broker(url, BROKER_WAIT_S)
        else:
            broker = EmbeddedBroker()
            await broker.start()
            url, protocol = broker.url, "3.1.1"
        try:
            sims = await start_site(
                raw, worlds, scanner_worlds={sid: scanner_world for sid in scanner_ids}, time_factor=opts.time_factor
            )
        except SimulatorUnavailableError as exc:
            raise UsageError(f"{opts.site_file}: the demo cannot simulate this site: {exc}") from exc
        try:
            return await _run(
                opts, raw, sims.links, keys, plan, worlds, scanner_world, state_dir, url, protocol, secure, on_tick
            )
        finally:
            await sims.close()
    finally:
        if broker is not None:
            await broker.stop()
        if secure is not None:
            await secure.close()
        tmp.cleanup()


async def _probe_broker(url: str, wait_s: float) -> None:
    """Fail fast, naming the URL, when nothing accepts TCP connections there within ``wait_s``."""
    host, port = check_broker_url(url)
    last: OSError | None = None
    try:
        async with asyncio.timeout(wait_s):
            while True:
                try:
                    _r, w = await asyncio.open_connection(host, port)
                except OSError as exc:
                    last = exc
                    await asyncio.sleep(0.2)
                    continue
                w.close()
                with contextlib.suppress(OSError):
                    await w.wait_closed()
                return
    except TimeoutError:
        why = f"{last.strerror or last}" if last is not None else "no answer"
        raise BrokerUnreachableError(
            f"--broker {url}: no MQTT broker reachable within {wait_s:.0f} s ({why}); "
            "start the broker, or leave out --broker to use the embedded one"
        ) from None


async def _subscribed(observer: EventObserver, url: str, external: bool) -> None:
    try:
        async with asyncio.timeout(CONNECT_WAIT_S):
            await observer.link.wait_subscribed()
    except TimeoutError:
        where = f"--broker {url}" if external else f"the embedded broker ({url})"
        error = BrokerUnreachableError if external else DemoError
        raise error(f"{where}: the observer got no MQTT session within {CONNECT_WAIT_S:.0f} s") from None


async def _all_connected(run: DemoRun, url: str, external: bool) -> None:
    """Every client has its MQTT session, or ``BrokerUnreachableError`` naming who has not."""
    assert run.observer is not None and run.central is not None
    clients: dict[str, Any] = {"the observer": run.observer.link, "the central platform": run.central}
    clients.update({f"lane {lid}": d.unit.link for lid, d in run.lanes.items()})
    wait_s = CONNECT_WAIT_S + CONNECT_PER_LANE_S * len(run.lanes)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait_s):
            await asyncio.gather(*(c.wait_connected() for c in clients.values()))
            # Each lane accepted the platform's signed registrations (expected vehicles).
            await run.central.wait_registered(run.lanes)
            return
    late = [name for name, c in clients.items() if not c.connected]
    if not late:
        unregistered = [lid for lid in run.lanes if lid not in run.central.registered]
        raise DemoError(
            f"lanes {', '.join(unregistered)} did not accept the platform's registrations within {wait_s:.0f} s"
        )
    if external:
        raise BrokerUnreachableError(
            f"--broker {url}: {', '.join(late)} got no MQTT session within {wait_s:.0f} s (the port answers: "
            "is it an MQTT broker, and does it allow anonymous clients?)"
        )
    raise DemoError(
        f"the embedded broker ({url}) gave {', '.join(late)} no MQTT session within {wait_s:.0f} s: the machine "
        "is too busy for this many lanes; try fewer, or --broker with Mosquitto"
    )


async def _run(
    opts: DemoOptions,
    raw: dict[str, Any],
    links: dict[str, Any],
    keys: dict[str, Any],
    plan: TrafficPlan,
    worlds: dict[str, LaneWorld],
    scanner_world: ScannerWorld,
    state_dir: Path,
    url: str,
    protocol: MqttProtocol | None,
    secure: SecureDemo | None,
    on_tick: Callable[[DemoRun], None] | None,
) -> dict[str, Any]:
    site = parse_site(_apply_links(raw, links), file=str(opts.site_file))
    run = DemoRun(opts, site, plan, worlds, scanner_world)
    tls: dict[str, str] | None = None
    if secure is not None:
        from portlane.edge.demo.secure import OBSERVER

        tls = secure.link_tls(OBSERVER)
    observer = run.observer = EventObserver(url, site.site.id, protocol=protocol or "auto", tls=tls)
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
    central = run.central = CentralPlatform(
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
        cargo=CargoDesk(plan.cargo),
    )
    async with contextlib.AsyncExitStack() as exits:
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
        try:
            return await _drive(run, observer, central, plan, worlds, scanner_world, url, protocol, on_tick)
        except* PortlaneError as eg:
            raise eg.exceptions[0] from None  # one line for the CLI, not a group
    raise AssertionError("unreachable: the block returns or raises")


async def _drive(
    run: DemoRun,
    observer: EventObserver,
    central: CentralPlatform,
    plan: TrafficPlan,
    worlds: dict[str, LaneWorld],
    scanner_world: ScannerWorld,
    url: str,
    protocol: MqttProtocol | None,
    on_tick: Callable[[DemoRun], None] | None,
) -> dict[str, Any]:
    opts = run.opts
    completed = asyncio.Event()

    def on_event(_ev: dict[str, Any]) -> None:
        if _count(run, "passage.completed") >= plan.total:
            completed.set()

    observer.on_event(on_event)
    stop = asyncio.Event()
    expected: dict[str, int] = {}
    async with asyncio.TaskGroup() as tg:
        bg = [
            tg.create_task(observer.link.run(), name="observer"),
            tg.create_task(central.run(), name="central"),
            tg.create_task(scanner_world.run(), name="scanner-physics"),
        ]
        bg += [tg.create_task(w.run(), name=f"{lane}-physics") for lane, w in worlds.items()]
        # The observer counts what reached the broker: it must be subscribed before any
        # daemon publishes its first event.
        await _subscribed(observer, url, external=opts.broker is not None)
        daemons = [tg.create_task(d.run(stop), name=f"lane-{lid}") for lid, d in run.lanes.items()]
        if run.scanner:
            daemons.append(tg.create_task(run.scanner.run(stop), name="scanner"))
        traffic: list[asyncio.Task[list[bool]]] = []
        ticker: asyncio.Task[None] | None = None
        try:
            await _all_connected(run, url, external=opts.broker is not None)
            traffic = [
                tg.create_task(run_lane(worlds[lane], vs, headway_s=1.0), name=f"traffic-{lane}")
                for lane, vs in plan.per_lane.items()
            ]
            ticker = tg.create_task(_ticker(run, on_tick), name="live") if on_tick else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(opts.timeout_s):
                    await completed.wait()
            if not completed.is_set():
                run.timed_out = True
                run.stuck = _stuck_lanes(run)
                log.error("demo: timed out after %.0f s; stuck lanes: %s", opts.timeout_s, run.stuck)
            else:
                await asyncio.gather(*traffic)
                if opts.inject_forged and central.forged_left:
                    await central.flush_forgeries(next(iter(run.lanes)))
                # Let the rejections of the last forgeries reach the observer.
                with contextlib.suppress(TimeoutError):
                    await observer.wait_for(lambda: _count(run, "command.rejected") >= opts.inject_forged, timeout=30)
            # Per lane whose traffic is over (all of them unless the run gave up): a vehicle
            # through without a passage of its own is a violation whether or not the run finished.
            run.passed_by_lane = {
                lane: sum(t.result())
                for lane, t in zip(plan.per_lane, traffic, strict=True)
                if t.done() and not t.cancelled() and t.exception() is None
            }
            run.vehicles_passed = sum(run.passed_by_lane.values())
        finally:
            # The live view goes first: it reads the lanes' status, which must not outlive them.
            if ticker is not None:
                ticker.cancel()
                await asyncio.gather(ticker, return_exceptions=True)
            stop.set()
            await asyncio.gather(*daemons, return_exceptions=True)
            # Everything the daemons published before they stopped is on the broker.
            expected = {lid: d.unit.outbox.last_seq for lid, d in run.lanes.items()}
            if run.scanner:
                expected[run.scanner.cfg.id] = run.scanner.unit.outbox.last_seq
            with contextlib.suppress(TimeoutError):
                await observer.wait_for(
                    lambda: all(observer.units[u].max_seq >= s for u, s in expected.items() if s),
                    timeout=DRAIN_WAIT_S,
                )
            for t in [*bg, *traffic]:
                t.cancel()
    return summarise(run, expected)


def _stuck_lanes(run: DemoRun) -> dict[str, dict[str, Any]]:
    """What each lane that has not finished is doing: what a technician would look at."""
    out: dict[str, dict[str, Any]] = {}
    done: Counter[str] = Counter()
    assert run.observer is not None
    for e in run.observer.events:
        if e["type"] == "portlane.passage.completed":
            done[e["source"].rsplit("/", 1)[-1]] += 1
    for lid, d in run.lanes.items():
        w = run.worlds[lid]
        stage = d.logic.stage.value
        if done[lid] >= len(run.plan.per_lane.get(lid, [])) and not w.vehicle and stage == "idle":
            continue
        sensors = d.logic.sensors
        gate = d.devices.slots.get("gate")
        out[lid] = {
            "stage": stage,
            "in_service": d.logic.in_service,
            "passage_id": d.logic.passage.id if d.logic.passage else None,
            "vehicle": w.vehicle.vid if w.vehicle else None,
            "vehicle_position": w.position.value,
            "sensors": dataclasses.asdict(sensors) if dataclasses.is_dataclass(sensors) else str(sensors),
            "gate": {
                "health": gate.supervisor.health.value if gate else None,
                "arm_angle": round(w.arm_angle, 1),
                "motion": w.motion.value,
            },
            "light": w.light,
            "passages": f"{done[lid]}/{len(run.plan.per_lane.get(lid, []))}",
        }
    return out


def _count(run: DemoRun, type_: str) -> int:
    assert run.observer is not None
    return sum(1 for e in run.observer.events if e["type"] == f"portlane.{type_}")


async def _ticker(run: DemoRun, on_tick: Callable[[DemoRun], None]) -> None:
    while True:
        on_tick(run)
        await asyncio.sleep(TICK_S)


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
    violations = check_invariants(obs.events, run.worlds, run.scanner_world) + cargo_violations(obs.events)
    done_by_lane: Counter[str] = Counter(
        e["source"].rsplit("/", 1)[-1] for e in obs.events if e["type"] == "portlane.passage.completed"
    )
    for lane, passed in sorted(run.passed_by_lane.items()):
        if done_by_lane[lane] < passed:
            violations.append(f"{lane}: {passed - done_by_lane[lane]} vehicles passed the barrier without a passage")
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
        "cargo": cargo_summary(obs.events),
        "stage_ms": stage_ms,
        "recognition": _recognition_summary(run, completed),
        "timed_out": run.timed_out,
        "stuck_lanes": run.stuck,
        "stream_restarts": obs.restarts,
        "time_factor": run.opts.time_factor,
        "wall_s": round(time.monotonic() - run.started, 1),
    }
