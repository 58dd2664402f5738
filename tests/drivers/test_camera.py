"""OpenCV camera driver against the MJPEG-over-HTTP simulator and against files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from portlane.drivers.base import CameraDriver, Frame
from portlane.drivers.config import DeviceConfig
from portlane.drivers.errors import DeviceTimeoutError, DeviceUnavailableError
from portlane.drivers.registry import create
from portlane.sim_devices.camera_http import start_camera
from portlane.sim_devices.world import LaneWorld, Vehicle

#: Snapshot deadline: the simulator streams at 25 fps on loopback, a frame is due every 40 ms.
SNAP_TIMEOUT_S = 2.0
#: Deadline of a snapshot from a camera that went silent (shorter than the driver's read timeout).
SILENT_TIMEOUT_S = 0.5


def _camera(source: str, timeout: float = SNAP_TIMEOUT_S) -> CameraDriver:
    cfg = DeviceConfig.model_validate(
        {"backend": "opencv", "link": {"kind": "camera", "source": source}, "timeout_s": timeout}
    )
    dev = create("camera", "cam-t", cfg)
    assert isinstance(dev, CameraDriver)
    return dev


def _decode(frame: Frame) -> Any:
    img = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a JPEG"
    assert (img.shape[1], img.shape[0]) == (frame.width, frame.height)
    return img


@pytest.fixture
async def lane() -> AsyncIterator[tuple[LaneWorld, Any]]:
    world = LaneWorld("t1")
    world.vehicle = Vehicle(plates=("粤Z1234港", "AB1234"), containers=("CSQU3054383",), kind="truck")
    sim = await start_camera(world, view="plate_front", fps=25)
    try:
        yield world, sim
    finally:
        await sim.close()


async def test_snapshot_from_mjpeg_over_http(lane: tuple[LaneWorld, Any]) -> None:
    _, sim = lane
    async with _camera(sim.link["source"]) as cam:
        first = await cam.snapshot()
        second = await cam.snapshot()
    assert first.jpeg[:2] == b"\xff\xd8" and first.camera == "cam-t"
    img = _decode(first)
    assert img.shape == (360, 640, 3)
    assert second.ts >= first.ts  # each snapshot is a frame captured after its trigger
    assert sim.sim.frames_sent >= 2


async def test_a_container_camera_is_hd_and_shows_the_box() -> None:
    """A container gate camera serves 1280 × 720 frames unless told otherwise: at 640 × 360 a box's
    boxed check digit is too small to read surely."""
    world = LaneWorld("t1")
    world.vehicle = Vehicle(plates=("粤B12345",), containers=("CSQU3054383",), kind="truck")
    sim = await start_camera(world, view="container_left", fps=25)
    try:
        async with _camera(sim.link["source"]) as cam:
            img = _decode(await cam.snapshot())
    finally:
        await sim.close()
    assert img.shape == (720, 1280, 3)
    assert img.std() > 10  # the rendered box, not the empty lane's flat grey


async def test_silently_stopped_camera_times_out(lane: tuple[LaneWorld, Any]) -> None:
    _, sim = lane
    # Opened, and read while live, with the usual deadline: 0.5 s for opening the stream failed
    # on a loaded machine, before the camera was stopped at all.
    async with _camera(sim.link["source"]) as cam:
        await cam.snapshot()
        sim.faults.dead = True
        # The silent camera's deadline stays under the driver's own 2 s read timeout, after
        # which it would reopen the stream (this test is about the deadline, not the reopening).
        cam.timeout = SILENT_TIMEOUT_S
        with pytest.raises(DeviceTimeoutError):
            await cam.snapshot()
        assert cam.counters["timeout"] == 1
        cam.timeout = SNAP_TIMEOUT_S
        sim.faults.dead = False  # the camera comes back: the same driver serves again
        await cam.snapshot()


async def test_snapshot_from_image_file(tmp_path: Path) -> None:
    img = np.zeros((120, 200, 3), np.uint8)
    cv2.putText(img, "CSQU3054383", (5, 70), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
    path = tmp_path / "container.png"
    cv2.imwrite(str(path), img)
    async with _camera(str(path)) as cam:
        frames = [await cam.snapshot() for _ in range(3)]  # a still image loops forever
    for f in frames:
        out = _decode(f)
        assert out.shape == (120, 200, 3)
        assert abs(int(out.mean()) - int(img.mean())) <= 2


async def test_snapshot_from_video_file_loops(tmp_path: Path) -> None:
    path = tmp_path / "lane.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 96))
    for n in range(3):
        vw.write(np.full((96, 160, 3), 40 + 80 * n, np.uint8))
    vw.release()
    async with _camera(str(path)) as cam:
        levels = [int(_decode(await cam.snapshot()).mean()) for _ in range(4)]
    assert levels[0] < levels[1] < levels[2]
    assert abs(levels[3] - levels[0]) <= 3  # back to the first frame


async def test_missing_file_and_dead_url_are_unavailable(tmp_path: Path) -> None:
    cam = _camera(str(tmp_path / "nothing.jpg"))
    with pytest.raises(DeviceUnavailableError):
        await cam.connect()
    await cam.close()
    cam = _camera("http://127.0.0.1:9/stream.mjpg")  # discard port: connection refused
    with pytest.raises(DeviceUnavailableError):
        await cam.connect()
    await cam.close()
