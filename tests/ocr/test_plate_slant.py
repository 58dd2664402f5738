"""A slanted plate is read in two views (``imaging.rectify`` rotates the line level,
``imaging.deslant`` shears it level keeping the image's verticals) and is confirmed only when
both read the same text (``plate_vote.two_views``).

Found on public photographs outside the development set: a plate seen obliquely at 29° (its
glyphs upright, its line slanted by perspective) was rotated level, which leaned every stroke,
and 皖AZ8D02 was confirmed as 皖AZ8002 (the ``D``'s straight back read as a ``0``). The
deslanted view reads 皖AZ8D02: the views disagree and an officer sees both."""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np
import pytest
from portlane.models import plate_vote, plates
from portlane.models.calibration import SHIPPED
from portlane.models.grammar import CONFIRMED, LOW_CONFIDENCE, PlateRead
from portlane.models.imaging import deslant, rectify, slant_deg
from portlane.models.onnx_ocr import OcrEngine
from portlane.models.pipeline import PlateReader
from portlane.sim_devices.render import render_plate


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    return PlateReader(OcrEngine.shared())


def _sheared(img: np.ndarray, deg: float, size: tuple[int, int] = (900, 700)) -> np.ndarray:
    """``img`` pasted on a grey frame, sheared by ``deg`` (``y += x·tan``): a plate seen
    obliquely, its verticals still vertical."""
    m = np.float32([[1, 0, 150], [math.tan(math.radians(deg)), 1, 150]])
    out = np.full((size[1], size[0], 3), 90, np.uint8)
    cv2.warpAffine(img, m, size, dst=out, borderMode=cv2.BORDER_TRANSPARENT, flags=cv2.INTER_AREA)
    return out


def _lean(crop: np.ndarray) -> float:
    """Mean horizontal drift (px) of dark vertical bars from the crop's top third to its bottom
    third: 0 for upright strokes."""
    g = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) < 100
    h = g.shape[0]
    drifts = []
    top, bottom = g[h // 4 : h // 3], g[2 * h // 3 : 3 * h // 4]
    for band_top, band_bottom in zip(_runs(top.any(axis=0)), _runs(bottom.any(axis=0)), strict=False):
        drifts.append(abs(sum(band_bottom) / 2 - sum(band_top) / 2))
    assert drifts, "no bars found"
    return float(np.mean(drifts))


def _runs(cols: np.ndarray) -> list[tuple[int, int]]:
    out, start = [], None
    for x, on in enumerate([*cols.tolist(), False]):
        if on and start is None:
            start = x
        elif not on and start is not None:
            out.append((start, x - 1))
            start = None
    return out


def test_deslant_keeps_upright_strokes_upright_where_rotating_leans_them() -> None:
    bars = np.full((60, 300, 3), 230, np.uint8)
    for x in range(30, 280, 40):
        bars[10:50, x : x + 8] = 20
    img = _sheared(bars, 25)
    pts = cv2.findNonZero((cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) > 200).astype(np.uint8))
    quad = cv2.boxPoints(cv2.minAreaRect(pts)).astype(np.float32)
    quad = quad[np.argsort(quad[:, 0])]  # tl, tr, br, bl as the detector's quads come
    left, right = quad[:2][np.argsort(quad[:2, 1])], quad[2:][np.argsort(quad[2:, 1])]
    quad = np.array([left[0], right[0], right[1], left[1]], np.float32)
    assert abs(slant_deg(quad) - 25) < 2
    straight, rotated = deslant(img, quad), rectify(img, quad)
    assert _lean(straight) < 1.5
    assert _lean(rotated) > 4 * max(1.0, _lean(straight))  # the test tells the two crops apart


def _read(text: str, status: str, box: tuple[int, int, int, int], glyph: float, doubt: str = "") -> PlateRead:
    return PlateRead(text, "cn", 0.99, box, (0.99,) * len(text), status, doubt, 0.0, glyph)


SLANTED = (100, 100, 300, 220)
LEVEL = (400, 100, 600, 160)


def test_a_read_both_views_agree_on_stands_with_the_smaller_glyph_measure() -> None:
    rot = _read("皖AZ8D02", CONFIRMED, SLANTED, 45.0)
    des = _read("皖AZ8D02", CONFIRMED, SLANTED, 38.0)
    (r,) = plate_vote.two_views([rot], [des], [SLANTED], SHIPPED)
    # the province rule weighs the smaller measure: 38 px is under the 40 px floor
    assert (r.text, r.status, r.doubt, r.glyph_px) == ("皖AZ8D02", LOW_CONFIDENCE, "province", 38.0)
    (r,) = plate_vote.two_views([replace(rot, glyph_px=48.0)], [replace(des, glyph_px=44.0)], [SLANTED], SHIPPED)
    assert (r.status, r.glyph_px) == (CONFIRMED, 44.0)


def test_the_deslanted_view_never_confirms_a_read() -> None:
    """Two views of the same pixels are no independent evidence: a read the line's own view
    holds stays held however surely the deslanted view reads it (p0082's trailer: a fragment of
    the painted number read ``H575``, weakly level and surely deslanted in a blurred copy)."""
    rot = replace(_read("H575", LOW_CONFIDENCE, SLANTED, 30.0, doubt="confidence"), kind="hk", confidence=0.49)
    des = replace(_read("H575", CONFIRMED, SLANTED, 30.0), kind="hk")
    (r,) = plate_vote.two_views([rot], [des], [SLANTED], SHIPPED)
    assert (r.status, r.doubt, r.confidence) == (LOW_CONFIDENCE, "confidence", 0.49)


def test_two_views_that_disagree_are_both_held_for_the_slant() -> None:
    rot = _read("皖AZ8002", CONFIRMED, SLANTED, 50.0)
    des = _read("皖AZ8D02", CONFIRMED, SLANTED, 50.0)
    got = plate_vote.two_views([rot], [des], [SLANTED], SHIPPED)
    assert {(r.text, r.status, r.doubt) for r in got} == {
        ("皖AZ8002", LOW_CONFIDENCE, "slant"),
        ("皖AZ8D02", LOW_CONFIDENCE, "slant"),
    }
    (r,) = plate_vote.vote(got)
    assert (r.status, r.doubt) == (LOW_CONFIDENCE, "slant")


def test_a_read_of_one_view_only_is_held_and_other_boxes_pass() -> None:
    only_rot = _read("皖AZ8002", CONFIRMED, SLANTED, 50.0)
    level = _read("粤B12345", CONFIRMED, LEVEL, 50.0)
    got = plate_vote.two_views([only_rot, level], [], [SLANTED], SHIPPED)
    assert [(r.text, r.status, r.doubt) for r in got] == [
        ("皖AZ8002", LOW_CONFIDENCE, "slant"),
        ("粤B12345", CONFIRMED, ""),
    ]
    only_des = _read("皖AZ8D02", CONFIRMED, SLANTED, 50.0)
    (r,) = plate_vote.two_views([], [only_des], [SLANTED], SHIPPED)
    assert (r.status, r.doubt) == (LOW_CONFIDENCE, "slant")
    # a weak read that only the deslanted view made adds nothing an officer needs (p0082: a
    # fragment of a trailer's painted number would only add a doubtful plate to the vehicle)
    weak_des = _read("H575", LOW_CONFIDENCE, SLANTED, 30.0, doubt="confidence")
    assert plate_vote.two_views([], [weak_des], [SLANTED], SHIPPED) == []
    # a read already held keeps its own doubt (the officer's reason is the reader's)
    weak = _read("皖AZ8002", LOW_CONFIDENCE, SLANTED, 50.0, doubt="confidence")
    (r,) = plate_vote.two_views([weak], [], [SLANTED], SHIPPED)
    assert r.doubt == "confidence"


def test_every_read_over_a_slanted_line_needs_both_views() -> None:
    """A two-row plate joined from a slanted lower row (its box the union of both rows) and a
    colour region over the line are reads of the same slanted pixels: without a deslanted read
    of the same text they are held too (found by review: they bypassed the check)."""
    double = _read("皖AZ8002", CONFIRMED, (100, 60, 300, 220), 50.0)  # union of upper row and line
    colour = _read("皖AZ8002", CONFIRMED, (95, 95, 305, 225), 50.0)
    elsewhere = _read("粤B12345", CONFIRMED, LEVEL, 50.0)
    got = plate_vote.two_views([double, colour, elsewhere], [], [SLANTED], SHIPPED)
    assert [(r.status, r.doubt) for r in got] == [(LOW_CONFIDENCE, "slant")] * 2 + [(CONFIRMED, "")]
    des = _read("皖AZ8002", CONFIRMED, SLANTED, 50.0)
    got = plate_vote.two_views([double, colour], [des], [SLANTED], SHIPPED)
    assert all(r.status == CONFIRMED for r in got)


def test_a_second_reading_in_either_view_holds_the_read() -> None:
    """The views agree on the text, but the deslanted one gives another character weight: the
    read that stands carries the larger slip weights of the two."""
    rot = replace(_read("皖AZ8002", CONFIRMED, SLANTED, 50.0), slip_weights=(0.0,) * 7)
    des = replace(_read("皖AZ8002", CONFIRMED, SLANTED, 50.0), slip_weights=(0, 0, 0, 0, 0.35, 0, 0))
    (r,) = plate_vote.two_views([rot], [des], [SLANTED], SHIPPED)
    assert (r.status, r.doubt) == (LOW_CONFIDENCE, "slip")
    assert r.slip_weights[4] == 0.35


def test_a_plate_seen_obliquely_is_read_in_both_views_and_confirmed_once(
    reader: PlateReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    views: list[float] = []
    real = plates.deslant

    def spy(img: np.ndarray, quad: np.ndarray) -> np.ndarray:
        views.append(slant_deg(quad))
        return real(img, quad)

    monkeypatch.setattr(plates, "deslant", spy)
    img = _sheared(render_plate("皖AZ8D02", "cn_blue", height=90, seed=0), 28)
    (r,) = reader.read(img)
    assert (r.text, r.status) == ("皖AZ8D02", CONFIRMED)
    assert views and all(abs(v) >= plates.SLANT_MIN_DEG for v in views)
    views.clear()
    (r,) = reader.read(_sheared(render_plate("皖AZ8D02", "cn_blue", height=90, seed=0), 0))
    assert (r.text, r.status) == ("皖AZ8D02", CONFIRMED)
    assert views == []  # a level plate costs no second view


def test_a_slanted_plate_whose_views_disagree_is_never_confirmed(
    reader: PlateReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The views disagreeing as on the photograph: the deslanted view here shows another
    plate's glyphs (a stand-in for a view that reads the same pixels differently)."""
    other = render_plate("皖AZ8002", "cn_blue", height=90, seed=0, margin=0.05)
    monkeypatch.setattr(plates, "deslant", lambda img, quad: other)
    img = _sheared(render_plate("皖AZ8D02", "cn_blue", height=90, seed=0), 28)
    reads = reader.read(img)
    assert reads and all(r.status == LOW_CONFIDENCE for r in reads)
    assert reads[0].doubt == "slant"
