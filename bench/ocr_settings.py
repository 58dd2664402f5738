"""onnxruntime session settings per model, compared on every image of the development sets.

    .venv/bin/python bench/ocr_settings.py /work/shared/data [--sets plates containers]
                                           [--variants base det1 rec1 ...] [--json FILE]

Each variant is one ``OcrEngine`` whose two sessions are rebuilt with the variant's options
(``VARIANTS``); every image is read once by every variant, the variants taking turns image by
image (the order alternating), so all see the same load. Per variant: process CPU time per
image (``time.process_time``, every thread of the process added up — the figure the load
disturbs least; sessions are called one after another, so a call's CPU is its own, apart from
a spinning variant's threads still busy-waiting after their call), wall time per image, and the
images whose reads differ from the first variant's (text, status, doubt, box), plus the
held-out figures of ``portlane ocr eval --by-vehicle`` (5 folds) computed from each variant's
reads. A variant is worth keeping only if it reads every image as the first one does.

``int8det`` runs the detector as a static int8 (QDQ) model derived from the shipped one with
``onnxruntime.quantization.quantize_static`` (weights int8 per channel, activations uint8, MinMax
ranges), calibrated on 40 rendered lane frames (``render_vehicle_scene``: no development or
outside image); it is built once into the temporary directory (needs the ``onnx`` package, the
dev extra). Its reads differ: docs/recognition.md, "A static int8 detector".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import onnxruntime as ort
from portlane.edge.lane.identification import lane_verdict
from portlane.models import manifest
from portlane.models.evaluation import by_vehicle, held_out, load_labels, predictions, raw_read, read_of, score
from portlane.models.onnx_ocr import REC_BATCH_WIDTH_RATIO, OcrEngine, detector_input, session_options
from portlane.models.pipeline import ContainerReader, PlateReader


@dataclass(frozen=True)
class Variant:
    """Options of the detector's and the recogniser's sessions."""

    det_threads: int = 2
    rec_threads: int = 2
    spin: bool = False
    parallel: bool = False  # ORT_PARALLEL execution with 2 inter-op threads instead of sequential
    opt: str = "all"  # graph optimisation level: all / extended / basic
    batch: int = 8  # crops per recogniser run
    width_ratio: float = REC_BATCH_WIDTH_RATIO  # widest / narrowest crop of one run (inf: any)
    det_int8: bool = False  # the detector quantised (static int8, QDQ; module docstring)


VARIANTS = {
    "base": Variant(),
    "det1": Variant(det_threads=1),
    "rec1": Variant(rec_threads=1),
    "both1": Variant(det_threads=1, rec_threads=1),
    "spin": Variant(spin=True),
    "parallel": Variant(parallel=True),
    "extended": Variant(opt="extended"),
    "basic": Variant(opt="basic"),
    "batch32": Variant(batch=32),  # same-width crops, more of them per run
    "one_run": Variant(batch=64, width_ratio=math.inf),  # every crop of a call in one run, padded
    "int8det": Variant(det_int8=True),
}

_OPT = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
}


def _session(kind: str, threads: int, v: Variant) -> ort.InferenceSession:
    so = session_options(threads, spin=v.spin)
    so.graph_optimization_level = _OPT[v.opt]
    if v.parallel:
        so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        so.inter_op_num_threads = 2
    path = int8_detector() if kind == "det" and v.det_int8 else manifest.resolve(kind)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def int8_detector(n_frames: int = 40) -> Path:
    """The shipped detector quantised to static int8 (module docstring), built once."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from portlane.models.grammar import CN_PROVINCES
    from portlane.models.iso6346 import check_digit
    from portlane.sim_devices.render import render_vehicle_scene

    src = manifest.resolve("det")
    out = Path(tempfile.gettempdir()) / f"portlane-det-int8-{n_frames}-{src.stat().st_size}.onnx"
    if out.exists():
        return out
    rng = random.Random(1)
    letters, digits = "ABCDEFGHJKLMNPQRSTUVWXYZ", "0123456789"
    frames = []
    for i in range(n_frames):
        plate = rng.choice(CN_PROVINCES) + rng.choice(letters) + "".join(rng.choice(letters + digits) for _ in range(5))
        owner = "".join(rng.choice(letters) for _ in range(3)) + "U" + "".join(rng.choice(digits) for _ in range(6))
        boxes = [owner + str(check_digit(owner) % 10)] if i % 3 else []
        img = render_vehicle_scene([plate], boxes, seed=1000 + i, size=(1920, 1080) if i % 2 else (1280, 720))
        # the plates' input (960) and the containers' (1280 at most, 16:9 area)
        x = detector_input(img, limit=960) if i % 4 else detector_input(img, limit=1280, max_area=1280 * 1280 * 9 // 16)
        frames.append({"x": x})

    class Frames(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.it = iter(frames)

        def get_next(self) -> dict[str, Any] | None:
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(out),
            Frames(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    return out


def engine(v: Variant) -> OcrEngine:
    eng = OcrEngine()
    eng.det.session = _session("det", v.det_threads, v)
    eng.rec.session = _session("rec", v.rec_threads, v)
    eng.rec.batch, eng.rec.width_ratio = v.batch, v.width_ratio
    return eng


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return round(s[min(len(s) - 1, round(q * (len(s) - 1)))], 1)


def _key(raw: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (r.get("text") or r.get("number"), r["status"], r.get("doubt"), tuple(r["box"]) if r.get("box") else None)
        for r in raw
    ]


def run_set(d: Path, names: list[str]) -> dict[str, Any]:
    rows = load_labels(d)
    containers = all(r["kind"].startswith("container") for r in rows)
    readers = {}
    for n in names:
        eng = engine(VARIANTS[n])
        readers[n] = ContainerReader(eng) if containers else PlateReader(eng)
    imgs = [cv2.imread(str(d / r["file"])) for r in rows]
    for rd in readers.values():  # warm-up
        rd.read(imgs[0])
    load0 = os.getloadavg()[0]
    out: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for i, (row, img) in enumerate(zip(rows, imgs, strict=True)):
        for n in names if i % 2 == 0 else names[::-1]:
            t0, c0 = time.perf_counter(), time.process_time()
            reads = readers[n].read(img)
            ms, cpu = (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000
            out[n].append({"file": row["file"], "ms": ms, "cpu_ms": cpu, "raw": [raw_read(r) for r in reads]})
    load1 = os.getloadavg()[0]
    res: dict[str, Any] = {"dir": str(d), "images": len(rows), "load_1min": [load0, load1], "variants": {}}
    for n in names:
        payload = out[n]
        reads = [[read_of(x) for x in p["raw"]] for p in payload]
        held = held_out(rows, reads, 5)
        s = score(rows, predictions(payload, held["decided"])).overall
        veh = by_vehicle(rows, held["decided"], lane_verdict)
        cpu, ms = [p["cpu_ms"] for p in payload], [p["ms"] for p in payload]
        res["variants"][n] = {
            "cpu_p50": _pct(cpu, 0.5),
            "cpu_p95": _pct(cpu, 0.95),
            "cpu_total_s": round(sum(cpu) / 1000, 1),
            "cpu_median_ratio_to_first": round(
                statistics.median(c / b for c, b in zip(cpu, (p["cpu_ms"] for p in out[names[0]]), strict=True)), 3
            ),
            "wall_p50": _pct(ms, 0.5),
            "wall_p95": _pct(ms, 0.95),
            "reads_differ": [
                p["file"] for p, q in zip(payload, out[names[0]], strict=True) if _key(p["raw"]) != _key(q["raw"])
            ],
            "held_out": {
                "exact": s.exact,
                "confirmed": s.confirmed,
                "confidently_wrong": s.confident_wrong,
                "vehicles_right": veh["confirmed_right"],
                "vehicles_wrong": veh["confirmed_wrong"],
            },
        }
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("data", type=Path, help="folder holding plates/ and containers/ (the development sets)")
    ap.add_argument("--sets", nargs="+", default=["plates", "containers"])
    ap.add_argument("--variants", nargs="+", default=["base", "det1", "rec1"], choices=sorted(VARIANTS))
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    a = ap.parse_args()
    results = [run_set(a.data / s, a.variants) for s in a.sets]
    for r in results:
        print(f"{r['dir']} ({r['images']} images), 1-min load {r['load_1min'][0]:.2f} -> {r['load_1min'][1]:.2f}")
        print(f"  {'variant':10} {'CPU p50':>8} {'p95':>7} {'total s':>8} {'ratio':>6} {'wall p50':>9} {'p95':>7}")
        for n, v in r["variants"].items():
            print(
                f"  {n:10} {v['cpu_p50']:8.1f} {v['cpu_p95']:7.1f} {v['cpu_total_s']:8.1f} "
                f"{v['cpu_median_ratio_to_first']:6.3f} {v['wall_p50']:9.1f} {v['wall_p95']:7.1f}  "
                f"differ {len(v['reads_differ'])} {v['reads_differ'][:4]}  {v['held_out']}"
            )
    if a.json:
        a.json.write_text(json.dumps(results, ensure_ascii=False, indent=1))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
