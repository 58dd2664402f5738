"""The camera simulator's labelled photographs (``portlane demo --ocr --images DIR``).

A library dresses the generated vehicles with the photographs' identities (and keeps their
e-card registrations in step) and each camera of the right kind shows that vehicle's own
photo — its first, second … — never a copy another camera already shows.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import numpy as np
import pytest
from portlane.edge.demo.options import DemoOptions
from portlane.edge.errors import UsageError
from portlane.sim_devices.camera_http import CameraSim, LabelledImages, LabelledImagesError
from portlane.sim_devices.traffic import make_plan
from portlane.sim_devices.world import LaneWorld, Vehicle


def _folder(tmp_path: Path, rows: list[tuple[str, str, str]]) -> Path:
    for i, (name, _text, _kind) in enumerate(rows):
        cv2.imwrite(str(tmp_path / name), np.full((40, 60, 3), 10 * i, np.uint8))
    (tmp_path / "labels.csv").write_text(
        "file,text,kind\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows), encoding="utf-8"
    )
    return tmp_path


def test_plates_library_dresses_vehicles_and_their_registrations(tmp_path: Path) -> None:
    lib = LabelledImages(
        _folder(tmp_path, [("a.jpg", "粤ZAB12港|AB1234", "cn_crossborder"), ("b.jpg", "湘A12345|浙B00001", "cn_blue")])
    )
    plan = make_plan({"c1": "cargo", "p1": "passenger"}, 4, seed=1)
    vehicles = [v for vs in plan.per_lane.values() for v in vs]
    assert lib.dress(vehicles, plan.registrations) == 4
    carried = {v.plates for v in vehicles}
    assert carried == {("粤ZAB12港", "AB1234"), ("湘A12345",)}  # the scene's other car is not this vehicle's
    regs = {r["tag_id"]: r["plates"] for r in plan.registrations}
    assert all(regs[v.tag_id] == sorted(v.plates) for v in vehicles)


def _image(data: bytes | None) -> np.ndarray:
    assert data is not None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def test_each_camera_shows_its_own_photo_or_the_empty_lane(tmp_path: Path) -> None:
    lib = LabelledImages(
        _folder(
            tmp_path,
            [("c1.jpg", "CSQU3054383", "container_door"), ("c2.jpg", "CSQU3054383", "container_front")],
        )
    )
    truck = Vehicle(plates=("粤B12345",), containers=("CSQU3054383",), kind="truck")
    fw, fh = LabelledImages.FRAME
    # each camera its own photo (c1 is black, c2 dark grey: 10), in the camera's frame
    first, second = _image(lib.photo(truck, "container_left")), _image(lib.photo(truck, "container_right"))
    assert first.shape[:2] == second.shape[:2] == (fh, fw)
    assert int(first[fh // 2, fw // 2].max()) <= 3 and 7 <= int(second[fh // 2, fw // 2].max()) <= 13
    assert lib.photo(truck, "container_rear") is None  # no third photo: no copy of another view
    assert lib.photo(truck, "plate_front") is None  # a container library does not draw plates

    async def frames() -> tuple[bytes, bytes, bytes]:
        world = LaneWorld("c1")
        left, rear = CameraSim(world, view="container_left"), CameraSim(world, view="container_rear")
        left.library = rear.library = lib
        before = left.jpeg()  # no vehicle yet: the empty lane, already at the photographs' size
        world.vehicle = truck
        return before, left.jpeg(), rear.jpeg()

    before, left, rear = asyncio.run(frames())
    assert left == lib.photo(truck, "container_left")
    for frame in (before, rear):
        empty = _image(frame)
        assert empty.shape[:2] == (fh, fw) and int(empty.std()) == 0  # the empty lane, not a photo


def test_a_photo_keeps_its_shape_in_the_cameras_frame(tmp_path: Path) -> None:
    """One frame size per camera (an MJPEG client scales every frame to the first one's): a
    photo is scaled to fit it, aspect kept, centred on grey; a Full-HD photo is its own bytes."""
    fw, fh = LabelledImages.FRAME
    cv2.imwrite(str(tmp_path / "hd.jpg"), np.full((fh, fw, 3), 200, np.uint8))
    cv2.imwrite(str(tmp_path / "tall.jpg"), np.full((800, 450, 3), 200, np.uint8))  # a portrait photo
    (tmp_path / "labels.csv").write_text(
        "file,text,kind\nhd.jpg,CSQU3054383,container_door\ntall.jpg,MSKU0539301,container_front\n",
        encoding="utf-8",
    )
    lib = LabelledImages(tmp_path)
    assert lib.framed(tmp_path / "hd.jpg") == (tmp_path / "hd.jpg").read_bytes()
    tall = _image(lib.framed(tmp_path / "tall.jpg"))
    assert tall.shape[:2] == (fh, fw)
    cols = np.flatnonzero(tall[fh // 2, :, 1] > 150)  # the photo's columns on the middle row
    width = cols[-1] - cols[0] + 1
    assert abs(width - round(450 * fh / 800)) <= 4  # scaled to the frame's height, not squeezed
    assert abs((cols[0] + cols[-1]) / 2 - fw / 2) <= 4  # centred


def test_bad_folders_and_options_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(LabelledImagesError, match=r"labels\.csv: cannot read"):
        LabelledImages(tmp_path)
    (tmp_path / "notes.jpg").write_text("not a photograph", encoding="utf-8")
    (tmp_path / "labels.csv").write_text("file,text,kind\nnotes.jpg,CSQU3054383,container_door\n", encoding="utf-8")
    with pytest.raises(LabelledImagesError, match=r"notes\.jpg: not an image"):
        LabelledImages(tmp_path)
    (tmp_path / "labels.csv").unlink()
    with pytest.raises(UsageError, match="add --ocr"):
        DemoOptions(images=tmp_path).validated()
    with pytest.raises(UsageError, match=r"no labels\.csv"):
        DemoOptions(images=tmp_path, recognition=True).validated()
