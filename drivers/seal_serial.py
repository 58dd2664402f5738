"""Fixed e-seal / e-lock reader on a serial line (RS-485 multidrop or RS-232), polled.

Project-defined frame, in the family of the lane's other binary serial protocols (9600 or
19200 bit/s 8N1; one address per reader)::

    02 | len | addr | cmd | data[len-2] | crc_lo crc_hi | 03

* ``02`` STX; ``len`` counts ``addr`` + ``cmd`` + ``data`` (2..255); ``03`` ETX after the CRC;
* CRC-16/MODBUS over ``len`` .. the end of ``data``, low byte first (``drivers.crc``).

Commands (host → reader) and answers (reader → host = command | 0x80)::

    31 INVENTORY   —                                  B1  n | n × seal record (n ≤ 6)
    32 APPLY       mfr(2) tag(4) auth(8 ASCII)        B2  result | seal record
    33 REMOVE      mfr(2) tag(4) auth(8 ASCII)        B3  result | seal record
    any other                                         15  cmd | reason (1 unknown, 2 bad length)

Seal record, 36 bytes (the data ISO 18185 gives an e-seal, plus the e-lock's route check)::

    mfr(2, big-endian) tag(4, big-endian) kind(1: 0 e-seal, 1 e-lock)
    state(1: 0 sealed, 1 opened, 2 tampered)
    sealed_at(12 ASCII, CCYYMMDDHHMM UTC, ISO 18185's format; "000000000000" = never)
    opened_at(12 ASCII, likewise) battery(1: percent, 0xFF = not reported)
    flags(1: bit 0 battery low) route(1: 0 none (e-seal), 1 on route, 2 off route, 3 no GPS fix)
    rssi(1, signed, dBm)

Result of APPLY / REMOVE: 0 done, 1 authorisation refused, 2 seal not in the field,
3 wrong state (applying a sealed lock, removing an open one), 4 battery too low to drive
the lock, 5 lock mechanism fault. The seal answers with its record after the command.

Where this comes from: ISO 18185 (seal id = manufacturer id + tag id; status sealed/opened;
battery; sealing and opening times UTC as CCYYMMDDHHMM) and the cross-boundary Single E-lock
Scheme (one e-lock with GPS, applied and removed only by customs with an instruction that
carries a password, the track compared with the declared route) — see
``docs/devices/eseal.md``. ISO 18185's own air interface (433 MHz, ISO/IEC 18000-7) is the
reader's business; vendors' reader protocols are not public and not interoperable, so the
host-side frame, command numbers and record layout here are project-defined.

Example (computed, see docs/devices/eseal.md): inventory of reader 1 is
``02 02 01 31 10 44 03``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from .bus import BusMember, Rs485Bus
from .cargo_devices import AUTH_LEN, LockRefusal, RouteStatus, SealKind, SealReaderDriver, SealRecord, SealState
from .config import DeviceConfig, SerialLink
from .crc import crc16_modbus_bytes
from .errors import DeviceFaultError, DeviceUnavailableError
from .serial_link import FrameError

__all__ = [
    "CMD_APPLY",
    "CMD_INVENTORY",
    "CMD_REMOVE",
    "MAX_SEALS",
    "RECORD_LEN",
    "RESULTS",
    "SealFrame",
    "SerialSealReader",
    "decode_frame",
    "decode_inventory",
    "decode_record",
    "encode_frame",
    "encode_record",
]

STX, ETX, NAK = 0x02, 0x03, 0x15
CMD_INVENTORY, CMD_APPLY, CMD_REMOVE = 0x31, 0x32, 0x33
ANSWER = 0x80
RECORD_LEN = 36
#: 1 + 6 × 36 = 217 data bytes: what fits under len's 255. A truck carries one to four seals.
MAX_SEALS = 6
MIN_LEN = 2
RESULTS = {
    0: "done",
    1: "authorisation refused",
    2: "seal not in the field",
    3: "wrong state for this command",
    4: "battery too low to drive the lock",
    5: "lock mechanism fault",
}
assert set(RESULTS) - {0} == set(LockRefusal), "every refusal the reader answers is one the interface names"
NAK_REASONS = {1: "unknown command", 2: "bad length"}
_KINDS = {0: SealKind.ESEAL, 1: SealKind.ELOCK}
_STATES = {0: SealState.SEALED, 1: SealState.OPENED, 2: SealState.TAMPERED}
_ROUTES = {1: RouteStatus.ON_ROUTE, 2: RouteStatus.OFF_ROUTE, 3: RouteStatus.NO_FIX}
_NEVER = b"000000000000"
#: An inventory lets the reader listen for every seal in its field: ISO/IEC 18000-7 collision
#: arbitration over a handful of tags takes up to ~1 s; applying or removing an e-lock waits
#: for the lock to drive its bolt and confirm (~1.5 s). Added to the wire deadline.
INVENTORY_S = 1.0
ACTUATE_S = 1.5


@dataclass(frozen=True, slots=True)
class SealFrame:
    address: int
    cmd: int
    data: bytes = b""


def encode_frame(address: int, cmd: int, data: bytes = b"") -> bytes:
    n = 2 + len(data)
    if n > 255:
        raise ValueError(f"frame of {n} bytes after len > 255")
    body = bytes([n, address & 0xFF, cmd & 0xFF]) + data
    return bytes([STX]) + body + crc16_modbus_bytes(body) + bytes([ETX])


def decode_frame(buf: bytes) -> tuple[SealFrame | None, int]:
    """``(frame, consumed)``; ``(None, 0)`` need more; ``(None, n)`` garbage; ``FrameError`` bad."""
    if not buf:
        return None, 0
    if buf[0] != STX:
        i = buf.find(STX)
        return None, len(buf) if i < 0 else i
    if len(buf) < 2:
        return None, 0
    n = buf[1]
    if n < MIN_LEN:
        raise FrameError(f"bad length {n}")
    total = 1 + 1 + n + 2 + 1
    if len(buf) < total:
        return None, 0
    body = bytes(buf[1 : 2 + n])
    if buf[total - 1] != ETX:
        raise FrameError("no ETX after the CRC")
    if bytes(buf[2 + n : total - 1]) != crc16_modbus_bytes(body):
        # Skip only the STX: an STX in line noise can swallow a good frame behind it.
        raise FrameError("CRC error")
    return SealFrame(body[1], body[2], body[3:]), total


def _time(raw: bytes) -> datetime.datetime | None:
    if raw == _NEVER:
        return None
    text = raw.decode("ascii")
    if not text.isdigit():
        raise ValueError(f"time {raw!r} is not CCYYMMDDHHMM")
    return datetime.datetime.strptime(text, "%Y%m%d%H%M").replace(tzinfo=datetime.UTC)


def _time_bytes(t: datetime.datetime | None) -> bytes:
    if t is None:
        return _NEVER
    return t.astimezone(datetime.UTC).strftime("%Y%m%d%H%M").encode("ascii")


def decode_record(raw: bytes) -> SealRecord:
    """One 36-byte seal record; ``ValueError`` when a field is out of its range."""
    if len(raw) != RECORD_LEN:
        raise ValueError(f"a seal record is {RECORD_LEN} bytes, not {len(raw)}")
    kind, state = _KINDS.get(raw[6]), _STATES.get(raw[7])
    if kind is None or state is None:
        raise ValueError(f"kind {raw[6]} / state {raw[7]} unknown")
    battery, flags, route = raw[32], raw[33], raw[34]
    if battery != 0xFF and battery > 100:
        raise ValueError(f"battery {battery} %")
    if route and (route not in _ROUTES or kind is SealKind.ESEAL):
        raise ValueError(f"route code {route} on a {kind}")
    return SealRecord(
        manufacturer=int.from_bytes(raw[0:2], "big"),
        tag=int.from_bytes(raw[2:6], "big"),
        kind=kind,
        state=state,
        sealed_at=_time(raw[8:20]),
        opened_at=_time(raw[20:32]),
        battery_pct=None if battery == 0xFF else battery,
        battery_low=bool(flags & 1),
        route=_ROUTES.get(route),
        rssi_dbm=int.from_bytes(raw[35:36], "big", signed=True),
    )


def encode_record(r: SealRecord) -> bytes:
    route = {v: k for k, v in _ROUTES.items()}.get(r.route, 0) if r.route is not None else 0
    return (
        r.manufacturer.to_bytes(2, "big")
        + r.tag.to_bytes(4, "big")
        + bytes([0 if r.kind is SealKind.ESEAL else 1, {v: k for k, v in _STATES.items()}[r.state]])
        + _time_bytes(r.sealed_at)
        + _time_bytes(r.opened_at)
        + bytes([0xFF if r.battery_pct is None else r.battery_pct, int(r.battery_low), route])
        + r.rssi_dbm.to_bytes(1, "big", signed=True)
    )


def decode_inventory(data: bytes) -> tuple[SealRecord, ...]:
    if not data or data[0] > MAX_SEALS or len(data) != 1 + data[0] * RECORD_LEN:
        raise ValueError(f"inventory of {len(data)} bytes")
    return tuple(decode_record(data[1 + i * RECORD_LEN : 1 + (i + 1) * RECORD_LEN]) for i in range(data[0]))


class SerialSealReader(BusMember, SealReaderDriver):
    """A reader at address ``config.unit``, polled through the port's RS-485 bus scheduler
    (it may share the line with the gate controller and the board)."""

    def __init__(self, device_id: str, config: DeviceConfig, **bus_opts: Any) -> None:
        if not isinstance(config.link, SerialLink):
            raise DeviceUnavailableError("the serial seal reader backend needs a serial link", device=device_id)
        self.wire_timeout = config.timeout_s
        super().__init__(device_id, timeout=2 * config.timeout_s + ACTUATE_S + 0.05)
        self.config = config
        self.link: SerialLink = config.link
        self.address = config.unit
        self._bus_opts = bus_opts
        self._bus: Rs485Bus | None = None

    async def _transact(self, cmd: int, data: bytes, work_s: float) -> bytes:
        if self._bus is None:
            raise DeviceUnavailableError("not connected")
        addr = self.address

        def match(f: SealFrame) -> bool:
            return f.address == addr and f.cmd in (cmd | ANSWER, NAK)

        reply = await self._bus.transact(
            addr, encode_frame(addr, cmd, data), decode_frame, reply_timeout_s=self.wire_timeout + work_s, match=match
        )
        assert reply is not None
        if reply.cmd == NAK:
            reason = reply.data[1] if len(reply.data) > 1 else 0
            raise DeviceFaultError(f"reader refused 0x{cmd:02X}: {NAK_REASONS.get(reason, reason)}", code=reason)
        return reply.data

    def _bad(self, what: str, exc: Exception) -> FrameError:
        return FrameError(f"malformed {what} answer: {exc}", device=self.device_id)

    async def _read_seals(self) -> tuple[SealRecord, ...]:
        data = await self._transact(CMD_INVENTORY, b"", INVENTORY_S)
        try:
            return decode_inventory(data)
        except ValueError as exc:  # UnicodeDecodeError is a ValueError
            raise self._bad("inventory", exc) from exc

    async def _command(self, action: str, manufacturer: int, tag: int, authorisation: bytes) -> SealRecord:
        assert len(authorisation) == AUTH_LEN
        cmd = CMD_APPLY if action == "apply" else CMD_REMOVE
        target = manufacturer.to_bytes(2, "big") + tag.to_bytes(4, "big")
        data = await self._transact(cmd, target + authorisation, ACTUATE_S)
        try:
            if len(data) != 1 + RECORD_LEN or data[0] not in RESULTS:
                raise ValueError(f"{len(data)} bytes, result {data[:1].hex()}")
            record = decode_record(data[1:])
        except ValueError as exc:
            raise self._bad(action, exc) from exc
        if data[0]:
            raise DeviceFaultError(f"{action} {record.seal_id} refused by the lock: {RESULTS[data[0]]}", code=data[0])
        return record
