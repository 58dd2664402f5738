"""Recognition off the lane's control loop.

The lane imports only this module. It is light: ``cv2``, ``numpy`` and ``onnxruntime`` are
imported inside the worker thread on first use, never at import time, so the gate path starts
(and keeps running) without them.

    async with RecognitionWorker(threads=2) as worker:
        per_image = await worker.recognise([jpeg1, jpeg2], kind="plate")

Design: one dedicated thread owns the ONNX sessions (created once, reused for every call);
onnxruntime releases the GIL during inference, so the event loop keeps its timing while a
frame is being read. Calls are serialised on that thread — on a 2-core box a second inference
in parallel only makes both slower. ``threads`` is onnxruntime's intra-op thread count (2 =
all cores of the reference box; 1 when two lanes share it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal, TypeVar

from .grammar import PlateRead
from .iso6346 import ContainerRead

if TYPE_CHECKING:  # heavy (cv2, onnxruntime): imported at run time in the worker thread only
    from .pipeline import ContainerReader, PlateReader

__all__ = ["ContainerRead", "PlateRead", "RecognitionWorker", "WorkerClosedError"]

Kind = Literal["plate", "container"]
Roi = tuple[int, int, int, int]
T = TypeVar("T")


def _clip(roi: Sequence[int], w: int, h: int) -> Roi | None:
    """The ROI inside a w × h frame; None (whole frame) if nothing of it is left."""
    x1, y1, x2, y2 = (int(v) for v in roi)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    return (x1, y1, x2, y2) if x2 - x1 >= 16 and y2 - y1 >= 16 else None


class WorkerClosedError(RuntimeError):
    """recognise() after close()."""


class RecognitionWorker:
    def __init__(
        self,
        *,
        threads: int | None = None,
        plate_roi: tuple[int, int, int, int] | None = None,
        container_roi: tuple[int, int, int, int] | None = None,
        det_limit: int | None = None,
    ) -> None:
        self._threads = threads
        self._plate_roi = plate_roi
        self._container_roi = container_roi
        self._det_limit = det_limit
        self._pool: concurrent.futures.ThreadPoolExecutor | None = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="portlane-ocr"
        )
        self._readers: dict[Kind, PlateReader | ContainerReader] = {}
        self._closed = False
        self.worker_thread_ids: set[int] = set()

    async def __aenter__(self) -> RecognitionWorker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def warm_up(self) -> None:
        """Load the models now (sha256 check + session creation, ~0.5 s) instead of on first use."""
        await self._run(lambda: None)

    async def recognise(
        self, jpeg_bytes_list: Sequence[bytes], *, kind: Kind, rois: Sequence[Roi | None] | None = None
    ) -> list[list[PlateRead] | list[ContainerRead]]:
        """Reads per image, in input order. An undecodable image gives an empty list.

        ``rois``: per image, the camera's region of interest (x1, y1, x2, y2) or None for the
        worker's default; only that region is searched (the lane's site file sets it per camera).
        """
        if kind not in ("plate", "container"):
            raise ValueError(f"kind must be 'plate' or 'container', not {kind!r}")
        data = list(jpeg_bytes_list)
        per = list(rois) if rois is not None else [None] * len(data)
        if len(per) != len(data):
            raise ValueError("one roi (or None) per image")
        return await self._run(lambda: [self._read_one(kind, b, r) for b, r in zip(data, per, strict=True)])

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._closed or self._pool is None:
            raise WorkerClosedError("RecognitionWorker is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn)

    def _reader(self, kind: Kind) -> PlateReader | ContainerReader:
        self.worker_thread_ids.add(threading.get_ident())
        if kind not in self._readers:
            from .onnx_ocr import OcrEngine  # heavy: cv2 + onnxruntime, worker thread only
            from .pipeline import ContainerReader, PlateReader

            engine = OcrEngine.shared(threads=self._threads)
            if kind == "plate":
                self._readers[kind] = PlateReader(
                    engine, roi=self._plate_roi, det_limit=self._det_limit or PlateReader.det_limit
                )
            else:
                self._readers[kind] = ContainerReader(engine, roi=self._container_roi)
        return self._readers[kind]

    def _read_one(self, kind: Kind, data: bytes, roi: Roi | None = None) -> list[PlateRead] | list[ContainerRead]:
        from .pipeline import decode_image

        reader = self._reader(kind)
        try:
            img = decode_image(data)
        except ValueError:
            return []
        default = self._plate_roi if kind == "plate" else self._container_roi
        reader.roi = _clip(roi, img.shape[1], img.shape[0]) if roi is not None else default
        return reader.read(img)

    async def aclose(self) -> None:
        """Idempotent. Waits for a running inference to finish (it cannot be interrupted)."""
        if self._closed:
            return
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.get_running_loop().run_in_executor(None, pool.shutdown)
