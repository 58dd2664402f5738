"""The lane's side of recognition: camera frames in, contract reads out — fused, typed, once.

``Recogniser`` is what the identification asks of recognition: the plates and the container
numbers a passage's frames show, as the contract's ``PlateRead`` / ``ContainerRead``. The
recogniser fuses the per-frame reads of ``portlane.models`` (``models/fusion.py``: agreement
between frames and cameras raises confidence, disagreement lowers it) and converts the
identities to the contract here, in one place. A ``low_confidence`` identity never carries
more than ``UNCONFIRMED_CAP`` on the wire, so any consumer's threshold (the lane flags an
identity below 0.8) sends it to an officer.

Two recognisers, both off the lane's control loop:

* ``LocalRecogniser`` — the recognition worker's threads inside this process (the demo; a small site);
* ``portlane.edge.ops.recognition.SocketRecogniser`` — the site's recognition daemon over its
  Unix socket, so that 16 lanes share one set of ONNX sessions instead of loading 16.

Per-camera regions of interest (``roi`` of a camera's link in the site file) travel with each
frame: the worker reads only that region. This module imports neither ``cv2`` nor
``onnxruntime``; the worker loads them on its thread.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, Protocol

from portlane.drivers.base import Frame
from portlane.edge.config import Site
from portlane.edge.contract.events import ContainerRead, PlateKind, PlateRead
from portlane.models.fusion import ContainerIdentity, PlateIdentity, fuse_containers, fuse_plates
from portlane.models.grammar import CONFIRMED
from portlane.models.grammar import PlateRead as ModelPlateRead
from portlane.models.iso6346 import ContainerRead as ModelContainerRead

__all__ = [
    "CONFIRMED_FLOOR",
    "UNCONFIRMED_CAP",
    "FusingRecogniser",
    "LocalRecogniser",
    "Recogniser",
    "Roi",
    "camera_rois",
    "containers_of",
    "plate_kind",
    "plates_of",
]

#: A low_confidence identity never carries more than this confidence on the wire.
UNCONFIRMED_CAP = 0.5
#: A confirmed identity carries at least this (the lane's officer threshold, identification
#: ``LOW_CONFIDENCE``): ``confirmed`` means the recogniser found independent support, e.g. a
#: container number whose one doubtful digit the read check digit pins (models/calibration.py).
CONFIRMED_FLOOR = 0.8
#: Boxes a truck carries: one 40' or two 20'.
MAX_CONTAINERS = 2

Roi = tuple[int, int, int, int]
Kind = Literal["plate", "container"]
PerImage = list[list[ModelPlateRead] | list[ModelContainerRead]]
#: A grammar's plate kind as the contract names it (a personalised mark is a Hong Kong plate).
_WIRE_KIND: dict[str, PlateKind] = {
    "cn": "cn",
    "cn_crossborder": "cn_crossborder",
    "hk": "hk",
    "hk_personal": "hk",
    "macau": "macau",
}


def plate_kind(kind: str | None) -> PlateKind:
    """The contract's plate kind of a recognition or grammar kind (``unknown`` for anything else)."""
    return _WIRE_KIND.get(kind or "", "unknown")


class Recogniser(Protocol):
    async def read_plates(self, frames: Sequence[Frame]) -> tuple[PlateRead, ...]: ...

    async def read_containers(self, frames: Sequence[Frame]) -> tuple[ContainerRead, ...]: ...


def camera_rois(site: Site) -> dict[str, Roi]:
    """``Frame.camera`` (``lane/camera:name``) → region of interest, from the site's camera links."""
    out: dict[str, Roi] = {}
    for lane in site.lanes:
        for name, cam in lane.devices.cameras.items():
            roi = getattr(cam.link, "roi", None)
            if roi is not None:
                x1, y1, x2, y2 = roi
                out[f"{lane.id}/camera:{name}"] = (int(x1), int(y1), int(x2), int(y2))
    return out


def _wire_confidence(x: float, status: str) -> float:
    x = max(0.0, min(1.0, float(x)))
    return max(x, CONFIRMED_FLOOR) if status == CONFIRMED else min(x, UNCONFIRMED_CAP)


def _wire_doubt(doubt: str, status: str) -> str | None:
    """The named doubt of an unconfirmed identity (``models/fusion.py``), null when confirmed."""
    return None if status == CONFIRMED else doubt[:32] or None


def plates_of(identities: Iterable[PlateIdentity]) -> tuple[PlateRead, ...]:
    """Fused plate identities as the contract carries them (home plate first, a 粤Z partner second)."""
    out = []
    for i in identities:
        out.append(
            PlateRead(
                text=i.text,
                kind=plate_kind(i.kind),
                confidence=_wire_confidence(i.confidence, i.status),
                doubt=_wire_doubt(i.doubt, i.status),
            )
        )
    return tuple(out)


def containers_of(identities: Iterable[ContainerIdentity]) -> tuple[ContainerRead, ...]:
    """Fused container identities as the contract carries them (one per box, most voted first)."""
    return tuple(
        ContainerRead(
            number=i.number,
            check_digit_ok=True,  # fusion votes only with reads whose check digit holds
            iso_type=i.iso_type,
            confidence=_wire_confidence(i.confidence, i.status),
            doubt=_wire_doubt(i.doubt, i.status),
        )
        for i in list(identities)[:MAX_CONTAINERS]
    )


class FusingRecogniser(abc.ABC):
    """Reads each frame (``_per_image``), fuses the reads of all frames and converts them."""

    def __init__(self, *, rois: Mapping[str, Roi] | None = None) -> None:
        self.rois = dict(rois or {})
        self.latencies: list[float] = []

    def _rois(self, frames: Sequence[Frame]) -> list[Roi | None]:
        return [self.rois.get(f.camera) for f in frames]

    @abc.abstractmethod
    async def _per_image(self, frames: Sequence[Frame], kind: Kind) -> PerImage: ...

    async def _read(self, frames: Sequence[Frame], kind: Kind) -> PerImage:
        t0 = time.monotonic()
        try:
            return await self._per_image(frames, kind)
        finally:
            self.latencies.append(time.monotonic() - t0)

    async def read_plates(self, frames: Sequence[Frame]) -> tuple[PlateRead, ...]:
        per_image = await self._read(frames, "plate")
        return plates_of(fuse_plates(r for reads in per_image for r in reads if isinstance(r, ModelPlateRead)))

    async def read_containers(self, frames: Sequence[Frame]) -> tuple[ContainerRead, ...]:
        per_image = await self._read(frames, "container")
        reads = (r for image in per_image for r in image if isinstance(r, ModelContainerRead))
        return containers_of(fuse_containers(reads))


class LocalRecogniser(FusingRecogniser):
    """The recognition worker's threads in this process (``workers`` frames at once, default
    ``default_workers()``; one set of ONNX sessions)."""

    def __init__(
        self, *, threads: int | None = None, workers: int | None = None, rois: Mapping[str, Roi] | None = None
    ) -> None:
        super().__init__(rois=rois)
        from portlane.models.worker import RecognitionWorker, default_workers

        self.worker = RecognitionWorker(threads=threads, workers=workers or default_workers())

    async def _per_image(self, frames: Sequence[Frame], kind: Kind) -> PerImage:
        return await self.worker.recognise([f.jpeg for f in frames], kind=kind, rois=self._rois(frames))

    async def close(self) -> None:
        await self.worker.__aexit__(None, None, None)
