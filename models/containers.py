"""ISO 6346 container numbers on real frames: doors, front walls, tanks, near or far.

Two sources of text, read together:

* **lines** from the DB detector (doors, tank frames, split boxes ``TRHU`` ``259946`` ``[9]``):
  neighbouring lines in reading order are joined — their probability matrices concatenated
  with a blank frame between — and decoded against the ISO 6346 template;
* **columns** of stacked glyphs (front walls, door posts; ``columns.py``): the glyphs are laid
  out as one line and windows of consecutive glyphs are decoded, so that a stray mark above
  or below the code does not spoil it.

The check digit decides what is a number: a valid read is kept; an invalid one only if a
single substitution drawn from the recogniser's own alternatives makes it valid
(``corrected``); owner + serial without a readable check digit gets a computed one
(``check_digit_inferred``). Only the first kind can be ``confirmed`` — and only when every
character clears the threshold calibrated on the development set: the check digit alone is a
1-in-10 guard, so a corrected or inferred number always goes to an officer (``low_confidence``).
The size/type code (22G1, 45G1 …) nearest the number is attached when one is readable.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from . import calibration, ctc, grammar, iso6346
from .calibration import SHIPPED, Policy
from .columns import Column, find_columns, tile_column
from .grammar import CONFIRMED, LOW_CONFIDENCE
from .imaging import unconstrained_logp
from .iso6346 import ContainerRead
from .onnx_ocr import REC_STRIDE, OcrEngine, TextBox, crop_quad

__all__ = ["CONTAINER_10", "CONTAINER_11", "ContainerReader"]

CONTAINER_11: grammar.Template = (*(grammar.LETTERS,) * 3, "UJZ", *(grammar.DIGITS,) * 7)
CONTAINER_10: grammar.Template = CONTAINER_11[:10]
#: Groups of lines joined and decoded together (one CTC search); bounds the joined matrices held.
GROUP_BATCH = 8
#: Width (in line heights) of the region right of a serial where its boxed check digit is read:
#: the box is about one glyph wide and set about one glyph to the right (ISO 6346 Annex F).
CHECK_BOX_WIDTH = 1.8
#: A boxed digit read below this probability does not count as read.
CHECK_BOX_MIN_CONF = 0.5


@dataclass(frozen=True, slots=True)
class _Cand:
    rank: tuple[int, float]  # (0 read / 1 corrected / 2 check digit inferred, grammar cost)
    read: ContainerRead


@dataclass
class _Piece:
    """A recognised text line: its box in the frame and its (separator-folded) CTC matrix."""

    box: tuple[int, int, int, int]
    probs: np.ndarray
    text: str
    vertical: bool = False


def _bbox(q: np.ndarray) -> tuple[int, int, int, int]:
    return int(q[:, 0].min()), int(q[:, 1].min()), math.ceil(q[:, 0].max()), math.ceil(q[:, 1].max())


def _rectify(img: np.ndarray, quad: np.ndarray) -> np.ndarray:
    h = np.linalg.norm(quad[0] - quad[3])
    # A little margin: PP-OCR rec is trained on crops with some background around the glyphs.
    c = quad.mean(0)
    grow = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32) * np.float32(0.08 * h)
    u = (quad[1] - quad[0]) / max(1e-6, np.linalg.norm(quad[1] - quad[0]))
    v = np.array([-u[1], u[0]], np.float32)
    q = quad + grow[:, :1] * u + grow[:, 1:] * v
    del c
    return crop_quad(img, q)


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return small > 0 and ix * iy > 0.5 * small


def _blank_row(n: int, width: int) -> np.ndarray:
    r = np.zeros((n, width), np.float32)
    r[:, 0] = 1.0
    return r


def _tile_vertical(col: np.ndarray) -> np.ndarray | None:
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


@dataclass
class ContainerReader:
    engine: OcrEngine
    det_limit: int = 1280
    roi: tuple[int, int, int, int] | None = None
    max_cost: float = 8.0
    min_char_conf: float = 0.2
    #: When a read is confirmed (``calibration.py``: fitted on held-out folds of the dev set).
    policy: Policy = SHIPPED
    #: Side of the image the glyph-column finder works at (its cost grows with the area).
    column_side: int = 1280
    #: Run the detector in overlapping strips this wide (lower peak memory, ~15 % more detector
    #: time at 1280, a slightly different map near the seams). Off: the container eval peaks
    #: under 600 MB without it (docs/recognition.md); until now the setting was never applied.
    det_tile: int | None = None
    #: Detector lines read before the rest (tallest first): enough for a door's number.
    first_lines: int = 6
    timings: dict[str, float] = field(default_factory=dict)

    def read(self, img: np.ndarray) -> list[ContainerRead]:
        ox = oy = 0
        view = img
        if self.roi is not None:
            x1, y1, x2, y2 = self.roi
            view, ox, oy = img[y1:y2, x1:x2], x1, y1
        h, w = view.shape[:2]
        self.timings.clear()
        # Cascade, cheapest evidence first (a recogniser pass costs ~15 ms, the detector 100-200):
        # 1. columns of glyphs (front walls) — a valid number there needs no detector;
        # 2. the detector's tallest lines (the number is the largest marking on a door);
        # 3. only if still nothing is confirmed, every other line.
        t0 = time.perf_counter()
        columns = find_columns(view, work_side=self.column_side, min_glyphs=4, limit=6)
        long_cols = [c for c in columns if c.found >= 7]
        column_cands = self._read_columns(view, long_cols)
        short = self._short_columns(view, [c for c in columns if c.found <= 6][:2])
        self.timings["columns_ms"] = (time.perf_counter() - t0) * 1000
        reads = self._assemble(view, [], column_cands, short)
        # a column whose own check digit validates is the front's number: the detector would
        # only add the wall's other markings
        if not any(c.rank[0] == 0 for c in column_cands):
            t0 = time.perf_counter()
            if max(h, w) <= 700 and (w / h >= 3 or h / w >= 3):
                boxes = [TextBox(np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32), 1.0)]
            else:
                # a 4:3 or portrait photo costs no more than a 16:9 frame: peak memory follows the area
                boxes = self.engine.det(
                    view, limit=self.det_limit, max_area=self.det_limit**2 * 9 // 16, tile=self.det_tile
                )
            self.timings["det_ms"] = (time.perf_counter() - t0) * 1000
            t0 = time.perf_counter()
            # glyph size of a line = its box's shorter side (a vertical line's width)
            boxes.sort(key=lambda b: -min(b.bbox[3] - b.bbox[1], b.bbox[2] - b.bbox[0]))
            skip = tuple(c.box for c in long_cols)
            first, rest = boxes[: self.first_lines], boxes[self.first_lines :]
            pieces = self._pieces(view, first, skip)
            reads = self._assemble(view, pieces, column_cands, short)
            if rest and not any(r.status == CONFIRMED for r in reads):
                pieces += self._pieces(view, rest, skip)
                reads = self._assemble(view, pieces, column_cands, short)
            self.timings["rec_ms"] = (time.perf_counter() - t0) * 1000
        out = []
        for r in reads:
            b = r.box
            if b is not None:
                b = (b[0] + ox, b[1] + oy, b[2] + ox, b[3] + oy)
            out.append(replace(r, box=b))
        return out

    # -- columns ------------------------------------------------------------------------------
    def _short_columns(self, img: np.ndarray, columns: list[Column]) -> list[_Piece]:
        """Short stacks (4–6 glyphs) beside a vertical number: the size/type code (22G1)."""
        if not columns:
            return []
        mats = self.engine.rec([tile_column(img, c)[0] for c in columns])
        out: list[_Piece] = []
        for c, m in zip(columns, mats, strict=True):
            f = ctc.fold_separators(m, self.engine.rec.index)
            text = "".join(ch for ch in ctc.greedy(f, self.engine.rec.classes)[0] if ch.isascii() and ch.isalnum())
            if 3 <= len(text) <= 6:
                out.append(_Piece(c.box, f, text.upper(), True))
        return out

    def _read_columns(self, img: np.ndarray, columns: list[Column]) -> list[_Cand]:
        """Decode windows of consecutive glyphs of each column against the 11-character template.

        The glyph finder may add a stray mark above or below the code (a handle, a logo) or take
        the size/type code's column for a continuation; every window of 10–13 glyphs starting in
        the first three is decoded and the best-explained window wins.
        """
        if not columns:
            return []
        tiles = [tile_column(img, c) for c in columns]
        mats = self.engine.rec([t for t, _ in tiles])
        index = self.engine.rec.index
        jobs: list[tuple[np.ndarray, tuple[int, int, int, int]]] = []
        owner: list[int] = []  # the column of each window
        for ci, (col, (_tile, starts), m) in enumerate(zip(columns, tiles, mats, strict=True)):
            f = ctc.fold_separators(m, index)
            frames = [s // REC_STRIDE for s in starts] + [len(f)]
            n = len(col.glyphs)
            for a in range(min(4, n)):
                for b in range(a + 10, min(n, a + 14) + 1):
                    sub = f[max(0, frames[a] - 1) : frames[b] if b < n else len(f)]
                    box = (
                        min(g[0] for g in col.glyphs[a:b]),
                        col.glyphs[a][1],
                        max(g[2] for g in col.glyphs[a:b]),
                        col.glyphs[b - 1][3],
                    )
                    jobs.append((sub, box))
                    owner.append(ci)
        best: list[_Cand | None] = [None] * len(columns)
        for ci, c in zip(owner, self._decode_numbers(jobs), strict=True):
            cur = best[ci]
            if c is not None and (cur is None or c.rank < cur.rank):
                best[ci] = c
        return [c for c in best if c is not None]

    # -- pieces -------------------------------------------------------------------------------
    def _pieces(
        self, img: np.ndarray, boxes: list[TextBox], skip: tuple[tuple[int, int, int, int], ...] = ()
    ) -> list[_Piece]:
        horiz: list[tuple[tuple[int, int, int, int], np.ndarray]] = []
        cols: list[list[int]] = []
        lines: list[tuple[list[int], np.ndarray | None]] = []
        for b in boxes:
            x1, y1, x2, y2 = _bbox(b.quad)
            bw, bh = x2 - x1, y2 - y1
            if bh >= 2.0 * bw and bh >= 30:
                cols.append([x1, y1, x2, y2])
                continue
            # the detector sometimes cuts one line into overlapping boxes (a glyph in both):
            # reading their union avoids a doubled character in the joined number
            for i, (m, _) in enumerate(lines):
                vo = min(m[3], y2) - max(m[1], y1)
                if vo > 0.6 * min(m[3] - m[1], bh) and min(m[2], x2) - max(m[0], x1) > 0:
                    m[:] = [min(m[0], x1), min(m[1], y1), max(m[2], x2), max(m[3], y2)]
                    lines[i] = (m, None)
                    break
            else:
                lines.append(([x1, y1, x2, y2], b.quad))
        for m, quad in lines:
            if quad is None:
                quad = np.array([[m[0], m[1]], [m[2], m[1]], [m[2], m[3]], [m[0], m[3]]], np.float32)
            horiz.append(((m[0], m[1], m[2], m[3]), _rectify(img, quad)))
        # merge column fragments that share an x-range and nearly touch vertically
        cols.sort(key=lambda c: c[1])
        merged: list[list[int]] = []
        for c in cols:
            for m in merged:
                ov = min(m[2], c[2]) - max(m[0], c[0])
                if ov > 0.5 * min(m[2] - m[0], c[2] - c[0]) and c[1] - m[3] < 2.5 * (m[2] - m[0]):
                    m[0], m[1], m[2], m[3] = min(m[0], c[0]), min(m[1], c[1]), max(m[2], c[2]), max(m[3], c[3])
                    break
            else:
                merged.append(list(c))
        crops: list[np.ndarray] = []
        meta: list[tuple[tuple[int, int, int, int], bool]] = []
        for box, crop in horiz:
            crops.append(crop)
            meta.append((box, False))
        H, W = img.shape[:2]
        for x1, y1, x2, y2 in merged:
            box = (x1, y1, x2, y2)
            if any(_overlaps(box, c) for c in skip):
                continue  # read from its glyphs already (columns.py), better than from this box
            mx = int(0.12 * (x2 - x1))
            col = img[max(0, y1) : min(H, y2), max(0, x1 - mx) : min(W, x2 + mx)]
            tiled = _tile_vertical(col)
            # stacked upright glyphs are re-tiled; text written sideways is turned upright
            crops.append(tiled if tiled is not None else cv2.rotate(col, cv2.ROTATE_90_CLOCKWISE))
            meta.append((box, True))
        if not crops:
            return []
        mats = self.engine.rec(crops)
        index = self.engine.rec.index
        out = []
        for (box, vertical), mat in zip(meta, mats, strict=True):
            f = ctc.fold_separators(mat, index)
            text = "".join(ch for ch in ctc.greedy(f, self.engine.rec.classes)[0] if ch.isascii() and ch.isalnum())
            if text:
                out.append(_Piece(box, f, text.upper(), vertical))
        return out

    # -- assembling numbers from pieces ------------------------------------------------------
    def _groups(self, pieces: list[_Piece]) -> list[list[int]]:
        n = len(pieces)

        def follows(a: _Piece, b: _Piece) -> bool:
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
            next_line = (
                -0.3 * ha <= by1 - ay2 < 1.5 * ha and min(ax2, bx2) - max(ax1, bx1) > -ha and by1 > ay1 + 0.5 * ha
            )
            return same_line or next_line

        groups: list[list[int]] = []
        for i in range(n):
            if len(pieces[i].text) > 14:
                continue
            groups.append([i])
            for j in range(n):
                if j != i and follows(pieces[i], pieces[j]) and len(pieces[i].text + pieces[j].text) <= 14:
                    groups.append([i, j])
                    for k in range(n):
                        if (
                            k not in (i, j)
                            and follows(pieces[j], pieces[k])
                            and len(pieces[i].text + pieces[j].text + pieces[k].text) <= 14
                        ):
                            groups.append([i, j, k])
        return [g for g in groups if 9 <= sum(len(pieces[x].text) for x in g) <= 14]

    def _decode_numbers(self, jobs: list[tuple[np.ndarray, tuple[int, int, int, int]]]) -> list[_Cand | None]:
        """:meth:`_decode_number` of each (matrix, box), every matrix through both templates in one
        search (``ctc.search``: the same paths as one by one, a fraction of the time)."""
        items = [(m, t) for m, _box in jobs for t in (CONTAINER_11, CONTAINER_10)]
        found = ctc.search(items, self.engine.rec.index, folded=True)
        return [self._decode_number(m, box, found[2 * i], found[2 * i + 1]) for i, (m, box) in enumerate(jobs)]

    def _decode_number(
        self, mat: np.ndarray, box: tuple[int, int, int, int], d11: ctc.Decoded | None, d10: ctc.Decoded | None
    ) -> _Cand | None:
        """A container number from one (joined) matrix and its best paths through the 11- and
        10-character templates: read, corrected or inferred, with status."""
        free = unconstrained_logp(mat)
        if d11 is not None and free - d11.logp <= self.max_cost and d11.confidence >= self.min_char_conf:
            cost = free - d11.logp
            conf = _conf(d11, cost)
            alts = [(*a,) for a in d11.alternatives]
            if iso6346.is_valid(d11.text) and iso6346.remainder(d11.text[:10]) == 10:
                # valid only through the 10 -> 0 fold: one of the recogniser's own alternatives
                # that validates without it is as likely (IEMU… for TEMU0524620): an officer
                # looks. Without one, the read is judged as any other, held to every character
                # sure (calibration: the fold lets single substitutions through)
                other = iso6346.correct(d11.text, alts, max_changes=1, avoid_ten=True)
                if other is not None:
                    return _Cand(
                        (1, cost),
                        ContainerRead(
                            other,
                            True,
                            corrected=True,
                            confidence=round(conf * 0.8, 4),
                            box=box,
                            char_confidences=d11.char_conf,
                            cost=round(cost, 3),
                            doubt="corrected",
                        ),
                    )
            if iso6346.is_valid(d11.text):
                read = ContainerRead(
                    d11.text, True, confidence=conf, box=box, char_confidences=d11.char_conf, cost=round(cost, 3)
                )
                return _Cand((0, cost), calibration.decide(read, self.policy))
            fixed = iso6346.correct(d11.text, alts, max_changes=1)
            if fixed is not None:
                return _Cand(
                    (1, cost),
                    ContainerRead(
                        fixed,
                        True,
                        corrected=True,
                        confidence=round(conf * 0.8, 4),
                        box=box,
                        char_confidences=d11.char_conf,
                        cost=round(cost, 3),
                        doubt="corrected",
                    ),
                )
        if d10 is not None and free - d10.logp <= self.max_cost and d10.confidence >= self.min_char_conf:
            cost = free - d10.logp
            num = d10.text + str(iso6346.check_digit(d10.text))
            return _Cand(
                (2, cost),
                ContainerRead(
                    num,
                    True,
                    check_digit_inferred=True,
                    confidence=round(_conf(d10, cost) * 0.7, 4),
                    box=box,
                    char_confidences=d10.char_conf,
                    cost=round(cost, 3),
                    doubt="inferred",
                ),
            )
        return None

    def _assemble(
        self, img: np.ndarray, pieces: list[_Piece], extra: list[_Cand], size_pieces: list[_Piece]
    ) -> list[ContainerRead]:
        cands: list[_Cand] = list(extra)
        groups = self._groups(pieces)
        tails: dict[int, tuple[int, int, int, int]] = {}  # candidate -> its serial line's box
        # a joined matrix holds all 6625 classes (~2 MB for three lines): decoded a batch at a time
        for b in range(0, len(groups), GROUP_BATCH):
            jobs: list[tuple[np.ndarray, tuple[int, int, int, int]]] = []
            for g in groups[b : b + GROUP_BATCH]:
                parts = []
                for x in g:
                    parts += [pieces[x].probs, _blank_row(2, pieces[x].probs.shape[1])]
                box = (
                    min(pieces[x].box[0] for x in g),
                    min(pieces[x].box[1] for x in g),
                    max(pieces[x].box[2] for x in g),
                    max(pieces[x].box[3] for x in g),
                )
                jobs.append((np.concatenate(parts[:-1]), box))
            for g, c in zip(groups[b : b + GROUP_BATCH], self._decode_numbers(jobs), strict=True):
                if c is not None:
                    if c.read.check_digit_inferred and not pieces[g[-1]].vertical:
                        tails[len(cands)] = pieces[g[-1]].box
                    cands.append(c)
        cands = self._read_check_boxes(img, cands, tails)
        cands.sort(key=lambda c: c.rank)
        out: list[ContainerRead] = []
        for c in cands:
            r = c.read
            same = [o for o in out if o.box and r.box and _overlaps(o.box, r.box)]
            if any(o.number == r.number for o in out):
                continue
            if same and c.rank[1] > self.policy.container_max_cost:
                continue  # lines joined into a template they do not fit (TGHU + 45G1 + 788): no reading
            if same:
                # another reading of the same marking disagrees: neither is confirmed
                out = [replace(o, status=LOW_CONFIDENCE, doubt="rival") if o in same else o for o in out]
                continue
            out.append(r)
        iso = self._size_type(pieces + size_pieces, out[0].box if out else None)
        if out and iso:
            out[0] = replace(out[0], iso_type=iso)
        return out

    def _read_check_boxes(
        self, img: np.ndarray, cands: list[_Cand], tails: dict[int, tuple[int, int, int, int]]
    ) -> list[_Cand]:
        """Owner code and serial read without their check digit: read the boxed digit on its own.

        Painted numbers put the check digit in a box a glyph to the right of the serial; the
        detector often leaves the box out of the line, and the number is then only *inferred*.
        The region right of the serial's line is read alone against a one-digit template: a digit
        read there that equals the computed one is the check digit *read* — an independent check
        (a misread owner code or serial matches it one time in ten) — and the number is then
        judged like any other read number. A different digit, or none, leaves it inferred.
        """
        if not tails:
            return cands
        H, W = img.shape[:2]
        jobs: list[tuple[int, np.ndarray]] = []
        for i, (_x1, y1, x2, y2) in tails.items():
            h = y2 - y1
            xa, xb = x2, min(W, x2 + int(CHECK_BOX_WIDTH * h))
            ya, yb = max(0, int(y1 - 0.15 * h)), min(H, int(y2 + 0.15 * h))
            if xb - xa >= 0.6 * h and h >= 8:
                region = img[ya:yb, xa:xb]
                jobs.append((i, region))
                inside = _box_interior(region, h)
                if inside is not None:  # the digit without its box, which reads as 口, 目 or 1
                    jobs.append((i, inside))
        if not jobs:
            return cands
        mats = self.engine.rec([c for _i, c in jobs])
        folded = [ctc.fold_separators(m, self.engine.rec.index) for m in mats]
        # a boxed 8 often reads as B (the box's sides close the glyph): B is read as the digit
        found = ctc.search([(f, (grammar.DIGITS + "B",)) for f in folded], self.engine.rec.index, folded=True)
        out = list(cands)
        for (i, _crop), f, d in zip(jobs, folded, found, strict=True):
            c = cands[i]
            r = c.read
            if not out[i].read.check_digit_inferred:
                continue  # read already (from the box with its outline, or without)
            digit = None if d is None else d.text.replace("B", "8")
            if d is None or digit != r.number[10] or d.confidence < CHECK_BOX_MIN_CONF:
                continue
            if unconstrained_logp(f) - d.logp > self.policy.container_max_cost:
                continue  # more than one glyph there (a logo, the next word): not the boxed digit
            chars = (*r.char_confidences[:10], d.confidence)
            conf = round(min(chars) * math.exp(-c.rank[1] / 4), 4)
            read = replace(r, check_digit_inferred=False, confidence=conf, char_confidences=chars, doubt="")
            out[i] = _Cand((0, c.rank[1]), calibration.decide(read, self.policy))
        return out

    def _size_type(self, pieces: list[_Piece], near: tuple[int, int, int, int] | None) -> str | None:
        if near is None:
            return None
        best: tuple[float, str] | None = None
        cx, cy = (near[0] + near[2]) / 2, (near[1] + near[3]) / 2
        for p in pieces:
            if not 3 <= len(p.text) <= 6:
                continue
            d = ctc.best_path(p.probs, iso6346.SIZE_TYPE_TEMPLATE, self.engine.rec.index, folded=True)
            if d is None or unconstrained_logp(p.probs) - d.logp > 2.0 or not iso6346.size_type_valid(d.text):
                continue
            dist = math.hypot((p.box[0] + p.box[2]) / 2 - cx, (p.box[1] + p.box[3]) / 2 - cy)
            if best is None or dist < best[0]:
                best = (dist, d.text)
        return best[1] if best else None


def _box_interior(region: np.ndarray, line_h: int) -> np.ndarray | None:
    """The inside of the box painted round a check digit in ``region``, or None if no box-shaped
    outline is found (a closed contour about a line high and at most as wide, little ink inside
    its outline compared with its area)."""
    g = cv2.cvtColor(region, cv2.COLOR_BGR2GRAY)
    edges = cv2.Canny(g, 50, 150)
    contours, _ = cv2.findContours(edges, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    best: tuple[int, tuple[int, int, int, int]] | None = None
    for c in contours:
        x, y, w, h = cv2.boundingRect(c)
        if (
            0.75 * line_h <= h <= 1.6 * line_h
            and 0.45 * line_h <= w <= 1.3 * line_h
            and (best is None or w * h > best[0])
        ):
            best = (w * h, (x, y, w, h))
    if best is None:
        return None
    x, y, w, h = best[1]
    mx, my = max(2, w // 6), max(2, h // 8)
    inside = region[y + my : y + h - my, x + mx : x + w - mx]
    return inside if inside.shape[0] >= 6 and inside.shape[1] >= 4 else None


def _conf(d: ctc.Decoded, cost: float) -> float:
    return round(d.confidence * math.exp(-cost / 4), 4)
