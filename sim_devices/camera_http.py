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

**Real photographs of the generated vehicles** (``portlane demo --ocr --images DIR``): a
``LabelledImages`` library reads ``DIR/labels.csv`` (``file,text,kind``; as in the development
sets), gives the traffic plan's vehicles the identities of its photographs (``dress``: a plate
folder sets the plates — a cross-boundary photo both of them —, a container folder the trucks'
box) and serves, on the camera of a vehicle's kind, the photographs of that vehicle: the first
plate (or container) camera its first photo, the second its second, and so on. A camera with no
photo of its own left shows the empty lane rather than a copy of a photo another camera
serves — the same pixels twice would be no second view — so per-passage figures come from the
photographs alone; the cameras of the other kind keep drawing synthetic scenes. A camera's
frames keep one size, as a real camera's do (an MJPEG client such as OpenCV's FFmpeg backend
scales every frame to the first one's size, which would squeeze a 4:3 or portrait photo): the
cameras of the library's kind show a Full-HD frame (``LabelledImages.FRAME``), each photo scaled
to fit it, aspect kept, centred on grey; a 1920 × 1080 photo is served as it is.

Fault: ``faults.dead`` — the camera *silently stops*: connections stay open, no more frames
(the failure mode that makes a naive ``VideoCapture.read()`` hang).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import zlib
from pathlib import Path
from typing import Any

from .faults import FaultInjector
from .world import LaneWorld

__all__ = ["CameraHandle", "CameraSim", "LabelledImages", "start_camera"]

BOUNDARY = "portlaneframe"
#: A client that sends no request line within this is dropped (slowloris guard).
REQUEST_TIMEOUT_S = 5.0
#: Bound on one write to a client; a client that stops reading for this long is dropped.
WRITE_TIMEOUT_S = 5.0
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


#: Which of a lane's cameras of one kind a view is (its photo of a vehicle: first, second …).
VIEW_INDEX: dict[str, int] = {
    "plate_front": 0,
    "plate_rear": 1,
    "container_left": 0,
    "container_right": 1,
    "container_rear": 2,
    "container_top": 3,
}


#: The grey of the empty lane, and round a photo framed for the camera.
LANE_GREY = 90


def _is_image(path: Path) -> bool:
    import cv2

    return bool(cv2.haveImageReader(str(path)))


class LabelledImagesError(ValueError):
    """A labelled image folder that cannot be used; the message says which file and why."""


class LabelledImages:
    """Photographs from a labelled folder, grouped by vehicle (main label), for the demo's cameras."""

    #: The frame (width, height) of a camera of the library's kind: a Full-HD gate camera.
    FRAME = (1920, 1080)

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        labels = self.folder / "labels.csv"
        try:
            with labels.open(encoding="utf-8", newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if r.get("file") and r.get("text")]
        except OSError as exc:
            raise LabelledImagesError(f"{labels}: cannot read ({exc.strerror or exc})") from None
        if not rows:
            raise LabelledImagesError(f"{labels}: no rows with file and text")
        self.containers = all((r.get("kind") or "").startswith("container") for r in rows)
        #: main label -> (what the vehicle carries, its photos)
        self.groups: dict[str, tuple[tuple[str, ...], list[Path]]] = {}
        for r in rows:
            texts = tuple(t.strip() for t in r["text"].split("|") if t.strip())
            mine = texts if (r.get("kind") or "") == "cn_crossborder" else texts[:1]
            path = self.folder / r["file"]
            if not path.is_file():
                continue
            if not _is_image(path):
                raise LabelledImagesError(f"{path}: not an image a camera could show")
            self.groups.setdefault(texts[0], (mine, []))[1].append(path)
        if not self.groups:
            raise LabelledImagesError(f"{labels}: none of its files is in {self.folder}")
        self._by_text: dict[str, list[Path]] = {}
        for carried, photos in self.groups.values():
            self._by_text.setdefault(carried[0], photos)

    def dress(self, vehicles: list[Any], registrations: list[dict[str, Any]]) -> int:
        """Give ``vehicles`` (in order) the identities of the photographs, round robin, and keep
        each e-card's registration in step; returns how many vehicles were given a photo."""
        groups = list(self.groups.values())
        by_tag = {r["tag_id"]: r for r in registrations}
        n = 0
        for v in vehicles:
            if self.containers and not v.containers:
                continue  # a car: no box to show
            carried, _photos = groups[n % len(groups)]
            n += 1
            if self.containers:
                v.containers = carried[:1]
                v.container_types = tuple(v.container_types)[:1]  # the photo's own code is not in labels.csv
                continue
            v.plates = carried
            reg = by_tag.get(v.tag_id)
            if reg is not None:
                reg["plates"] = sorted(carried)
        return n

    def view_kind(self, view: str) -> bool:
        """Does the camera ``view`` show this library's kind (plates or containers)?"""
        return view.startswith("container") == self.containers

    def photo(self, vehicle: Any, view: str) -> bytes | None:
        """The photo of ``vehicle`` the camera ``view`` shows, or None (not its kind, or no photo
        left for this camera)."""
        if not self.view_kind(view):
            return None
        texts = vehicle.containers if self.containers else vehicle.plates
        photos = self._by_text.get(texts[0]) if texts else None
        k = VIEW_INDEX.get(view, 0)
        if not photos or k >= len(photos):
            return None
        return self.framed(photos[k])

    def framed(self, path: Path) -> bytes:
        """The photo at ``path`` as the camera's frame (:attr:`FRAME`): scaled to fit, aspect
        kept, centred on grey; the file's own bytes when it is that size already."""
        import cv2
        import numpy as np

        data = path.read_bytes()
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise LabelledImagesError(f"{path}: not an image")
        fw, fh = self.FRAME
        h, w = img.shape[:2]
        if (w, h) == (fw, fh) and path.suffix.lower() in (".jpg", ".jpeg"):
            return data
        s = min(fw / w, fh / h)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        frame = np.full((fh, fw, 3), LANE_GREY, np.uint8)
        x, y = (fw - nw) // 2, (fh - nh) // 2
        frame[y : y + nh, x : x + nw] = cv2.resize(
            img, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
        )
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        return bytes(buf.tobytes())


#: Frame size (width, height) per kind of view when the simulator is given none. A container
#: gate camera is HD: at 640 × 360 the rendered boxes' numbers were read in doubt in 26 of 48
#: frames (6 boxes × 8 scenes; the boxed check digit too small), at 1280 × 720 in none of them;
#: plate frames keep 640 × 360.
FRAME_SIZES: dict[str, tuple[int, int]] = {"container": (1280, 720), "plate": (640, 360)}


def _view_kind(view: str) -> str:
    return "container" if view.startswith("container") else "plate"


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
        #: real photographs of the generated vehicles (``portlane demo --images``)
        self.library: LabelledImages | None = None

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
                        size_types=tuple(v.container_types) if container_view else (),
                    )
                except TypeError:  # another signature: fall back to our own drawing
                    pass
        img = np.full((self.height, self.width, 3), LANE_GREY, np.uint8)  # grey tarmac
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
            vehicle = self.world.vehicle if self.world is not None else None
            if self.library is not None and self.library.view_kind(self.view):
                # the photographs' camera: the vehicle's own photo, or the empty lane, one frame size
                photo = self.library.photo(vehicle, self.view) if vehicle is not None else None
                data = photo if photo is not None else self._empty()
                self._cache = (key, data)
                return data
            img = self._scene()
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        assert ok
        data = buf.tobytes()
        if not self.images:
            self._cache = (key, data)
        return data

    def _empty(self) -> bytes:
        """The lane without a vehicle in view: grey tarmac (at the photographs' frame size)."""
        import cv2
        import numpy as np

        w, h = self.library.FRAME if self.library is not None else (self.width, self.height)
        ok, buf = cv2.imencode(".jpg", np.full((h, w, 3), LANE_GREY, np.uint8))
        assert ok
        return bytes(buf.tobytes())

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
    width: int | None = None,
    height: int | None = None,
    **_opts: Any,
) -> CameraHandle:
    """Start an MJPEG camera on loopback; ``handle.link`` is its site-config link. Without a
    ``width`` and ``height`` its frames are :data:`FRAME_SIZES` for its kind of view."""
    faults = FaultInjector() if faults is None else faults
    default_w, default_h = FRAME_SIZES[_view_kind(view)]
    w, h = width or default_w, height or default_h
    sim = CameraSim(world, view=view, folder=folder, width=w, height=h, faults=faults)
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
