"""Recognition throughput: frames per second per core, plate and container frames.

    python bench/run.py recognition [--frames 30] [--real ../shared/data] [--threads 1]

One worker, as in the lane: the engine and readers of ``bench/ocr_bench.py`` (``OcrEngine``,
``PlateReader``, ``ContainerReader``; its frame loaders are reused, that file is the
recognition engineer's) read ``--frames`` 1080p frames of each kind one after another after
two warm-ups. Reported: frames per wall second and frames per CPU second of this process
(user + system; with ``--threads 1`` onnxruntime computes on one core, so frames per CPU
second is the per-core figure and a host with N free cores serves about N times that with N
workers). With ``--real DIR`` the frames are the 1920×1080 images of ``DIR/plates`` and
``DIR/containers``; otherwise one synthetic scene each. Not measured here: the recognition
daemon behind its Unix socket (the lane's ``SocketRecogniser``) — its per-frame overhead is
the socket hop on top of these figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine, markdown_table
from scale import loadavg

WARMUP = 2


def _rate(read: Callable[[Any], object], frames: list[Any], n: int) -> dict[str, Any]:
    for i in range(WARMUP):
        read(frames[i % len(frames)])
    w0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        read(frames[i % len(frames)])
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {
        "frames": n,
        "distinct_frames": len(frames),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "frames_per_s": round(n / wall, 2),
        "frames_per_cpu_s": round(n / cpu, 2) if cpu > 0 else None,
        "ms_per_frame": round(1000 * wall / n, 1),
    }


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="recognition frames/s per core (plate and container frames)")
    ap.add_argument("--frames", type=int, default=30, help="frames read per kind (after 2 warm-ups)")
    ap.add_argument("--real", type=Path, default=None, help="folder holding plates/ and containers/ (dev set)")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads (1: per-core figure)")
    return ap


async def main(frames: int = 30, real: Path | None = None, threads: int = 1) -> dict[str, Any]:
    try:
        import cv2
        import ocr_bench
        from portlane.models.onnx_ocr import OcrEngine
        from portlane.models.pipeline import ContainerReader, PlateReader
        from portlane.sim_devices.render import render_vehicle_scene
    except ImportError as exc:
        return {"ok": False, "error": f"needs the ocr extra: {exc}"}
    before = machine()
    if real is not None:
        plate_frames, container_frames = ocr_bench._real(real, "plates"), ocr_bench._real(real, "containers")
        source = f"{real} (1920x1080 JPEGs)"
    else:
        plate_frames = [render_vehicle_scene(["苏A36E80"], seed=4, size=(1920, 1080))]
        container_frames = [cv2.resize(render_vehicle_scene(["粤B12345"], ["CSQU3054383"], seed=5), (1920, 1080))]
        source = "synthetic scenes (sim_devices.render)"
    if not plate_frames or not container_frames:
        return {"ok": False, "error": f"no 1920x1080 frames under {real}/plates and {real}/containers"}
    eng = OcrEngine(threads=threads)
    plates, zone, boxes = PlateReader(eng), PlateReader(eng, roi=(480, 540, 1440, 1080)), ContainerReader(eng)
    rows = [
        {"frames of": "plate, full 1080p frame", **_rate(plates.read, plate_frames, frames)},
        {"frames of": "plate, ROI 960x540 (plate zone)", **_rate(zone.read, plate_frames, frames)},
        {"frames of": "container, full 1080p frame", **_rate(boxes.read, container_frames, frames)},
    ]
    cols = ["frames of", "frames", "frames_per_s", "frames_per_cpu_s", "ms_per_frame"]
    return {
        "ok": True,
        "threads": threads,
        "source": source,
        "rows": rows,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cores": os.cpu_count(),
        "table": markdown_table(rows, cols),
        "loadavg_before": [before["loadavg_1m"]],
        "loadavg_after": loadavg(),
        "machine": before,
    }
