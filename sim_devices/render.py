"""Synthetic images of licence plates and container codes, for tests and the camera simulator.

Clearly synthetic: flat plate colours, no real plate fonts, a box for a vehicle. Enough to
exercise detection, rectification, recognition and the grammars of every plate kind without
shipping real photographs.

Glyphs come from a small pre-rasterised table embedded at the bottom of this module (64 px high,
1 bit per pixel), so rendering needs only numpy and OpenCV and gives the same pixels on every
machine — this machine has no CJK font and CI installs none:

* Hanzi (31 province abbreviations, 学警挂领使试超, 港澳): rasterised once from *WenQuanYi Micro Hei*
  (Apache-2.0, © WenQuanYi project contributors), taken from the PyPI wheel
  ``paperang-p2-fonts-cjk==0.1.0`` which ships ``wqy-microhei.ttc``;
* A–Z, 0–9, ``-``, ``·``: *DejaVu Sans Condensed Bold* (Bitstream Vera licence, permissive).

Only the bitmaps of these 85 glyphs are included, not the fonts. ``build_glyph_table()`` shows
how the table was made (needs Pillow and the two font files; not used at run time).

Plate kinds: ``cn_blue``, ``cn_green`` (new-energy, 8 characters), ``cn_yellow``, ``cn_black``,
``cn_crossborder`` (粤Z…港/澳, black), ``hk`` (white front), ``hk_rear`` (yellow), ``macau``
(black, MX-12-34). The grammar kinds ``cn``/``hk``/``macau``/``cn_crossborder`` are accepted too.

This module must not import edge, drivers or models (architecture rule).
"""

from __future__ import annotations

import base64
import functools
import zlib
from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["PLATE_KINDS", "render_container", "render_plate", "render_plate_two_rows", "render_vehicle_scene"]

GLYPH_H = 64

#: kind -> (background BGR, text BGR)
PLATE_KINDS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "cn_blue": ((170, 70, 10), (255, 255, 255)),
    "cn_green": ((140, 220, 150), (20, 20, 20)),
    "cn_yellow": ((20, 190, 240), (20, 20, 20)),
    "cn_black": ((20, 20, 20), (255, 255, 255)),
    "cn_crossborder": ((20, 20, 20), (255, 255, 255)),
    "hk": ((245, 245, 245), (15, 15, 15)),
    "hk_rear": ((40, 210, 250), (15, 15, 15)),
    "macau": ((25, 25, 25), (245, 245, 245)),
}


@functools.cache
def _glyphs() -> dict[str, np.ndarray]:
    raw = zlib.decompress(base64.b64decode("".join(_GLYPH_DATA)))
    out: dict[str, np.ndarray] = {}
    off = 0
    for ch, w in zip(_GLYPH_CHARS, _GLYPH_WIDTHS, strict=True):
        n = GLYPH_H * w
        nbytes = (n + 7) // 8
        bits = np.unpackbits(np.frombuffer(raw, np.uint8, nbytes, off))[:n]
        out[ch] = bits.reshape(GLYPH_H, w).astype(bool)
        off += nbytes
    return out


def _glyph(ch: str, height: int, width: int | None = None) -> np.ndarray:
    g = _glyphs().get(ch)
    if g is None:
        raise ValueError(f"no glyph for {ch!r} in the render table")
    w = width or max(2, round(g.shape[1] * height / GLYPH_H))
    return cv2.resize(g.astype(np.uint8) * 255, (w, height), interpolation=cv2.INTER_AREA)


def _stamp(canvas: np.ndarray, mask: np.ndarray, x: int, y: int, color: Sequence[int]) -> None:
    h, w = mask.shape
    H, W = canvas.shape[:2]
    x2, y2 = min(W, x + w), min(H, y + h)
    if x >= W or y >= H or x2 <= x or y2 <= y:
        return
    m = (mask[: y2 - y, : x2 - x].astype(np.float32) / 255.0)[..., None]
    region = canvas[y:y2, x:x2].astype(np.float32)
    canvas[y:y2, x:x2] = (region * (1 - m) + np.array(color, np.float32) * m).astype(np.uint8)


def _line_width(text: str, height: int, gap: int, space: int) -> int:
    return sum(space if c == " " else _glyph(c, height).shape[1] + gap for c in text) - gap


def _draw_line(
    canvas: np.ndarray,
    text: str,
    x: int,
    y: int,
    height: int,
    color: Sequence[int],
    *,
    gap: int,
    space: int,
    char_w: int | None = None,
) -> int:
    for c in text:
        if c == " ":
            x += space
            continue
        g = _glyph(c, height, None if c in "-·" else char_w)
        _stamp(canvas, g, x, y, color)
        x += g.shape[1] + gap
    return x


def _plate_layout(text: str, kind: str) -> str:
    t = text.replace(" ", "").replace("-", "").replace("·", "")
    if kind.startswith("cn") and len(t) >= 3:
        return f"{t[:2]}·{t[2:]}"
    if kind == "macau" and len(t) == 6:
        return f"{t[:2]}-{t[2:4]}-{t[4:]}"
    if kind.startswith("hk"):
        i = len(t) - len(t.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
        return f"{t[:i]} {t[i:]}" if i else t
    return t


def _resolve_kind(text: str, kind: str) -> str:
    if kind == "cn":
        return "cn_green" if len(text.replace("·", "")) == 8 else "cn_blue"
    if kind not in PLATE_KINDS:
        raise ValueError(f"unknown plate kind {kind!r}; one of {sorted(PLATE_KINDS)} or 'cn'")
    return kind


def _degrade(img: np.ndarray, rng: np.random.Generator, *, noise: float, blur: float, perspective: float) -> np.ndarray:
    h, w = img.shape[:2]
    if perspective > 0:
        src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
        jitter = rng.uniform(-perspective, perspective, (4, 2)) * np.array([w, h], np.float32)
        dst = (src + jitter).astype(np.float32)
        m = cv2.getPerspectiveTransform(src, dst)
        img = cv2.warpPerspective(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    if blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    if noise > 0:
        img = np.clip(img.astype(np.float32) + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)
    return img


def render_plate(
    text: str,
    kind: str,
    *,
    height: int = 110,
    seed: int | None = 0,
    noise: float = 0.0,
    blur: float = 0.0,
    perspective: float = 0.0,
    margin: float = 0.15,
) -> np.ndarray:
    """A plate as a BGR tight crop (plate plus ``margin`` × height of surround).

    ``text`` is the plate's characters (separators optional); ``kind`` picks colours and layout.
    """
    kind = _resolve_kind(text, kind)
    bg, fg = PLATE_KINDS[kind]
    rng = np.random.default_rng(seed)
    line = _plate_layout(text, kind)
    ch = int(height * 0.62)
    gap = max(2, int(height * 0.06))
    space = int(height * 0.3)
    w = _line_width(line, ch, gap, space) + int(height * 0.5)
    plate = np.empty((height, w, 3), np.uint8)
    plate[:] = bg
    if kind == "cn_green":  # new-energy plates fade from white-green at the top to green
        ramp = np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None, None]
        plate[:] = (np.array(bg, np.float32) * (1 - ramp * 0.6) + 255 * ramp * 0.6).astype(np.uint8)
    cv2.rectangle(plate, (3, 3), (w - 4, height - 4), fg, max(1, height // 40))
    _draw_line(plate, line, int(height * 0.25), (height - ch) // 2, ch, fg, gap=gap, space=space)
    m = int(margin * height)
    surround = rng.integers(60, 200, 3).tolist()
    out = np.empty((height + 2 * m, w + 2 * m, 3), np.uint8)
    out[:] = surround
    out[m : m + height, m : m + w] = plate
    return _degrade(out, rng, noise=noise, blur=blur, perspective=perspective)


def render_plate_two_rows(
    text: str,
    kind: str = "cn_yellow",
    *,
    height: int = 160,
    seed: int | None = 0,
    noise: float = 0.0,
    blur: float = 0.0,
    margin: float = 0.1,
) -> np.ndarray:
    """A two-row plate (yellow truck/trailer rear plates, motorcycles; GA 36 440 × 220 mm) as a
    BGR tight crop: mainland province + letter small and centred above the serial; a Hong Kong
    two-row mark puts its letters above its digits."""
    bg, fg = PLATE_KINDS[kind]
    rng = np.random.default_rng(seed)
    t = text.replace(" ", "").replace("-", "").replace("·", "")
    if t and "\u4e00" <= t[0] <= "\u9fff":
        upper, lower = f"{t[:1]}·{t[1:2]}", t[2:]
    else:
        i = len(t) - len(t.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
        upper, lower = t[:i], t[i:]
    w = 2 * height
    plate = np.empty((height, w, 3), np.uint8)
    plate[:] = bg
    cv2.rectangle(plate, (3, 3), (w - 4, height - 4), fg, max(1, height // 60))
    uh, lh = int(height * 0.27), int(height * 0.5)
    gap = max(2, int(height * 0.04))
    uw = _line_width(upper, uh, gap, 0)
    _draw_line(plate, upper, (w - uw) // 2, int(height * 0.08), uh, fg, gap=gap, space=0)
    lw = _line_width(lower, lh, gap * 2, 0)
    if lw > 0.9 * w:  # a long serial (or a Hanzi suffix) is drawn narrower, as on the real plate
        lh = int(lh * 0.9 * w / lw)
        lw = _line_width(lower, lh, gap * 2, 0)
    _draw_line(plate, lower, (w - lw) // 2, int(height * 0.42), lh, fg, gap=gap * 2, space=0)
    m = int(margin * height)
    out = np.empty((height + 2 * m, w + 2 * m, 3), np.uint8)
    out[:] = rng.integers(60, 200, 3).tolist()
    out[m : m + height, m : m + w] = plate
    return _degrade(out, rng, noise=noise, blur=blur, perspective=0.0)


def render_container(
    number: str,
    layout: str = "horizontal",
    *,
    size_type: str | None = None,
    height: int = 70,
    seed: int | None = 0,
    noise: float = 0.0,
    blur: float = 0.0,
    perspective: float = 0.0,
    boxed_check: bool = True,
) -> np.ndarray:
    """A patch of container wall with an ISO 6346 marking, BGR.

    ``layout``: ``horizontal`` (``CSQU 305438 [3]`` on one line), ``split`` (owner code on one
    line, serial and boxed check digit on the next) or ``vertical`` (one glyph per row, as on
    container fronts, size/type code in a second column).
    """
    if len(number) != 11:
        raise ValueError("an ISO 6346 number has 11 characters")
    rng = np.random.default_rng(seed)
    wall = tuple(int(v) for v in rng.integers(40, 140, 3))
    ink = (235, 235, 235)
    owner, serial, cd = number[:4], number[4:10], number[10]
    gap = max(2, height // 10)
    space = height // 2
    if layout == "vertical":
        rows = list(number)
        cw = int(height * 0.8)
        pitch = int(height * 1.25)
        cols = 2 if size_type else 1
        W = int(cw * 1.6 * cols + cw * 1.6)
        H = pitch * len(rows) + height
        img = np.empty((H, W, 3), np.uint8)
        img[:] = wall
        x = int(cw * 0.8)
        for i, c in enumerate(rows):
            y = height // 2 + i * pitch
            g = _glyph(c, height, cw)
            _stamp(img, g, x, y, ink)
            if i == 10 and boxed_check:
                cv2.rectangle(img, (x - 6, y - 6), (x + cw + 6, y + height + 6), ink, 2)
        if size_type:
            for i, c in enumerate(size_type):
                _stamp(img, _glyph(c, height, cw), x + int(cw * 1.8), height // 2 + i * pitch, ink)
    else:
        lines = [f"{owner} {serial} "] if layout == "horizontal" else [owner, f"{serial} "]
        if layout not in ("horizontal", "split"):
            raise ValueError(f"unknown layout {layout!r}")
        widths = [_line_width(t, height, gap, space) for t in lines]
        cdw = _glyph(cd, height).shape[1]
        W = max(widths) + cdw + height * 2
        extra = int(height * 1.6) if size_type else 0
        H = int(height * 1.6) * len(lines) + extra + height // 2
        img = np.empty((H, W, 3), np.uint8)
        img[:] = wall
        y = height // 2
        for i, t in enumerate(lines):
            x = _draw_line(img, t, height // 2, y, height, ink, gap=gap, space=space)
            if i == len(lines) - 1:
                _stamp(img, _glyph(cd, height), x, y, ink)
                if boxed_check:
                    cv2.rectangle(img, (x - 6, y - 6), (x + cdw + 6, y + height + 6), ink, 2)
            y += int(height * 1.6)
        if size_type:
            _draw_line(img, size_type, height // 2, y, height, ink, gap=gap, space=space)
    return _degrade(img, rng, noise=noise, blur=blur, perspective=perspective)


def _plate_kind_for(text: str) -> str:
    t = text.replace("-", "").replace(" ", "").replace("·", "")
    if t.startswith("粤Z") and t[-1:] in ("港", "澳"):
        return "cn_crossborder"
    if t and "\u4e00" <= t[0] <= "\u9fff":
        return "cn_green" if len(t) == 8 else "cn_blue"
    if len(t) == 6 and t[0] == "M" and t[2:].isdigit():
        return "macau"
    return "hk"


def render_vehicle_scene(
    plates: Sequence[str],
    containers: Sequence[str] = (),
    *,
    seed: int,
    size: tuple[int, int] = (1280, 720),
    plate_kinds: Sequence[str] | None = None,
    noise: float = 4.0,
    size_types: Sequence[str] = (),
) -> np.ndarray:
    """A lane camera frame (BGR, ``size`` = (width, height), 1280×720 or 1920×1080).

    A truck front with its plate(s) at the bottom — two plates (HK/Macau + 粤Z) are mounted one
    above the other as on dual-plated vehicles — and, for each container number, a container
    wall above the cab with the code painted horizontally, and under it the box's ISO size/type
    code when ``size_types`` gives one.
    """
    W, H = size
    rng = np.random.default_rng(seed)
    s = H / 720
    img = np.empty((H, W, 3), np.uint8)
    top = np.array(rng.integers(120, 200, 3), np.float32)
    bottom = np.array(rng.integers(40, 100, 3), np.float32)
    ramp = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
    img[:] = (top * (1 - ramp) + bottom * ramp).astype(np.uint8)
    cx = W // 2 + int(rng.integers(-W // 10, W // 10))
    body = tuple(int(v) for v in rng.integers(30, 220, 3))
    bx1, bx2 = cx - int(300 * s), cx + int(300 * s)
    by1, by2 = int(250 * s), int(690 * s)
    cv2.rectangle(img, (bx1, by1), (bx2, by2), body, -1)
    cv2.rectangle(
        img, (bx1 + int(40 * s), by1 + int(30 * s)), (bx2 - int(40 * s), by1 + int(170 * s)), (90, 80, 70), -1
    )  # windscreen
    for i, number in enumerate(containers):
        code = size_types[i] if i < len(size_types) else None
        patch = render_container(number, "horizontal", size_type=code, height=int(44 * s), seed=seed + 100 + i)
        ph, pw = patch.shape[:2]
        cy1 = int(20 * s) + i * (ph + int(10 * s))
        cx1 = max(0, min(W - pw, cx - pw // 2))
        cv2.rectangle(
            img,
            (cx1 - int(20 * s), cy1 - int(10 * s)),
            (cx1 + pw + int(20 * s), cy1 + ph + int(10 * s)),
            tuple(int(v) for v in patch[2, 2]),
            -1,
        )
        img[cy1 : cy1 + ph, cx1 : cx1 + pw] = patch
    kinds = list(plate_kinds) if plate_kinds is not None else [_plate_kind_for(p) for p in plates]
    y = by2 - int(30 * s)
    for text, kind in zip(reversed(list(plates)), reversed(kinds), strict=True):
        p = render_plate(text, kind, height=int(rng.integers(48, 60) * s), seed=seed, margin=0.05)
        ph, pw = p.shape[:2]
        y -= ph + int(8 * s)
        x = max(0, min(W - pw, cx - pw // 2))
        img[y : y + ph, x : x + pw] = p
    return _degrade(img, rng, noise=noise, blur=0.0, perspective=0.0)


def build_glyph_table(cjk_font: str, latin_font: str) -> tuple[str, tuple[int, ...], str]:  # pragma: no cover
    """Regenerate the embedded table (chars, widths, base64 zlib bits) from two font files."""
    from PIL import Image, ImageDraw, ImageFont

    cjk = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼学警挂领使试超港澳"
    chars = cjk + "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-·"
    fc, fl = ImageFont.truetype(cjk_font, 60), ImageFont.truetype(latin_font, 76)
    blob, widths = bytearray(), []
    for ch in chars:
        img = Image.new("L", (120, 100), 0)
        ImageDraw.Draw(img).text((10, 0), ch, font=fc if ch in cjk else fl, fill=255)
        a = np.array(img) > 127
        ys, xs = np.nonzero(a)
        y1, y2 = (8, 8 + GLYPH_H) if ch in "-·" else (ys.min(), ys.max() + 1)
        g = a[y1:y2, xs.min() : xs.max() + 1]
        w = g.shape[1] if ch in "-·" else max(4, round(g.shape[1] * GLYPH_H / g.shape[0]))
        g = np.array(Image.fromarray((g * 255).astype(np.uint8)).resize((w, GLYPH_H))) > 127
        widths.append(w)
        blob += np.packbits(g.ravel()).tobytes()
    return chars, tuple(widths), base64.b64encode(zlib.compress(bytes(blob), 9)).decode()


# --- embedded glyph table (generated by build_glyph_table; see module docstring for licences) ---
_GLYPH_CHARS = (
    "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼学警挂领使试超港澳"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-·"
)
_GLYPH_WIDTHS = (
    64,
    65,
    63,
    65,
    64,
    64,
    67,
    66,
    65,
    62,
    64,
    64,
    64,
    63,
    64,
    63,
    64,
    65,
    64,
    64,
    63,
    61,
    65,
    56,
    63,
    64,
    63,
    63,
    59,
    62,
    65,
    64,
    63,
    64,
    66,
    64,
    64,
    65,
    64,
    64,
    61,
    48,
    48,
    55,
    42,
    41,
    54,
    52,
    15,
    21,
    57,
    42,
    65,
    52,
    58,
    48,
    50,
    52,
    44,
    54,
    49,
    59,
    83,
    57,
    58,
    51,
    46,
    41,
    42,
    42,
    48,
    43,
    45,
    43,
    44,
    44,
    21,
    12,
)
_GLYPH_DATA = (
    "eNrtfb1y3ca2JuB2GQ5cbocOVOrzCJ5Mt4pF+FF8o0l9axIF+26AxUCh3uDqNSY6AocBs8M3uAJLAUM1i4GaZQg96/vWamxsihQp"
    "Wz4/U0OVsLg30I3+Wb3Wt366WVVV1Vf8aYyGQakvdDQaV7TL/JnzI3+qx/7w6WR0fphOKLT9cvSx792NR2Pj44Y9OrrBC6mTGzoZ"
    "WQcqd5rohjCitFDpZxDq5eVBnm+k3m5wQy3DlXupp+tdRn3t0EygYfRKoxQV6lMXQZsp96D11FXPmkFedlCFLG8bnxn9QenPlVJM"
    "c7b55sTX1vB6tP/StAodxMw9x4TLzQMUiwEj0DeTBx2q3ICOVXsKGoVtdAbRnIRhHVHBlm86qFrSp1Xgy70xmR8wiC3Htq/4gnzW"
    "8wX5cuQL8vuJE9S6bBWgH6jAJ3ShGd2MLrhYzeiCvPtpjXJT9U1V5qwzVmz1RfomtiDcmsTaPlc2yRwD1+sY1JEVyDuC9lnHIlXb"
    "Rt8ojeQbW6sAvX1uS+rAltRTYx0wiTSa91zS1XIy6fq6mHRM4qxjkrbKpPyPCrpKK2h7nUZQdKG1qeRajraGn4P7Km3Br1bBj1ZB"
    "bQ+iRfgfrEWtUeEz9qIFy6KMUPTOz9qYRj5vKn1B0p6RhZpGR6jyyiXLkJcpKFPC2f1RC00bjkj9W2Zb3PXMNjRvZ7bBn+Ye7w5H"
    "uce72zr3yhxZi1czi6cqsXisBhYftQvslk1KebsxiDFM5XQ6f7LG/2qiMCnXutjawt+awKTwkHYkUr5dKptUMrjke31ci7WDFutU"
    "5lSzFnOJkyNTpQI3DPq2ztbMXM36mD7uoz7ejiqvu77jS7M+1kyOj4m44WPN4EZd6461flN9xVq/4j1lGlToJqU1FhNqgGDBPLVj"
    "1WD+RAA1kM/yIpE6fHEzgd3C4CZwjbxpargERWZBaoBXcAO0ySY4yRJSTTcZS9i6/5DPqvatTEZ7PoQL+aJ5F30U6i7nhh3993xk"
    "AqzI38mW7CzThVkHHWRwv3fguG31lUxrfN5ymtMBRnVbbZ4qGxx6ZYvQHJPT/fEJxMnYnIzKB2PcVs4qqEetoI5dnqSCOrV5RgVT"
    "6FtUsLUKtlZB66JDBeEo1ajAC6egAj9qBcISrKCBUJUKhFVylgqEdUQIjFM9WQXCI6xgK92S0ZS5li5IdZ0shENwVi9dAGP20oJe"
    "2iVVSwcnmZSYx272Iqu62M4ytVMrL5P1vw3R5/7HqhVNhAmuR2+Sz1N0OKEtJYKX1S/LdfRNVir/lc6YM6GYEHk+Vj+R9hAxKCdt"
    "E8bxGPAgz0UPQYnyk5bLMoDHoFJvDTk/hijvbnP17R4eyA9T6sV2R39vuc8tr2UWqjqLffskvV3uNn0YUcmiOF7jKq8CWGQhF5eo"
    "+RpqWtsaGxVr0dauUMxZG1VKqLb7utoHggUAmqCkzAXtZN5Bs9Ij1a3QeaTgMaGHIsZQ+aYdKLG2AmYolaVRAlpU1aXmmHTyp1Hp"
    "5fg/SXWoZB0IPz+tJmFR3x9KxbnyPVbBttLPrX2WRSVKAHrzHOXy/fQM74USogDdyIIZBRdtfC/cHquNAAtZf0KPcpLR2QSXIZk3"
    "rZ8neXLTdmkWkbvZdnEWYLc5bI8gvDbfPW1IKc9IW6Pdy3egdfbnUk7kVSDtUnsGKutT6ZBJu1owj9BN8/4C9C/t5UVkPWdvI+t5"
    "cSHtktlsRMSIFBA9M7O+ZuiklHRs6L6VEfvaD4d+giwZnniRJI00Rz6PSisKY8hgVzQedJ4B+4WRa6WToTNylKn0f4af9rEGCLFG"
    "v2/JmAJW2LS+UZcbSwmDg6bhCbwObI1QTQun6FLKVkhUYpMMGOVKFapaTn1FFU0jYNDR5/uyLbV2UNXL4h3Ub9GZvT5FrCr6GA85"
    "rGtFMD2+azGH4Vrn0JWpKpOq8FTK44te3uoVi9lCb0rvilj5vvrOfnP9MgCeWMkqGzrlkCQM1emNXg0EAShkIIHlxlkcp0nFC4Zj"
    "tFf9aAP6taIjEzq3rc60r+3dbA0qbS3mTKnAY+SAaKQiCiYgVjx0CCk92gPp7gcUmfc64UROW32AM/T3f+Crxh7I9kA76QM+66Q4"
    "ynPIejzY2aB1NigdNQ5XC4cvJOMINVzyzWx2bWc887LXL04GVUXjX6oy3Ka/9lkr2UKcDMwRsEvbW7SxwRpx8Vs3/gDM9F0dvwNm"
    "aqskUl9wSL9pRKC1zXgIgRaOU3ACeQQr+eOICtrmNKGCcHwxoYLm5ArAfnJDeiIqZQvFJ0PQctQm2DwBY+XXTC8Maath+KgLyo38"
    "OTQaqoWJlOuKbT+uxqAuFezLziIq57Vk2auAJqS9oSw56G5rcX5v9DejH/Itb0u771X5xehPIpOey38xswdoyE7GQsyHvh1gTEDR"
    "BfkvJkEKvFZzwFVW7ivobAGTmFApBJQgUDLWQj305AeB7oOghIMfIQl+rp6YRbz0aNShkm4eWreTg7oFHIT9Krdb2LVyG2BeTDOZ"
    "uUkaITC1jtIsQRfNcFhBpQdRw7i9IZgcagJz3JaBnXFbBv433JaZfYfbwnOvq+ZvMv64LcXwbpkHvhvyEO9+A07B2AkURtMUIruI"
    "/qJyQAspLeoR9tumkUWCd38L8It3uwzmxCQdR9XubFotpgpuC8Di7XDDplW/Xb6Tyr93716C5w79Xw+F1mmT/hdQzcXbC4EjMbx8"
    "eSxNGzZb9ttdR/bbn5+y34eHHJaT9Jy3m3Hk7XCkwwIIJLdlDfG2rDje3nLUpC7c7oE5OOatDovMJIfl/ahTkistPVUsDX8SKn8/"
    "aOV/s9vVM0OJrdmFW6OTKcWixaZb3yWarhUhPnEXRY/gsOk+ipWwEQimtHoUlWU0HRjF3H+K2rLbpyYYH6QCMbnG0/206oh8J0g0"
    "0kP3++jWjXxvoRujSWm9ok+kXTAVQ9JFBeqVpqBU0IHSbnDwRNSQiPR5VEpno5OCCmlCTW3zi7qR/rJyhBWBtcJQBRnpyqsodSeT"
    "aVOlRv6kgKagHRQpfga3DzsVQ8DmMNoVSsdi6A+M/mi0KiDvPlqeu00fKneP+/qL+b3vt0urT9qIX7rcQ/W4W0ah+raSUplR0nam"
    "4w4GooOzR2SjVPZCJJzSSNX4Ilb7tKc+nBrFOqRVEj1PKnaLflY6uZH0oFG6WehACq8K8bcoukEdfPL+fB9Fe+kqAR0ACYX2D1Pw"
    "J2j7AF2X83fQ+jT+DOqur0al1xEunOZtTL4inUAFKU1BaDiOW5i8rUAjUqd06+JT6AORAj8ardb0GdRtpe8FrV2sSXMEpN+jaBlw"
    "JHW64MqfqdufG1aJnGIoA045ohCDOg1oCHl1rsK5vFWXv7JQwtQaYsrXt4DOO6NvFlst3Cr+3ATMfW8/Mt9sE/cNtlCsAltu27XU"
    "6tY8P1vrJpNFyYBjVOer8vukQI6Tp4sg2KI4tLdtnlXAUNVvkdGP+r0gLeDzy5FAqjkXJAaE+nLIeKz1pwn6cRtejJCDU/tqEJOn"
    "Ti1wibxoO0NkNuOHiRbkkCMsoHB0M8D/2coAAPlv1CDCGMGy5yJUbz4NA1ip9FX1MIngt4P/J0hf4b8H6qNiwHcE/CXUU5XIwLLg"
    "v1eaAmk9EeDLugeawrqXVQc/3txE0sEl0EhnOP3KRuGa5zq90vWPQb+T1karQrXcM6Mbo7nQvtF1P/D9gvaUem1PtnZlBwqgI9cz"
    "uEzl+TOsy765JJURuk25jqswG51I4Uvjes4j6YXRG6X1zSXXtUizfRqVujWVdji0Cut+RYPRdkXxG+mAKITIhV5pW31MJ7rIjLqz"
    "C9CpzhdJ6UmhYGq4obDunwnXcd3DATAYlhvVXsH4gtOCym0a9nJPZgrxsNQo1oNLe4Th2WlI8CTLWgn91GQRPE+rGGbh98N6bPP5"
    "CC/cE9jewlfw/tbjU7Ijlp/fFxk7UdHz95dJ13ix3BpGj4k7koY5dQXDYW1A4oiLHg404B2u8wkdgW0Jcwa2Jq2sqnkLwSDjCJ8h"
    "8D3A/I2pdfN3anEKgRp9p6lK1zZMV3k7TFmMA3yUHAfYAZU/luKyTgOKN2M8xLD503GDVRNeDInmsz+K6N42SLNg3G4btOQkJY+W"
    "HF/HQEV0Nh60aI2s3g6t6Rp1b6SWUjmkDJ+2k95DG3QzHPsTfAkwhupM+3yEfEFIsKb6zMccvy6fErHfR7fS5OdCN82Kbqr2Hrq9"
    "h06s7yNaGxUrzahCTwu530HBLaNwE4YlCm1Jw0Lt+9vlrF514VUb8/+xHTKu0s68Tw+NtjTwQcMt2rJ82FGYeSvaGc17lCHVYfMX"
    "0n7TZaWt0UDH4YpqcHnDqHUwSH5odGt0Nt/CdIumW3TQ57cq/L8vPomVMyqUULV5rRoTDMV7RadGu/JibTS2r9p0VJNAzBTVton6"
    "tlanPKMJHR2KWF1p5z0PcFHSZ5fHO1tQWwvAv2wBnF7k3VH1favh+r6dNPgcsrdYzBkVfJPfUuE7lRiiSbfm65LJfQJ6zpBQld+O"
    "Ggy5ihpFTop/2+kZW/XUAtih1XHxGmus/EsNOfszDckLmCPGaC50DF6IbKC3TWQFxmD8tVWr+QerYIlZlxh2SRjgGIw2C9FmIdks"
    "TDYL+xVo6oLTNA6BJpa6MFnqwnaVulA8YK64quMXp/kzf/6sdjxM13kMn6L/7O37vHaa9o1mjyezx6dCy/d+caY2g0pV0G+MNsJC"
    "pIL9QAUlpkb9bxNoGGpSWW8zqADjDhTg9MUA5CJ6cmgEuVRPQZ8rHZ9b/T9V5b1fPB/tlp1uFkz/IFW7+WH6pev73HofeM/a7qvN"
    "8nJmeVH8q5/f2CC/NnorPXCCO4BVSlnKqVJcMDstqUBRZa76ZNVF47LRqhusuiOV063Bga2p8Ul9E3UKsOzzaWy9Stct6yuei3t/"
    "7K1z4W17a8oLb7fm7OpMUZjCyNc6WvlogoEkq0HkOiLwnawLKSTPAWsJKrzOiOh2l2DAn93siU07WV1IuBB49o7GlMuvYIYlP8uY"
    "ePl6komgfsLE9u1NxATV+XQE9Pa5GTpqId939FMHqL6OEYCEpJ1J7uX8FWIk0gCYY+EsU+M3fmYi4HeYw1nzwdoSkiiWX1hCFTV0"
    "scybV7exKKsErnD4mlwwU+fDkewQ9wnHGM/DihN6I0sf43jeM01u3jjqoms4I1G41hQyZEuxMDPNfjlsBicV1vEALp725ZEIkUOX"
    "NoK0jhARQvJdPwVYTgLrErzoYyeAuJqCi4cwk1J7JIVDc5KApqfDMGyavrmIkxsPq6f+WIYLb/5GTNJB39yyz4fms4jE3Pldf0jG"
    "2NRXjM2M/px2SLVt6fiFsESUREoSsDDZSQoPmAn/v+fKvZe5hwvsVe8us6wIGfoWUxHFWBR1L0DpXD6OCILIYpF/SOMQiQkrE9h+"
    "Q5N8ZrxSQEpgdl5IiRHi7nLAxxq2/QyjJCIcDO5hhLQzD91vIzE+ACOW3XcPhaQeExQrPhei54cC8tN9UbXf0wLi+JKQUFIYlowF"
    "W85L9Pt3/xRHULPnICoOo8Vp2tubzBnkzTlUnEV1sg5P1uGtdbi1DodeO1y8Sc0nKnioBa3FOEMuWbk6Qfe24Nf1DJgd5AyiM3SS"
    "KyOzkk5Jq+WNPFHy3crlBpl58LlkAsFwjw+Q8aD5XeQTdRIw39/AYKRfEzE0J6Q8kXRZSKeVrUhsgZocCBx7Yo30yCSm6hhMs+yT"
    "ToP1FrOf1cuwT6ZdtnIzfJy29ZHrM+zxR/+RCxTxXrAH3A41rZuW/DdUW/JjD+8xrKGafpfHe1C394SL4uODKeMjl2ttb3VWqrE+"
    "+51v2QS8ipaNiZpkSi4ixEwNtlV9oG5fOO+oqOgjQkldqBtbuEkvNRzrLO7HQ1UnJ5lIpzvOJU9V02IdulRn6mqmnrTQxtB7uWJi"
    "TgPzmLNdcxSb5LSK0WlXMcU/33Jtz7eSm6YSlmPO22PpguG/dcOPoAduOCRGd8MBMfvx8Jz0xUgsH86vQS+Zu/8xhXdYMXqXe1Dk"
    "1rLc9Tmw/0U+Pckv8LwbOtDJDV7o28ENDe73bvhmZVs8sh+fhvMP/xQgu+zy8MM91N4X7qGfLry3ZJ9Z1gg9IEot1202Otkr41qL"
    "firUYdM/N3tpPzug/VCkpCzY/cyXwe3nBNogzPcVbz/P1o+fTvrr922y2To52XpPpvOi9oySTId6a6Nloc0/q7j1IZgUuq940jUL"
    "QYgkXXp4TGG32fxNWf1PXS4uNRVYGxvgIrhGbTB1u4+aHqY/r/YTh+ZuAWPz3cUhuMr+INsL01wqoyGjhH14VURqgRkXZrCdmsEG"
    "Lza1xxHzyQHNNUUILCuSdMM4CqJJLayEOh52edr4Y3gEUwqNmAwCgg/FbDpJbpR6Lk9jcyK9On8x+mN5+3/5ISDweBj6Q2SbS/FD"
    "MS5Q/EBMrxsZ/xsxrq6laVdibIgsOr0cunxeNS/e9E/Dq8r7v1abVsyAMFVp+7w6aFMdUTyM7uIKOntoTk9hgfbNC8Sxs1gMvhmR"
    "ILwNfkAik1gUYmXUV7RJLi4vkK/fnb47O5HG5xdvYANdZz+3yFbKYbPFmL3e/gfW3tzBbBCc1UUm+8WOmz4C8/oxNFui9SeWdPHD"
    "AkgtVx8mAgOvh8wBpLGBpZcAPmVsYHMzTaRFKt4GSB3hJkw6iiIOKUXdP66o16LOinZa1GtRZBXESr1CFfJatOisRcPdRQctGrXo"
    "lgwOxwCKHiUt2jLdFG4DFD2ZtGhLfweSdlhU18bU0mMrSk6LTlpU7G4UPR9Z9GbSnMxOA9PvdH2YcyDM5isY1q4D/9+6tG6GxcBx"
    "+xLTMPgSyS55rSUlebufqszNO58FpEKu1mCzMnlbGupv3f5gt9/q+5tH2UyLwzDaq0+N+p012NwK1W/3EeK/zO36Yrae28TbOHc2"
    "kCW6sICSZeNouoXcWg4feZZbmBoGVzX1wbJC52pWxaNJjdyd0Wl0Q3Omxv1EHUPa6xT26Zaiby1nK1CdI4NXLbxG1X1v3noESTtW"
    "OzEvSORrCtjrKXYKeFWwBbYZcS8keoZ9IUdcII6ZDv6jCrA7aNAMXv9QCzprgWqtyXwEW1tCok5F/DCvK/qeSnTTDCKBLvrOiTBw"
    "14OIBjjRUttDzOSp7RFV7KYwHMKlJjRUs0eXfN/6PPiBoLb3oxvdjbRpRKrSDP2aKtEYHrBf5EaTkGeDrbfEuVX1U8jca/etov3q"
    "a6NVnfdXsq77r9Fo+LXVAMNYDIhodT21jSx/x8062NHVcEenUrkbMexNL12HyVDVPUTFVytRAcvilt/+Pmqels1nUw2pbZZ9nvfR"
    "ygJzbNewl8rvi3c17j1WWxJ7ecylfYb+HBMyr91Vfw791qihc91rYAHWfcpuHdQjLTixqbhVOCEnWfvzYlCJ7lWazk91FOGPrkKN"
    "1Ti7itvmmDLnkeVN1BC4GLbVAZZLmjQd+jpp5PWdvAGu9jcpYPes/+u0Zczy3zKxyOG/i1l2LjMpw968ykMS+s2hIDjIrY13PUBp"
    "etoc0dM2hTDBX522bYQD5f0kAij6/C6qxRROIvMJvn6+7+Fz673zNjU3t5LDLvOnbbji+yq+sGbRKHdZC+PiGtuPeNwTBSgbGsoG"
    "h7JbYLDdt732IJh4PTQkPN1bfDJTzYpTbBUR9sdosPrbNe1U895FWe42/V3v1/86+g9T0zrPdtrwmdHpY8q9xpPtYMEWJ3tfoZ3R"
    "zS36k/Y/VvdT1bPTl/3/fFJ+6oy2C1X2bM0t3Rajtvi8ZTCVQQ7ZQORmeVN6ThlO1S6ONWiVswZVdsHyIODuZ/5DHlS5YwiZ99Dp"
    "hp/wkmkxvT+hIBC1QcwwAS1zB8AkShsaRp4/hmsS9kyEJh/rBLdnk8bWY9/9NDWn8sDVFI7G6JGONP504IZWlGnlReWej23lhgN3"
    "BZsADyAZEg9gbwoeoEktD3AU8ABFoDyANBA+IOuFDyDtAw8gLUprqCdfs4atG5DWKipSkDzSLAb4X7lZhBYFjtzgA1t7IPQHyITD"
    "9m7EnL8XQXiSeKlETsk4bMTwwy4JUbqi9+mKa65HJkk6gHuZNTeLOmoQAmt0x13uO91xh0RMbHXnARRMseoGUTIC9LFnbUJuGaJl"
    "gUq88niqgVQs272e2H8Vjo0JRz/eosM+Db1RNe0X2gaDhbfobPVO+7ROd1OXGs2J0cj+1Bj1t2gw2qreWmhnNN9DPxi9MfofO5qN"
    "Nx9JjflT1TdKB6W1UZfsM9GpfJ4tcSYHpdzzR6roOBjFutKtdYVq/dxKzX2Qs5XThScKCwFDjwy/sb7BnOQsFJpprhMPtZmxDV+k"
    "FyhUtrT/maU5W1hr5MEWql7Cyx1lStXLgeaeWKOF6lbSY+6CQ0SUJ4LI6qQL0fe6O5VuFvv/vSqy6tsqr86+uIve6abU+N3DdPFT"
    "7SgBDenZrc/7lDFTpeOnqXssjfu0XugP1eYXoWL7LzTV8X8I/c9UX90I7bAJ7jmooJyNUFGhSMHv/g/grtAzkayHQk8gmoUeAW1v"
    "q6cE67OGwsIthFvocnRF3MVAP22ewdnjNJrBjYw0DnMxDjfVcwcVcSiwkpJfzAkaUr0HEEEuHqxDHJYzqCTRRPo6WmJ9skT7yRLv"
    "t5bHv4WbrqVVwozStkdABFzGhLLUHp/B9zdL75kq1PWaEvRq6KhzzvqgtktvfNTfMk25Q1UXkxhWBDUJW9lwVkR1yL7PVUBqLc78"
    "eTnQ8eXPBJ+KPmnewvKoR3eVo2hGmdeMROLnVeomHkax4Ra9pyKEexlnEfBeK8ACQgXYh4oWNFfaAjdpC1zWFtS6jXSuzCNffTBU"
    "OpmNsrXDSNrGXPVH+mQoG5jMVf7eYOiV+YXTr7reph93CcW+d7tDkb43Goy2hQ5K6fuiy0rz+ZwdSVRP+7QqRxVFO2yp+jz6zOjG"
    "3N250CNzKJ9Y7syFUjGPGThsIJHoOUOwmU5mhndrSjLhLEq2zswyCi3D/KHk3NiBYJ3i68XdPsHxlquLhN0Sc3UTQTd1GkF/lFdF"
    "vq/QqNkc6sRY0bGy7NS7KH3o0UQzKLwq1J5BP8M9SK1pNGosH/uXiWKjnSgW7UiPcUU7TfnVvfjP2PF+2WH3la38ZpW/ubXt8BSx"
    "qp+jHcMVkUuke5GNdi9HypXW68lOT41+70/q8RdAx/Pj8bnRCHp2ekF6+tbo9VugQH9yfTnGA2nB6duByezuoo+CJnGiUKSDRGg3"
    "+jcyblFwAam0i1TwA87XiIB2pL94HH+mW3qlHtDuciDN70hPfrsc7f1sx/lbzHHl35waPR4TzmQ6d+Ov2Cz7Nzf+JVryV1xHPZk0"
    "Me0SZUvSsFI1zFyhcZ82C1WbA9hhVopD1lBnk1qqVw/3FxLtE5i+Fw0hyKEDeHSIF3QMUM3cW9kKAAAv+6wBXZ+fMFu5nr9TF/+W"
    "UmAd5avNa+Lt607diM1uR789VXY7jBanW2+GaPVrl00qmZlsHpmAzRT4ONnOzUt+3WYiIpejbeB8wa/hK1I3hu7nnBtNXov8OohA"
    "4AkzSU+Lws4/PsV+N0i65klvRFsOLgSGuwd+jbRjQG9Y21wo/JWb0enC6isKgMSvA7MY+FS9hN2Klb9E48JewHKx0s0qL7tO273M"
    "oXJIT6XbY5PXqRpbPa/sWI/SkWFghP5CT73JL/FUjdiTjWG0McT85g/LZthhcUkMdjCGvWx37VfZjuPKfb5cwQUcrAnKndeGV/eZ"
    "14b1BMtxjKs3jqs2mAm/atu6VWl11Tpn1j8zIWTmoYm8dvn3XJfgavHwlLTS9XVaXdNH7V/1QkdbN5jpvGU94iKu36F8osyjk2Un"
    "xWXbsgBJAbyAa48jEKWu4CkomMDRBHJDsIWk12G56rkcd12rO6/5Edfu3uvd71q3pzU5oFeYf569oIkTeIZUqz11DOnUa5btVqMU"
    "VqPXLMF5nctoJyNxBauNUeuadav0OgucJ63KztKwHL5ySolhALfOabATo6bAZZVUYMAXj+2N7Ea+ykyzuVY0wQXa5XfodCcSkGzw"
    "Wpd4Z3aQHQlo5yPZNvWo7thxWc5BOUoPUzCurbRY/Yli7e4AxI/f9pvKxfeKgNhIRPHpEVYZOaORgetX6rhQEXiqp5A06ywPS/Kw"
    "2PzQrebOnFSWOmnHA5UtAjqX5nSiJ7kYh6+XjXi/7Zbg477UNdebW1wTqD/jyyU9+3zxFE+7xIbHfDn/gbff/vIf/zNqpq82sKaO"
    "sYNOS1N53Ku/88ElEeT1svf63bIr+7fl4Jl5lwh168HL3/3qL/5gpbnpRdD4nc1gWYh69EA5/Ud53HCAsf8QysqQ7yeKOx8pzbF/"
    "daBxh+Y8oYSsfuhWaqREe9hKJmHvAsEWB+4MqGkgQB+3s3g7y6CcSlPtkNRul960vvVGbymw/KC33pdbRFdsWvcBzXByi4jzXEUJ"
    "BT6WArYsX+EJbIOjYKTMB66Br0vwLyTyoCPnuMVnsnxOvzde7Xooq1VwxYy1oUjB2lApgdy8iEMVmP9MH/6spfrP19O/8xg8Ij4L"
    "f9EQRNPjuEJEUUSr/52/bAVgjEF4/gYLaoKcE61xgaSVsZtRKla6cCasXK9oAzkDTDIGEqm4WLB9Dpt/QGoq1qkiYE9MhlW7pqGV"
    "MjS8MTaEoLEh5k0NIfTUKIZuVNU3akm+UFBzpi251Nl7r0t+wRLzgiwKzjCUEpR4C4krMfuwNrvQUjA7tRZXBYdFwGqehqrCviz3"
    "CmqFXETpuTT1hCIVMUgYdRStuz4qvATQY6ZwKIMD6wTOs94zBsvdSx1ENhDiZJZfpbnng8E9nQ5CQcdZw80zxXvXCqxoj1nrqy8I"
    "Cf6lv/wiP4ZzC+xd2KPAfbxvJRCzTosWMLBv9vHuZOiSXL2/ESctp0Y9cMSfmdivRUkB1pyL5XxD+NJjX5ywhMgB4FvhSaBLBK8y"
    "sjODrDy8upFFj1cc8x+OcDjhMQ5jd6VnVLSJexRTmHhSskiAjumdznbG1ll1Z9+R0eEUoREjUoZIHEdlEmE7PfIKuBzqlcvBq5Ll"
    "9vk+KFoRcRFrdWxEXacK/BMC4xr0pe9jxgEvrMDNFj/Q6Riq3TovC71g/N0xkeUvHezcSY+ugPgiK7DIuhDLzNrOjL0PvdkZbrc9"
    "ZVp/sPzq0exMt4J0vVtlXAxl+/ri33lDhDLpuJ3r8FpQwj5wSk54RhWTWeAwGDmN9sHmlB865FHIZJ5yGpE3JcXfEg7NOnPXio04"
    "iPrBAzgb8w3Nyq4d6pWXaqhW5peCP0N9t8YjrLHV3gc7bG23WPaGfyrSm5tKmmWOx91U+52FavLR5hFH+Kz/AsZQ1mxb8DQYelB5"
    "jdGlH1N3GA0dm5YCBfHsdaWf0ltCbxbkvznXXunfCLhU8XFjRoBZAK9U85jZYTdzV9SaqaW4O4Ru9ece1jc/7Jd8c1e1u3eOepPa"
    "LqlinRVFZ6+Y+kT1W+xomKdApqbHt866k4ccgVQYsOTFkhdkXo55kZDdSt6Vo1d11uLiRdAYGT/GJaHsd/kTp4+uM1HIbH6w4ner"
    "8u/33FXLxrBSm7/Xf5c+8nXe44WcqkW8T6bH/sHXYvotfDcU4NQummy0deV3O5RSXTrVY9cgAE+kB2tWF/cxWYkO+E5kE+rxdJxf"
    "ctJv6FSbO/LmK7LmJdfRjbKN3ihgsC8HAYeC3XjjvRmL48dVDawq8oAvrlZPDj/lQo7IwQK347Y2t2fvpB+DQtlg3KgSbi4CZSe5"
    "hqJD2sLhcWdTW6Jsm3bp6LVFPSwGoplk4y5NvdEQmvKNxRKras+tpSvCr7YID37lXDTj9tYHKJSoCLRXt7mnLuoVpz/uQ9QPlUJ8"
    "r0BXYb+HJp/XzUnG7n4HZKZ1f+xojn59x/BO8aCqSPaQObQ7wu49qHfVgqU5e60eFJl7Tu2o3ny1baIu7Jf8kFSvvySqn1QUnquo"
    "1w/vdh9Mv2gbi8GxeBE0ptnvnJZHuy0Ex/yV8vEFdGkigMBLq0RN8hLc8q2FWXgY9t2/qrCfylptdgLLLYo51stEqOtZXUR9WDwd"
    "Q73ItdEcG66w8OIO6vLi6ukslFYERYk+pFKuK/zKocIgvNuJx/OdjHy5CEeN+A7dcvS0/nUG/ctOX94wL4nMrS2xeXUCxv+/9Udv"
    "FWxcogl+gXCj6f16+btoU1Gw/y8VeMMC7yhE3lPrIQSigVOuCMVk4OxAUfWSIvJFBvg+oYdfdx1qIozGcEe3k/nRzA2/7AmPK28x"
    "XcezTYkFaKy1Uu61GsmXJcQ77+Bok6/MC91qEOiFWsCxow6dGrVza5V+VO41rIRkUfBevT6RnmEdkJ4ns0BST/zWgt+Ohu+oCQVT"
    "ZZqlopEw6qKfyEwtUTcFzxJK18g6/UxRA3C65VxjSZFCShUDnL5MgVRhT78NQ1LJOtio//3KcLI5EM50L/sH8xW9ViH3Xv8cwbxE"
    "v829FHdZCCUpQadiOU1xl6oQV2cthuXoRbM7i31qR4SOqwMT3LJ9eizrS08YGlQmS1uTBk/RXPXTa+6D/lGNSU0pjNorwpVIj3lS"
    "2d3NLQXuSB8cHX6G1Pjebg60kcBvp5wtKAvRan2t9pwjQ1IpdwRGg+rdOr8WaT6jCd37rGiq9zNuiFkliukNNFLf0YcxEDoMzYz0"
    "8kS+OmNqhbwHPokGK0Am18+YbykjtsegDBamNpHH5CpAStlMtPwYyGlhChOaiJYcEQlImS4G7UHyclN7cJyREkkI0Y34+07S69lL"
    "Q47p9zwRpZnIsakVJerZ95fShQsGZq6kLcwnET6Svr3gQJ7JqNxopgdGpeUMtRHHJo2qr/1kAmRQXNuYJaobZzADk1m2nWnmpOcH"
    "8nNdFP9oW+zNtk4WoO7MZxWNsTo1sKMxWmteVTv3SE896kyT95oWzJmvDWvMpugrM8TJokkZs9OQcav2wktt4guNXR0Z06pXcwhk"
    "wsEz0jOoA5RoTnEpMQctCPR1dBxfnmlIKURedrrq36owutJ+3phNu/YS77uHV37hfrFuSlKRCc/GNurkEu0yRZfWR5jo6g36aFjK"
    "JyXzvkO61xePi+Fbl5j6pD4Dip4aVgYhZaPLuVbW4Mh2mQkOnXqPbXBacM3M0WfGwqgilyA3UGZGk8caEKOmkWfONI72Vm2n37Qp"
    "Ku+6PT+DuS/Mt9FAM+wcH1mP9GjVKxKwRjlRFfl20tbpZHZYapQQ2gPwY3SqFGplul6BWWzJWToSnaYi4bAxa+JqYk21uZ2LP+28"
    "PxYGWMleO18p6rc2l+XUWztIo18FOS2uWWKytvXVwpz/Sje7He4uG9Pa1a60aX2swvX6TIV1kbkcVFEybDQiXJcw6LBYCq4oPX1W"
    "FeG0e7azCVlZx+Wrx9VbfdSG+eN6955dV/LQC3df2bPrNLfLz/tLwQ+ZId1UsiHrbCblbC7regXwusUZbFYzxSrVXfJUnN1s2Yod"
    "Q0QEcKrBscijqf1upva6Icx6Tynxhjqim7m2kgHcUI5Tmg03fu7Xd9Q9GRYOGvLXlqSlgWpzI84FtxGDZidU847xMbqSxrC4w/cM"
    "V7fEUXrNsTf1GcyCjPa3XSt7LFlUobgktKgrFVq2dHfrQUHk1Td//2SQP+VB/8f4tjVw0rtdFmJXzBXNYTtZXBz6537PYNpcwesw"
    "dWBlpBnnS6DXm94W8OfE+Ypo2/Vt705vHhKv9kv523K1jVFvMiGoP7yM0QMPBuWpqOdM29ap3eGar/9AnoCx7+AWRx43M+q+MLc4"
    "j9V75PXsiVNm4jd5fmayttWOPHbo/PK4UwipLk1DRp39EdvBTpQvYRL18uvKNwzjDS/s3r4/PbXBivu+bHVIZzOFkGyL+nfpdnsJ"
    "b2UAjhdnOodqrC1qb26IvFybj66+wMLl2q6uXUlhLEk+i0eM19eEQRhGP6+uBP4h7a4dc8g1kxwROJwQgL8GsLo6mjeNXiHXsJdq"
    "uQZeW+7l6/Qa6XEd77z2X0IfGWxo/9i1zRYi1kapVHA7B59fEo/HW4/SAa+bE4tuJFaP+vd4aM+X00fWj5Z4hCkEMkSz+MHHXQPo"
    "VlFn44nu9ez1j3L4NeeOBUBwCTX2xwOKy6te34plYRlr60JjEOC/Ca1pjXXQKQjVG5hqs/3tVl3Xuq/J7ZjZLXGGwo/dvCDTptiG"
    "2ue+Xh7WrQH8VaWyeX35t4jRQw9bu3rS2KgtvrxQUpmLZ7nTwdZc7+onmrwTzf9I3W37ucMyk7Z1h5Lw7Q5PTgU1Veh0RLgy0zWW"
    "mNk31Obwf0eU02VzlXmChFZz798THrxGRyc+DNMZLgtDONzMURM6AAnB80T3Q/RLSrf6wPtmCVP2KstciQlHFYAah/kDS6izKOce"
    "j6w+lwF2O/Fnn1MZ9aCf463Pd93Pd923rRx3Muq9jWpsO8z9jR4f0+jl8533VSC7EknV1NDB7QITfhcnCcsBS9ib0tJSZRxbPZfE"
    "j035dTZfl337lt+25VdwBr03iftfIHm7/UXW25bN4srVlvVuAZpLy2gAC4jBOsilDRC/3WwewrYkNwx3/soHds+y6e+JNmkWXzLU"
    "3i6ryP7KQ14CSlW707xN8U8PtoKdeRYGi574HTruivFgcI3RH2cyuMfGp+jo5w0KxBNR4jkxua1QRHLv/LXE7G7/qjhzEUrvGXli"
    "CsX7nRRUg5PdvNJdarsEfx4QhfxBKEXR+CO06k4yrYTULihW2wavfuG/XNMDHYAs6mzZSLZdgOMQVWuEokCS+RBKskks6+1P/fkk"
    "Jh/+vi/9dKH/C6syuQg="
)
