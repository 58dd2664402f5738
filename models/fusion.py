"""Fusion of one passage's reads (several frames, two to four cameras) into identities.

The one home of fusion: the lane (``edge/recognition.py``) and the CLI use these functions.

Each read votes for its text with its confidence. A text's fused confidence is its share of
the votes of its rivals times its best single read (many weak reads of a text do not make it
certain; one strong read contradicted by another is not certain either).

Status (what the lane may act on without an officer):

* ``confirmed`` — independent support: two or more frames/cameras agree on the text, or one
  read is itself confirmed (characters above the calibrated threshold); and no rival read is
  confirmed or carries a quarter of the winner's votes. **Agreement raises confidence,
  disagreement lowers it.**
* ``low_confidence`` — anything else, with a named ``doubt`` for the officer: ``rival`` (another
  reading of the same plate or box has weight), ``slip`` (a read showed another valid number or
  plate with weight), ``slant`` (a slanted plate's two views disagreed), or the reader's own
  doubt of the winner's surest read (``province``,
  ``framing``, ``inferred``, ``fold``, ``confidence`` …: ``PlateRead.doubt``,
  ``ContainerRead.doubt``).

Rivals: plates of the same group (a cross-boundary car carries a HK/Macau plate *and* a 粤Z
plate: those are partners, not rivals — ``PlateIdentity.paired``); container numbers that
differ in at most three characters (one box misread, not two boxes — a truck may carry two 20'
boxes, each gets its identity). A container read whose check digit failed never votes; one
with an inferred check digit or a correction needs another read to agree before it counts as
support. One read of a number with a weighty slip (``calibration.second_reading``: a mark
beside a faint letter, another valid number the recogniser gives weight) holds that number,
however many other reads confirm it: the mark is on the box, and how much the faint letter
weighs changes from frame to frame. A plate read held for a ``slip``, a ``slant``, an
``upscaled`` find or a ``fragment`` (``SECOND_READING``) holds its plate the same way: the
frames of one camera share its resolution and its angle, and repeat its misreading.

Pure Python: importable from the lane without numpy, cv2 or onnxruntime.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from .calibration import SHIPPED, second_reading
from .grammar import CONFIRMED, LOW_CONFIDENCE, PlateRead
from .iso6346 import ContainerRead, check_digit

__all__ = ["ContainerIdentity", "PlateIdentity", "first_fit", "fuse", "fuse_containers", "fuse_plates"]

T = TypeVar("T")

#: A plate read's doubts that hold its plate however many frames agree: a second reading has
#: weight (``slip``), the two views of a slanted plate disagreed (``slant``), the plate was
#: found only in a small frame enlarged (``upscaled``), or a mark is part of a longer line
#: (``fragment``).
SECOND_READING = ("slip", "slant", "upscaled", "fragment")
#: A rival with at least this share of the winner's votes makes the winner doubtful.
RIVAL_SHARE = 0.25


@dataclass(frozen=True, slots=True)
class PlateIdentity:
    text: str
    kind: str
    confidence: float
    votes: int
    status: str = LOW_CONFIDENCE
    paired: PlateIdentity | None = None
    #: why it is not confirmed (module docstring); "" when confirmed
    doubt: str = ""


@dataclass(frozen=True, slots=True)
class ContainerIdentity:
    number: str
    confidence: float
    votes: int
    check_digit_inferred: bool
    status: str = LOW_CONFIDENCE
    iso_type: str | None = None
    #: why it is not confirmed (module docstring); "" when confirmed
    doubt: str = ""


@dataclass(frozen=True, slots=True)
class _Tally:
    key: str
    confidence: float
    votes: int
    status: str
    doubt: str


def _tally(items: Sequence[tuple[str, float, bool, bool, str]]) -> _Tally | None:
    """``items``: (text, confidence, read confirmed, read counts as support, the read's doubt) of
    one rival group."""
    score: dict[str, float] = {}
    best: dict[str, float] = {}
    count: dict[str, int] = {}
    confirmed: dict[str, bool] = {}
    support: dict[str, int] = {}
    for key, conf, ok, sup, _doubt in items:
        c = max(0.0, min(1.0, conf))
        score[key] = score.get(key, 0.0) + c
        best[key] = max(best.get(key, 0.0), c)
        count[key] = count.get(key, 0) + 1
        confirmed[key] = confirmed.get(key, False) or ok
        support[key] = support.get(key, 0) + sup
    total = sum(score.values())
    if not score or total <= 0:
        return None
    win = max(score, key=lambda k: (score[k], count[k]))
    rivals = [k for k in score if k != win and (confirmed[k] or score[k] >= RIVAL_SHARE * score[win])]
    agreed = support[win] >= 2
    status = CONFIRMED if (confirmed[win] or agreed) and not rivals else LOW_CONFIDENCE
    conf = score[win] / total * best[win]
    if agreed and not rivals:
        # independent reads agreeing: the chance both are wrong the same way is the product
        others = sorted((c for k, c, _ok, _s, _d in items if k == win), reverse=True)
        conf = 1.0 - (1.0 - others[0]) * (1.0 - others[1])
    doubt = ""
    if status != CONFIRMED:
        # the surest read's own doubt (a low_confidence read names one; "confidence" if not)
        surest = max((it for it in items if it[0] == win), key=lambda it: it[1])
        doubt = "rival" if rivals else surest[4] or "confidence"
    return _Tally(win, round(conf, 4), count[win], status, doubt)


def fuse_plates(reads: Iterable[PlateRead]) -> list[PlateIdentity]:
    """One identity per plate group: the home plate (mainland, HK or Macau) and, for a
    cross-boundary car, its 粤Z plate. Main plate first."""
    reads = list(reads)
    kind_of = {r.text: r.kind for r in reads}
    out: list[PlateIdentity] = []
    home = [r for r in reads if r.kind != "cn_crossborder"]
    cross = [r for r in reads if r.kind == "cn_crossborder"]
    for rs in (home, cross):
        t = _tally([(r.text, r.confidence, r.status == CONFIRMED, True, r.doubt) for r in rs])
        if t is None:
            continue
        status, doubt = t.status, t.doubt
        held = next((r.doubt for r in rs if r.text == t.key and r.doubt in SECOND_READING), None)
        if held is not None:
            # as a container's slip: the frames of one camera repeat its misreading, so agreeing
            # frames are no evidence against a second reading one of them gave weight
            status, doubt = LOW_CONFIDENCE, held
        out.append(PlateIdentity(t.key, kind_of[t.key], t.confidence, t.votes, status, doubt=doubt))
    return out


def fuse(reads: Iterable[PlateRead]) -> PlateIdentity | None:
    """One identity for a passage's plate reads; a HK/Macau + 粤Z dual plate comes back paired."""
    ids = fuse_plates(reads)
    if not ids:
        return None
    sar = next((i for i in ids if i.kind in ("hk", "macau")), None)
    cross = next((i for i in ids if i.kind == "cn_crossborder"), None)
    if sar is not None and cross is not None:
        return PlateIdentity(sar.text, sar.kind, sar.confidence, sar.votes, sar.status, paired=cross, doubt=sar.doubt)
    return ids[0]


def first_fit(items: Iterable[T], same: Callable[[T, T], bool]) -> list[list[T]]:
    """``items`` in groups, in their order: each joins the first group holding an item it is
    ``same`` as (the reads of one plate or one box), or starts a group of its own."""
    groups: list[list[T]] = []
    for it in items:
        for g in groups:
            if any(same(it, o) for o in g):
                g.append(it)
                break
        else:
            groups.append([it])
    return groups


def _near(a: str, b: str) -> bool:
    return len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) <= 3


def _support(r: ContainerRead) -> bool:
    """Whether a read agreeing with another confirms their number: not when its check digit was
    computed or corrected."""
    return not (r.check_digit_inferred or r.corrected)


def _unfounded(r: ContainerRead, verified: Sequence[ContainerRead]) -> bool:
    """Whether ``r``, its check digit computed (``inferred``), differs from a number confirmed
    with its own check digit read in one letter of the owner code (or the category), which ``r``
    reads unsure and the confirmed read sure (the shipped policy's ``container_sure``), and
    which the confirmed read's check digit rules out: no evidence of another number, so no rival.

    Found on gate side cameras outside the development set: the number's horizontal line is
    confirmed, and the vertical column beside it reads its first letter as ``I`` at 0.4–0.77
    with its check digit cut off (``IEMU5037028`` beside ``TEMU5037029``); every such box needed
    an officer. A serial digit is never dropped this way (a second box on the truck may differ
    from the first in one digit of its serial), nor a letter 11 apart from the confirmed one (the
    check digit cannot tell them apart), nor a read without a confidence for that letter, nor one
    that another confirmed read repeats."""
    if not r.check_digit_inferred or len(r.number) != 11 or any(v.number == r.number for v in verified):
        return False
    conf = r.char_confidences
    for v in verified:
        if len(v.number) != 11:
            continue
        diff = [i for i in range(10) if r.number[i] != v.number[i]]
        if len(diff) != 1 or diff[0] > 3:
            continue
        (i,) = diff
        sure = v.char_confidences
        # no confidence for the letter, or NaN: not known to be unsure
        if i >= len(conf) or i >= len(sure) or not conf[i] < SHIPPED.container_sure <= sure[i]:
            continue
        try:
            if check_digit(r.number[:10]) != int(v.number[10]):
                return True
        except ValueError:  # not a number at all (a read off the wire): it decides nothing
            continue
    return False


def fuse_containers(reads: Iterable[ContainerRead]) -> list[ContainerIdentity]:
    """One identity per physical box, most voted first; reads whose check digit failed do not
    vote, nor do reads whose computed check digit rests on one unsure owner letter a confirmed
    number rules out (:func:`_unfounded`)."""
    good = sorted((r for r in reads if r.check_digit_ok), key=lambda r: -r.confidence)
    groups = first_fit(good, lambda r, o: _near(r.number, o.number))
    out: list[ContainerIdentity] = []
    for g in groups:
        verified = [r for r in g if r.status == CONFIRMED and _support(r)]
        g = [r for r in g if not _unfounded(r, verified)]
        t = _tally([(r.number, r.confidence, r.status == CONFIRMED, _support(r), r.doubt) for r in g])
        if t is None:
            continue
        mine = [r for r in g if r.number == t.key]
        iso = next((r.iso_type for r in mine if r.iso_type), None)
        status, doubt = t.status, t.doubt
        if any(second_reading(r) for r in mine):
            # one read showing another valid number with weight holds the number, as a rival does
            status, doubt = LOW_CONFIDENCE, "slip"
        inferred = all(r.check_digit_inferred for r in mine)
        out.append(ContainerIdentity(t.key, t.confidence, t.votes, inferred, status, iso, doubt=doubt))
    out.sort(key=lambda i: (-i.votes, -i.confidence))
    return out
