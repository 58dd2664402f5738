"""Scoring a labelled image set and drawing the contact sheet of its misses (``portlane ocr eval``).

Labels: ``DIR/labels.csv`` with columns ``file,text,kind``; ``text`` may hold several plates or
numbers joined with ``|``, the main one first (the plate the camera is aimed at).

Per image the reader returns reads, each ``confirmed`` or ``low_confidence``. The figures:

``exact``
    the main label is among the reads (whatever their status) — what an officer sees on screen.
``confirmed``
    the main label is read *and* confirmed — what the lane may act on without an officer.
``confident_wrong``
    a confirmed read whose text is none of the image's labels. This is the figure that must be
    0: a wrong number that nobody is asked to look at.
``nothing``
    no read at all.

Pure Python; the contact sheet imports cv2 lazily (only when there are misses to draw).
"""

from __future__ import annotations

import base64
import csv
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from .grammar import normalise

__all__ = [
    "ImagePrediction",
    "KindScore",
    "LabelRow",
    "Prediction",
    "Score",
    "folds",
    "labels_of",
    "load_labels",
    "percentile",
    "score",
    "vehicle_labels",
    "vehicles",
    "write_contact_sheet",
]


class LabelRow(TypedDict):
    file: str
    text: str
    kind: str
    source: str  # where the image comes from (``source_repo``): the folds keep a source together


class Prediction(TypedDict):
    text: str
    status: str
    confidence: float
    box: list[int] | None


class ImagePrediction(TypedDict, total=False):
    file: str
    ms: float
    cpu_ms: float  # process CPU time, all threads: less sensitive to other load than ``ms``
    reads: list[Prediction]


@dataclass
class KindScore:
    n: int = 0
    exact: int = 0
    confirmed: int = 0
    confident_wrong: int = 0
    nothing: int = 0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "n": self.n,
            "exact": self.exact,
            "accuracy": round(self.exact / self.n, 4) if self.n else 0.0,
            "confirmed": self.confirmed,
            "confident_wrong": self.confident_wrong,
            "nothing": self.nothing,
        }


@dataclass
class Score:
    overall: KindScore = field(default_factory=KindScore)
    per_kind: dict[str, KindScore] = field(default_factory=dict)
    all_labels: tuple[int, int] = (0, 0)
    misses: list[dict[str, object]] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "overall": self.overall.as_dict(),
            "per_kind": {k: v.as_dict() for k, v in self.per_kind.items()},
            "all_labels": {"correct": self.all_labels[0], "n": self.all_labels[1]},
            "latency_ms": self.latency_ms,
            "misses": self.misses,
        }


def load_labels(d: Path) -> list[LabelRow]:
    with (d / "labels.csv").open(encoding="utf-8", newline="") as fh:
        return [
            LabelRow(file=r["file"], text=r["text"], kind=r["kind"], source=r.get("source_repo") or "")
            for r in csv.DictReader(fh)
            if r.get("file")
        ]


def labels_of(row: LabelRow) -> list[str]:
    """The row's labels, normalised, main first."""
    return [normalise(t) for t in row["text"].split("|")]


def vehicle_labels(row: LabelRow) -> list[str]:
    """What one vehicle carries: a cross-boundary vehicle both its plates, otherwise the main label
    (the other labels of a scene are other vehicles)."""
    labels = labels_of(row)
    return labels if row["kind"] == "cn_crossborder" else labels[:1]


def folds(rows: Sequence[LabelRow], k: int) -> list[int]:
    """A fold (0..k-1) per row; all rows of one source (``source``, else the file name's stem
    without digits) share a fold, so a held-out fold holds sources the fit never saw. Sources are
    dealt largest first to the fold with the fewest rows so far (ties: lowest fold)."""

    def key(r: LabelRow) -> str:
        return r["source"] or "".join(c for c in Path(r["file"]).stem if not c.isdigit())

    sizes: dict[str, int] = {}
    for r in rows:
        sizes[key(r)] = sizes.get(key(r), 0) + 1
    load = [0] * k
    fold_of: dict[str, int] = {}
    for src in sorted(sizes, key=lambda s: (-sizes[s], s)):
        f = min(range(k), key=lambda i: (load[i], i))
        fold_of[src] = f
        load[f] += sizes[src]
    return [fold_of[key(r)] for r in rows]


def vehicles(rows: Sequence[LabelRow]) -> dict[str, list[int]]:
    """Rows grouped by their main label: one group is one vehicle (or box) seen in several frames."""
    out: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        out.setdefault(labels_of(r)[0], []).append(i)
    return out


def percentile(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    if not s:
        return 0.0
    k = (len(s) - 1) * q
    lo, hi = int(k), min(len(s) - 1, int(k) + 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def score(rows: Sequence[LabelRow], preds: Sequence[ImagePrediction]) -> Score:
    s = Score()
    hit_all = n_all = 0
    for row, p in zip(rows, preds, strict=True):
        labels = [normalise(t) for t in row["text"].split("|")]
        texts = [normalise(r["text"]) for r in p["reads"]]
        confirmed = {normalise(r["text"]) for r in p["reads"] if r["status"] == "confirmed"}
        exact = labels[0] in texts
        wrong = sorted(t for t in confirmed if t not in labels)
        for ks in (s.overall, s.per_kind.setdefault(row["kind"], KindScore())):
            ks.n += 1
            ks.exact += exact
            ks.confirmed += labels[0] in confirmed
            ks.confident_wrong += bool(wrong)
            ks.nothing += not texts
        hit_all += sum(lb in texts for lb in labels)
        n_all += len(labels)
        if not exact or wrong:
            s.misses.append(
                {
                    "file": row["file"],
                    "kind": row["kind"],
                    "label": labels[0],
                    "reads": [f"{r['text']} ({r['status']}, {r['confidence']:.2f})" for r in p["reads"]],
                    "confident_wrong": wrong,
                    "box": next((r["box"] for r in p["reads"] if r["box"]), None),
                }
            )
    s.all_labels = (hit_all, n_all)
    lat = [p["ms"] for p in preds]
    s.latency_ms = {
        "p50": round(percentile(lat, 0.5), 1),
        "p95": round(percentile(lat, 0.95), 1),
        "max": round(max(lat), 1) if lat else 0.0,
    }
    cpu = [p["cpu_ms"] for p in preds if "cpu_ms" in p]
    if cpu:
        s.latency_ms |= {"cpu_p50": round(percentile(cpu, 0.5), 1), "cpu_p95": round(percentile(cpu, 0.95), 1)}
    return s


def write_contact_sheet(path: Path, image_dir: Path, title: str, misses: Sequence[dict[str, object]]) -> None:
    """One HTML file, images inlined: per miss the region that was read (or the whole frame when
    nothing was), what was read and what was expected — so that people look rather than read."""
    import cv2

    cells = []
    for m in misses:
        img = cv2.imread(str(image_dir / str(m["file"])))
        if img is None:
            continue
        box = m.get("box")
        if isinstance(box, list) and len(box) == 4:
            x1, y1, x2, y2 = (int(v) for v in box)
            mx, my = (x2 - x1) // 2 + 8, (y2 - y1) + 8
            img = img[max(0, y1 - my) : y2 + my, max(0, x1 - mx) : x2 + mx]
        scale = min(1.0, 360 / max(img.shape[:2]))
        if scale < 1:
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            continue
        src = "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()
        reads = m.get("reads") or []
        read_txt = "<br>".join(html.escape(str(r)) for r in reads) if isinstance(reads, list) and reads else "nothing"
        wrong = m.get("confident_wrong")
        flag = ' class="wrong"' if wrong else ""
        cells.append(
            f'<figure{flag}><img src="{src}"><figcaption><b>{html.escape(str(m["file"]))}</b> '
            f"({html.escape(str(m['kind']))})<br>expected <code>{html.escape(str(m['label']))}</code>"
            f"<br>read <code>{read_txt}</code></figcaption></figure>"
        )
    path.write_text(
        "<!doctype html><meta charset=utf-8><title>" + html.escape(title) + "</title><style>"
        "body{font-family:sans-serif}figure{display:inline-block;vertical-align:top;margin:6px;padding:6px;"
        "border:1px solid #ccc;max-width:380px}figure.wrong{border:3px solid #c00}img{max-width:360px}"
        "</style><h1>"
        + html.escape(title)
        + f"</h1><p>{len(cells)} misses; red border = confidently wrong.</p>"
        + "".join(cells),
        encoding="utf-8",
    )
