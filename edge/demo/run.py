"""``portlane demo``: a whole simulated port on one machine.

The composition root for simulations (with ``edge/cli``, the only part of ``edge`` that may
import ``sim_devices``): it starts a broker (the embedded one unless ``--broker``), the
wire-level device simulators of every lane, the lane daemons and the scanner daemon — the
same classes systemd runs — a traffic generator, a central-platform simulator that signs
its decisions, and an independent subscriber that counts what really reached the broker.

At the end it checks invariants from the broker's side and the simulated physics, and
summarises the run (``report.py``).

When it gives up (``--timeout``) the summary still comes out, with ``timed_out`` and what
each unfinished lane was doing (``stuck_lanes``). Whatever happens, it leaves nothing behind:
the temporary state directory is removed and every simulator, daemon and broker stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from portlane.edge.config import MqttProtocol, parse_site
from portlane.edge.delivery.state import check_state_dir
from portlane.edge.demo.broker import EmbeddedBroker
from portlane.edge.demo.observer import OBSERVER, DemoObserver
from portlane.edge.demo.options import DEFAULT_SITE, SITES_DIR, DemoOptions, check_broker_url, load_demo_site
from portlane.edge.demo.predecisions import declarations_for
from portlane.edge.demo.report import DemoRun, count_events, stuck_lanes, summarise
from portlane.edge.demo.sitegen import LANE_ORDER, apply_links, demo_site
from portlane.edge.errors import BrokerUnreachableError, DemoError, PortlaneError, UsageError
from portlane.edge.lane.daemon import LaneDaemon
from portlane.edge.lane.passage import LaneTimeouts
from portlane.edge.platform import CentralPlatform
from portlane.edge.platform.declarations import Policy
from portlane.edge.scanner.daemon import ScannerDaemon
from portlane.edge.trust.pki import provision_unit_keys
from portlane.sim_devices.cargo_desk import CargoDesk
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
#: The platform's online path: an officer looks at an identification the lane did not decide
#: itself (no pre-decision, or one that did not match) before the agencies answer — 30 s of
#: physical time, an assumption of the simulation (the summary states it: ``online_review_s``).
#: A vehicle released on its pre-decisions never waits for it.
ONLINE_REVIEW_S = 30.0
#: Cargo traffic (issue 21): a share of trucks with a radioactive load (NORM, medical, a real
#: source in turn) and a share arriving with a seal tampered with or foreign. Real traffic alarms
#: about one truck in a hundred; a demo shows every case within a few dozen trucks.
RADIATION_RATIO = 0.1
SEAL_FAULT_RATIO = 0.08


async def run_demo(opts: DemoOptions, *, on_tick: Callable[[DemoRun], None] | None = None) -> dict[str, Any]:
    """Run the simulated port; return the summary (also when it gives up: ``timed_out``).

    Raises ``UsageError`` (bad option, a site the demo cannot simulate), ``ConfigError``
    (the site file), ``BrokerUnreachableError`` (--broker does not answer) or ``StateError``
    (the temporary state directory cannot be written). Leaves nothing behind: the state
    directory is removed, every task, simulator and broker stopped."""
    from portlane.sim_devices.catalog import SimulatorUnavailableError, start_site

    opts = opts.validated()
    raw = with_demo_clients(demo_site(load_demo_site(opts.site_file), opts.lanes, cameras=opts.with_cameras))
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
    library = _images(opts, plan)
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
            from portlane.edge.demo.broker import MosquittoBroker
            from portlane.edge.demo.secure import secure_demo

            if not MosquittoBroker.available():
                raise DemoError(
                    "--secure runs the shipped secure configuration on Mosquitto, which is not installed here; "
                    "install it (apt-get install mosquitto) or leave out --secure"
                )

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
        raw = with_demo_clients(raw, replay=True)  # keyed now: the console and the observer ask for replays
        try:
            sims = await start_site(
                raw, worlds, scanner_worlds={sid: scanner_world for sid in scanner_ids}, time_factor=opts.time_factor
            )
        except SimulatorUnavailableError as exc:
            raise UsageError(f"{opts.site_file}: the demo cannot simulate this site: {exc}") from exc
        for h in sims.handles if library is not None else ():
            if hasattr(h, "sim") and hasattr(h.sim, "library"):
                h.sim.library = library  # the cameras show the photographs (--images)
        try:
            return await _run(
                opts, raw, sims.links, keys, plan, worlds, scanner_world, state_dir, url, protocol, secure, on_tick
            )
        finally:
            await _to_the_end(sims.close())
    finally:
        if broker is not None:
            await _to_the_end(broker.stop())
        if secure is not None:
            await _to_the_end(secure.close())
        tmp.cleanup()


def with_demo_clients(raw: dict[str, Any], *, replay: bool = False) -> dict[str, Any]:
    """The site with the demo's readers — its ``console`` and its ``observer`` — as clients
    (added when the site file has none): the demo gives each a key (and, under ``--secure``, a
    certificate). ``replay``, once they have their keys: each may sign ``replay_events``, and
    asks the lanes and the scanner for what it missed with its own key."""
    from portlane.edge.demo.console import CONSOLE

    raw = copy.deepcopy(raw)
    clients = raw.setdefault("clients", []) or []
    for unit in (CONSOLE, OBSERVER):
        entry = next((c for c in clients if c.get("id") == unit), None)
        if entry is None:
            entry = {"id": unit, "role": "console"}
            clients.append(entry)
        if replay and entry.get("key"):
            entry["commands"] = sorted({"replay_events", *(entry.get("commands") or ())})
    raw["clients"] = clients
    return raw


async def _to_the_end(closing: Coroutine[Any, Any, None]) -> None:
    """Run a clean-up to its end, also when this task is being cancelled (Ctrl-C, SIGTERM).

    The simulators' ``close`` re-raise a cancellation aimed at their caller as soon as they have
    stopped their own tasks — right for a caller that is cancelled, but a cancelled demo then
    leaves the rest of its simulators (and their clients' tasks) running, and asyncio prints a
    traceback for each when the loop ends. In its own task the clean-up is nobody's
    cancellation; the demo's own ``CancelledError`` goes on afterwards, as it must."""
    await asyncio.create_task(closing, name="demo-cleanup")


def _images(opts: DemoOptions, plan: TrafficPlan) -> Any:
    """``--images``: the photographs' library, the plan's vehicles dressed with their identities."""
    if opts.images is None:
        return None
    from portlane.sim_devices.camera_http import LabelledImages, LabelledImagesError

    try:
        library = LabelledImages(opts.images)
    except LabelledImagesError as exc:
        raise UsageError(f"--images {opts.images}: {exc}") from None
    library.dress([v for vs in plan.per_lane.values() for v in vs], plan.registrations)
    return library


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


async def _subscribed(observer: DemoObserver, url: str, external: bool) -> None:
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
    site = parse_site(apply_links(raw, links), file=str(opts.site_file))
    run = DemoRun(opts, site, plan, worlds, scanner_world, broker_url=url)
    policy = Policy(
        share=opts.declared,
        mix=opts.mix,
        containers_read=opts.recognition,
        time_factor=opts.time_factor,
        seed=opts.seed,
        run="pd",
    )
    run.declarations = declarations_for(plan, site, policy)
    # What a platform gets of the run, through the consumer library: verified, once, and what it
    # misses (a broker restart) it has replayed with its own key — its "lost" is lost. Under
    # --secure it connects with its own certificate (units/observer).
    observer = run.observer = DemoObserver(site, url=url, protocol=protocol)
    recogniser = None
    if opts.recognition:
        from portlane.edge.lane.recognition import LocalRecogniser, camera_rois

        # one recognition worker (two frames at once on two cores), one set of ONNX sessions for all lanes
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
    # The platform believes only what the units signed (the consumer library); under --secure it
    # connects with the platform's certificate (the site file's TLS files for unit "platform").
    central = run.central = CentralPlatform(
        site,
        key_id=keys["key_id"],
        private_key_b64=keys["private_key"],
        url=url,
        protocol=protocol,
        inspect_ratio=opts.inspect_ratio,
        forged=opts.inject_forged,
        seed=opts.seed,
        think_s=2.0 * opts.time_factor,
        registrations=plan.registrations,
        declarations=run.declarations,
        review_s=ONLINE_REVIEW_S * opts.time_factor,
        desks=[CargoDesk(plan.cargo)],  # the officers of the cargo lanes' radiation alarms and seals
    )
    async with contextlib.AsyncExitStack() as exits:
        if opts.console or opts.console_db:
            from portlane.edge.demo.console import demo_console

            await exits.enter_async_context(
                demo_console(
                    site,
                    broker_url=url,
                    broker_protocol=protocol,
                    http=opts.console,
                    # without --console-db, in the run's own temporary directory (removed at the end)
                    db=opts.console_db or state_dir.parent / "console.db",
                    time_factor=opts.time_factor,
                )
            )
        try:
            return await _drive(run, observer, central, plan, worlds, scanner_world, url, protocol, on_tick)
        except* PortlaneError as eg:
            raise eg.exceptions[0] from None  # one line for the CLI, not a group
    raise AssertionError("unreachable: the block returns or raises")


async def _drive(
    run: DemoRun,
    observer: DemoObserver,
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
        if count_events(run, "passage.completed") >= plan.total:
            completed.set()

    observer.on_event(on_event)
    stop = asyncio.Event()
    expected: dict[str, int] = {}
    async with asyncio.TaskGroup() as tg:
        bg = [
            tg.create_task(observer.run(), name="observer"),
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
            # The declarations are lodged before the vehicles set off (each pre-decision answered).
            t0 = time.monotonic()
            sent = await central.declare()
            log.info("demo: %d declaration commands answered in %.1f s", sent, time.monotonic() - t0)
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
                run.stuck = stuck_lanes(run)
                log.error("demo: timed out after %.0f s; stuck lanes: %s", opts.timeout_s, run.stuck)
            else:
                await asyncio.gather(*traffic)
                if opts.inject_forged and central.forged_left:
                    await central.flush_forgeries(next(iter(run.lanes)))
                # Let the rejections of the last forgeries reach the observer.
                with contextlib.suppress(TimeoutError):
                    await observer.wait_for(
                        lambda: count_events(run, "command.rejected") >= opts.inject_forged, timeout=30
                    )
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
                # One last frame, with the lanes still up: the live table ends on the final
                # count (40/40), not on the frame of up to TICK_S before it (39/40).
                assert on_tick is not None
                on_tick(run)
            stop.set()
            await asyncio.gather(*daemons, return_exceptions=True)
            # Everything the daemons published before they stopped is on the broker.
            expected = {lid: d.unit.outbox.last_seq for lid, d in run.lanes.items()}
            if run.scanner:
                expected[run.scanner.cfg.id] = run.scanner.unit.outbox.last_seq
            with contextlib.suppress(TimeoutError):
                await observer.wait_for(
                    lambda: observer.complete(expected),
                    timeout=DRAIN_WAIT_S,
                )
            for t in [*bg, *traffic]:
                t.cancel()
    return summarise(run, expected)


async def _ticker(run: DemoRun, on_tick: Callable[[DemoRun], None]) -> None:
    while True:
        on_tick(run)
        await asyncio.sleep(TICK_S)
