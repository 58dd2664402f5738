"""Container lines from detector boxes (issue 22): tilted lines kept apart, lines grouped only
where a number can continue, and a coarser detector pass when a frame gave nothing."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from portlane.models import container_lines
from portlane.models.container_lines import Piece, groups
from portlane.sim_devices.render import render_container

NUMBER = "CSQU3054383"


@pytest.fixture(scope="module")
def engine():
    from portlane.models.onnx_ocr import OcrEngine

    return OcrEngine.shared()


@pytest.fixture
def containers(engine):
    from portlane.models.containers import ContainerReader

    return ContainerReader(engine)


def _turned(quad: list[list[float]], degrees: float) -> np.ndarray:
    t = math.radians(degrees)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return (np.array(quad, np.float64) @ rot.T).astype(np.float32)


def _tilted_door(degrees: float, *, seed: int) -> np.ndarray:
    """``CSQU 305438 [3]`` over ``22G1`` on a 1280×720 frame, turned by ``degrees`` (a gate camera
    looking down at a door from the side)."""
    patch = render_container(NUMBER, "horizontal", size_type="22G1", seed=seed, height=40, noise=3, blur=0.6)
    h, w = patch.shape[:2]
    frame = np.empty((720, 1280, 3), np.uint8)
    frame[:] = patch[2, 2]
    frame[300 : 300 + h, 400 : 400 + w] = patch
    turn = cv2.getRotationMatrix2D((400 + w / 2, 300 + h / 2), -degrees, 1.0)
    return np.asarray(cv2.warpAffine(frame, turn, (1280, 720), borderMode=cv2.BORDER_REPLICATE), np.uint8)


@pytest.mark.parametrize("degrees", [20, 30])
def test_a_tilted_number_is_not_merged_with_the_line_below(containers, degrees: float) -> None:
    # the upright boxes of the number and of its size-type line overlap by most of their height:
    # compared upright they were one line, read from their union as nothing
    reads = containers.read(_tilted_door(degrees, seed=2))
    assert [(r.number, r.status) for r in reads][:1] == [(NUMBER, "confirmed")]


def test_cuts_of_one_tilted_line_are_joined_and_stacked_tilted_lines_are_not() -> None:
    line = container_lines._Line(_turned([[0, 0], [200, 0], [200, 40], [0, 40]], 30))
    below = _turned([[0, 50], [200, 50], [200, 90], [0, 90]], 30)
    assert not line.absorb(below)
    cut = _turned([[180, 2], [320, 2], [320, 41], [180, 41]], 30)  # overlaps by one glyph
    assert line.absorb(cut)
    # the union is the whole line, still tilted: 320 long, 41 high, in the line's own frame
    edge = line.quad[1] - line.quad[0]
    assert math.degrees(math.atan2(float(edge[1]), float(edge[0]))) == pytest.approx(30, abs=0.1)
    assert float(np.linalg.norm(edge)) == pytest.approx(320, abs=1)
    assert float(np.linalg.norm(line.quad[3] - line.quad[0])) == pytest.approx(41, abs=1)


def test_cuts_of_a_level_line_are_joined_into_their_upright_union() -> None:
    line = container_lines._Line(np.array([[10, 10], [100, 10], [100, 40], [10, 40]], np.float32))
    assert line.absorb(np.array([[90, 12], [180, 12], [180, 41], [90, 41]], np.float32))
    assert line.box == (10, 10, 180, 41)
    assert not line.absorb(np.array([[10, 45], [100, 45], [100, 75], [10, 75]], np.float32))


def test_a_level_line_that_takes_in_a_tilted_cut_is_tilted_from_then_on() -> None:
    # joined in the cut's frame, the union is a tilted quad: read_pieces places the end of a
    # line's read glyphs (where the boxed check digit is looked for) only on level lines
    line = container_lines._Line(np.array([[100, 100], [300, 100], [300, 130], [100, 130]], np.float32))
    assert line.tilt == 0.0
    cut = _turned([[-50, -15], [50, -15], [50, 15], [-50, 15]], 20) + np.float32([270, 120])  # overlaps its end
    assert line.absorb(cut)
    edge = line.quad[1] - line.quad[0]
    assert line.tilt == pytest.approx(math.atan2(float(edge[1]), float(edge[0])), abs=1e-3) != 0.0


def _piece(box: tuple[int, int, int, int], text: str) -> Piece:
    return Piece(box, np.zeros((2 * len(text), 4), np.float32), text)


def test_the_line_below_continues_a_number_only_if_it_lies_under_it() -> None:
    owner = _piece((100, 100, 180, 140), "TAKU")
    under = _piece((100, 150, 260, 190), "2473543")
    assert groups([owner, under]) == [[0, 1]]
    # the line below starting past the owner code's end (another marking, a weight) is not its serial
    aside = _piece((185, 150, 345, 190), "2473543")
    assert groups([owner, aside]) == []


def _frame(number: str) -> np.ndarray:
    patch = render_container(number, "horizontal", size_type="22G1", seed=4, height=36, noise=3, blur=0.6)
    frame = np.empty((720, 1280, 3), np.uint8)
    frame[:] = patch[2, 2]
    frame[200 : 200 + patch.shape[0], 300 : 300 + patch.shape[1]] = patch
    return frame


def _record_detector(engine, monkeypatch: pytest.MonkeyPatch, *, blind_first: bool) -> list[int]:
    """The detector's input limit of each pass, in order; ``blind_first``: the first pass sees
    nothing (the detector's blind spot at the first pass's scale, as on c0065 and c0080)."""
    detect = engine.det
    limits: list[int] = []

    def recorded(img: np.ndarray, *, limit: int = 960, max_area: int | None = None, tile: int | None = None):
        limits.append(limit)
        return [] if blind_first and len(limits) == 1 else detect(img, limit=limit, max_area=max_area, tile=tile)

    monkeypatch.setattr(engine, "det", recorded)
    return limits


def test_a_frame_that_gave_nothing_is_looked_at_again_at_a_coarser_scale(
    containers, engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = _record_detector(engine, monkeypatch, blind_first=True)
    reads = containers.read(_frame(NUMBER))
    assert [r.number for r in reads][:1] == [NUMBER]
    assert limits[:2] == [1280, round(0.6 * 1280)]


def test_the_coarser_pass_costs_nothing_when_the_first_pass_read_a_number(
    containers, engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = _record_detector(engine, monkeypatch, blind_first=False)
    reads = containers.read(_frame("MSCU5006271"))
    assert [r.number for r in reads][:1] == ["MSCU5006271"] and limits == [1280]


def test_a_level_line_knows_where_its_read_glyphs_end(engine) -> None:
    from portlane.models.container_lines import read_pieces
    from portlane.models.onnx_ocr import TextBox

    patch = render_container(NUMBER, "horizontal", seed=2, height=30)
    patch[:, 276:] = patch[2, 2]  # the boxed check digit left out: the serial ends at x 271
    img = np.empty((140, 480, 3), np.uint8)
    img[:] = patch[2, 2]
    img[40 : 40 + patch.shape[0], 40 : 40 + patch.shape[1]] = patch
    # the detector's box grown round the serial (DB unclip), reaching where a check box would be
    x1, x2, y1, y2 = 40 + 125, 40 + 271 + 45, 40 + 15 - 15, 40 + 45 + 15
    quad = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32)
    [piece] = read_pieces(engine, img, [TextBox(quad, 0.9)])
    assert piece.text == "305438" and piece.end is not None
    # within about a third of a glyph of the last glyph's edge (on the far side: a region started
    # there holds none of it), where the box's edge is 1.5 glyphs off
    assert 40 + 271 - 6 <= piece.end <= 40 + 271 + 12 < x2 - 30


def test_a_columns_glyphs_map_to_the_frames_the_recogniser_reads_them_in(engine) -> None:
    """A column's tile is read scaled to the recogniser's height: each character decoded from it
    lies in its own glyph's frames (``columns.glyph_frames``), so a window of glyphs is cut
    where its glyphs are (unscaled, a window of ten glyphs took in most of the column)."""
    import unicodedata

    from portlane.models import ctc
    from portlane.models.columns import find_columns, glyph_frames, tile_column

    img = np.full((1080, 1920, 3), (120, 80, 40), np.uint8)
    for i, ch in enumerate(NUMBER):  # one glyph a row, baselines 70 px apart, as on a front wall
        cv2.putText(img, ch, (900, 120 + i * 70), cv2.FONT_HERSHEY_DUPLEX, 1.9, (235, 235, 235), 4, cv2.LINE_AA)
    [col] = [c for c in find_columns(img, work_side=1280, min_glyphs=4, limit=6) if c.found >= 10]
    tile, starts = tile_column(img, col)
    assert tile.shape[0] != 48, "a tile at the recogniser's own height would not test the scaling"
    mat = ctc.fold_separators(engine.rec([tile])[0], engine.rec.index)
    frames = glyph_frames(tile, starts, len(mat))
    classes = {i: c for c, i in engine.rec.index.items()}
    placed = 0
    for t in range(len(mat)):
        ch = unicodedata.normalize("NFKC", classes.get(int(np.argmax(mat[t])), ""))
        if not ch:
            continue
        k = max(g for g in range(len(col.glyphs)) if frames[g] <= t)
        row = round((col.glyphs[k][3] - 120) / 70)  # the row of the glyph whose frames hold it
        assert 0 <= row < len(NUMBER) and ch == NUMBER[row], (t, ch, k, row)
        placed += 1
    assert placed >= 6  # the font reads well enough for most rows
