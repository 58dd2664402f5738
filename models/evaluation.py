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
import dataclasses
import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from . import calibration
from .grammar import PlateRead, normalise
from .iso6346 import ContainerRead

__all__ = [
    "ImagePrediction",
    "KindScore",
    "LabelRow",
    "Prediction",
    "Score",
    "Verdict",
    "by_vehicle",
    "folds",
    "held_out",
    "labelled",
    "labels_of",
    "load_labels",
    "percentile",
    "predictions",
    "raw_read",
    "read_of",
    "read_text",
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


# -- reads across the eval's process boundary, held-out decisions, vehicles ---------------------

Read = PlateRead | ContainerRead


def raw_read(r: Read) -> dict[str, Any]:
    """A read as plain data (every field: the fit needs them), tagged with its type."""
    return {"type": "container" if isinstance(r, ContainerRead) else "plate", **dataclasses.asdict(r)}


def read_of(d: dict[str, Any]) -> Read:
    """:func:`raw_read` undone."""
    f: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k != "type"}
    return ContainerRead(**f) if d["type"] == "container" else PlateRead(**f)


def read_text(r: Read) -> str:
    return normalise(r.number if isinstance(r, ContainerRead) else r.text)


def predictions(raw: Sequence[dict[str, Any]], reads: Sequence[Sequence[Read]]) -> list[ImagePrediction]:
    """:func:`score`'s per-image predictions from (re-decided) reads; timings from ``raw``."""
    out: list[ImagePrediction] = []
    for p, rs in zip(raw, reads, strict=True):
        pred = ImagePrediction(
            file=p["file"],
            ms=p["ms"],
            reads=[
                Prediction(
                    text=read_text(r),
                    status=r.status,
                    confidence=float(r.confidence),
                    box=list(r.box) if r.box else None,
                )
                for r in rs
            ],
        )
        if "cpu_ms" in p:
            pred["cpu_ms"] = p["cpu_ms"]
        out.append(pred)
    return out


def labelled(rows: Sequence[LabelRow], reads: Sequence[Sequence[Read]]) -> list[calibration.Labelled]:
    """Every read with whether its text is one of its image's labels."""
    return [(r, read_text(r) in labels_of(row)) for row, rs in zip(rows, reads, strict=True) for r in rs]


def _group(r: Read) -> str:
    """Reliability-curve group of a read."""
    if isinstance(r, ContainerRead):
        return "container"
    return "plate_mainland" if r.kind == "cn" else "plate_crossborder_hk_macau"


def held_out(rows: Sequence[LabelRow], reads: Sequence[Sequence[Read]], k: int) -> dict[str, Any]:
    """Fit the confirmation policy on k−1 folds (:func:`folds`), decide the held-out fold's reads
    with it (``decided``); and the reliability curve: an isotonic map from a read's confidence to
    the share of right reads, fitted on the training folds, applied to the held-out reads."""
    fold = folds(rows, k)
    per_image = [labelled([row], [rs]) for row, rs in zip(rows, reads, strict=True)]
    decided: list[list[Read]] = [[] for _ in rows]
    policies: list[dict[str, Any]] = []
    points: dict[str, list[tuple[float, bool]]] = {}
    for f in range(k):
        train = [x for i, ls in enumerate(per_image) if fold[i] != f for x in ls]
        policy = calibration.fit(train)
        policies.append(dataclasses.asdict(policy))
        maps = {
            g: calibration.isotonic((r.confidence, ok) for r, ok in train if _group(r) == g)
            for g in {_group(r) for r, _ok in train}
        }
        for i, ls in enumerate(per_image):
            if fold[i] != f:
                continue
            decided[i] = [calibration.decide(r, policy) for r, _ok in ls]
            for r, ok in ls:
                if _group(r) in maps:
                    points.setdefault(_group(r), []).append((maps[_group(r)](r.confidence), ok))
    return {
        "folds": k,
        "fold_sizes": [fold.count(f) for f in range(k)],
        "policies": policies,
        "decided": decided,
        "reliability": {g: calibration.reliability(p) for g, p in sorted(points.items())},
    }


#: What the lane makes of one vehicle's reads: (the texts it identified, its exceptions). The
#: lane's own rules, passed in from ``edge`` (``identification.lane_verdict``): models imports no edge.
Verdict = Callable[[Sequence[Read], str], tuple[list[str], list[str]]]


def by_vehicle(rows: Sequence[LabelRow], reads: Sequence[Sequence[Read]], verdict: Verdict) -> dict[str, Any]:
    """Per vehicle (rows grouped by main label, :func:`vehicles`): confirmed right (no exception
    and the lane's identity is the vehicle's — both plates of a cross-boundary vehicle), needs an
    officer (an exception, or nothing read), confirmed wrong (no exception, another identity)."""
    counts = {"right": 0, "officer": 0, "wrong": 0}
    per_kind: dict[str, dict[str, int]] = {}
    detail: list[dict[str, Any]] = []
    for label, idx in vehicles(rows).items():
        row = rows[idx[0]]
        kind = "container" if row["kind"].startswith("container") else "plate"
        got, exceptions = verdict([r for i in idx for r in reads[i]], kind)
        texts = {normalise(t) for t in got}
        seen = {lb for i in idx for lb in labels_of(rows[i])}
        want = set(vehicle_labels(row))
        if not got or exceptions:
            outcome = "officer"
        elif kind == "container":
            outcome = "right" if want <= texts <= seen else "wrong"
        else:
            outcome = "right" if texts == want else "wrong"
        counts[outcome] += 1
        k = per_kind.setdefault(row["kind"], {"n": 0, "right": 0, "officer": 0, "wrong": 0})
        k["n"] += 1
        k[outcome] += 1
        detail.append({"label": label, "frames": len(idx), "outcome": outcome, "identified": got})
    n = sum(counts.values())
    return {
        "vehicles": n,
        "multi_frame": sum(1 for d in detail if d["frames"] > 1),
        "confirmed_right": counts["right"],
        "needs_officer": counts["officer"],
        "confirmed_wrong": counts["wrong"],
        "confirmed_right_share": round(counts["right"] / n, 4) if n else 0.0,
        "per_kind": per_kind,
        "wrong": [d for d in detail if d["outcome"] == "wrong"],
    }
