"""Fusion of one passage's reads (several frames, several cameras) into one identity.

Each read votes for its text with its confidence; the identity is the text with the largest
summed confidence, and its confidence is that sum's share of all votes times the best single
read's confidence (many weak reads of a text do not make it certain; one strong read contradicted
by another is not certain either).

Dual plates: cross-boundary vehicles carry a Hong Kong or Macau plate *and* a 粤Z plate. When a
passage's reads contain both a ``hk``/``macau`` winner and a ``cn_crossborder`` winner, both are
returned as a pair (``PlateIdentity.paired``).

Pure Python: importable from the lane without numpy, cv2 or onnxruntime.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from .grammar import PlateRead
from .iso6346 import ContainerRead

__all__ = ["ContainerIdentity", "PlateIdentity", "fuse", "fuse_containers"]


@dataclass(frozen=True, slots=True)
class PlateIdentity:
    text: str
    kind: str
    confidence: float
    votes: int
    paired: PlateIdentity | None = None


@dataclass(frozen=True, slots=True)
class ContainerIdentity:
    number: str
    confidence: float
    votes: int
    check_digit_inferred: bool


def _vote(items: Iterable[tuple[str, float]]) -> tuple[str, float, int] | None:
    score: dict[str, float] = defaultdict(float)
    best: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for key, conf in items:
        c = max(0.0, min(1.0, conf))
        score[key] += c
        best[key] = max(best[key], c)
        count[key] += 1
    total = sum(score.values())
    if not score or total <= 0:
        return None
    win = max(score, key=lambda k: (score[k], count[k]))
    return win, round(score[win] / total * best[win], 4), count[win]


def fuse(reads: Iterable[PlateRead]) -> PlateIdentity | None:
    """One identity for a passage's plate reads; a HK/Macau + 粤Z dual plate comes back paired."""
    reads = list(reads)
    if not reads:
        return None
    kind_of = {r.text: r.kind for r in reads}
    groups = {
        "cross": [r for r in reads if r.kind == "cn_crossborder"],
        "sar": [r for r in reads if r.kind in ("hk", "macau")],
        "other": [r for r in reads if r.kind not in ("cn_crossborder", "hk", "macau")],
    }
    ids: dict[str, PlateIdentity] = {}
    for name, rs in groups.items():
        v = _vote((r.text, r.confidence) for r in rs)
        if v is not None:
            ids[name] = PlateIdentity(v[0], kind_of[v[0]], v[1], v[2])
    if "cross" in ids and "sar" in ids:
        sar, cross = ids["sar"], ids["cross"]
        return PlateIdentity(sar.text, sar.kind, sar.confidence, sar.votes, paired=cross)
    v = _vote((r.text, r.confidence) for r in reads)
    if v is None:
        return None
    return PlateIdentity(v[0], kind_of[v[0]], v[1], v[2])


def fuse_containers(reads: Iterable[ContainerRead]) -> ContainerIdentity | None:
    """One container number for a passage; reads whose check digit failed do not vote."""
    good = [r for r in reads if r.check_digit_ok]
    v = _vote((r.number, r.confidence) for r in good)
    if v is None:
        return None
    inferred = all(r.check_digit_inferred for r in good if r.number == v[0])
    return ContainerIdentity(v[0], v[1], v[2], inferred)
