"""Plate grammars: what a plate of each kind may contain, position by position.

Pure Python (no numpy): the lane and the CLI validate text with it without loading a model.

A grammar is a list of *templates*; a template is a tuple of allowed-character strings, one per
character position. The CTC decoder (``ctc.py``) searches the recogniser's probability matrix
for the best path through each template, so the grammar decides between candidates that the
network finds close (``0`` vs ``O`` in a serial, ``8`` vs ``B``), and a province Hanzi can only
be one of the 31 province abbreviations.

Kinds and formats (canonical text = what :func:`normalise` returns):

=================  ======================================================  =================
kind               format                                                   canonical example
=================  ======================================================  =================
``cn``             province + letter + 5 serial (blue/yellow/black)         ``粤B12345``
                   province + letter + 6 (new-energy green: ``[DF]`` first   ``沪AD12345``
                   or ``[DF]`` last)
                   province + letter + 4 serial + 学/警/挂/领/使/试/超       ``京A1234学``
``cn_crossborder`` 粤Z + 4 serial + 港/澳                                    ``粤ZA123港``
``hk``             1–2 letters (no I, O, Q) + 1–4 digits, no leading zero   ``AB1234``
``hk_personal``    Hong Kong personalised mark: 1–8 letters and digits       ``SPEED1``
                   (no I, O, Q), at least one letter; a fallback only —
                   almost any word fits, so never confirmed from one read
``macau``          M + letter + 4 digits, written MX-12-34                  ``MX-12-34``
=================  ======================================================  =================

Mainland serial letters are never I or O (they would be confused with 1 and 0).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "CN_PROVINCES",
    "CONFIRMED",
    "GRAMMARS",
    "LOW_CONFIDENCE",
    "PlateRead",
    "Template",
    "classify",
    "kinds",
    "mainland",
    "normalise",
    "plate_templates",
    "render_canonical",
]

CN_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
LETTERS = string.ascii_uppercase
DIGITS = string.digits
CN_SERIAL = "".join(c for c in LETTERS + DIGITS if c not in "IO")
CN_AUTHORITY = "".join(c for c in LETTERS if c != "I")
CN_SUFFIX = "学警挂领使试超"
HK_LETTERS = "".join(c for c in LETTERS if c not in "IOQ")
MACAU_SECOND = LETTERS

Template = tuple[str, ...]


def _cn_templates() -> list[Template]:
    p, a, s, d = CN_PROVINCES, CN_AUTHORITY, CN_SERIAL, DIGITS
    serial_no_letter = "".join(c for c in CN_SERIAL if c not in DIGITS)
    del serial_no_letter
    return [
        (p, a, s, s, s, s, s),
        # new-energy small car: D/F (electric/hybrid), then letter-or-digit, then 4 digits
        (p, a, "DF", s, d, d, d, d),
        # new-energy large vehicle: 5 digits then D/F
        (p, a, d, d, d, d, d, "DF"),
        (p, a, s, s, s, s, CN_SUFFIX),
    ]


def _crossborder_templates() -> list[Template]:
    return [("粤", "Z", CN_SERIAL, CN_SERIAL, CN_SERIAL, CN_SERIAL, "港澳")]


def _hk_templates() -> list[Template]:
    out: list[Template] = []
    nz = "123456789"
    for letters in (1, 2):
        for digits in (1, 2, 3, 4):
            out.append((HK_LETTERS,) * letters + (nz,) + (DIGITS,) * (digits - 1))
    return out


def _hk_personal_templates() -> list[Template]:
    a = HK_LETTERS + DIGITS
    return [(a,) * n for n in range(2, 9)]


def _macau_templates() -> list[Template]:
    return [("M", MACAU_SECOND, DIGITS, DIGITS, DIGITS, DIGITS)]


GRAMMARS: dict[str, list[Template]] = {
    "cn": _cn_templates(),
    "cn_crossborder": _crossborder_templates(),
    "hk": _hk_templates(),
    "hk_personal": _hk_personal_templates(),
    "macau": _macau_templates(),
}


def plate_templates(kinds: tuple[str, ...] = ("cn", "cn_crossborder", "hk", "macau")) -> list[tuple[str, Template]]:
    return [(k, t) for k in kinds for t in GRAMMARS[k]]


_SEPARATORS = re.compile(r"[\s·•.\-_:]")


def mainland(text: str) -> bool:
    """A mainland reading: the text starts with a province Hanzi."""
    return bool(text) and text[0] in CN_PROVINCES


def normalise(text: str) -> str:
    """Upper-case, drop separators (spaces, dots, hyphens) and full-width forms."""
    t = text.strip().upper()
    t = t.translate({0xFF10 + i: ord("0") + i for i in range(10)})
    t = t.translate({0xFF21 + i: ord("A") + i for i in range(26)})
    return _SEPARATORS.sub("", t)


def _matches(text: str, template: Template) -> bool:
    return len(text) == len(template) and all(c in allowed for c, allowed in zip(text, template, strict=True))


#: The plate kinds the grammars know (``hk_personal``: a Hong Kong personalised mark).
GrammarKind = Literal["cn", "cn_crossborder", "hk", "hk_personal", "macau"]
_ORDINARY: tuple[GrammarKind, ...] = ("cn_crossborder", "macau", "cn", "hk")


def classify(text: str, *, personal: bool = False) -> GrammarKind | None:
    """The plate kind whose grammar accepts ``text`` (any separators), or None.

    ``粤Z…港`` is cross-boundary even though it would also fit the generic suffix template.
    ``personal``: also accept a Hong Kong personalised mark (``hk_personal``) when no ordinary
    grammar does — off by default, since almost any short word fits it.
    """
    t = normalise(text)
    for kind in _ORDINARY:
        if any(_matches(t, tpl) for tpl in GRAMMARS[kind]):
            return kind
    if personal and any(c in HK_LETTERS for c in t) and any(_matches(t, tpl) for tpl in GRAMMARS["hk_personal"]):
        return "hk_personal"
    return None


def kinds(text: str) -> list[str]:
    """Every ordinary plate kind whose grammar accepts ``text`` (``MS6735`` is a Macau mark and a
    Hong Kong one: the plate's look decides, ``plate_look.py``)."""
    t = normalise(text)
    return [k for k in ("cn_crossborder", "macau", "cn", "hk") if any(_matches(t, tpl) for tpl in GRAMMARS[k])]


def render_canonical(text: str, kind: str) -> str:
    """Canonical display form: Macau plates keep their MX-12-34 hyphens, others are compact."""
    t = normalise(text)
    if kind == "macau" and len(t) == 6:
        return f"{t[:2]}-{t[2:4]}-{t[4:]}"
    return t


#: A read the lane may act on: every character, and the province Hanzi in particular, above the
#: thresholds calibrated on the development set (``pipeline.PlateReader``).
CONFIRMED = "confirmed"
#: A read an officer must look at: some character is doubtful.
LOW_CONFIDENCE = "low_confidence"


@dataclass(frozen=True, slots=True)
class PlateRead:
    text: str
    kind: str
    confidence: float
    box: tuple[int, int, int, int] | None = None
    char_confidences: tuple[float, ...] = ()
    status: str = CONFIRMED
    #: why a read is low_confidence when that is its only doubt: ``"province"`` = every character
    #: clears its threshold but the province Hanzi is too small to vouch for alone (a second
    #: camera or frame that agrees confirms it, ``fusion.py``); ``""`` otherwise.
    doubt: str = ""
    #: nats the grammar path lies below the recogniser's free best path (0 = the grammar changed nothing)
    cost: float = 0.0
    #: height in source pixels of the plate's glyphs (the province Hanzi), when it could be measured
    glyph_px: float | None = None
    #: the province Hanzi, cut out and re-read alone in several cuts, is this read's province in
    #: every cut, surely or steadily (``plate_province.read_alone``): evidence independent of the
    #: line read that lets a province smaller than 40 px confirm (``Policy.province_px_alone``)
    province_alone: bool = False
    #: per character of the read's grammar text, the weight of its best *slip*: another character
    #: its position allows, with which the read would be another valid plate (``ctc.slip_weights``;
    #: 0 for a mainland province, which has its own rules: ``plate_province``)
    slip_weights: tuple[float, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """The read as plain JSON (``portlane ocr --json``, the recognition daemon's socket);
        :meth:`from_dict` reads it back whole."""
        return {
            "text": self.text,
            "kind": self.kind,
            "confidence": self.confidence,
            "status": self.status,
            "doubt": self.doubt,
            "box": list(self.box) if self.box else None,
            "char_confidences": list(self.char_confidences),
            "cost": self.cost,
            "glyph_px": self.glyph_px,
            "province_alone": self.province_alone,
            "slip_weights": list(self.slip_weights),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PlateRead:
        """What :meth:`as_dict` wrote (``KeyError``/``ValueError``/``TypeError`` when it is not)."""
        box = d.get("box")
        glyph = d.get("glyph_px")
        return cls(
            text=str(d["text"]),
            kind=str(d["kind"]),
            confidence=float(d["confidence"]),
            box=(int(box[0]), int(box[1]), int(box[2]), int(box[3])) if box else None,
            char_confidences=tuple(float(x) for x in d.get("char_confidences", ())),
            status=str(d.get("status", LOW_CONFIDENCE)),
            doubt=str(d.get("doubt", "")),
            cost=float(d.get("cost", 0.0)),
            glyph_px=None if glyph is None else float(glyph),
            province_alone=bool(d.get("province_alone", False)),
            slip_weights=tuple(float(x) for x in d.get("slip_weights", ())),
        )
