"""The site's recognition daemon and its client, over the daemon's control socket.

``portlane daemon recognition`` (``portlane-recognition.service``) owns one set of ONNX
sessions for every lane of the host; a lane reaches it through ``SocketRecogniser``, used
automatically when ``/run/portlane/recognition.sock`` exists. On the socket, frames travel as
base64 JPEG and the per-image reads as plain dicts (``serialise_reads`` / ``deserialise_reads``);
the lane fuses them and turns them into contract reads as ``LocalRecogniser`` does.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from portlane.drivers.base import Frame
from portlane.edge.lane.recognition import FusingRecogniser, Kind, PerImage
from portlane.edge.ops.control import request
from portlane.models.grammar import PlateRead
from portlane.models.iso6346 import ContainerRead

__all__ = ["RECOGNITION_TIMEOUT_S", "SocketRecogniser", "deserialise_reads", "serialise_reads"]

#: A 1080p frame takes 100–300 ms on 2 cores; six frames of a container truck well under this.
RECOGNITION_TIMEOUT_S = 20.0


def serialise_reads(per_image: Sequence[Sequence[PlateRead | ContainerRead]]) -> list[list[dict[str, Any]]]:
    return [[r.as_dict() for r in reads] for reads in per_image]


def deserialise_reads(kind: Kind, wire: list[list[dict[str, Any]]]) -> PerImage:
    if kind == "plate":
        return [[PlateRead.from_dict(d) for d in image] for image in wire]
    return [[ContainerRead.from_dict(d) for d in image] for image in wire]


class SocketRecogniser(FusingRecogniser):
    """The recognition daemon, over its Unix socket."""

    def __init__(self, path: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = path

    async def _per_image(self, frames: Sequence[Frame], kind: Kind) -> PerImage:
        resp = await request(
            self.path,
            "recognise",
            timeout_s=RECOGNITION_TIMEOUT_S,
            kind=kind,
            frames=[base64.b64encode(f.jpeg).decode() for f in frames],
            rois=self._rois(frames),
        )
        if not resp.get("ok"):
            return []
        return deserialise_reads(kind, resp["reads"])
