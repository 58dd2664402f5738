"""ISO 6346 container numbers on real frames: doors, front walls, tanks, near or far.

Two sources of text, read together by :class:`ContainerReader`, cheapest first:

* **columns** of stacked glyphs (front walls, door posts; ``columns.py``): the glyphs are laid
  out as one line and windows of consecutive glyphs are decoded, so that a stray mark above
  or below the code does not spoil it;
* **lines** from the DB detector (doors, tank frames, split boxes ``TRHU`` ``259946`` ``[9]``;
  ``container_lines.py``): neighbouring lines in reading order are joined — their probability
  matrices concatenated with a blank frame between — and decoded against the ISO 6346 template.

What a matrix is worth as a number — read, corrected, check digit inferred or read from its box,
confirmed or not — is ``container_numbers.py``'s to judge. Here: the cascade, the rivalry
between readings of one marking (neither is confirmed), and the size/type code (22G1, 45G1 …)
nearest the number, attached when one is readable.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from . import ctc, iso6346
from .calibration import SHIPPED, Policy, second_reading
from .columns import Column, find_columns, glyph_frames, tile_column
from .container_lines import Piece, groups, joined, read_pieces
from .container_numbers import CONTAINER_10, Cand, Rules, decode_numbers, read_check_boxes
from .grammar import CONFIRMED, LOW_CONFIDENCE
from .imaging import BBox, Matrix, overlaps, unconstrained_logp
from .iso6346 import ContainerRead
from .onnx_ocr import OcrEngine, TextBox

__all__ = ["ContainerReader"]

#: Groups of lines joined and decoded together (one CTC search); bounds the joined matrices held.
GROUP_BATCH = 8
#: Detector scales (of the first pass's input side) tried in turn when a frame gave no number at all
#: (``ContainerReader._coarser``).
COARSER_SCALES = (0.6, 0.5)


@dataclass
class ContainerReader:
    engine: OcrEngine
    det_limit: int = 1280
    roi: BBox | None = None
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
        # 3. only if still nothing is confirmed, every other line;
        # 4. only if nothing at all was read, the detector at coarser scales (_coarser).
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
            pieces = read_pieces(self.engine, view, first, skip)
            reads = self._assemble(view, pieces, column_cands, short)
            if rest and not any(r.status == CONFIRMED for r in reads):
                pieces += read_pieces(self.engine, view, rest, skip)
                reads = self._assemble(view, pieces, column_cands, short)
            self.timings["rec_ms"] = (time.perf_counter() - t0) * 1000
            if not reads:
                t0 = time.perf_counter()
                reads = self._coarser(view, column_cands, short, skip)
                self.timings["coarse_ms"] = (time.perf_counter() - t0) * 1000
        out = []
        for r in reads:
            b = r.box
            if b is not None:
                b = (b[0] + ox, b[1] + oy, b[2] + ox, b[3] + oy)
            out.append(replace(r, box=b))
        return out

    def _coarser(
        self, img: np.ndarray, column_cands: list[Cand], short: list[Piece], skip: tuple[BBox, ...]
    ) -> list[ContainerRead]:
        """Nothing read at the detector's scale: look again at coarser ones.

        DB's response to a line depends on the scale it sees it at, and not monotonically: door
        lettering about 20 px high at the detector's input, beside the door bars, got no response
        at all at the first pass's scale (c0065, c0080) and a clean one at 0.6 and 0.5 of it (not
        at 0.55 or 0.65 for c0080: two scales, not one). A coarser pass can also miss what the
        first one finds, so these passes come in only when the frame gave nothing; the first
        that reads a number ends them. Their inputs hold 0.36 and 0.25 of the first pass's
        pixels: both together cost less than it.
        """
        h, w = img.shape[:2]
        side = max(h, w) * min(1.0, self.det_limit / max(h, w), math.sqrt(self.det_limit**2 * 9 // 16 / (h * w)))
        reads: list[ContainerRead] = []
        for scale in COARSER_SCALES:
            boxes = self.engine.det(img, limit=round(scale * side), tile=self.det_tile)
            boxes.sort(key=lambda b: -min(b.bbox[3] - b.bbox[1], b.bbox[2] - b.bbox[0]))
            reads = self._assemble(img, read_pieces(self.engine, img, boxes, skip), column_cands, short)
            if reads:
                break
        return reads

    # -- columns ------------------------------------------------------------------------------
    def _short_columns(self, img: np.ndarray, columns: list[Column]) -> list[Piece]:
        """Short stacks (4–6 glyphs) beside a vertical number: the size/type code (22G1)."""
        if not columns:
            return []
        mats = self.engine.rec([tile_column(img, c)[0] for c in columns])
        out: list[Piece] = []
        for c, m in zip(columns, mats, strict=True):
            f = ctc.fold_separators(m, self.engine.rec.index)
            text = "".join(ch for ch in ctc.greedy(f, self.engine.rec.classes)[0] if ch.isascii() and ch.isalnum())
            if 3 <= len(text) <= 6:
                out.append(Piece(c.box, f, text.upper(), True))
        return out

    def _read_columns(self, img: np.ndarray, columns: list[Column]) -> list[Cand]:
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
        jobs: list[tuple[Matrix, BBox]] = []
        owner: list[tuple[int, int, list[int]]] = []  # each window's column, first frame, glyph frames
        for ci, (col, (tile, starts), m) in enumerate(zip(columns, tiles, mats, strict=True)):
            f = ctc.fold_separators(m, index)
            frames = glyph_frames(tile, starts, len(f))
            n = len(col.glyphs)
            for a in range(min(4, n)):
                for b in range(a + 10, min(n, a + 14) + 1):
                    first = max(0, frames[a] - 1)
                    sub = f[first : frames[b] if b < n else len(f)]
                    box = (
                        min(g[0] for g in col.glyphs[a:b]),
                        col.glyphs[a][1],
                        max(g[2] for g in col.glyphs[a:b]),
                        col.glyphs[b - 1][3],
                    )
                    jobs.append((sub, box))
                    owner.append((ci, first, frames))
        best: list[tuple[Cand, int] | None] = [None] * len(columns)
        for k, ((ci, _first, _frames), c) in enumerate(zip(owner, self._decode_numbers(jobs), strict=True)):
            cur = best[ci]
            if c is not None and (cur is None or c.rank < cur[0].rank):
                best[ci] = (c, k)
        found = [b for b in best if b is not None]
        cands = [c for c, _k in found]
        # the glyph cell cuts through a boxed check digit (it reads as 0 or D): its box, under
        # the glyph of the serial's last digit, read alone
        below: dict[int, BBox] = {}
        for i, (c, k) in enumerate(found):
            ci, first, frames = owner[k]
            d = ctc.best_path(jobs[k][0], CONTAINER_10, index, folded=True) if c.read.check_digit_inferred else None
            if d is not None and d.text == c.read.number[:10]:
                end = first + d.spans[-1][1]  # the last digit's frame, in the column's matrix
                glyph = max((g for g in range(len(columns[ci].glyphs)) if frames[g] <= end), default=None)
                if glyph is not None:
                    below[i] = columns[ci].glyphs[glyph]
        return read_check_boxes(self.engine, img, cands, {}, self._rules(), below=below) if below else cands

    # -- assembling numbers from pieces ------------------------------------------------------
    def _decode_numbers(self, jobs: list[tuple[Matrix, BBox]]) -> list[Cand | None]:
        return decode_numbers(jobs, self.engine.rec.index, self._rules())

    def _rules(self) -> Rules:
        return Rules(self.policy, self.max_cost, self.min_char_conf)

    def _assemble(
        self, img: np.ndarray, pieces: list[Piece], extra: list[Cand], size_pieces: list[Piece]
    ) -> list[ContainerRead]:
        cands: list[Cand] = list(extra)
        found = groups(pieces)
        tails: dict[int, BBox] = {}  # candidate -> its serial line's box
        # a joined matrix holds all 6625 classes (~2 MB for three lines): decoded a batch at a time
        for b in range(0, len(found), GROUP_BATCH):
            batch = found[b : b + GROUP_BATCH]
            for g, c in zip(batch, self._decode_numbers([joined(pieces, g) for g in batch]), strict=True):
                if c is not None:
                    tail = pieces[g[-1]]
                    if c.read.check_digit_inferred and not tail.vertical:
                        x1, y1, x2, y2 = tail.box
                        # the boxed digit may lie inside the serial's grown box, dropped by the recogniser
                        tails[len(cands)] = (x1, y1, x2 if tail.end is None else min(x2, tail.end), y2)
                    cands.append(c)
        cands = read_check_boxes(self.engine, img, cands, tails, self._rules())
        cands.sort(key=lambda c: c.rank)
        out: list[ContainerRead] = []
        for c in cands:
            r = c.read
            same = [o for o in out if o.box and r.box and overlaps(o.box, r.box)]
            if any(o.number == r.number for o in out):
                if second_reading(r):  # another crop of the box shows another valid number: held
                    out = [replace(o, status=LOW_CONFIDENCE, doubt="slip") if o.number == r.number else o for o in out]
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

    def _size_type(self, pieces: list[Piece], near: BBox | None) -> str | None:
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
