"""Judging a container number from a CTC matrix: read, corrected or inferred, and its status.

A (joined) matrix goes through the ISO 6346 templates — owner code, category ``U``/``J``/``Z``,
six serial digits and the check digit (11 characters), or the first ten alone — in one stacked
CTC search. The check digit decides what is a number: a valid read is kept; an invalid one only
if a single substitution drawn from the recogniser's own alternatives makes it valid
(``corrected``); owner + serial without a readable check digit gets a computed one
(``check_digit_inferred``), and the boxed digit right of the serial is then read on its own
(:func:`read_check_boxes`). Only a read number can be ``confirmed`` — and only when every
character clears the threshold calibrated on the development set (``calibration.py``): the
check digit alone is a 1-in-10 guard, so a corrected or inferred number goes to an officer.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import cv2

from . import calibration, ctc, grammar, iso6346
from .calibration import Policy
from .imaging import BBox, Image, Matrix, unconstrained_logp
from .iso6346 import ContainerRead
from .onnx_ocr import OcrEngine

__all__ = ["CONTAINER_10", "CONTAINER_11", "Cand", "Rules", "decode_numbers", "read_check_boxes"]

CONTAINER_11: grammar.Template = (*(grammar.LETTERS,) * 3, "UJZ", *(grammar.DIGITS,) * 7)
CONTAINER_10: grammar.Template = CONTAINER_11[:10]
#: Width (in line heights) of the region right of a serial where its boxed check digit is read:
#: the box is about one glyph wide and set about one glyph to the right (ISO 6346 Annex F).
CHECK_BOX_WIDTH = 1.8
#: Height (in glyph heights) of the region under a column's last glyph where its boxed check
#: digit is read: the box is about a glyph high (1.0–1.3) and set a little under the serial.
CHECK_BOX_BELOW = 1.9
#: A boxed digit read below this probability does not count as read.
CHECK_BOX_MIN_CONF = 0.5


@dataclass(frozen=True, slots=True)
class Rules:
    """When a path through a template is a number at all, and when it is confirmed."""

    policy: Policy
    #: Nats a template's best path may cost beyond the unconstrained best path.
    max_cost: float
    #: Least per-character probability of a path taken as a number.
    min_char_conf: float


@dataclass(frozen=True, slots=True)
class Cand:
    """A candidate number: ``rank`` orders candidates, best first."""

    rank: tuple[int, float]  # (0 read / 1 corrected / 2 check digit inferred, grammar cost)
    read: ContainerRead


def decode_numbers(jobs: list[tuple[Matrix, BBox]], index: dict[str, int], rules: Rules) -> list[Cand | None]:
    """The number of each (matrix, box), or None: every matrix through both templates in one
    search (``ctc.search``: the same paths as one by one, a fraction of the time)."""
    items = [(m, t) for m, _box in jobs for t in (CONTAINER_11, CONTAINER_10)]
    found = ctc.search(items, index, folded=True)
    return [_decode(m, box, found[2 * i], found[2 * i + 1], rules, index) for i, (m, box) in enumerate(jobs)]


def _decode(
    mat: Matrix, box: BBox, d11: ctc.Decoded | None, d10: ctc.Decoded | None, rules: Rules, index: dict[str, int]
) -> Cand | None:
    """A container number from one (joined) matrix and its best paths through the 11- and
    10-character templates: read, corrected or inferred, with status."""
    free = unconstrained_logp(mat)
    if d11 is not None and free - d11.logp <= rules.max_cost and d11.confidence >= rules.min_char_conf:
        cost = free - d11.logp
        weights = slip_weights(mat, d11, d11.text, index) if iso6346.is_valid(d11.text) else ()
        if cost > rules.policy.container_max_cost and weights and max(weights) <= calibration.SLIP_MAX:
            # a mark outside the number is not its cost — only when no character of it, sure or
            # not, gives a slip any weight: a faint true character beside a sure mark (E for a
            # faint O, with the mark X after the number) reads as a sure wrong one
            cost = min(cost, _own_cost(mat, d11, index))
        conf = _conf(d11, cost)
        alts = [(*a,) for a in d11.alternatives]
        if iso6346.is_valid(d11.text) and iso6346.remainder(d11.text[:10]) == 10:
            # valid only through the 10 -> 0 fold: one of the recogniser's own alternatives
            # that validates without it is as likely (IEMU… for TEMU0524620): an officer
            # looks. Without one, the read is judged as any other, held to every character
            # sure (calibration: the fold lets single substitutions through)
            other = iso6346.correct(d11.text, alts, max_changes=1, avoid_ten=True)
            if other is not None:
                return _corrected(other, d11, box, conf, cost)
        if iso6346.is_valid(d11.text):
            read = ContainerRead(
                d11.text,
                True,
                confidence=conf,
                box=box,
                char_confidences=d11.char_conf,
                cost=round(cost, 3),
                slip_weights=weights,
            )
            return Cand((0, cost), calibration.decide(read, rules.policy))
        fixed = iso6346.correct(d11.text, alts, max_changes=1)
        if fixed is not None:
            return _corrected(fixed, d11, box, conf, cost)
    if d10 is not None and free - d10.logp <= rules.max_cost and d10.confidence >= rules.min_char_conf:
        cost = free - d10.logp
        num = d10.text + str(iso6346.check_digit(d10.text))
        weights = slip_weights(mat, d10, num, index)  # for a check digit read in its box
        if cost > rules.policy.container_max_cost and max(weights) <= calibration.SLIP_MAX:
            # as for 11 characters: a mark after the serial (a column's cell cut through the
            # box round the check digit, read as 0 or D) is not its cost
            cost = min(cost, _own_cost(mat, d10, index, CONTAINER_10))
        return Cand(
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
                slip_weights=weights,
            ),
        )
    return None


def slip_weights(mat: Matrix, d: ctc.Decoded, number: str, index: dict[str, int]) -> tuple[float, ...]:
    """Per character of the valid ``number`` read as ``d`` (its first ``len(d.spans)``; the
    check digit of a 10-character read was computed, and nothing else validates there): the
    weight of its *slips* (``ctc.slip_weights``), another character with which the number is
    still valid — a substitution the check digit cannot catch."""
    return ctc.slip_weights(
        mat,
        d.spans,
        number,
        CONTAINER_11,
        index,
        lambda j, c: iso6346.is_valid(number[:j] + c + number[j + 1 :]),
    )


def _own_cost(mat: Matrix, d: ctc.Decoded, index: dict[str, int], template: grammar.Template = CONTAINER_11) -> float:
    """The grammar cost of ``d`` over its own frames, from its first character to its last: a
    mark read before or after the number (a stripe's corner above a vertical code, read as
    ``L``) is not part of it. Over those frames the same number must come out again (a mark
    between its characters stays in the cost), and no other way of dropping the extra marks
    from the recogniser's free reading may give another valid number (``LMSKU…`` is also
    ``LSKU…``, ``LMKU…`` and ``LMSU…``: none of them may validate). ``template``: the one ``d``
    went through (a 10-character read is judged with its computed check digit). ``inf`` when
    not so."""
    own = mat[d.spans[0][0] : d.spans[-1][1] + 1]
    again = ctc.best_path(own, template, index, folded=True)
    number = d.text if len(d.text) == 11 else d.text + str(iso6346.check_digit(d.text))
    if again is None or again.text != d.text or _other_readings(mat, number, index):
        return math.inf
    return unconstrained_logp(own) - again.logp


#: Look-alikes a free reading may give in a number's letter and digit positions, as the decoder
#: counts them (``ctc.ALIASES``: 0 and 1 or | for a letter; O, Q, D, I, L or | for a digit).
_AS_LETTER = str.maketrans({a: c for c, seen in ctc.ALIASES.items() if c.isalpha() for a in seen if not a.isalpha()})
_AS_DIGIT = str.maketrans({a: c for c, seen in ctc.ALIASES.items() if c.isdigit() for a in seen})


def _other_readings(mat: Matrix, number: str, index: dict[str, int]) -> bool:
    """The recogniser's free reading of ``mat``, with up to two extra marks dropped some other
    way, gives another number that fits the template and validates (or has more marks)."""
    classes = [""] * (max(index.values()) + 1)
    for c, i in index.items():
        classes[i] = c
    free = "".join(c for c in ctc.greedy(mat, classes)[0] if c.isascii() and (c.isalnum() or c == "|"))
    extra = len(free) - 11
    if extra > 2:
        return True
    for drop in itertools.combinations(range(len(free)), max(0, extra)):
        kept = "".join(c for k, c in enumerate(free) if k not in drop)
        other = kept[:4].translate(_AS_LETTER) + kept[4:].translate(_AS_DIGIT)
        if (
            len(other) == 11
            and other != number
            and all(c in CONTAINER_11[i] for i, c in enumerate(other))
            and iso6346.is_valid(other)
        ):
            return True
    return False


def _corrected(number: str, d: ctc.Decoded, box: BBox, conf: float, cost: float) -> Cand:
    read = ContainerRead(
        number,
        True,
        corrected=True,
        confidence=round(conf * 0.8, 4),
        box=box,
        char_confidences=d.char_conf,
        cost=round(cost, 3),
        doubt="corrected",
    )
    return Cand((1, cost), read)


def _conf(d: ctc.Decoded, cost: float) -> float:
    return round(d.confidence * math.exp(-cost / 4), 4)


def read_check_boxes(
    engine: OcrEngine,
    img: Image,
    cands: list[Cand],
    tails: dict[int, BBox],
    rules: Rules,
    *,
    below: dict[int, BBox] | None = None,
) -> list[Cand]:
    """Owner code and serial read without their check digit: read the boxed digit on its own.

    ``tails`` maps a candidate (its index in ``cands``) to the box of its serial's line;
    ``below`` maps a candidate read down a column of glyphs (a container front) to the box of
    its last glyph. Painted numbers put the check digit in a box a glyph to the right of the
    serial, or under it in a column; the detector often leaves the box out of the line, and a
    column's glyph cell cuts through the box (it reads as 0, D or 口), and the number is then
    only *inferred*. The region where the box is is read alone against a one-digit template: a
    digit read there that equals the computed one is the check digit *read* — an independent
    check (a misread owner code or serial matches it one time in ten) — and the number is then
    judged like any other read number. A different digit, or none, leaves it inferred.
    """
    regions = [(i, *reg) for i, t in tails.items() if (reg := _right_of(t, img.shape)) is not None]
    regions += [(i, *reg) for i, g in (below or {}).items() if (reg := _under(g, img.shape)) is not None]
    jobs: list[tuple[int, Image]] = []
    for i, (xa, ya, xb, yb), h in regions:
        region = img[ya:yb, xa:xb]
        jobs.append((i, region))
        box = _check_box(region, h)
        if box is not None:
            # the box alone, without the door's bars and hinges beside it, and the digit
            # without its box (which reads as 口, 目 or 1)
            jobs += [(i, c) for c in _box_crops(region, box)]
    if not jobs:
        return cands
    mats = engine.rec([c for _i, c in jobs])
    folded = [ctc.fold_separators(m, engine.rec.index) for m in mats]
    # a boxed 8 often reads as B (the box's sides close the glyph): B is read as the digit
    found = ctc.search([(f, (grammar.DIGITS + "B",)) for f in folded], engine.rec.index, folded=True)
    out = list(cands)
    for (i, _crop), f, d in zip(jobs, folded, found, strict=True):
        c = cands[i]
        r = c.read
        if not out[i].read.check_digit_inferred:
            continue  # read already (from the box with its outline, or without)
        digit = None if d is None else d.text.replace("B", "8")
        if d is None or digit != r.number[10] or d.confidence < CHECK_BOX_MIN_CONF:
            continue
        if unconstrained_logp(f) - d.logp > rules.policy.container_max_cost:
            continue  # more than one glyph there (a logo, the next word): not the boxed digit
        chars = (*r.char_confidences[:10], d.confidence)
        conf = round(min(chars) * math.exp(-c.rank[1] / 4), 4)
        read = replace(r, check_digit_inferred=False, confidence=conf, char_confidences=chars, doubt="")
        out[i] = Cand((0, c.rank[1]), calibration.decide(read, rules.policy))
    return out


def _right_of(tail: BBox, shape: tuple[int, ...]) -> tuple[BBox, int] | None:
    """Where the boxed digit of a serial's line is (right of it), and the line height that
    sizes the box; None when the frame leaves no room for it."""
    H, W = shape[:2]
    _x1, y1, x2, y2 = tail
    h = y2 - y1
    xa, xb = x2, min(W, x2 + int(CHECK_BOX_WIDTH * h))
    ya, yb = max(0, int(y1 - 0.15 * h)), min(H, int(y2 + 0.15 * h))
    return ((xa, ya, xb, yb), h) if xb - xa >= 0.6 * h and h >= 8 else None


def _under(last: BBox, shape: tuple[int, ...]) -> tuple[BBox, int] | None:
    """Where the boxed digit of a column is (the next cell down from its last glyph: the box is
    about a glyph high, a little apart), and the glyph height that sizes the box."""
    H, W = shape[:2]
    x1, y1, x2, y2 = last
    h = y2 - y1
    cx = (x1 + x2) // 2
    xa, xb = max(0, cx - int(0.9 * h)), min(W, cx + int(0.9 * h))
    ya, yb = min(H, y2 + max(1, h // 20)), min(H, y2 + int(CHECK_BOX_BELOW * h))
    return ((xa, ya, xb, yb), h) if yb - ya >= 1.2 * h and h >= 8 else None


def _check_box(region: Image, line_h: int) -> tuple[int, int, int, int] | None:
    """The box painted round a check digit in ``region`` (x, y, w, h), or None: the leftmost
    (then largest) contour about a glyph high and at most as wide as high.

    ``line_h`` is the serial's detector box, grown round its glyphs (DB unclip): 1.5–2.3 times
    their height on the development doors, so a painted box (~1.3 glyph heights) is 0.4–1.6
    line heights high; the box of a tightly cut line may be up to 1.3 line heights wide.
    """
    g = cv2.cvtColor(region, cv2.COLOR_BGR2GRAY)
    edges = cv2.Canny(g, 50, 150)
    contours, _ = cv2.findContours(edges, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    best: tuple[int, int, tuple[int, int, int, int]] | None = None
    for c in contours:
        x, y, w, h = cv2.boundingRect(c)
        tight = 0.75 * line_h <= h <= 1.6 * line_h and 0.45 * line_h <= w <= 1.3 * line_h
        grown = 0.4 * line_h <= h <= 1.6 * line_h and 0.4 * h <= w <= h
        # the box comes first right of the serial (bars, hinges and the next marking after it)
        if (tight or grown) and (best is None or (x, -w * h) < best[:2]):
            best = (x, -w * h, (x, y, w, h))
    return None if best is None else best[2]


def _box_crops(region: Image, box: tuple[int, int, int, int]) -> list[Image]:
    """The check box with a little of the wall round it, and its inside (the digit alone)."""
    x, y, w, h = box
    m = max(2, h // 10)
    crops: list[Image] = [region[max(0, y - m) : y + h + m, max(0, x - m) : x + w + m]]
    mx, my = max(2, w // 6), max(2, h // 8)
    inside: Image = region[y + my : y + h - my, x + mx : x + w - mx]
    if inside.shape[0] >= 6 and inside.shape[1] >= 4:
        crops.append(inside)
    return crops
