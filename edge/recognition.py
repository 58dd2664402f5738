"""The lane's side of recognition: frames in, fused plate and container identities out.

Two ways to reach the recogniser (``portlane.models.worker.RecognitionWorker``), both off the
lane's control loop:

* ``LocalRecogniser`` — the worker's own thread inside this process (the demo; a small site);
* ``SocketRecogniser`` — the site's recognition daemon (``portlane daemon recognition``,
  ``portlane-recognition.service``) over its Unix socket, so that 16 lanes share one set of
  ONNX sessions instead of loading 16.

Per-camera regions of interest (``roi`` of a camera's link in the site file) travel with each
frame: the worker reads only that region. Fusion lives in ``portlane.models.fusion``; this
module only converts to and from the wire (dicts).

This module imports neither ``cv2`` nor ``onnxruntime``; the worker loads them on its thread.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping, Sequence
from typing import Any

from portlane.drivers.base import Frame
from portlane.models.fusion import fuse_containers, fuse_plates
from portlane.models.grammar import CONFIRMED, PlateRead
from portlane.models.iso6346 import ContainerRead

__all__ = ["LocalRecogniser", "SocketRecogniser", "camera_rois", "fuse_reads", "serialise_reads"]

#: A 1080p frame takes 100–300 ms on 2 cores; six frames of a container truck well under this.
RECOGNITION_TIMEOUT_S = 20.0
#: A low_confidence identity never carries more than this confidence on the wire, so that any
#: consumer's threshold (the lane flags an identity below 0.8) sends it to an officer.
UNCONFIRMED_CAP = 0.5

Roi = tuple[int, int, int, int]


def camera_rois(site: Any) -> dict[str, Roi]:
    """``Frame.camera`` (``lane/camera:name``) → region of interest, from the site's camera links."""
    out: dict[str, Roi] = {}
    for lane in site.lanes:
        for name, cam in lane.devices.cameras.items():
            roi = getattr(cam.link, "roi", None)
            if roi is not None:
                out[f"{lane.id}/camera:{name}"] = tuple(roi)
    return out


def serialise_reads(kind: str, per_image: Sequence[Sequence[Any]]) -> list[list[dict[str, Any]]]:
    return [[r.as_dict() for r in reads] for reads in per_image]


def _plate(d: dict[str, Any]) -> PlateRead:
    return PlateRead(
        str(d["text"]), str(d["kind"]), float(d["confidence"]), None, (), str(d.get("status", "low_confidence"))
    )


def _container(d: dict[str, Any]) -> ContainerRead:
    return ContainerRead(
        str(d["number"]),
        bool(d["check_digit_ok"]),
        bool(d.get("check_digit_inferred", False)),
        bool(d.get("corrected", False)),
        d.get("iso_type"),
        float(d["confidence"]),
        None,
        str(d.get("status", "low_confidence")),
    )


def _unit(x: float, status: str) -> float:
    x = max(0.0, min(1.0, float(x)))
    return x if status == CONFIRMED else min(x, UNCONFIRMED_CAP)


def fuse_reads(kind: str, per_image: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A passage's identities on the wire: plates (home plate first, a 粤Z partner second) or
    container numbers (one per box). Each carries ``status`` and ``votes``."""
    if kind == "plate":
        ids = fuse_plates(_plate(r) for reads in per_image for r in reads)
        return [
            {
                "text": i.text,
                "kind": i.kind,
                "confidence": _unit(i.confidence, i.status),
                "status": i.status,
                "votes": i.votes,
            }
            for i in ids
        ]
    boxes = fuse_containers(_container(r) for reads in per_image for r in reads)
    return [
        {
            "number": i.number,
            "check_digit_ok": True,
            "check_digit_inferred": i.check_digit_inferred,
            "iso_type": i.iso_type,
            "confidence": _unit(i.confidence, i.status),
            "status": i.status,
            "votes": i.votes,
        }
        for i in boxes
    ][:2]


class LocalRecogniser:
    def __init__(self, *, threads: int | None = None, rois: Mapping[str, Roi] | None = None) -> None:
        from portlane.models.worker import RecognitionWorker

        self.worker = RecognitionWorker(threads=threads)
        self.rois = dict(rois or {})
        self.latencies: list[float] = []

    async def recognise(self, frames: list[Frame], *, kind: str) -> list[dict[str, Any]]:
        t0 = time.monotonic()
        per_image = await self.worker.recognise(
            [f.jpeg for f in frames],
            kind=kind,  # type: ignore[arg-type]
            rois=[self.rois.get(f.camera) for f in frames],
        )
        self.latencies.append(time.monotonic() - t0)
        return fuse_reads(kind, serialise_reads(kind, per_image))

    async def close(self) -> None:
        await self.worker.__aexit__(None, None, None)


class SocketRecogniser:
    def __init__(self, path: str, *, rois: Mapping[str, Roi] | None = None) -> None:
        self.path = path
        self.rois = dict(rois or {})

    async def recognise(self, frames: list[Frame], *, kind: str) -> list[dict[str, Any]]:
        from .control import request

        resp = await request(
            self.path,
            "recognise",
            timeout_s=RECOGNITION_TIMEOUT_S,
            kind=kind,
            frames=[base64.b64encode(f.jpeg).decode() for f in frames],
            rois=[self.rois.get(f.camera) for f in frames],
        )
        if not resp.get("ok"):
            return []
        return fuse_reads(kind, resp["reads"])
