"""Modbus RTU framing, sans-I/O: pymodbus builds and parses the PDU, this module the frame.

Wire format (Modbus over Serial Line v1.02, §2.5.1)::

    unit | function | data ... | crc_lo crc_hi

* ``unit``: slave address 1–247 (0 = broadcast: executed by every slave, never answered);
* ``function``: the request's function code; an exception answer sets its top bit
  (``0x83`` answers ``0x03``) and carries one data byte, the exception code;
* CRC-16/MODBUS (``drivers.crc``) over unit..data, low byte first;
* frames are delimited by >= 3.5 character times of silence — the bus scheduler
  (``drivers.bus``) keeps that gap before every request, whatever protocol sent the last one.

Example (checked by the tests, see docs/devices/gate-modbus.md): reading input registers
0–10 of unit 1 is ``01 04 00 00 00 0B B1 CD``; an "illegal data address" exception to it is
``01 84 02 C2 C1``.

RTU has no start byte, so an answer is recognised by what the master expects: the unit it
addressed, the function it sent (or its exception), and the answer's exact length, known
from the request (``expected_reply_size``). Everything else at the head of the buffer is
line noise and is skipped one byte at a time; a frame of the right shape with a wrong CRC
is a ``FrameError`` (the bus then waits only for the line to settle, not for the whole
timeout). ``decode_reply`` follows the decoder contract of ``drivers.serial_link``:
``(reply, consumed)``, ``(None, 0)`` = need more bytes, ``(None, n)`` = n garbage bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU

from .crc import crc16_modbus, crc16_modbus_bytes
from .serial_link import FrameError

__all__ = [
    "EXCEPTION_REPLY_SIZE",
    "RtuReply",
    "decode_reply",
    "encode_request",
    "expected_reply_size",
    "reply_decoder",
]

#: unit + function (with the top bit) + exception code + CRC
EXCEPTION_REPLY_SIZE = 5
#: unit + function + CRC around the data of each kind of answer
_OVERHEAD = 4

_CLIENT = DecodePDU(is_server=False)


@dataclass(frozen=True, slots=True)
class RtuReply:
    """An answer from ``unit``; ``pdu`` is pymodbus' response object (or ``ExceptionResponse``)."""

    unit: int
    pdu: ModbusPDU

    @property
    def is_exception(self) -> bool:
        return isinstance(self.pdu, ExceptionResponse)


def encode_request(unit: int, request: ModbusPDU) -> bytes:
    """The RTU frame of ``request`` to ``unit`` (the PDU bytes come from pymodbus)."""
    if not 0 <= unit <= 247:
        raise ValueError(f"Modbus unit {unit} out of range 0..247")
    body = bytes([unit, request.function_code]) + request.encode()
    return body + crc16_modbus_bytes(body)


def expected_reply_size(request: ModbusPDU) -> int:
    """Length of a normal (non-exception) answer to ``request``, in bytes on the wire."""
    fc = request.function_code
    if fc in (1, 2):  # bits, packed 8 per byte, after a byte count
        return _OVERHEAD + 1 + math.ceil(request.count / 8)
    if fc in (3, 4):  # registers after a byte count
        return _OVERHEAD + 1 + 2 * request.count
    if fc in (5, 6, 15, 16):  # echo of address and value / quantity
        return _OVERHEAD + 4
    raise ValueError(f"function code {fc} is not used by the drivers")


def decode_reply(buf: bytes, *, unit: int, function_code: int, size: int) -> tuple[RtuReply | None, int]:
    """Decode the answer of ``unit`` to ``function_code`` (``size`` bytes when not an exception)
    at the head of ``buf``. See the module docstring for the contract."""
    if not buf:
        return None, 0
    if buf[0] != unit:
        i = buf.find(bytes([unit]), 1)
        return None, len(buf) if i < 0 else i
    if len(buf) < 2:
        return None, 0
    fc = buf[1]
    if fc == function_code | 0x80:
        total = EXCEPTION_REPLY_SIZE
    elif fc == function_code:
        total = size
        if fc in (1, 2, 3, 4) and len(buf) >= 3 and buf[2] != size - _OVERHEAD - 1:
            return None, 1  # a byte count this request cannot have: noise that looks like us
    else:
        return None, 1
    if len(buf) < total:
        return None, 0
    frame = bytes(buf[:total])
    crc = crc16_modbus(frame[:-2])
    if frame[-2] != crc & 0xFF or frame[-1] != crc >> 8:
        # Resynchronise one byte on: the real answer may start inside what we took for one.
        raise FrameError(f"CRC error: got {frame[-2]:02X} {frame[-1]:02X}, expected {crc & 0xFF:02X} {crc >> 8:02X}")
    pdu = _CLIENT.decode(frame[1:-2])
    if pdu is None:
        raise FrameError(f"undecodable answer to function {function_code}", consumed=total)
    pdu.dev_id = unit
    return RtuReply(unit, pdu), total


def reply_decoder(unit: int, request: ModbusPDU) -> Callable[[bytes], tuple[RtuReply | None, int]]:
    """A decoder for the one answer ``request`` to ``unit`` can get (for ``Rs485Bus.transact``)."""
    fc, size = request.function_code, expected_reply_size(request)

    def decode(buf: bytes) -> tuple[RtuReply | None, int]:
        return decode_reply(buf, unit=unit, function_code=fc, size=size)

    return decode
