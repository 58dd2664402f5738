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

from portlane.edge.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE


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
        from portlane.models.evaluation import raw_read
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
            out.append({"file": row["file"], "ms": ms, "cpu_ms": cpu, "raw": [raw_read(r) for r in reads]})
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


def _scored_ours(args: argparse.Namespace, rows: list[Any], payload: list[Any]) -> dict[str, Any]:
    """Our engine's figures: per image with held-out confirmation (``evaluation.held_out``), the
    shipped policy's for comparison, per vehicle through the lane's own rules, the fit."""
    import dataclasses

    from portlane.edge.lane.identification import lane_verdict
    from portlane.models import calibration
    from portlane.models.evaluation import by_vehicle, held_out, labelled, predictions, read_of, score

    reads = [[read_of(d) for d in p["raw"]] for p in payload]
    held = held_out(rows, reads, args.folds)
    whole = score(rows, predictions(payload, reads))
    e = score(rows, predictions(payload, held["decided"])).as_dict()
    e["held_out"] = {k: v for k, v in held.items() if k != "decided"}
    e["shipped_policy"] = {
        "overall": whole.overall.as_dict(),
        "per_kind": {k: v.as_dict() for k, v in whole.per_kind.items()},
    }
    if args.by_vehicle:
        e["by_vehicle"] = by_vehicle(rows, held["decided"], lane_verdict)
        e["by_vehicle_shipped_policy"] = by_vehicle(rows, reads, lane_verdict)
    if args.fit:
        e["fitted_on_all"] = dataclasses.asdict(calibration.fit(labelled(rows, reads)))
    return e


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
        e: dict[str, Any] = _scored_ours(args, rows, payload) if engine == "ours" else score(rows, payload).as_dict()
        e["peak_rss_mb"] = round(rss, 1)
        if engine == "ours" and e["misses"]:
            # by default outside the working tree: the sheet holds crops of the evaluated images,
            # which may not be redistributable (never commit the development set)
            sheet = Path(args.sheet or Path(tempfile.gettempdir()) / f"portlane-ocr-misses-{d.resolve().name}.html")
            write_contact_sheet(sheet, d, f"portlane ocr eval {d} ({args.split}): misses", e["misses"])
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
