"""A small frame in which no plate was read well (confirmed, or held only for its small
province) is looked at once more, enlarged
(``plates.UPSCALE_MIN``…``UPSCALE_MAX``), and what only that look finds is never confirmed
(``doubt="upscaled"``).

Found on public photographs outside the development set (EasyPR's street photos, 640 × 480 and
D1 720 × 576): plates a dozen pixels high the detector misses at the frame's own size. Enlarged,
it finds them, but on those photographs one in five of the reads the enlarged look would have
confirmed was wrong (a 川AM1186 read 川AM118G at 0.99), so an officer sees them."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
from portlane.models import plates
from portlane.models.grammar import CONFIRMED, LOW_CONFIDENCE, PlateRead
from portlane.models.onnx_ocr import OcrEngine
from portlane.models.pipeline import PlateReader
from portlane.sim_devices.render import render_plate

SURE = PlateRead("苏E7P2K8", "cn", 0.99, (280, 200, 324, 212), (0.99,) * 7, CONFIRMED, "", 0.0, 20.0)


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    return PlateReader(OcrEngine.shared())


def _small_plate(width: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A 600 × 360 frame with a rendered blue plate ``width`` pixels wide, and where it is."""
    p = render_plate("苏E7P2K8", "cn_blue", seed=1)
    h = round(p.shape[0] * width / p.shape[1])
    frame = np.full((360, 600, 3), 110, np.uint8)
    frame[200 : 200 + h, 280 : 280 + width] = cv2.resize(p, (width, h), interpolation=cv2.INTER_AREA)
    return frame, (280, 200, 280 + width, 200 + h)


def test_a_plate_too_small_for_the_detector_is_found_enlarged_and_held(reader: PlateReader) -> None:
    frame, (x1, y1, x2, y2) = _small_plate(44)
    looks: list[float] = []
    real = plates.PlateReader._read_view

    def spy(self: PlateReader, view: np.ndarray, limit: int, off: tuple[int, int], *, upscale: float = 1.0) -> list:
        got = real(self, view, limit, off, upscale=upscale)
        looks.append(upscale)
        assert upscale > 1 or not got, "found at the frame's own size: this case no longer tests the enlarged look"
        return got

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plates.PlateReader, "_read_view", spy)
        reads = reader.read(frame)
    assert looks == [1.0, plates.UPSCALE_MAX]  # 600 px: enlarged by the most allowed
    assert {"det_ms", "rec_ms", "upscaled_ms"} <= set(reader.timings)  # the second look's cost apart
    assert [r.text for r in reads] == ["苏E7P2K8"]
    (r,) = reads
    assert r.status == LOW_CONFIDENCE
    assert r.box is not None  # in the frame's own pixels, not the enlarged frame's
    assert abs(r.box[0] - x1) <= 6 and abs(r.box[2] - x2) <= 6 and abs(r.box[1] - y1) <= 6 and abs(r.box[3] - y2) <= 6


HELD = PlateRead("苏E7P2K3", "cn", 0.6, (280, 200, 324, 212), (0.6,) * 7, LOW_CONFIDENCE, "confidence", 0.0, 20.0)


@pytest.mark.parametrize(
    ("shape", "first", "second_look"),
    [
        ((360, 600), [], True),  # nothing found: enlarged by 1.6
        ((480, 640), [], True),
        ((576, 720), [], True),  # a D1 camera: 960 / 720 = 1.33
        ((360, 600), [HELD], True),  # nothing read well
        ((600, 800), [], False),  # 960 / 800 = 1.2: too little to gain
        ((1080, 1920), [], False),  # a lane camera's frame is scaled down, never up
        ((360, 600), [SURE], False),  # something confirmed: no second look
    ],
)
def test_only_a_small_frame_without_a_confirmed_plate_is_looked_at_again(
    reader: PlateReader, shape: tuple[int, int], first: list[PlateRead], second_look: bool
) -> None:
    _second_look(reader, shape, first, second_look)


def test_a_plate_zone_is_never_enlarged() -> None:
    """A fixed camera's plate zone (``roi``) is read at the size the site chose: a small zone of a
    1080p frame gets no second look (most of a lane's frames have no plate)."""
    _second_look(PlateReader(OcrEngine.shared(), roi=(700, 700, 1180, 900)), (1080, 1920), [], False)


def _second_look(reader: PlateReader, shape: tuple[int, int], first: list[PlateRead], second_look: bool) -> None:
    calls: list[float] = []

    def fake(self: PlateReader, view: np.ndarray, limit: int, off: tuple[int, int], *, upscale: float = 1.0) -> list:
        calls.append(upscale)
        return first if upscale == 1.0 else [SURE]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plates.PlateReader, "_read_view", fake)
        reads = reader.read(np.zeros((*shape, 3), np.uint8))
    assert (len(calls) == 2) is second_look
    if second_look:
        # what only the enlarged look found is held, however sure its characters
        assert calls[1] == pytest.approx(min(plates.UPSCALE_MAX, 960 / max(shape)))
        assert [(r.text, r.status, r.doubt) for r in reads] == [("苏E7P2K8", LOW_CONFIDENCE, "upscaled")]
    else:
        assert reads == first


@pytest.mark.parametrize(
    ("first", "second", "kept"),
    [
        ([HELD], [replace(HELD, text="苏E7P2K9")], [HELD]),  # neither confirms: the first look stands
        ([HELD], [], [HELD]),
        # the first look found nothing: anything the second found, held as upscaled (else two
        # frames of one small camera agreeing would confirm a weak find)
        ([], [HELD], [replace(HELD, doubt="upscaled")]),
    ],
)
def test_the_enlarged_look_replaces_the_first_only_with_a_plate_it_would_confirm(
    reader: PlateReader, first: list[PlateRead], second: list[PlateRead], kept: list[PlateRead]
) -> None:
    def fake(self: PlateReader, view: np.ndarray, limit: int, off: tuple[int, int], *, upscale: float = 1.0) -> list:
        return first if upscale == 1.0 else second

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plates.PlateReader, "_read_view", fake)
        assert reader.read(np.zeros((360, 600, 3), np.uint8)) == kept


def test_no_threshold_lifts_an_upscaled_find() -> None:
    """``portlane ocr eval`` re-decides every read under the policy fitted on the other folds:
    an upscaled find must stay held under any policy (a structural doubt)."""
    from portlane.models.calibration import GRID, Policy, plate_decision

    loosest = Policy(**{k: v[0] for k, v in GRID.items()})  # type: ignore[arg-type]
    held = replace(SURE, status=LOW_CONFIDENCE, doubt="upscaled", glyph_px=60.0)
    assert plate_decision(replace(held, doubt=""), loosest) == (CONFIRMED, "")  # the read itself is sure
    assert plate_decision(held, loosest) == (LOW_CONFIDENCE, "upscaled")
