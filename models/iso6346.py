"""ISO 6346 container identification: owner code, category, serial, check digit; size/type code.

``CSQU3054383``: owner ``CSQ`` + category ``U`` (freight container; ``J`` detachable equipment,
``Z`` trailer/chassis) + serial ``305438`` + check digit ``3``.

Check digit: letters take the values A=10, B=12 … Z=38 — counting up from 10 and skipping 11, 22
and 33, the multiples of 11 — digits their own value; each of the first 10 characters is
multiplied by 2**position, the sum is taken mod 11 and then mod 10 (so remainder 10 gives 0,
which is why owners avoid serials that produce it).

Correction policy (DESIGN §Identifiers): a read whose check digit fails is never accepted. A
correction is allowed only when the *check digit itself confirms it*: :func:`correct` searches
substitutions drawn from the recogniser's own alternatives (or, without probabilities, from the
confusable pairs O/0, I/1, B/8, S/5 …) and returns a candidate only if it validates.
"""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "CONFUSABLES",
    "ContainerRead",
    "check_digit",
    "correct",
    "is_valid",
    "is_valid_size_type",
    "letter_value",
    "remainder",
]

CATEGORIES = "UJZ"
_FORMAT = re.compile(r"^[A-Z]{3}[UJZ][0-9]{7}$")


def _letter_values() -> dict[str, int]:
    values: dict[str, int] = {}
    v = 10
    for ch in string.ascii_uppercase:
        if v % 11 == 0:
            v += 1
        values[ch] = v
        v += 1
    return values


_VALUES = _letter_values()


def letter_value(ch: str) -> int:
    if ch.isdigit():
        return int(ch)
    return _VALUES[ch]


def check_digit(first10: str) -> int:
    """Check digit of owner code + category + serial (10 characters)."""
    if len(first10) != 10 or not re.fullmatch(r"[A-Z]{3}[UJZ][0-9]{6}", first10):
        raise ValueError(f"not an ISO 6346 owner code + category + serial: {first10!r}")
    total = sum(letter_value(c) << i for i, c in enumerate(first10))
    return total % 11 % 10


def remainder(first10: str) -> int:
    """The weighted sum mod 11 before the mod-10 fold. 10 folds to check digit 0, so such a
    number shares its check digit with the numbers of remainder 0; owners avoid issuing these
    serials (ISO 6346 Annex A), which makes a read with remainder 10 improbable."""
    return sum(letter_value(c) << i for i, c in enumerate(first10)) % 11


def is_valid(number: str) -> bool:
    return bool(_FORMAT.match(number)) and check_digit(number[:10]) == int(number[10])


#: Characters a recogniser confuses, both ways. Letters live in positions 0–3, digits in 4–10,
#: so within a position class only same-class swaps matter (e.g. 8/6/3, O/Q/D, M/N).
CONFUSABLES: dict[str, str] = {
    "0": "869",
    "1": "7",
    "2": "7Z",
    "3": "8",
    "4": "1",
    "5": "6S",
    "6": "508",
    "7": "12",
    "8": "0635B",
    "9": "0",
    "O": "QDC0U",
    "Q": "O",
    "D": "O0",
    "I": "LT1",
    "L": "I",
    "B": "8R",
    "S": "5",
    "Z": "2",
    "M": "NH",
    "N": "MH",
    "H": "NM",
    "U": "VOJ",
    "V": "U",
    "C": "GO",
    "G": "C6",
    "E": "F",
    "F": "E",
    "R": "B",
    "J": "U",
    "T": "I",
    "K": "X",
    "X": "K",
    "W": "V",
}

_SIZE_TYPE = re.compile(r"^[1-4LMNP][0-9CDEF][GVBSRHUPTAK][0-9]$")


def is_valid_size_type(code: str) -> bool:
    """ISO 6346 size/type code such as ``22G1``, ``45R1``, ``L5G1`` (first two: length, height/width)."""
    return bool(_SIZE_TYPE.match(code))


@dataclass(frozen=True, slots=True)
class ContainerRead:
    """One container number read from one image.

    ``status`` is ``confirmed`` only with support independent of the check digit (which alone is
    a 1-in-10 guard): every character read above the calibrated threshold with the check digit
    itself read, not computed or corrected. Everything else is ``low_confidence``: an officer looks.
    """

    number: str
    check_digit_ok: bool
    check_digit_inferred: bool = False
    corrected: bool = False
    iso_type: str | None = None
    confidence: float = 0.0
    box: tuple[int, int, int, int] | None = None
    status: str = "low_confidence"
    char_confidences: tuple[float, ...] = ()

    @property
    def owner(self) -> str:
        return self.number[:3]

    @property
    def category(self) -> str:
        return self.number[3:4]

    @property
    def serial(self) -> str:
        return self.number[4:10]

    @property
    def check(self) -> str:
        return self.number[10:11]

    def as_dict(self) -> dict[str, object]:
        return {
            "number": self.number,
            "owner": self.owner,
            "category": self.category,
            "serial": self.serial,
            "check_digit": self.check,
            "check_digit_ok": self.check_digit_ok,
            "check_digit_inferred": self.check_digit_inferred,
            "corrected": self.corrected,
            "iso_type": self.iso_type,
            "confidence": self.confidence,
            "status": self.status,
            "box": list(self.box) if self.box else None,
        }


def correct(
    number: str, alternatives: Sequence[Iterable[str]] | None = None, *, max_changes: int = 2, avoid_ten: bool = False
) -> str | None:
    """The nearest number to ``number`` (11 characters) whose check digit validates, or None.

    ``alternatives[i]`` are the characters position ``i`` may take instead (best first); without
    them the confusable table is used. Fewer changes win; among equals, earlier alternatives.
    Returns ``number`` itself if it is valid; None if no candidate within ``max_changes``
    validates or if two different candidates with the same number of changes both validate
    (ambiguous: the check digit does not *confirm* either).

    ``avoid_ten``: numbers whose remainder is 10 (see :func:`remainder`) neither count as valid
    nor as candidates.
    """
    if len(number) != 11:
        return None

    def ok(s: str) -> bool:
        return is_valid(s) and not (avoid_ten and remainder(s[:10]) == 10)

    if ok(number):
        return number
    alts: list[list[str]] = []
    for i, ch in enumerate(number):
        pool = list(alternatives[i]) if alternatives is not None else list(CONFUSABLES.get(ch, ""))
        want = string.ascii_uppercase if i < 3 else CATEGORIES if i == 3 else string.digits
        alts.append([c for c in dict.fromkeys(pool) if c != ch and c in want])
    for k in range(1, max_changes + 1):
        found: set[str] = set()
        for positions in itertools.combinations(range(11), k):
            for subs in itertools.product(*(alts[p] for p in positions)):
                cand = list(number)
                for p, c in zip(positions, subs, strict=True):
                    cand[p] = c
                s = "".join(cand)
                if ok(s):
                    found.add(s)
        if len(found) == 1:
            return found.pop()
        if found:
            return None
    return None
