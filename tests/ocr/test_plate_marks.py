"""A confirmed Hong Kong or Macau mark that is part of a longer line is held
(``PlateReader._check_marks``, ``doubt="fragment"``).

Found by reading the development images at other scales: p0062's truck carries its plate number
painted large on its rear (粤BEK599, GB 7258), in glyphs spaced so widely that at half size the
detector boxed only ``EK59`` — a valid Hong Kong mark, confirmed at 0.98. Read wider, the box
shows the rest of the line; a real plate shows nothing more."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
from portlane.models import fusion
from portlane.models.calibration import GRID, Policy, plate_decision
from portlane.models.grammar import CONFIRMED, LOW_CONFIDENCE, PlateRead
from portlane.models.onnx_ocr import OcrEngine
from portlane.models.pipeline import PlateReader
from portlane.sim_devices.render import render_plate, render_plate_two_rows

PITCH, X0, Y0, H = 110, 60, 150, 70  # painted glyphs: pitch, first glyph's left, baseline, height


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    return PlateReader(OcrEngine.shared())


def _painted(text: str, first: int) -> np.ndarray:
    """A white truck panel with ``text`` painted in blue, one glyph every ``PITCH`` pixels from
    glyph position ``first`` on (a truck's enlarged rear number is spaced this widely)."""
    panel = np.full((240, 60 + PITCH * 7, 3), 235, np.uint8)
    for k, ch in enumerate(text):
        x = X0 + (first + k) * PITCH
        cv2.putText(panel, ch, (x, Y0), cv2.FONT_HERSHEY_SIMPLEX, 2.6, (150, 70, 20), 9, cv2.LINE_AA)
    return panel


def _mark(text: str, first: int, n: int) -> PlateRead:
    """A confirmed mark read from glyph positions ``first`` … ``first + n - 1`` (its box)."""
    box = (X0 + first * PITCH - 12, Y0 - H - 12, X0 + (first + n - 1) * PITCH + 75, Y0 + 12)
    return PlateRead(text, "hk", 0.98, box, (0.98,) * len(text), CONFIRMED, "", 0.0, None)


def test_a_mark_boxed_inside_a_longer_painted_line_is_held(reader: PlateReader) -> None:
    panel = _painted("BEK599", 0)
    (r,) = reader._check_marks(panel, [_mark("EK59", 1, 4)], (0, 0))
    assert (r.text, r.status, r.doubt) == ("EK59", LOW_CONFIDENCE, "fragment")


def test_the_same_mark_painted_alone_stays_confirmed(reader: PlateReader) -> None:
    """The control: the same glyphs at the same place with nothing around them."""
    panel = _painted("EK59", 1)
    mark = _mark("EK59", 1, 4)
    assert reader._check_marks(panel, [mark], (0, 0)) == [mark]


def test_the_lower_row_of_a_trailer_plate_is_no_hong_kong_mark(reader: PlateReader) -> None:
    """A Hanzi beside the mark counts (p0082 at ×0.9: the lower row ``H575挂`` of a mainland
    trailer's two-row plate, boxed without its 挂, decodes as the Hong Kong mark ``H575``)."""
    plate = render_plate_two_rows("湘AH575挂", "cn_yellow", seed=2, margin=0.0)
    h, w = plate.shape[:2]
    frame = np.full((500, 900, 3), 200, np.uint8)
    frame[150 : 150 + h, 200 : 200 + w] = plate
    box = (200 + w // 30, 150 + int(0.42 * h), 200 + int(0.76 * w), 150 + h - 3)  # H575, not 挂
    row = reader.engine.rec([frame[box[1] : box[3], box[0] : box[2]]])[0]
    got = reader.decode(row)
    assert got is not None and (got.text, got.kind, got.status) == ("H575", "hk", CONFIRMED)  # the hazard
    mark = replace(got, box=box)
    (r,) = reader._check_marks(frame, [mark], (0, 0))
    assert (r.status, r.doubt) == (LOW_CONFIDENCE, "fragment")


def test_the_box_is_taken_in_the_views_own_pixels(reader: PlateReader) -> None:
    """A read's box is in the frame; the view may be the camera's zone (``off``)."""
    panel = _painted("BEK599", 0)
    frame = np.full((400, panel.shape[1] + 300, 3), 90, np.uint8)
    frame[100 : 100 + panel.shape[0], 300:] = panel
    m = _mark("EK59", 1, 4)
    assert m.box is not None
    shifted = replace(m, box=(m.box[0] + 300, m.box[1] + 100, m.box[2] + 300, m.box[3] + 100))
    (r,) = reader._check_marks(frame[100:, 300:], [shifted], (300, 100))
    assert r.doubt == "fragment"


def test_a_hong_kong_plate_in_a_frame_stays_confirmed(reader: PlateReader) -> None:
    """End to end: a whole plate reads no more when framed wider."""
    plate = render_plate("UW6532", "hk", seed=3, margin=0.0)
    frame = np.full((720, 1280, 3), 70, np.uint8)
    ph, pw = plate.shape[:2]
    frame[420 : 420 + ph, 500 : 500 + pw] = plate
    reads = reader.read(frame)
    assert [(r.text, r.status) for r in reads if r.kind == "hk"] == [("UW6532", CONFIRMED)]


def test_a_fragment_is_held_under_any_policy_and_however_many_frames_agree() -> None:
    """The frames of one camera box the painted line alike: agreement is no evidence."""
    loosest = Policy(**{k: v[0] for k, v in GRID.items()})  # type: ignore[arg-type]
    sure = _mark("EK59", 1, 4)
    held = replace(sure, status=LOW_CONFIDENCE, doubt="fragment")
    assert plate_decision(sure, loosest)[0] == CONFIRMED
    assert plate_decision(held, loosest) == (LOW_CONFIDENCE, "fragment")
    (ident,) = fusion.fuse_plates([held, held, held])
    assert (ident.status, ident.doubt) == (LOW_CONFIDENCE, "fragment")
