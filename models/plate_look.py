"""A plate must look like a plate: colours and layout of a candidate region before it counts.

The recogniser reads any text; the grammars accept many short strings (a Hong Kong mark is one
or two letters and up to four digits). A bus's LED route display ``K16``, a model badge ``A8L``
on a boot lid, a shop sign: each can decode as a plate. What separates them is how the region
*looks*: every plate kind is dark glyphs on a light plate or light glyphs on a dark or coloured
plate, in a few colour schemes, with unsaturated glyphs (paint, not light):

==========================  =====================  ==================================
kind                        plate (background)     glyphs
==========================  =====================  ==================================
mainland ``cn``             blue                   white
                            yellow (large, learner) black
                            green (new energy)      black (on a pale-to-mid green)
                            white (police 警)       black
                            black (使/领, 港/澳)    white
``cn_crossborder`` 粤Z…港/澳  black                  white
``hk``                      white (front)           black
                            yellow (rear)           black
``macau``                   black                   white
==========================  =====================  ==================================

:func:`look` measures a candidate crop: the background is the Otsu class that fills the crop's
top and bottom border bands; its median hue, saturation and value give its colour, the other
class's give the glyphs'. :func:`fits` says whether a read of a kind may come from a region that
looks like that. A frame without colour (an infrared night camera: saturation near zero
everywhere) cannot tell blue from black: only the polarity is checked then.

Thresholds are physical, not fitted: a plate's paint is saturated (S ≥ 70 of 255) when it is
coloured and not when white or black; LED and neon glyphs are emitted light, bright *and*
saturated (red/amber: S ≥ 110 at V ≥ 120).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .imaging import Image

__all__ = ["Look", "fits", "look"]

#: Below this saturation (0–255) a surface is white, grey or black rather than coloured.
COLOURED_S = 70
#: Glyphs this saturated and bright are emitted light (LED, neon), never plate paint.
LED_S, LED_V = 110, 120
#: A glyph of a text line is at least this share of the line's height (the detector's box
#: holds the glyphs with a margin) and at most this many heights wide.
GLYPH_H, GLYPH_W = 0.45, 1.2
#: A frame whose pixels are this unsaturated at the 95th percentile has no colour (IR camera).
GREY_FRAME_S = 25


@dataclass(frozen=True, slots=True)
class Look:
    background: str  # blue, yellow, green, white, black, grey, red, other
    text: str  # light | dark
    text_coloured: bool  # glyphs saturated and bright: emitted light, not paint
    colour_known: bool  # False: a frame without colour (polarity only)


def _colour(h: float, s: float, v: float) -> str:
    if s < COLOURED_S:
        return "white" if v >= 150 else "black" if v < 90 else "grey"
    if 90 <= h <= 132:
        return "blue"
    if 11 <= h < 36:
        return "yellow"
    if 36 <= h < 90:
        return "green"
    return "red" if h < 11 or h >= 160 else "other"


def _glyph_marks(mask: np.ndarray) -> int:
    """Connected components of ``mask`` shaped like one glyph of the line: at least
    ``GLYPH_H`` of the crop's height, narrower than ``GLYPH_W`` heights."""
    _n, _lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    h = mask.shape[0]
    hs, ws = stats[1:, cv2.CC_STAT_HEIGHT], stats[1:, cv2.CC_STAT_WIDTH]
    return int(((hs >= GLYPH_H * h) & (hs < 0.98 * h) & (ws <= GLYPH_W * h) & (ws >= 0.05 * h)).sum())


def look(crop: Image) -> Look | None:
    """How ``crop`` (BGR, a text line as the detector boxed it) looks; None if too small.

    The glyphs and the plate are the two Otsu classes of the crop's grey levels. The glyphs are
    the class made of separate marks of a glyph's height and width (the plate is one region
    round them, plus the small holes of 0, 8, B …); when both classes count as many such marks,
    the glyphs are the minority class of the middle rows. Colours are medians
    over the middle band of rows, away from whatever surrounds the plate.
    """
    if crop.ndim != 3 or crop.shape[0] < 6 or crop.shape[1] < 8:
        return None
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    _t, bright = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    h = bright.shape[0]
    mid = slice(h // 4, max(h // 4 + 1, 3 * h // 4))
    marks = (_glyph_marks(bright), _glyph_marks(1 - bright))
    # the glyphs are the class of separate marks; failing that, the minority of the middle rows
    bg_bright = marks[1] > marks[0] if marks[0] != marks[1] else bool(bright[mid].mean() >= 0.5)
    hsv = cv2.cvtColor(crop[mid], cv2.COLOR_BGR2HSV).reshape(-1, 3)
    flat = bright[mid].ravel().astype(bool)
    bg, fg = (hsv[flat], hsv[~flat]) if bg_bright else (hsv[~flat], hsv[flat])
    if len(bg) == 0 or len(fg) == 0:
        return None
    colour_known = float(np.percentile(hsv[:, 1], 95)) >= GREY_FRAME_S
    bh, bs, bv = (float(x) for x in np.median(bg, axis=0))
    fs, fv = (float(x) for x in np.median(fg[:, 1:], axis=0))
    background = _colour(bh, bs, bv) if colour_known else ("white" if bg_bright else "black")
    # emitted light: bright saturated marks on an unlit, unsaturated panel (JPEG chroma smears a
    # plate's colour into thin white glyphs, so saturated glyphs on a coloured plate prove nothing)
    emitted = colour_known and background in ("black", "grey") and fs >= LED_S and fv >= LED_V
    return Look(background, "dark" if bg_bright else "light", emitted, colour_known)


#: Per kind: the (background, glyph polarity) pairs of its plates. Mainland plates are not held
#: to their colours: their grammar (province Hanzi, authority letter, five marks) is specific
#: enough that signs rarely fit it, while their colours drift far with white balance and
#: exposure (a yellow plate photographed orange-red, a blue one grey); only emitted light is
#: refused. The short SAR marks are where a sign or a badge fits the grammar.
_SCHEMES: dict[str, frozenset[tuple[str, str]]] = {
    # a black plate under bluish light (or white balance) reads as dark blue
    "cn_crossborder": frozenset({("black", "light"), ("grey", "light"), ("blue", "light")}),
    "hk": frozenset({("white", "dark"), ("grey", "dark"), ("yellow", "dark")}),
    "hk_personal": frozenset({("white", "dark"), ("grey", "dark"), ("yellow", "dark")}),
    "macau": frozenset({("black", "light"), ("grey", "light"), ("blue", "light")}),
}


def fits(kind: str, lk: Look | None) -> bool:
    """May a read of ``kind`` come from a region that looks like ``lk``? (Unknown look: yes.)"""
    if lk is None:
        return True
    if lk.text_coloured:
        return False
    schemes = _SCHEMES.get(kind)
    if schemes is None:
        return True
    if not lk.colour_known:
        return any(t == lk.text for _b, t in schemes)
    return (lk.background, lk.text) in schemes
