"""Fusion of a passage's reads across frames and cameras (models/fusion.py) and the one
conversion to the contract's reads (edge/lane/recognition.py)."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from types import SimpleNamespace

import pytest
from portlane.edge.lane.identification import registration_support
from portlane.edge.lane.recognition import UNCONFIRMED_CAP, camera_rois, containers_of, plates_of
from portlane.edge.ops.recognition import deserialise_reads, serialise_reads
from portlane.models import fusion
from portlane.models.grammar import PlateRead
from portlane.models.iso6346 import ContainerRead

C, L = "confirmed", "low_confidence"


def _p(text: str, kind: str, conf: float, status: str = C) -> PlateRead:
    return PlateRead(text, kind, conf, None, (), status)


def _c(number: str, conf: float, status: str = C, ok: bool = True, **kw: bool | str) -> ContainerRead:
    return ContainerRead(number, ok, confidence=conf, status=status, **kw)  # type: ignore[arg-type]


def fuse_reads(kind: str, frames: list[list[PlateRead]] | list[list[ContainerRead]]) -> list[dict[str, object]]:
    """What fusion decides, per identity (status and votes are fusion's, not the wire's)."""
    reads = [r for frame in frames for r in frame]
    ids = fusion.fuse_plates(reads) if kind == "plate" else fusion.fuse_containers(reads)  # type: ignore[arg-type]
    return [
        {
            "text" if kind == "plate" else "number": getattr(i, "text", getattr(i, "number", None)),
            "status": i.status,
            "votes": i.votes,
            "confidence": i.confidence if i.status == C else min(i.confidence, UNCONFIRMED_CAP),
            "doubt": i.doubt,
        }
        for i in ids
    ]


def test_dual_plates_are_kept_as_a_pair_and_agreement_confirms() -> None:
    frames = [
        [_p("粤ZAB12港", "cn_crossborder", 0.95, L), _p("AB1234", "hk", 0.9)],
        [_p("粤ZAB12港", "cn_crossborder", 0.93, L), _p("AB1284", "hk", 0.6, L)],
    ]
    out = fuse_reads("plate", frames)
    assert [r["text"] for r in out] == ["AB1234", "粤ZAB12港"]
    home, cross = out
    # two doubtful frames that agree are independent support: confirmed, and more sure than either
    assert cross["status"] == C and cross["votes"] == 2 and cross["confidence"] > 0.95
    # a rival read with 2/3 of the votes: the home plate goes to an officer
    assert home["status"] == L and home["confidence"] <= UNCONFIRMED_CAP


def test_one_confirmed_read_stands_and_a_confirmed_rival_undoes_it() -> None:
    assert fuse_reads("plate", [[_p("粤B12345", "cn", 0.9)]])[0]["status"] == C
    rivals = [[_p("粤B12345", "cn", 0.9)], [_p("粤B12346", "cn", 0.2)]]
    [only] = fuse_reads("plate", rivals)
    assert only["text"] == "粤B12345" and only["status"] == L  # a quarter of the votes is a rival
    weak = [[_p("粤B12345", "cn", 0.9)], [_p("粤B12346", "cn", 0.1, L)]]
    assert fuse_reads("plate", weak)[0]["status"] == C


def test_reads_without_a_status_on_the_socket_are_not_trusted() -> None:
    [[r]] = deserialise_reads("plate", [[{"text": "粤B12345", "kind": "cn", "confidence": 1.0}]])
    assert r.status == L
    [plate] = plates_of(fusion.fuse_plates([r]))
    assert plate.confidence <= UNCONFIRMED_CAP


def test_the_socket_wire_round_trips_the_reads_whole() -> None:
    """Every field crosses the recognition daemon's socket, the doubt and the character
    confidences included: the lane judges a read from the daemon as it would its own."""
    plate = PlateRead("粤B12345", "cn", 0.9, (1, 2, 30, 12), (0.99, 0.5), L, "province", 0.3, 21.0)
    box = ContainerRead(
        "CSQU3054383",
        True,
        True,
        False,
        "45G1",
        0.8,
        (5, 6, 70, 20),
        L,
        (0.9,) * 11,
        0.1,
        "inferred",
        (0.3,) + (0.0,) * 10,
    )
    assert deserialise_reads("plate", json.loads(json.dumps(serialise_reads([[plate], []])))) == [[plate], []]
    assert deserialise_reads("container", json.loads(json.dumps(serialise_reads([[box]])))) == [[box]]


def test_contract_reads_carry_the_doubt_in_their_confidence() -> None:
    """A low_confidence identity reaches the platform below the lane's officer threshold."""
    confirmed, doubtful = fusion.fuse_plates([_p("粤B12345", "cn", 0.95), _p("粤Z1234港", "cn_crossborder", 0.9, L)])
    out = plates_of([confirmed, doubtful])
    assert [(r.text, r.kind) for r in out] == [("粤B12345", "cn"), ("粤Z1234港", "cn_crossborder")]
    assert out[0].confidence == pytest.approx(confirmed.confidence) and out[1].confidence <= UNCONFIRMED_CAP
    three = fusion.fuse_containers([_c("CSQU3054383", 0.9), _c("TRHU2599469", 0.9), _c("MSKU0539301", 0.9)])
    assert len(containers_of(three)) == 2 and all(c.check_digit_ok for c in containers_of(three))


def test_an_unconfirmed_identity_names_its_doubt_for_the_officer() -> None:
    """The officer is told why: the reader's own doubt of the surest read, or what fusion saw
    (a rival, a second valid reading); nothing when confirmed. The wire carries it."""

    def doubts(kind: str, frames: list[list[PlateRead]] | list[list[ContainerRead]]) -> list[object]:
        return [(r["status"], r["doubt"]) for r in fuse_reads(kind, frames)]

    small = _p("浙GR0L16", "cn", 0.98, L)
    framed = PlateRead("浙GR0L16", "cn", 0.6, None, (), L, "framing")
    province = PlateRead("浙GR0L16", "cn", 0.9, None, (), L, "province")
    assert doubts("plate", [[province], [framed]]) == [(C, "")]  # two frames agree: confirmed
    assert doubts("plate", [[province]]) == [(L, "province")]
    assert doubts("plate", [[framed], [_p("湘GR0L16", "cn", 0.3, L)]]) == [(L, "rival")]
    assert doubts("plate", [[small]]) == [(L, "confidence")]  # no doubt named by the reader
    assert doubts("plate", [[_p("粤B12345", "cn", 0.9)], [_p("粤B12346", "cn", 0.3)]]) == [(L, "rival")]
    inferred = _c("CSQU3054383", 0.6, L, check_digit_inferred=True, doubt="inferred")
    assert doubts("container", [[inferred]]) == [(L, "inferred")]
    slip = _c("ESQU0000003", 0.97, L, doubt="slip")
    assert doubts("container", [[slip], [_c("ESQU0000003", 0.96)], [_c("ESQU0000003", 0.95)]]) == [(L, "slip")]
    # on the wire: the name of an unconfirmed read, null for a confirmed one
    [held] = plates_of(fusion.fuse_plates([province]))
    [sure] = plates_of(fusion.fuse_plates([_p("粤B12345", "cn", 0.95)]))
    assert (held.doubt, sure.doubt) == ("province", None)
    [box] = containers_of(fusion.fuse_containers([inferred]))
    assert box.doubt == "inferred"
    # the e-card's registered plate equal to the read is independent support: no doubt left
    [vouched] = registration_support([held], ["浙GR0L16"])
    assert (vouched.doubt, vouched.confidence >= 0.9) == (None, True)
    assert registration_support([held], ["湘GR0L16"])[0].doubt == "province"


def test_containers_whose_check_digit_failed_never_vote() -> None:
    frames = [[_c("CSQU3054383", 0.9), _c("CSQU3054384", 0.99, ok=False)]]
    assert [(r["number"], r["status"]) for r in fuse_reads("container", frames)] == [("CSQU3054383", C)]


def test_two_boxes_on_one_truck_are_two_identities_and_misreads_are_rivals() -> None:
    frames = [
        [_c("CSQU3054383", 0.9), _c("TRHU2599469", 0.9)],
        [_c("CSQU3054383", 0.85)],
        [_c("TRHU2599469", 0.9)],
        [_c("TRHU2599496", 0.8)],
    ]  # transposed digits: same box
    out = fuse_reads("container", frames)
    assert [r["number"] for r in out] == ["CSQU3054383", "TRHU2599469"]
    assert out[0]["status"] == C and out[1]["status"] == L


def test_inferred_check_digits_need_another_read_to_agree() -> None:
    one = [[_c("CSQU3054383", 0.6, L, check_digit_inferred=True)]]
    assert fuse_reads("container", one)[0]["status"] == L
    two = [*one, [_c("CSQU3054383", 0.9, L)], [_c("CSQU3054383", 0.9, L)]]
    assert fuse_reads("container", two)[0]["status"] == C


def _column(number: str, first: float, conf: float = 0.4) -> ContainerRead:
    """A vertical column's read of ``number`` with its check digit cut off (computed), its first
    letter at ``first`` and every other character sure."""
    return ContainerRead(
        number,
        True,
        check_digit_inferred=True,
        confidence=conf,
        status=L,
        doubt="inferred",
        char_confidences=(first, *(0.99,) * 9),
    )


def test_a_column_unsure_where_it_differs_is_no_rival_of_a_confirmed_number() -> None:
    """A gate side camera outside the development set: the number's line confirmed, the column
    beside it reading its first letter I at 0.45 with the check digit cut off. The confirmed read's
    own check digit rules the I out, so the column names no other number."""
    line = ContainerRead("TEMU5037029", True, confidence=0.99, status=C, char_confidences=(0.99,) * 11)
    unsure = [[line, _column("IEMU5037028", 0.45)]]
    assert [(r["number"], r["status"]) for r in fuse_reads("container", unsure)] == [("TEMU5037029", C)]
    sure = [[line, _column("IEMU5037028", 0.95)]]  # read surely: another number, an officer looks
    assert [(r["number"], r["status"], r["doubt"]) for r in fuse_reads("container", sure)] == [
        ("TEMU5037029", L, "rival")
    ]
    # B and L are 11 apart: BEAU2656931 and LEAU2656931 share their check digit, which cannot
    # rule the L out however unsure it is
    b = ContainerRead("BEAU2656931", True, confidence=0.99, status=C, char_confidences=(0.99,) * 11)
    blind = [[b, _column("LEAU2656931", 0.45), _column("LEAU2656931", 0.45)]]
    assert fuse_reads("container", blind)[0]["status"] == L
    # what the rule never drops (found by review): a serial digit (a second box on the truck
    # may differ from the first in its last digit), a letter without a confidence or a NaN one,
    # a letter the confirmed read itself is unsure of
    second_box = [[line, _column("TEMU5037034", 0.99)]]
    second_box[0][1] = replace(second_box[0][1], char_confidences=(*(0.99,) * 9, 0.45))
    assert [(r["number"], r["status"]) for r in fuse_reads("container", second_box)] == [("TEMU5037029", L)]
    for conf in ((), (float("nan"),) * 10):
        bare = [[line, replace(_column("IEMU5037028", 0.45), char_confidences=conf)]]
        assert fuse_reads("container", bare)[0]["status"] == L
    unsure_line = replace(line, char_confidences=(0.6, *(0.99,) * 10))
    assert fuse_reads("container", [[unsure_line, _column("IEMU5037028", 0.45)]])[0]["status"] == L
    # a column another confirmed read repeats stays: its number has a read check digit behind it
    other = ContainerRead("IEMU5037028", True, confidence=0.99, status=C, char_confidences=(0.99,) * 11)
    both = fuse_reads("container", [[line], [other], [_column("IEMU5037028", 0.45)]])
    assert (both[0]["number"], both[0]["status"]) == ("IEMU5037028", L)
    # two held reads of the line agree, which would confirm; no read confirmed on its own rules
    # the column out, so it stays a rival
    twice = [[replace(line, status=L, doubt="confidence")]] * 2
    assert fuse_reads("container", twice)[0]["status"] == C
    assert fuse_reads("container", [*twice, [_column("IEMU5037028", 0.45, conf=0.6)]])[0]["status"] == L


def test_one_read_with_a_second_valid_reading_holds_its_number() -> None:
    """The mark and the faint letter behind it (ESQU… for OSQU…) are on the box: how much the
    faint letter weighs changes from frame to frame, so one read that gives the other number
    weight holds the number however many others confirm it, as a rival does."""
    slip = [[_c("ESQU0000003", 0.97, L, doubt="slip")], [_c("ESQU0000003", 0.96, L, doubt="slip")]]
    assert fuse_reads("container", slip)[0]["status"] == L
    assert fuse_reads("container", [*slip, [_c("ESQU0000003", 0.95)]])[0]["status"] == L
    weighty = (0.3, *(0.0,) * 10)
    light = (0.08, *(0.0,) * 10)  # under the bound: this frame's read is confirmed on its own
    frames = [
        [ContainerRead("ESQU0000003", True, confidence=0.6, status=L, doubt="confidence", slip_weights=weighty)],
        [ContainerRead("ESQU0000003", True, confidence=0.97, status=C, slip_weights=light)],
        [ContainerRead("ESQU0000003", True, confidence=0.97, status=C, slip_weights=light)],
    ]
    assert fuse_reads("container", frames)[0]["status"] == L
    assert fuse_reads("container", frames[1:])[0]["status"] == C  # without it: confirmed


def test_fuse_pairs_sar_and_crossborder_plates() -> None:
    ident = fusion.fuse([PlateRead("AB1234", "hk", 0.9), PlateRead("粤ZAB12港", "cn_crossborder", 0.8)])
    assert ident is not None and ident.text == "AB1234" and ident.paired is not None
    assert ident.paired.text == "粤ZAB12港"
    assert fusion.fuse([]) is None
    assert fusion.fuse_containers([ContainerRead("CSQU3054383", False, confidence=0.9)]) == []


def test_camera_rois_come_from_the_site_file() -> None:
    from portlane.drivers.config import CameraLink, DeviceConfig
    from pydantic import ValidationError

    cam = DeviceConfig(backend="opencv", link=CameraLink(source="rtsp://x", roi=(0, 400, 1920, 1080)))
    plain = DeviceConfig(backend="opencv", link=CameraLink(source="rtsp://y"))

    lane = SimpleNamespace(id="lane1", devices=SimpleNamespace(cameras={"plate_front": cam, "container_left": plain}))
    site = SimpleNamespace(lanes=(lane,))  # shaped like the site model

    assert camera_rois(site) == {"lane1/camera:plate_front": (0, 400, 1920, 1080)}
    with pytest.raises(ValidationError, match="roi"):
        CameraLink(source="rtsp://x", roi=(100, 0, 50, 10))


def test_lane_side_of_recognition_imports_no_heavy_libraries() -> None:
    import subprocess

    # In a fresh process: other tests in this one may have loaded cv2 already.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, portlane.edge.lane.recognition, portlane.edge.ops.daemons;"
            "assert not {'cv2','onnxruntime','numpy'} & set(sys.modules)",
        ],
        check=True,
    )
