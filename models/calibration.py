"""When a read is confirmed: the confirmation policy, its fit on held-out folds, reliability curves.

Pure Python (no numpy): the lane, the CLI and the readers share it.

A read is ``confirmed`` (the lane may act on it without an officer) only if nothing structural
speaks against it — a rival reading of the same marking, a framing that changes the province,
a check digit inferred or corrected, five marks that are also a two-row plate's lower row …
(the reader records that reason in ``doubt``) — *and* its character confidences clear the
thresholds of a :class:`Policy`:

* **plates** (no check digit): the combined confidence (weakest character × e^(−cost/4)) at
  least ``plate_min_conf``, every Hanzi at least ``province_conf``, and a mainland province
  Hanzi at least ``province_px`` pixels high (below that the general-purpose recogniser's
  Hanzi is not trustworthy alone: ``doubt="province"``, a second camera or the e-card decides)
  — or at least ``province_px_alone`` when the province, cut out and re-read alone, is the most
  probable one in every cut, surely (``PlateRead.province_alone``, ``plate_province.py``);
* **container numbers**: the check digit was *read* and validates; every character but the
  weakest at least ``container_sure``, the weakest at least ``container_min_one`` — and that
  one doubtful character pinned by the check digit: no other character there keeps the number
  valid, or those that do (its *slips*) weigh at most ``SLIP_MAX`` in the recogniser's eyes
  (``ContainerRead.slip_weights``). The ISO 6346 check digit detects every single
  substitution of a digit or of the category letter, so one doubtful digit is pinned by the
  ten sure characters and the check digit; two doubtful ones are not (one pair in ten
  passes). Owner letters 11 apart (A/K/U, B/L/V, C/M/W, D/N/X, E/O/Y, F/P/Z, G/Q, H/R, I/S,
  J/T) slip through the check, and so does one digit per position of a number whose check
  digit is 0 (remainders 0 and 10 share it: the 10 → 0 fold; numbers with remainder 10 are
  issued after all, 3 of the 92 development numbers): there the slips' weight decides, and
  without it measured such a character is never the doubtful one. No character's slips, sure
  or not, may weigh over ``SURE_SLIP_MAX`` (``doubt="slip"``): a sure mark beside a faint true
  owner letter is a second valid reading.

The thresholds are fitted (:func:`fit`) on labelled reads: the most permissive grid point that
confirms no wrong read *and* stays clean one grid step more permissive in each direction (a
margin), never below the floors of :data:`GRID`. ``portlane ocr eval`` fits on k−1 folds and
scores the held-out fold, so every figure it reports for confirmation is held out;
:data:`SHIPPED` is the fit on the whole development set (``docs/recognition.md``).

:func:`reliability` bins held-out reads by a calibrated probability (isotonic on the training
folds, :func:`isotonic`) against the share that was right: the reliability curve.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import overload

from .grammar import CONFIRMED, LOW_CONFIDENCE, PlateRead
from .iso6346 import ContainerRead

__all__ = [
    "GRID",
    "SHIPPED",
    "SLIP_MAX",
    "STRUCTURAL",
    "SURE_SLIP_MAX",
    "Policy",
    "container_decision",
    "decide",
    "fit",
    "isotonic",
    "plate_decision",
    "reliability",
    "second_reading",
]

#: Doubts no threshold can lift: the reader found something that contradicts the read.
STRUCTURAL = frozenset(
    {
        "rival",
        "framing",
        "lower_row",
        "personal",
        "inferred",
        "corrected",
        "fold",
        "grammar",
        "look",
        "slip",
        "slant",
        "upscaled",
        "fragment",
    }
)


@dataclass(frozen=True, slots=True)
class Policy:
    """Thresholds of the confirmation rules (module docstring)."""

    plate_min_conf: float = 0.7
    province_conf: float = 0.9
    province_px: float = 40.0
    #: the floor for a province whose glyph read alone agrees (``PlateRead.province_alone``)
    province_px_alone: float = 1e9
    plate_max_cost: float = 2.0
    container_sure: float = 0.9
    container_min_one: float = 0.5
    container_max_cost: float = 2.0


#: Candidate values per threshold, most permissive first; the first value is the floor no fit
#: goes below. The floors are priors, not fits: 40 px for a province Hanzi is the size rule of
#: the previous round (GA 36 glyph proportions); with the grid allowed down to 30 px, the fold
#: holding the EasyPR scenes was fitted to 30 px on the other folds and then confirmed 浙 for 湘
#: (p0012, 31 px) on its own — the fit cannot see that failure coming, the floor can. A province
#: read alone (``plate_province``) may be smaller: its floor, 18 px, is where the glyph's cuts last
#: agreed on a wrong province (新 for 沪 at 16.5 px on a downscaled copy of the set). For
#: containers the development set holds no wrong read with a read, valid check digit, so every
#: fit lands on the floors: all characters but one at 0.85 (the recogniser's Latin characters
#: at 0.85+ were right 99 % of the time), the one doubtful digit at 0.3 (any single substitution
#: is caught by the check digit whatever its confidence).
GRID: dict[str, tuple[float, ...]] = {
    "plate_min_conf": (0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99),
    "province_px": (40.0, 45.0, 50.0, 60.0, 1e9),
    "province_px_alone": (18.0, 24.0, 30.0, 40.0, 1e9),
    "container_sure": (0.85, 0.9, 0.93, 0.95, 0.97, 0.99),
    "container_min_one": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
}

#: The most a doubtful character's slips (the characters with which the number would still be
#: valid: ``ContainerRead.slip_weights``) may weigh for the check digit to pin it. A prior, not a fit:
#: the development set has no read with a wrong character and a valid number. Over its reads,
#: the doubtful characters' slips weighed little (c0019's owner letter D at 0.78: N and X at
#: 0.0006), but for c0080's fold digits (docs/recognition.md has the figures).
SLIP_MAX = 0.01
#: The most any character's slips may weigh, sure characters too. A prior, not a fit: a slip
#: the recogniser gives one chance in ten is a second valid reading an officer must see (a
#: sure mark E before the true O it gives 0.15–0.5: ESKU… for OSKU…). Over the development
#: set the sure characters' slips of the confirmed reads weighed at most 0.041 but for c0020's S
#: (I at 0.20, read with a mark above its vertical code). The same bound holds plates
#: (``PlateRead.slip_weights``: with no check digit, every other character a position allows is a
#: slip): 1000 labelled plate crops outside the development set gave one confirmed wrong read
#: with a slip over it (皖ACC998 as 皖ALC998: U at 0.18).
SURE_SLIP_MAX = 0.1

#: Fitted on the whole development set (``portlane ocr eval DIR --fit``); docs/recognition.md.
SHIPPED = Policy(
    plate_min_conf=0.7, province_px=40.0, province_px_alone=18.0, container_sure=0.85, container_min_one=0.3
)


def _hanzi(r: PlateRead) -> list[float]:
    return [c for ch, c in zip(r.text, r.char_confidences, strict=False) if not ch.isascii()]


def plate_decision(r: PlateRead, policy: Policy = SHIPPED) -> tuple[str, str]:
    """(status, doubt) of a plate read under ``policy``; a structural doubt stays."""
    if r.doubt in STRUCTURAL:
        return LOW_CONFIDENCE, r.doubt
    hanzi = _hanzi(r)
    if (
        r.confidence < policy.plate_min_conf
        or r.cost > policy.plate_max_cost
        or any(c < policy.province_conf for c in hanzi)
    ):
        return LOW_CONFIDENCE, "confidence"
    if any(w > SURE_SLIP_MAX for w in r.slip_weights):
        # another plate the recogniser gives one chance in ten (皖ACC998 read 皖ALC998 at 0.82,
        # U at 0.18, the true C at 0.001): no check digit can tell them apart
        return LOW_CONFIDENCE, "slip"
    if r.kind == "cn" and hanzi:
        floor = policy.province_px_alone if r.province_alone else policy.province_px
        if r.glyph_px is None or r.glyph_px < min(floor, policy.province_px):
            return LOW_CONFIDENCE, "province"
    return CONFIRMED, ""


def container_decision(r: ContainerRead, policy: Policy = SHIPPED) -> tuple[str, str]:
    """(status, doubt) of a container read under ``policy``; a structural doubt stays."""
    if r.doubt in STRUCTURAL:
        return LOW_CONFIDENCE, r.doubt
    if not r.check_digit_ok:
        return LOW_CONFIDENCE, "check_digit"
    if r.check_digit_inferred:
        return LOW_CONFIDENCE, "inferred"
    if r.corrected:
        return LOW_CONFIDENCE, "corrected"
    if r.cost > policy.container_max_cost:
        return LOW_CONFIDENCE, "grammar"
    cc = r.char_confidences
    if len(cc) != 11:
        return LOW_CONFIDENCE, "confidence"
    weakest = sorted(cc)
    if weakest[0] < policy.container_min_one or weakest[1] < policy.container_sure:
        return LOW_CONFIDENCE, "confidence"
    doubtful = [i for i, c in enumerate(cc) if c < policy.container_sure]  # one at most, here
    if doubtful and not _pinned(r, doubtful[0]):
        # an owner letter: letters 11 apart slip the check; with check digit 0 (shared by
        # remainders 0 and 10: the fold) one substitution before it can
        return LOW_CONFIDENCE, "confidence" if doubtful[0] < 3 else "fold"
    if second_reading(r):
        # a sure character beside a weighty slip: a sure mark E before a faint true O reads as
        # a sure ESKU… for OSKU…, and the check digit cannot tell them apart
        return LOW_CONFIDENCE, "slip"
    return CONFIRMED, ""


def second_reading(r: ContainerRead) -> bool:
    """The recogniser gives another valid number weight: a slip of any character over
    ``SURE_SLIP_MAX``. The mark and the faint letter behind it are on the box, so one such read
    holds every read of its number (the frames of a passage, the crops of a frame)."""
    return r.doubt == "slip" or any(w > SURE_SLIP_MAX for w in r.slip_weights)


def _pinned(r: ContainerRead, i: int) -> bool:
    """The doubtful character ``i`` of a valid number whose ten others are sure is pinned by
    the check digit: every other character there makes the number invalid, or weighs at most
    ``SLIP_MAX`` in the recogniser's eyes (``ContainerRead.slip_weights``). Without them
    measured: a digit or the category letter of a number whose check digit is not 0 (the check
    digit detects every single substitution there; remainders 0 and 10 share check digit 0, so
    one substitution can move a number between them), or the check digit itself."""
    if len(r.slip_weights) == 11:
        return r.slip_weights[i] <= SLIP_MAX
    return i == 10 or (i >= 3 and r.number[10] != "0")


@overload
def decide(r: PlateRead, policy: Policy = ...) -> PlateRead: ...
@overload
def decide(r: ContainerRead, policy: Policy = ...) -> ContainerRead: ...
def decide(r: PlateRead | ContainerRead, policy: Policy = SHIPPED) -> PlateRead | ContainerRead:
    """``r`` with the status and doubt ``policy`` gives it."""
    if isinstance(r, PlateRead):
        status, doubt = plate_decision(r, policy)
        return replace(r, status=status, doubt=doubt)
    status, doubt = container_decision(r, policy)
    return replace(r, status=status, doubt=doubt)


# -- fitting ----------------------------------------------------------------------------------------

#: A labelled read: the read and whether its text is one of its image's labels.
Labelled = tuple[PlateRead | ContainerRead, bool]


def _count(samples: Sequence[Labelled], policy: Policy) -> tuple[int, int]:
    right = wrong = 0
    for r, ok in samples:
        status = plate_decision(r, policy)[0] if isinstance(r, PlateRead) else container_decision(r, policy)[0]
        if status == CONFIRMED:
            right += ok
            wrong += not ok
    return right, wrong


def fit(samples: Sequence[Labelled], *, base: Policy = SHIPPED) -> Policy:
    """The most permissive policy on :data:`GRID` that confirms no wrong read of ``samples`` and
    none either one grid step more permissive in any threshold (the margin); ties go to the
    stricter policy. Plate and container thresholds are fitted on their own reads."""
    plates = [s for s in samples if isinstance(s[0], PlateRead)]
    boxes = [s for s in samples if isinstance(s[0], ContainerRead)]
    policy = base
    for names, group in (
        (("plate_min_conf", "province_px", "province_px_alone"), plates),
        (("container_sure", "container_min_one"), boxes),
    ):
        if not group:
            continue
        best: tuple[int, Policy] | None = None
        axes = [GRID[n] for n in names]
        for idx in itertools.product(*(range(len(a)) for a in axes)):
            cand = replace(policy, **{n: a[i] for n, a, i in zip(names, axes, idx, strict=True)})
            right, wrong = _count(group, cand)
            if wrong:
                continue
            looser = [
                replace(cand, **{n: axes[k][idx[k] - 1]}) for k, n in enumerate(names) if idx[k] > 0
            ]  # one step more permissive along each axis
            if any(_count(group, p)[1] for p in looser):
                continue
            if best is None or right > best[0]:
                best = (right, cand)
        policy = (
            best[1] if best is not None else replace(policy, **{n: a[-1] for n, a in zip(names, axes, strict=True)})
        )
    return policy


# -- reliability ---------------------------------------------------------------------------------


def isotonic(points: Iterable[tuple[float, bool]]) -> Callable[[float], float]:
    """Monotone (pool-adjacent-violators) map from a score to the share of right reads, each
    block smoothed towards 1/2 by one pseudo-read each way (a block of 3 right reads is 0.8, not
    1). Scores below the lowest seen map to the lowest block."""
    pts = sorted(points)
    blocks: list[list[float]] = []  # [max score, right, n]
    for x, ok in pts:
        blocks.append([x, float(ok), 1.0])
        while len(blocks) >= 2 and blocks[-2][1] / blocks[-2][2] >= blocks[-1][1] / blocks[-1][2]:
            x2, r2, n2 = blocks.pop()
            blocks[-1] = [x2, blocks[-1][1] + r2, blocks[-1][2] + n2]
    table = [(b[0], (b[1] + 1) / (b[2] + 2)) for b in blocks]

    def f(x: float) -> float:
        if not table:
            return 0.5
        for hi, p in table:
            if x <= hi:
                return p
        return table[-1][1]

    return f


def reliability(
    points: Sequence[tuple[float, bool]], edges: Sequence[float] = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 1.0001)
) -> list[dict[str, float | int | str]]:
    """Held-out (predicted probability, right) pairs binned: per bin the number of reads, the mean
    predicted probability and the share that was right — the reliability curve as a table."""
    out: list[dict[str, float | int | str]] = []
    for lo, hi in itertools.pairwise(edges):
        inbin = [(p, ok) for p, ok in points if lo <= p < hi]
        if not inbin:
            continue
        out.append(
            {
                "bin": f"{lo:.2f}–{min(hi, 1.0):.2f}",
                "n": len(inbin),
                "predicted": round(sum(p for p, _ in inbin) / len(inbin), 3),
                "observed": round(sum(ok for _, ok in inbin) / len(inbin), 3),
            }
        )
    return out
