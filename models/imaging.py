"""Image and box helpers shared by the plate and container readers (numpy + OpenCV)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from . import ctc
from .onnx_ocr import crop_quad

__all__ = [
    "RECTIFY_MARGIN",
    "BBox",
    "Image",
    "bbox_of",
    "blank_rows",
    "decode_image",
    "deslant",
    "iou",
    "overlaps",
    "quad_of",
    "rectify",
    "slant_deg",
    "unconstrained_logp",
]

Image = npt.NDArray[np.uint8]
Matrix = npt.NDArray[np.float32]
Quad = npt.NDArray[np.float32]
BBox = tuple[int, int, int, int]


def decode_image(data: bytes) -> Image:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("not a decodable image")
    return np.asarray(img, np.uint8)  # IMREAD_COLOR decodes to 8 bits: a view, not a copy


def bbox_of(q: Quad) -> BBox:
    return int(q[:, 0].min()), int(q[:, 1].min()), math.ceil(float(q[:, 0].max())), math.ceil(float(q[:, 1].max()))


def quad_of(b: BBox) -> Quad:
    x1, y1, x2, y2 = b
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32)


#: Margin round a rectified text quad, in quad heights (``rectify``).
RECTIFY_MARGIN = 0.08


def rectify(img: Image, quad: Quad, *, margin: float = RECTIFY_MARGIN) -> Image:
    """Perspective-rectified crop of a text quad, grown by ``margin`` × its height on every side:
    PP-OCR rec is trained on crops with some background around the glyphs."""
    h = float(np.linalg.norm(quad[0] - quad[3]))
    grow = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32) * np.float32(margin * h)
    u = (quad[1] - quad[0]) / max(1e-6, float(np.linalg.norm(quad[1] - quad[0])))
    v = np.array([-u[1], u[0]], np.float32)
    q = quad + grow[:, :1] * u + grow[:, 1:] * v
    out: Image = crop_quad(img, q)
    return out


def slant_deg(quad: Quad) -> float:
    """Angle of a text quad's top edge to the horizontal, in degrees (positive: down to the right)."""
    u = quad[1] - quad[0]
    return math.degrees(math.atan2(float(u[1]), float(u[0])))


def deslant(img: Image, quad: Quad, *, margin: float = RECTIFY_MARGIN) -> Image:
    """Crop of a slanted text quad that keeps the image's verticals vertical: the band of the
    quad's slope, as thick vertically as the quad is across, mapped level by an affine map (a
    shear, with the band's length along its slope kept).

    ``rectify`` turns a slanted quad level by rotating it, which is right when the text itself is
    rotated (a camera's roll). A plate seen obliquely by a camera beside or above the lane is
    slanted by perspective instead: its glyphs stay upright, and rotating them leans every
    vertical stroke by the slant, so that a ``D``'s straight back reads as the round side of a
    ``0`` (measured: 皖AZ8D02 at 29° read as a sure 皖AZ8002). The two crops are two views of one
    plate: they agree when the slant does not matter.
    """
    tl, tr, _br, bl = quad.astype(np.float64)
    theta = math.atan2(tr[1] - tl[1], tr[0] - tl[0])
    cos = max(0.2, math.cos(theta))
    thick = float(np.linalg.norm(tl - bl)) / cos  # vertical thickness of the band
    cx, cy = quad.mean(axis=0)
    x1 = float(quad[:, 0].min()) - margin * thick
    x2 = float(quad[:, 0].max()) + margin * thick
    half = thick * (0.5 + margin)
    slope = math.tan(theta)

    def centre(x: float) -> float:
        return float(cy + (x - cx) * slope)

    w = max(8, round((x2 - x1) / cos))
    h = max(8, round(2 * half))
    src = np.array([[x1, centre(x1) - half], [x2, centre(x2) - half], [x1, centre(x1) + half]], np.float32)
    dst = np.array([[0, 0], [w, 0], [0, h]], np.float32)
    m = cv2.getAffineTransform(src, dst)
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return np.asarray(out, np.uint8)  # warpAffine keeps uint8: a view, not a copy


def crop_box(img: Image, b: BBox, *, mx: float = 0.0, my: float = 0.0) -> Image:
    """Axis-aligned crop grown by ``mx`` × width and ``my`` × height, clipped to the image."""
    x1, y1, x2, y2 = b
    w, h = x2 - x1, y2 - y1
    H, W = img.shape[:2]
    ya, yb = max(0, int(y1 - my * h)), min(H, int(y2 + my * h))
    out: Image = img[ya:yb, max(0, int(x1 - mx * w)) : min(W, int(x2 + mx * w))]
    return out


def iou(a: BBox, b: BBox) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def overlaps(a: BBox, b: BBox, frac: float = 0.5) -> bool:
    """True if more than ``frac`` of the smaller box lies inside the other."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return small > 0 and ix * iy > frac * small


def blank_rows(n: int, width: int) -> Matrix:
    """``n`` frames of certain CTC blank: the seam between two matrices read as one line."""
    r = np.zeros((n, width), np.float32)
    r[:, 0] = 1.0
    return r


def unconstrained_logp(probs: Matrix) -> float:
    """Log-probability of the best unconstrained CTC path (the yardstick for a grammar's cost).

    Only each frame's blank and best other class can be the best of its (collapsed) frame, so
    only those two columns are collapsed and logged, not all 6625 (same value, a third of the time).
    """
    two = np.stack([probs[:, 0], probs[:, 1:].max(axis=1)], axis=1)
    lp, _ = ctc.compress(two)
    return float(lp.max(axis=1).sum())
