"""Serial codecs: byte vectors, property-based round trips, decoder fuzzing.

The decoders' contract: any bytes give ``(frame, consumed)`` / ``(None, n)`` or a
``FrameError`` (a ``DeviceProtocolError``) — never another exception, and ``drain`` always
makes progress.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from portlane.drivers import board_serial, gate_rs485, rfid_serial, weighbridge_serial
from portlane.drivers.base import BoardColour, EdgeCounts, GatePosition, GateStatus
from portlane.drivers.crc import crc16_modbus, crc16_modbus_bytes
from portlane.drivers.errors import DeviceProtocolError
from portlane.drivers.serial_link import DecodeStats, FrameError, drain

DOCS = Path(__file__).resolve().parents[2] / "docs" / "devices"
DECODERS = [
    gate_rs485.decode_frame,
    board_serial.decode_frame,
    rfid_serial.decode_frame,
    weighbridge_serial.decode_frame,
]


def hx(b: bytes) -> str:
    return b.hex(" ").upper()


# --------------------------------------------------------------------------- vectors


def test_crc16_modbus_check_value() -> None:
    # CRC RevEng catalogue, CRC-16/MODBUS: check = CRC of b"123456789"
    assert crc16_modbus(b"123456789") == 0x4B37
    assert crc16_modbus_bytes(b"123456789") == b"\x37\x4b"  # low byte first on the wire


def test_crc16_modbus_matches_published_dooya_vectors() -> None:
    # research note 2a, family 3: frames verified against the vendor page
    for frame in ("55 12 34 03 01 AD 8A", "55 12 34 03 02 ED 8B", "55 12 34 03 03 2C 4B", "55 00 00 03 01 E9 3C"):
        raw = bytes.fromhex(frame)
        assert crc16_modbus(raw[:-2]).to_bytes(2, "little") == raw[-2:]


def test_gate_vectors() -> None:
    assert hx(gate_rs485.encode_frame(1, gate_rs485.Cmd.STATUS)) == "55 01 10 00 4D E8"
    assert hx(gate_rs485.encode_frame(1, gate_rs485.Cmd.OPEN)) == "55 01 01 00 41 B8"
    ack = bytes.fromhex("55 01 06 01 01")
    frame, n = gate_rs485.decode_frame(ack + crc16_modbus(ack).to_bytes(2, "little"))
    assert frame == gate_rs485.GateFrame(1, gate_rs485.Cmd.ACK, b"\x01") and n == 7
    st_ = GateStatus(GatePosition.OPENING, photocell_blocked=True, fault_code=0x21, cycles=70000)
    raw = gate_rs485.encode_status(3, st_, angle=45)
    assert hx(raw)[:35] == "55 03 90 09 FE 04 2D 00 21 00 01 11"
    decoded, n = gate_rs485.decode_frame(raw)
    assert n == len(raw) and decoded is not None
    assert gate_rs485.status_from_frame(decoded) == (st_, 45)


#: The status example of docs/devices/gate-rs485.md, version 2 and version 1.
STATUS_V2 = GateStatus(
    GatePosition.OPEN,
    limit_open=True,
    cycles=1234,
    photocell_edges=EdgeCounts(7, 7),
    loop_edges=EdgeCounts(7, 7),
    vehicles_passed=7,
)
STATUS_V1 = GateStatus(GatePosition.OPEN, limit_open=True, cycles=1234)


def test_gate_status_record_versions() -> None:
    v2 = gate_rs485.encode_status(1, STATUS_V2, angle=90)
    assert hx(v2) == "55 01 90 13 FF 01 5A 00 00 00 00 04 D2 00 07 00 07 00 07 00 07 00 07 BF 56"
    v1 = gate_rs485.encode_status(1, STATUS_V1, angle=90)
    assert hx(v1) == "55 01 90 09 FF 01 5A 00 00 00 00 04 D2 E3 F0"
    for raw, expected in ((v2, STATUS_V2), (v1, STATUS_V1)):
        frame, _ = gate_rs485.decode_frame(raw)
        assert frame is not None and gate_rs485.status_from_frame(frame) == (expected, 90)
    # the counters of a v1 controller are unknown, not zero
    frame, _ = gate_rs485.decode_frame(v1)
    assert frame is not None and gate_rs485.status_from_frame(frame)[0].vehicles_passed is None
    with pytest.raises(FrameError, match="expected 19 or 9"):
        gate_rs485.decode_frame(bytes.fromhex("55 01 90 0A"))


def test_edge_counts_compare_across_the_wrap() -> None:
    assert EdgeCounts(2, 1).since(EdgeCounts(0xFFFF, 0xFFFE)) == EdgeCounts(3, 3)
    assert EdgeCounts(5, 5).since(EdgeCounts(5, 5)) == EdgeCounts(0, 0)


def test_gate_decoder_rejects_bad_frames_with_typed_errors() -> None:
    good = gate_rs485.encode_frame(1, gate_rs485.Cmd.OPEN)
    with pytest.raises(FrameError, match="CRC"):
        gate_rs485.decode_frame(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(FrameError, match="unknown command"):
        gate_rs485.decode_frame(bytes.fromhex("55 01 77 00 00 00"))
    with pytest.raises(FrameError, match="bad length"):
        gate_rs485.decode_frame(bytes.fromhex("55 01 01 05"))
    assert gate_rs485.decode_frame(good[:3]) == (None, 0)  # truncated: wait for more
    assert gate_rs485.decode_frame(b"\x00\xff" + good) == (None, 2)  # garbage before sync
    bad_status = gate_rs485.GateFrame(1, gate_rs485.Cmd.STATUS_REPLY, bytes([0x42, 0, 0, 0, 0, 0, 0, 0, 0]))
    with pytest.raises(DeviceProtocolError, match="position"):
        gate_rs485.status_from_frame(bad_status)
    both_limits = gate_rs485.GateFrame(1, gate_rs485.Cmd.STATUS_REPLY, bytes([0, 3, 0, 0, 0, 0, 0, 0, 0]))
    with pytest.raises(DeviceProtocolError, match="both limit"):
        gate_rs485.status_from_frame(both_limits)


def test_board_vectors_with_chinese_text() -> None:
    assert hx(board_serial.encode_clear(1)) == "02 30 31 43 03 34 31"
    raw = board_serial.encode_line(1, 2, BoardColour.AMBER, "粤Z·AB12港")
    assert hx(raw) == "02 30 31 4C 32 59 47 D4 C1 5A A1 A4 41 42 31 32 B8 DB 03 34 42"
    frame, n = board_serial.decode_frame(raw)
    assert n == len(raw) and frame is not None and frame.text == "粤Z·AB12港" and frame.encoding == "G"
    # a character outside GB2312 goes out as UTF-8
    code, text = board_serial.encode_text("車 𠀀")
    assert code == "U" and text == "車 𠀀".encode()
    with pytest.raises(FrameError, match="check"):
        board_serial.decode_frame(raw[:-1] + b"0")


def test_rfid_vectors() -> None:
    raw = rfid_serial.encode_tag(1, "E2801160600002054C8B1234", antenna=1, rssi_dbm=-60)
    assert hx(raw) == "A0 13 01 89 00 30 00 E2 80 11 60 60 00 02 05 4C 8B 12 34 45 F7"
    frame, _ = rfid_serial.decode_frame(raw)
    assert frame is not None and (frame.tag_id, frame.antenna, frame.rssi_dbm) == ("E2801160600002054C8B1234", 1, -60)
    assert hx(rfid_serial.encode_heartbeat(1, 7)) == "A0 04 01 7F 07 D5"
    with pytest.raises(FrameError, match="checksum"):
        rfid_serial.decode_frame(raw[:-1] + b"\x00")


def test_weighbridge_vectors() -> None:
    raw = weighbridge_serial.encode_frame(31240, increment=2)
    assert hx(raw) == "02 32 30 20 30 33 31 32 34 30 30 30 30 30 30 30 0D 25"
    frame, n = weighbridge_serial.decode_frame(raw)
    assert n == 18 and frame is not None and frame.kg == 31240 and not frame.motion
    moving, _ = weighbridge_serial.decode_frame(weighbridge_serial.encode_frame(-40, motion=True))
    assert moving is not None and moving.kg == -40 and moving.motion
    # spaces for leading zeros are accepted (some indicators blank them)
    body = b"\x02\x32\x30\x20" + b"  1500" + b"000000" + b"\r"
    frame, _ = weighbridge_serial.decode_frame(body + bytes([(-sum(body)) & 0x7F]))
    assert frame is not None and frame.kg == 1500
    lb = bytearray(raw)
    lb[2] &= ~0x10
    lb[17] = (-sum(lb[:17])) & 0x7F
    with pytest.raises(FrameError, match="lb"):
        weighbridge_serial.decode_frame(bytes(lb))


def test_weighbridge_resyncs_in_a_noisy_stream() -> None:
    good = weighbridge_serial.encode_frame(1500)
    stream = bytearray(b"\xff\x00garbage" + good[:9] + good + b"\x02\x7f" + good)
    stats = DecodeStats()
    frames = drain(stream, weighbridge_serial.decode_frame, stats)
    assert [f.kg for f in frames] == [1500, 1500]
    assert stats.bad_frames >= 1 and stats.garbage_bytes > 0


@pytest.mark.parametrize(
    ("name", "example"),
    [
        ("gate-rs485.md", lambda: gate_rs485.encode_frame(1, gate_rs485.Cmd.STATUS)),
        ("gate-rs485.md", lambda: gate_rs485.encode_frame(2, gate_rs485.Cmd.OPEN)),
        ("gate-rs485.md", lambda: gate_rs485.encode_frame(2, gate_rs485.Cmd.ACK, b"\x01")),
        ("gate-rs485.md", lambda: gate_rs485.encode_frame(2, gate_rs485.Cmd.NAK, b"\x01\x01")),
        ("gate-rs485.md", lambda: gate_rs485.encode_frame(1, gate_rs485.Cmd.LOCK, b"\x01")),
        ("gate-rs485.md", lambda: gate_rs485.encode_status(1, STATUS_V2, angle=90)),
        ("gate-rs485.md", lambda: gate_rs485.encode_status(1, STATUS_V1, angle=90)),
        ("gate-rs485.md", lambda: gate_rs485.encode_frame(2, gate_rs485.Cmd.NAK, b"\x01\x06")),
        ("led-board.md", lambda: board_serial.encode_clear(1)),
        ("led-board.md", lambda: board_serial.encode_line(1, 1, BoardColour.RED, "请停车 STOP")),
        ("led-board.md", lambda: board_serial.encode_line(1, 2, BoardColour.AMBER, "粤Z·AB12港")),
        ("led-board.md", lambda: board_serial.encode_show(1, 2)),
        ("led-board.md", lambda: board_serial.encode_frame(1, "A", b"D")),
        ("rfid.md", lambda: rfid_serial.encode_tag(1, "E2801160600002054C8B1234", antenna=1, rssi_dbm=-60)),
        ("rfid.md", lambda: rfid_serial.encode_heartbeat(1, 7)),
        ("weighbridge.md", lambda: weighbridge_serial.encode_frame(31240, increment=2)),
        ("weighbridge.md", lambda: weighbridge_serial.encode_frame(31260, increment=2, motion=True)),
    ],
)
def test_hex_examples_in_the_docs_are_what_the_code_sends(name: str, example: object) -> None:
    assert callable(example)
    text = (DOCS / name).read_text(encoding="utf-8")
    assert hx(example()) in text


# --------------------------------------------------------------------------- round trips

u16 = st.integers(0, 0xFFFF)
counters = st.one_of(st.none(), st.tuples(st.builds(EdgeCounts, u16, u16), st.builds(EdgeCounts, u16, u16), u16))
gate_status = st.builds(
    lambda pos, lo, pc, loop, locked, fault, cycles, latched: GateStatus(
        pos,
        limit_open=lo and pos == GatePosition.OPEN,
        limit_closed=(not lo) and pos == GatePosition.CLOSED,
        photocell_blocked=pc,
        loop_occupied=loop,
        locked=locked,
        fault_code=fault,
        cycles=cycles,
        photocell_edges=latched and latched[0],
        loop_edges=latched and latched[1],
        vehicles_passed=latched and latched[2],
    ),
    st.sampled_from(list(GatePosition)),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    u16,
    st.integers(0, 0xFFFFFFFF),
    counters,
)


@given(addr=st.integers(1, 247), status=gate_status, angle=st.integers(0, 90))
def test_gate_status_round_trip(addr: int, status: GateStatus, angle: int) -> None:
    raw = gate_rs485.encode_status(addr, status, angle=angle)
    frame, n = gate_rs485.decode_frame(raw)
    assert n == len(raw) and frame is not None and frame.address == addr
    assert gate_rs485.status_from_frame(frame) == (status, angle)


@given(
    addr=st.integers(0, 255),
    line=st.integers(1, 4),
    colour=st.sampled_from(list(BoardColour)),
    text=st.text(st.characters(codec="utf-8", min_codepoint=0x20, exclude_characters="\x7f"), max_size=20),
)
def test_board_line_round_trip(addr: int, line: int, colour: BoardColour, text: str) -> None:
    raw = board_serial.encode_line(addr, line, colour, text)
    frame, n = board_serial.decode_frame(raw)
    assert n == len(raw) and frame is not None
    assert (frame.address, frame.line, frame.colour) == (addr, line, colour)
    assert text.startswith(frame.text)  # equal unless truncated to 64 bytes


@given(
    addr=st.integers(0, 255),
    epc=st.binary(min_size=1, max_size=26).map(lambda b: (b + b)[: 2 * len(b)]),
    antenna=st.integers(1, 4),
    rssi=st.integers(-98, -2),
)
def test_rfid_tag_round_trip(addr: int, epc: bytes, antenna: int, rssi: int) -> None:
    raw = rfid_serial.encode_tag(addr, epc.hex(), antenna=antenna, rssi_dbm=rssi)
    frame, n = rfid_serial.decode_frame(raw)
    assert n == len(raw) and frame is not None
    assert (frame.tag_id, frame.antenna, frame.rssi_dbm) == (epc.hex().upper(), antenna, rssi)


@given(kg=st.integers(-999_999, 999_999), motion=st.booleans(), increment=st.sampled_from([1, 2, 5]))
def test_weighbridge_round_trip(kg: int, motion: bool, increment: int) -> None:
    raw = weighbridge_serial.encode_frame(kg, motion=motion, increment=increment)
    frame, n = weighbridge_serial.decode_frame(raw)
    assert n == 18 and frame is not None and (frame.kg, frame.motion) == (kg, motion)


# --------------------------------------------------------------------------- fuzzing


@pytest.mark.parametrize("decode", DECODERS, ids=["gate", "board", "rfid", "weighbridge"])
@settings(max_examples=300)
@given(data=st.binary(max_size=200))
def test_decoders_never_raise_anything_but_frame_errors(decode: object, data: bytes) -> None:
    assert callable(decode)
    try:
        frame, consumed = decode(data)
    except FrameError as exc:
        assert exc.consumed >= 1
    else:
        assert 0 <= consumed <= len(data)
        assert frame is None or consumed > 0


@pytest.mark.parametrize("decode", DECODERS, ids=["gate", "board", "rfid", "weighbridge"])
@settings(max_examples=200)
@given(noise=st.lists(st.binary(max_size=40), max_size=6))
def test_drain_recovers_valid_frames_from_noise(decode: object, noise: list[bytes]) -> None:
    assert callable(decode)
    good = {
        gate_rs485.decode_frame: gate_rs485.encode_frame(1, gate_rs485.Cmd.STOP),
        board_serial.decode_frame: board_serial.encode_show(1, 1),
        rfid_serial.decode_frame: rfid_serial.encode_heartbeat(1, 1),
        weighbridge_serial.decode_frame: weighbridge_serial.encode_frame(1500),
    }[decode]
    buf = bytearray()
    for chunk in noise:
        buf += chunk + good
    stats = DecodeStats()
    frames = drain(buf, decode, stats)  # must terminate and never raise
    # every good frame after a noise chunk that does not swallow it comes out; at least the
    # frames are never invented
    assert len(frames) <= len(noise) + sum(c.count(good) for c in noise)
    if noise:
        tail = bytearray(good * 3)
        assert len(drain(tail, decode, DecodeStats())) == 3


def test_protocol_data_files_match_the_codecs() -> None:
    import yaml

    cfg = Path(__file__).resolve().parents[2] / "firmware_config" / "devices"
    gate = yaml.safe_load((cfg / "gate_rs485.yaml").read_text(encoding="utf-8"))
    assert gate["frame"]["sync"] == gate_rs485.SYNC and gate["frame"]["max_data"] == gate_rs485.MAX_DATA
    for name, spec in {**gate["commands"], **gate["answers"]}.items():
        cmd = gate_rs485.Cmd(spec["code"])
        lengths = spec["len"] if isinstance(spec["len"], list) else [spec["len"]]
        assert gate_rs485.DATA_LEN[cmd] == tuple(lengths), name
    reasons = {r.value: r.name.lower() for r in gate_rs485.NakReason}
    assert {int(k): v for k, v in gate["nak_reasons"].items()} == reasons
    board = yaml.safe_load((cfg / "board_serial.yaml").read_text(encoding="utf-8"))
    assert board["fields"]["text"]["max_bytes"] == board_serial.MAX_TEXT_BYTES
    assert board["fields"]["line"]["max"] == board_serial.MAX_LINES
    rfid = yaml.safe_load((cfg / "rfid_serial.yaml").read_text(encoding="utf-8"))
    assert rfid["frame"]["head"] == rfid_serial.HEAD and rfid["pushed"]["tag"]["cmd"] == rfid_serial.CMD_TAG
    assert rfid["frame"]["len"]["max"] == rfid_serial.MAX_LEN
    scale = yaml.safe_load((cfg / "weighbridge_serial.yaml").read_text(encoding="utf-8"))
    assert scale["frame"]["length"] == weighbridge_serial.FRAME_LEN
    assert (scale["line"]["bytesize"], scale["line"]["parity"]) == (7, "E")
