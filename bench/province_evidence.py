"""Evidence for a small province Hanzi, measured on a labelled plate folder (issue 22).

    .venv/bin/python bench/province_evidence.py /work/shared/data/plates [--scales 1,0.75,0.55] [--json FILE]
    .venv/bin/python bench/province_evidence.py /work/shared/data/plates \
        --scales 1,0.75,0.55,0.85q60,0.45q80,0.65q50,1q70b1.2          # the pool of docs/recognition.md

The pool: every image as it is (scale 1) and copies downscaled (INTER_AREA) and re-encoded as
JPEG q70 at the other scales, or as ``SCALE[qQUALITY][bSIGMA]`` says (``0.65q50``: ×0.65, JPEG
q50; ``1q70b1.2``: Gaussian blur σ 1.2, JPEG q70) — many more small provinces whose truth is
known. Every mainland
read of the shipped ``PlateReader`` whose serial equals a label's serial is scored: is its
province the label's? For each such read the evidence of ``models/plate_province.py`` is taken
in variants: each of the five cuts alone (padded to 320 columns as a line crop, or unpadded),
and all five together (every cut must give the read's province with p ≥ MIN_P and a margin ≥
MIN_MARGIN). A variant is safe on the pool only if no read with a wrong province passes it.
Prints, per variant, how many right-province reads pass (all of them, and those the check may
decide: held for their province under 40 px or for their framing, or confirmed only through the
check) and which wrong ones do; then the shipped rules (sure in every cut, or steady; or
near-unanimous: 4 of the 5 cuts near certain) and their neighbours; docs/recognition.md has the
tables.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from portlane.models import ctc, grammar, plate_province
from portlane.models.evaluation import labels_of, load_labels
from portlane.models.imaging import Image, crop_box
from portlane.models.onnx_ocr import OcrEngine, Recogniser
from portlane.models.pipeline import PlateReader


def _cut_reads(rec: Recogniser, crop: Image, text: str) -> dict[str, tuple[str, float, float]]:
    """Per cut and padding: (top province, its posterior, margin over the runner-up)."""
    folded = ctc.fold_separators(rec([crop])[0], rec.index)
    line = ctc.best_path(folded, list(text), rec.index, folded=True)
    out: dict[str, tuple[str, float, float]] = {}
    if line is None or len(line.spans) < 5:
        return out
    for cut in plate_province.CUTS:
        g = plate_province.cut_glyph(crop, line.spans, cut)
        if g is None:
            continue
        for pad in (True, False):
            post = plate_province.province_posterior(rec([g], pad=pad)[0], rec)
            order = np.argsort(-post)
            out[f"{cut}{' padded' if pad else ''}"] = (
                grammar.CN_PROVINCES[order[0]],
                float(post[order[0]]),
                float(post[order[0]] - post[order[1]]),
            )
    return out


def copy_of(img: Image, spec: str) -> Image:
    """A degraded copy: ``SCALE[qQUALITY][bSIGMA]`` — Gaussian blur σ, rescaled (INTER_AREA
    down, INTER_CUBIC up), re-encoded as JPEG (q70 unless given); ``1`` alone is the image as it
    is."""
    m = re.fullmatch(r"([\d.]+)(?:q(\d+))?(?:b([\d.]+))?", spec)
    if m is None:
        raise SystemExit(f"bad copy {spec!r}: SCALE[qQUALITY][bSIGMA]")
    scale, quality, sigma = float(m[1]), int(m[2] or 70), float(m[3] or 0)
    if spec == "1":
        return img
    if sigma:
        img = np.asarray(cv2.GaussianBlur(img, (0, 0), sigma), np.uint8)
    if scale != 1:
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        img = np.asarray(cv2.resize(img, None, fx=scale, fy=scale, interpolation=interpolation), np.uint8)
    _ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return np.asarray(cv2.imdecode(buf, cv2.IMREAD_COLOR), np.uint8)


def _passes(x: dict[str, Any], keys: list[str], p: float, margin: float) -> bool:
    cuts = x["cuts"]
    return all(k in cuts and cuts[k][0] == x["text"][0] and cuts[k][1] >= p and cuts[k][2] >= margin for k in keys)


def _steady(x: dict[str, Any], keys: list[str], p: float, margin: float, k: int) -> bool:
    """The line's province first in every cut, and at least ``k`` cuts at ``p`` and ``margin``."""
    cuts = x["cuts"]
    if not all(key in cuts and cuts[key][0] == x["text"][0] for key in keys):
        return False
    return bool(sum(cuts[key][1] >= p and cuts[key][2] >= margin for key in keys) >= k)


def _shipped_steady(x: dict[str, Any], keys: list[str], shipped: tuple[int, float, float]) -> bool:
    """Sure in every cut, or steady, as shipped."""
    k, p, m = shipped
    return _steady(x, keys, p, m, k) or _passes(x, keys, plate_province.MIN_P, plate_province.MIN_MARGIN)


def _near_unanimous(x: dict[str, Any], keys: list[str], p: float, margin: float, k: int, named: int) -> bool:
    """At least ``k`` cuts give the line's province at ``p`` and ``margin``; at most ``named``
    cuts name another province."""
    cuts = x["cuts"]
    if not all(key in cuts for key in keys):
        return False
    others = sum(cuts[key][0] != x["text"][0] for key in keys)
    sure = sum(cuts[key][0] == x["text"][0] and cuts[key][1] >= p and cuts[key][2] >= margin for key in keys)
    return others <= named and sure >= k


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--scales", default="1,0.75,0.55")
    ap.add_argument("--json", default=None, help="write every scored read here")
    args = ap.parse_args()
    d = Path(args.dir)
    engine = OcrEngine()
    reader = PlateReader(engine)
    pool: list[dict[str, Any]] = []
    for row in load_labels(d):
        labels = labels_of(row)
        original = cv2.imread(str(d / row["file"]))
        for s in args.scales.split(","):
            img = copy_of(original, s)
            for r in reader.read(img):
                text = grammar.normalise(r.text)
                truth = next((lb[0] for lb in labels if lb[1:] == text[1:]), None)
                if r.kind != "cn" or r.box is None or truth is None or text[0] not in grammar.CN_PROVINCES:
                    continue
                pool.append(
                    {
                        "file": row["file"],
                        "scale": s,
                        "text": text,
                        "right": text[0] == truth,
                        "doubt": r.doubt,
                        # held only for its small province (or confirmed by the check below)
                        "held": r.doubt in ("province", "framing") or r.province_alone,
                        "glyph_px": r.glyph_px,
                        "cuts": _cut_reads(engine.rec, crop_box(img, r.box), text),
                    }
                )
        print(row["file"], file=sys.stderr, flush=True)
    keys = sorted({k for x in pool for k in x["cuts"]})
    unpadded = [k for k in keys if not k.endswith("padded")]
    padded = [k for k in keys if k.endswith("padded")]
    variants = [(f"cut {k}", [k], 0.9, 0.5) for k in keys] + [
        ("five padded cuts", padded, 0.5, 0.0),
        ("five unpadded cuts (shipped)", unpadded, plate_province.MIN_P, plate_province.MIN_MARGIN),
        ("five unpadded cuts, stricter", unpadded, 0.9, 0.8),
    ]
    sure_p, sure_m = plate_province.MIN_P, plate_province.MIN_MARGIN
    shipped = (plate_province.STEADY_CUTS, plate_province.STEADY_P, plate_province.STEADY_MARGIN)
    right = [x for x in pool if x["right"]]
    held = [x for x in right if x["held"]]
    wrong = [x for x in pool if not x["right"]]
    print(
        f"pool: {len(pool)} reads, {len(right)} right provinces ({len(held)} held for the province), {len(wrong)} wrong"
    )
    for name, ks, p, m in variants:
        bad = [(x["file"], x["scale"], x["doubt"]) for x in wrong if _passes(x, ks, p, m)]
        print(
            f"{name:40s} p>={p} margin>={m}: right {sum(_passes(x, ks, p, m) for x in right):3d}"
            f" (held {sum(_passes(x, ks, p, m) for x in held):3d}), wrong {len(bad)} {bad}"
        )
    steady = [
        (f"steady, {k} cuts p>={p} margin>={m}{' (shipped)' if (k, p, m) == shipped else ''}", k, p, m)
        for k, p, m in ((2, 0.95, 0.9), (3, 0.9, 0.9), (3, 0.95, 0.8), (3, 0.95, 0.9), (3, 0.9, 0.8), (4, 0.95, 0.9))
    ]
    for name, k, p, m in steady:
        ok = [x for x in right if _steady(x, unpadded, p, m, k) or _passes(x, unpadded, sure_p, sure_m)]
        bad = [
            (x["file"], x["scale"], x["doubt"])
            for x in wrong
            if _steady(x, unpadded, p, m, k) or _passes(x, unpadded, sure_p, sure_m)
        ]
        print(
            f"{'sure in every cut, or ' + name:60s}: right {len(ok):3d} (held {sum(x['held'] for x in ok):3d}),"
            f" wrong {len(bad)} {bad}"
        )
    near = (plate_province.NEAR_UNANIMOUS_CUTS, 1, plate_province.STEADY_P, plate_province.STEADY_MARGIN)
    for k, named, p, m in (
        (4, 1, 0.95, 0.9),
        (3, 1, 0.95, 0.9),
        (2, 1, 0.95, 0.9),
        (4, 1, 0.9, 0.9),
        (4, 1, 0.95, 0.8),
        (4, 1, 0.9, 0.8),
    ):

        def rule(x: dict[str, Any], k: int = k, named: int = named, p: float = p, m: float = m) -> bool:
            return _shipped_steady(x, unpadded, shipped) or _near_unanimous(x, unpadded, p, m, k, named)

        ok = [x for x in right if rule(x)]
        bad = [(x["file"], x["scale"], x["doubt"]) for x in wrong if rule(x)]
        tag = " (shipped)" if (k, named, p, m) == near else ""
        print(
            f"{'... or near-unanimous, ' + f'{k} cuts p>={p} margin>={m}, {named} naming another' + tag:60s}:"
            f" right {len(ok):3d} (held {sum(x['held'] for x in ok):3d}), wrong {len(bad)} {bad}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(pool, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
