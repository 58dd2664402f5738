"""A plate must look like a plate (``models/plate_look.py``): LED route displays, badges on dark
paint and signs are refused before they can become a plate read; the look decides between kinds
that share their marks (a white ``MS6735`` is a Hong Kong plate, a black one a Macau plate)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from portlane.models.onnx_ocr import OcrEngine
from portlane.models.pipeline import PlateReader
from portlane.models.plate_look import fits, look
from portlane.sim_devices.render import render_plate


def _led_panel(text: str, *, w: int = 300, h: int = 110) -> np.ndarray:
    """A bus's LED route display: amber-red dots lit in the shape of ``text`` on a black panel."""
    glyphs = np.zeros((h, w), np.uint8)
    cv2.putText(glyphs, text, (20, h - 22), cv2.FONT_HERSHEY_SIMPLEX, 2.6, 255, 14)
    panel = np.full((h, w, 3), 18, np.uint8)
    pitch = 6
    for y in range(pitch // 2, h, pitch):
        for x in range(pitch // 2, w, pitch):
            if glyphs[y, x]:
                cv2.circle(panel, (x, y), 2, (40, 90, 255), -1)  # BGR: red-orange LED
    return cv2.GaussianBlur(panel, (3, 3), 0)


def _badge(text: str) -> np.ndarray:
    """A chrome model badge (``A8L``) on a black boot lid."""
    img = np.full((90, 260, 3), 25, np.uint8)
    cv2.putText(img, text, (20, 70), cv2.FONT_HERSHEY_DUPLEX, 2.4, (205, 205, 210), 6)
    return img


def test_led_display_and_badge_do_not_look_like_a_plate() -> None:
    led = look(_led_panel("K16"))
    assert led is not None and led.text_coloured  # emitted light, not paint
    assert not fits("hk", led) and not fits("cn", led) and not fits("macau", led)
    badge = look(_badge("A8L"))
    assert badge is not None and (badge.background, badge.text) == ("black", "light")
    assert not fits("hk", badge)  # Hong Kong plates are dark glyphs on white or yellow


@pytest.mark.parametrize(
    ("style", "text", "kind"),
    [("hk", "AB1234", "hk"), ("hk_rear", "AB1234", "hk"), ("macau", "MX1234", "macau"), ("cn_blue", "粤B12345", "cn")],
)
def test_rendered_plates_of_every_kind_look_like_their_kind(style: str, text: str, kind: str) -> None:
    img = render_plate(text, style, seed=5)
    for crop in (img, cv2.resize(img, (200, 58), interpolation=cv2.INTER_AREA)):
        assert fits(kind, look(crop)), (style, look(crop))


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    return PlateReader(OcrEngine.shared())


def test_bus_route_display_is_never_read_as_a_hong_kong_plate(reader: PlateReader) -> None:
    scene = np.full((540, 960, 3), 70, np.uint8)
    scene[60:170, 330:630] = _led_panel("K16")
    scene[300:390, 350:610] = _badge("A8L")
    reads = reader.read(scene)
    assert not [r for r in reads if r.kind in ("hk", "macau", "hk_personal")], reads


def test_the_look_decides_between_a_hong_kong_and_a_macau_mark(reader: PlateReader) -> None:
    white = cv2.resize(render_plate("MS6735", "hk", seed=2), (240, 60), interpolation=cv2.INTER_AREA)
    black = cv2.resize(render_plate("MS6735", "macau", seed=2), (240, 60), interpolation=cv2.INTER_AREA)
    assert [(r.text, r.kind) for r in reader.read(white)] == [("MS6735", "hk")]
    assert [(r.text, r.kind) for r in reader.read(black)] == [("MS-67-35", "macau")]


def test_without_the_look_the_badge_is_a_confirmed_hong_kong_plate(
    reader: PlateReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mutant: with the look check removed the same scene gives the failure seen in the field."""
    from portlane.models import plate_look

    monkeypatch.setattr(plate_look, "fits", lambda kind, lk: True)
    scene = np.full((540, 960, 3), 70, np.uint8)
    scene[60:170, 330:630] = _led_panel("K16")
    scene[300:390, 350:610] = _badge("A8L")
    assert any(r.kind == "hk" for r in reader.read(scene))
