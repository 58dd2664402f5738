"""A small province Hanzi re-read on its own (``models/plate_province.py``), on the real
recogniser and rendered plates: a sharp small province confirms the plate, a blurred one and
any other province do not; the guards that make it so are each shown to matter (mutants)."""

from __future__ import annotations

import pytest
from portlane.models import plate_province
from portlane.models.calibration import SHIPPED
from portlane.models.grammar import CN_PROVINCES, CONFIRMED, LOW_CONFIDENCE
from portlane.models.onnx_ocr import OcrEngine
from portlane.models.pipeline import PlateReader
from portlane.sim_devices.render import render_plate

#: Plates 24–30 px high (province glyphs 19–24 px, under the 40 px floor), blurred: the network
#: reads their provinces right in some cuts, wrong or unsure in others.
BLURRED = [("湘GR0L16", 30, 2.0), ("湘GR0L16", 26, 1.5), ("粤B12345", 30, 2.0), ("粤B12345", 26, 1.5)]


@pytest.fixture(scope="module")
def engine() -> OcrEngine:
    return OcrEngine()


@pytest.fixture(scope="module")
def reader(engine: OcrEngine) -> PlateReader:
    return PlateReader(engine)


def test_a_sharp_small_province_read_alone_confirms_the_plate(
    reader: PlateReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    img = render_plate("苏A6E176", "cn_blue", height=30, seed=3, margin=0.0)
    (r,) = reader.read(img)
    assert r.glyph_px is not None and SHIPPED.province_px_alone <= r.glyph_px < SHIPPED.province_px
    assert (r.text, r.status, r.province_alone) == ("苏A6E176", CONFIRMED, True)
    # without the evidence the same plate waits for a second source
    monkeypatch.setattr(plate_province, "check_provinces", lambda rec, view, reads, off, policy: reads)
    (r,) = reader.read(img)
    assert (r.status, r.doubt) == (LOW_CONFIDENCE, "province")


def test_a_blurred_small_province_is_not_read_alone(reader: PlateReader, monkeypatch: pytest.MonkeyPatch) -> None:
    imgs = [render_plate(t, "cn_blue", height=h, seed=3, blur=b, margin=0.0) for t, h, b in BLURRED]
    for (text, _h, _b), img in zip(BLURRED, imgs, strict=True):
        reads = reader.read(img)
        assert all(r.status == LOW_CONFIDENCE for r in reads), (text, reads)
        assert not plate_province.read_alone(reader.engine.rec, img, text)
    # mutant: one cut instead of all of them — a blurred glyph then passes
    monkeypatch.setattr(plate_province, "CUTS", plate_province.CUTS[:1])
    assert any(
        plate_province.read_alone(reader.engine.rec, img, t) for (t, _h, _b), img in zip(BLURRED, imgs, strict=True)
    )


def test_no_other_province_is_ever_read_alone(engine: OcrEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    img = render_plate("湘GR0L16", "cn_blue", height=30, seed=3, margin=0.0)
    assert plate_province.read_alone(engine.rec, img, "湘GR0L16")
    others = [p for p in CN_PROVINCES if p != "湘"]
    assert not any(plate_province.read_alone(engine.rec, img, p + "GR0L16") for p in others)
    assert not plate_province.read_alone(engine.rec, img, "GR0L16")  # no province at all
    # mutant: the probability and margin thresholds removed — any province passes
    monkeypatch.setattr(plate_province, "MIN_P", 0.0)
    monkeypatch.setattr(plate_province, "MIN_MARGIN", -1.0)
    assert plate_province.read_alone(engine.rec, img, "浙GR0L16")
