"""The lane's side of recognition: frames in, fused plate and container reads out.

Two ways to reach the recogniser (``portlane.models.worker.RecognitionWorker``), both off the
lane's control loop:

* ``LocalRecogniser`` — the worker's own thread inside this process (the demo; a small site);
* ``SocketRecogniser`` — the site's recognition daemon (``portlane daemon recognition``,
  ``portlane-recognition.service``) over its Unix socket, so that 16 lanes share one set of
  ONNX sessions instead of loading 16.

This module imports neither ``cv2`` nor ``onnxruntime``; the worker loads them on its thread.
"""

from __future__ import annotations

import base64
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from portlane.drivers.base import Frame

__all__ = ["LocalRecogniser", "SocketRecogniser", "fuse_reads", "serialise_reads"]

#: A 1080p frame takes 100–300 ms on 2 cores; six frames of a container truck well under this.
RECOGNITION_TIMEOUT_S = 20.0


def serialise_reads(kind: str, per_image: Sequence[Sequence[Any]]) -> list[list[dict[str, Any]]]:
    out = []
    for reads in per_image:
        if kind == "plate":
            out.append([{"text": r.text, "kind": r.kind, "confidence": _unit(r.confidence)} for r in reads])
        else:
            out.append(
                [
                    {
                        "number": r.number,
                        "check_digit_ok": bool(r.check_digit_ok),
                        "check_digit_inferred": bool(getattr(r, "check_digit_inferred", False)),
                        "iso_type": r.iso_type,
                        "confidence": _unit(r.confidence),
                    }
                    for r in reads
                ]
            )
    return out


def _unit(x: float) -> float:
    """Confidences are probabilities on the wire; the recogniser's scores can exceed 1."""
    return max(0.0, min(1.0, float(x)))


def fuse_reads(kind: str, per_image: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Confidence-weighted vote across a passage's frames: one entry per distinct plate
    (a dual-plated vehicle keeps both) or container number (a truck may carry two boxes).
    Container reads whose check digit failed never vote."""
    key = "text" if kind == "plate" else "number"
    score: dict[str, float] = defaultdict(float)
    best: dict[str, dict[str, Any]] = {}
    for reads in per_image:
        for r in reads:
            if kind == "container" and not r["check_digit_ok"]:
                continue
            score[r[key]] += r["confidence"]
            if r[key] not in best or r["confidence"] > best[r[key]]["confidence"]:
                best[r[key]] = r
    # Agreement is measured among candidates for the same plate kind (a dual-plated car has two
    # different, equally valid plates); container numbers that passed their check digit are
    # distinct boxes, not rivals.
    kind_total: dict[str, float] = defaultdict(float)
    for k, v in score.items():
        kind_total[best[k].get("kind", "container")] += v
    ranked = sorted(score, key=lambda k: -score[k])
    out = []
    seen_kinds: set[str] = set()
    for k in ranked:
        r = dict(best[k])
        if kind == "plate":
            if r["kind"] in seen_kinds:
                continue  # one plate per kind: a cross-boundary car has one 粤Z and one home plate
            seen_kinds.add(r["kind"])
            agreement = score[k] / (kind_total[r["kind"]] or 1.0)
            r["confidence"] = round(best[k]["confidence"] * (0.5 + 0.5 * agreement), 3)
        out.append(r)
    return out[:2]


class LocalRecogniser:
    def __init__(self, *, threads: int | None = None) -> None:
        from portlane.models.worker import RecognitionWorker

        self.worker = RecognitionWorker(threads=threads)
        self.latencies: list[float] = []

    async def recognise(self, frames: list[Frame], *, kind: str) -> list[dict[str, Any]]:
        t0 = time.monotonic()
        per_image = await self.worker.recognise([f.jpeg for f in frames], kind=kind)  # type: ignore[arg-type]
        self.latencies.append(time.monotonic() - t0)
        return fuse_reads(kind, serialise_reads(kind, per_image))

    async def close(self) -> None:
        await self.worker.__aexit__(None, None, None)


class SocketRecogniser:
    def __init__(self, path: str) -> None:
        self.path = path

    async def recognise(self, frames: list[Frame], *, kind: str) -> list[dict[str, Any]]:
        from portlane.edge.ops.control import request

        resp = await request(
            self.path,
            "recognise",
            timeout_s=RECOGNITION_TIMEOUT_S,
            kind=kind,
            frames=[base64.b64encode(f.jpeg).decode() for f in frames],
        )
        if not resp.get("ok"):
            return []
        return fuse_reads(kind, resp["reads"])
