"""Simulators by name, and a whole site's worth of them from a raw site dict.

``SIMULATORS`` maps the names ``portlane sim <device>`` accepts to ``module:function``;
every start function has the shape ``async def start_x(world, *, faults=None, **opts)``
and returns a handle with ``.link`` (a site-config link dict), ``.faults`` and
``async close()``. Modules are imported lazily: a simulator whose module is not there
fails with ``SimulatorUnavailableError`` naming it, when (and only when) it is asked for.

``start_site`` reads the raw site dict (the YAML as loaded — simulators never import the
edge's configuration models) and starts one simulator per configured device. Devices on one
serial bus (the same ``link.bus``, or the same port when no bus is named) — RS-485 gates,
Modbus RTU gates and I/O modules, LED boards — share one simulated line (``SerialLine``),
one address each, as on the real cable, with one fault injector for the line.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .faults import FaultInjector
from .line import SerialLine
from .world import LaneWorld

__all__ = ["SIMULATORS", "SimulatorUnavailableError", "SiteSims", "load_simulator", "start_site"]

SIMULATORS: dict[str, str] = {
    "gate-rs485": "portlane.sim_devices.gate_rs485:start_gate",
    "gate-modbus": "portlane.sim_devices.modbus_gate:start_gate",
    "io": "portlane.sim_devices.io_module:start_io",
    "board": "portlane.sim_devices.board:start_board",
    "rfid": "portlane.sim_devices.rfid:start_rfid",
    "weighbridge": "portlane.sim_devices.weighbridge:start_weighbridge",
    "scanner": "portlane.sim_devices.scanner:start_scanner",
    "camera": "portlane.sim_devices.camera_http:start_camera",
    "rpm": "portlane.sim_devices.rpm:start_rpm",
    "seal-reader": "portlane.sim_devices.seal_reader:start_seal_reader",
}

#: (device kind, configured backend) -> simulator name
_BY_BACKEND: dict[tuple[str, str], str] = {
    ("gate", "rs485"): "gate-rs485",
    ("gate", "modbus_tcp"): "gate-modbus",
    ("gate", "modbus_rtu"): "gate-modbus",
    ("io", "modbus_tcp"): "io",
    ("io", "modbus_rtu"): "io",
    ("board", "serial"): "board",
    ("rfid", "serial"): "rfid",
    ("weighbridge", "serial"): "weighbridge",
    ("camera", "opencv"): "camera",
    ("scanner", "modbus_tcp"): "scanner",
    ("rpm", "rapiscan"): "rpm",
    ("seal_reader", "serial"): "seal-reader",
}

StartFn = Callable[..., Awaitable[Any]]


class SimulatorUnavailableError(LookupError):
    """No simulator of that name, or its module cannot be imported (yet)."""


def load_simulator(name: str) -> StartFn:
    try:
        target = SIMULATORS[name]
    except KeyError:
        raise SimulatorUnavailableError(f"no simulator {name!r}; known: {', '.join(sorted(SIMULATORS))}") from None
    module_name, _, fn_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SimulatorUnavailableError(f"simulator {name!r} ({target}) cannot be imported: {exc}") from exc
    fn = getattr(module, fn_name, None)
    if fn is None:
        raise SimulatorUnavailableError(f"simulator {name!r}: {module_name} has no {fn_name}")
    start: StartFn = fn
    return start


def simulator_for(kind: str, backend: str) -> str:
    try:
        return _BY_BACKEND[(kind, backend)]
    except KeyError:
        raise SimulatorUnavailableError(f"no simulator for a {kind} with backend {backend!r}") from None


@dataclass
class SiteSims:
    """Every simulator of a site. ``links`` mirrors the site's device tree with simulator links."""

    links: dict[str, Any] = field(default_factory=lambda: {"lanes": {}, "scanners": {}})
    #: lane -> device -> path of the listening tap on its RS-485 line (``start_site(taps=True)``)
    taps: dict[str, dict[str, str]] = field(default_factory=dict)
    handles: list[Any] = field(default_factory=list)
    faults: dict[str, FaultInjector] = field(default_factory=dict)  # "lane/device[/cam]" -> injector
    _closed: bool = False

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for h in reversed(self.handles):
            await h.close()

    async def __aenter__(self) -> SiteSims:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _merged(configured: dict[str, Any], sim_link: dict[str, Any]) -> dict[str, Any]:
    """The configured link with the simulator's address in it (keeps e.g. the bus name)."""
    if configured.get("kind") == sim_link.get("kind"):
        return {**configured, **sim_link}
    return dict(sim_link)


def _link_serial_opts(link: dict[str, Any]) -> dict[str, Any]:
    return {"baudrate": link["baudrate"]} if link.get("kind") == "serial" and "baudrate" in link else {}


def _on_a_bus(kind: str, dev: dict[str, Any]) -> bool:
    """Devices the drivers reach through the RS-485 bus scheduler (addressed, polled)."""
    if dev["link"].get("kind") != "serial":
        return False
    return (kind, dev["backend"]) in {
        ("gate", "rs485"),
        ("gate", "modbus_rtu"),
        ("io", "modbus_rtu"),
        ("board", "serial"),
        ("seal_reader", "serial"),
    }


async def start_site(
    site: dict[str, Any],
    worlds: dict[str, LaneWorld],
    *,
    scanner_worlds: dict[str, Any] | None = None,
    time_factor: float = 1.0,
    seed: int = 0,
    taps: bool = False,
) -> SiteSims:
    """Start one simulator per device configured in ``site`` (the raw YAML dict).

    ``worlds`` maps lane id -> LaneWorld (missing lanes get a new world with ``time_factor``);
    ``scanner_worlds`` maps scanner id -> the scanner simulator's own world object.
    Every simulator gets its own seeded ``FaultInjector`` (``sims.faults["c1/gate"]``).
    With ``taps`` every RS-485 line also gets a listening second adapter (``sims.taps``).
    """
    sims = SiteSims()
    n = 0

    def injector(key: str) -> FaultInjector:
        nonlocal n
        n += 1
        inj = sims.faults[key] = FaultInjector(seed=seed + n)
        return inj

    try:
        # Devices on a serial bus: grouped by bus (or by port when no bus is named).
        buses: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
        for lane in site.get("lanes", []):
            lane_id = lane["id"]
            world = worlds.setdefault(lane_id, LaneWorld(lane_id, time_factor=time_factor))
            links: dict[str, Any] = {"cameras": {}}
            sims.links["lanes"][lane_id] = links
            for kind, dev in (lane.get("devices") or {}).items():
                if kind == "cameras":
                    for cam_id, cam in (dev or {}).items():
                        start = load_simulator(simulator_for("camera", cam["backend"]))
                        h = await start(
                            world,
                            faults=injector(f"{lane_id}/cameras/{cam_id}"),
                            view=cam_id,
                            camera_id=cam_id,
                            lane_id=lane_id,
                            time_factor=time_factor,
                        )
                        sims.handles.append(h)
                        links["cameras"][cam_id] = _merged(cam["link"], h.link)
                    continue
                if dev is None:
                    continue
                if _on_a_bus(kind, dev):
                    key = dev["link"].get("bus") or dev["link"]["url"]
                    buses.setdefault(key, []).append((lane_id, kind, dev))
                    continue
                name = simulator_for(kind, dev["backend"])
                start = load_simulator(name)
                opts: dict[str, Any] = {"time_factor": time_factor, "lane_id": lane_id}
                if kind in ("gate", "io"):
                    opts["transport"] = "rtu" if dev["backend"].endswith("_rtu") else "tcp"
                    opts["unit"] = dev.get("unit", 1)
                opts.update(_link_serial_opts(dev["link"]))
                h = await start(world, faults=injector(f"{lane_id}/{kind}"), **opts)
                sims.handles.append(h)
                links[kind] = _merged(dev["link"], h.link)
        for key, members in buses.items():
            await _start_bus(sims, key, members, worlds, injector(f"bus:{key}"), tap=taps)
        for scanner in site.get("scanners", []):
            sid = scanner["id"]
            start = load_simulator(simulator_for("scanner", scanner["device"]["backend"]))
            sworld = (scanner_worlds or {}).get(sid)
            h = await start(
                sworld,
                faults=injector(f"scanners/{sid}"),
                unit=scanner["device"].get("unit", 1),
                time_factor=time_factor,
            )
            sims.handles.append(h)
            sims.links["scanners"][sid] = _merged(scanner["device"]["link"], h.link)
    except BaseException:
        await sims.close()
        raise
    return sims


async def _start_bus(
    sims: SiteSims,
    key: str,
    members: list[tuple[str, str, dict[str, Any]]],
    worlds: dict[str, LaneWorld],
    faults: FaultInjector,
    *,
    tap: bool = False,
) -> None:
    """One simulated line for every device configured on bus ``key`` (and its tap)."""
    units = [int(dev.get("unit", 1)) for _, _, dev in members]
    dup = sorted({u for u in units if units.count(u) > 1})
    if dup:
        raise ValueError(f"two devices share the RS-485 address {dup[0]} on bus {key!r}")
    line = SerialLine(faults, **_link_serial_opts(members[0][2]["link"]), name=f"ttyBUS{len(sims.handles)}")
    await line.start()
    sims.handles.append(_LineCloser(line))  # closes the line if no device got onto it
    tap_path = await line.add_tap() if tap else None
    rs485 = [(lane_id, dev) for lane_id, kind, dev in members if dev["backend"] == "rs485"]
    if rs485:
        start = load_simulator("gate-rs485")
        served = {int(dev.get("unit", 1)): worlds[lane_id] for lane_id, dev in rs485}
        sims.handles.append(await start(None, worlds=served, line=line))
    for lane_id, kind, dev in members:
        if dev["backend"] != "rs485":
            start = load_simulator(simulator_for(kind, dev["backend"]))
            unit = int(dev.get("unit", 1))
            sims.handles.append(await start(worlds[lane_id], transport="rtu", unit=unit, address=unit, line=line))
        sims.faults[f"{lane_id}/{kind}"] = faults
        sim_link = {"kind": "serial", "url": line.path, "baudrate": line.baudrate, "bytesize": 8, "parity": "N"}
        sims.links["lanes"][lane_id][kind] = _merged(dev["link"], sim_link | {"stopbits": 1})
        if tap_path is not None:
            sims.taps.setdefault(lane_id, {})[kind] = tap_path


@dataclass
class _LineCloser:
    """Closes a shared line at site shutdown unless its devices' handles already did."""

    line: SerialLine

    async def close(self) -> None:
        if self.line.users <= 0:
            await self.line.close()
