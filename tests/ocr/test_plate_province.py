"""A small province Hanzi re-read on its own (``models/plate_province.py``), on the real
recogniser and rendered plates: a sharp small province confirms the plate, a blurred one and
any other province do not; a steady one (one cut unsure, none naming another province) does, and
so does a near-unanimous one (four cuts near certain, the fifth naming another province);
a plate held for its framing is lifted only when its province is read alone and every
full-length framing agrees on its serial, and then the framings' other provinces are outvoted.
The guards that make it so are each shown to matter (mutants)."""

from __future__ import annotations

import inspect
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from portlane.models import plate_province, plate_vote
from portlane.models.calibration import SHIPPED
from portlane.models.grammar import CN_PROVINCES, CONFIRMED, LOW_CONFIDENCE, PlateRead
from portlane.models.onnx_ocr import OcrEngine
from portlane.models.pipeline import PlateReader
from portlane.sim_devices.render import render_plate

#: Plates 24–30 px high (province glyphs 19–24 px, under the 40 px floor), blurred: the network
#: reads their provinces right in some cuts, wrong or unsure in others.
BLURRED = [("湘GR0L16", 30, 2.0), ("湘GR0L16", 24, 1.5), ("粤B12345", 30, 2.0), ("粤B12345", 26, 1.5)]
#: Blurred a little less: four cuts read 湘 at p >= 0.93, one at 0.51 (unsure, but naming nothing else).
STEADY = ("湘GR0L16", 26, 1.5)


@pytest.fixture(scope="module")
def engine() -> OcrEngine:
    return OcrEngine()


@pytest.fixture(scope="module")
def reader(engine: OcrEngine) -> PlateReader:
    return PlateReader(engine)


def test_a_sharp_small_province_read_alone_confirms_the_plate(
    reader: PlateReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    img = render_plate("苏A6E176", "cn_blue", height=30, seed=3, margin=0.0)
    (r,) = reader.read(img)
    assert r.glyph_px is not None and SHIPPED.province_px_alone <= r.glyph_px < SHIPPED.province_px
    assert (r.text, r.status, r.province_alone) == ("苏A6E176", CONFIRMED, True)
    # without the evidence the same plate waits for a second source
    monkeypatch.setattr(plate_province, "check_provinces", lambda rec, view, reads, off, policy: reads)
    (r,) = reader.read(img)
    assert (r.status, r.doubt) == (LOW_CONFIDENCE, "province")


def test_a_blurred_small_province_is_not_read_alone(reader: PlateReader, monkeypatch: pytest.MonkeyPatch) -> None:
    imgs = [render_plate(t, "cn_blue", height=h, seed=3, blur=b, margin=0.0) for t, h, b in BLURRED]
    for (text, _h, _b), img in zip(BLURRED, imgs, strict=True):
        reads = reader.read(img)
        assert all(r.status == LOW_CONFIDENCE for r in reads), (text, reads)
        assert not plate_province.read_alone(reader.engine.rec, img, text)
    # mutant: one cut (the third: the widest, up-scaled) instead of all of them — a blurred glyph passes
    monkeypatch.setattr(plate_province, "CUTS", plate_province.CUTS[2:3])
    assert any(
        plate_province.read_alone(reader.engine.rec, img, t) for (t, _h, _b), img in zip(BLURRED, imgs, strict=True)
    )


def test_no_other_province_is_ever_read_alone(engine: OcrEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    img = render_plate("湘GR0L16", "cn_blue", height=30, seed=3, margin=0.0)
    assert plate_province.read_alone(engine.rec, img, "湘GR0L16")
    others = [p for p in CN_PROVINCES if p != "湘"]
    assert not any(plate_province.read_alone(engine.rec, img, p + "GR0L16") for p in others)
    assert not plate_province.read_alone(engine.rec, img, "GR0L16")  # no province at all
    # mutant: the probability and margin thresholds and the named-province guard removed — any
    # province passes
    monkeypatch.setattr(plate_province, "MIN_P", 0.0)
    monkeypatch.setattr(plate_province, "MIN_MARGIN", -1.0)
    monkeypatch.setattr(plate_province, "agrees", _mutant("agrees", _NAMED_GUARD, ""))
    assert plate_province.read_alone(engine.rec, img, "浙GR0L16")


_NAMED_GUARD = "named == 0 and "


def _mutant(name: str, old: str, new: str) -> Any:
    """``plate_province.<name>`` compiled from its own source with ``old`` replaced by ``new``."""
    src = inspect.getsource(getattr(plate_province, name))
    assert old in src
    ns = dict(vars(plate_province))
    exec(src.replace(old, new), ns)
    return ns[name]


def _posts(k: int, cuts: list[tuple[float, int]]) -> list[np.ndarray]:
    """Province posteriors, one per cut: (p of the top province, which one); the rest spread."""
    out = []
    for p, top in cuts:
        post = np.full(len(CN_PROVINCES), (1 - p) / (len(CN_PROVINCES) - 1))
        post[top] = p
        out.append(post)
    return out


XIANG, ZHE, XIN, SU = (CN_PROVINCES.index(c) for c in "湘浙新苏")


def test_a_steady_province_is_read_alone_and_only_its_own(reader: PlateReader) -> None:
    text, h, b = STEADY
    img = render_plate(text, "cn_blue", height=h, seed=3, blur=b, margin=0.0)
    assert plate_province.read_alone(reader.engine.rec, img, text)
    (r,) = reader.read(img)
    assert (r.text, r.status, r.province_alone) == (text, CONFIRMED, True)
    assert not any(plate_province.read_alone(reader.engine.rec, img, p + text[1:]) for p in CN_PROVINCES if p != "湘")


def test_steady_needs_most_cuts_sure_and_none_naming_another_province(monkeypatch: pytest.MonkeyPatch) -> None:
    # the cuts' posteriors of the development pool's nearest wrong read (p0012 on a x0.85 JPEG q60
    # copy, 浙 for 湘): 浙 most probable in every cut, but only one cut near certain
    p0012 = _posts(ZHE, [(0.91, ZHE), (0.70, ZHE), (0.97, ZHE), (0.87, ZHE), (0.91, ZHE)])
    assert not plate_province.agrees(p0012, ZHE)
    # three cuts certain, one names another province (p0065's pattern): not steady
    named = _posts(XIANG, [(0.99, XIANG), (0.90, XIN), (1.0, XIANG), (0.45, XIANG), (0.99, XIANG)])
    assert not plate_province.agrees(named, XIANG)
    # three certain and two unsure cuts that name nothing else: steady
    steady = _posts(XIANG, [(0.99, XIANG), (0.54, XIANG), (0.99, XIANG), (0.98, XIANG), (0.45, XIANG)])
    assert plate_province.agrees(steady, XIANG)
    assert not plate_province.agrees(steady[:4], XIANG)  # a cut missing: no evidence
    # mutant: the named-province guard removed — the named pattern passes
    monkeypatch.setattr(plate_province, "agrees", _mutant("agrees", _NAMED_GUARD, ""))
    assert plate_province.agrees(named, XIANG)
    monkeypatch.undo()
    # mutant: one sure cut enough — p0012's wrong province passes
    monkeypatch.setattr(plate_province, "STEADY_CUTS", 1)
    assert plate_province.agrees(p0012, ZHE)


def test_near_unanimous_cuts_outvote_one_naming_another_province(monkeypatch: pytest.MonkeyPatch) -> None:
    # p0030's cuts (苏A0CP56, 33 px): four near certain, the unpadded cut names 新
    p0030 = _posts(SU, [(1.0, SU), (0.77, XIN), (1.0, SU), (0.97, SU), (1.0, SU)])
    assert plate_province.agrees(p0030, SU)
    # p0012 as it is (浙 for 湘): two near certain, one names 新, two unsure — not read alone
    p0012 = _posts(ZHE, [(0.99, ZHE), (0.62, ZHE), (0.88, XIN), (0.63, ZHE), (0.99, ZHE)])
    assert not plate_province.agrees(p0012, ZHE)
    # three near certain and one naming another province (p0065's pattern): not enough
    three = _posts(SU, [(0.99, SU), (0.90, XIN), (1.0, SU), (0.45, SU), (0.99, SU)])
    assert not plate_province.agrees(three, SU)
    # mutant: three near-certain cuts enough — p0065's pattern passes, and p0012's is one cut away
    monkeypatch.setattr(plate_province, "NEAR_UNANIMOUS_CUTS", 3)
    assert plate_province.agrees(three, SU)
    monkeypatch.setattr(plate_province, "NEAR_UNANIMOUS_CUTS", 2)
    assert plate_province.agrees(p0012, ZHE)


def _read(text: str, doubt: str, confidence: float = 0.47) -> PlateRead:
    return PlateRead(text, "cn", confidence, (10, 10, 130, 40), (0.99,) * 7, LOW_CONFIDENCE, doubt, 0.0, 26.0)


_SERIAL_GUARD = 'r.doubt == "framing" and serial_agreed(r)'


@pytest.mark.parametrize("mutate", [False, True])
def test_a_framing_doubt_is_lifted_only_when_every_framing_agrees_on_the_serial(
    monkeypatch: pytest.MonkeyPatch, mutate: bool
) -> None:
    monkeypatch.setattr(plate_province, "read_alone", lambda rec, crop, text: True)
    if mutate:  # mutant: the serial guard removed
        monkeypatch.setattr(
            plate_province, "check_provinces", _mutant("check_provinces", _SERIAL_GUARD, 'r.doubt == "framing"')
        )
    view = np.zeros((60, 160, 3), np.uint8)

    def check(reads: list[PlateRead]) -> PlateRead:
        return plate_province.check_provinces(None, view, reads, (0, 0), SHIPPED)[0]  # type: ignore[arg-type]

    # only the province changed with the framing: lifted, its confidence its characters' again
    r = check([_read("津E14579", "framing"), _read("皖E14579", "framing", 0.3)])
    assert (r.status, r.doubt, r.province_alone, r.confidence) == (CONFIRMED, "", True, 0.99)
    # a framing read another serial of the plate's length: the plate stays held
    r = check([_read("湘AH575挂", "framing"), _read("湘AH576挂", "framing", 0.4)])
    assert (r.status, r.doubt) == ((CONFIRMED, "") if mutate else (LOW_CONFIDENCE, "framing"))
    # a read of another length is another kind's reading, not another serial (p0082: a wider
    # framing took in a web address above the painted number and read a Hong Kong "A75")
    r = check([_read("湘AH575挂", "framing"), _read("A75", "framing", 0.4)])
    assert (r.status, r.doubt, r.province_alone) == (CONFIRMED, "", True)
    # a mainland read of another length does name another serial (a green plate's eight characters)
    r = check([_read("粤B12345", "framing"), _read("粤BD12345", "framing", 0.4)])
    assert (r.status, r.doubt) == ((CONFIRMED, "") if mutate else (LOW_CONFIDENCE, "framing"))
    # other structural doubts are never lifted
    for doubt in ("rival", "lower_row", "grammar", "look"):
        assert check([_read("津E14579", doubt)]).status == LOW_CONFIDENCE


@pytest.mark.parametrize("mutate", [False, True])
def test_a_province_read_alone_outvotes_the_framings_that_read_another(
    monkeypatch: pytest.MonkeyPatch, mutate: bool
) -> None:
    # p0087: 新B74110 (42 px) read 浙B74110 in the wider framing; its five cuts read 新 at p >= 0.99
    monkeypatch.setattr(plate_province, "read_alone", lambda rec, crop, text: text[0] == "新")
    if mutate:  # mutant: the framings' other provinces kept
        monkeypatch.setattr(plate_province, "check_provinces", _mutant("check_provinces", _OUTVOTED, "True"))
    view = np.zeros((60, 160, 3), np.uint8)
    reads = [_read("新B74110", "framing", 0.67), _read("浙B74110", "framing", 0.87)]
    (r,) = plate_vote.vote(plate_province.check_provinces(None, view, reads, (0, 0), SHIPPED))  # type: ignore[arg-type]
    assert r.text == "新B74110"
    assert (r.status, r.doubt) == ((LOW_CONFIDENCE, "rival") if mutate else (CONFIRMED, ""))
    # a province not read alone outvotes nothing: both reads stay, and the plate is held
    monkeypatch.undo()
    monkeypatch.setattr(plate_province, "read_alone", lambda rec, crop, text: False)
    got = plate_province.check_provinces(None, view, reads, (0, 0), SHIPPED)  # type: ignore[arg-type]
    assert [g.text for g in got] == ["新B74110", "浙B74110"]
    assert all(g.status == LOW_CONFIDENCE for g in got)


_OUTVOTED = "not any(_outvoted(reads, out[i], was, alone) for i in lifted)"
_NEAR = (14, 12, 134, 42)  # another detector box over the same plate
_FAR = (200, 10, 320, 40)  # another plate


@pytest.mark.parametrize(
    ("case", "reads", "alone", "guard"),
    [
        (
            "the line's own read",
            [_read("新B74110", "framing", 0.67), _read("浙B74110", "province", 0.87)],
            "新",
            'o.doubt == "framing"',
        ),
        (
            "another plate",
            [_read("新B74110", "framing"), replace(_read("浙B74110", "framing"), box=_FAR)],
            "新",
            "o.box == r.box",
        ),
        (
            "another serial",
            [_read("新B74110", "province", 0.99), _read("浙B74111", "framing")],
            "新",
            "o.text[1:] == r.text[1:]",
        ),
        (
            "both read alone",
            [_read("新B74110", "framing"), _read("浙B74110", "framing")],
            "新浙",
            "a.box == r.box and a.text[0] == o.text[0] for",
        ),
        (
            "another box names it",
            [
                _read("新B74110", "framing"),
                _read("浙B74110", "framing"),
                replace(_read("浙B74110", "confidence", 0.2), box=_NEAR),
            ],
            "新",
            "x.text[0] == o.text[0] and x.box is not None and x.box != r.box and overlaps(x.box, r.box) for",
        ),
        (
            "still held",
            [replace(_read("新B74110", "framing"), char_confidences=(0.5,) * 7), _read("浙B74110", "framing")],
            "新",
            "r.status == CONFIRMED",
        ),
    ],
)
@pytest.mark.parametrize("mutate", [False, True])
def test_a_province_read_alone_outvotes_only_its_own_framings(
    monkeypatch: pytest.MonkeyPatch, case: str, reads: list[PlateRead], alone: str, guard: str, mutate: bool
) -> None:
    """Each guard of ``_outvoted`` keeps the other province's read (the vote then sees it);
    without it (mutant), the read is dropped."""
    monkeypatch.setattr(plate_province, "read_alone", lambda rec, crop, text: text[0] in alone)
    if mutate:  # the guard made to let everything through
        monkeypatch.setattr(
            plate_province, "_outvoted", _mutant("_outvoted", guard, "False for" if " for" in guard else "True")
        )
    view = np.zeros((60, 160, 3), np.uint8)
    got = plate_province.check_provinces(None, view, reads, (0, 0), SHIPPED)  # type: ignore[arg-type]
    kept = [g.text for g in got if (g.text, g.box) == (reads[1].text, reads[1].box)]  # the other province's
    if mutate:
        assert not kept, case
    else:
        assert kept, case
        assert got[0].text == reads[0].text and got[0].province_alone
