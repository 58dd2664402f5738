"""Per-setting OCR measurements on synthetic frames (no data needed), one setting per line.

    .venv/bin/python bench/ocr_bench.py [--runs 10] [--json]

Settings measured: det size limit (pyramid levels 640/960/1280) on a 1080p frame; ROI (plate
zone only) vs full frame; rec-only tight crop; rec batching (8 crops one-by-one vs one batch);
onnxruntime intra-op threads 1 vs 2; session reuse vs a new session per frame.
Latencies are medians and p95 over ``--runs`` after 2 warm-ups.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import cv2
from portlane.models.onnx_ocr import OcrEngine
from portlane.models.pipeline import PlateReader
from portlane.sim_devices.render import render_plate, render_vehicle_scene


def _time(fn: Callable[[], object], runs: int) -> dict[str, float]:
    for _ in range(2):
        fn()
    xs = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        xs.append((time.perf_counter() - t0) * 1000)
    xs.sort()
    return {"p50": round(statistics.median(xs), 1), "p95": round(xs[min(len(xs) - 1, int(0.95 * len(xs)))], 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    frame = render_vehicle_scene(["苏A36E80"], seed=4, size=(1920, 1080))
    crop = cv2.resize(render_plate("皖AU3942", "cn_blue", seed=1), (94, 24), interpolation=cv2.INTER_AREA)
    texts = ["粤B12345", "苏A36E80", "皖AU3942", "京A1234学"] * 2
    crops = [render_plate(t, "cn_blue", seed=i) for i, t in enumerate(texts)]
    rows: list[tuple[str, dict[str, float]]] = []
    for threads in (2, 1):
        eng = OcrEngine(threads=threads)
        for limit in (640, 960, 1280):
            r = PlateReader(eng, det_limit=limit)
            ok = [p.text for p in r.read(frame)] == ["苏A36E80"]
            rows.append(
                (
                    f"threads={threads} full 1080p frame, det limit {limit} (read ok: {ok})",
                    _time(lambda r=r: r.read(frame), a.runs),
                )
            )
        roi = PlateReader(eng, det_limit=960, roi=(480, 700, 1440, 1080))
        rows.append(
            (
                f"threads={threads} ROI 960x380 (plate zone) of the 1080p frame",
                _time(lambda roi=roi: roi.read(frame), a.runs),
            )
        )
        tight = PlateReader(eng)
        rows.append((f"threads={threads} 94x24 tight crop (rec only)", _time(lambda t=tight: t.read(crop), a.runs)))
        rows.append(
            (f"threads={threads} rec 8 crops one by one", _time(lambda e=eng: [e.rec([c]) for c in crops], a.runs))
        )
        rows.append((f"threads={threads} rec 8 crops in one batch", _time(lambda e=eng: e.rec(crops), a.runs)))
    rows.append(
        (
            "new sessions per frame (no reuse) + 960 det",
            _time(lambda: PlateReader(OcrEngine(threads=2)).read(frame), max(3, a.runs // 3)),
        )
    )
    if a.json:
        print(json.dumps({k: v for k, v in rows}))
    else:
        for k, v in rows:
            print(f"{v['p50']:8.1f} {v['p95']:8.1f}  {k}")


if __name__ == "__main__":
    main()
