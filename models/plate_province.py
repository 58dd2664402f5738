"""A mainland plate's province Hanzi re-read on its own: evidence for a small province.

The general-purpose recogniser reads a small province Hanzi (< 40 px) inside the plate's line
confidently wrong now and then (p0012: 浙 for 湘 at p ≥ 0.98 in every framing of the line), so a
small province never confirms a plate alone (``calibration.plate_decision``, ``doubt="province"``).
This module gathers evidence that does not come from the line read (the same network, shown the
glyph alone, several ways): the glyph is cut out of the plate crop (where the line's CTC
alignment puts the first character, ± half the serial's glyph pitch), each cut read **alone and
unpadded** (the 320-column padding of a line crop lets the network's mixing blocks lean on the
rest of the plate), and the read restricted to the 31 provinces: the CTC probability of each
province being the whole read, normalised over the 31.

The province counts as *read alone* (``PlateRead.province_alone``) if every one of :data:`CUTS`
reads the line's province with probability ≥ :data:`MIN_P` and a margin ≥ :data:`MIN_MARGIN` over
the runner-up province (*sure in every cut*), or if the line's province is the most probable one in
every cut and at least :data:`STEADY_CUTS` of them give it ≥ :data:`STEADY_P` with a margin ≥
:data:`STEADY_MARGIN` (*steady*: no cut names another province, most are near certain; one cut
that frames the glyph badly may be unsure without naming anything else), or if
:data:`NEAR_UNANIMOUS_CUTS` of the five are near certain that way, whatever the fifth names
(*near-unanimous*: one badly framed cut outvoted; p0030's cuts read 苏 at 1.00, 1.00, 0.97, 1.00
and 新 at 0.77). A blurred glyph's read changes with the cut (p0012's five cuts read 浙 at
0.63, 0.62, 0.99, 0.99 and 新 at 0.88: another province named, two cuts near certain), a legible
one's does not.

A plate held for its **framing** (``doubt="framing"``: a wider or unpadded framing of the line
read another province, or the same one less surely) is checked the same way: the framings are
the line read again, the cuts are evidence from the glyph alone, and they name the province. If
it is read alone, and every mainland read of the box agrees with the plate's serial (only the
province was in question; a read that is no mainland reading, such as a Hong Kong fragment,
names no serial), the framing doubt is lifted and the read decided on its characters; if that
confirms the plate, the framings' reads of another province in that box are dropped, outvoted by
the glyph, unless something else names that province too (:func:`_outvoted`).

Measured on the development set and on degraded copies of it (docs/recognition.md, "The province
read alone"): of 242 province reads, the five cuts agreed surely on a wrong province once (新 for
沪 at 16.5 px, where the line read was right: the 18 px floor), and never on the line's province
when the line's province was wrong; of 546 reads in seven copies, none of the three rules passed
any of the 56 with a wrong province.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import cv2
import numpy as np

from . import calibration, ctc, grammar
from .calibration import Policy
from .grammar import CONFIRMED, PlateRead
from .imaging import Image, Matrix, crop_box, overlaps
from .onnx_ocr import REC_HEIGHT, REC_STRIDE, Recogniser

__all__ = [
    "CUTS",
    "MIN_MARGIN",
    "MIN_P",
    "NEAR_UNANIMOUS_CUTS",
    "STEADY_CUTS",
    "STEADY_MARGIN",
    "STEADY_P",
    "agrees",
    "check_provinces",
    "cut_glyph",
    "province_posterior",
    "read_alone",
]

#: (half width in glyph pitches, side padding in glyph widths (replicated border), upscale factor)
CUTS: tuple[tuple[float, float, int], ...] = (
    (0.5, 0.3, 3),
    (0.5, 0.0, 1),
    (0.6, 0.3, 3),
    (0.45, 0.5, 2),
    (0.5, 0.3, 1),
)
MIN_P = 0.8
MIN_MARGIN = 0.5
#: Steady (module docstring): the province most probable in every cut, and this many cuts sure.
#: Chosen with a margin on the development pool (docs/recognition.md): one step looser in any one
#: of them (2 cuts, or p ≥ 0.9, or margin ≥ 0.8) still confirms no wrong province; p and margin
#: both one step looser would (p0012 on a ×0.85 JPEG copy: 浙 first in every cut, three at p ≥ 0.91).
STEADY_CUTS = 3
STEADY_P = 0.95
STEADY_MARGIN = 0.9
#: Near-unanimous (module docstring): this many of the five cuts near certain (p ≥ STEADY_P, margin
#: ≥ STEADY_MARGIN), whatever the fifth names. Chosen with a margin on the same pool: 3 near-certain
#: cuts with at most one naming another province, or p ≥ 0.9, or margin ≥ 0.8 still confirm no wrong
#: province; 2 near-certain cuts would (p0012 as it is: 浙 near certain in two cuts, 新 named in one).
NEAR_UNANIMOUS_CUTS = 4


def province_posterior(probs: Matrix, rec: Recogniser) -> np.ndarray:
    """Per province (``grammar.CN_PROVINCES`` order): the CTC probability that the matrix reads as
    that one character (blank* c+ blank*), normalised over the provinces (zeros if none fits)."""
    pidx = np.array([rec.index[c] for c in grammar.CN_PROVINCES])
    p = probs.astype(np.float64)
    blank, cls = p[:, 0], p[:, pidx]
    before, inside, after = blank[0], cls[0].copy(), np.zeros(len(pidx))
    for t in range(1, len(p)):
        inside, after, before = (before + inside) * cls[t], (inside + after) * blank[t], before * blank[t]
    s: np.ndarray = inside + after
    total = float(s.sum())
    return s / total if total > 0 else s


def cut_glyph(crop: Image, spans: tuple[tuple[int, int], ...], cut: tuple[float, float, int]) -> Image | None:
    """The first glyph of a line ``crop`` whose CTC ``spans`` (frames per character) are known."""
    half, padx, up = cut
    h, w = crop.shape[:2]
    px = REC_STRIDE * h / REC_HEIGHT  # source columns per frame
    centres = [((a + b) / 2 + 0.5) * px for a, b in spans]
    steps = sorted(b - a for a, b in itertools.pairwise(centres[2:]))
    if not steps:
        return None
    pitch = steps[len(steps) // 2]
    xa, xb = int(max(0, centres[0] - half * pitch)), int(min(w, centres[0] + half * pitch))
    if xb - xa < 3:
        return None
    g: Image = crop[:, xa:xb]
    if padx:
        p = round(padx * g.shape[1])
        g = np.asarray(cv2.copyMakeBorder(g, 0, 0, p, p, cv2.BORDER_REPLICATE), np.uint8)
    if up > 1:
        g = np.asarray(cv2.resize(g, None, fx=up, fy=up, interpolation=cv2.INTER_CUBIC), np.uint8)
    return g


def read_alone(rec: Recogniser, crop: Image, text: str) -> bool:
    """Whether ``crop``'s first glyph, read alone in every cut, is ``text``'s province: sure in
    every cut, steady, or near-unanimous (module docstring).

    ``crop``: the plate's single line (its box, unpadded); ``text``: the plate read from it. The
    line is read once more to align ``text``'s characters with its frames (no alignment, no
    evidence); the glyph is cut where the first character lies.
    """
    text = grammar.normalise(text)
    if not grammar.mainland(text):
        return False
    folded = ctc.fold_separators(rec([crop])[0], rec.index)
    line = ctc.best_path(folded, list(text), rec.index, folded=True)
    if line is None or len(line.spans) < 5:
        return False
    posts: list[np.ndarray] = []
    for cut in CUTS:
        g = cut_glyph(crop, line.spans, cut)
        if g is None:
            return False
        posts.append(province_posterior(rec([g], pad=False)[0], rec))
    return agrees(posts, grammar.CN_PROVINCES.index(text[0]))


def agrees(posts: list[np.ndarray], k: int) -> bool:
    """Whether the cuts' province posteriors ``posts`` (one per cut of :data:`CUTS`) read province
    ``k``: sure in every cut, steady, or near-unanimous (module docstring)."""
    if len(posts) != len(CUTS):
        return False
    sure = steady = named = 0
    for post in posts:
        runner_up = float(np.max(np.delete(post, k)))
        named += post[k] <= runner_up  # another province named in this cut (neither sure nor steady)
        sure += post[k] >= MIN_P and post[k] - runner_up >= MIN_MARGIN
        steady += post[k] >= STEADY_P and post[k] - runner_up >= STEADY_MARGIN
    return steady >= NEAR_UNANIMOUS_CUTS or (named == 0 and (sure == len(CUTS) or steady >= STEADY_CUTS))


def _lifted(r: PlateRead) -> PlateRead:
    """``r`` without its framing doubt: its confidence as its characters and grammar cost give it
    (``PlateReader`` caps it by the province's mean over the framings)."""
    if r.doubt != "framing":
        return r
    conf = min(1.0, min(r.char_confidences, default=0.0) * math.exp(-r.cost / 4))
    return replace(r, doubt="", confidence=round(conf, 4))


def check_provinces(
    rec: Recogniser, view: Image, reads: list[PlateRead], off: tuple[int, int], policy: Policy, *, limit: int = 2
) -> list[PlateRead]:
    """``reads`` with the (at most ``limit`` largest) ones held only for a small province
    (``doubt="province"``) or for their framing (``doubt="framing"``, every other read of the
    same box with the same serial) re-decided with their province read alone (:func:`read_alone`),
    and the framings' reads it outvotes removed (:func:`_outvoted`).

    Only a province at least ``policy.province_px_alone`` high is tried (below, the evidence
    could not confirm it: no recogniser pass is spent on it). ``off``: ``view``'s offset in the
    frame the reads' boxes are in.
    """

    def serial_agreed(r: PlateRead) -> bool:
        # a read that is no mainland reading (p0082's wider framing takes in a web address above
        # a trailer's painted number and reads a Hong Kong "A75") names no other serial; a
        # mainland read of another length (a green plate's eight characters) does
        return all(
            o.text[1:] == r.text[1:]
            for o in reads
            if o.box == r.box and (len(o.text) == len(r.text) or grammar.mainland(o.text))
        )

    todo: dict[str, int] = {}  # one try per text: the vote keeps a confirmed copy of it first
    for i in sorted(range(len(reads)), key=lambda i: -(reads[i].glyph_px or 0.0)):
        r = reads[i]
        if (
            len(todo) < limit
            and r.text not in todo
            and (r.doubt == "province" or (r.doubt == "framing" and serial_agreed(r)))
            and r.box is not None
            and r.glyph_px is not None
            and r.glyph_px >= policy.province_px_alone
        ):
            todo[r.text] = i
    out: list[PlateRead] = list(reads)
    lifted: list[int] = []
    for i in todo.values():
        r = reads[i]
        assert r.box is not None
        b = (r.box[0] - off[0], r.box[1] - off[1], r.box[2] - off[0], r.box[3] - off[1])
        if read_alone(rec, crop_box(view, b), r.text):
            out[i] = calibration.decide(replace(_lifted(r), province_alone=True), policy)
            lifted.append(i)
    alone = [out[i] for i in lifted]
    return [
        o for o, was in zip(out, reads, strict=True) if not any(_outvoted(reads, out[i], was, alone) for i in lifted)
    ]


def _outvoted(reads: list[PlateRead], r: PlateRead, o: PlateRead, alone: list[PlateRead]) -> bool:
    """Whether ``r``, re-decided with its province read alone, outvotes ``o`` (as it came): a
    framing's read of the same box and serial with another province (p0087: 浙 for 新 in the
    wider framing, 新 at p ≥ 0.99 in every cut). Not if ``r`` is still held (its officer sees the
    rival), if ``o``'s province was read alone too in that box (``alone``: two provinces named,
    the vote decides), or if a read of another box in the same place names ``o``'s province
    (evidence the cuts of this box did not weigh)."""
    if not (
        r.status == CONFIRMED
        and o.doubt == "framing"
        and o.box == r.box
        and o.text[1:] == r.text[1:]
        and o.text[0] != r.text[0]
    ):
        return False
    assert r.box is not None
    if any(a.box == r.box and a.text[0] == o.text[0] for a in alone):
        return False
    return not any(
        x.text[0] == o.text[0] and x.box is not None and x.box != r.box and overlaps(x.box, r.box) for x in reads
    )
