"""Reconciling a frame's plate reads: the two views of a slanted line, then one read per plate.

* **Two views** (:func:`two_views`): a line slanted at least ``plates.SLANT_MIN_DEG`` is read
  rotated level (``imaging.rectify``) and sheared level (``imaging.deslant``); its read is
  confirmed only when both views read the same text (``doubt="slant"`` otherwise).
* **The vote** (:func:`vote`): reads of one region are candidates for one plate; a winner
  contradicted by another full-length read of the region is held (``doubt="rival"``).
"""

from __future__ import annotations

from dataclasses import replace

from . import calibration
from .calibration import Policy
from .fusion import RIVAL_SHARE, first_fit
from .grammar import CONFIRMED, LOW_CONFIDENCE, PlateRead
from .imaging import BBox, overlaps

__all__ = ["good", "two_views", "vote"]


def good(r: PlateRead) -> bool:
    """Confirmed, or doubtful only because its province is too small to vouch for alone."""
    return r.status == CONFIRMED or r.doubt == "province"


def two_views(reads: list[PlateRead], deslanted: list[PlateRead], lines: list[BBox], policy: Policy) -> list[PlateRead]:
    """``reads`` checked against the reads of the slanted lines' deslanted views
    (``deslanted``, ``imaging.deslant``). A read over a slanted line (its box overlapping one of
    ``lines``: the line's own read, a two-row plate joined from it, a colour region on it)
    stands when the deslanted view read the same text there, and is held (``doubt="slant"``)
    when it did not. A deslanted read that no read of the line repeats joins the reads, held, if
    it is good (confirmed, or held only for its province: an officer must see it); a weaker one
    is dropped (p0082: a fragment of a trailer's painted number, read nowhere else, would only
    add a doubtful plate to the vehicle).

    Which view is right depends on why the line is slanted (the camera's roll or its oblique
    view), which one frame cannot tell: when the views disagree, or one reads nothing, an officer
    sees the reads. Two views of the same pixels are no independent evidence, so the deslanted
    view only ever holds a read, never confirms one (a fragment of a trailer's painted number,
    read ``H575`` surely deslanted and weakly level, stays held). A read that stands takes the
    smaller of the two views' glyph heights and the larger of their slip weights, and is decided
    again: the province rule's size never passes on the larger of two measures, and a second
    reading either view gives weight holds it."""

    def over(r: PlateRead) -> bool:
        return r.box is not None and any(overlaps(r.box, b, 0.6) for b in lines)

    def seconded(r: PlateRead, other: list[PlateRead]) -> PlateRead | None:
        return next(
            (
                o
                for o in other
                if o.text == r.text and o.box is not None and r.box is not None and overlaps(o.box, r.box, 0.6)
            ),
            None,
        )

    def held(r: PlateRead) -> PlateRead:
        return replace(r, status=LOW_CONFIDENCE, doubt="slant") if good(r) else r

    def measured(r: PlateRead, t: PlateRead) -> PlateRead:
        px = [g for g in (r.glyph_px, t.glyph_px) if g is not None]
        slips = r.slip_weights
        if len(t.slip_weights) == len(slips):
            slips = tuple(max(a, b) for a, b in zip(slips, t.slip_weights, strict=True))
        return calibration.decide(replace(r, glyph_px=min(px) if px else None, slip_weights=slips), policy)

    out: list[PlateRead] = []
    for r in reads:
        if not over(r):
            out.append(r)
        elif (t := seconded(r, deslanted)) is None:
            out.append(held(r))
        else:
            out.append(measured(r, t))
    return out + [held(d) for d in deslanted if good(d) and seconded(d, reads) is None]


def vote(reads: list[PlateRead]) -> list[PlateRead]:
    """One read per physical plate, main plate first.

    Reads of one region (overlapping boxes) are candidates for one plate: a read that is the tail
    of a longer read of the region is that plate's lower row alone and drops out; the others vote
    with their confidence. A winner contradicted by another full-length read of the same region
    (another framing, another detector) is ``low_confidence``: disagreement lowers confidence.
    """
    reads = [
        r
        for r in reads
        if not any(
            len(o.text) > len(r.text)
            and o.text.endswith(r.text)
            and o.box is not None
            and r.box is not None
            and overlaps(r.box, o.box, 0.7)
            for o in reads
        )
    ]
    reads.sort(key=lambda r: (r.status != CONFIRMED, not good(r), -len(r.text), -r.confidence))
    clusters = first_fit(
        reads, lambda r, k: k.text == r.text or (k.box is not None and r.box is not None and overlaps(r.box, k.box))
    )
    kept: list[PlateRead] = []
    for cl in clusters:
        score: dict[str, float] = {}
        for r in cl:
            score[r.text] = score.get(r.text, 0.0) + r.confidence
        # the most voted text of the longest reading (framings of one plate vote with their confidence)
        top = max((r.text for r in cl if len(r.text) == len(cl[0].text)), key=lambda t: score[t])
        win = next(r for r in cl if r.text == top)
        rivals = [
            r
            for r in cl
            if r.text != win.text and len(r.text) == len(win.text) and score[r.text] >= RIVAL_SHARE * score[win.text]
        ]
        if rivals and good(win):
            win = replace(win, status=LOW_CONFIDENCE, doubt="rival")
        kept.append(win)
    # main plate first: the largest confirmed plate (the one the camera is aimed at)
    kept.sort(key=lambda r: (not good(r), -((r.box[2] - r.box[0]) if r.box else 1)))
    return kept
