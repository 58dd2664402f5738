"""Snapshot camera over anything ``cv2.VideoCapture`` opens: RTSP, HTTP MJPEG, a video or
image file, a V4L2 device (``/dev/video0``).

OpenCV's capture API is blocking, so each camera owns exactly one worker thread that owns
the ``VideoCapture``; the event loop talks to it through a request queue and
``concurrent.futures.Future`` results (``asyncio.wrap_future``). No other code touches the
capture, and ``cv2`` is imported only inside that thread and ``_connect`` — the lane, the
gate path and the CLI never load it.

*Snapshot on trigger* means a frame **captured after** ``snapshot()`` was called: for a live
source the worker keeps grabbing (so the decoder's buffer never serves a stale picture) and
answers pending requests with the next frame grabbed after they arrived. A file source is
read on demand and loops at its end, which makes it a deterministic test source.

A live source that stops delivering frames (the "silently stopped camera") makes
``snapshot()`` raise ``DeviceTimeoutError`` at its deadline; the worker then reopens the
stream by itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import threading
import time
from typing import Any

from .base import CameraDriver, Frame
from .config import CameraLink, DeviceConfig
from .errors import DeviceProtocolError, DeviceUnavailableError

__all__ = ["OpenCvCamera"]

#: Opening an RTSP stream is a DESCRIBE/SETUP/PLAY handshake plus the first key frame
#: (one GOP, typically 1–2 s on IP cameras): allow 5 s.
OPEN_TIMEOUT_MS = 5000
#: A live camera delivers a frame every 40–100 ms; 2 s of silence means the stream is dead.
READ_TIMEOUT_MS = 2000
#: Pause before reopening a dead stream, so that a camera that is rebooting is not hammered.
REOPEN_DELAY_S = 1.0
#: How long ``close()`` waits for the worker to finish its current (bounded) read.
JOIN_TIMEOUT_S = READ_TIMEOUT_MS / 1000 + 1.0
#: JPEG quality of the frames handed to the lane and to recognition.
JPEG_QUALITY = 90


def _is_live(source: str) -> bool:
    if source.startswith("/dev/video") or source.isdigit():
        return True
    return "://" in source and not source.startswith("file://")


def _file_exists(path: str) -> bool:
    return os.path.exists(path)  # a local stat: no need to leave the loop for it


class _Worker(threading.Thread):
    """Owns the VideoCapture. Requests are ``concurrent.futures.Future``s to resolve with a Frame."""

    def __init__(self, device_id: str, source: str, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name=f"camera-{device_id}", daemon=True)
        self.device_id = device_id
        self.source = source
        self.live = _is_live(source)
        self.loop = loop
        self.requests: queue.Queue[concurrent.futures.Future[Frame]] = queue.Queue()
        self.opened: concurrent.futures.Future[bool] = concurrent.futures.Future()
        self.finished = asyncio.Event()
        self.stopping = threading.Event()
        self.cap: Any = None

    # ---------------------------------------------------------------- capture (thread side)
    def _open(self) -> bool:
        import cv2

        src: Any = int(self.source) if self.source.isdigit() else self.source
        if self.live and not self.source.startswith("/dev/video") and not self.source.isdigit():
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS]
            cap = cv2.VideoCapture(src, cv2.CAP_FFMPEG, params)
        else:
            cap = cv2.VideoCapture(src)
        if not cap.isOpened():
            cap.release()
            return False
        self.cap = cap
        return True

    def _release(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None

    def _take_pending(self, block: bool) -> list[concurrent.futures.Future[Frame]]:
        out = []
        try:
            if block:
                out.append(self.requests.get(timeout=0.1))
            while True:
                out.append(self.requests.get_nowait())
        except queue.Empty:
            pass
        # Left PENDING (so the awaiting side can still cancel at its deadline) until a
        # result is set in ``_resolve``; already-cancelled requests are dropped here.
        return [f for f in out if not f.cancelled()]

    def _encode(self, img: Any, ts: float) -> Frame:
        import cv2

        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise DeviceProtocolError("frame could not be encoded as JPEG", device=self.device_id)
        h, w = img.shape[:2]
        return Frame(camera=self.device_id, jpeg=buf.tobytes(), ts=ts, width=int(w), height=int(h))

    def _read_file_frame(self) -> Any:
        import cv2

        ok, img = self.cap.read()
        if not ok:  # end of the file: loop
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, img = self.cap.read()
        if not ok:  # some backends cannot seek (single images): reopen
            self._release()
            if self._open():
                ok, img = self.cap.read()
        return img if ok else None

    def run(self) -> None:
        try:
            try:
                ok = self._open()
            except Exception as exc:  # cv2.error and friends, delivered to the awaiting side
                if self.opened.set_running_or_notify_cancel():
                    self.opened.set_exception(exc)
                return
            # Nobody waits any more when the connect was cancelled (its deadline, or a shutdown)
            # while the capture opened: setting the cancelled future's result would raise in
            # this thread. Release the capture and end instead.
            if not self.opened.set_running_or_notify_cancel():
                return
            self.opened.set_result(ok)
            if not ok:
                return
            while not self.stopping.is_set():
                if self.live:
                    self._live_turn()
                else:
                    self._file_turn()
        finally:
            self._release()
            self._resolve(
                self._take_pending(block=False), error=DeviceUnavailableError("camera closed", device=self.device_id)
            )
            with contextlib.suppress(RuntimeError):  # the loop may already be closed
                self.loop.call_soon_threadsafe(self.finished.set)

    def _live_turn(self) -> None:
        if self.cap is None and (self.stopping.wait(REOPEN_DELAY_S) or not self._open()):
            return
        batch = self._take_pending(block=False)
        ok = self.cap.grab()  # bounded by READ_TIMEOUT_MS
        ts = time.time()
        if not ok:
            # Stream silent or broken: reopen, and keep the waiting requests for the first
            # frame after that — each still ends at its own deadline if none comes.
            self._release()
            for fut in batch:
                self.requests.put(fut)
            return
        if batch:
            ok, img = self.cap.retrieve()
            self._deliver(batch, img if ok else None, ts)

    def _file_turn(self) -> None:
        batch = self._take_pending(block=True)
        if batch:
            img = self._read_file_frame()
            self._deliver(batch, img, time.time())

    def _deliver(self, batch: list[concurrent.futures.Future[Frame]], img: Any, ts: float) -> None:
        if img is None:
            self._resolve(batch, error=DeviceProtocolError("camera returned no picture", device=self.device_id))
            return
        try:
            frame = self._encode(img, ts)
        except Exception as exc:
            self._resolve(batch, error=exc)
            return
        self._resolve(batch, frame=frame)

    @staticmethod
    def _resolve(
        batch: list[concurrent.futures.Future[Frame]], *, frame: Frame | None = None, error: BaseException | None = None
    ) -> None:
        for fut in batch:
            if not fut.set_running_or_notify_cancel():
                continue  # the caller's deadline passed meanwhile
            if error is not None:
                fut.set_exception(error)
            else:
                assert frame is not None
                fut.set_result(frame)


class OpenCvCamera(CameraDriver):
    def __init__(self, device_id: str, config: DeviceConfig) -> None:
        super().__init__(device_id, timeout=config.timeout_s)
        if not isinstance(config.link, CameraLink):
            raise DeviceUnavailableError(
                f"an OpenCV camera needs a camera link, not {config.link.kind}", device=device_id
            )
        self.config = config
        self.source = config.link.source
        self._worker: _Worker | None = None

    async def _connect(self) -> None:
        if not _is_live(self.source) and not _file_exists(self.source.removeprefix("file://")):
            raise DeviceUnavailableError(f"no such file: {self.source}", device=self.device_id)
        try:
            import cv2  # noqa: F401  (fail here, clearly, when OpenCV is not installed)
        except ImportError as exc:
            raise DeviceUnavailableError(f"OpenCV is not installed: {exc}", device=self.device_id) from exc
        worker = _Worker(self.device_id, self.source, asyncio.get_running_loop())
        worker.start()
        try:
            ok = await asyncio.wrap_future(worker.opened)
        except asyncio.CancelledError:
            worker.stopping.set()
            raise
        except Exception as exc:
            raise DeviceUnavailableError(f"cannot open {self.source}: {exc}", device=self.device_id) from exc
        if not ok:
            raise DeviceUnavailableError(f"cannot open {self.source}", device=self.device_id)
        self._worker = worker

    async def _close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is None:
            return
        worker.stopping.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(JOIN_TIMEOUT_S):
                await worker.finished.wait()

    async def _snapshot(self) -> Frame:
        worker = self._worker
        if worker is None or not worker.is_alive():
            raise DeviceUnavailableError("camera is not connected", device=self.device_id)
        fut: concurrent.futures.Future[Frame] = concurrent.futures.Future()
        worker.requests.put(fut)
        return await asyncio.wrap_future(fut)  # cancelled at the deadline -> the worker skips it
