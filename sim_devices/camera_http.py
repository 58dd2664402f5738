"""An IP camera on loopback HTTP: MJPEG stream and single JPEG snapshots (asyncio only).

Endpoints, the way cheap IP cameras expose them:

* ``GET /stream.mjpg`` — ``multipart/x-mixed-replace; boundary=portlaneframe``; each part is
  ``--portlaneframe\\r\\nContent-Type: image/jpeg\\r\\nContent-Length: N\\r\\n\\r\\n<JPEG>\\r\\n``,
  at ``fps`` frames per second. OpenCV's FFmpeg backend opens it like any MJPEG camera.
* ``GET /snapshot.jpg`` — one JPEG.

The picture is the lane's current vehicle in the shared ``LaneWorld``: its plates
(``view="plate_front"/"plate_rear"``) or container numbers (``view="container_*"``), drawn by
``sim_devices.render`` when that module is present, otherwise with ``cv2.putText``; or real
images cycled from a folder (``folder=``). An empty lane shows empty tarmac.

Fault: ``faults.dead`` — the camera *silently stops*: connections stay open, no more frames
(the failure mode that makes a naive ``VideoCapture.read()`` hang).
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from pathlib import Path
from typing import Any

from .faults import FaultInjector
from .world import LaneWorld

__all__ = ["CameraHandle", "CameraSim", "start_camera"]

BOUNDARY = "portlaneframe"
#: A client that sends no request line within this is dropped (slowloris guard).
REQUEST_TIMEOUT_S = 5.0
#: Bound on one write to a client; a client that stops reading for this long is dropped.
WRITE_TIMEOUT_S = 5.0
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


class CameraSim:
    def __init__(
        self,
        world: LaneWorld | None,
        *,
        view: str = "plate_front",
        folder: str | None = None,
        width: int = 640,
        height: int = 360,
        faults: Any = None,
        quality: int = 85,
    ) -> None:
        self.world = world
        self.view = view
        self.width, self.height = width, height
        self.faults = faults
        self.quality = quality
        self.images = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTS) if folder else []
        self.frames_sent = 0
        self._next_image = 0
        self._cache: tuple[Any, bytes] | None = None
        self.closing = asyncio.Event()
        self.writers: set[asyncio.StreamWriter] = set()

    async def _frame_period(self, fps: float) -> bool:
        """Wait one frame period (sensor timing); False when the camera is shutting down."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1 / fps):
                await self.closing.wait()
        return not self.closing.is_set()

    @property
    def stopped(self) -> bool:
        f = self.faults
        return bool(f is not None and (getattr(f, "dead", False) or getattr(f, "unplugged", False)))

    # ---------------------------------------------------------------- pictures
    def _texts(self) -> list[str]:
        v = self.world.vehicle if self.world is not None else None
        if v is None:
            return []
        if self.view.startswith("container"):
            return list(v.containers)
        return list(v.plates)

    def _scene(self) -> Any:
        import cv2
        import numpy as np

        v = self.world.vehicle if self.world is not None else None
        if v is not None:
            try:
                from . import render  # another simulator module; optional
            except ImportError:
                render = None  # type: ignore[assignment]
            fn = getattr(render, "render_vehicle_scene", None) if render is not None else None
            if fn is not None:
                container_view = self.view.startswith("container")
                seed = zlib.crc32("|".join((*v.plates, *v.containers, self.view)).encode())
                try:
                    return fn(
                        () if container_view else tuple(v.plates),
                        tuple(v.containers) if container_view else (),
                        seed=seed,
                        size=(self.width, self.height),
                    )
                except TypeError:  # another signature: fall back to our own drawing
                    pass
        img = np.full((self.height, self.width, 3), 90, np.uint8)  # grey tarmac
        for n, text in enumerate(self._texts()):
            # Plates: black on a white/yellow plate; containers: white on a blue box side.
            y = 60 + n * 90
            plate = text.encode("ascii", "replace").decode()  # putText has no Hanzi glyphs
            if self.view.startswith("container"):
                cv2.rectangle(img, (20, y - 50), (self.width - 20, y + 20), (140, 60, 20), -1)
                cv2.putText(img, plate, (40, y), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (255, 255, 255), 4)
            else:
                cv2.rectangle(img, (120, y - 50), (self.width - 120, y + 20), (240, 240, 240), -1)
                cv2.putText(img, plate, (140, y), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (0, 0, 0), 4)
        return img

    def jpeg(self) -> bytes:
        """The current picture as JPEG (re-encoded only when the scene changed)."""
        import cv2

        if self.images:
            path = self.images[self._next_image % len(self.images)]
            self._next_image += 1
            data = path.read_bytes()
            if path.suffix.lower() in (".jpg", ".jpeg"):
                return data
            img = cv2.imread(str(path))
        else:
            key = (id(self.world.vehicle) if self.world else None, tuple(self._texts()))
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1]
            img = self._scene()
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        assert ok
        data = buf.tobytes()
        if not self.images:
            self._cache = (key, data)
        return data

    # ---------------------------------------------------------------- HTTP
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, fps: float) -> None:
        self.writers.add(writer)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
            if path == "/snapshot.jpg":
                while self.stopped:
                    if not await self._frame_period(fps):
                        return
                body = self.jpeg()
                writer.write(
                    b"HTTP/1.0 200 OK\r\nContent-Type: image/jpeg\r\n"
                    + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + body
                )
                async with asyncio.timeout(WRITE_TIMEOUT_S):
                    await writer.drain()
            elif path in ("/stream.mjpg", "/video", "/"):
                writer.write(
                    b"HTTP/1.0 200 OK\r\nCache-Control: no-cache\r\nConnection: close\r\n"
                    + f"Content-Type: multipart/x-mixed-replace; boundary={BOUNDARY}\r\n\r\n".encode()
                )
                while not self.closing.is_set():
                    if not self.stopped:
                        body = self.jpeg()
                        writer.write(
                            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                            + body
                            + b"\r\n"
                        )
                        async with asyncio.timeout(WRITE_TIMEOUT_S):
                            await writer.drain()
                        self.frames_sent += 1
                    await self._frame_period(fps)
            else:
                writer.write(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                async with asyncio.timeout(WRITE_TIMEOUT_S):
                    await writer.wait_closed()


class CameraHandle:
    def __init__(self, sim: CameraSim, server: asyncio.Server, port: int) -> None:
        self.sim = sim
        self.faults = sim.faults
        self.port = port
        self.link = {"kind": "camera", "source": f"http://127.0.0.1:{port}/stream.mjpg"}
        self.snapshot_url = f"http://127.0.0.1:{port}/snapshot.jpg"
        self._server = server
        self._clients: set[asyncio.Task[None]] = set()
        self._closed = False

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._server.close()
        # Client handlers end by themselves on ``closing`` (cancelling a start_server
        # callback task makes asyncio log a spurious "exception" on Python 3.11).
        self.sim.closing.set()
        for w in list(self.sim.writers):
            w.close()  # also ends a handler still waiting for its request line
        if self._clients:
            await asyncio.wait(list(self._clients), timeout=WRITE_TIMEOUT_S + REQUEST_TIMEOUT_S)
        await self._server.wait_closed()

    async def __aenter__(self) -> CameraHandle:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def start_camera(
    world: LaneWorld | None,
    *,
    faults: Any = None,
    view: str = "plate_front",
    folder: str | None = None,
    fps: float = 10.0,
    port: int = 0,
    width: int = 640,
    height: int = 360,
    **_opts: Any,
) -> CameraHandle:
    """Start an MJPEG camera on loopback; ``handle.link`` is its site-config link."""
    faults = FaultInjector() if faults is None else faults
    sim = CameraSim(world, view=view, folder=folder, width=width, height=height, faults=faults)
    handle: CameraHandle | None = None

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None and handle is not None
        handle._clients.add(task)
        try:
            await sim.handle(reader, writer, fps)
        finally:
            handle._clients.discard(task)

    server = await asyncio.start_server(client, "127.0.0.1", port)
    handle = CameraHandle(sim, server, server.sockets[0].getsockname()[1])
    return handle
