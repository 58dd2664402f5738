"""Licence plates: find candidate plate regions, read them, decode against the plate grammars.

Candidates come from three independent sources, so that one failing does not lose the plate
(where they are on the frame: ``plate_regions.py``):

* **text boxes** of the DB detector on the frame (or the camera's region of interest) scaled to
  at most ``det_limit`` pixels; boxes split by the separator dot are re-joined;
* **plate colour**: blue, yellow and new-energy green plates are saturated rectangles of a plate's
  aspect. A colour mask at low resolution proposes them even when they are too small in a
  1080p frame for the detector at ``det_limit`` (trucks seen from a gantry);
* **two-row plates** (yellow truck and trailer rear plates, motorcycles: ``沪·A`` above
  ``N9241``): the upper row is small and often missed or read alone. Every line that reads like
  the lower row of such a plate (4–6 letters and digits, no Hanzi) is paired with the text box
  just above it, or with the band where the upper row must be, and the two rows' probability
  matrices are joined (upper first, a blank frame between) and decoded as one plate. A
  colour region with a two-row aspect is split into its rows the same way.

A frame much smaller than the detector's input (a D1 camera, a small photo) in which no plate
was read well is looked at once more, enlarged: the detector misses plates a dozen pixels high at
their own size. What only that look finds is held for an officer (``doubt="upscaled"``).

Each candidate's matrix is decoded against every plate template (``ctc.best_path``); a
candidate is a plate when a grammar path explains it almost as well as the unconstrained best
path. Its status is ``confirmed`` only if every character, and the province Hanzi in particular,
is above the thresholds calibrated on the development set (``docs/recognition.md``); otherwise
``low_confidence``: a doubtful province lowers confidence instead of being guessed.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from . import calibration, ctc, grammar, plate_look, plate_province, plate_vote
from .calibration import SHIPPED, Policy
from .grammar import CONFIRMED, LETTERS, LOW_CONFIDENCE, PlateRead
from .imaging import (
    BBox,
    Image,
    Matrix,
    bbox_of,
    blank_rows,
    crop_box,
    deslant,
    overlaps,
    rectify,
    slant_deg,
    unconstrained_logp,
)
from .onnx_ocr import REC_HEIGHT, REC_STRIDE, OcrEngine
from .plate_regions import colour_regions, line_candidates, lower_band, union, upper_bands, upper_rows

__all__ = ["PlateReader"]

#: Glyph height over glyph pitch on a mainland plate (GA 36: 90 mm tall, 57 mm apart).
GLYPH_PER_PITCH = 1.6
#: Glyph height over the height of the band cut for a two-row plate's upper row.
UPPER_ROW_GLYPH = 0.65
#: A line slanted at least this much is also read deslanted (``imaging.deslant``) and confirmed
#: only when both views read it the same: at 10° a rotated upright stroke leans by a fifth of its
#: height, about a third of a plate glyph's width.
SLANT_MIN_DEG = 10.0
#: A frame at least this much smaller than the detector's input (a D1 camera's 720 × 576, a small
#: photo) in which no plate was read well (``plate_vote.good``) is looked at once more, enlarged
#: by up to ``UPSCALE_MAX``: the detector misses text only a dozen pixels high at its own size.
UPSCALE_MIN = 1.25
UPSCALE_MAX = 1.6
#: A confirmed Hong Kong or Macau mark is read again in framings this many box heights wider on
#: each side (``_check_marks``).
MARK_WIDEN = (0.6, 1.0)


@dataclass(slots=True)
class _Cand:
    box: BBox
    parts: tuple[int, ...]  # indices into the crop list: one line, or (upper row, lower row)
    source: str
    group: int = -1  # framings of one two-row plate: only the best-explained one is kept


def _is_lower_row(text: str) -> bool:
    t = "".join(c for c in text if c.isascii() and c.isalnum())
    return 4 <= len(t) <= 6 and len(t) >= len(text.replace("·", "").replace(" ", "")) - 1


@dataclass
class PlateReader:
    engine: OcrEngine
    det_limit: int = 960
    roi: tuple[int, int, int, int] | None = None  # x1, y1, x2, y2 of the fixed camera's plate zone
    max_grammar_cost: float = 4.0
    min_char_conf: float = 0.25
    #: When a read is confirmed (``calibration.py``: fitted on held-out folds of the dev set).
    policy: Policy = SHIPPED
    colour_proposals: int = 4
    kinds: tuple[str, ...] = ("cn", "cn_crossborder", "hk", "macau")
    timings: dict[str, float] = field(default_factory=dict)

    # -- public -----------------------------------------------------------------------------------
    def read(self, img: Image) -> list[PlateRead]:
        self.timings.clear()
        h, w = img.shape[:2]
        if max(h, w) <= 400 and 1.2 <= w / h <= 6:
            got = self._read_tight(img)
            if got:
                return got
        ox = oy = 0
        view = img
        if self.roi is not None:
            x1, y1, x2, y2 = self.roi
            view, ox, oy = img[y1:y2, x1:x2], x1, y1
        limit = self.det_limit
        if self.roi is not None:
            # a plate zone is read at two thirds of its size (more detail than the whole frame at
            # det_limit, for a fraction of the detector's time: it grows with the input's area)
            limit = min(limit, max(640, 2 * max(view.shape[:2]) // 3))
        reads = self._read_view(view, limit, (ox, oy))
        up = min(UPSCALE_MAX, limit / max(view.shape[:2]))
        if self.roi is None and up >= UPSCALE_MIN and not any(plate_vote.good(r) for r in reads):
            # (a plate zone is a fixed camera's: its size is the site's choice, never enlarged)
            # What only the enlarged frame shows is never confirmed, alone or by agreeing frames
            # (``doubt="upscaled"``, every read of it): such plates are small, and on the public
            # photographs outside the development set one in five of the reads it would have
            # confirmed was wrong (docs/recognition.md). Its reads replace the first look's if
            # it found a plate it would have confirmed, or the first look found none.
            first, t0 = dict(self.timings), time.perf_counter()
            again = self._read_view(view, limit, (ox, oy), upscale=up)
            self.timings = {**first, "upscaled_ms": (time.perf_counter() - t0) * 1000}
            if any(plate_vote.good(r) for r in again) or not reads:
                reads = [replace(r, status=LOW_CONFIDENCE, doubt="upscaled") for r in again]
        return reads

    def _read_view(self, view: Image, limit: int, off: tuple[int, int], *, upscale: float = 1.0) -> list[PlateRead]:
        """The plates of ``view`` (at ``off`` in the frame), found by the detector at ``limit``
        (``upscale``: how much it may enlarge a smaller view)."""
        ox, oy = off
        t0 = time.perf_counter()
        boxes = self.engine.det(view, limit=limit, upscale=upscale)
        self.timings["det_ms"] = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        # Cascade, cheapest evidence first (every crop is a recogniser pass, ~15 ms on 2 cores):
        # 1. the detector's plate-shaped lines; 2. the upper row of lines that read like the lower
        # row of a two-row plate; 3. only if nothing was confirmed, plate-coloured regions.
        lines = line_candidates(boxes, view.shape[0])
        crops: list[Image] = [rectify(view, q) for q in lines]
        looks = [plate_look.look(c) for c in crops]
        cands = [_Cand(bbox_of(q), (i,), "det") for i, q in enumerate(lines)]
        mats = self.engine.rec(crops)
        heights = [c.shape[0] for c in crops]
        extra: list[Image] = []  # more crops, read in one batch after the lines (index base + k)
        base = len(mats)
        slanted: list[_Cand] = []  # the second view of each slanted line
        for i, q in enumerate(lines):
            if abs(slant_deg(q)) >= SLANT_MIN_DEG:
                extra.append(deslant(view, q))
                looks.append(plate_look.look(extra[-1]))
                slanted.append(_Cand(bbox_of(q), (base + len(extra) - 1,), "deslant"))
            line_text = ctc.greedy(mats[i], self.engine.rec.classes)[0]
            if not _is_lower_row(line_text):
                continue
            b = bbox_of(q)
            for upper in upper_rows(b, boxes):
                extra.append(crop_box(view, upper))
                looks.append(None)  # an upper row is judged with its lower row (the last part)
                cands.append(_Cand(union(b, upper), (base + len(extra) - 1, i), "double", group=i))
            if b[2] - b[0] < 2.8 * (b[3] - b[1]) and line_text.isascii():
                # the detector framed a whole two-row plate as one line (a Hong Kong "DZ / 7333"
                # under a truck's 粤Z plate): its rows are inside its own box, and the read is its
                # lower row's alone (a read with a province Hanzi is a single-row plate)
                extra.append(lower_band(view, b))
                looks.append(looks[i])  # the whole plate's look
                lower = base + len(extra) - 1
                for up in upper_bands(b):
                    extra.append(crop_box(view, up))
                    looks.append(None)
                    cands.append(_Cand(b, (base + len(extra) - 1, lower), "double", group=i))
        if extra:
            mats += self.engine.rec(extra)
            heights += [c.shape[0] for c in extra]
        reads = self._decode_candidates(cands, mats, heights, (ox, oy), looks)
        if not any(plate_vote.good(r) for r in reads):
            reads += self._read_colour_regions(view, [bbox_of(q) for q in lines], (ox, oy))
        if slanted:
            # every read over a slanted line (its two-row joins, a colour region) needs both views
            at = [(c.box[0] + ox, c.box[1] + oy, c.box[2] + ox, c.box[3] + oy) for c in slanted]
            deslanted = self._decode_candidates(slanted, mats, heights, (ox, oy), looks)
            reads = plate_vote.two_views(reads, deslanted, at, self.policy)
        reads = self._check_framings(view, reads, (ox, oy))
        reads = self._check_marks(view, reads, (ox, oy))
        reads = plate_province.check_provinces(self.engine.rec, view, reads, (ox, oy), self.policy)
        self.timings["rec_ms"] = (time.perf_counter() - t0) * 1000
        return plate_vote.vote(reads)

    def _read_colour_regions(self, view: Image, line_boxes: list[BBox], off: tuple[int, int]) -> list[PlateRead]:
        crops: list[Image] = []
        cands: list[_Cand] = []
        for g, b in enumerate(colour_regions(view, self.colour_proposals)):
            bw, bh = b[2] - b[0], b[3] - b[1]
            aspect = bw / max(1, bh)
            if aspect < 2.8:  # two-row plate (440 × 220 mm): read as upper row + lower row
                crops += [crop_box(view, upper_bands(b)[0]), lower_band(view, b)]
                cands.append(_Cand(b, (len(crops) - 2, len(crops) - 1), "colour2", group=1000 + g))
            # a small or tilted single-row plate can look as square as a two-row one: read both ways
            if aspect >= 1.6 and not any(overlaps(b, lb, 0.6) for lb in line_boxes):
                crops.append(crop_box(view, b, mx=0.03, my=0.08))
                cands.append(_Cand(b, (len(crops) - 1,), "colour"))
        if not crops:
            return []
        looks = [plate_look.look(c) for c in crops]
        return self._decode_candidates(cands, self.engine.rec(crops), [c.shape[0] for c in crops], off, looks)

    def decode(self, probs: Matrix, *, kinds: tuple[str, ...] | None = None) -> PlateRead | None:
        """Best grammar read of one line's probability matrix, or None if no plate grammar fits."""
        got = self._decode(probs, kinds=kinds)
        return got[0] if got else None

    # -- decoding ----------------------------------------------------------------------------------
    def _decode_candidates(
        self,
        cands: list[_Cand],
        mats: list[Matrix],
        heights: list[int],
        off: tuple[int, int],
        looks: list[plate_look.Look | None],
        *,
        personal: bool = False,
    ) -> list[PlateRead]:
        """``heights``: the source height of each matrix's crop (how large the glyphs were);
        ``looks``: how each crop looks (``plate_look``): a read whose kind's plates never look
        like its region (an LED sign, a badge on dark paint read as a Hong Kong mark) is no plate."""
        found: list[tuple[PlateRead, float, int]] = []
        for c in cands:
            split = None
            if len(c.parts) == 2:
                up, lo = mats[c.parts[0]], mats[c.parts[1]]
                m = np.concatenate([up, blank_rows(2, up.shape[1]), lo])
                split = len(up) + 1
                # the upper row's glyphs (60 mm) fill about two thirds of its band (GA 36)
                scale: float | None = UPPER_ROW_GLYPH * heights[c.parts[0]]
            else:
                m = mats[c.parts[0]]
                scale = None
            frame_px = REC_STRIDE * heights[c.parts[0]] / REC_HEIGHT
            got = self._decode(
                m, upper_frames=split, personal=personal and split is None, frame_px=frame_px, upper_glyph_px=scale
            )
            if got is not None:
                r, cost = got
                lk = looks[c.parts[-1]]
                if not plate_look.fits(r.kind, lk):
                    # another kind with the same marks whose plates look like this (a white
                    # ``MS6735`` is a Hong Kong plate, not a black Macau one), or no plate at all
                    alt = next((k for k in grammar.kinds(r.text) if plate_look.fits(k, lk)), None)
                    if alt is None:
                        continue
                    r = replace(r, kind=alt, text=grammar.render_canonical(r.text, alt))
                x1, y1, x2, y2 = c.box
                box = (x1 + off[0], y1 + off[1], x2 + off[0], y2 + off[1])
                found.append((replace(r, box=box), cost, c.group))
        best: dict[int, float] = {}
        for _r, cost, g in found:
            if g >= 0:
                best[g] = min(cost, best.get(g, math.inf))
        return [r for r, cost, g in found if g < 0 or cost == best[g]]

    def _decode(
        self,
        probs: Matrix,
        *,
        kinds: tuple[str, ...] | None = None,
        upper_frames: int | None = None,
        personal: bool = False,
        frame_px: float | None = None,
        upper_glyph_px: float | None = None,
    ) -> tuple[PlateRead, float] | None:
        """Best grammar read of a matrix and its grammar cost (nats below the free best path).

        ``upper_frames``: the matrix is a two-row plate, upper row first: a template is accepted
        only if the upper row holds exactly its leading part (mainland: province + letter; Hong
        Kong: the letters) — otherwise the lower row alone would pass as a short Hong Kong mark.
        The upper row is small and its Hanzi often unreadable: the read is still returned
        (low_confidence) when the rest is clear, so an officer sees the serial, never a guess.

        ``frame_px``: source pixels per matrix frame (how large the plate was); ``upper_glyph_px``:
        the upper row's glyph height of a two-row plate. A province Hanzi smaller than the
        policy's ``province_px`` never confirms a plate alone (``doubt="province"``).
        """
        index = self.engine.rec.index
        folded = ctc.fold_separators(probs, index)
        free = unconstrained_logp(folded)
        n_free = len(ctc.greedy(folded, self.engine.rec.classes)[0])
        best: tuple[float, str, ctc.Decoded, grammar.Template] | None = None
        tried = [
            (kind, tpl)
            for kind, tpl in grammar.plate_templates(tuple(k for k in (kinds or self.kinds) if k in self.kinds))
            if upper_frames is not None or abs(len(tpl) - n_free) <= 2
        ]
        # all templates searched in one pass over the frames (ctc.best_paths: same paths, ~4x less time)
        found = ctc.best_paths(folded, [t for _k, t in tried], index, folded=True)
        for (kind, tpl), d in zip(tried, found, strict=True):
            if d is None or (best is not None and d.logp <= best[0]):
                continue
            if upper_frames is not None:
                n_up = sum(1 for a, _b in d.spans if a < upper_frames)
                lead = 2 if kind in ("cn", "cn_crossborder", "macau") else len(d.text) - len(d.text.lstrip(LETTERS))
                if n_up != lead or kind == "cn_crossborder":
                    continue
            best = (d.logp, kind, d, tpl)
        if (best is None or free - best[0] > self.max_grammar_cost) and personal and "hk" in self.kinds:
            # a Hong Kong personalised mark: only in a crop known to be a plate (almost any word
            # fits the grammar, so in a scene it would turn every sign into a plate), and only
            # when no other plate grammar fits
            best = None
            marks = [(k, t) for k, t in grammar.plate_templates(("hk_personal",)) if len(t) == n_free]
            found = ctc.best_paths(folded, [t for _k, t in marks], index, folded=True)
            for (kind, tpl), d in zip(marks, found, strict=True):
                if (
                    d is not None
                    and grammar.classify(d.text, personal=True) == "hk_personal"
                    and (best is None or d.logp > best[0])
                ):
                    best = (d.logp, kind, d, tpl)
        if best is None:
            return None
        logp, kind, d, tpl = best
        cost = max(0.0, free - logp)
        if upper_frames is not None:
            rest = min(c for ch, c in zip(d.text, d.char_conf, strict=True) if ch.isascii())
            if cost > 2 * self.max_grammar_cost or rest < self.min_char_conf:
                return None
        elif cost > self.max_grammar_cost or d.confidence < self.min_char_conf:
            return None
        kind = grammar.classify(d.text) or kind
        conf = min(1.0, d.confidence * math.exp(-cost / 4))
        doubt = ""
        if kind in ("hk", "macau") and "cn" in self.kinds and upper_frames is None and _mainland_lower_row(d.text):
            doubt = "lower_row"  # five marks that are also the lower row of a mainland two-row plate
        if kind == "hk_personal":
            doubt = "personal"  # almost any word fits: an officer (or a second camera) must agree
        glyph = upper_glyph_px if upper_frames is not None else _province_px(d, frame_px)
        # any other character a position allows leaves a valid plate: every one is a slip
        slips = ctc.slip_weights(folded, d.spans, d.text, tpl, index, lambda _j, _c: True, reach=False)
        if grammar.mainland(d.text):
            slips = (0.0, *slips[1:])  # the province has its own rules (framings, cuts)
        read = PlateRead(
            grammar.render_canonical(d.text, kind),
            kind,
            round(conf, 4),
            None,
            d.char_conf,
            LOW_CONFIDENCE,
            doubt,
            round(cost, 3),
            None if glyph is None else round(glyph, 1),
            slip_weights=slips,
        )
        return calibration.decide(read, self.policy), cost

    def _check_framings(self, view: Image, reads: list[PlateRead], off: tuple[int, int]) -> list[PlateRead]:
        """Re-read the (at most two) largest confirmed single-line plates in a wider framing and
        once unpadded (test-time augmentation: the same pixels presented two other ways). A plate
        held for a slip is re-read too: a framing may give the other reading, which the vote then
        weighs (p0067: 陕ADG7250 with G at 0.8 read 陕A06725D in the framings).

        A province Hanzi the recogniser reads the same way whatever the framing is kept; one that
        changes, or whose probability falls, is doubtful: the mean of its probability over the
        framings must clear the policy's ``province_conf``. Other texts from the framings join the
        vote, where a disagreement lowers the status of the winner — unless the plate's province,
        read alone, outvotes a framing's other province (``plate_province.check_provinces``).
        """
        todo: dict[str, PlateRead] = {}
        # confirmed plates first: a slip-held one never takes a confirmed plate's re-read
        for r in sorted(reads, key=lambda r: (not plate_vote.good(r), -(r.box[2] - r.box[0]) if r.box else 0)):
            if (
                (plate_vote.good(r) or r.doubt == "slip")  # a slip: the framings may show the other reading
                and r.box is not None
                and not r.text[0].isascii()
                and len(todo) < 2
                and r.text not in todo
                and (r.box[2] - r.box[0]) >= 1.8 * (r.box[3] - r.box[1])
            ):
                todo[r.text] = r
        if not todo:
            return reads
        crops: list[Image] = []
        bare: list[Image] = []
        for r in todo.values():
            assert r.box is not None
            b = (r.box[0] - off[0], r.box[1] - off[1], r.box[2] - off[0], r.box[3] - off[1])
            crops.append(crop_box(view, b, mx=0.09, my=0.22))
            bare.append(crop_box(view, b))
        mats = self.engine.rec(crops)
        bare_mats = self.engine.rec(bare, pad=False)
        province: dict[str, float] = {}
        out = list(reads)
        for k, r in enumerate(todo.values()):
            probs = [r.char_confidences[0]]
            for m in (mats[k], bare_mats[k]):
                got = self._decode(m)
                same = got is not None and got[0].text[0] == r.text[0]
                probs.append(got[0].char_confidences[0] if got is not None and same else 0.0)
                if got is not None and got[0].text != r.text:
                    out.append(replace(got[0], box=r.box, status=LOW_CONFIDENCE, doubt="framing"))
            province[r.text] = sum(probs) / len(probs)
        # the read's confidence is capped by its province's mean over the framings
        return [
            r
            if r.text not in province
            else replace(r, confidence=round(min(r.confidence, province[r.text]), 4))
            if province[r.text] >= max(self.policy.province_conf, self.policy.plate_min_conf)
            else replace(
                r,
                confidence=round(min(r.confidence, province[r.text]), 4),
                status=LOW_CONFIDENCE,
                doubt="framing" if plate_vote.good(r) else r.doubt,
            )
            for r in out
        ]

    def _check_marks(self, view: Image, reads: list[PlateRead], off: tuple[int, int]) -> list[PlateRead]:
        """Hold a confirmed Hong Kong or Macau mark that a wider framing shows to be part of a
        longer line (``doubt="fragment"``).

        Their grammars take any one or two letters and up to four digits, so a piece of other
        text decodes as a mark: a truck's enlarged number painted on its rear (GB 7258) is the
        plate's own text in glyphs spaced so widely that the detector may box only part of it
        (p0062 at half size: ``EK59`` of ``粤BEK599``, confirmed at 0.98); the lower row of a
        mainland trailer's two-row plate, ``H575挂``, decodes as ``H575`` (p0082 at ×0.9). A
        plate is a whole object: framed wider (``MARK_WIDEN``), a mark reads the same or less
        (border, the other row of a two-row plate); a fragment reads more letters, digits or
        Hanzi around it. The framings' plain best path is compared, not a grammar read:
        ``BEK599`` is no mark.
        """
        todo = [i for i, r in enumerate(reads) if r.status == CONFIRMED and r.box is not None and r.text[0].isascii()]
        crops: list[Image] = []
        for i in todo:
            box = reads[i].box
            assert box is not None
            x1, y1, x2, y2 = box[0] - off[0], box[1] - off[1], box[2] - off[0], box[3] - off[1]
            crops += [crop_box(view, (x1, y1, x2, y2), mx=k * (y2 - y1) / max(1, x2 - x1), my=0.15) for k in MARK_WIDEN]
        if not crops:
            return reads
        mats = self.engine.rec(crops)
        out = list(reads)
        n = len(MARK_WIDEN)
        for k, i in enumerate(todo):
            mark = _glyphs(reads[i].text)
            wider = [_glyphs(ctc.greedy(m, self.engine.rec.classes)[0]) for m in mats[k * n : (k + 1) * n]]
            if any(mark in t and len(t) > len(mark) for t in wider):
                out[i] = replace(reads[i], status=LOW_CONFIDENCE, doubt="fragment")
        return out

    # -- tight crops ---------------------------------------------------------------------------
    def _read_tight(self, img: Image) -> list[PlateRead]:
        h, w = img.shape[:2]
        box = (0, 0, w, h)
        crops: list[Image] = [img]
        cands = [_Cand(box, (0,), "tight")]
        if w / h < 2.8:  # a two-row plate cropped tight: rows framed a little differently
            for up in upper_bands(box):
                for lo in (img[int(0.38 * h) :], img[int(0.46 * h) :]):
                    crops += [img[up[1] : up[3], up[0] : up[2]], lo]
                    cands.append(_Cand(box, (len(crops) - 2, len(crops) - 1), "tight2", group=0))
        mats = self.engine.rec(crops)
        looks = [plate_look.look(img)] * len(crops)  # the whole crop is the plate
        reads = self._decode_candidates(cands, mats, [c.shape[0] for c in crops], (0, 0), looks, personal=True)
        return plate_vote.vote(plate_province.check_provinces(self.engine.rec, img, reads, (0, 0), self.policy))


def _province_px(d: ctc.Decoded, frame_px: float | None) -> float | None:
    """Height in source pixels of a single-row plate's glyphs, from the pitch of its serial.

    The CTC alignment puts each character near its glyph's centre; the median distance between
    consecutive serial characters is the glyph pitch (GA 36: 45 mm glyphs every 57 mm, 90 mm
    tall, so the height is about 1.6 pitches).
    """
    if frame_px is None or len(d.spans) < 5:
        return None
    centres = [(a + b) / 2 for a, b in d.spans[2:]]
    steps = sorted(b - a for a, b in itertools.pairwise(centres))
    return GLYPH_PER_PITCH * steps[len(steps) // 2] * frame_px


def _glyphs(text: str) -> str:
    """A read's letters, digits and Hanzi, without its separators."""
    return "".join(c for c in text.upper() if c.isalnum())


def _mainland_lower_row(text: str) -> bool:
    return len(text) == 5 and all(c in grammar.CN_SERIAL for c in text)
