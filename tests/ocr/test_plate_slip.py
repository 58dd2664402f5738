"""A plate character whose runner-up has weight holds the plate (``PlateRead.slip_weights``,
``calibration.SURE_SLIP_MAX``): a plate has no check digit, so every other character its
position allows is another valid plate.

Found on 1000 labelled plate crops outside the development set: 皖ACC998 was confirmed as
皖ALC998 (the recogniser: L 0.82, U 0.18, the true C 0.001). The bound is the containers' prior
(a second reading given one chance in ten is one an officer must see), measured over the
character's own frames only: a plate's separator dot reads as a faint ``1`` between two
characters and is no second reading of either."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
from portlane.models import calibration, ctc
from portlane.models.calibration import SHIPPED
from portlane.models.grammar import CONFIRMED, LOW_CONFIDENCE, PlateRead
from portlane.models.onnx_ocr import OcrEngine, Recogniser
from portlane.models.pipeline import PlateReader
from portlane.sim_devices.render import render_plate


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    return PlateReader(OcrEngine.shared())


def _matrix(reader: PlateReader, frames: list[dict[str, float]]) -> np.ndarray:
    """A recogniser matrix: one row per frame, the given classes' probabilities, blank the rest."""
    index = reader.engine.rec.index
    m = np.zeros((len(frames), len(reader.engine.rec.classes)), np.float32)
    for t, f in enumerate(frames):
        for c, p in f.items():
            m[t, index[c]] = p
        m[t, 0] = 1.0 - sum(f.values())
    return m


def _plate(reader: PlateReader, text: str, doubtful: dict[str, float]) -> np.ndarray:
    """``text`` read one character per frame, blanks between; the character at index
    ``doubtful["at"]`` shares its frame with the runner-up ``doubtful["other"]``."""
    frames: list[dict[str, float]] = []
    for i, ch in enumerate(text):
        if i == doubtful.get("at"):
            frames.append({ch: 1.0 - doubtful["weight"], str(doubtful["other"]): doubtful["weight"]})
        else:
            frames.append({ch: 1.0})
        frames.append({})
    return _matrix(reader, frames)


def test_a_character_whose_runner_up_weighs_over_a_tenth_holds_the_plate(reader: PlateReader) -> None:
    held = reader.decode(_plate(reader, "AB1234", {"at": 2, "other": "7", "weight": 0.18}))
    assert held is not None and held.text == "AB1234" and held.kind == "hk"
    assert held.slip_weights[2] == pytest.approx(0.18, abs=1e-3)
    assert (held.status, held.doubt) == (LOW_CONFIDENCE, "slip")
    sure = reader.decode(_plate(reader, "AB1234", {"at": 2, "other": "7", "weight": 0.05}))
    assert sure is not None and (sure.text, sure.status) == ("AB1234", CONFIRMED)
    # a separator dot read as a faint 1 between A and the serial is no slip of either
    frames: list[dict[str, float]] = [{"皖": 1.0}, {}, {"A": 1.0}, {"1": 0.3}, {"C": 1.0}, {}]
    for ch in "C998":
        frames += [{ch: 1.0}, {}]
    dotted = reader.decode(_matrix(reader, frames))
    assert dotted is not None and dotted.text == "皖ACC998"
    assert max(dotted.slip_weights) == 0.0 and dotted.doubt != "slip"
    # the mainland province is measured by its own rules, never as a slip
    cn = reader.decode(_plate(reader, "皖ALC998", {"at": 0, "other": "浙", "weight": 0.3}))
    assert cn is not None and cn.slip_weights[0] == 0.0


def test_the_decision_holds_a_plate_with_a_slip_and_keeps_it_through_the_wire() -> None:
    r = PlateRead("AB1234", "hk", 0.82, (0, 0, 90, 30), (1.0, 1.0, 0.82, 1.0, 1.0, 1.0), CONFIRMED, "", 0.0)
    assert calibration.plate_decision(r, SHIPPED) == (CONFIRMED, "")
    slipped = replace(r, slip_weights=(0.0, 0.0, 0.18, 0.0, 0.0, 0.0))
    assert calibration.plate_decision(slipped, SHIPPED) == (LOW_CONFIDENCE, "slip")
    assert calibration.plate_decision(replace(r, slip_weights=(0.0, 0.0, 0.1, 0.0, 0.0, 0.0)), SHIPPED)[0] == CONFIRMED
    # the recognition daemon's socket carries the weights, so the lane decides the same
    assert PlateRead.from_dict(slipped.as_dict()) == slipped


def test_a_separator_dot_is_no_slip_of_the_character_after_it() -> None:
    """The dot between 皖A and the serial reads as a faint 1 in a frame of its own: measured over
    the neighbours' frames too (the containers' reach) it would hold every such plate."""
    classes = ["", "A", "B", "1"]
    index = {c: i for i, c in enumerate(classes) if c}
    m = np.zeros((5, 4), np.float32)
    m[0, 1] = 1.0  # A
    m[1, 0] = 1.0
    m[2, 3], m[2, 0] = 0.3, 0.7  # the dot: a faint 1
    m[3, 2] = 1.0  # B
    m[4, 0] = 1.0
    spans = ((0, 0), (3, 3))
    template = ("A", "B1")
    own = ctc.slip_weights(m, spans, "AB", template, index, lambda _j, _c: True, reach=False)
    reach = ctc.slip_weights(m, spans, "AB", template, index, lambda _j, _c: True)
    assert own == (0.0, 0.0)
    assert reach[1] == pytest.approx(0.3)


def test_a_plate_held_for_a_slip_is_read_in_its_framings(reader: PlateReader, monkeypatch: pytest.MonkeyPatch) -> None:
    """The framings may show the other reading (p0067: 陕ADG7250, G at 0.8, read 陕A06725D in
    the wider framing); the vote then weighs both, and the plate stays held."""
    bare: list[int] = []
    rec_type = type(reader.engine.rec)
    real = rec_type.__call__

    def spy(self: Recogniser, crops: list[np.ndarray], *, pad: bool = True) -> list[np.ndarray]:
        if not pad:
            bare.append(len(crops))  # the framing check's unpadded re-read
        return real(self, crops, pad=pad)

    plate = render_plate("粤B12345", "cn_blue", height=90, seed=0)
    img = cv2.copyMakeBorder(plate, 150, 150, 150, 150, cv2.BORDER_CONSTANT, value=(90, 90, 90))
    monkeypatch.setattr(rec_type, "__call__", spy)
    (r,) = reader.read(img)
    assert (r.text, r.status) == ("粤B12345", CONFIRMED) and bare  # a confirmed plate: framings read
    bare.clear()
    monkeypatch.setattr(calibration, "SURE_SLIP_MAX", -1.0)  # every character has a slip now
    reads = reader.read(img)
    assert reads and all(r.status == LOW_CONFIDENCE for r in reads)
    assert reads[0].doubt == "slip"
    assert bare, "the framings were not read"


def test_a_plate_held_for_a_second_reading_stays_held_however_many_frames_agree() -> None:
    """The frames of one camera share its resolution and angle and repeat its misreading: a
    slip, a slant or an upscaled find holds the plate in fusion, as a container's slip holds its
    number."""
    from portlane.models import fusion

    sure = PlateRead("皖ALC998", "cn", 0.9, (0, 0, 90, 30), (1.0,) * 7, CONFIRMED, "", 0.0, 45.0)
    for doubt in ("slip", "slant", "upscaled"):
        held = replace(sure, status=LOW_CONFIDENCE, doubt=doubt)
        (ident,) = fusion.fuse_plates([held, held, held])
        assert (ident.status, ident.doubt) == (LOW_CONFIDENCE, doubt)
        (ident,) = fusion.fuse_plates([sure, held])
        assert (ident.status, ident.doubt) == (LOW_CONFIDENCE, doubt)
    held_small = replace(sure, status=LOW_CONFIDENCE, doubt="province")
    (ident,) = fusion.fuse_plates([held_small, held_small])  # a small province: two frames confirm
    assert ident.status == CONFIRMED


def test_a_slip_held_plate_never_takes_a_confirmed_plates_framings(
    reader: PlateReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The framing check re-reads at most two plates: confirmed ones first (found by review: a
    wider slip-held plate took the slot of a confirmed one, which then went unchecked)."""
    from portlane.models import plates

    checked: list[tuple[int, int, int, int]] = []
    real = plates.crop_box

    def spy(img: np.ndarray, b: tuple[int, int, int, int], **kw: float) -> np.ndarray:
        checked.append(b)
        return real(img, b, **kw)

    monkeypatch.setattr(plates, "crop_box", spy)
    view = np.full((400, 800, 3), 90, np.uint8)
    wide = PlateRead("皖ALC998", "cn", 0.8, (0, 0, 400, 100), (1.0,) * 7, LOW_CONFIDENCE, "slip", 0.0, 60.0)
    a = PlateRead("粤B12345", "cn", 0.99, (0, 200, 300, 260), (1.0,) * 7, CONFIRMED, "", 0.0, 60.0)
    b = PlateRead("粤B67890", "cn", 0.99, (400, 200, 650, 260), (1.0,) * 7, CONFIRMED, "", 0.0, 60.0)
    reader._check_framings(view, [wide, a, b], (0, 0))
    assert {c for c in checked} == {a.box, b.box}
