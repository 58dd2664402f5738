"""The text lines of a container frame: recognised one by one, then grouped into candidate numbers.

The DB detector gives boxes; a door's number is one to three of them — owner code and serial on
one line or one above the other, the boxed check digit often its own box, a vertical code on a
door post cut into fragments. This module turns boxes into recognised **pieces** (a box and its
separator-folded CTC matrix) and lists the **groups** of pieces that may be one number, in
reading order. Whether a group *is* a number is for ``container_numbers`` (the ISO 6346
template and the check digit) to decide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from . import ctc
from .imaging import RECTIFY_MARGIN, BBox, Image, Matrix, Quad, bbox_of, blank_rows, overlaps, quad_of, rectify
from .onnx_ocr import REC_HEIGHT, REC_STRIDE, OcrEngine, TextBox

__all__ = ["Piece", "groups", "joined", "read_pieces", "tile_vertical"]

#: Characters a group of pieces may hold: an 11-character number plus a few stray marks.
MAX_GROUP_CHARS = 14
#: Fewest characters of a group: owner code, serial, nothing else (the check digit may be apart).
MIN_GROUP_CHARS = 9
#: Blank frames put between two pieces joined into one matrix (one CTC search).
SEAM_FRAMES = 2


@dataclass
class Piece:
    """A recognised text line: its box in the frame and its (separator-folded) CTC matrix."""

    box: BBox
    probs: Matrix
    text: str
    vertical: bool = False
    #: Where the glyphs read end in the frame (x), when the line is level: the detector's box
    #: is grown beyond them (DB unclip) and may hold a boxed check digit the recogniser dropped.
    end: int | None = None


def read_pieces(engine: OcrEngine, img: Image, boxes: list[TextBox], skip: tuple[BBox, ...] = ()) -> list[Piece]:
    """Recognise the detector's ``boxes`` (one recogniser run); boxes overlapping ``skip`` —
    columns read from their glyphs already — are left out."""
    cols: list[list[int]] = []
    lines: list[_Line] = []
    for b in boxes:
        x1, y1, x2, y2 = bbox_of(b.quad)
        bw, bh = x2 - x1, y2 - y1
        if bh >= 2.0 * bw and bh >= 30:
            cols.append([x1, y1, x2, y2])
            continue
        # the detector sometimes cuts one line into overlapping boxes (a glyph in both):
        # reading their union avoids a doubled character in the joined number
        for line in lines:
            if line.absorb(b.quad):
                break
        else:
            lines.append(_Line(b.quad))
    crops: list[np.ndarray] = []
    meta: list[tuple[BBox, bool]] = []
    frame_x: list[tuple[float, float] | None] = []  # image x of frame 0 and per frame, level lines
    for line in lines:
        crop = rectify(img, line.quad)
        crops.append(crop)
        meta.append((line.box, False))
        if line.tilt == 0.0:
            margin = RECTIFY_MARGIN * float(np.linalg.norm(line.quad[0] - line.quad[3]))
            step = REC_STRIDE * crop.shape[0] / REC_HEIGHT
            frame_x.append((line.box[0] - margin + step / 2, step))
        else:
            frame_x.append(None)
    H, W = img.shape[:2]
    for x1, y1, x2, y2 in _merged_columns(cols):
        box = (x1, y1, x2, y2)
        if any(overlaps(box, c) for c in skip):
            continue  # read from its glyphs already (columns.py), better than from this box
        mx = int(0.12 * (x2 - x1))
        col = img[max(0, y1) : min(H, y2), max(0, x1 - mx) : min(W, x2 + mx)]
        tiled = tile_vertical(col)
        # stacked upright glyphs are re-tiled; text written sideways is turned upright
        crops.append(tiled if tiled is not None else cv2.rotate(col, cv2.ROTATE_90_CLOCKWISE))
        meta.append((box, True))
    if not crops:
        return []
    mats = engine.rec(crops)
    index = engine.rec.index
    out = []
    frame_x += [None] * (len(meta) - len(frame_x))
    for (box, vertical), mat, fx in zip(meta, mats, frame_x, strict=True):
        f = ctc.fold_separators(mat, index)
        text = "".join(ch for ch in ctc.greedy(f, engine.rec.classes)[0] if ch.isascii() and ch.isalnum())
        if text:
            out.append(Piece(box, f, text.upper(), vertical, None if fx is None else _glyphs_end(f, *fx)))
    return out


def _glyphs_end(probs: Matrix, x0: float, step: float) -> int | None:
    """The x where a level line's read glyphs end: its last non-blank frame (a glyph's CTC
    peak lies inside the glyph) plus half the mean spacing of its glyphs' first frames."""
    best = probs.argmax(axis=1)
    frames = np.nonzero(best)[0]
    # a glyph's run of frames starts where the best class changes
    starts = [t for t in frames if t == 0 or best[t] != best[t - 1]]
    if len(starts) < 2:
        return None
    pitch = (starts[-1] - starts[0]) * step / (len(starts) - 1)
    return int(x0 + frames[-1] * step + pitch / 2)


#: A line tilted more than this (a door seen from the side, a gate camera looking down at an
#: angle) is compared with its neighbours in its own frame: the upright boxes of two tilted lines,
#: one above the other, overlap as much as two cuts of one line do.
TILTED_RAD = math.radians(10)


def _tilt(quad: Quad) -> float:
    """The angle of the quad's top edge, 0 for a level line or one tilted at most ``TILTED_RAD``
    (those keep the upright-box comparison), or beyond ±45° (not a line read left to right)."""
    d = quad[1] - quad[0]
    t = math.atan2(float(d[1]), float(d[0]))
    return t if TILTED_RAD < abs(t) <= math.pi / 4 else 0.0


class _Line:
    """A detector line, grown by the boxes that are cuts of the same line."""

    def __init__(self, quad: Quad) -> None:
        self.quad = quad
        self.tilt = _tilt(quad)
        self.box = bbox_of(quad)

    def absorb(self, quad: Quad) -> bool:
        """Take ``quad`` in if it is another cut of this line (a glyph in both): in the line's
        frame, they share most of their height and overlap along it."""
        t = self.tilt or _tilt(quad)
        a: tuple[float, float, float, float]
        b: tuple[float, float, float, float]
        if t == 0.0:
            a, b = self.box, bbox_of(quad)
        else:
            a, b = _frame_box(self.quad, t), _frame_box(quad, t)
        vo = min(a[3], b[3]) - max(a[1], b[1])
        if not (vo > 0.6 * min(a[3] - a[1], b[3] - b[1]) and min(a[2], b[2]) - max(a[0], b[0]) > 0):
            return False
        u = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
        if t == 0.0:
            self.box = (int(u[0]), int(u[1]), int(u[2]), int(u[3]))
            self.quad = quad_of(self.box)
        else:
            c, s = math.cos(t), math.sin(t)
            rot = np.array([[c, -s], [s, c]], np.float32)  # the line's frame back to the image's
            self.quad = (_quad_of_f(u) @ rot.T).astype(np.float32)
            self.box = bbox_of(self.quad)
            # joined in the tilted frame, the line is tilted now: read_pieces must not place the
            # glyphs' end (Piece.end) as if its crop were level
            self.tilt = t
        return True


def _frame_box(quad: Quad, t: float) -> tuple[float, float, float, float]:
    """The upright box round ``quad`` in a frame turned by ``t`` (a line of that tilt is level there)."""
    c, s = math.cos(t), math.sin(t)
    x = quad[:, 0] * c + quad[:, 1] * s
    y = -quad[:, 0] * s + quad[:, 1] * c
    return float(x.min()), float(y.min()), float(x.max()), float(y.max())


def _quad_of_f(b: tuple[float, float, float, float]) -> Quad:
    x1, y1, x2, y2 = b
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32)


def _merged_columns(cols: list[list[int]]) -> list[list[int]]:
    """Column fragments that share an x-range and nearly touch vertically, merged."""
    merged: list[list[int]] = []
    for c in sorted(cols, key=lambda c: c[1]):
        for m in merged:
            ov = min(m[2], c[2]) - max(m[0], c[0])
            if ov > 0.5 * min(m[2] - m[0], c[2] - c[0]) and c[1] - m[3] < 2.5 * (m[2] - m[0]):
                m[0], m[1], m[2], m[3] = min(m[0], c[0]), min(m[1], c[1]), max(m[2], c[2]), max(m[3], c[3])
                break
        else:
            merged.append(list(c))
    return merged


def tile_vertical(col: Image) -> Image | None:
    """Cut a column of stacked glyphs into rows and lay them side by side as one text line.

    The recogniser reads lines; a vertical code on a container front is a stack of upright
    glyphs, so rotating the crop would lay every glyph on its side. Rows are separated where the
    ink profile (Otsu, polarity from the border) drops to near zero.
    """
    g = cv2.cvtColor(col, cv2.COLOR_BGR2GRAY)
    _, bw = cv2.threshold(g, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    border = np.concatenate([bw[:, :2].ravel(), bw[:, -2:].ravel()])
    if border.mean() > 127:
        bw = 255 - bw
    w = col.shape[1]
    prof = (bw > 0).sum(axis=1)
    ink = prof > max(1, 0.08 * w)
    segs: list[list[int]] = []
    start = None
    for y, on in enumerate(ink):
        if on and start is None:
            start = y
        elif not on and start is not None:
            segs.append([start, y])
            start = None
    if start is not None:
        segs.append([start, len(ink)])
    segs = [s for s in segs if s[1] - s[0] >= max(3, 0.25 * w)]
    if len(segs) < 2:
        return None
    bg = np.median(np.concatenate([col[:, :2].reshape(-1, 3), col[:, -2:].reshape(-1, 3)]), axis=0)
    gh = max(s[1] - s[0] for s in segs)
    pad = max(2, int(0.15 * gh))
    gap = max(3, int(0.35 * w))
    canvas_w = sum(w for _ in segs) + gap * (len(segs) + 1)
    canvas = np.empty((gh + 2 * pad, canvas_w, 3), np.uint8)
    canvas[:] = bg.astype(np.uint8)
    x = gap
    for y1, y2 in segs:
        glyph = col[y1:y2]
        oy = pad + (gh - (y2 - y1)) // 2
        canvas[oy : oy + (y2 - y1), x : x + w] = glyph
        x += w + gap
    return canvas


def _follows(a: Piece, b: Piece) -> bool:
    """``b`` may continue ``a``'s number: next on the same line, the line below, or further down a column."""
    ax1, ay1, ax2, ay2 = a.box
    bx1, by1, bx2, by2 = b.box
    ha, hb = ay2 - ay1, by2 - by1
    wa = ax2 - ax1
    if a.vertical or b.vertical:
        # column continues below (check digit box under a vertical code)
        ov = min(ax2, bx2) - max(ax1, bx1)
        return ov > 0.3 * min(wa, bx2 - bx1) and 0 <= by1 - ay2 + 0.2 * wa < 2.5 * wa + 0.5 * hb
    vo = min(ay2, by2) - max(ay1, by1)
    # detector boxes are grown (DB unclip), so neighbours overlap (up to half a glyph); a door seen at an
    # angle tilts its line, so a third of the height in common is enough
    same_line = vo > 0.3 * min(ha, hb) and -0.5 * ha < bx1 - ax2 < 4 * ha
    # the line below must lie under this one (an owner code over its serial): a line below that
    # starts past this one's end is another marking (a door's weights beside a tilted number)
    next_line = -0.3 * ha <= by1 - ay2 < 1.5 * ha and min(ax2, bx2) - max(ax1, bx1) > 0 and by1 > ay1 + 0.5 * ha
    return same_line or next_line


def groups(pieces: list[Piece]) -> list[list[int]]:
    """Runs of one to three pieces, each following the one before, that hold about a number's
    worth of characters (indices into ``pieces``, in reading order)."""
    n = len(pieces)
    out: list[list[int]] = []
    for i in range(n):
        if len(pieces[i].text) > MAX_GROUP_CHARS:
            continue
        out.append([i])
        for j in range(n):
            if j != i and _follows(pieces[i], pieces[j]) and len(pieces[i].text + pieces[j].text) <= MAX_GROUP_CHARS:
                out.append([i, j])
                for k in range(n):
                    if (
                        k not in (i, j)
                        and _follows(pieces[j], pieces[k])
                        and len(pieces[i].text + pieces[j].text + pieces[k].text) <= MAX_GROUP_CHARS
                    ):
                        out.append([i, j, k])
    return [g for g in out if MIN_GROUP_CHARS <= sum(len(pieces[x].text) for x in g) <= MAX_GROUP_CHARS]


def joined(pieces: list[Piece], group: list[int]) -> tuple[Matrix, BBox]:
    """The group's matrices as one line (a blank seam between them) and the box round its pieces."""
    parts: list[Matrix] = []
    for x in group:
        parts += [pieces[x].probs, blank_rows(SEAM_FRAMES, pieces[x].probs.shape[1])]
    box = (
        min(pieces[x].box[0] for x in group),
        min(pieces[x].box[1] for x in group),
        max(pieces[x].box[2] for x in group),
        max(pieces[x].box[3] for x in group),
    )
    return np.concatenate(parts[:-1]), box
