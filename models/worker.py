"""Recognition off the lane's control loop.

The lane imports only this module. It is light: ``cv2``, ``numpy`` and ``onnxruntime`` are
imported inside the worker thread on first use, never at import time, so the gate path starts
(and keeps running) without them.

    async with RecognitionWorker(threads=2) as worker:
        per_image = await worker.recognise([jpeg1, jpeg2], kind="plate")

Design: dedicated threads own the readers; the ONNX sessions are created once per process and
shared (``OcrEngine.shared``; a session may run on several threads at once). onnxruntime
releases the GIL during inference, so the event loop keeps its timing while frames are read.
``workers`` frames are read at once, each on its own thread; ``threads`` is onnxruntime's
intra-op thread count per run (default 1 with several workers, else onnxruntime's own).
On the 2-core reference box two workers of one thread each read a cargo truck's six frames
faster than one worker of two threads (the intra-op threads idle through the Python parts of a
read — decoding, imaging — that a second frame's run fills: p50 955 → 812 ms, the same reads;
docs/recognition.md, "Speed and memory"); a single frame is a little slower on one thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal, TypeVar

from .grammar import PlateRead
from .iso6346 import ContainerRead

if TYPE_CHECKING:  # heavy (cv2, onnxruntime): imported at run time in the worker thread only
    from .pipeline import ContainerReader, PlateReader

__all__ = ["ContainerRead", "PlateRead", "RecognitionWorker", "WorkerClosedError", "default_workers"]

Kind = Literal["plate", "container"]
Roi = tuple[int, int, int, int]
T = TypeVar("T")


def _clip(roi: Sequence[int], w: int, h: int) -> Roi | None:
    """The ROI inside a w × h frame; None (whole frame) if nothing of it is left."""
    x1, y1, x2, y2 = (int(v) for v in roi)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    return (x1, y1, x2, y2) if x2 - x1 >= 16 and y2 - y1 >= 16 else None


#: How long a warm-up task holds its worker thread for the other workers' tasks to arrive.
WARM_UP_WAIT_S = 60.0


def default_workers() -> int:
    """Frames read at once by the lane's and the site's recognition workers: two where there are
    two cores or more (the reference box's measured best: module docstring), else one."""
    return 2 if (os.cpu_count() or 1) >= 2 else 1


class WorkerClosedError(RuntimeError):
    """recognise() after close()."""


class RecognitionWorker:
    def __init__(
        self,
        *,
        threads: int | None = None,
        workers: int = 1,
        plate_roi: tuple[int, int, int, int] | None = None,
        container_roi: tuple[int, int, int, int] | None = None,
        det_limit: int | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self._workers = workers
        self._threads = threads if threads is not None or workers == 1 else 1
        self._plate_roi = plate_roi
        self._container_roi = container_roi
        self._det_limit = det_limit
        self._pool: concurrent.futures.ThreadPoolExecutor | None = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="portlane-ocr"
        )
        self._local = threading.local()  # per worker thread: its readers (they keep per-read state)
        self._closed = False
        self.worker_thread_ids: set[int] = set()

    async def __aenter__(self) -> RecognitionWorker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def warm_up(self) -> None:
        """Load the models (sha256 check + session creation, ~0.5 s) and every worker thread's
        readers now instead of on first use."""

        def load(barrier: threading.Barrier) -> None:
            try:
                self._reader("plate")
                self._reader("container")
            except BaseException:
                barrier.abort()  # the other threads stop waiting; gather raises this
                raise
            with contextlib.suppress(threading.BrokenBarrierError):
                # each task holds its thread until all have one, so every thread loads (bounded:
                # a second warm_up running at once could hold a thread on its own barrier)
                barrier.wait(timeout=WARM_UP_WAIT_S)

        barrier = threading.Barrier(self._workers)
        await asyncio.gather(*(self._run(lambda: load(barrier)) for _ in range(self._workers)))

    async def recognise(
        self, jpeg_bytes_list: Sequence[bytes], *, kind: Kind, rois: Sequence[Roi | None] | None = None
    ) -> list[list[PlateRead] | list[ContainerRead]]:
        """Reads per image, in input order. An undecodable image gives an empty list.

        ``rois``: per image, the camera's region of interest (x1, y1, x2, y2) or None for the
        worker's default; only that region is searched (the lane's site file sets it per camera).
        The images are read ``workers`` at a time.
        """
        if kind not in ("plate", "container"):
            raise ValueError(f"kind must be 'plate' or 'container', not {kind!r}")
        data = list(jpeg_bytes_list)
        per = list(rois) if rois is not None else [None] * len(data)
        if len(per) != len(data):
            raise ValueError("one roi (or None) per image")
        return list(
            await asyncio.gather(
                *(self._run(functools.partial(self._read_one, kind, b, r)) for b, r in zip(data, per, strict=True))
            )
        )

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._closed or self._pool is None:
            raise WorkerClosedError("RecognitionWorker is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn)

    def _reader(self, kind: Kind) -> PlateReader | ContainerReader:
        self.worker_thread_ids.add(threading.get_ident())
        readers: dict[Kind, PlateReader | ContainerReader] | None = getattr(self._local, "readers", None)
        if readers is None:
            readers = self._local.readers = {}
        if kind not in readers:
            from .onnx_ocr import OcrEngine  # heavy: cv2 + onnxruntime, worker threads only
            from .pipeline import ContainerReader, PlateReader

            engine = OcrEngine.shared(threads=self._threads)
            if kind == "plate":
                readers[kind] = PlateReader(
                    engine, roi=self._plate_roi, det_limit=self._det_limit or PlateReader.det_limit
                )
            else:
                readers[kind] = ContainerReader(engine, roi=self._container_roi)
        return readers[kind]

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
