"""CRC-16/MODBUS: the one implementation every driver uses.

CRC-16/MODBUS (catalogue name in the CRC RevEng list): width 16, polynomial 0x8005
reflected (0xA001), initial value 0xFFFF, no final XOR; sent **low byte first**. It protects
Modbus RTU frames and the framed RS-485 gate protocol; the technician CLI uses it too.

Computed by pymodbus' table-driven ``FramerRTU.compute_CRC`` rather than by hand: pymodbus
is already the project's Modbus library, its RTU framer relies on this function for every
frame, and a table lookup costs ~3 µs per frame (the pure-Python ``crc`` package takes
~100 µs, which the decoders' fuzz tests and a noisy line's resynchronisation feel).
pymodbus returns the CRC byte-swapped (wire order read as big-endian); we return the CRC
value itself and leave the byte order to ``crc16_modbus_bytes``.

Check value (the CRC of ``b"123456789"``): 0x4B37.
"""

from __future__ import annotations

from pymodbus.framer.rtu import FramerRTU

__all__ = ["crc16_modbus", "crc16_modbus_bytes"]


def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS of ``data`` as a number (``crc16_modbus(b"123456789") == 0x4B37``)."""
    swapped = FramerRTU.compute_CRC(data)
    return ((swapped & 0xFF) << 8) | (swapped >> 8)


def crc16_modbus_bytes(data: bytes) -> bytes:
    """The two CRC bytes as they follow ``data`` on the wire (low byte first)."""
    return crc16_modbus(data).to_bytes(2, "little")
