"""Modbus RTU framing (drivers/modbus_rtu.py): byte vectors from the device docs, decoding in
noise, fuzzing, and a cross-check of the driver's codec against the simulators' own engine.

The decoder's contract is the serial one: ``(reply, consumed)``, ``(None, 0)`` need more,
``(None, n)`` n bytes of noise, or a ``FrameError`` — never another exception.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from portlane.drivers.crc import crc16_modbus_bytes
from portlane.drivers.modbus_rtu import decode_reply, encode_request, expected_reply_size, reply_decoder
from portlane.drivers.serial_link import DecodeStats, FrameError, drain
from portlane.sim_devices.modbus_slave import serve_pdu
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.pdu.bit_message import ReadCoilsRequest, ReadDiscreteInputsRequest, WriteSingleCoilRequest
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
    WriteMultipleRegistersRequest,
    WriteSingleRegisterRequest,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "devices"


def hx(b: bytes) -> str:
    return b.hex(" ").upper()


def rtu(body: str) -> bytes:
    raw = bytes.fromhex(body)
    return raw + crc16_modbus_bytes(raw)


def _doc_frames(name: str, prefix: str) -> list[bytes]:
    """Every capture of one direction in a device doc (``RTU ->`` requests, ``RTU <-`` answers,
    including the ``<- …`` answers on the request's line) as bytes."""
    medium, arrow = prefix.split()
    out = []
    for line in (DOCS / name).read_text(encoding="utf-8").splitlines():
        if not line.strip().startswith(medium):
            continue
        for m in re.finditer(r"(->|<-)\s+((?:[0-9A-F]{2} )*[0-9A-F]{2})\b", line):
            if m.group(1) == arrow:
                out.append(bytes.fromhex(m.group(2)))
    return out


# --------------------------------------------------------------------------- vectors


def test_requests_are_the_bytes_in_the_docs() -> None:
    gate = {hx(f) for f in _doc_frames("gate-modbus.md", "RTU ->")}
    io = {hx(f) for f in _doc_frames("io-module.md", "RTU ->")}
    assert hx(encode_request(1, ReadInputRegistersRequest(address=0, count=11))) == "01 04 00 00 00 0B B1 CD"
    assert hx(encode_request(1, ReadInputRegistersRequest(address=0, count=11))) in gate
    assert hx(encode_request(1, WriteSingleCoilRequest(address=0, bits=[True]))) in gate
    assert hx(encode_request(1, WriteSingleCoilRequest(address=1, bits=[True]))) in gate
    assert hx(encode_request(1, WriteSingleCoilRequest(address=3, bits=[True]))) in gate
    assert hx(encode_request(1, WriteSingleRegisterRequest(address=0, registers=[9999]))) in gate
    assert hx(encode_request(1, ReadInputRegistersRequest(address=0, count=10))) in io


@pytest.mark.parametrize(
    ("doc", "direction"),
    [
        ("gate-modbus.md", "RTU ->"),
        ("gate-modbus.md", "RTU <-"),
        ("io-module.md", "RTU ->"),
        ("io-module.md", "RTU <-"),
    ],
)
def test_every_rtu_capture_in_the_docs_has_a_good_crc(doc: str, direction: str) -> None:
    frames = _doc_frames(doc, direction)
    assert frames
    for f in frames:
        assert crc16_modbus_bytes(f[:-2]) == f[-2:], hx(f)


def test_the_documented_gate_status_answer_decodes() -> None:
    answer = bytes.fromhex("01 04 16 00 FF 00 5A 00 00 00 01 00 00 00 01 00 08 00 08 00 08 00 08 00 08 2D A5")
    assert answer in _doc_frames("gate-modbus.md", "RTU <-")
    request = ReadInputRegistersRequest(address=0, count=11)
    reply, n = reply_decoder(1, request)(answer)
    assert reply is not None and n == len(answer) == expected_reply_size(request)
    state, angle, cyc_hi, cyc_lo, fault, inputs, *counters = reply.pdu.registers
    assert (state, angle, cyc_hi << 16 | cyc_lo, fault, inputs) == (0xFF, 90, 1, 0, 0b1)
    assert counters == [8, 8, 8, 8, 8]


def test_exception_answers() -> None:
    busy = bytes.fromhex("01 84 06 C3 02")
    assert busy in _doc_frames("gate-modbus.md", "RTU <-")
    reply, n = decode_reply(busy, unit=1, function_code=4, size=27)
    assert reply is not None and n == 5 and reply.is_exception
    assert isinstance(reply.pdu, ExceptionResponse) and reply.pdu.exception_code == 6
    refused, _ = decode_reply(bytes.fromhex("01 85 04 43 53"), unit=1, function_code=5, size=8)
    assert refused is not None and refused.pdu.exception_code == 4


def test_decoding_in_noise() -> None:
    good = rtu("01 03 04 00 2A 00 2B")
    decode = reply_decoder(1, ReadHoldingRegistersRequest(address=0, count=2))
    assert decode(good[:5]) == (None, 0)  # incomplete: wait for more
    assert decode(b"\x7f\x00" + good) == (None, 2)  # noise up to our unit address
    assert decode(b"\x01\x10" + good) == (None, 1)  # our address, another function: noise
    assert decode(rtu("01 03 06 00 00 00 00 00 00")[:4]) == (None, 1)  # a byte count we cannot get
    with pytest.raises(FrameError, match="CRC") as ei:
        decode(good[:-1] + bytes([good[-1] ^ 0xFF]))
    assert ei.value.consumed == 1  # resynchronise one byte on
    buf = bytearray(b"\xff\x01" + good[:-1] + b"\x00" + good)  # noise, a torn answer, the answer
    stats = DecodeStats()
    [reply] = drain(buf, decode, stats)
    assert list(reply.pdu.registers) == [42, 43] and stats.bad_frames >= 1 and stats.garbage_bytes >= 1


def test_broadcast_and_range() -> None:
    assert hx(encode_request(0, WriteSingleCoilRequest(address=2, bits=[True]))).startswith("00 05 00 02 FF 00")
    with pytest.raises(ValueError, match="out of range"):
        encode_request(248, ReadCoilsRequest(address=0, count=1))


# --------------------------------------------------------------------------- fuzzing


@settings(max_examples=300)
@given(data=st.binary(max_size=64), fc=st.sampled_from([1, 2, 3, 4, 5, 6, 15, 16]), count=st.integers(1, 20))
def test_the_decoder_never_raises_anything_but_frame_errors(data: bytes, fc: int, count: int) -> None:
    size = expected_reply_size(_request(fc, 0, count))
    try:
        reply, consumed = decode_reply(data, unit=1, function_code=fc, size=size)
    except FrameError as exc:
        assert exc.consumed >= 1
    else:
        assert 0 <= consumed <= len(data)
        assert reply is None or (consumed > 0 and reply.unit == 1)


# --------------------------------------------------------------------------- driver codec x simulator engine


def _request(fc: int, address: int, count: int) -> ModbusPDU:
    if fc == 1:
        return ReadCoilsRequest(address=address, count=count)
    if fc == 2:
        return ReadDiscreteInputsRequest(address=address, count=count)
    if fc == 3:
        return ReadHoldingRegistersRequest(address=address, count=count)
    if fc == 4:
        return ReadInputRegistersRequest(address=address, count=count)
    if fc == 5:
        return WriteSingleCoilRequest(address=address, bits=[True])
    if fc == 6:
        return WriteSingleRegisterRequest(address=address, registers=[count])
    if fc == 16:
        return WriteMultipleRegistersRequest(address=address, registers=list(range(count)))
    from pymodbus.pdu.bit_message import WriteMultipleCoilsRequest

    return WriteMultipleCoilsRequest(address=address, bits=[bool(i % 2) for i in range(count)])


class _Bank:
    def __init__(self, values: list[int]) -> None:
        self.values = values
        self.written: list[tuple[str, int, list[int]]] = []

    def read(self, table: str, address: int, count: int) -> list[int] | int:
        if address + count > len(self.values):
            return 2
        vals = self.values[address : address + count]
        return [v & 1 for v in vals] if table in ("coils", "discrete_inputs") else vals

    def write(self, table: str, address: int, values: list[int]) -> int:
        self.written.append((table, address, values))
        return 0


@settings(max_examples=200)
@given(
    values=st.lists(st.integers(0, 0xFFFF), min_size=40, max_size=40),
    fc=st.sampled_from([1, 2, 3, 4, 5, 6, 15, 16]),
    address=st.integers(0, 45),
    count=st.integers(1, 12),
)
def test_driver_codec_and_simulator_engine_agree(values: list[int], fc: int, address: int, count: int) -> None:
    """Two independent implementations — pymodbus PDUs framed by the driver, the simulators'
    own Modbus engine — read each other's bytes."""
    bank = _Bank(values)
    request = _request(fc, address, count)
    frame = encode_request(7, request)
    assert crc16_modbus_bytes(frame[:-2]) == frame[-2:]
    answer_pdu = serve_pdu(bank, frame[1:-2])  # what the simulated slave answers
    answer = bytes([7]) + answer_pdu
    reply, n = reply_decoder(7, request)(answer + crc16_modbus_bytes(answer))
    assert reply is not None and n == len(answer) + 2
    if fc in (1, 2, 3, 4) and address + count > len(values):
        assert reply.is_exception and reply.pdu.exception_code == 2
    elif fc in (1, 2):
        assert [int(b) for b in reply.pdu.bits[:count]] == [v & 1 for v in values[address : address + count]]
    elif fc in (3, 4):
        assert list(reply.pdu.registers) == values[address : address + count]
    else:
        assert not reply.is_exception and reply.pdu.address == address
        assert bank.written and bank.written[0][1] == address
