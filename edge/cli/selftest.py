"""``portlane selftest --site FILE [--sim] [--json]``: exercise every device of a site once.

Per device: gate open/close cycle, I/O inputs read and light set to red, board written,
tag read, weight read, scanner status (plus start and abort under ``--sim`` or with
``--allow-radiation``), camera snapshot, radiation portal health, seals read. Reported per
device: ok, latency of the first round trip in ms, duration of the whole exercise, error.

With ``--sim`` a simulator is started for every device (``SIMULATORS``, by kind and backend)
and the drivers are pointed at them; without it the configured links (real devices) are used.

Exit codes: 0 every device ok, 1 at least one failed, 2 bad site file or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from portlane.edge.cli._cargo_selftest import exercise as exercise_cargo
from portlane.edge.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from portlane.drivers.config import DeviceConfig
    from portlane.edge.config import Site
    from portlane.sim_devices.world import LaneWorld

T = TypeVar("T")

#: Deadline for one device's whole exercise: a real barrier takes up to ~6 s to open and
#: close again, a weighbridge up to ~3 s to settle, an RTSP camera ~2 s to deliver a frame.
DEVICE_DEADLINE_S = 20.0
#: Deadline for waiting on a physical movement (arm fully open / closed, scanner warm-up).
MOTION_TIMEOUT_S = 10.0
#: Deadline for a stable weight and for a tag read once a vehicle stands in the lane.
SETTLE_TIMEOUT_S = 5.0
#: Simulated time runs this much faster than life under --sim (a 2 s arm movement: 0.1 s).
SIM_TIME_FACTOR = 0.05
#: The scanner's 30 s warm-up and 10-40 s scans, scaled for --sim.
SIM_SCANNER_TIME_FACTOR = 0.01
#: The test vehicle put into each simulated lane so that readers and scales have something.
SIM_TAG = "E28011606000020ABCDE0001"
SIM_WEIGHT_KG = 32_500

#: Simulator start functions by (kind, backend).
SIMULATORS: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {
    ("gate", "modbus_tcp"): ("portlane.sim_devices.modbus_gate:start_gate", {"transport": "tcp"}),
    ("gate", "modbus_rtu"): ("portlane.sim_devices.modbus_gate:start_gate", {"transport": "rtu"}),
    ("gate", "rs485"): ("portlane.sim_devices.gate_rs485:start_gate", {}),
    ("io", "modbus_tcp"): ("portlane.sim_devices.io_module:start_io", {"transport": "tcp"}),
    ("io", "modbus_rtu"): ("portlane.sim_devices.io_module:start_io", {"transport": "rtu"}),
    ("board", "serial"): ("portlane.sim_devices.board:start_board", {}),
    ("rfid", "serial"): ("portlane.sim_devices.rfid:start_rfid", {}),
    ("weighbridge", "serial"): ("portlane.sim_devices.weighbridge:start_weighbridge", {}),
    ("camera", "opencv"): ("portlane.sim_devices.camera_http:start_camera", {}),
    ("scanner", "modbus_tcp"): ("portlane.sim_devices.scanner:start_scanner", {}),
    ("rpm", "rapiscan"): ("portlane.sim_devices.rpm:start_rpm", {}),
    ("seal_reader", "serial"): ("portlane.sim_devices.seal_reader:start_seal_reader", {}),
}


def register(sub: Any) -> None:
    p = sub.add_parser("selftest", help="exercise every device of a site once and report")
    p.add_argument("--site", required=True, metavar="FILE", help="site configuration YAML")
    p.add_argument("--sim", action="store_true", help="start simulators and test against them")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--lane", action="append", default=[], metavar="ID", help="only these lanes (repeatable)")
    p.add_argument(
        "--allow-radiation",
        action="store_true",
        help="on real devices, also start (and at once abort) a scan; never the default",
    )
    p.set_defaults(func=run)


@dataclass
class DeviceTarget:
    name: str  # "c1/gate", "c1/camera/plate_front", "xray-1"
    kind: str
    lane: str | None
    path: tuple[str | int, ...]  # where the DeviceConfig sits in the site dict
    config: DeviceConfig


@dataclass
class DeviceReport:
    device: str
    kind: str
    backend: str
    ok: bool
    latency_ms: float | None = None
    duration_ms: float | None = None
    error: str | None = None
    detail: str | None = None


def run(args: argparse.Namespace) -> int:
    from portlane.edge.config import load_site
    from portlane.edge.errors import ConfigError

    try:
        site = load_site(args.site)
    except ConfigError as exc:
        from .config import report_config_error

        return report_config_error(exc, as_json=args.json)
    unknown = set(args.lane) - {lane.id for lane in site.lanes}
    if unknown:
        print(f"selftest: unknown lane(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return EXIT_USAGE
    reports = asyncio.run(selftest(site, sim=args.sim, lanes=args.lane, allow_radiation=args.allow_radiation))
    ok = all(r.ok for r in reports)
    if args.json:
        print(
            json.dumps(
                {"site": site.site.id, "sim": args.sim, "ok": ok, "devices": [asdict(r) for r in reports]},
                ensure_ascii=False,
            )
        )
    else:
        _print_table(site.site.id, args.sim, reports)
    return EXIT_OK if ok else EXIT_FAILED


def _print_table(site_id: str, sim: bool, reports: list[DeviceReport]) -> None:
    """One row per device that fits 80 columns: name and result whole, the detail wraps."""
    from rich.table import Table

    from ._common import console

    table = Table(title=f"selftest {site_id}{' (simulators)' if sim else ''}")
    for col, kw in (("device", {}), ("result", {}), ("ms", {"justify": "right"})):
        table.add_column(col, no_wrap=True, **kw)  # type: ignore[arg-type]
    table.add_column("backend: detail / error", overflow="fold", ratio=1)
    for r in reports:
        ms = f"{r.latency_ms:.0f}" if r.latency_ms is not None else "-"
        ok = "[green]ok[/]" if r.ok else "[red]FAIL[/]"
        table.add_row(r.device, ok, ms, f"[dim]{r.backend}:[/] {r.error or r.detail or ''}")
    console().print(table)


# --------------------------------------------------------------------------- targets


def _targets(site: Site, lanes: list[str]) -> list[DeviceTarget]:
    out: list[DeviceTarget] = []
    for li, lane in enumerate(site.lanes):
        if lanes and lane.id not in lanes:
            continue
        devs = lane.devices
        for kind in ("gate", "io", "board", "rfid", "weighbridge", "rpm", "seal_reader"):
            cfg = getattr(devs, kind)
            if cfg is not None:
                out.append(DeviceTarget(f"{lane.id}/{kind}", kind, lane.id, ("lanes", li, "devices", kind), cfg))
        for cam, cfg in devs.cameras.items():
            out.append(
                DeviceTarget(
                    f"{lane.id}/camera/{cam}", "camera", lane.id, ("lanes", li, "devices", "cameras", cam), cfg
                )
            )
    wanted = {lane.scanner for lane in site.lanes if not lanes or lane.id in lanes}
    for si, sc in enumerate(site.scanners):
        if not lanes or sc.id in wanted:
            out.append(DeviceTarget(sc.id, "scanner", None, ("scanners", si, "device"), sc.device))
    return out


# --------------------------------------------------------------------------- simulators


def _resolve(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


async def _start_sims(
    site: Site, targets: list[DeviceTarget], stack: contextlib.AsyncExitStack
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Start one simulator per target; returns (links by target name, start errors by name)."""
    from portlane.sim_devices.world import LaneWorld, Seal, Vehicle, VehiclePosition

    worlds: dict[str, LaneWorld] = {}
    for t in targets:
        if t.lane is not None and t.lane not in worlds:
            w = LaneWorld(t.lane, time_factor=SIM_TIME_FACTOR)
            w.vehicle = Vehicle(
                plates=("粤Z1234港", "AB1234"),
                tag_id=SIM_TAG,
                containers=("CSQU3054383",),
                weight_kg=SIM_WEIGHT_KG,
                kind="truck",
                vid=f"selftest-{t.lane}",
                seals=(Seal(0x0A1B, 0x00C0FFEE, elock=True),),  # an e-lock on its container
            )
            worlds[t.lane] = w
    links: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for t in targets:
        entry = SIMULATORS.get((t.kind, t.config.backend))
        if entry is None:
            errors[t.name] = f"no simulator for a {t.kind} with backend {t.config.backend!r}"
            continue
        fn_name, opts = entry
        opts = dict(opts)
        if t.kind == "camera":
            opts["view"] = t.name.rsplit("/", 1)[-1]
        if t.kind in ("gate", "io"):
            opts["unit"] = t.config.unit
        if (t.kind == "gate" and t.config.backend == "rs485") or t.kind == "seal_reader":
            opts["address"] = t.config.unit
        if t.kind == "scanner":
            opts["time_factor"] = SIM_SCANNER_TIME_FACTOR
        try:
            start = _resolve(fn_name)
            handle = await start(worlds.get(t.lane) if t.lane else None, **opts)
        except Exception as exc:
            errors[t.name] = f"simulator did not start: {type(exc).__name__}: {exc}"
            continue
        stack.push_async_callback(handle.close)
        links[t.name] = dict(handle.link)
    # Readers and scales see the test vehicle standing in position in every lane.
    for w in worlds.values():
        w.position = VehiclePosition.IN_POSITION
        w.scale_kg = float(SIM_WEIGHT_KG)
        w.notify()
    return links, errors


def _with_links(site: Site, targets: list[DeviceTarget], links: dict[str, dict[str, Any]]) -> Site:
    """The same site with every simulated device's link replaced, re-validated as a whole."""
    from portlane.edge.config import parse_site

    data = site.model_dump(mode="python")
    for t in targets:
        if t.name not in links:
            continue
        node: Any = data
        for key in t.path:
            node = node[key]
        node["link"] = links[t.name]
    return parse_site(data, file="<selftest --sim>")


def _lookup(site: Site, path: tuple[str | int, ...]) -> DeviceConfig:
    node: Any = site
    for key in path:
        node = node[key] if isinstance(key, int) or isinstance(node, dict) else getattr(node, key)
    cfg: DeviceConfig = node
    return cfg


# --------------------------------------------------------------------------- exercises


async def _until(poll: Callable[[], Awaitable[T]], pred: Callable[[T], bool], deadline_s: float, period: float) -> T:
    """Poll a real device until ``pred(value)``; the device is the only source of truth here."""
    async with asyncio.timeout(deadline_s):
        while True:
            value = await poll()
            if pred(value):
                return value
            await asyncio.sleep(period)


async def _exercise(dev: Any, kind: str, cfg: DeviceConfig, *, fire: bool) -> tuple[float, str]:
    """Run the device's check; returns (first round trip in ms, detail)."""
    from portlane.drivers.base import BoardLine, LightColour
    from portlane.drivers.scanner_device import ScannerState

    t0 = time.perf_counter()
    first: list[float] = []

    def mark() -> None:
        if not first:
            first.append((time.perf_counter() - t0) * 1000)

    await dev.connect()
    period = cfg.poll_s
    if kind in ("rpm", "seal_reader"):  # read-only checks of the cargo-lane devices
        return await exercise_cargo(dev, kind, period, settle_s=SETTLE_TIMEOUT_S)
    if kind == "gate":
        t0 = time.perf_counter()
        await dev.status()
        mark()
        await dev.open()
        await _until(dev.status, lambda s: s.limit_open, MOTION_TIMEOUT_S, period)
        await dev.close_arm()
        st = await _until(dev.status, lambda s: s.limit_closed, MOTION_TIMEOUT_S, period)
        detail = f"open/close cycle ok, cycles={st.cycles}"
    elif kind == "io":
        t0 = time.perf_counter()
        inputs = await dev.read_inputs()
        mark()
        await dev.set_light(LightColour.RED)
        back = await dev.read_inputs()
        if back.light != LightColour.RED:
            raise RuntimeError(f"light reads back {back.light}, not red")
        detail = f"entry={int(inputs.entry_loop)} in_position={int(inputs.in_position)} exit={int(inputs.exit_loop)}"
    elif kind == "board":
        t0 = time.perf_counter()
        await dev.show([BoardLine("SELFTEST"), BoardLine("自检")])
        mark()
        detail = "2 lines written"
    elif kind == "rfid":
        t0 = time.perf_counter()
        tag = await dev.next_read(SETTLE_TIMEOUT_S)
        mark()
        detail = f"tag {tag.tag_id}" if tag is not None else "no tag in the field (link ok)"
    elif kind == "weighbridge":
        t0 = time.perf_counter()
        await dev.read_weight()
        mark()
        w = await dev.wait_stable(SETTLE_TIMEOUT_S)
        detail = f"{w.kg} kg stable"
    elif kind == "camera":
        t0 = time.perf_counter()
        frame = await dev.snapshot()
        mark()
        if frame.jpeg[:2] != b"\xff\xd8":
            raise RuntimeError("snapshot is not a JPEG")
        detail = f"{frame.width}x{frame.height}, {len(frame.jpeg) // 1024} KiB"
    elif kind == "scanner":
        t0 = time.perf_counter()
        st = await dev.status()
        mark()
        detail = f"state {st.state.name.lower()}"
        if fire:
            st = await _until(
                dev.status, lambda s: s.state in (ScannerState.READY, ScannerState.COMPLETE), MOTION_TIMEOUT_S, period
            )
            await dev.start(vehicle_ref="SELFTEST", lane=0, seq=0)
            await dev.abort()
            st = await dev.status()
            if st.radiation_on:
                raise RuntimeError("radiation still on after abort")
            detail = f"scan {st.scan_id} started and aborted, radiation off"
    else:
        raise RuntimeError(f"no self-test for a {kind}")
    return first[0] if first else (time.perf_counter() - t0) * 1000, detail


async def _test_one(t: DeviceTarget, cfg: DeviceConfig, *, fire: bool) -> DeviceReport:
    from portlane.drivers.registry import create

    report = DeviceReport(t.name, t.kind, cfg.backend, ok=False)
    start = time.perf_counter()
    dev = None
    try:
        dev = create(t.kind, t.name, cfg)
        async with asyncio.timeout(DEVICE_DEADLINE_S):
            report.latency_ms, report.detail = await _exercise(dev, t.kind, cfg, fire=fire)
        report.ok = True
    except TimeoutError as exc:
        report.error = str(exc) or f"no result within {DEVICE_DEADLINE_S:g} s"
    except Exception as exc:  # report every failure per device; CancelledError is not an Exception
        report.error = f"{type(exc).__name__}: {exc}"
    finally:
        if dev is not None:
            with contextlib.suppress(Exception):
                await dev.close()
        report.duration_ms = round((time.perf_counter() - start) * 1000, 1)
        if report.latency_ms is not None:
            report.latency_ms = round(report.latency_ms, 2)
    return report


async def selftest(
    site: Site, *, sim: bool, lanes: list[str] | None = None, allow_radiation: bool = False
) -> list[DeviceReport]:
    targets = _targets(site, lanes or [])
    async with contextlib.AsyncExitStack() as stack:
        start_errors: dict[str, str] = {}
        if sim:
            links, start_errors = await _start_sims(site, targets, stack)
            site = _with_links(site, targets, links)
        async with asyncio.TaskGroup() as tg:
            tasks = {}
            for t in targets:
                if t.name in start_errors:
                    continue
                cfg = _lookup(site, t.path)
                tasks[t.name] = tg.create_task(
                    _test_one(t, cfg, fire=sim or allow_radiation), name=f"selftest-{t.name}"
                )
        reports = []
        for t in targets:
            if t.name in start_errors:
                reports.append(DeviceReport(t.name, t.kind, t.config.backend, ok=False, error=start_errors[t.name]))
            else:
                reports.append(tasks[t.name].result())
    return reports
