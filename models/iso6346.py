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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .grammar import LOW_CONFIDENCE

__all__ = [
    "CONFUSABLES",
    "HEIGHT_CODES",
    "LENGTH_CODES",
    "SIZE_TYPE_TEMPLATE",
    "TYPE_CODES",
    "ContainerRead",
    "SizeType",
    "check_digit",
    "correct",
    "is_valid",
    "is_valid_size_type",
    "letter_value",
    "remainder",
    "size_type",
    "size_type_valid",
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

# -- size and type code (ISO 6346:1995 §4 and Annexes D, E) -------------------------------------
# The one home of the table: the reader checks what it reads against it, and declaration
# matching compares declared and read codes with :func:`size_type_valid` / :func:`size_type`.

#: First character: external length (mm).
LENGTH_CODES: dict[str, int] = {
    "1": 2991,  # 10 ft
    "2": 6058,  # 20 ft
    "3": 9125,  # 30 ft
    "4": 12192,  # 40 ft
    "A": 7150,
    "B": 7315,  # 24 ft
    "C": 7430,  # 24 ft 6 in
    "D": 7450,
    "E": 7820,
    "F": 8100,
    "G": 12500,  # 41 ft
    "H": 13106,  # 43 ft
    "K": 13600,
    "L": 13716,  # 45 ft
    "M": 14630,  # 48 ft
    "N": 14935,  # 49 ft
    "P": 16154,  # 53 ft
}
#: Second character: external height (mm) and width class (``2438`` mm, ``2438-2500``, ``>2500``);
#: a height of 0 means "more than 2895 mm", -1 "at most 1219 mm".
HEIGHT_CODES: dict[str, tuple[int, str]] = {
    "0": (2438, "2438"),
    "2": (2591, "2438"),
    "4": (2743, "2438"),
    "5": (2895, "2438"),  # high cube
    "6": (0, "2438"),
    "8": (1295, "2438"),
    "9": (-1, "2438"),
    "C": (2591, "2438-2500"),
    "D": (2743, "2438-2500"),
    "E": (2895, "2438-2500"),
    "F": (0, "2438-2500"),
    "L": (2591, ">2500"),
    "M": (2743, ">2500"),
    "N": (2895, ">2500"),
    "P": (0, ">2500"),
}
#: Last two characters: the type code and its type group (the assigned codes only; spare codes
#: such as ``G5`` are not a container anyone builds, so a read of one is a misread).
TYPE_CODES: dict[str, tuple[str, str]] = {
    "G0": ("GP", "general purpose, openings at one or both ends"),
    "G1": ("GP", "general purpose, passive vents at the upper part"),
    "G2": ("GP", "general purpose, openings at ends and full openings at sides"),
    "G3": ("GP", "general purpose, openings at ends and partial openings at sides"),
    "V0": ("VH", "ventilated, non-mechanical vents at lower and upper parts"),
    "V2": ("VH", "ventilated, mechanical system inside"),
    "V4": ("VH", "ventilated, mechanical system outside"),
    "B0": ("BU", "dry bulk, non-pressurised, closed"),
    "B1": ("BU", "dry bulk, non-pressurised, airtight"),
    "B3": ("BK", "dry bulk, pressurised, horizontal discharge, 150 kPa"),
    "B4": ("BK", "dry bulk, pressurised, horizontal discharge, 265 kPa"),
    "B5": ("BK", "dry bulk, pressurised, tipping discharge, 150 kPa"),
    "B6": ("BK", "dry bulk, pressurised, tipping discharge, 265 kPa"),
    "S0": ("SN", "named cargo: livestock"),
    "S1": ("SN", "named cargo: automobiles"),
    "S2": ("SN", "named cargo: live fish"),
    "R0": ("RE", "thermal, mechanically refrigerated"),
    "R1": ("RT", "thermal, mechanically refrigerated and heated"),
    "R2": ("RS", "thermal, self-powered refrigerated"),
    "R3": ("RS", "thermal, self-powered refrigerated and heated"),
    "H0": ("HR", "thermal, refrigerated/heated, removable equipment outside, K=0.4"),
    "H1": ("HR", "thermal, refrigerated/heated, removable equipment inside"),
    "H2": ("HR", "thermal, refrigerated/heated, removable equipment outside, K=0.7"),
    "H5": ("HI", "thermal, insulated, K=0.4"),
    "H6": ("HI", "thermal, insulated, K=0.7"),
    "U0": ("UT", "open top, openings at one or both ends"),
    "U1": ("UT", "open top, removable top members in end frames"),
    "U2": ("UT", "open top, openings at ends and sides"),
    "U3": ("UT", "open top, openings at ends and sides, removable top members"),
    "U4": ("UT", "open top, partial opening one side, full the other"),
    "U5": ("UT", "open top, complete fixed sides and ends"),
    "P0": ("PL", "platform"),
    "P1": ("PF", "platform, two complete fixed ends"),
    "P2": ("PF", "platform, fixed posts"),
    "P3": ("PC", "platform, folding complete ends"),
    "P4": ("PC", "platform, folding posts"),
    "P5": ("PS", "platform, open top and ends (skeletal)"),
    "T0": ("TN", "tank, non-dangerous liquids, 45 kPa"),
    "T1": ("TN", "tank, non-dangerous liquids, 150 kPa"),
    "T2": ("TN", "tank, non-dangerous liquids, 265 kPa"),
    "T3": ("TD", "tank, dangerous liquids, 150 kPa"),
    "T4": ("TD", "tank, dangerous liquids, 265 kPa"),
    "T5": ("TD", "tank, dangerous liquids, 400 kPa"),
    "T6": ("TD", "tank, dangerous liquids, 600 kPa"),
    "T7": ("TG", "tank, gases, 910 kPa"),
    "T8": ("TG", "tank, gases, 2200 kPa"),
    "T9": ("TG", "tank, gases, pressure to be decided"),
    "A0": ("AS", "air/surface"),
}


@dataclass(frozen=True, slots=True)
class SizeType:
    """A size and type code looked up in the table (``22G1``: 20 ft, 8 ft 6 in, general purpose)."""

    code: str
    length_mm: int
    height_mm: int  # 0: more than 2895 mm; -1: at most 1219 mm
    width: str  # "2438", "2438-2500" or ">2500" (mm)
    type_code: str
    group: str  # ISO type group: GP, RT, UT, TN …
    description: str


def size_type(code: str) -> SizeType | None:
    """The size and type code ``code`` (separators and case ignored) in the ISO 6346 table, or
    None if any of its parts is not an assigned code."""
    c = re.sub(r"[\s\-]", "", code).upper()
    if len(c) != 4 or c[0] not in LENGTH_CODES or c[1] not in HEIGHT_CODES or c[2:] not in TYPE_CODES:
        return None
    height, width = HEIGHT_CODES[c[1]]
    group, description = TYPE_CODES[c[2:]]
    return SizeType(c, LENGTH_CODES[c[0]], height, width, c[2:], group, description)


def size_type_valid(code: str) -> bool:
    """True if ``code`` is an ISO 6346 size and type code of the table (``22G1``, ``45R1``, ``L5G1``)."""
    return size_type(code) is not None


def is_valid_size_type(code: str) -> bool:
    """Old name of :func:`size_type_valid`."""
    return size_type_valid(code)


#: The size/type grammar for the CTC decoder: every character any assigned code may have.
SIZE_TYPE_TEMPLATE: tuple[str, str, str, str] = (
    "".join(LENGTH_CODES),
    "".join(HEIGHT_CODES),
    "".join(sorted({t[0] for t in TYPE_CODES})),
    "".join(sorted({t[1] for t in TYPE_CODES})),
)


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
    status: str = LOW_CONFIDENCE
    char_confidences: tuple[float, ...] = ()
    #: nats the grammar path lies below the recogniser's free best path
    cost: float = 0.0
    #: why the read is low_confidence (``calibration.py``): ``inferred``, ``corrected``, ``fold``,
    #: ``rival``, ``confidence`` …; ``""`` when confirmed
    doubt: str = ""
    #: per character, the recogniser's highest probability, over its glyph's frames, for another
    #: character with which the number is still valid (a substitution the check digit cannot
    #: catch: owner letters 11 apart, a digit through the 10 -> 0 fold); ``()`` when not measured
    slip_weights: tuple[float, ...] = ()

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
            "doubt": self.doubt,
            "box": list(self.box) if self.box else None,
            "char_confidences": list(self.char_confidences),
            "cost": self.cost,
            "slip_weights": list(self.slip_weights),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ContainerRead:
        """What :meth:`as_dict` wrote (``KeyError``/``ValueError``/``TypeError`` when it is not)."""
        box = d.get("box")
        iso_type = d.get("iso_type")
        return cls(
            number=str(d["number"]),
            check_digit_ok=bool(d["check_digit_ok"]),
            check_digit_inferred=bool(d.get("check_digit_inferred", False)),
            corrected=bool(d.get("corrected", False)),
            iso_type=None if iso_type is None else str(iso_type),
            confidence=float(d["confidence"]),
            box=(int(box[0]), int(box[1]), int(box[2]), int(box[3])) if box else None,
            status=str(d.get("status", LOW_CONFIDENCE)),
            char_confidences=tuple(float(x) for x in d.get("char_confidences", ())),
            cost=float(d.get("cost", 0.0)),
            doubt=str(d.get("doubt", "")),
            slip_weights=tuple(float(x) for x in d.get("slip_weights", ())),
        )


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
