"""Simulated RS-485 barrier gate controllers: several addresses on one line, one world each.

Speaks the framed protocol described in ``firmware_config/devices/gate_rs485.yaml`` and
``docs/devices/gate-rs485.md`` (``55 addr cmd len data crc_lo crc_hi``, CRC-16/MODBUS). This
is the simulator's own encoder/decoder (its own deframer; the CRC from ``line.crc16_wire``),
written independently of ``portlane.drivers.gate_rs485``.

Controller behaviour, as on real boards:

* OPEN is refused (NAK 01) while locked, (NAK 02) while faulted; CLOSE is refused
  (NAK 03) while the photocell or the safety loop is occupied; the world reverses a closing
  arm by itself when something comes under it;
* the status record is version 2 (19 bytes): the version-1 fields, then the controller's
  latched counters — photocell and safety-loop edges and vehicles passed (``evidence``);
* a stuck motor (``faults.stuck``) is reported as position FAULT with fault code 0x0021
  (motor stall) while a movement is commanded;
* ``faults.ignore_commands(n)``: the next n OPEN/CLOSE are acknowledged and not executed;
  ``faults.exception_replies(code)``: commands are refused with NAK ``code`` (06 busy);
* broadcast (address 0) commands are executed by every controller and never answered;
* frames start after a silence on the line (``SerialLine``), so bytes of other protocols
  on a shared line never run into ours; an answer goes out after the controller's
  turnaround, subject to the fault injector.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from .evidence import GateEvidence
from .faults import FaultInjector
from .line import TURNAROUND_S, SerialLine, crc16_wire
from .pty_port import SerialSimHandle
from .world import ArmMotion, LaneWorld

__all__ = ["STALL_FAULT", "GateBusSim", "start_gate"]

log = logging.getLogger(__name__)

STALL_FAULT = 0x0021

_HEADER = 0x55
_OPEN, _CLOSE, _STOP, _LOCK, _STATUS = 0x01, 0x02, 0x03, 0x04, 0x10
_ACK, _NAK, _STATUS_REPLY = 0x06, 0x15, 0x90
_LENGTHS = {_OPEN: 0, _CLOSE: 0, _STOP: 0, _LOCK: 1, _STATUS: 0}
_NAK_REASONS = range(0x01, 0x07)
_BUSY = 0x06
_NAMES = {_OPEN: "open", _CLOSE: "close", _STOP: "stop"}


def frame(addr: int, cmd: int, payload: bytes = b"") -> bytes:
    head = bytes((_HEADER, addr, cmd, len(payload))) + payload
    return head + crc16_wire(head)


class GateBusSim:
    """The framed-protocol controllers on one RS-485 line (a ``LineSlave``)."""

    def __init__(self, worlds: Mapping[int, LaneWorld], line: SerialLine) -> None:
        self.worlds = dict(worlds)
        self.line = line
        self.faults = line.faults
        self.evidence = {addr: GateEvidence(w) for addr, w in self.worlds.items()}
        self._buf = bytearray()
        self.counters = {"requests": 0, "bad_frames": 0, "ignored": 0}
        self.received: list[tuple[int, int, bytes]] = []  # every request heard, for tests
        # Optional timing hook (bench/latency_bench.py): called for every OPEN/CLOSE/STOP heard
        # with the world, the command name and time.monotonic_ns() of the frame's first byte.
        self.on_command: Callable[[LaneWorld, str, int], None] | None = None
        self._t_first_ns = 0

    # ------------------------------------------------------------------ receive side
    def reset(self) -> None:
        self._buf.clear()

    def feed(self, data: bytes) -> None:
        if not self._buf:
            self._t_first_ns = time.monotonic_ns()
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
                del buf[:1]
                continue
            if len(buf) < 6 + n:
                return
            raw = bytes(buf[: 6 + n])
            if crc16_wire(raw[:-2]) != raw[-2:]:
                self.counters["bad_frames"] += 1
                del buf[:1]
                continue
            del buf[: 6 + n]
            self._heard(raw[1], cmd, raw[4 : 4 + n])

    def _heard(self, addr: int, cmd: int, payload: bytes) -> None:
        if addr != 0 and addr not in self.worlds:
            return  # another slave's frame
        self.counters["requests"] += 1
        self.received.append((addr, cmd, payload))
        if addr == 0:
            for a, world in self.worlds.items():
                self._execute(a, world, cmd, payload)
            return
        world = self.worlds[addr]
        if self.on_command is not None and cmd in _NAMES:
            self.on_command(world, _NAMES[cmd], self._t_first_ns)
        self.line.submit(addr, lambda: frame(addr, *self._execute(addr, world, cmd, payload)))

    # ------------------------------------------------------------------ controller logic
    def _execute(self, addr: int, w: LaneWorld, cmd: int, payload: bytes) -> tuple[int, bytes]:
        self.evidence[addr].sample()  # the counters are current in every answer
        if cmd == _STATUS:
            return _STATUS_REPLY, self._status(addr, w)
        code = self.faults.take_exception()
        if code:
            return _NAK, bytes((cmd, code if code in _NAK_REASONS else _BUSY))
        if cmd in (_OPEN, _CLOSE) and self.faults.take_ignore():
            return _ACK, bytes((cmd,))  # acknowledged; the contactor never pulls in
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

    def _status(self, addr: int, w: LaneWorld) -> bytes:
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
        ev = self.evidence[addr]
        counters = (
            ev.rising["photocell"],
            ev.falling["photocell"],
            ev.rising["safety_loop"],
            ev.falling["safety_loop"],
            ev.vehicles_passed,
        )
        tail = (fault & 0xFFFF).to_bytes(2, "big") + (w.cycles & 0xFFFFFFFF).to_bytes(4, "big")
        return bytes((pos, flags, angle)) + tail + b"".join(c.to_bytes(2, "big") for c in counters)


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
    line: SerialLine | None = None,
    **_opts: Any,
) -> SerialSimHandle:
    """Serve gate controllers: ``world`` at ``address`` plus ``worlds`` (address -> world), on
    a fresh pty — or on ``line``, an RS-485 line other simulators already use (its fault
    injector then applies). ``handle.link`` is the link a driver opens; ``handle.line`` the line."""
    served: dict[int, LaneWorld] = dict(worlds or {})
    if world is not None:
        served[address] = world
    if not served:
        raise ValueError("a gate simulator needs at least one world")
    for addr in served:
        if not 1 <= addr <= 247:
            raise ValueError(f"RS-485 address {addr} out of range 1..247")
    if line is None:
        faults = faults if faults is not None else FaultInjector()
        line = await SerialLine(
            faults, baudrate=baudrate, turnaround_s=turnaround_s, name=name, directory=directory
        ).start()
    elif faults is not None and faults is not line.faults:
        raise ValueError("a simulator on a shared line uses the line's fault injector")
    sim = GateBusSim(served, line)
    line.attach(sim)
    handle = SerialSimHandle(line.port, line.faults, baudrate=line.baudrate, sim=sim, line=line, slaves=(sim,))
    for addr, w in served.items():
        line.faults.attach_world(w)
        handle.own_world_physics(w)
        handle.add_task(sim.evidence[addr].run(), name=f"gate-rs485-evidence-{addr}-{line.path}")
    return handle
