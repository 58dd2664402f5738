"""Device interfaces: one abstract class per device kind.

Each public method does the shared work (deadline, state bookkeeping, error counting) and
calls one protected hook (``_open``, ``_status``, ...) that a backend implements — the
python-can ``BusABC`` pattern. Backends are chosen by name from configuration through
``drivers.registry``.

The value types here are the vocabulary the lane speaks; they carry no wire detail.
"""

from __future__ import annotations

import abc
import asyncio
import datetime
import enum
import re
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Self, TypeVar

from .errors import DeviceError, DeviceFaultError, DeviceTimeoutError, DeviceUnavailableError

__all__ = [
    "AUTH_LEN",
    "COUNTER_MODULO",
    "SEAL_ID_PATTERN",
    "BoardColour",
    "BoardDriver",
    "BoardLine",
    "CameraDriver",
    "Device",
    "EdgeCounts",
    "Frame",
    "GateDriver",
    "GatePosition",
    "GateStatus",
    "IoDriver",
    "LaneInputs",
    "LightColour",
    "LockRefusal",
    "RadiationFault",
    "RfidDriver",
    "RouteStatus",
    "RpmDriver",
    "RpmOccupancy",
    "RpmStatus",
    "ScanResult",
    "ScannerDriver",
    "ScannerState",
    "ScannerStatus",
    "SealKind",
    "SealReaderDriver",
    "SealRecord",
    "SealState",
    "TagRead",
    "WeighbridgeDriver",
    "Weight",
    "counter_delta",
    "reraise_lost_cancel",
    "seal_id",
]

T = TypeVar("T")

#: Default deadline for one device transaction. A 9600 bit/s RS-485 round trip of a
#: 20-byte frame is ~25 ms plus the controller's own turnaround (typically < 100 ms).
DEFAULT_TIMEOUT_S = 0.5


def reraise_lost_cancel() -> None:
    """Re-raise a cancellation that a device library lost.

    On Python 3.11 ``asyncio.wait_for`` (used inside pymodbus, among others) returns a result —
    or raises the library's own error — when the task is cancelled in the same loop turn as the
    answer arrives, and the cancellation is gone (fixed in 3.12). The task still counts the
    request (``cancelling()``), so honour it: otherwise a supervisor cancelled at shutdown keeps
    polling forever and its task group never finishes.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Device(abc.ABC):
    """Lifecycle and bookkeeping shared by every device kind.

    ``connect()`` / ``close()`` are idempotent; use after ``close()`` raises.
    Subclasses implement ``_connect`` / ``_close`` and the kind's hooks.
    """

    kind: str = "device"

    def __init__(self, device_id: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.device_id = device_id
        self.timeout = timeout
        self.counters: dict[str, int] = {"ok": 0, "timeout": 0, "protocol": 0, "unavailable": 0, "fault": 0}
        self.last_error: str | None = None
        self._connected = False
        self._closed = False

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        if self._closed:
            raise DeviceUnavailableError("device is closed", device=self.device_id)
        if self._connected:
            return
        await self._call(self._connect())
        self._connected = True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._connected = False
        await self._close()

    async def disconnect(self) -> None:
        """Drop the link but allow ``connect()`` again (used by supervisors)."""
        if self._connected:
            self._connected = False
            await self._close()

    async def _call(self, awaitable: Awaitable[T], *, timeout: float | None = None) -> T:  # noqa: ASYNC109
        """Run one transaction with a deadline; count and translate its outcome.

        ``timeout`` (default: the device's own ``timeout``) is the deadline of this one call,
        set by the public method that knows how long the device may physically take (a tag
        read window, a scale settling); it is applied here, in the one place that counts and
        translates the outcome, with ``asyncio.timeout``.
        """
        try:
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                try:
                    result = await awaitable
                finally:
                    reraise_lost_cancel()
        except TimeoutError as exc:
            self.counters["timeout"] += 1
            self.last_error = "timeout"
            if isinstance(exc, DeviceError):
                raise
            raise DeviceTimeoutError("no answer in time", device=self.device_id) from exc
        except DeviceError as exc:
            # By class, not by name: a SlaveIsolatedError is unavailable, a FrameError or a
            # ModbusExceptionError is a protocol error.
            key = (
                "unavailable"
                if isinstance(exc, DeviceUnavailableError)
                else "fault"
                if isinstance(exc, DeviceFaultError)
                else "protocol"
            )
            self.counters[key] = self.counters.get(key, 0) + 1
            self.last_error = str(exc)
            if not exc.device:
                exc.device = self.device_id
            raise
        self.counters["ok"] += 1
        return result

    @abc.abstractmethod
    async def _connect(self) -> None: ...

    @abc.abstractmethod
    async def _close(self) -> None: ...


# --------------------------------------------------------------------------- latched evidence

#: Edge and event counters are 16-bit and wrap, as on the I/O modules and controllers that
#: keep them (ADAM-6050 / ioLogik counter mode): compare them with ``EdgeCounts.since``.
COUNTER_MODULO = 0x10000


def counter_delta(now: int, before: int) -> int:
    """Events between two readings of a wrapping 16-bit counter (at most 65535 between reads)."""
    return (now - before) % COUNTER_MODULO


@dataclass(frozen=True, slots=True)
class EdgeCounts:
    """Transitions of one binary input counted by the device itself, since it powered up.

    A sample of the input's level can miss a pulse that started and ended between two polls;
    these counts cannot: the device latches every edge, however slowly the lane reads them.
    Both wrap at 65536 — compare two readings with ``since``, never the absolute values.
    """

    rising: int = 0  # inactive -> active (vehicle arrives, beam interrupted)
    falling: int = 0  # active -> inactive (vehicle leaves, beam restored)

    def since(self, earlier: EdgeCounts) -> EdgeCounts:
        """Edges between ``earlier`` and this reading (modulo the counter width)."""
        return EdgeCounts(counter_delta(self.rising, earlier.rising), counter_delta(self.falling, earlier.falling))


# --------------------------------------------------------------------------- barrier gate


class GatePosition(enum.IntEnum):
    """Z-Wave Barrier Operator values, extended with FAULT for port use."""

    CLOSED = 0x00
    CLOSING = 0xFC
    STOPPED = 0xFD
    OPENING = 0xFE
    OPEN = 0xFF
    FAULT = 0x01


@dataclass(frozen=True, slots=True)
class GateStatus:
    """One status reading of a barrier controller.

    The levels (``photocell_blocked``, ``loop_occupied``) are what the controller sees *now*;
    the counters are what it has seen *since it powered up*, latched by the controller so
    that a reader that polls seconds apart still learns that a vehicle passed:

    * ``photocell_edges`` / ``loop_edges``: edges of the photocell beam and the safety loop;
    * ``vehicles_passed``: the controller's own count of vehicles that went under the arm —
      incremented when the photocell was blocked and then cleared while the arm was off its
      closed limit (at both edges). 16-bit, wrapping: use ``counter_delta``.

    The counters are ``None`` when the controller does not report them (RS-485 status record
    version 1, older firmware).
    """

    position: GatePosition
    limit_open: bool = False
    limit_closed: bool = False
    photocell_blocked: bool = False
    loop_occupied: bool = False  # the safety loop under the arm
    locked: bool = False
    fault_code: int = 0
    cycles: int = 0
    photocell_edges: EdgeCounts | None = None
    loop_edges: EdgeCounts | None = None
    vehicles_passed: int | None = None

    @property
    def something_under_arm(self) -> bool:
        return self.photocell_blocked or self.loop_occupied


class GateDriver(Device):
    """A barrier gate controller. The controller itself refuses to close onto a vehicle;
    the lane checks again before asking (defence in depth)."""

    kind = "gate"

    async def open(self) -> None:
        await self._call(self._open())

    async def close_arm(self) -> None:
        await self._call(self._close_arm())

    async def stop(self) -> None:
        await self._call(self._stop())

    async def lock(self, locked: bool) -> None:
        await self._call(self._lock(locked))

    async def status(self) -> GateStatus:
        return await self._call(self._status())

    @abc.abstractmethod
    async def _open(self) -> None: ...

    @abc.abstractmethod
    async def _close_arm(self) -> None: ...

    @abc.abstractmethod
    async def _stop(self) -> None: ...

    @abc.abstractmethod
    async def _lock(self, locked: bool) -> None: ...

    @abc.abstractmethod
    async def _status(self) -> GateStatus: ...


# --------------------------------------------------------------------------- remote I/O


class LightColour(enum.StrEnum):
    RED = "red"
    AMBER = "amber"
    GREEN = "green"
    OFF = "off"


@dataclass(frozen=True, slots=True)
class LaneInputs:
    """One reading of the lane's remote I/O module.

    The booleans are the input levels now; ``*_edges`` are the module's own edge counters
    of the same inputs (16-bit, wrapping; ``None`` when the backend has none), which the
    lane compares between readings so that a vehicle that came and went between two polls
    is not missed: ``now.exit_loop_edges.since(before.exit_loop_edges).falling``.
    """

    entry_loop: bool = False  # vehicle at the stop line
    in_position: bool = False  # vehicle fully in the identification zone (photocell pair)
    exit_loop: bool = False  # vehicle past the barrier
    light: LightColour = LightColour.OFF
    entry_loop_edges: EdgeCounts | None = None
    in_position_edges: EdgeCounts | None = None
    exit_loop_edges: EdgeCounts | None = None


class IoDriver(Device):
    """Remote I/O module: loops and photocells in, traffic light out."""

    kind = "io"

    async def read_inputs(self) -> LaneInputs:
        return await self._call(self._read_inputs())

    async def set_light(self, colour: LightColour) -> None:
        await self._call(self._set_light(colour))

    @abc.abstractmethod
    async def _read_inputs(self) -> LaneInputs: ...

    @abc.abstractmethod
    async def _set_light(self, colour: LightColour) -> None: ...


# --------------------------------------------------------------------------- LED board


class BoardColour(enum.StrEnum):
    RED = "red"
    GREEN = "green"
    AMBER = "amber"


@dataclass(frozen=True, slots=True)
class BoardLine:
    text: str
    colour: BoardColour = BoardColour.GREEN


class BoardDriver(Device):
    kind = "board"

    async def show(self, lines: list[BoardLine]) -> None:
        await self._call(self._show(lines))

    @abc.abstractmethod
    async def _show(self, lines: list[BoardLine]) -> None: ...


# --------------------------------------------------------------------------- RFID


@dataclass(frozen=True, slots=True)
class TagRead:
    tag_id: str
    rssi: int = 0
    ts: float = field(default_factory=time.time)
    antenna: int = 0  # reader antenna port (1-based; 0 = not reported)


class RfidDriver(Device):
    """Readers push tag reads; ``next_read`` waits for the next one (or None at deadline)."""

    kind = "rfid"

    async def next_read(self, timeout: float) -> TagRead | None:  # noqa: ASYNC109
        """The next tag read, or None when no tag was read within ``timeout`` seconds.

        ``timeout`` is a listening window, not a transport deadline: an empty window is a
        normal outcome (no card in the field), so it returns None instead of raising — which
        a caller's ``asyncio.timeout`` could not express.
        """
        try:
            return await self._call(self._next_read(), timeout=timeout)
        except DeviceTimeoutError:
            return None

    @abc.abstractmethod
    async def _next_read(self) -> TagRead: ...


# --------------------------------------------------------------------------- weighbridge


@dataclass(frozen=True, slots=True)
class Weight:
    kg: int
    stable: bool


class WeighbridgeDriver(Device):
    kind = "weighbridge"

    async def read_weight(self) -> Weight:
        return await self._call(self._read_weight())

    async def wait_stable(self, timeout: float) -> Weight:  # noqa: ASYNC109
        """Wait for a stable reading. Raises DeviceTimeoutError if the scale never settles.

        ``timeout`` is the physical settling allowance of a loaded platform (seconds), kept
        as an argument so that the failure is a counted ``DeviceTimeoutError`` of this device.
        """

        async def _loop() -> Weight:
            while True:
                w = await self._read_weight()
                if w.stable:
                    return w

        return await self._call(_loop(), timeout=timeout)

    @abc.abstractmethod
    async def _read_weight(self) -> Weight: ...


# --------------------------------------------------------------------------- camera


@dataclass(frozen=True, slots=True)
class Frame:
    """One snapshot, JPEG-encoded so that the lane never needs ``cv2``."""

    camera: str
    jpeg: bytes
    ts: float
    width: int = 0
    height: int = 0


class CameraDriver(Device):
    kind = "camera"

    async def snapshot(self) -> Frame:
        return await self._call(self._snapshot())

    @abc.abstractmethod
    async def _snapshot(self) -> Frame: ...


# --------------------------------------------------------------------------- X-ray scanner


class ScannerState(enum.IntEnum):
    IDLE = 0
    READY = 1
    WARMING = 2
    SCANNING = 3
    COMPLETE = 4
    FAULT = 5
    INTERLOCKED = 6


class ScanResult(enum.IntEnum):
    NONE = 0
    GREEN = 1
    YELLOW = 2
    RED = 3


@dataclass(frozen=True, slots=True)
class ScannerStatus:
    state: ScannerState
    zone_clear: bool  # exclusion zone clear of people
    estop: bool = False
    radiation_on: bool = False
    scan_id: int = 0
    result: ScanResult = ScanResult.NONE
    fault_code: int = 0
    progress_pct: int = 0
    image_ref: str = ""


class ScannerDriver(Device):
    """The scanner's PLC. ``start`` refuses to fire while the exclusion zone is open — the
    PLC's own interlock is the first guard, this check is the second."""

    kind = "scanner"

    async def status(self) -> ScannerStatus:
        return await self._call(self._status())

    async def start(self, *, vehicle_ref: str, lane: int, seq: int) -> None:
        st = await self.status()
        if not st.zone_clear or st.estop:
            raise DeviceFaultError("exclusion zone not clear: refusing to start scan", device=self.device_id)
        await self._call(self._start(vehicle_ref=vehicle_ref, lane=lane, seq=seq))

    async def abort(self) -> None:
        await self._call(self._abort())

    async def reset(self) -> None:
        await self._call(self._reset())

    @abc.abstractmethod
    async def _status(self) -> ScannerStatus: ...

    @abc.abstractmethod
    async def _start(self, *, vehicle_ref: str, lane: int, seq: int) -> None: ...

    @abc.abstractmethod
    async def _abort(self) -> None: ...

    @abc.abstractmethod
    async def _reset(self) -> None: ...


# --------------------------------------------------------------------------- radiation portal monitor


class RadiationFault(enum.StrEnum):
    """Conditions a radiation portal reports (or its driver infers) that make its verdicts
    unreliable. None of them is an alarm: the lane takes itself out of automatic release."""

    GAMMA_HIGH = "gamma_high"  # gamma background above the portal's limit (GH)
    GAMMA_LOW = "gamma_low"  # gamma background below it: a dead or disconnected detector (GL)
    NEUTRON_HIGH = "neutron_high"  # neutron background above the limit (NH)
    OCCUPANCY_STUCK = "occupancy_stuck"  # occupied far longer than any vehicle takes to pass


@dataclass(frozen=True, slots=True)
class RpmOccupancy:
    """One vehicle's pass through the portal, as the portal reported it at the end of occupancy.

    Counts are per detector panel, summed over the occupancy; backgrounds are the portal's
    last background estimates before the occupancy, in counts per second per panel. The
    alarm flags are the portal's own decision (its ``n``-sigma threshold), never recomputed
    here: the lane acts on what the instrument said.
    """

    number: int  # the portal's occupancy counter (wraps at the portal's width)
    started_at: float  # wall clock (time.time()) of the first sample
    ended_at: float
    samples: int  # gamma samples in the occupancy
    sample_s: float  # length of one sample, seconds
    gamma_counts: tuple[int, ...]
    neutron_counts: tuple[int, ...]
    gamma_background_cps: tuple[float, ...]
    neutron_background_cps: tuple[float, ...]
    gamma_alarm: bool
    neutron_alarm: bool
    nsigma: float | None = None  # the portal's alarm threshold in sigmas, when it told us
    max_gamma_cps: int = 0  # highest one-second sum over all panels during the occupancy
    speed_kph: float | None = None

    @property
    def alarm(self) -> bool:
        return self.gamma_alarm or self.neutron_alarm

    @property
    def live_s(self) -> float:
        return self.samples * self.sample_s

    @property
    def gamma_sigma(self) -> float:
        """(foreground − background) / √background of the busiest second, all panels summed
        (the figure OSCAR shows beside each occupancy)."""
        bg = sum(self.gamma_background_cps)
        return 0.0 if bg <= 0 else (self.max_gamma_cps - bg) / bg**0.5


@dataclass(frozen=True, slots=True)
class RpmStatus:
    """The portal now: is something in it, what does it see, is it healthy."""

    occupied: bool
    occupancy_count: int  # last completed occupancy's number (0 before the first)
    gamma_background_cps: tuple[float, ...] = ()
    neutron_background_cps: tuple[float, ...] = ()
    gamma_alarm: bool = False  # alarm in the occupancy in progress
    neutron_alarm: bool = False
    faults: frozenset[RadiationFault] = frozenset()
    tamper: bool = False
    occupied_for_s: float = 0.0
    nsigma: float | None = None

    @property
    def trustworthy(self) -> bool:
        """False while a fault or tamper makes the portal's verdicts unreliable."""
        return not self.faults and not self.tamper


class RpmDriver(Device):
    """A radiation portal monitor: gamma and neutron panels either side of the lane and an
    occupancy sensor. The portal decides alarms itself; the driver reports occupancies (one
    per vehicle, with counts, backgrounds and the portal's alarm flags) and its state.

    ``next_occupancy`` waits for the next completed occupancy (None when none completed in the
    window, like ``RfidDriver.next_read``); ``status`` is the portal's state now.
    """

    kind = "rpm"

    async def status(self) -> RpmStatus:
        return await self._call(self._status())

    async def next_occupancy(self, timeout: float) -> RpmOccupancy | None:  # noqa: ASYNC109
        """The next completed occupancy, or None when none completed within ``timeout`` s.

        ``timeout`` is a listening window (a vehicle may not come), not a transport deadline.
        """
        try:
            return await self._call(self._next_occupancy(), timeout=timeout)
        except DeviceTimeoutError:
            return None

    @abc.abstractmethod
    async def _status(self) -> RpmStatus: ...

    @abc.abstractmethod
    async def _next_occupancy(self) -> RpmOccupancy: ...


# --------------------------------------------------------------------------- e-seals and e-locks


class SealState(enum.StrEnum):
    SEALED = "sealed"
    OPENED = "opened"
    TAMPERED = "tampered"


class SealKind(enum.StrEnum):
    ESEAL = "eseal"  # ISO 18185 electronic seal: id, state, times, battery
    ELOCK = "elock"  # cross-boundary e-lock (跨境一锁): an e-seal with GPS and a route check


class RouteStatus(enum.StrEnum):
    ON_ROUTE = "on_route"  # every GPS fix since sealing lay on the declared corridor
    OFF_ROUTE = "off_route"  # at least one fix left it
    NO_FIX = "no_fix"  # the lock has no usable GPS history (cannot vouch for the route)


#: ISO 18185-1: a seal is identified by its manufacturer's id (16 bits, registered) and a tag
#: id unique for that manufacturer (32 bits). We write it ``MMMM-TTTTTTTT`` in hex.
SEAL_ID_PATTERN = r"^[0-9A-F]{4}-[0-9A-F]{8}$"


def seal_id(manufacturer: int, tag: int) -> str:
    """The text form of an ISO 18185 seal id: ``seal_id(0x0A1B, 0xC0FFEE) == "0A1B-00C0FFEE"``."""
    if not 0 <= manufacturer <= 0xFFFF or not 0 <= tag <= 0xFFFFFFFF:
        raise ValueError(f"seal id out of range: manufacturer {manufacturer}, tag {tag}")
    return f"{manufacturer:04X}-{tag:08X}"


@dataclass(frozen=True, slots=True)
class SealRecord:
    """One e-seal or e-lock as the reader reads it (ISO 18185 data; route for e-locks).

    Times are the seal's own clock (ISO 18185 allows ±5 s a day of drift), UTC, to the minute.
    """

    manufacturer: int
    tag: int
    kind: SealKind
    state: SealState
    sealed_at: datetime.datetime | None = None
    opened_at: datetime.datetime | None = None
    battery_pct: int | None = None  # None: the seal does not report a level
    battery_low: bool = False
    route: RouteStatus | None = None  # e-locks only
    rssi_dbm: int = 0

    @property
    def seal_id(self) -> str:
        return seal_id(self.manufacturer, self.tag)


class LockRefusal(enum.IntEnum):
    """Why an e-lock refused an apply / remove: the result code the lock answers with, carried
    by the ``DeviceFaultError`` the driver raises (``.code``). The lane names its rejection
    after it (``lock_`` + the name in lower case)."""

    AUTHORISATION_REFUSED = 1  # not the code customs issued for this lock
    NOT_IN_FIELD = 2  # the seal is not in the reader's field
    WRONG_STATE = 3  # applying a sealed lock, removing an open one
    BATTERY_LOW = 4  # too little charge to drive the bolt
    MECHANISM_FAULT = 5  # the bolt did not move


class SealReaderDriver(Device):
    """A fixed e-seal / e-lock reader at the lane. ``read_seals`` inventories the seals in
    its field (the vehicle in position); ``apply`` / ``remove`` lock or unlock an e-lock, which
    the lock itself accepts only with the authorisation code customs issued for it — the lane
    sends them only on a signed command."""

    kind = "seal_reader"

    async def read_seals(self) -> tuple[SealRecord, ...]:
        return await self._call(self._read_seals())

    async def apply(self, seal: str, *, authorisation: str) -> SealRecord:
        return await self._call(self._command("apply", *_seal_args(seal, authorisation)))

    async def remove(self, seal: str, *, authorisation: str) -> SealRecord:
        return await self._call(self._command("remove", *_seal_args(seal, authorisation)))

    @abc.abstractmethod
    async def _read_seals(self) -> tuple[SealRecord, ...]: ...

    @abc.abstractmethod
    async def _command(self, action: str, manufacturer: int, tag: int, authorisation: bytes) -> SealRecord: ...


#: An authorisation code is 8 printable ASCII characters (a one-time code customs issues).
AUTH_LEN = 8


def _seal_args(seal: str, authorisation: str) -> tuple[int, int, bytes]:
    """Argument checks shared by ``apply`` and ``remove`` (before anything is sent)."""
    if not re.fullmatch(SEAL_ID_PATTERN, seal):
        raise ValueError(f"seal id {seal!r} is not MMMM-TTTTTTTT (hex manufacturer and tag id)")
    auth = authorisation.encode("ascii", errors="replace")
    if len(auth) != AUTH_LEN or not all(0x21 <= b <= 0x7E for b in auth):
        raise ValueError(f"an authorisation code is {AUTH_LEN} printable ASCII characters")
    manufacturer, tag = seal.split("-")
    return int(manufacturer, 16), int(tag, 16), auth
