"""``portlane ocr``: read plates and container numbers from image files; evaluate on a labelled set.

    portlane ocr plate IMAGE... [--json]        one JSON object per line per image with --json
    portlane ocr container IMAGE... [--json]
    portlane ocr eval DIR [--json] [--sheet FILE] [--split all|odd|even] [--upstream]
                          [--folds K] [--by-vehicle] [--fit]

Every read carries a ``status``: ``confirmed`` (independent support: every character above the
threshold calibrated on the development set, and for containers a check digit that was read,
not computed or corrected) or ``low_confidence`` (goes to an officer).

``eval`` reads ``DIR/labels.csv`` (``file,text,kind``; several values joined with ``|``, the main
one first) and reports per kind: exact reads, confirmed reads, **confidently wrong** reads (a
confirmed read that is not the label: must be 0) and images with no read; latency p50/p95 and
peak RSS; and writes an HTML contact sheet of the misses (crop, what was read, what was
expected). The engine runs in a child process so that its peak RSS is its own. ``--upstream``
adds the unmodified RapidOCR pipeline as a baseline column when ``rapidocr_onnxruntime`` is
importable (it is not a dependency: it declares the GUI build of OpenCV).

Confirmation figures are **held out**: the images are split into ``--folds`` folds by source
(``source_repo`` in labels.csv), the confirmation thresholds (``models/calibration.py``) are
fitted on the other folds and each fold is decided with its own fit; the reliability curve per
kind (calibrated confidence vs the share of right reads) is computed the same way.
``--by-vehicle`` groups the images by label (one group = one vehicle or box seen by several
cameras) and runs the lane's own fusion and exception rules over each group: confirmed right,
needs an officer, confirmed wrong. ``--fit`` prints the policy fitted on every image.

Exit codes: 0 done, 1 an image could not be read or the OCR stack/weights are missing,
2 usage error / missing labels.csv.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import EXIT_FAILED, EXIT_OK, EXIT_USAGE


def register(sub: Any) -> None:
    p = sub.add_parser("ocr", help="recognise plates and container numbers in images")
    osub = p.add_subparsers(dest="ocr_command", metavar="ACTION", required=True)
    for name, helptext in (
        ("plate", "read licence plates (whole scenes or tight crops)"),
        ("container", "read ISO 6346 container numbers"),
    ):
        q = osub.add_parser(name, help=helptext)
        q.add_argument("images", nargs="+", metavar="IMAGE")
        q.add_argument("--json", action="store_true", help="one JSON object per line per image")
        q.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
        q.set_defaults(func=run_read, kind=name)
    e = osub.add_parser("eval", help="accuracy, confidently-wrong reads, latency and memory on DIR/labels.csv")
    e.add_argument("dir")
    e.add_argument("--json", action="store_true")
    e.add_argument(
        "--sheet",
        default=None,
        metavar="FILE",
        help="contact sheet of the misses (HTML; default ocr-misses-<DIR name>.html)",
    )
    e.add_argument(
        "--split",
        choices=("all", "odd", "even"),
        default="all",
        help="only the odd or even rows of labels.csv (tune on one half, check on the other)",
    )
    e.add_argument("--upstream", action="store_true", help="also run the upstream RapidOCR pipeline (if installed)")
    e.add_argument(
        "--folds",
        type=int,
        default=5,
        metavar="K",
        help="held-out folds by image source: confirmation thresholds are fitted on K-1 folds and "
        "scored on the other (default 5)",
    )
    e.add_argument(
        "--by-vehicle",
        action="store_true",
        help="also judge per vehicle: images grouped by label, fused as the lane fuses them "
        "(confirmed right / needs an officer / confirmed wrong)",
    )
    e.add_argument("--fit", action="store_true", help="also print the policy fitted on every image (to ship)")
    e.add_argument("--threads", type=int, default=None)
    e.set_defaults(func=run_eval)


def _stack_error(exc: BaseException) -> str | None:
    """One line for a missing OCR stack or weights (never a traceback); None if it is another error."""
    from portlane.models.manifest import ModelError

    if isinstance(exc, ModelError):
        return f"portlane ocr: {exc}"
    if isinstance(exc, ImportError):
        return (
            f"portlane ocr: the recognition stack is not installed ({exc.name or exc}); "
            "install it with: pip install 'portlane[ocr]'"
        )
    return None


def run_read(args: argparse.Namespace) -> int:
    try:
        from portlane.models.onnx_ocr import OcrEngine
        from portlane.models.pipeline import ContainerReader, PlateReader, decode_image

        engine = OcrEngine(threads=args.threads)
    except Exception as exc:
        msg = _stack_error(exc)
        if msg is None:
            raise
        print(msg, file=sys.stderr)
        return EXIT_FAILED
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
        items = [r.as_dict() for r in reads]
        obj = {"file": f, ("plates" if args.kind == "plate" else "containers"): items, "ms": ms}
        if args.json:
            print(json.dumps(obj, ensure_ascii=False))
        else:
            key = "text" if args.kind == "plate" else "number"
            found = ", ".join(f"{i[key]} ({i['confidence']:.2f}, {i['status']})" for i in items) or "nothing"
            print(f"{f}: {found}  [{ms} ms]")
    return rc


# --- eval -----------------------------------------------------------------------------------------


def _eval_child(engine: str, d: str, rows: list[Any], threads: int | None, conn: Any) -> None:
    """Runs in a child process: predictions and timings for one engine, and its peak RSS."""
    import resource

    try:
        conn.send(
            (
                "ok",
                _eval_engine(engine, Path(d), rows, threads),
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            )
        )
    except Exception as exc:  # reported to the parent, which prints it
        conn.send(("error", _stack_error(exc) or f"{type(exc).__name__}: {exc}", 0.0))
    finally:
        conn.close()


def _eval_engine(engine: str, d: Path, rows: list[Any], threads: int | None) -> list[Any]:
    import cv2

    containers = all(r["kind"].startswith("container") for r in rows)
    out: list[Any] = []
    if engine == "ours":
        from portlane.models.onnx_ocr import OcrEngine
        from portlane.models.pipeline import ContainerReader, PlateReader

        eng = OcrEngine(threads=threads)
        reader: Any = ContainerReader(eng) if containers else PlateReader(eng)
        reader.read(cv2.imread(str(d / rows[0]["file"])))  # warm-up
        for row in rows:
            img = cv2.imread(str(d / row["file"]))
            t0, c0 = time.perf_counter(), time.process_time()
            reads = reader.read(img)
            ms, cpu = (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000
            out.append({"file": row["file"], "ms": ms, "cpu_ms": cpu, "raw": [_raw(r) for r in reads]})
        return out
    from portlane.models.grammar import normalise
    from rapidocr_onnxruntime import RapidOCR  # upstream pipeline, defaults as in its README

    ocr = RapidOCR(**({"intra_op_num_threads": threads} if threads else {}))
    ocr(str(d / rows[0]["file"]))
    for row in rows:
        t0 = time.perf_counter()
        result, _ = ocr(str(d / row["file"]))
        ms = (time.perf_counter() - t0) * 1000
        lines = [normalise(r[1]) for r in (result or [])]
        # a label counts if it equals a line or a concatenation of consecutive lines; upstream has
        # no notion of confirmation, so every line counts as read but none as confirmed
        texts = set(lines)
        for i in range(len(lines)):
            for j in range(i + 2, min(len(lines), i + 4) + 1):
                texts.add("".join(lines[i:j]))
        out.append(
            {
                "file": row["file"],
                "ms": ms,
                "reads": [
                    {"text": t, "status": "low_confidence", "confidence": 0.0, "box": None} for t in sorted(texts)
                ],
            }
        )
    return out


def _raw(r: Any) -> dict[str, Any]:
    """A read as plain data across the process boundary (every field, for the fit)."""
    import dataclasses

    return {"type": "container" if hasattr(r, "number") else "plate", **dataclasses.asdict(r)}


def _read_of(d: dict[str, Any]) -> Any:
    from portlane.models.grammar import PlateRead
    from portlane.models.iso6346 import ContainerRead

    f: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k != "type"}
    return ContainerRead(**f) if d["type"] == "container" else PlateRead(**f)


def _text(r: Any) -> str:
    from portlane.models.grammar import normalise

    return normalise(str(getattr(r, "number", None) or r.text))


def _predictions(raw: list[Any], reads: list[list[Any]]) -> list[Any]:
    """``score``'s per-image predictions from (re-decided) reads."""
    return [
        {
            "file": p["file"],
            "ms": p["ms"],
            **({"cpu_ms": p["cpu_ms"]} if "cpu_ms" in p else {}),
            "reads": [
                {
                    "text": _text(r),
                    "status": r.status,
                    "confidence": float(r.confidence),
                    "box": list(r.box) if r.box else None,
                }
                for r in rs
            ],
        }
        for p, rs in zip(raw, reads, strict=True)
    ]


def _vehicle_outcome(row_reads: list[tuple[Any, list[Any]]]) -> tuple[str, list[str]]:
    """One vehicle (a group of frames of one label) judged as the lane judges it: its reads fused
    by the lane's own recogniser conversion (``plates_of``/``containers_of`` over
    ``models.fusion``), then the lane's own exception rules. Returns ("right" | "officer" |
    "wrong", what the lane identified)."""
    from portlane.edge.lane.identification import container_exceptions, plate_exceptions
    from portlane.edge.lane.recognition import containers_of, plates_of
    from portlane.models.evaluation import labels_of, vehicle_labels
    from portlane.models.fusion import fuse_containers, fuse_plates
    from portlane.models.grammar import PlateRead
    from portlane.models.iso6346 import ContainerRead

    row = row_reads[0][0]
    want = set(vehicle_labels(row))
    seen = {lb for r, _ in row_reads for lb in labels_of(r)}
    reads = [x for _r, rs in row_reads for x in rs]
    if row["kind"].startswith("container"):
        boxes = containers_of(fuse_containers(x for x in reads if isinstance(x, ContainerRead)))
        got = [c.number for c in boxes]
        if not boxes or container_exceptions(boxes):
            return "officer", got
        return ("right" if want <= set(got) and set(got) <= seen else "wrong"), got
    plates = plates_of(fuse_plates(x for x in reads if isinstance(x, PlateRead)))
    got = [p.text for p in plates]
    conf = min((p.confidence for p in plates), default=0.0)
    if plate_exceptions(plates, conf, registrations={}):
        return "officer", got
    texts = {_norm(t) for t in got}
    return ("right" if texts == want else "wrong"), got


def _norm(t: str) -> str:
    from portlane.models.grammar import normalise

    return normalise(t)


def _by_vehicle(rows: list[Any], reads: list[list[Any]]) -> dict[str, Any]:
    from portlane.models.evaluation import vehicles

    counts = {"right": 0, "officer": 0, "wrong": 0}
    per_kind: dict[str, dict[str, int]] = {}
    detail: list[dict[str, Any]] = []
    for label, idx in vehicles(rows).items():
        outcome, got = _vehicle_outcome([(rows[i], reads[i]) for i in idx])
        counts[outcome] += 1
        k = per_kind.setdefault(rows[idx[0]]["kind"], {"n": 0, "right": 0, "officer": 0, "wrong": 0})
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


def _group(r: Any) -> str:
    """Reliability-curve group of a read."""
    if hasattr(r, "number"):
        return "container"
    return "plate_mainland" if r.kind == "cn" else "plate_crossborder_hk_macau"


def _held_out(rows: list[Any], reads: list[list[Any]], k: int) -> dict[str, Any]:
    """Fit the confirmation policy on k−1 folds, decide the held-out fold's reads with it; and the
    reliability curve: an isotonic map from a read's confidence to the share of right reads,
    fitted on the training folds, applied to the held-out reads."""
    from portlane.models import calibration
    from portlane.models.evaluation import folds, labels_of

    fold = folds(rows, k)
    labelled = [[(r, _text(r) in labels_of(rows[i])) for r in rs] for i, rs in enumerate(reads)]
    decided: list[list[Any]] = [[] for _ in rows]
    policies = []
    points: dict[str, list[tuple[float, bool]]] = {}
    for f in range(k):
        train = [x for i, ls in enumerate(labelled) if fold[i] != f for x in ls]
        policy = calibration.fit(train)
        policies.append(policy)
        maps = {
            g: calibration.isotonic((r.confidence, ok) for r, ok in train if _group(r) == g)
            for g in {_group(r) for r, _ok in train}
        }
        for i, ls in enumerate(labelled):
            if fold[i] != f:
                continue
            decided[i] = [calibration.decide(r, policy) for r, _ok in ls]
            for r, ok in ls:
                g = _group(r)
                if g in maps:
                    points.setdefault(g, []).append((maps[g](r.confidence), ok))
    import dataclasses

    return {
        "folds": k,
        "fold_sizes": [fold.count(f) for f in range(k)],
        "policies": [dataclasses.asdict(p) for p in policies],
        "decided": decided,
        "reliability": {g: calibration.reliability(p) for g, p in sorted(points.items())},
    }


def run_eval(args: argparse.Namespace) -> int:
    import multiprocessing as mp

    from portlane.models.evaluation import load_labels, score, write_contact_sheet

    d = Path(args.dir)
    try:
        rows = load_labels(d)
    except OSError as exc:
        print(f"{d}: cannot read labels.csv: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.split != "all":
        rows = rows[(0 if args.split == "odd" else 1) :: 2]
    if not rows:
        print(f"{d}/labels.csv has no rows", file=sys.stderr)
        return EXIT_USAGE
    ctx = mp.get_context("spawn")
    report: dict[str, Any] = {
        "dir": str(d),
        "images": len(rows),
        "split": args.split,
        "engines": {},
        "load_1min": os.getloadavg()[0],
    }
    rc = EXIT_OK
    for engine in ("ours", "upstream") if args.upstream else ("ours",):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_eval_child, args=(engine, str(d), rows, args.threads, child))
        proc.start()
        child.close()
        with parent:
            status, payload, rss = parent.recv()
        proc.join()
        if status != "ok":
            report["engines"][engine] = {"error": payload}
            if engine == "ours":
                rc = EXIT_FAILED
            continue
        if engine == "ours":
            reads = [[_read_of(d) for d in p["raw"]] for p in payload]
            held = _held_out(rows, reads, args.folds)
            scored = score(rows, _predictions(payload, held["decided"]))
            whole = score(rows, _predictions(payload, reads))
            e = scored.as_dict()
            e["held_out"] = {k: v for k, v in held.items() if k != "decided"}
            e["shipped_policy"] = {
                "overall": whole.overall.as_dict(),
                "per_kind": {k: v.as_dict() for k, v in whole.per_kind.items()},
            }
            if args.by_vehicle:
                e["by_vehicle"] = _by_vehicle(rows, held["decided"])
                e["by_vehicle_shipped_policy"] = _by_vehicle(rows, reads)
            if args.fit:
                import dataclasses

                from portlane.models import calibration
                from portlane.models.evaluation import labels_of

                every = [(r, _text(r) in labels_of(rows[i])) for i, rs in enumerate(reads) for r in rs]
                e["fitted_on_all"] = dataclasses.asdict(calibration.fit(every))
        else:
            scored = score(rows, payload)
            e = scored.as_dict()
        e["peak_rss_mb"] = round(rss, 1)
        if engine == "ours" and scored.misses:
            # by default outside the working tree: the sheet holds crops of the evaluated images,
            # which may not be redistributable (never commit the development set)
            sheet = Path(args.sheet or Path(tempfile.gettempdir()) / f"portlane-ocr-misses-{d.resolve().name}.html")
            write_contact_sheet(sheet, d, f"portlane ocr eval {d} ({args.split}): misses", scored.misses)
            e["contact_sheet"] = str(sheet)
        report["engines"][engine] = e
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        _print_report(report)
    return rc


def _print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    engines = report["engines"]
    t = Table(
        title=f"{report['dir']} — {report['images']} images ({report['split']}); "
        f"exact / confirmed / confidently wrong / nothing read; 1-min load {report['load_1min']:.1f}"
    )
    t.add_column("")
    for name in engines:
        t.add_column(name, justify="right")
    kinds = sorted({k for e in engines.values() for k in e.get("per_kind", {})})

    def cell(e: dict[str, Any], f: Any) -> str:
        return "error" if "error" in e else str(f(e))

    def fig(k: dict[str, Any]) -> str:
        return (
            f"{k['exact']}/{k['n']} ({k['accuracy']:.1%}) · {k['confirmed']} · {k['confident_wrong']} · {k['nothing']}"
        )

    for k in kinds:
        t.add_row(
            k, *(cell(e, lambda e, k=k: fig(e["per_kind"][k]) if k in e["per_kind"] else "-") for e in engines.values())
        )
    t.add_row("overall", *(cell(e, lambda e: fig(e["overall"])) for e in engines.values()))
    t.add_row("CONFIDENTLY WRONG", *(cell(e, lambda e: e["overall"]["confident_wrong"]) for e in engines.values()))
    t.add_row("all labels", *(cell(e, lambda e: "{correct}/{n}".format(**e["all_labels"])) for e in engines.values()))
    t.add_row(
        "latency p50 / p95 ms",
        *(cell(e, lambda e: "{p50} / {p95}".format(**e["latency_ms"])) for e in engines.values()),
    )
    t.add_row(
        "CPU time p50 / p95 ms (all threads)",
        *(
            cell(
                e, lambda e: "{cpu_p50} / {cpu_p95}".format(**e["latency_ms"]) if "cpu_p50" in e["latency_ms"] else "-"
            )
            for e in engines.values()
        ),
    )
    t.add_row("peak RSS MB", *(cell(e, lambda e: e["peak_rss_mb"]) for e in engines.values()))
    console = Console()
    console.print(t)
    ours = engines.get("ours", {})
    held = ours.get("held_out")
    if held:
        console.print(
            f"confirmed above: thresholds fitted on {held['folds'] - 1} of {held['folds']} folds (by image "
            f"source, sizes {held['fold_sizes']}), scored on the held-out fold; with the shipped policy on "
            f"every image: {fig(ours['shipped_policy']['overall'])}"
        )
        for group, curve in held["reliability"].items():
            rt = Table(title=f"reliability, {group} (held out): calibrated confidence vs share right")
            for col in ("bin", "n", "predicted", "observed"):
                rt.add_column(col, justify="right")
            for b in curve:
                rt.add_row(str(b["bin"]), str(b["n"]), f"{b['predicted']:.3f}", f"{b['observed']:.3f}")
            console.print(rt)
    for key, title in (("by_vehicle", "held-out policy"), ("by_vehicle_shipped_policy", "shipped policy")):
        bv = ours.get(key)
        if not bv:
            continue
        vt = Table(title=f"per vehicle ({title}): images grouped by label, fused as the lane fuses them")
        for col in ("kind", "vehicles", "confirmed right", "needs officer", "CONFIRMED WRONG"):
            vt.add_column(col, justify="right")
        for k, v in sorted(bv["per_kind"].items()):
            vt.add_row(k, str(v["n"]), str(v["right"]), str(v["officer"]), str(v["wrong"]))
        vt.add_row(
            "all",
            f"{bv['vehicles']} ({bv['multi_frame']} seen in 2+ frames)",
            f"{bv['confirmed_right']} ({bv['confirmed_right_share']:.1%})",
            str(bv["needs_officer"]),
            str(bv["confirmed_wrong"]),
        )
        console.print(vt)
        for w in bv["wrong"]:
            console.print(f"[red]confirmed wrong vehicle:[/] {w['label']} identified as {w['identified']}")
    for name, e in engines.items():
        if "error" in e:
            print(f"{name}: {e['error']}")
        elif e["misses"]:
            print(f"{name} misses: " + "; ".join(f"{m['file']} {m['label']} -> {m['reads'][:3]}" for m in e["misses"]))
            if "contact_sheet" in e:
                print(f"contact sheet: {e['contact_sheet']}")
