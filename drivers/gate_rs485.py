"""Barrier gate controller over RS-485: framed binary protocol with CRC-16/MODBUS.

Wire format (9600 bit/s 8N1 by default; several controllers on one line, 1 address each)::

    55 | addr | cmd | len | data[len] | crc_lo crc_hi

* ``55``: sync byte. The frame shape — header, address, function, data, CRC-16/MODBUS
  over every byte from the header on, low byte first — is the Dooya-style family of
  Chinese motor/gate boards (see research note 2a, family 3); we use a 1-byte address as
  Modbus does and add an explicit length byte so that a receiver knows where a frame ends
  without knowing every command (project-defined).
* ``addr``: 1–247 (0 is broadcast: slaves act and never answer).
* ``len``: 0–32 data bytes.

Commands (host → controller), numbered as in the Dooya family for open/close/stop; the rest
is project-defined:

    01 OPEN      len 0           raise the arm
    02 CLOSE     len 0           lower the arm (refused when something is under it)
    03 STOP      len 0           stop where it is
    04 LOCK      len 1  00|01    01 = locked closed (opens are refused), 00 = unlock
    10 STATUS    len 0           ask for the status record

Answers (controller → host):

    06 ACK       len 1  cmd                      command accepted
    15 NAK       len 2  cmd reason               refused; reason 01 locked, 02 fault,
                                                 03 obstacle under the arm, 04 unknown
                                                 command, 05 bad data, 06 busy
    90 STATUS    len 19 (version 2; len 9 = version 1, the first 9 bytes only)
                 pos flags angle fault_hi fault_lo cyc3 cyc2 cyc1 cyc0
                 pc_rise(2) pc_fall(2) loop_rise(2) loop_fall(2) passed(2)

Status record: ``pos`` is the Z-Wave Barrier Operator value (00 closed, FC closing,
FD stopped, FE opening, FF open) plus 01 = fault; ``flags`` bit0 open limit switch,
bit1 closed limit switch, bit2 photocell blocked, bit3 safety loop occupied, bit4 locked,
bits 5–7 must be 0; ``angle`` 0–90 degrees; ``fault`` uint16 big-endian (0 = none);
``cyc`` uint32 big-endian count of completed open movements.

Version 2 appends the evidence the controller latches between two polls, five uint16
big-endian counters that wrap at 65536: photocell beam interruptions (``pc_rise``) and
restorations (``pc_fall``), safety-loop arrivals and departures, and ``passed``, the
vehicles that went under the raised arm (the photocell cleared after being blocked, the
arm off its closed limit at both edges). A version-1 record (older firmware) decodes with
the counters ``None``.

Example (computed, see docs/devices/gate-rs485.md): status request to address 1 is
``55 01 10 00 4D E8``.

Codec functions are sans-I/O: ``encode_frame`` and ``decode_frame(buf) -> (frame, consumed)``
(``None, 0`` = need more bytes, ``None, n`` = n garbage bytes before a sync byte;
``FrameError`` = a bad frame, skip ``consumed`` bytes). Transport and scheduling live in
``serial_link`` and ``bus``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from .base import DEFAULT_TIMEOUT_S, EdgeCounts, GateDriver, GatePosition, GateStatus
from .bus import BusMember, Rs485Bus, Urgency
from .config import DeviceConfig, SerialLink
from .crc import crc16_modbus
from .errors import DeviceFaultError, DeviceProtocolError, DeviceUnavailableError
from .serial_link import FrameError

__all__ = [
    "STATUS_V1_LEN",
    "STATUS_V2_LEN",
    "SYNC",
    "Cmd",
    "GateFrame",
    "NakReason",
    "Rs485Gate",
    "decode_frame",
    "encode_frame",
    "encode_status",
    "status_from_frame",
]

SYNC = 0x55
MAX_DATA = 32
BROADCAST = 0
MAX_ADDRESS = 247


class Cmd(enum.IntEnum):
    OPEN = 0x01
    CLOSE = 0x02
    STOP = 0x03
    LOCK = 0x04
    STATUS = 0x10
    ACK = 0x06
    NAK = 0x15
    STATUS_REPLY = 0x90


class NakReason(enum.IntEnum):
    LOCKED = 0x01
    FAULT = 0x02
    OBSTACLE = 0x03
    UNKNOWN_COMMAND = 0x04
    BAD_DATA = 0x05
    BUSY = 0x06


#: Status record lengths: version 1 (no counters) and version 2 (with the latched counters).
STATUS_V1_LEN = 9
STATUS_V2_LEN = 19

#: Data lengths each command may carry.
DATA_LEN: dict[Cmd, tuple[int, ...]] = {
    Cmd.OPEN: (0,),
    Cmd.CLOSE: (0,),
    Cmd.STOP: (0,),
    Cmd.LOCK: (1,),
    Cmd.STATUS: (0,),
    Cmd.ACK: (1,),
    Cmd.NAK: (2,),
    Cmd.STATUS_REPLY: (STATUS_V2_LEN, STATUS_V1_LEN),
}

_POSITIONS = {p.value for p in GatePosition}


@dataclass(frozen=True, slots=True)
class GateFrame:
    address: int
    cmd: Cmd
    data: bytes = b""


def encode_frame(address: int, cmd: int, data: bytes = b"") -> bytes:
    if not 0 <= address <= MAX_ADDRESS:
        raise ValueError(f"address {address} out of range 0..{MAX_ADDRESS}")
    if len(data) > MAX_DATA:
        raise ValueError(f"{len(data)} data bytes > {MAX_DATA}")
    body = bytes([SYNC, address, cmd, len(data)]) + data
    crc = crc16_modbus(body)
    return body + bytes([crc & 0xFF, crc >> 8])


def decode_frame(buf: bytes) -> tuple[GateFrame | None, int]:
    """Decode one frame at the head of ``buf``. See the module docstring for the contract."""
    if not buf:
        return None, 0
    if buf[0] != SYNC:
        i = buf.find(SYNC)
        return None, len(buf) if i < 0 else i
    if len(buf) < 4:
        return None, 0
    addr, cmd, n = buf[1], buf[2], buf[3]
    # Reject impossible headers before waiting for their data: a sync byte in noise must
    # not make us wait for 32 bytes that will never come.
    if addr > MAX_ADDRESS:
        raise FrameError(f"bad address {addr}")
    if cmd not in Cmd._value2member_map_:
        raise FrameError(f"unknown command 0x{cmd:02X}")
    command = Cmd(cmd)
    if n not in DATA_LEN[command]:
        expected = " or ".join(map(str, DATA_LEN[command]))
        raise FrameError(f"bad length {n} for {command.name} (expected {expected})")
    total = 4 + n + 2
    if len(buf) < total:
        return None, 0
    crc = crc16_modbus(buf[: 4 + n])
    if buf[4 + n] != crc & 0xFF or buf[5 + n] != crc >> 8:
        raise FrameError(f"CRC error: got {buf[4 + n]:02X} {buf[5 + n]:02X}, expected {crc & 0xFF:02X} {crc >> 8:02X}")
    data = bytes(buf[4 : 4 + n])
    if command == Cmd.LOCK and data[0] not in (0, 1):
        raise FrameError(f"LOCK data must be 00 or 01, got {data[0]:02X}", consumed=total)
    return GateFrame(addr, command, data), total


def encode_status(address: int, st: GateStatus, *, angle: int = 0) -> bytes:
    """A STATUS answer: version 2 when ``st`` carries the counters, else version 1."""
    flags = (
        (1 if st.limit_open else 0)
        | (2 if st.limit_closed else 0)
        | (4 if st.photocell_blocked else 0)
        | (8 if st.loop_occupied else 0)
        | (16 if st.locked else 0)
    )
    data = bytes([int(st.position), flags, angle]) + st.fault_code.to_bytes(2, "big") + st.cycles.to_bytes(4, "big")
    if st.photocell_edges is not None and st.loop_edges is not None and st.vehicles_passed is not None:
        counters = (*_pair(st.photocell_edges), *_pair(st.loop_edges), st.vehicles_passed)
        data += b"".join((c & 0xFFFF).to_bytes(2, "big") for c in counters)
    return encode_frame(address, Cmd.STATUS_REPLY, data)


def _pair(e: EdgeCounts) -> tuple[int, int]:
    return e.rising, e.falling


def status_from_frame(frame: GateFrame) -> tuple[GateStatus, int]:
    """The status record of a STATUS answer and the arm angle. Out-of-range values raise
    ``DeviceProtocolError``: a controller that says "both limit switches" is not trusted."""
    d = frame.data
    if frame.cmd != Cmd.STATUS_REPLY or len(d) not in DATA_LEN[Cmd.STATUS_REPLY]:
        raise DeviceProtocolError(f"not a status record: {frame.cmd.name} with {len(d)} bytes")
    pos, flags, angle = d[0], d[1], d[2]
    if pos not in _POSITIONS:
        raise DeviceProtocolError(f"unknown position code 0x{pos:02X}")
    if flags & 0xE0:
        raise DeviceProtocolError(f"reserved status flag bits set: 0x{flags:02X}")
    if angle > 90:
        raise DeviceProtocolError(f"arm angle {angle} > 90 degrees")
    if flags & 1 and flags & 2:
        raise DeviceProtocolError("both limit switches reported active")
    photocell: EdgeCounts | None = None
    loop: EdgeCounts | None = None
    passed: int | None = None
    if len(d) == STATUS_V2_LEN:
        c = [int.from_bytes(d[i : i + 2], "big") for i in range(STATUS_V1_LEN, STATUS_V2_LEN, 2)]
        photocell, loop, passed = EdgeCounts(c[0], c[1]), EdgeCounts(c[2], c[3]), c[4]
    st = GateStatus(
        position=GatePosition(pos),
        limit_open=bool(flags & 1),
        limit_closed=bool(flags & 2),
        photocell_blocked=bool(flags & 4),
        loop_occupied=bool(flags & 8),
        locked=bool(flags & 16),
        fault_code=int.from_bytes(d[3:5], "big"),
        cycles=int.from_bytes(d[5:9], "big"),
        photocell_edges=photocell,
        loop_edges=loop,
        vehicles_passed=passed,
    )
    return st, angle


class Rs485Gate(BusMember, GateDriver):
    """A barrier controller at address ``config.unit`` on an RS-485 bus.

    The device deadline covers waiting for the bus (behind at most one other slave's
    timeout) plus this slave's own wire deadline ``config.timeout_s``.
    """

    def __init__(self, device_id: str, config: DeviceConfig, **bus_opts: Any) -> None:
        if not isinstance(config.link, SerialLink):
            raise DeviceUnavailableError("the rs485 gate backend needs a serial link", device=device_id)
        if not 1 <= config.unit <= MAX_ADDRESS:
            raise DeviceUnavailableError(
                f"RS-485 address {config.unit} out of range 1..{MAX_ADDRESS}", device=device_id
            )
        self.wire_timeout = config.timeout_s if config.timeout_s else DEFAULT_TIMEOUT_S
        super().__init__(device_id, timeout=2 * self.wire_timeout + 0.05)
        self.config = config
        self.link: SerialLink = config.link
        self.address = config.unit
        self._bus_opts = bus_opts
        self._bus: Rs485Bus | None = None
        self.last_angle = 0

    @property
    def bus(self) -> Rs485Bus:
        if self._bus is None:
            raise DeviceUnavailableError("not connected", device=self.device_id)
        return self._bus

    async def _request(self, cmd: Cmd, data: bytes = b"") -> GateFrame:
        """One transaction; a NAK (to a command, or to a status request of a busy
        controller) raises ``DeviceFaultError`` with the controller's reason as ``code``."""
        addr = self.address

        def match(f: GateFrame) -> bool:
            if f.address != addr:
                return False
            if f.cmd == Cmd.NAK:
                return f.data[0] == cmd
            if cmd == Cmd.STATUS:
                return f.cmd == Cmd.STATUS_REPLY
            return f.cmd == Cmd.ACK and f.data[0] == cmd

        frame = await self.bus.transact(
            addr,
            encode_frame(addr, cmd, data),
            decode_frame,
            reply_timeout_s=self.wire_timeout,
            match=match,
            # A command goes before the polls queued on the line (a barrier waits on it).
            urgency=Urgency.ROUTINE if cmd == Cmd.STATUS else Urgency.COMMAND,
        )
        assert frame is not None
        if frame.cmd == Cmd.NAK:
            reason = frame.data[1]
            name = NakReason(reason).name.lower() if reason in NakReason._value2member_map_ else f"0x{reason:02X}"
            raise DeviceFaultError(f"{cmd.name} refused by the controller: {name}", code=reason)
        return frame

    async def _command(self, cmd: Cmd, data: bytes = b"") -> None:
        await self._request(cmd, data)

    async def _open(self) -> None:
        await self._command(Cmd.OPEN)

    async def _close_arm(self) -> None:
        await self._command(Cmd.CLOSE)

    async def _stop(self) -> None:
        await self._command(Cmd.STOP)

    async def _lock(self, locked: bool) -> None:
        await self._command(Cmd.LOCK, bytes([1 if locked else 0]))

    async def _status(self) -> GateStatus:
        st, self.last_angle = status_from_frame(await self._request(Cmd.STATUS))
        return st
