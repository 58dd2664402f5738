"""The boxed check digit read on its own right of a serial the detector cut it from (issue 22)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from portlane.models import iso6346
from portlane.models.calibration import SHIPPED
from portlane.models.container_numbers import Cand, Rules, read_check_boxes
from portlane.models.iso6346 import ContainerRead
from portlane.sim_devices.render import render_container

NUMBER = "CSQU3054383"
GLYPH = 30  # render_container's glyph height
#: the serial's detector box is grown round its glyphs (DB unclip): ~2.2 glyph heights on the
#: development doors, so the painted check box is only ~0.7 of the line's height
LINE = 66
#: The container reader's rules (its cost bound and least character probability)
RULES = Rules(SHIPPED, 8.0, 0.2)


@pytest.fixture(scope="module")
def engine():
    from portlane.models.onnx_ocr import OcrEngine

    return OcrEngine.shared()


def _door() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """``CSQU 305438 [3]``, a door bar right of the box and the next marking after it; and the
    serial's line box as the detector gives it (without the check box, grown)."""
    patch = render_container(NUMBER, "horizontal", seed=2, height=GLYPH)
    img = np.empty((220, 640, 3), np.uint8)
    img[:] = patch[2, 2]
    ox, oy = 100, 50
    img[oy : oy + patch.shape[0], ox : ox + patch.shape[1]] = patch
    # in the patch: glyphs at y 15-45, the serial ends at x 271, the box spans x 282-317
    img[:, ox + 325 : ox + 341] = (190, 190, 190)  # a door bar
    img[oy : oy + patch.shape[0], ox + 345 : ox + 450] = patch[:, 10:115]  # the next marking
    top, bottom = oy + 15 - (LINE - GLYPH) // 2, oy + 45 + (LINE - GLYPH) // 2
    return img, (ox + 10, top, ox + 276, bottom)


def _inferred(number: str, box: tuple[int, int, int, int]) -> Cand:
    read = ContainerRead(
        number,
        True,
        check_digit_inferred=True,
        confidence=0.6,
        box=box,
        char_confidences=(0.99,) * 10,
        doubt="inferred",
    )
    return Cand((2, 0.1), read)


def test_the_boxed_digit_beside_a_door_bar_is_read_from_its_box(engine) -> None:
    img, tail = _door()
    [c] = read_check_boxes(engine, img, [_inferred(NUMBER, tail)], {0: tail}, RULES)
    assert not c.read.check_digit_inferred and c.rank[0] == 0
    assert c.read.status == "confirmed"


def test_a_boxed_digit_that_is_not_the_computed_one_leaves_the_number_inferred(engine) -> None:
    img, tail = _door()
    other = "CSQU305439"  # a misread serial: its computed check digit is not the painted 3
    misread = other + str(iso6346.check_digit(other))
    assert misread[10] != NUMBER[10]
    [c] = read_check_boxes(engine, img, [_inferred(misread, tail)], {0: tail}, RULES)
    assert c.read.check_digit_inferred and c.read.status == "low_confidence"


def _frames(engine, seq: list[dict[str, float]]) -> np.ndarray:
    """A matrix of one frame per dict (those characters at those probabilities, the rest
    blank) with a blank frame after each."""
    index, n = engine.rec.index, len(engine.rec.classes)
    out = []
    for d in seq:
        p = np.full(n, 1e-6, np.float32)
        for ch, v in d.items():
            p[index[ch]] = v
        p[0] = max(1e-6, 1 - sum(d.values()))
        blank = np.full(n, 1e-6, np.float32)
        blank[0] = 1.0
        out += [p / p.sum(), blank / blank.sum()]
    return np.stack(out)


def _read(engine, seq: list[dict[str, float]] | np.ndarray) -> ContainerRead:
    from portlane.models.container_numbers import decode_numbers

    mat = seq if isinstance(seq, np.ndarray) else _frames(engine, seq)
    (cand,) = decode_numbers([(mat, (0, 0, 10, 100))], engine.rec.index, RULES)
    assert cand is not None
    return cand.read


def test_slips_are_the_characters_the_check_digit_cannot_tell_from_the_one_read(engine) -> None:
    """A matrix that reads ``CSQU3054383`` with weight on M at the C (11 apart: the number stays
    valid) and on O (the check digit catches it): only M's weight is a slip."""
    from portlane.models import ctc
    from portlane.models.container_numbers import CONTAINER_11, slip_weights

    index = engine.rec.index
    mat = _frames(engine, [{"C": 0.6, "M": 0.05, "O": 0.3}, *({ch: 1.0} for ch in NUMBER[1:])])
    d = ctc.best_path(mat, CONTAINER_11, index)
    assert d is not None and d.text == NUMBER
    weights = slip_weights(mat, d, NUMBER, index)
    assert len(weights) == 11
    assert weights[0] == pytest.approx(float(mat[0, index["M"]]), abs=1e-4) and weights[0] > 0.04
    # the other characters: the check digit tells every other one there from them
    assert weights[1:] == (0.0,) * 10


def _stray(text: str, stray: int) -> list[dict[str, float]]:
    """``text`` read surely, but for the mark at ``stray``: read there as it is seen, 0.95
    against blank 0.05 (3 nats to skip it)."""
    return [{ch: 0.95 if i == stray else 1.0} for i, ch in enumerate(text)]


def test_a_mark_read_before_a_number_is_not_part_of_it_unless_it_makes_another_number(engine) -> None:
    # c0003: a stripe's corner above a vertical code, read as L; dropping any other mark gives
    # no valid number (LSKU…, LMKU…, LMSU… do not validate): the number as read stands
    assert not any(iso6346.is_valid(n) for n in ("LSKU0539301", "LMKU0539301", "LMSU0539301"))
    read = _read(engine, _stray("LMSKU0539301", 0))
    assert (read.number, read.status) == ("MSKU0539301", "confirmed") and read.cost < 1.0
    # c0051: the same mark before TEMU0524620, but LTEU0524620 validates too: an officer looks
    assert iso6346.is_valid("LTEU0524620")
    read = _read(engine, _stray("LTEMU0524620", 0))
    assert (read.number, read.status, read.doubt) == ("TEMU0524620", "low_confidence", "grammar")


def test_a_mark_between_a_numbers_characters_stays_in_its_cost(engine) -> None:
    read = _read(engine, _stray("MSKU05393X01", 9))  # X: not a digit, inside the serial
    assert read.number == "MSKU0539301" and read.doubt == "grammar" and read.cost > 2.0


# E and O are 11 apart: OSQU0000003 and ESQU0000003 are both valid
_TRUE, _SLIP = "OSQU0000003", "ESQU0000003"
#: A valid OSKU… number that stays valid with E for its O.
_O_SKU = next(
    n + str(iso6346.check_digit(n))
    for n in (f"OSKU{s:06d}" for s in range(100000))
    if iso6346.check_digit(n) == iso6346.check_digit("E" + n[1:])
)


def test_a_slip_seen_as_its_look_alike_weighs_as_the_decoder_counts_it(engine) -> None:
    """The true O is seen mostly as the digit 0, which the decoder counts as O in a letter
    position: that weight is the slip's, and the doubtful E is not confirmed."""
    assert iso6346.is_valid(_TRUE) and iso6346.is_valid(_SLIP)
    read = _read(engine, [{"E": 0.55, "0": 0.40, "O": 0.005}, *({c: 0.99} for c in _TRUE[1:])])
    assert read.number == _SLIP and read.slip_weights[0] > 0.4
    assert read.status == "low_confidence"


def test_a_slip_seen_a_frame_before_the_character_read_counts(engine) -> None:
    read = _read(engine, [{"O": 0.4}, {"E": 0.6}, *({c: 0.99} for c in _TRUE[1:])])
    assert read.number == _SLIP and read.slip_weights[0] > 0.3
    assert read.status == "low_confidence"


def test_a_mark_dropped_another_way_may_give_a_number_through_a_look_alike(engine) -> None:
    """A sure mark E, then the true O seen as the digit 0, the rest, and a mark after: the
    free reading is E0SKU…X; dropping E and X leaves 0SKU…, which is OSKU… — valid: held."""
    read = _read(engine, [{"E": 0.97}, {"0": 0.75}, *({c: 0.99} for c in _O_SKU[1:]), {"X": 0.97}])
    assert read.status == "low_confidence", read


def test_a_slip_in_the_frame_the_decoder_gave_a_neighbour_counts(engine) -> None:
    """The true O of AOKU0000006 shares a frame with the sure A before it (A 0.5, O 0.4); the
    decoder reads E at 0.6 after it. AEKU0000006 is valid too: the O's weight is the slip's."""
    truth, wrong = "AOKU0000006", "AEKU0000006"
    assert iso6346.is_valid(truth) and iso6346.is_valid(wrong)
    a = _frames(engine, [{"A": 0.99}])[:1]  # the A's frame, and right after it (no blank) ...
    rest = _frames(engine, [{"A": 0.5, "O": 0.4}, {"E": 0.6}, *({c: 0.99} for c in truth[2:])])
    read = _read(engine, np.concatenate([a, rest]))
    assert read.number == wrong and read.slip_weights[1] > 0.3
    assert read.status == "low_confidence"


def test_marks_round_a_number_are_not_dropped_from_its_cost_when_a_character_has_a_weighty_slip(engine) -> None:
    """A sure mark E, the true O faint (0.4, blank stronger: the free reading drops it), the rest,
    and a mark X after: dropping the marks would leave ESKU… as sure, with O's weight beside it."""
    read = _read(engine, [{"E": 0.97}, {"O": 0.4}, *({c: 0.99} for c in _O_SKU[1:]), {"X": 0.97}])
    assert read.slip_weights[0] > 0.3
    assert (read.status, read.doubt) == ("low_confidence", "grammar"), read


def test_a_sure_mark_before_a_faint_true_owner_letter_is_held_with_nothing_after_it(engine) -> None:
    """A sure mark E, the true O faint (0.3, blank stronger), the rest, nothing after: the free
    reading is ESKU…, valid and sure in every character, but O's weight beside the E is a
    second valid reading (the gap the second review left open, held since by the sure
    characters' slip bound)."""
    read = _read(engine, [{"E": 0.97}, {"O": 0.3}, *({c: 0.99} for c in _O_SKU[1:])])
    assert read.number == "E" + _O_SKU[1:] and min(read.char_confidences) > 0.9
    assert read.slip_weights[0] > 0.2
    assert (read.status, read.doubt) == ("low_confidence", "slip")


def test_marks_after_a_ten_character_read_are_not_its_cost(engine) -> None:
    """A column's glyph cell cuts through the box round its check digit, which then reads as a
    mark after the serial: the 10-character read's cost is taken over its own frames, as an
    11-character read's is, when nothing weighs as a slip (then a check digit read in its box
    may confirm the number)."""
    read = _read(engine, [*({c: 0.99} for c in NUMBER[:10]), {"#": 0.95}])
    assert read.check_digit_inferred and read.number == NUMBER
    assert read.cost < 0.5, read.cost  # the mark: 3 nats, not the number's


def _boxed_under(digit: str, *, glyph: int = 40) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The last glyph of a column (a 7), and the boxed digit under it; the glyph's box."""
    img = np.full((400, 300, 3), (40, 80, 120), np.uint8)
    x, y = 130, 120
    cv2.putText(img, "7", (x, y + glyph), cv2.FONT_HERSHEY_DUPLEX, glyph / 22, (235, 235, 235), 3, cv2.LINE_AA)
    top = y + glyph + glyph // 4
    cv2.putText(img, digit, (x, top + glyph + 4), cv2.FONT_HERSHEY_DUPLEX, glyph / 22, (235, 235, 235), 3, cv2.LINE_AA)
    cv2.rectangle(img, (x - 6, top - 4), (x + glyph * 3 // 4 + 6, top + glyph + 10), (235, 235, 235), 2)
    return img, (x, y, x + glyph * 3 // 4, y + glyph)


def test_a_columns_boxed_check_digit_is_read_under_its_last_glyph(engine) -> None:
    img, last = _boxed_under(NUMBER[10])
    [c] = read_check_boxes(engine, img, [_inferred(NUMBER, last)], {}, RULES, below={0: last})
    assert not c.read.check_digit_inferred and c.rank[0] == 0
    assert c.read.status == "confirmed"
    # another digit in the box: the number stays inferred
    img, last = _boxed_under("5")
    [c] = read_check_boxes(engine, img, [_inferred(NUMBER, last)], {}, RULES, below={0: last})
    assert c.read.check_digit_inferred and c.read.status == "low_confidence"
