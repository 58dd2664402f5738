"""The world virtual devices share: the lane's physical state as its devices see it.

A test holds a world (``virtual_world(name)``) and plays its part: sets inputs, reads what was
commanded, injects faults. Its API and limits are described in ``drivers.virtual`` (the
backends that read and change it: ``drivers.virtual``, ``drivers.virtual_cargo``).
"""

from __future__ import annotations

import asyncio
import base64
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .base import BoardLine, EdgeCounts, GatePosition, LightColour, TagRead
from .cargo_devices import RadiationFault, RpmOccupancy, SealRecord
from .errors import DeviceProtocolError, DeviceTimeoutError, DeviceUnavailableError, ModbusExceptionError
from .scanner_device import ScannerState, ScanResult

__all__ = [
    "EMPTY_LANE_JPEG",
    "INPUTS",
    "Command",
    "GateController",
    "RadiationPortal",
    "ScannerPlc",
    "SealField",
    "VirtualFaults",
    "VirtualWorld",
    "virtual_world",
]

#: Input names ``set_inputs`` accepts: the I/O module's inputs, then the gate controller's.
INPUTS = ("entry_loop", "in_position", "exit_loop", "lamp_ok", "photocell", "safety_loop")

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
    """The barrier controller of a world (see ``drivers.virtual``)."""

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
    """The physical state the virtual devices of one world share (see ``drivers.virtual``)."""

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
