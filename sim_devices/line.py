"""A simulated RS-485 line: one pty, any number of slaves, of any protocol, on it.

On a real multidrop line every slave hears every byte; each one frames what it hears by
its own protocol's rules and by silence — Modbus RTU and most framed protocols start a new
frame after 3.5 character times without a byte — and only the addressed slave answers. The
line simulator does the same: ``SerialLine`` owns the pty (``PtyPort``), hands every byte
the driver writes to every attached slave (``LineSlave.feed``), tells them when a new frame
starts after a silence (``LineSlave.reset``), and sends the answers one at a time, after the
controller's turnaround, through the fault injector — so a framed gate controller and a
Modbus RTU I/O module can share one port as they share one cable.

``SerialLine.log`` records what happened on the wire (``LineEvent``: loop time, direction,
bytes), for tests that check the master's scheduling: whole frames, never interleaved, an
inter-frame gap before each request.

``SerialLine.add_tap`` adds a second, listening adapter on the same pair — what a technician
clamps onto a live bus to watch it without taking the port from the lane's daemon: its pty
carries every byte of both directions, in wire order (``portlane serial sniff`` on it).

``crc16_wire`` is the simulators' CRC-16/MODBUS, shared by the RS-485 gate and the Modbus
RTU slaves. It calls pymodbus' table-driven CRC directly — the same well-tested library
the drivers use — and never ``portlane.drivers.crc``: the simulators must not share code
with the drivers they test, so that a bug on one side is not mirrored on the other (and
the drivers' CRC is checked against published vectors on its own).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pymodbus.framer.rtu import FramerRTU

from .faults import FaultInjector
from .pty_port import PtyPort

__all__ = ["TURNAROUND_S", "LineEvent", "LineSlave", "SerialLine", "crc16_wire", "gap_s"]

log = logging.getLogger(__name__)

#: Reply turnaround of a typical controller: it must wait >= 3.5 char times (3.6 ms at 9600)
#: after the request before it drives the line.
TURNAROUND_S = 0.004
#: Floor of the silence that ends a frame (Modbus RTU: 1.75 ms above 19200 bit/s).
MIN_GAP_S = 0.00175
#: How many wire events a line keeps for inspection.
LOG_SIZE = 10_000


def crc16_wire(data: bytes) -> bytes:
    """CRC-16/MODBUS of ``data`` in wire order (low byte first). See the module docstring."""
    return FramerRTU.compute_CRC(data).to_bytes(2, "big")  # pymodbus returns it byte-swapped


def gap_s(baudrate: int) -> float:
    """3.5 character times of 10 bits at ``baudrate`` (never below 1.75 ms)."""
    return max(MIN_GAP_S, 3.5 * 10 / baudrate)


class LineSlave(Protocol):
    """A device on the line: it hears every byte and submits the requests addressed to it."""

    def feed(self, data: bytes) -> None: ...

    def reset(self) -> None: ...


@dataclass(frozen=True, slots=True)
class LineEvent:
    t: float  # loop time
    direction: str  # "rx": master -> slaves, "tx": a slave's answer -> master
    data: bytes


Execute = Callable[[], bytes | None]


class SerialLine:
    """One simulated RS-485 line on a pty (``path`` is what a driver opens)."""

    def __init__(
        self,
        faults: FaultInjector,
        *,
        baudrate: int = 9600,
        turnaround_s: float = TURNAROUND_S,
        name: str = "ttyRS485",
        directory: str | os.PathLike[str] | None = None,
    ) -> None:
        self.faults = faults
        self.baudrate = baudrate
        self.turnaround_s = turnaround_s
        self.gap_s = gap_s(baudrate)
        self.slaves: list[LineSlave] = []
        self.port = PtyPort(self._heard, name=name, directory=directory, faults=faults)
        self.tap: PtyPort | None = None  # add_tap: a listening second adapter on the pair
        self.log: list[LineEvent] = []
        self.counters = {"requests": 0, "answers": 0, "silent": 0}
        self._queue: asyncio.Queue[tuple[int, Execute]] = asyncio.Queue()
        self._last_rx = -1e9
        self._task: asyncio.Task[None] | None = None
        self.users = 0  # handles sharing this line; the last one to close closes it

    @property
    def path(self) -> str:
        return self.port.path

    async def start(self) -> SerialLine:
        await self.port.start()
        self._task = asyncio.create_task(self._serve(), name=f"rs485-line-{self.port.path}")
        return self

    def attach(self, slave: LineSlave) -> None:
        self.slaves.append(slave)

    def detach(self, slave: LineSlave) -> None:
        if slave in self.slaves:
            self.slaves.remove(slave)

    async def add_tap(self) -> str:
        """Start the listening adapter (once); returns the path a sniffer opens. What the
        sniffer writes goes nowhere: a listen-only tap cannot disturb the line."""
        if self.tap is None:
            tap = PtyPort(
                lambda _written: None, name=f"{os.path.basename(self.path)}-tap", directory=os.path.dirname(self.path)
            )
            await tap.start()
            self.tap = tap
        return self.tap.path

    def _record(self, direction: str, data: bytes) -> None:
        self.log.append(LineEvent(asyncio.get_running_loop().time(), direction, data))
        if len(self.log) > LOG_SIZE:
            del self.log[: len(self.log) - LOG_SIZE]
        if self.tap is not None:
            self.tap.write(data)  # both directions, in wire order (dropped while nobody reads)

    def _heard(self, data: bytes) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._last_rx >= self.gap_s:
            for slave in self.slaves:
                slave.reset()  # silence ended the previous frame: a new one starts
        self._last_rx = now
        self._record("rx", data)
        for slave in list(self.slaves):
            slave.feed(data)

    def submit(self, unit: int, execute: Execute) -> None:
        """A slave heard a request for ``unit``; ``execute()`` runs the controller logic when
        the request's turn comes and returns the answer frame (None: no answer, e.g. broadcast)."""
        self._queue.put_nowait((unit, execute))

    def send(self, data: bytes) -> None:
        """Put bytes on the line unasked (a push device, or raw noise from a test)."""
        self._record("tx", data)
        self.port.write(data)

    async def _serve(self) -> None:
        while True:
            unit, execute = await self._queue.get()
            self.counters["requests"] += 1
            if self.faults.unplugged or self.faults.is_dead(unit):
                self.counters["silent"] += 1
                continue
            answer = execute()
            if answer is None:
                continue
            await asyncio.sleep(self.turnaround_s)
            out = await self.faults.outgoing(answer, unit=unit)
            if out is None:
                self.counters["silent"] += 1
                continue
            self.counters["answers"] += 1
            self.send(out)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if (current := asyncio.current_task()) is not None and current.cancelling():
                    raise
        if self.tap is not None:
            await self.tap.close()  # first: it lives in the line's pty directory
        await self.port.close()
