"""Virtual devices: deterministic in-process fakes, registered like the real backends.

As python-can's ``virtual`` bus, this is a backend like any other — chosen by name from the
configuration and built by ``registry.create`` — so the code under test runs the same path it
runs against hardware (``Device._call``: deadlines, counters, error translation), without a
pty, a socket or a simulator process::

    gate: {backend: virtual, link: {kind: virtual, world: c1}}

Every device whose link names the same ``world`` shares one ``VirtualWorld``: the lane's
physical state as the devices see it. A test holds the same handle and plays the world's
part — sets inputs, reads what was commanded, injects faults::

    world = virtual_world("c1")                       # the world of link.world == "c1"
    gate = registry.create("gate", "c1/gate", cfg)    # cfg: backend virtual, link world c1
    await gate.open()
    assert world.gate.position is GatePosition.OPEN   # what the controller was told to do
    world.set_inputs(photocell=True)                  # a vehicle under the arm ...
    world.set_inputs(photocell=False)                 # ... and through
    assert (await gate.status()).vehicles_passed == 1
    world.faults("gate").timeouts = 2                 # the next two calls time out

World API (``VirtualWorld``):

* ``set_inputs(entry_loop=, in_position=, exit_loop=, photocell=, safety_loop=, lamp_ok=)``:
  change input levels; every change counts an edge (``edges(name)``), exactly — the
  counters the real I/O module and gate controller latch. ``inputs`` holds the levels.
* ``gate``: the controller (``GateController``): ``position``, ``locked``, ``fault_code``,
  ``cycles``, ``vehicles_passed``, ``motion_polls`` (status reads a movement lasts; 0 = the
  arm arrives at once), ``close_after_pass`` (on: the arm comes down by itself once a counted
  vehicle has cleared the photocell and the safety loop, as lane controllers are set up),
  ``finish_motion()``.
* ``light`` (``LightColour``), ``board`` (the ``BoardLine`` list on screen), ``boards``
  (every list ever shown).
* ``present_tag(tag_id, rssi=, antenna=)``: a card read by the reader.
* ``set_weight(kg, stable=)``: what the weighbridge indicator shows.
* ``pictures[device_id]`` / ``picture``: JPEG bytes a camera returns (default: an 8×8 grey
  picture of an empty lane).
* ``scanner``: the X-ray PLC (``ScannerPlc``): ``state``, ``zone_clear``, ``estop``,
  ``complete(result)``, ``fail(code)``.
* ``rpm``: the radiation portal (``RadiationPortal``): ``enter()`` (occupancy starts),
  ``leave(gamma_alarm=, neutron_alarm=, gamma_cps=, neutron_cps=)`` (it ends: an occupancy is
  reported), ``pass_vehicle(...)`` (both), ``faults`` (``RadiationFault`` set), ``tamper``,
  ``occupied_for_s`` (how long the occupancy in progress has lasted, for a stuck sensor).
* ``seals``: the e-seals and e-locks in the reader's field (``SealField``): ``place(record,
  authorisation=)`` (a seal on the vehicle in position, and the code its lock accepts),
  ``clear()``, ``records``; apply / remove change a lock's state as a real lock does (refused
  without the right code, out of the field, or in the wrong state).
* ``commands``: every command a device accepted, in order (``Command(device, action, arg)``).
* ``faults(kind)``: ``VirtualFaults`` of one device kind (``"gate"``, ``"io"``, ...).
* ``await wait_until(predicate)``: wait for a change that makes ``predicate()`` true (wrap
  it in ``asyncio.timeout``).

Faults (``VirtualFaults``, set by a test, counted down as they are used): ``unplugged``
(``DeviceUnavailableError`` on connect and on every call), ``timeouts`` /
``garbled`` / ``exceptions`` (the next N calls raise ``DeviceTimeoutError`` /
``DeviceProtocolError`` / ``ModbusExceptionError(exception_code)``), ``ignore_commands``
(the gate acknowledges the next N open/close commands and does not move).

Limits — what this backend does *not* model, by design:

* no time: nothing moves by itself. The arm moves when the test says (``motion_polls``,
  ``finish_motion``); a timeout fault raises at once instead of waiting for the deadline;
* no wire: no frames, CRCs, bus scheduling or inter-frame gaps (the wire-level simulators
  in ``sim_devices`` and the contract tests cover those);
* no physics: the arm never reverses by itself and nothing drives vehicles — a closing arm
  only stops for something under it when the test sets the photocell or safety loop;
* one gate, one I/O module, one board, one reader, one scale, one scanner per world (any
  number of cameras); worlds are per event loop, so every test starts from fresh ones;
* ``read_weight`` answers at once with the current reading; after an unstable reading it
  waits for the test to change the scale (so ``wait_stable`` does not spin).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .base import (
    BoardDriver,
    BoardLine,
    CameraDriver,
    EdgeCounts,
    Frame,
    GateDriver,
    GatePosition,
    GateStatus,
    IoDriver,
    LaneInputs,
    LightColour,
    LockRefusal,
    RadiationFault,
    RfidDriver,
    RpmDriver,
    RpmOccupancy,
    RpmStatus,
    ScannerDriver,
    ScannerState,
    ScannerStatus,
    ScanResult,
    SealReaderDriver,
    SealRecord,
    SealState,
    TagRead,
    WeighbridgeDriver,
    Weight,
)
from .config import DeviceConfig, VirtualLink
from .errors import (
    DeviceError,
    DeviceFaultError,
    DeviceProtocolError,
    DeviceTimeoutError,
    DeviceUnavailableError,
    ModbusExceptionError,
)

__all__ = [
    "INPUTS",
    "Command",
    "GateController",
    "RadiationPortal",
    "ScannerPlc",
    "SealField",
    "VirtualBoard",
    "VirtualCamera",
    "VirtualFaults",
    "VirtualGate",
    "VirtualIo",
    "VirtualRfid",
    "VirtualRpm",
    "VirtualScanner",
    "VirtualSealReader",
    "VirtualWeighbridge",
    "VirtualWorld",
    "virtual_world",
]

#: Input names ``set_inputs`` accepts: the I/O module's inputs, then the gate controller's.
INPUTS = ("entry_loop", "in_position", "exit_loop", "lamp_ok", "photocell", "safety_loop")

#: Refusal codes, the same numbers the RS-485 controllers answer in a NAK.
REFUSED_LOCKED, REFUSED_FAULT, REFUSED_OBSTACLE = 0x01, 0x02, 0x03

#: An 8x8 grey JPEG: what a camera over an empty lane shows when the test set no picture.
EMPTY_LANE_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4UG1RV19iZ2hn"
    "Pk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2Nj"
    "Y2P/wAARCAAIAAgDASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQID"
    "AAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlq"
    "c3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3"
    "+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEI"
    "FEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImK"
    "kpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDk"
    "6KKKAP/Z"
)


@dataclass(frozen=True, slots=True)
class Command:
    """One command a virtual device accepted: ``Command("gate", "open")``,
    ``Command("io", "light", "green")``, ``Command("board", "show", ("STOP",))``."""

    device: str
    action: str
    arg: object = None


@dataclass
class VirtualFaults:
    """Faults of one virtual device; the counts go down as calls use them."""

    unplugged: bool = False
    timeouts: int = 0
    garbled: int = 0
    exceptions: int = 0
    exception_code: int = 6  # server device busy
    ignore_commands: int = 0  # gate only: acknowledged, not executed

    def check(self) -> None:
        """Raise the fault the next call suffers, if any (in the order listed above)."""
        if self.unplugged:
            raise DeviceUnavailableError("virtual adapter unplugged")
        if self.timeouts > 0:
            self.timeouts -= 1
            raise DeviceTimeoutError("no answer in time (virtual timeout)")
        if self.garbled > 0:
            self.garbled -= 1
            raise DeviceProtocolError("CRC error (virtual garbled frame)")
        if self.exceptions > 0:
            self.exceptions -= 1
            raise ModbusExceptionError(f"exception {self.exception_code:02X} (virtual)", code=self.exception_code)

    def take_ignore(self) -> bool:
        if self.ignore_commands > 0:
            self.ignore_commands -= 1
            return True
        return False


@dataclass
class GateController:
    """The barrier controller of a world (see the module docstring)."""

    position: GatePosition = GatePosition.CLOSED
    locked: bool = False
    fault_code: int = 0
    cycles: int = 0
    vehicles_passed: int = 0
    motion_polls: int = 0
    close_after_pass: bool = True  # the controller's "close after pass" setting (车过落杆)
    _polls_left: int = 0

    @property
    def moving(self) -> bool:
        return self.position in (GatePosition.OPENING, GatePosition.CLOSING)

    def _move(self, target: GatePosition) -> None:
        if self.position == target:
            return
        if self.motion_polls <= 0:
            self._arrive(target)
            return
        self.position = GatePosition.OPENING if target == GatePosition.OPEN else GatePosition.CLOSING
        self._polls_left = self.motion_polls

    def _arrive(self, target: GatePosition) -> None:
        self.position = target
        self._polls_left = 0
        if target == GatePosition.OPEN:
            self.cycles += 1

    def _poll(self) -> None:
        if self.moving:
            self._polls_left -= 1
            if self._polls_left <= 0:
                self.finish_motion()

    def finish_motion(self) -> None:
        """The arm reaches the limit it is moving to now."""
        if self.position == GatePosition.OPENING:
            self._arrive(GatePosition.OPEN)
        elif self.position == GatePosition.CLOSING:
            self._arrive(GatePosition.CLOSED)


@dataclass
class ScannerPlc:
    """The X-ray PLC of a world: a scan runs until the test ends it."""

    state: ScannerState = ScannerState.READY
    zone_clear: bool = True
    estop: bool = False
    scan_id: int = 0
    result: ScanResult = ScanResult.NONE
    fault_code: int = 0
    vehicle_ref: str = ""
    image_ref: str = ""

    @property
    def radiation_on(self) -> bool:
        return self.state == ScannerState.SCANNING

    def complete(self, result: ScanResult = ScanResult.GREEN) -> None:
        self.state, self.result = ScannerState.COMPLETE, result
        self.image_ref = f"XR{self.scan_id:08d}"

    def fail(self, code: int = 0x10) -> None:
        self.state, self.fault_code = ScannerState.FAULT, code


#: Panels of the virtual portal (two either side, as on most cargo portals) and its sample.
PANELS = 4
SAMPLE_S = 0.2
#: Background of the virtual portal, counts per second per panel: a PVT panel sees ~2,400 cps
#: of natural background, a He-3 tube ~1.5 cps.
GAMMA_BG_CPS = 2400.0
NEUTRON_BG_CPS = 1.5


@dataclass
class RadiationPortal:
    """The radiation portal of a world. Nothing happens by itself: the test says when a
    vehicle enters and leaves and what the portal concluded (the virtual portal has no
    physics; its counts are background plus what the test adds, without noise)."""

    gamma_bg: tuple[float, ...] = (GAMMA_BG_CPS,) * PANELS
    neutron_bg: tuple[float, ...] = (NEUTRON_BG_CPS,) * PANELS
    nsigma: float = 4.0
    occupied: bool = False
    occupancy_count: int = 0
    occupied_for_s: float = 0.0
    faults: set[RadiationFault] = field(default_factory=set)
    tamper: bool = False
    #: Wall clock of the occupancies' start and end (a test that runs the lane on its own clock
    #: gives the portal the same one).
    clock: Callable[[], float] = time.time
    _started: float = 0.0
    _done: asyncio.Queue[RpmOccupancy] = field(default_factory=asyncio.Queue)
    _world: VirtualWorld | None = None

    def enter(self) -> None:
        self.occupied, self._started, self.occupied_for_s = True, self.clock(), 0.0
        self._notify()

    def leave(
        self,
        *,
        seconds: float = 2.0,
        gamma_cps: float = 0.0,
        neutron_cps: float = 0.0,
        gamma_alarm: bool = False,
        neutron_alarm: bool = False,
    ) -> RpmOccupancy:
        """The vehicle leaves after ``seconds`` in the portal; ``gamma_cps`` / ``neutron_cps``
        are what its load adds (all panels together). Returns the occupancy reported."""
        samples = max(1, round(seconds / SAMPLE_S))
        live = samples * SAMPLE_S
        self.occupancy_count += 1
        occ = RpmOccupancy(
            number=self.occupancy_count,
            started_at=self._started or self.clock(),
            ended_at=self.clock(),
            samples=samples,
            sample_s=SAMPLE_S,
            gamma_counts=tuple(round((bg + gamma_cps / PANELS) * live) for bg in self.gamma_bg),
            neutron_counts=tuple(round((bg + neutron_cps / PANELS) * live) for bg in self.neutron_bg),
            gamma_background_cps=self.gamma_bg,
            neutron_background_cps=self.neutron_bg,
            gamma_alarm=gamma_alarm,
            neutron_alarm=neutron_alarm,
            nsigma=self.nsigma,
            max_gamma_cps=round(sum(self.gamma_bg) + gamma_cps),
        )
        self.occupied, self._started, self.occupied_for_s = False, 0.0, 0.0
        self._done.put_nowait(occ)
        self._notify()
        return occ

    def pass_vehicle(self, **kw: Any) -> RpmOccupancy:
        self.enter()
        return self.leave(**kw)

    def _notify(self) -> None:
        if self._world is not None:
            self._world.notify()


@dataclass
class SealField:
    """The e-seals and e-locks in the reader's field, and the codes their locks accept."""

    records: dict[str, SealRecord] = field(default_factory=dict)
    authorisations: dict[str, str] = field(default_factory=dict)

    def place(self, record: SealRecord, *, authorisation: str = "") -> None:
        self.records[record.seal_id] = record
        if authorisation:
            self.authorisations[record.seal_id] = authorisation

    def clear(self) -> None:
        self.records.clear()


@dataclass
class VirtualWorld:
    """The physical state the virtual devices of one world share (see the module docstring)."""

    name: str = "default"
    inputs: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(INPUTS, False) | {"lamp_ok": True})
    gate: GateController = field(default_factory=GateController)
    light: LightColour = LightColour.OFF
    board: list[BoardLine] = field(default_factory=list)
    boards: list[list[BoardLine]] = field(default_factory=list)
    weight_kg: int = 0
    weight_stable: bool = True
    picture: bytes = EMPTY_LANE_JPEG
    pictures: dict[str, bytes] = field(default_factory=dict)
    scanner: ScannerPlc = field(default_factory=ScannerPlc)
    rpm: RadiationPortal = field(default_factory=RadiationPortal)
    seals: SealField = field(default_factory=SealField)
    commands: list[Command] = field(default_factory=list)
    _edges: dict[str, list[int]] = field(default_factory=lambda: {n: [0, 0] for n in INPUTS})
    _faults: dict[str, VirtualFaults] = field(default_factory=dict)
    _tags: asyncio.Queue[TagRead] = field(default_factory=asyncio.Queue)
    _scale_version: int = 0
    _armed: bool = False  # photocell blocked while the arm was up: a passage in progress
    _close_after_pass: bool = False  # a vehicle was counted: the controller closes once clear
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.rpm._world = self

    # ---------------------------------------------------------------- test side
    def set_inputs(self, **levels: bool) -> None:
        """Change input levels (names in ``INPUTS``); each change is an edge, counted."""
        unknown = set(levels) - set(INPUTS)
        if unknown:
            raise ValueError(f"unknown inputs {sorted(unknown)}; known: {', '.join(INPUTS)}")
        for name, level in levels.items():
            if self.inputs[name] == level:
                continue
            self.inputs[name] = level
            self._edges[name][0 if level else 1] += 1
            if name == "photocell":
                self._photocell_edge(level)
            if level and name in ("photocell", "safety_loop") and self.gate.position == GatePosition.CLOSING:
                self.gate.position = GatePosition.OPENING  # the controller's safety reversal
        if self._close_after_pass and not (self.inputs["photocell"] or self.inputs["safety_loop"]):
            # "Close after pass": the vehicle counted is through and clear of the arm.
            self._close_after_pass = False
            self.gate._move(GatePosition.CLOSED)
        self.notify()

    def _photocell_edge(self, blocked: bool) -> None:
        # The controller's passage counter: blocked then cleared, the arm off its closed
        # limit at both edges.
        arm_up = self.gate.position != GatePosition.CLOSED
        if blocked:
            self._armed = arm_up
        elif self._armed and arm_up:
            self.gate.vehicles_passed = (self.gate.vehicles_passed + 1) & 0xFFFF
            self._armed = False
            self._close_after_pass = self.gate.close_after_pass

    def edges(self, name: str) -> EdgeCounts:
        """The 16-bit edge counters of one input, as the device reports them."""
        rising, falling = self._edges[name]
        return EdgeCounts(rising & 0xFFFF, falling & 0xFFFF)

    def present_tag(self, tag_id: str, *, rssi: int = -60, antenna: int = 1) -> None:
        self._tags.put_nowait(TagRead(tag_id=tag_id, rssi=rssi, ts=time.time(), antenna=antenna))
        self.notify()

    def set_weight(self, kg: int, *, stable: bool = True) -> None:
        self.weight_kg, self.weight_stable = kg, stable
        self._scale_version += 1
        self.notify()

    def faults(self, kind: str) -> VirtualFaults:
        """The faults of this world's device of ``kind`` (created on first use)."""
        return self._faults.setdefault(kind, VirtualFaults())

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` is true, checked on every change. No deadline of its own:
        the caller sets one with ``asyncio.timeout``."""
        while not predicate():
            await self._changed.wait()

    # ---------------------------------------------------------------- device side
    def _record(self, device: str, action: str, arg: object = None) -> None:
        self.commands.append(Command(device, action, arg))
        self.notify()


_WORLDS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, VirtualWorld]] = weakref.WeakKeyDictionary()


def virtual_world(name: str = "default") -> VirtualWorld:
    """The world called ``name`` in the running event loop (created on first use).

    Worlds live as long as their event loop, so each test (pytest-asyncio gives each its
    own loop) starts with fresh ones.
    """
    worlds = _WORLDS.setdefault(asyncio.get_running_loop(), {})
    world = worlds.get(name)
    if world is None:
        world = worlds[name] = VirtualWorld(name)
    return world


# --------------------------------------------------------------------------- devices


class _Virtual:
    """What every virtual device shares: its world, its faults, connect/close."""

    kind: str
    device_id: str

    def _setup(self, config: DeviceConfig) -> None:
        link = config.link
        if not isinstance(link, VirtualLink):
            raise DeviceUnavailableError(
                f"a virtual device needs a virtual link, not {link.kind}", device=self.device_id
            )
        self.link = link
        self._world: VirtualWorld | None = None

    @property
    def world(self) -> VirtualWorld:
        if self._world is None:
            raise DeviceUnavailableError("not connected", device=self.device_id)
        return self._world

    @property
    def faults(self) -> VirtualFaults:
        return self.world.faults(self.kind)

    async def _connect(self) -> None:
        world = virtual_world(self.link.world)
        if world.faults(self.kind).unplugged:
            raise DeviceUnavailableError("virtual adapter unplugged", device=self.device_id)
        self._world = world

    async def _close(self) -> None:
        self._world = None

    def _check(self) -> VirtualWorld:
        world = self.world
        world.faults(self.kind).check()
        return world


class VirtualGate(_Virtual, GateDriver):
    """A barrier controller in a ``VirtualWorld``: refuses as the real ones do (open while
    locked or faulted, close with something under the arm), counts edges and passages."""

    def __init__(self, device_id: str, config: DeviceConfig, **_opts: Any) -> None:
        GateDriver.__init__(self, device_id, timeout=config.timeout_s)
        self._setup(config)

    def _command(self, action: str, target: GatePosition | None) -> None:
        w = self._check()
        g = w.gate
        if action == "open" and g.locked:
            raise DeviceFaultError("OPEN refused by the controller: locked", code=REFUSED_LOCKED)
        if action == "open" and g.fault_code:
            raise DeviceFaultError("OPEN refused by the controller: fault", code=REFUSED_FAULT)
        if action == "close" and (w.inputs["photocell"] or w.inputs["safety_loop"]):
            raise DeviceFaultError("CLOSE refused by the controller: obstacle", code=REFUSED_OBSTACLE)
        if target is not None and w.faults(self.kind).take_ignore():
            w._record(self.kind, f"{action} (ignored)")
            return
        if target is not None:
            g._move(target)
        elif g.moving:  # stop
            g.position = GatePosition.STOPPED
        w._record(self.kind, action)

    async def _open(self) -> None:
        self._command("open", GatePosition.OPEN)

    async def _close_arm(self) -> None:
        self._command("close", GatePosition.CLOSED)

    async def _stop(self) -> None:
        self._command("stop", None)

    async def _lock(self, locked: bool) -> None:
        w = self._check()
        w.gate.locked = locked
        w._record(self.kind, "lock", locked)

    async def _status(self) -> GateStatus:
        w = self._check()
        g = w.gate
        g._poll()
        return GateStatus(
            position=GatePosition.FAULT if g.fault_code else g.position,
            limit_open=g.position == GatePosition.OPEN,
            limit_closed=g.position == GatePosition.CLOSED,
            photocell_blocked=w.inputs["photocell"],
            loop_occupied=w.inputs["safety_loop"],
            locked=g.locked,
            fault_code=g.fault_code,
            cycles=g.cycles,
            photocell_edges=w.edges("photocell"),
            loop_edges=w.edges("safety_loop"),
            vehicles_passed=g.vehicles_passed,
        )


class VirtualIo(_Virtual, IoDriver):
    """The lane's I/O module in a ``VirtualWorld``: inputs with edge counters, the light."""

    def __init__(self, device_id: str, config: DeviceConfig, **_opts: Any) -> None:
        IoDriver.__init__(self, device_id, timeout=config.timeout_s)
        self._setup(config)

    async def _read_inputs(self) -> LaneInputs:
        w = self._check()
        return LaneInputs(
            entry_loop=w.inputs["entry_loop"],
            in_position=w.inputs["in_position"],
            exit_loop=w.inputs["exit_loop"],
            light=w.light,
            entry_loop_edges=w.edges("entry_loop"),
            in_position_edges=w.edges("in_position"),
            exit_loop_edges=w.edges("exit_loop"),
        )

    async def _set_light(self, colour: LightColour) -> None:
        w = self._check()
        w.light = colour
        w._record(self.kind, "light", str(colour))


class VirtualBoard(_Virtual, BoardDriver):
    def __init__(self, device_id: str, config: DeviceConfig, **_opts: Any) -> None:
        BoardDriver.__init__(self, device_id, timeout=config.timeout_s)
        self._setup(config)

    async def _show(self, lines: list[BoardLine]) -> None:
        w = self._check()
        w.board = list(lines)
        w.boards.append(list(lines))
        w._record(self.kind, "show", tuple(line.text for line in lines))


class VirtualRfid(_Virtual, RfidDriver):
    def __init__(self, device_id: str, config: DeviceConfig, **_opts: Any) -> None:
        RfidDriver.__init__(self, device_id, timeout=config.timeout_s)
        self._setup(config)

    async def _next_read(self) -> TagRead:
        w = self._check()
        return await w._tags.get()  # deadline: RfidDriver.next_read's listening window


class VirtualWeighbridge(_Virtual, WeighbridgeDriver):
    def __init__(self, device_id: str, config: DeviceConfig, **_opts: Any) -> None:
        WeighbridgeDriver.__init__(self, device_id, timeout=config.timeout_s)
        self._setup(config)
        self._seen: tuple[int, bool] | None = None  # (scale version, stable) last returned

    async def _read_weight(self) -> Weight:
        w = self._check()
        if self._seen is not None and not self._seen[1]:
            seen = self._seen[0]
            await w.wait_until(lambda: w._scale_version != seen)  # deadline: Device._call
        self._seen = (w._scale_version, w.weight_stable)
        return Weight(kg=w.weight_kg, stable=w.weight_stable)


class VirtualCamera(_Virtual, CameraDriver):
    def __init__(self, device_id: str, config: DeviceConfig, **_opts: Any) -> None:
        CameraDriver.__init__(self, device_id, timeout=config.timeout_s)
        self._setup(config)

    async def _snapshot(self) -> Frame:
        w = self._check()
        return Frame(camera=self.device_id, jpeg=w.pictures.get(self.device_id, w.picture), ts=time.time())


class VirtualScanner(_Virtual, ScannerDriver):
    """The X-ray PLC in a ``VirtualWorld``: refuses to start unless ready with the zone clear."""

    def __init__(self, device_id: str, config: DeviceConfig, **_opts: Any) -> None:
        ScannerDriver.__init__(self, device_id, timeout=config.timeout_s)
        self._setup(config)

    async def _status(self) -> ScannerStatus:
        s = self._check().scanner
        return ScannerStatus(
            state=s.state,
            zone_clear=s.zone_clear,
            estop=s.estop,
            radiation_on=s.radiation_on,
            scan_id=s.scan_id,
            result=s.result,
            fault_code=s.fault_code,
            progress_pct=100 if s.state == ScannerState.COMPLETE else 0,
            image_ref=s.image_ref,
        )

    def _refuse(self, what: str) -> DeviceError:
        s = self.world.scanner
        return DeviceFaultError(f"scanner refused {what} (state {s.state.name.lower()})", code=s.fault_code)

    async def _start(self, *, vehicle_ref: str, lane: int, seq: int) -> None:
        w = self._check()
        s = w.scanner
        if s.state not in (ScannerState.READY, ScannerState.COMPLETE) or not s.zone_clear or s.estop:
            raise self._refuse("start")
        s.scan_id += 1
        s.state, s.result, s.fault_code, s.vehicle_ref, s.image_ref = (
            ScannerState.SCANNING,
            ScanResult.NONE,
            0,
            vehicle_ref,
            "",
        )
        w._record(self.kind, "start", (vehicle_ref, lane, seq))

    async def _abort(self) -> None:
        w = self._check()
        if w.scanner.state != ScannerState.SCANNING:
            raise self._refuse("abort")
        w.scanner.state, w.scanner.fault_code = ScannerState.READY, 0x30
        w._record(self.kind, "abort")

    async def _reset(self) -> None:
        w = self._check()
        w.scanner.state, w.scanner.fault_code = ScannerState.READY, 0
        w._record(self.kind, "reset")


class VirtualRpm(_Virtual, RpmDriver):
    """The world's radiation portal (``RadiationPortal``)."""

    def __init__(self, device_id: str, config: DeviceConfig, **_opts: Any) -> None:
        RpmDriver.__init__(self, device_id, timeout=config.timeout_s)
        self._setup(config)

    async def _status(self) -> RpmStatus:
        p = self._check().rpm
        return RpmStatus(
            occupied=p.occupied,
            occupancy_count=p.occupancy_count,
            gamma_background_cps=p.gamma_bg,
            neutron_background_cps=p.neutron_bg,
            faults=frozenset(p.faults),
            tamper=p.tamper,
            occupied_for_s=p.occupied_for_s,
            nsigma=p.nsigma,
        )

    async def _next_occupancy(self) -> RpmOccupancy:
        w = self._check()
        return await w.rpm._done.get()  # deadline: RpmDriver.next_occupancy's listening window


class VirtualSealReader(_Virtual, SealReaderDriver):
    """The world's e-seal reader (``SealField``): its locks refuse as the real ones do."""

    def __init__(self, device_id: str, config: DeviceConfig, **_opts: Any) -> None:
        SealReaderDriver.__init__(self, device_id, timeout=config.timeout_s)
        self._setup(config)

    async def _read_seals(self) -> tuple[SealRecord, ...]:
        return tuple(self._check().seals.records.values())

    async def _command(self, action: str, manufacturer: int, tag: int, authorisation: bytes) -> SealRecord:
        w = self._check()
        sid = f"{manufacturer:04X}-{tag:08X}"
        record = w.seals.records.get(sid)
        if record is None:
            raise DeviceFaultError(
                f"{action} {sid} refused by the lock: seal not in the field", code=LockRefusal.NOT_IN_FIELD
            )
        if w.seals.authorisations.get(sid, "").encode("ascii") != authorisation:
            raise DeviceFaultError(
                f"{action} {sid} refused by the lock: authorisation refused", code=LockRefusal.AUTHORISATION_REFUSED
            )
        want = SealState.OPENED if action == "apply" else SealState.SEALED
        if record.state is not want:
            raise DeviceFaultError(f"{action} {sid} refused by the lock: wrong state", code=LockRefusal.WRONG_STATE)
        now = datetime.datetime.now(datetime.UTC).replace(second=0, microsecond=0)
        if action == "apply":
            record = replace(record, state=SealState.SEALED, sealed_at=now, opened_at=None)
        else:
            record = replace(record, state=SealState.OPENED, opened_at=now)
        w.seals.records[sid] = record
        w._record(self.kind, action, sid)
        return record
