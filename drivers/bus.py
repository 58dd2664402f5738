"""RS-485 bus scheduler: several slaves on one port, one transaction at a time.

Every protocol on the port goes through it — the framed gate protocol, the LED boards'
text frames and Modbus RTU (``drivers.modbus``) alike — so that devices of different
protocols on one cable never talk over each other.

RS-485 is half-duplex and master/slave: the master (us) sends one request, the addressed
slave answers, and nobody else may talk in between. ``Rs485Bus.transact`` therefore

1. waits for its turn on the line (``Turns``): one transaction at a time, and when the line
   comes free the most urgent waiter goes next — a gate command (``Urgency.COMMAND``) before
   the status polls, I/O reads and board texts queued ahead of it (``Urgency.ROUTINE``);
   within one urgency first come, first served, so slaves that all poll are served
   round-robin. A command cannot pre-empt the transaction under way: the slave's answer owns
   the line until it ends or times out (talking over it garbles both);
2. respects the inter-frame gap: 3.5 character times at the line's baud rate (Modbus RTU's
   t3.5, which most RS-485 controllers also need to see the end of a frame), never less
   than ``MIN_GAP_S`` — the Modbus spec fixes 1.75 ms above 19200 bit/s. The next turn is
   given when the gap is over, not when the previous answer ends, so a command that arrives
   during the gap still goes before the polls already waiting;
3. discards stale input (a late answer to an earlier, timed-out request), writes the request
   and decodes the answer with the protocol's sans-I/O decoder, ignoring garbage and answers
   from other addresses, until the transaction's deadline.

Per-slave circuit breaker: after ``failures`` consecutive timeouts a slave is *isolated*:
its transactions fail at once with ``SlaveIsolatedError`` (a ``DeviceUnavailableError``)
without touching the wire, so a dead slave costs the others nothing. After ``cooldown_s``
one probe transaction is let through (half-open); success closes the breaker, another
timeout isolates the slave again with the cool-down doubled (capped). Protocol errors do not
trip the breaker: something answered, the slave is not what slows the bus down.

Buses are shared by name (``SerialLink.bus``; a port without a bus name is a bus of its
own, keyed by its path): every driver on the bus calls ``bus_for(link)`` and
``acquire``/``release``; the port is opened by the first and closed by the last. Slave
addresses must be unique on a bus across protocols: the breaker is kept per address.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import heapq
import itertools
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .config import SerialLink
from .errors import DeviceProtocolError, DeviceUnavailableError
from .serial_link import DecodeStats, FrameError, SerialPort, char_time_s

__all__ = [
    "BREAKER_COOLDOWN_S",
    "BREAKER_FAILURES",
    "BreakerState",
    "BusMember",
    "CircuitBreaker",
    "Rs485Bus",
    "SlaveIsolatedError",
    "Turns",
    "Urgency",
    "bus_for",
]

log = logging.getLogger(__name__)

F = TypeVar("F")

#: Consecutive timeouts that isolate a slave. Three: one lost frame on a noisy line is
#: normal, three in a row at a 100 ms poll period means the slave is off or unreachable.
BREAKER_FAILURES = 3
#: First cool-down of an isolated slave. Each probe of a dead slave costs one full timeout
#: (0.5 s by default) of bus time; probing every 5 s keeps that below 10 %.
BREAKER_COOLDOWN_S = 5.0
#: Cap of the doubling cool-down: a slave that returns is used again within a minute.
BREAKER_COOLDOWN_MAX_S = 60.0
#: Floor of the inter-frame gap (Modbus RTU: 1.75 ms fixed above 19200 bit/s).
MIN_GAP_S = 0.00175
#: After a bad frame, how long the line must stay quiet before the transaction is declared
#: failed: an answer corrupted on the wire is over once the line is idle for ~20 characters
#: (at 9600 bit/s ~21 ms); waiting the whole timeout would slow every other slave.
BAD_FRAME_SETTLE_CHARS = 20
MIN_BAD_FRAME_SETTLE_S = 0.02


class SlaveIsolatedError(DeviceUnavailableError):
    """The slave's circuit breaker is open: it was skipped without using the bus."""


class Urgency(enum.IntEnum):
    """Which of the transactions waiting for the line goes first (lower first)."""

    #: A command that moves equipment (gate open, close, stop, lock): a vehicle or an
    #: operator waits on it, while a poll that goes out a few milliseconds later loses nothing.
    COMMAND = 0
    #: Status polls, I/O reads, light and board writes.
    ROUTINE = 1


class Turns:
    """Turn-taking on one line: one holder at a time; the next turn goes to the most urgent
    waiter (first come, first served within an urgency), and only once the line is quiet
    (``quiet_at()``, loop time) — until then a more urgent latecomer can still go first."""

    def __init__(self, quiet_at: Callable[[], float]) -> None:
        self._quiet_at = quiet_at
        self._held = False
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []  # a heap
        self._arrivals = itertools.count()
        self._handover: asyncio.TimerHandle | None = None
        self._moved: asyncio.Event | None = None  # set on the next change (``until``)

    @property
    def held(self) -> bool:
        return self._held

    @property
    def waiting(self) -> int:
        return sum(1 for *_, fut in self._waiting if not fut.done())

    async def until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, checked after every change of the turns (tests;
        wrap it in ``asyncio.timeout``)."""
        while not predicate():
            if self._moved is None:
                self._moved = asyncio.Event()
            await self._moved.wait()

    def _changed(self) -> None:
        moved, self._moved = self._moved, None
        if moved is not None:
            moved.set()

    async def acquire(self, urgency: Urgency) -> None:
        loop = asyncio.get_running_loop()
        if not self._held and not self._waiting and loop.time() >= self._quiet_at():
            self._held = True
            self._changed()
            return
        fut: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._waiting, (int(urgency), next(self._arrivals), fut))
        if not self._held:
            self._schedule(loop)
        self._changed()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the turn came as we were cancelled: pass it on
            else:
                self._changed()
            raise

    def release(self) -> None:
        self._held = False
        if self._waiting:
            self._schedule(asyncio.get_running_loop())
        self._changed()

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand the line over when it is quiet (one hand-over pending at a time)."""
        if self._handover is None:
            self._handover = loop.call_at(self._quiet_at(), self._hand_over)

    def _hand_over(self) -> None:
        self._handover = None
        if self._held:
            return
        while self._waiting:
            *_, fut = heapq.heappop(self._waiting)
            if not fut.done():  # (a cancelled waiter is skipped)
                self._held = True
                self._changed()
                fut.set_result(None)
                return

    async def __aenter__(self) -> None:
        await self.acquire(Urgency.ROUTINE)

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class BreakerState(enum.StrEnum):
    CLOSED = "closed"  # healthy, every transaction goes out
    OPEN = "open"  # isolated, transactions are skipped
    HALF_OPEN = "half_open"  # one probe is on its way


@dataclass
class CircuitBreaker:
    failures: int = BREAKER_FAILURES
    cooldown_s: float = BREAKER_COOLDOWN_S
    cooldown_max_s: float = BREAKER_COOLDOWN_MAX_S
    state: BreakerState = BreakerState.CLOSED
    consecutive_timeouts: int = 0
    opened_at: float = 0.0
    current_cooldown: float = 0.0
    trips: int = 0

    def allow(self, now: float) -> bool:
        if self.state == BreakerState.OPEN:
            if now - self.opened_at < self.current_cooldown:
                return False
            self.state = BreakerState.HALF_OPEN
        return True

    def success(self) -> None:
        if self.state != BreakerState.CLOSED:
            log.info("slave recovered; breaker closed")
        self.state = BreakerState.CLOSED
        self.consecutive_timeouts = 0
        self.current_cooldown = 0.0

    def timeout(self, now: float) -> None:
        self.consecutive_timeouts += 1
        if self.state == BreakerState.HALF_OPEN:
            self.current_cooldown = min(self.cooldown_max_s, max(self.cooldown_s, self.current_cooldown * 2))
            self._open(now)
        elif self.consecutive_timeouts >= self.failures:
            self.current_cooldown = self.cooldown_s
            self._open(now)

    def _open(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self.opened_at = now
        self.trips += 1


@dataclass
class SlaveStats:
    outcomes: dict[str, int] = field(
        default_factory=lambda: {"ok": 0, "timeout": 0, "protocol": 0, "skipped": 0, "unavailable": 0}
    )


class Rs485Bus:
    """One physical RS-485 line (one serial port) shared by several slave addresses."""

    def __init__(
        self,
        name: str,
        link: SerialLink,
        *,
        gap_s: float | None = None,
        breaker_failures: int = BREAKER_FAILURES,
        breaker_cooldown_s: float = BREAKER_COOLDOWN_S,
        log_size: int = 10_000,
    ) -> None:
        self.name = name
        self.link = link
        self.port = SerialPort(link, name=name)
        self.char_s = char_time_s(link)
        self.gap_s = max(MIN_GAP_S, 3.5 * self.char_s) if gap_s is None else gap_s
        self.breaker_failures = breaker_failures
        self.breaker_cooldown_s = breaker_cooldown_s
        self.breakers: dict[int, CircuitBreaker] = {}
        self.slaves: dict[int, SlaveStats] = collections.defaultdict(SlaveStats)
        self.stats = DecodeStats()
        self.counters = {"transactions": 0, "stale_bytes": 0, "foreign_frames": 0}
        #: (address, outcome) of every transaction and skip, newest last.
        self.log: collections.deque[tuple[int, str]] = collections.deque(maxlen=log_size)
        self._holders: set[str] = set()
        self._quiet_at = 0.0  # loop time when the line is next free (end of last frame + gap)
        self.turns = Turns(lambda: self._quiet_at)

    # ------------------------------------------------------------------ lifecycle
    async def acquire(self, holder: str) -> None:
        """Register a device on this bus and make sure the port is open."""
        self._holders.add(holder)
        try:
            async with self.turns:
                await self.port.open()
        except BaseException:
            self._holders.discard(holder)
            self._maybe_forget()
            raise

    async def release(self, holder: str) -> None:
        self._holders.discard(holder)
        if not self._holders:
            async with self.turns:
                await self.port.close()
            self._maybe_forget()

    def _maybe_forget(self) -> None:
        if not self._holders:
            _forget(self)

    def breaker(self, address: int) -> CircuitBreaker:
        br = self.breakers.get(address)
        if br is None:
            br = self.breakers[address] = CircuitBreaker(self.breaker_failures, self.breaker_cooldown_s)
        return br

    # ------------------------------------------------------------------ transactions
    def _record(self, address: int, outcome: str) -> None:
        self.slaves[address].outcomes[outcome] += 1
        self.log.append((address, outcome))

    async def transact(
        self,
        address: int,
        request: bytes,
        decode: Callable[[bytes], tuple[F | None, int]],
        *,
        reply_timeout_s: float,
        match: Callable[[F], bool] | None = None,
        expect_reply: bool = True,
        urgency: Urgency = Urgency.ROUTINE,
    ) -> F | None:
        """Send ``request`` to ``address`` and return the first decoded answer that ``match``es.
        ``urgency`` orders it among the transactions waiting for the line (``Turns``).

        Raises ``SlaveIsolatedError`` (breaker open), ``DeviceUnavailableError`` (port gone),
        ``DeviceProtocolError`` (only bad frames came back), ``TimeoutError`` (silence).
        """
        loop = asyncio.get_running_loop()
        br = self.breaker(address)
        if not br.allow(loop.time()):
            self._record(address, "skipped")
            raise SlaveIsolatedError(
                f"slave {address} on bus {self.name} isolated after {br.consecutive_timeouts} timeouts; "
                f"next probe in {br.current_cooldown - (loop.time() - br.opened_at):.1f} s"
            )
        await self.turns.acquire(urgency)
        try:
            try:
                result = await self._transact_locked(address, request, decode, reply_timeout_s, match, expect_reply)
            except TimeoutError:
                br.timeout(loop.time())
                self._record(address, "timeout")
                if br.state == BreakerState.OPEN:
                    log.warning("bus %s: slave %d isolated for %.1f s", self.name, address, br.current_cooldown)
                raise
            except DeviceUnavailableError:
                self._record(address, "unavailable")
                raise
            except DeviceProtocolError:
                self._record(address, "protocol")
                raise
            br.success()
            self._record(address, "ok")
            return result
        finally:
            self.turns.release()

    async def _transact_locked(
        self,
        address: int,
        request: bytes,
        decode: Callable[[bytes], tuple[F | None, int]],
        reply_timeout_s: float,
        match: Callable[[F], bool] | None,
        expect_reply: bool,
    ) -> F | None:
        loop = asyncio.get_running_loop()
        port = self.port
        if not port.is_open:
            await port.open()  # the adapter came back: reopen by path
        wait = self._quiet_at - loop.time()
        if wait > 0:
            # Inter-frame gap (normally already over: the turn is given when the line is quiet;
            # late bytes of a timed-out answer can push it back).
            await asyncio.sleep(wait)
        stale = port.discard_input()
        if stale:
            self.counters["stale_bytes"] += stale
        port.write(request)
        self.counters["transactions"] += 1
        sent_at = loop.time()
        self._quiet_at = sent_at + len(request) * self.char_s + self.gap_s
        if not expect_reply:
            return None
        deadline = sent_at + reply_timeout_s
        bad: FrameError | None = None
        try:
            while True:
                while port.rx:
                    try:
                        frame, consumed = decode(bytes(port.rx))
                    except FrameError as exc:
                        self.stats.count_error(exc)
                        del port.rx[: exc.consumed]
                        bad = exc
                        settle = max(MIN_BAD_FRAME_SETTLE_S, BAD_FRAME_SETTLE_CHARS * self.char_s)
                        deadline = min(deadline, loop.time() + settle)
                        continue
                    if frame is None:
                        if not consumed:
                            break  # incomplete: wait for more bytes
                        self.stats.garbage_bytes += consumed
                        del port.rx[:consumed]
                        continue
                    del port.rx[:consumed]
                    self.stats.frames += 1
                    if match is None or match(frame):
                        return frame
                    self.counters["foreign_frames"] += 1
                async with asyncio.timeout_at(deadline):
                    await port.wait_data()
        except TimeoutError:
            if bad is not None:
                raise DeviceProtocolError(f"bad answer from slave {address}: {bad}") from bad
            raise
        finally:
            self._quiet_at = max(self._quiet_at, port.last_rx + self.gap_s)


# --------------------------------------------------------------------------- shared buses

_BUSES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Rs485Bus]] = weakref.WeakKeyDictionary()


def bus_for(link: SerialLink, **opts: Any) -> Rs485Bus:
    """The bus ``link`` belongs to (created on first use in this event loop).

    ``opts`` (gap_s, breaker_failures, breaker_cooldown_s) apply when the bus is created.
    Two links that name the same bus must name the same port.
    """
    loop = asyncio.get_running_loop()
    buses = _BUSES.setdefault(loop, {})
    name = link.bus or link.url
    bus = buses.get(name)
    if bus is None:
        bus = buses[name] = Rs485Bus(name, link, **opts)
    elif bus.link.url != link.url or bus.link.baudrate != link.baudrate:
        raise DeviceUnavailableError(
            f"bus {name!r} is already open on {bus.link.url} at {bus.link.baudrate} bit/s; "
            f"a device names it with {link.url} at {link.baudrate} bit/s"
        )
    return bus


def _forget(bus: Rs485Bus) -> None:
    for buses in _BUSES.values():
        if buses.get(bus.name) is bus:
            del buses[bus.name]


class BusMember:
    """A device on a shared RS-485 line (gate controller, LED board, seal reader): connecting
    joins the line's bus scheduler (:func:`bus_for`), closing leaves it. Put it before the
    device's interface in the bases; the device's ``__init__`` sets ``link``, ``_bus_opts`` and
    ``_bus = None``."""

    device_id: str
    link: SerialLink
    _bus_opts: dict[str, Any]
    _bus: Rs485Bus | None

    async def _connect(self) -> None:
        bus = bus_for(self.link, **self._bus_opts)
        await bus.acquire(self.device_id)
        self._bus = bus

    async def _close(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            await bus.release(self.device_id)
