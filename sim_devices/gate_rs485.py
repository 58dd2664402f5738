"""Simulated RS-485 barrier gate controllers: several addresses on one pty, one world each.

Speaks the framed protocol described in ``firmware_config/devices/gate_rs485.yaml`` and
``docs/devices/gate-rs485.md`` (``55 addr cmd len data crc_lo crc_hi``, CRC-16/MODBUS). This
is the simulator's own encoder/decoder (a table-driven CRC, its own deframer), written
independently of ``portlane.drivers.gate_rs485``.

Controller behaviour, as on real boards:

* OPEN is refused (NAK 01) while locked, (NAK 02) while faulted; CLOSE is refused
  (NAK 03) while the photocell or the safety loop is occupied; the world reverses a closing
  arm by itself when something comes under it;
* a stuck motor (``faults.stuck``) is reported as position FAULT with fault code 0x0021
  (motor stall) while a movement is commanded;
* broadcast (address 0) commands are executed by every controller and never answered;
* an answer goes out after a turnaround of a few milliseconds (controllers switch their
  RS-485 driver from receive to transmit), subject to the fault injector.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from .faults import FaultInjector
from .pty_port import PtyPort, SerialSimHandle
from .world import ArmMotion, LaneWorld

__all__ = ["STALL_FAULT", "GateBusSim", "start_gate"]

log = logging.getLogger(__name__)

#: Reply turnaround of a typical controller: it must wait >= 3.5 char times (3.6 ms at 9600)
#: after the request before it drives the line.
TURNAROUND_S = 0.004
STALL_FAULT = 0x0021

_HEADER = 0x55
_OPEN, _CLOSE, _STOP, _LOCK, _STATUS = 0x01, 0x02, 0x03, 0x04, 0x10
_ACK, _NAK, _STATUS_REPLY = 0x06, 0x15, 0x90
_LENGTHS = {_OPEN: 0, _CLOSE: 0, _STOP: 0, _LOCK: 1, _STATUS: 0}


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def crc16(data: bytes) -> bytes:
    """CRC-16/MODBUS, table-driven; returned in wire order (low byte first)."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ b) & 0xFF]
    return crc.to_bytes(2, "little")


def frame(addr: int, cmd: int, payload: bytes = b"") -> bytes:
    head = bytes((_HEADER, addr, cmd, len(payload))) + payload
    return head + crc16(head)


class GateBusSim:
    """The controllers on one RS-485 line."""

    def __init__(
        self, worlds: Mapping[int, LaneWorld], faults: FaultInjector, *, turnaround_s: float = TURNAROUND_S
    ) -> None:
        self.worlds = dict(worlds)
        self.faults = faults
        self.turnaround_s = turnaround_s
        self.port: PtyPort | None = None
        self._buf = bytearray()
        self._queue: asyncio.Queue[tuple[int, int, bytes]] = asyncio.Queue()
        self.counters = {"requests": 0, "bad_frames": 0, "ignored": 0, "answers": 0}
        self.received: list[tuple[int, int, bytes]] = []  # every request heard, for tests

    # ------------------------------------------------------------------ receive side
    def feed(self, data: bytes) -> None:
        self._buf += data
        buf = self._buf
        while buf:
            start = buf.find(_HEADER)
            if start < 0:
                buf.clear()
                return
            del buf[:start]
            if len(buf) < 4:
                return
            cmd, n = buf[2], buf[3]
            if _LENGTHS.get(cmd) != n:
                self.counters["bad_frames"] += 1
                del buf[:1]
                continue
            if len(buf) < 6 + n:
                return
            raw = bytes(buf[: 6 + n])
            if crc16(raw[:-2]) != raw[-2:]:
                self.counters["bad_frames"] += 1
                del buf[:1]
                continue
            del buf[: 6 + n]
            self._queue.put_nowait((raw[1], cmd, raw[4 : 4 + n]))

    async def serve(self) -> None:
        while True:
            addr, cmd, payload = await self._queue.get()
            self.counters["requests"] += 1
            self.received.append((addr, cmd, payload))
            if addr == 0:
                for world in self.worlds.values():
                    self._execute(world, cmd, payload)
                continue
            world = self.worlds.get(addr)
            if world is None or self.faults.unplugged or self.faults.is_dead(addr):
                self.counters["ignored"] += 1
                continue
            answer = self._execute(world, cmd, payload)
            await asyncio.sleep(self.turnaround_s)
            out = await self.faults.outgoing(frame(addr, *answer), unit=addr)
            if out is not None and self.port is not None:
                self.counters["answers"] += 1
                self.port.write(out)

    # ------------------------------------------------------------------ controller logic
    def _execute(self, w: LaneWorld, cmd: int, payload: bytes) -> tuple[int, bytes]:
        if cmd == _STATUS:
            return _STATUS_REPLY, self._status(w)
        if cmd == _OPEN:
            if w.locked:
                return _NAK, bytes((cmd, 0x01))
            if w.fault_code:
                return _NAK, bytes((cmd, 0x02))
            w.command_open()
        elif cmd == _CLOSE:
            if not w.command_close():
                return _NAK, bytes((cmd, 0x03))
        elif cmd == _STOP:
            w.command_stop()
        elif cmd == _LOCK:
            if payload[0] not in (0, 1):
                return _NAK, bytes((cmd, 0x05))
            w.locked = payload[0] == 1
            w.notify()
        return _ACK, bytes((cmd,))

    @staticmethod
    def _status(w: LaneWorld) -> bytes:
        fault = w.fault_code
        if not fault and w.stuck and w.motion != ArmMotion.STILL:
            fault = STALL_FAULT
        if fault:
            pos = 0x01
        elif w.motion == ArmMotion.OPENING:
            pos = 0xFE
        elif w.motion == ArmMotion.CLOSING:
            pos = 0xFC
        elif w.limit_open:
            pos = 0xFF
        elif w.limit_closed:
            pos = 0x00
        else:
            pos = 0xFD
        flags = 0
        for bit, on in enumerate((w.limit_open, w.limit_closed, w.photocell_blocked, w.safety_loop, w.locked)):
            flags |= int(on) << bit
        angle = max(0, min(90, round(w.arm_angle)))
        tail = (fault & 0xFFFF).to_bytes(2, "big") + (w.cycles & 0xFFFFFFFF).to_bytes(4, "big")
        return bytes((pos, flags, angle)) + tail


async def start_gate(
    world: LaneWorld | None,
    *,
    faults: FaultInjector | None = None,
    address: int = 1,
    worlds: Mapping[int, LaneWorld] | None = None,
    baudrate: int = 9600,
    turnaround_s: float = TURNAROUND_S,
    name: str = "ttyGATE",
    directory: str | None = None,
    **_opts: Any,
) -> SerialSimHandle:
    """Serve gate controllers on a fresh pty: ``world`` at ``address`` plus ``worlds`` (address
    -> world) on the same line. ``handle.link`` is the link a driver opens."""
    faults = faults if faults is not None else FaultInjector()
    served: dict[int, LaneWorld] = dict(worlds or {})
    if world is not None:
        served[address] = world
    if not served:
        raise ValueError("a gate simulator needs at least one world")
    for addr in served:
        if not 1 <= addr <= 247:
            raise ValueError(f"RS-485 address {addr} out of range 1..247")
    sim = GateBusSim(served, faults, turnaround_s=turnaround_s)
    port = await PtyPort(sim.feed, name=name, directory=directory, faults=faults).start()
    sim.port = port
    handle = SerialSimHandle(port, faults, baudrate=baudrate, sim=sim)
    for w in served.values():
        faults.attach_world(w)
        handle.own_world_physics(w)
    handle.add_task(sim.serve(), name=f"gate-rs485-sim-{port.path}")
    return handle
