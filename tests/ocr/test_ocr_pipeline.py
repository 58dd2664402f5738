"""The real PP-OCRv4 ONNX models on synthetic renders of every kind; manifest; fusion; worker."""

from __future__ import annotations

import asyncio
import shutil
import sys
import threading
from pathlib import Path

import cv2
import pytest
from portlane.models import fusion, manifest
from portlane.models.grammar import PlateRead
from portlane.models.iso6346 import ContainerRead
from portlane.sim_devices.render import render_container, render_plate, render_vehicle_scene


@pytest.fixture(scope="module")
def engine():
    from portlane.models.onnx_ocr import OcrEngine

    return OcrEngine.shared()


@pytest.fixture(scope="module")
def plates(engine):
    from portlane.models.pipeline import PlateReader

    return PlateReader(engine)


@pytest.fixture(scope="module")
def containers(engine):
    from portlane.models.pipeline import ContainerReader

    return ContainerReader(engine)


PLATES = [
    ("粤B12345", "cn_blue", "cn", "粤B12345"),
    ("沪AD12345", "cn_green", "cn", "沪AD12345"),
    ("京A1234学", "cn_yellow", "cn", "京A1234学"),
    ("粤ZA123港", "cn_crossborder", "cn_crossborder", "粤ZA123港"),
    ("AB1234", "hk", "hk", "AB1234"),
    ("XY88", "hk_rear", "hk", "XY88"),
    ("MX1234", "macau", "macau", "MX-12-34"),
]


@pytest.mark.parametrize(("text", "style", "kind", "expected"), PLATES)
def test_tight_crop_of_every_kind_is_read(plates, text, style, kind, expected) -> None:
    img = render_plate(text, style, seed=7, noise=5, blur=0.8, perspective=0.03)
    reads = plates.read(img)
    assert reads, "no plate found"
    assert (reads[0].text, reads[0].kind) == (expected, kind)
    assert 0.5 < reads[0].confidence <= 1.0


def test_small_crop_uses_recogniser_only(plates) -> None:
    img = cv2.resize(render_plate("皖AU3942", "cn_blue", seed=1), (94, 24), interpolation=cv2.INTER_AREA)
    reads = plates.read(img)
    assert [r.text for r in reads] == ["皖AU3942"]


def test_grammar_rejects_text_that_is_not_a_plate(plates, engine) -> None:
    img = render_container("CSQU3054383", "horizontal", seed=2)
    assert plates.read(img) == []


def test_scene_with_dual_plates_and_container(plates, containers) -> None:
    img = render_vehicle_scene(["AB1234", "粤ZA123港"], ["CSQU3054383"], seed=11)
    assert img.shape == (720, 1280, 3)
    got = {(r.text, r.kind) for r in plates.read(img)}
    assert got == {("AB1234", "hk"), ("粤ZA123港", "cn_crossborder")}
    ident = fusion.fuse(plates.read(img))
    assert ident is not None and ident.paired is not None
    assert {ident.text, ident.paired.text} == {"AB1234", "粤ZA123港"}
    assert [c.number for c in containers.read(img)] == ["CSQU3054383"]


@pytest.mark.slow
def test_1080p_scene(plates) -> None:
    img = render_vehicle_scene(["苏A36E80"], seed=4, size=(1920, 1080))
    assert img.shape == (1080, 1920, 3)
    assert [r.text for r in plates.read(img)] == ["苏A36E80"]


@pytest.mark.parametrize(
    ("number", "layout"), [("CSQU3054383", "horizontal"), ("TRHU2599469", "split"), ("MSCU5006271", "vertical")]
)
def test_container_layouts(containers, number, layout) -> None:
    img = render_container(number, layout, size_type="22G1", seed=3, noise=4, blur=0.7)
    reads = containers.read(img)
    assert reads and reads[0].number == number
    assert reads[0].check_digit_ok and not reads[0].check_digit_inferred
    assert reads[0].iso_type == "22G1"


def test_unread_check_digit_is_inferred_and_flagged(containers) -> None:
    img = render_container("CSQU3054383", "horizontal", seed=5)
    _h, w = img.shape[:2]
    # paint over the boxed check digit (right end of the line)
    cut = img.copy()
    cut[:, int(w * 0.78) :] = cut[2, 2]
    reads = containers.read(cut)
    assert reads and reads[0].number == "CSQU3054383"
    assert reads[0].check_digit_inferred


def test_wrong_check_digit_is_never_accepted(containers) -> None:
    img = render_container("CSQU3054384", "horizontal", seed=6)  # painted with a wrong check digit
    reads = containers.read(img)
    assert all(r.number != "CSQU3054384" for r in reads)
    from portlane.models import iso6346

    assert all(iso6346.is_valid(r.number) for r in reads)


def test_tampered_model_is_refused(tmp_path: Path) -> None:
    src = manifest.package_model_dir()
    for name in ("det", "rec"):
        shutil.copy(src / manifest.spec(name).file, tmp_path)
    assert manifest.resolve("det", model_dir=tmp_path).exists()
    rec = tmp_path / manifest.spec("rec").file
    data = bytearray(rec.read_bytes())
    data[len(data) // 2] ^= 0xFF
    rec.write_bytes(bytes(data))
    with pytest.raises(manifest.ModelHashError, match="sha256"):
        manifest.resolve("rec", model_dir=tmp_path)
    from portlane.models.onnx_ocr import OcrEngine

    with pytest.raises(manifest.ModelHashError):
        OcrEngine(model_dir=tmp_path)
    rec.unlink()
    with pytest.raises(manifest.ModelMissingError, match="missing"):
        manifest.resolve("rec", model_dir=tmp_path)


def test_manifest_matches_installed_files() -> None:
    m = manifest.load_manifest()
    for name, entry in m["models"].items():
        path = manifest.resolve(name)
        assert path.stat().st_size == entry["bytes"]
        assert entry["licence"] == "Apache-2.0"


def test_fusion_weighted_vote() -> None:
    reads = [
        PlateRead("粤B12345", "cn", 0.9),
        PlateRead("粤B12346", "cn", 0.6),
        PlateRead("粤B12345", "cn", 0.8),
        PlateRead("粤B12346", "cn", 0.3),
    ]
    ident = fusion.fuse(reads)
    assert ident is not None and ident.text == "粤B12345" and ident.votes == 2
    assert 0 < ident.confidence < 0.9  # disagreement lowers confidence below the best read
    lone = fusion.fuse([PlateRead("粤B12345", "cn", 0.9)])
    assert lone is not None and lone.confidence == pytest.approx(0.9)
    assert fusion.fuse([]) is None
    [c] = fusion.fuse_containers(
        [ContainerRead("CSQU3054383", True, confidence=0.7), ContainerRead("CSQU3054384", False, confidence=0.99)]
    )
    assert c.number == "CSQU3054383"


def test_worker_module_is_light() -> None:
    import subprocess

    code = (
        "import sys, portlane.models.worker, portlane.models.fusion\n"
        "assert not {'cv2', 'onnxruntime', 'numpy'} & set(sys.modules), sys.modules.keys()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_worker_runs_off_the_event_loop() -> None:
    from portlane.models.worker import RecognitionWorker, WorkerClosedError

    jpeg = cv2.imencode(".jpg", render_plate("粤B12345", "cn_blue", seed=3))[1].tobytes()
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    async with RecognitionWorker(threads=1) as w:
        t = asyncio.create_task(ticker(), name="ticker")
        results = await w.recognise([jpeg, b"not an image", jpeg], kind="plate")
        stop.set()
        await t
        assert [[r.text for r in rs] for rs in results] == [["粤B12345"], [], ["粤B12345"]]
        assert ticks > 10  # the loop kept running while the models were loading and reading
        assert threading.get_ident() not in w.worker_thread_ids
    with pytest.raises(WorkerClosedError):
        await w.recognise([jpeg], kind="plate")
    await w.aclose()  # idempotent


async def test_two_workers_read_two_frames_at_once_and_keep_their_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """``workers=2``: the frames of one call are read two at a time, each on its own thread with
    its own readers, and come back in input order with the reads one worker gives."""
    from portlane.models.worker import RecognitionWorker

    texts = ["粤B12345", "湘A55555", "京N7065A", "沪C12345"]
    jpegs = [cv2.imencode(".jpg", render_plate(t, "cn_blue", seed=3))[1].tobytes() for t in texts]
    async with RecognitionWorker(workers=1) as one:
        alone = await one.recognise(jpegs, kind="plate")
    async with RecognitionWorker(workers=2) as w:
        await w.warm_up()
        assert len(w.worker_thread_ids) == 2  # both threads loaded their readers
        # two reads at the same moment: each waits for the other at a barrier (one at a time,
        # the first would wait alone and the barrier break)
        meet = threading.Barrier(2, timeout=30)
        read_one = w._read_one

        def together(*args: object) -> object:
            meet.wait()
            return read_one(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(w, "_read_one", together)
        both = await w.recognise(jpegs, kind="plate")
    assert [[(r.text, r.status) for r in rs] for rs in both] == [[(r.text, r.status) for r in rs] for rs in alone]
    assert [rs[0].text for rs in both] == texts
