"""Codecs of the cargo-lane devices: the radiation portal's line protocol and the seal reader's
frames — line and byte vectors, property-based round trips, decoder fuzzing, and the
occupancy assembly from a capture of lines.

The decoders' contract is the serial codecs' one: any bytes give ``(record, consumed)`` /
``(None, n)`` or a ``FrameError`` — never another exception — and ``drain`` always makes
progress.
"""

from __future__ import annotations

import contextlib
import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from portlane.drivers import rpm_rapiscan, seal_serial
from portlane.drivers.cargo_devices import (
    RadiationFault,
    RouteStatus,
    SealKind,
    SealReaderDriver,
    SealRecord,
    SealState,
    seal_id,
)
from portlane.drivers.rpm_rapiscan import OccupancyAssembler, RpmRecord, decode_line, encode_line
from portlane.drivers.serial_link import DecodeStats, FrameError, drain

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "devices"


def hx(b: bytes) -> str:
    return b.hex(" ").upper()


# --------------------------------------------------------------------------- portal: vectors

CAPTURE = b"".join(
    [
        b"SG1,006000,000300,000005,000002,4.0\r\n",
        b"GB,002410,002380,002450,002395\r\n",
        b"NB,000002,000001,000002,000001\r\n",
        b"SP,0.0852,08.000,12.875\r\n",
        b"GS,000489,000476,000501,000470\r\n",
        b"NS,000001,000000,000002,000001\r\n",
        b"GS,000490,000480,000500,000466\r\n",
        b"GS,000495,000470,000505,000480\r\n",
        b"GS,000600,000650,000590,000600\r\n",
        b"GA,000612,000655,000598,000607\r\n",
        b"GA,000620,000660,000601,000611\r\n",
        b"NA,000009,000012,000007,000010\r\n",
        b"GX,000123,006500\r\n",
    ]
)


def test_portal_line_vectors() -> None:
    assert encode_line("GB", 2410, 2380, 2450, 2395) == b"GB,002410,002380,002450,002395\r\n"
    assert encode_line("GX", 123, 6500) == b"GX,000123,006500\r\n"
    assert encode_line("TT") == b"TT\r\n"
    assert decode_line(b"GX,000123,006500\r\nGB") == (RpmRecord("GX", number=123, neutron_bg=6.5), 18)
    assert decode_line(b"GS,489,476,501,470\n") == (RpmRecord("GS", counts=(489, 476, 501, 470)), 19)
    assert decode_line(b"GS,000489") == (None, 0)  # no end of line yet
    assert decode_line(b"\r\nGB,1\r\n") == (None, 2)  # an empty line is skipped
    sp, _ = decode_line(b"SP,0.0852,08.000,12.875\r\n")
    assert sp is not None and sp.speed_kph == 12.875 and sp.speed_mph == 8.0
    sg, _ = decode_line(b"SG1,006000,000300,000005,000002,4.0\r\n")
    assert sg is not None and sg.fields[4] == "4.0"


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"XX,000001\r\n", "unknown record"),
        (b"GS,00048a,000476\r\n", "is not a count"),
        (b"GS,-00001,000476\r\n", "is not a count"),
        (b"GS\r\n", "0 panel counts"),
        (b"GS,1,2,3,4,5,6,7,8,9\r\n", "9 panel counts"),
        (b"GX,000123\r\n", "GX needs"),
        (b"SP,0.1,nan,3\r\n", "not a finite"),
        (b"GS,000\x01489\r\n", "non-printable"),
        (b"GB," + b"1" * 300, "no end of line"),
    ],
)
def test_portal_decoder_rejects_bad_lines_with_typed_errors(line: bytes, why: str) -> None:
    with pytest.raises(FrameError, match=why) as err:
        decode_line(line)
    assert err.value.consumed == min(len(line), line.find(b"\n") + 1 if b"\n" in line else len(line))


def test_occupancy_assembled_from_a_capture() -> None:
    state, stats = OccupancyAssembler(), DecodeStats()
    buf = bytearray(CAPTURE)
    done = [occ for r in drain(buf, decode_line, stats) if (occ := state.feed(r, 1000.0)) is not None]
    assert stats.bad_frames == 0 and not buf
    [occ] = done
    assert occ.number == 123 and state.occupancy_count == 123 and not state.occupied
    assert occ.samples == 6 and occ.live_s == pytest.approx(1.2)
    assert occ.gamma_counts == (3306, 3391, 3295, 3234)  # the six gamma lines, per panel
    assert occ.neutron_counts == (10, 12, 9, 11)
    assert occ.gamma_background_cps == (2410.0, 2380.0, 2450.0, 2395.0)
    assert occ.gamma_alarm and occ.neutron_alarm and occ.alarm and occ.nsigma == 4.0
    assert occ.speed_kph == 12.875
    # the busiest second: samples 2..6 (1936, 1950, 2440, 2472, 2492 over all panels)
    assert occ.max_gamma_cps == 11290
    bg = 2410 + 2380 + 2450 + 2395
    assert occ.gamma_sigma == pytest.approx((occ.max_gamma_cps - bg) / bg**0.5)


def test_portal_state_follows_faults_tamper_and_stuck_occupancy() -> None:
    state = OccupancyAssembler(max_occupancy_s=1.0)
    for line in (b"GH,009000,009100,009050,009020\r\n", b"NH,000030,000031,000029,000030\r\n", b"TT\r\n"):
        r, _ = decode_line(line)
        assert r is not None
        state.feed(r, 0.0)
    st_ = state.status()
    assert st_.faults == {RadiationFault.GAMMA_HIGH, RadiationFault.NEUTRON_HIGH} and st_.tamper
    assert not st_.trustworthy
    for line in (b"GB,1,1,1,1\r\n", b"NB,1,1,1,1\r\n", b"TC\r\n"):
        r, _ = decode_line(line)
        assert r is not None
        state.feed(r, 0.0)
    assert state.status().trustworthy
    gs, _ = decode_line(b"GS,1,1,1,1\r\n")
    assert gs is not None
    for _ in range(5):  # one second of samples: still a plausible occupancy
        state.feed(gs, 0.0)
    assert state.status().occupied and state.status().faults == frozenset()
    state.feed(gs, 0.0)  # 1.2 s of samples > max_occupancy_s
    assert state.status().faults == {RadiationFault.OCCUPANCY_STUCK}


def test_a_gx_without_samples_updates_the_count_and_reports_nothing() -> None:
    state = OccupancyAssembler()
    gx, _ = decode_line(b"GX,000007,001500\r\n")
    assert gx is not None and state.feed(gx, 0.0) is None
    assert state.occupancy_count == 7 and state.counters["orphan_gx"] == 1


# --------------------------------------------------------------------------- portal: properties

codes = st.sampled_from(sorted(rpm_rapiscan.COUNT_CODES))


@given(code=codes, counts=st.lists(st.integers(0, 999_999), min_size=1, max_size=8))
def test_count_record_round_trip(code: str, counts: list[int]) -> None:
    line = encode_line(code, *counts)
    assert decode_line(line) == (RpmRecord(code, counts=tuple(counts)), len(line))


@settings(max_examples=300)
@given(data=st.binary(max_size=300))
def test_portal_decoder_never_raises_anything_but_frame_errors(data: bytes) -> None:
    try:
        record, n = decode_line(data)
    except FrameError as exc:
        assert 1 <= exc.consumed <= max(1, len(data))
    else:
        assert 0 <= n <= len(data) and (record is None or n > 0)


@settings(max_examples=200)
@given(noise=st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b), max_size=6))
def test_every_line_after_noise_is_recovered(noise: list[bytes]) -> None:
    # Noise without a line end spoils at most the line it lands on (the line ends resync).
    good = encode_line("GS", 1, 2, 3, 4)
    buf = bytearray(b"".join(n + b"\n" + good for n in noise) + good)
    records = drain(buf, decode_line, DecodeStats())
    assert records.count(RpmRecord("GS", counts=(1, 2, 3, 4))) == len(noise) + 1 and not buf


# --------------------------------------------------------------------------- seal reader: vectors

T0 = datetime.datetime(2026, 12, 6, 9, 41, tzinfo=datetime.UTC)
ELOCK = SealRecord(
    0x0A1B, 0x00C0FFEE, SealKind.ELOCK, SealState.SEALED, sealed_at=T0, battery_pct=87, route=RouteStatus.ON_ROUTE
)
ESEAL = SealRecord(0x0011, 5, SealKind.ESEAL, SealState.OPENED, sealed_at=T0, opened_at=T0, battery_pct=None)


def test_seal_vectors() -> None:
    assert hx(seal_serial.encode_frame(1, seal_serial.CMD_INVENTORY)) == "02 02 01 31 10 44 03"
    assert seal_id(0x0A1B, 0xC0FFEE) == "0A1B-00C0FFEE" == ELOCK.seal_id
    raw = seal_serial.encode_record(ELOCK)
    assert len(raw) == seal_serial.RECORD_LEN
    assert raw[:8] == bytes.fromhex("0A1B 00C0FFEE 01 00") and raw[8:20] == b"202612060941"
    assert raw[20:32] == b"000000000000" and raw[32:] == bytes([87, 0, 1, 0])
    assert seal_serial.decode_record(raw) == ELOCK
    answer = seal_serial.encode_frame(1, 0xB1, b"\x02" + raw + seal_serial.encode_record(ESEAL))
    frame, n = seal_serial.decode_frame(b"\x00\xff" + answer)
    assert (frame, n) == (None, 2)
    frame, n = seal_serial.decode_frame(answer)
    assert frame is not None and n == len(answer) and frame.cmd == 0xB1
    assert seal_serial.decode_inventory(frame.data) == (ELOCK, ESEAL)


def test_seal_decoder_rejects_bad_frames_with_typed_errors() -> None:
    good = seal_serial.encode_frame(1, 0xB1, b"\x00")
    with pytest.raises(FrameError, match="CRC"):
        seal_serial.decode_frame(good[:-3] + bytes([good[-3] ^ 1]) + good[-2:])
    with pytest.raises(FrameError, match="ETX"):
        seal_serial.decode_frame(good[:-1] + b"\x04")
    with pytest.raises(FrameError, match="bad length"):
        seal_serial.decode_frame(b"\x02\x01\x01")
    with pytest.raises(ValueError, match="route code"):
        seal_serial.decode_record(seal_serial.encode_record(ESEAL)[:34] + b"\x02\x00")
    with pytest.raises(ValueError, match="inventory"):
        seal_serial.decode_inventory(b"\x07" + b"\x00" * 7 * 36)


# --------------------------------------------------------------------------- seal reader: properties

times = st.none() | st.datetimes(
    min_value=datetime.datetime(2000, 1, 1), max_value=datetime.datetime(2099, 12, 31), timezones=st.just(datetime.UTC)
).map(lambda t: t.replace(second=0, microsecond=0))
records = st.builds(
    lambda m, t, elock, state, s_at, o_at, bat, low, route, rssi: SealRecord(
        m,
        t,
        SealKind.ELOCK if elock else SealKind.ESEAL,
        state,
        sealed_at=s_at,
        opened_at=o_at,
        battery_pct=bat,
        battery_low=low,
        route=route if elock else None,
        rssi_dbm=rssi,
    ),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.booleans(),
    st.sampled_from(list(SealState)),
    times,
    times,
    st.none() | st.integers(0, 100),
    st.booleans(),
    st.sampled_from(list(RouteStatus)),
    st.integers(-128, 127),
)


@given(addr=st.integers(0, 255), seals=st.lists(records, max_size=seal_serial.MAX_SEALS))
def test_inventory_round_trip(addr: int, seals: list[SealRecord]) -> None:
    data = bytes([len(seals)]) + b"".join(seal_serial.encode_record(s) for s in seals)
    frame, _ = seal_serial.decode_frame(seal_serial.encode_frame(addr, 0xB1, data))
    assert frame is not None and frame.address == addr
    assert seal_serial.decode_inventory(frame.data) == tuple(seals)


@settings(max_examples=300)
@given(data=st.binary(max_size=300))
def test_seal_decoder_never_raises_anything_but_frame_errors(data: bytes) -> None:
    try:
        frame, n = seal_serial.decode_frame(data)
    except FrameError as exc:
        assert exc.consumed >= 1
    else:
        assert 0 <= n <= len(data) and (frame is None or n > 0)
        if frame is not None and frame.cmd == 0xB1:
            with contextlib.suppress(ValueError):  # the driver turns this into a FrameError
                seal_serial.decode_inventory(frame.data)


@settings(max_examples=200)
@given(noise=st.lists(st.binary(max_size=40), max_size=6))
def test_seal_frames_are_never_invented_from_noise(noise: list[bytes]) -> None:
    # A noise STX with a plausible length can hold the frames behind it until the bus's
    # deadline (the transaction layer's job); the decoder must terminate, never raise, and
    # never produce a frame that was not sent.
    good = seal_serial.encode_frame(1, 0xB1, b"\x00")
    buf = bytearray(b"".join(n + good for n in noise))
    frames = drain(buf, seal_serial.decode_frame, DecodeStats())
    assert len(frames) <= len(noise) + sum(n.count(good) for n in noise)
    tail = bytearray(good * 3)
    assert drain(tail, seal_serial.decode_frame, DecodeStats()) == [seal_serial.SealFrame(1, 0xB1, b"\x00")] * 3


# --------------------------------------------------------------------------- docs and data files


@pytest.mark.parametrize(
    ("name", "example"),
    [
        ("radiation-portal.md", lambda: encode_line("GB", 2410, 2380, 2450, 2395)),
        ("radiation-portal.md", lambda: encode_line("GA", 612, 655, 598, 607)),
        ("radiation-portal.md", lambda: encode_line("GX", 123, 6500)),
        ("eseal.md", lambda: seal_serial.encode_frame(1, seal_serial.CMD_INVENTORY)),
        ("eseal.md", lambda: seal_serial.encode_frame(1, 0xB1, b"\x01" + seal_serial.encode_record(ELOCK))),
        (
            "eseal.md",
            lambda: seal_serial.encode_frame(1, seal_serial.CMD_REMOVE, bytes.fromhex("0A1B00C0FFEE") + b"K3Y-0001"),
        ),
    ],
)
def test_examples_in_the_docs_are_what_the_code_sends(name: str, example: object) -> None:
    assert callable(example)
    text = (DOCS / name).read_text(encoding="utf-8")
    raw = example()
    shown = raw.decode("ascii").rstrip("\r\n") if name == "radiation-portal.md" else hx(raw)
    assert shown in text


def test_protocol_data_files_match_the_codecs() -> None:
    import yaml

    cfg = ROOT / "firmware_config" / "devices"
    rpm = yaml.safe_load((cfg / "rpm_rapiscan.yaml").read_text(encoding="utf-8"))
    assert set(rpm["records"]) == rpm_rapiscan.CODES
    assert rpm["sample_s"] == rpm_rapiscan.SAMPLE_S and rpm["tcp_port"] == rpm_rapiscan.DEFAULT_PORT
    seal = yaml.safe_load((cfg / "seal_serial.yaml").read_text(encoding="utf-8"))
    cmds = {v["code"] for v in seal["commands"].values()}
    assert cmds == {seal_serial.CMD_INVENTORY, seal_serial.CMD_APPLY, seal_serial.CMD_REMOVE}
    assert seal["record"]["length"] == seal_serial.RECORD_LEN
    assert {int(k): v for k, v in seal["results"].items()} == seal_serial.RESULTS
    assert issubclass(seal_serial.SerialSealReader, SealReaderDriver)
