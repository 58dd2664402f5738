"""Device interfaces: one abstract class per device kind.

Each public method does the shared work (deadline, state bookkeeping, error counting) and
calls one protected hook (``_open``, ``_status``, ...) that a backend implements — the
python-can ``BusABC`` pattern. Backends are chosen by name from configuration through
``drivers.registry``.

The value types here are the vocabulary the lane speaks; they carry no wire detail.

The shared ``Device`` and the lane's own devices live here; the X-ray scanner's interface is in
``drivers.scanner_device``, the cargo lane's release devices (radiation portal monitor, e-seal
and e-lock reader) in ``drivers.cargo_devices``.
"""

from __future__ import annotations

import abc
import asyncio
import enum
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Self, TypeVar

from .errors import DeviceError, DeviceFaultError, DeviceTimeoutError, DeviceUnavailableError

__all__ = [
    "COUNTER_MODULO",
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
    "RfidDriver",
    "TagRead",
    "WeighbridgeDriver",
    "Weight",
    "counter_delta",
    "reraise_lost_cancel",
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
