"""Where a plate may be on a frame, and where the rows of a two-row plate are.

* :func:`line_candidates`: the detector's text boxes of a plate's aspect, and joins of two short
  boxes split by the separator dot;
* :func:`colour_regions`: blue, yellow and new-energy green rectangles of a plate's aspect (a
  colour mask at low resolution: plates too small in a 1080p frame for the detector);
* :func:`upper_rows`, :func:`upper_bands`, :func:`lower_band`: the rows of a two-row plate
  (GA 36: upper characters 60 mm high over lower ones of 110 mm), from its lower row's box or
  from the whole plate's box.

What is read there, and how, is :mod:`.plates`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .imaging import BBox, Image, Quad, bbox_of, crop_box, quad_of
from .onnx_ocr import TextBox

__all__ = ["PLATE_COLOURS", "colour_regions", "line_candidates", "lower_band", "union", "upper_bands", "upper_rows"]

#: HSV ranges (OpenCV: H 0–179) of plate backgrounds: blue (ordinary cars), yellow (large
#: vehicles, learner cars), green (new-energy: a gradient from pale to mid green).
PLATE_COLOURS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "blue": ((100, 110, 50), (124, 255, 255)),
    "yellow": ((15, 110, 90), (34, 255, 255)),
    "green": ((36, 60, 90), (85, 255, 255)),
}
#: Side of the image the colour mask is computed at (cheap: ~3 ms on a 1080p frame).
COLOUR_SIDE = 800


def upper_bands(plate: BBox) -> list[BBox]:
    """The upper row of a two-row plate box: centred (mainland: province + letter, GA 36) and
    full width (Hong Kong: the letters)."""
    x1, y1, x2, y2 = plate
    w, h = x2 - x1, y2 - y1
    return [(x1 + w // 6, y1, x2 - w // 6, y1 + int(0.42 * h)), (x1, y1, x2, y1 + int(0.45 * h))]


def lower_band(view: Image, plate: BBox) -> Image:
    """The lower row of a two-row plate box (GA 36: the lower 110 mm of 220 mm, with a margin)."""
    x1, y1, x2, y2 = plate
    return crop_box(view, (x1, y1 + int(0.40 * (y2 - y1)), x2, y2), mx=0.02, my=0.04)


def union(a: BBox, b: BBox) -> BBox:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def upper_rows(lower: BBox, boxes: list[TextBox]) -> list[BBox]:
    """Framings of the upper row of a two-row plate whose lower row is ``lower``: the detected
    text box just above it (clipped at the lower row), and the bands where the standard layout
    puts it (GA 36: upper characters 60 mm high over lower ones of 110 mm, 15 mm apart, centred)."""
    x1, y1, x2, y2 = lower
    w, h = x2 - x1, y2 - y1
    out: list[BBox] = []
    best: tuple[float, BBox] | None = None
    for tb in boxes:
        a = tb.bbox
        ah = a[3] - a[1]
        cx = (a[0] + a[2]) / 2
        if not (0.3 * h <= ah <= 0.95 * h and x1 <= cx <= x2 and a[2] - a[0] <= 1.1 * w):
            continue
        gap = y1 - a[3]
        if -0.45 * h <= gap <= 0.6 * h:
            d = abs(gap) + abs(cx - (x1 + x2) / 2) / 4
            if best is None or d < best[0]:
                best = (d, a)
    if best is not None:
        a = best[1]
        out.append((a[0] - (a[2] - a[0]) // 10, a[1], a[2] + (a[2] - a[0]) // 10, min(a[3], y1 + int(0.12 * h))))
    out.append((x1 + w // 8, max(0, int(y1 - 0.7 * h)), x2 - w // 8, y1 + int(0.1 * h)))
    if best is None:
        out.append((x1, max(0, int(y1 - 0.8 * h)), x2, y1 + int(0.15 * h)))
    return out


def line_candidates(boxes: list[TextBox], frame_h: int, limit: int = 8) -> list[Quad]:
    """Text boxes that may be plates (a plate's aspect, not a banner), plus joins of two short
    boxes split by the separator dot; at most ``limit``, the detector's surest first (every
    candidate costs a recogniser pass)."""
    info: list[tuple[Quad, float, float]] = []
    out: list[Quad] = []
    for tb in sorted(boxes, key=lambda b: -b.score):
        q = tb.quad
        w = float(np.linalg.norm(q[1] - q[0]))
        h = float(np.linalg.norm(q[3] - q[0]))
        info.append((q, w, h))
        if 8 <= h <= 0.9 * frame_h and 1.4 <= w / h <= 8:
            out.append(q)
    for i, (qa, wa, ha) in enumerate(info):
        for j, (qb, wb, hb) in enumerate(info):
            if i == j or ha < 8 or hb < 8 or wa > 4 * ha or wb > 4 * hb:
                continue
            ax1, ay1, ax2, ay2 = bbox_of(qa)
            bx1, by1, bx2, by2 = bbox_of(qb)
            if not (bx1 > ax1 and 0.6 < hb / ha < 1.6):
                continue
            gap = bx1 - ax2
            ov = min(ay2, by2) - max(ay1, by1)
            if -0.5 * ha < gap < 1.2 * ha and ov > 0.6 * min(ay2 - ay1, by2 - by1):
                b = (min(ax1, bx1), min(ay1, by1), max(ax2, bx2), max(ay2, by2))
                if 2 <= (b[2] - b[0]) / max(1, b[3] - b[1]) <= 8:
                    out.append(quad_of(b))
    return out[:limit]


def colour_regions(img: Image, limit: int) -> list[BBox]:
    """Up to ``limit`` plate-coloured rectangles of a plate's aspect, largest first."""
    if limit <= 0:
        return []
    H, W = img.shape[:2]
    s = min(1.0, COLOUR_SIDE / max(H, W))
    small = (
        cv2.resize(img, (max(1, round(W * s)), max(1, round(H * s))), interpolation=cv2.INTER_AREA) if s < 1 else img
    )
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    sh, sw = small.shape[:2]
    k = cv2.getStructuringElement(cv2.MORPH_RECT, (max(3, sw // 160), max(3, sw // 320)))
    found: list[tuple[float, BBox]] = []
    for lo, hi in PLATE_COLOURS.values():
        mask = cv2.inRange(hsv, np.array(lo, np.uint8), np.array(hi, np.uint8))
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, k)
        n, _lab, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        for i in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[i])
            if h < 7 or w < 16 or w * h > 0.04 * sw * sh:
                continue
            aspect = w / h
            fill = area / (w * h)
            if not (1.5 <= aspect <= 5.5) or fill < 0.45:
                continue
            b = (int(x / s), int(y / s), math.ceil((x + w) / s), math.ceil((y + h) / s))
            found.append((fill * w * h, b))
    found.sort(key=lambda f: -f[0])
    return [b for _, b in found[:limit]]
