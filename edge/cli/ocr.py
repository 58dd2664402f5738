"""``portlane ocr``: read plates and container numbers from image files; evaluate on a labelled set.

    portlane ocr plate IMAGE... [--json]        one JSON object per line per image with --json
    portlane ocr container IMAGE... [--json]
    portlane ocr eval DIR [--json] [--no-upstream]

``eval`` reads ``DIR/labels.csv`` (``file,text,kind``; several values joined with ``|``, the main
one first) and reports exact-match accuracy per kind and overall, latency p50/p95 per image and
peak RSS — for our pipeline and, in the same run, for the unmodified upstream RapidOCR pipeline
(the same weights used as its README shows). Each engine runs in its own child process so that
its peak RSS is its own. A container label counts as read when our main read equals it; reads
whose check digit was inferred are counted and shown separately.

Exit codes: 0 done, 1 an image could not be read, 2 usage error / missing labels.csv.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

from . import EXIT_FAILED, EXIT_OK, EXIT_USAGE


def register(sub: Any) -> None:
    p = sub.add_parser("ocr", help="recognise plates and container numbers in images")
    osub = p.add_subparsers(dest="ocr_command", metavar="ACTION", required=True)
    for name, helptext in (("plate", "read licence plates (whole scenes or tight crops)"),
                           ("container", "read ISO 6346 container numbers")):
        q = osub.add_parser(name, help=helptext)
        q.add_argument("images", nargs="+", metavar="IMAGE")
        q.add_argument("--json", action="store_true", help="one JSON object per line per image")
        q.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
        q.set_defaults(func=run_read, kind=name)
    e = osub.add_parser("eval", help="accuracy, latency and memory on DIR/labels.csv, ours vs upstream")
    e.add_argument("dir")
    e.add_argument("--json", action="store_true")
    e.add_argument("--no-upstream", action="store_true", help="skip the upstream RapidOCR baseline")
    e.add_argument("--threads", type=int, default=None)
    e.set_defaults(func=run_eval)


def _box(b: Any) -> list[int] | None:
    return [int(v) for v in b] if b is not None else None


def run_read(args: argparse.Namespace) -> int:
    from portlane.models.onnx_ocr import OcrEngine
    from portlane.models.pipeline import ContainerReader, PlateReader, decode_image

    engine = OcrEngine(threads=args.threads)
    reader: Any = PlateReader(engine) if args.kind == "plate" else ContainerReader(engine)
    rc = EXIT_OK
    for f in args.images:
        try:
            img = decode_image(Path(f).read_bytes())
        except (OSError, ValueError) as exc:
            print(f"{f}: cannot read image: {exc}", file=sys.stderr)
            rc = EXIT_FAILED
            continue
        t0 = time.perf_counter()
        reads = reader.read(img)
        ms = round((time.perf_counter() - t0) * 1000, 1)
        if args.kind == "plate":
            items = [{"text": r.text, "kind": r.kind, "confidence": r.confidence, "box": _box(r.box)} for r in reads]
            obj = {"file": f, "plates": items, "ms": ms}
        else:
            items = [{"number": r.number, "check_digit_ok": r.check_digit_ok,
                      "check_digit_inferred": r.check_digit_inferred, "corrected": r.corrected,
                      "iso_type": r.iso_type, "confidence": r.confidence, "box": _box(r.box)} for r in reads]
            obj = {"file": f, "containers": items, "ms": ms}
        if args.json:
            print(json.dumps(obj, ensure_ascii=False))
        else:
            key = "text" if args.kind == "plate" else "number"
            found = ", ".join(f"{i[key]} ({i['confidence']:.2f})" for i in items) or "nothing"
            print(f"{f}: {found}  [{ms} ms]")
    return rc


# --- eval -----------------------------------------------------------------------------------------

def _load_labels(d: Path) -> list[dict[str, str]]:
    with (d / "labels.csv").open(encoding="utf-8", newline="") as fh:
        return [row for row in csv.DictReader(fh) if row.get("file")]


def _is_container_set(rows: list[dict[str, str]]) -> bool:
    return all(r["kind"].startswith("container") for r in rows)


def _eval_child(engine: str, d: str, rows: list[dict[str, str]], threads: int | None, conn: Any) -> None:
    """Runs in a child process: predictions and timings for one engine."""
    import resource

    try:
        conn.send(("ok", _eval_engine(engine, Path(d), rows, threads),
                   resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    except Exception as exc:  # reported to the parent, which prints it
        conn.send(("error", f"{type(exc).__name__}: {exc}", 0.0))
    finally:
        conn.close()


def _eval_engine(engine: str, d: Path, rows: list[dict[str, str]], threads: int | None) -> list[dict[str, Any]]:
    import cv2
    from portlane.models.grammar import normalise

    containers = _is_container_set(rows)
    out: list[dict[str, Any]] = []
    if engine == "ours":
        from portlane.models.onnx_ocr import OcrEngine
        from portlane.models.pipeline import ContainerReader, PlateReader

        eng = OcrEngine(threads=threads)
        reader: Any = ContainerReader(eng) if containers else PlateReader(eng)
        warm = cv2.imread(str(d / rows[0]["file"]))
        reader.read(warm)
        for row in rows:
            img = cv2.imread(str(d / row["file"]))
            t0 = time.perf_counter()
            reads = reader.read(img)
            ms = (time.perf_counter() - t0) * 1000
            if containers:
                texts = [r.number for r in reads]
                inferred = [r.number for r in reads if r.check_digit_inferred]
            else:
                texts = [normalise(r.text) for r in reads]
                inferred = []
            out.append({"file": row["file"], "ms": ms, "texts": texts, "inferred": inferred})
        return out
    from rapidocr_onnxruntime import RapidOCR  # upstream pipeline, defaults as in its README

    ocr = RapidOCR(**({"intra_op_num_threads": threads} if threads else {}))
    ocr(str(d / rows[0]["file"]))
    for row in rows:
        t0 = time.perf_counter()
        result, _ = ocr(str(d / row["file"]))
        ms = (time.perf_counter() - t0) * 1000
        lines = [normalise(r[1]) for r in (result or [])]
        # a label counts if it equals a line or a concatenation of consecutive lines
        texts = set(lines)
        for i in range(len(lines)):
            for j in range(i + 2, min(len(lines), i + 4) + 1):
                texts.add("".join(lines[i:j]))
        out.append({"file": row["file"], "ms": ms, "texts": sorted(texts), "inferred": []})
    return out


def _percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    if not s:
        return 0.0
    k = (len(s) - 1) * q
    lo, hi = int(k), min(len(s) - 1, int(k) + 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _score(rows: list[dict[str, str]], preds: list[dict[str, Any]]) -> dict[str, Any]:
    from portlane.models.grammar import normalise

    by_kind: dict[str, list[int]] = {}
    misses, all_hit, all_n, inferred = [], 0, 0, 0
    for row, p in zip(rows, preds, strict=True):
        labels = [normalise(t) for t in row["text"].split("|")]
        hit = labels[0] in p["texts"]
        inferred += hit and labels[0] in p["inferred"]
        by_kind.setdefault(row["kind"], [0, 0])
        by_kind[row["kind"]][0] += hit
        by_kind[row["kind"]][1] += 1
        all_hit += sum(lb in p["texts"] for lb in labels)
        all_n += len(labels)
        if not hit:
            misses.append({"file": row["file"], "label": labels[0], "read": p["texts"][:4]})
    n = len(rows)
    correct = sum(v[0] for v in by_kind.values())
    lat = [p["ms"] for p in preds]
    return {
        "overall": {"correct": correct, "n": n, "accuracy": round(correct / n, 4) if n else 0.0},
        "per_kind": {k: {"correct": v[0], "n": v[1], "accuracy": round(v[0] / v[1], 4)} for k, v in by_kind.items()},
        "all_labels": {"correct": all_hit, "n": all_n},
        "check_digit_inferred": inferred,
        "latency_ms": {"p50": round(_percentile(lat, 0.5), 1), "p95": round(_percentile(lat, 0.95), 1),
                       "max": round(max(lat), 1) if lat else 0.0},
        "misses": misses,
    }


def run_eval(args: argparse.Namespace) -> int:
    import multiprocessing as mp

    d = Path(args.dir)
    try:
        rows = _load_labels(d)
    except OSError as exc:
        print(f"{d}: cannot read labels.csv: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not rows:
        print(f"{d}/labels.csv has no rows", file=sys.stderr)
        return EXIT_USAGE
    ctx = mp.get_context("spawn")
    report: dict[str, Any] = {"dir": str(d), "images": len(rows), "engines": {}}
    for engine in ("ours",) if args.no_upstream else ("ours", "upstream"):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_eval_child, args=(engine, str(d), rows, args.threads, child))
        proc.start()
        child.close()
        status, payload, rss = parent.recv()
        proc.join()
        if status != "ok":
            report["engines"][engine] = {"error": payload}
            continue
        scored = _score(rows, payload)
        scored["peak_rss_mb"] = round(rss, 1)
        report["engines"][engine] = scored
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        _print_report(report)
    return EXIT_OK


def _print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    engines = report["engines"]
    t = Table(title=f"{report['dir']} — {report['images']} images (main label exact match)")
    t.add_column("")
    for name in engines:
        t.add_column(name, justify="right")
    kinds = sorted({k for e in engines.values() for k in e.get("per_kind", {})})

    def cell(e: dict[str, Any], f: Any) -> str:
        return "error" if "error" in e else f(e)

    for k in kinds:
        t.add_row(k, *(cell(e, lambda e, k=k: "{correct}/{n}".format(**e["per_kind"][k])) for e in engines.values()))
    t.add_row("overall", *(cell(e, lambda e: "{correct}/{n} ({accuracy:.1%})".format(**e["overall"]))
                           for e in engines.values()))
    t.add_row("all labels", *(cell(e, lambda e: "{correct}/{n}".format(**e["all_labels"])) for e in engines.values()))
    t.add_row("of which check digit inferred", *(cell(e, lambda e: str(e["check_digit_inferred"]))
                                                 for e in engines.values()))
    t.add_row("latency p50 / p95 ms", *(cell(e, lambda e: "{p50} / {p95}".format(**e["latency_ms"]))
                                        for e in engines.values()))
    t.add_row("peak RSS MB", *(cell(e, lambda e: str(e["peak_rss_mb"])) for e in engines.values()))
    Console().print(t)
    for name, e in engines.items():
        if "error" in e:
            print(f"{name}: {e['error']}")
        elif e["misses"]:
            print(f"{name} misses: " + "; ".join(f"{m['file']} {m['label']} -> {m['read']}" for m in e["misses"]))
