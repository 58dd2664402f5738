"""The lane's identification rules for recognised plates and containers (edge/lane/identification).

* the e-card confirms a camera read only when the read *is* a plate registered with the tag —
  never the nearest registered plate (property, with the nearest-plate mutant caught);
* a container number the recogniser did not confirm goes to an officer, as a doubtful plate does;
* a 粤Z…港/澳 plate without its Hong Kong or Macau partner is incomplete.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from portlane.edge.contract.events import ContainerRead, PlateRead
from portlane.edge.lane import identification
from portlane.edge.lane.identification import (
    LOW_CONFIDENCE,
    REGISTERED_AGREEMENT_CONFIDENCE,
    container_exceptions,
    plate_exceptions,
    registration_support,
)
from portlane.edge.lane.recognition import CONFIRMED_FLOOR, UNCONFIRMED_CAP

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None, report_multiple_bugs=False)


def _plate(text: str, conf: float, kind: str = "cn") -> PlateRead:
    return PlateRead(text=text, kind=kind, confidence=conf)  # type: ignore[arg-type]


def test_wire_confidences_straddle_the_officer_threshold() -> None:
    assert UNCONFIRMED_CAP < LOW_CONFIDENCE <= CONFIRMED_FLOOR


def test_the_e_card_confirms_only_an_exact_read() -> None:
    doubtful = _plate("湘GR0L16", UNCONFIRMED_CAP)
    [same] = registration_support([doubtful], ("湘GR0L16",))
    assert same.confidence == REGISTERED_AGREEMENT_CONFIDENCE >= LOW_CONFIDENCE
    [other] = registration_support([_plate("浙GR0L16", UNCONFIRMED_CAP)], ("湘GR0L16",))
    assert other.confidence == UNCONFIRMED_CAP  # one Hanzi apart: an officer looks


def test_container_numbers_not_confirmed_go_to_an_officer() -> None:
    ok = ContainerRead(number="CSQU3054383", check_digit_ok=True, confidence=CONFIRMED_FLOOR)
    doubtful = ContainerRead(number="CSQU3054383", check_digit_ok=True, confidence=UNCONFIRMED_CAP)
    assert container_exceptions([ok]) == []
    assert container_exceptions([ok, doubtful]) == ["low_confidence"]


def test_a_cross_boundary_plate_needs_its_partner() -> None:
    cross = _plate("粤ZAB12港", 0.95, "cn_crossborder")
    assert plate_exceptions([cross], 0.95, registrations={}) == ["dual_plate_incomplete"]
    pair = [cross, _plate("AB1234", 0.95, "hk")]
    assert plate_exceptions(pair, 0.95, registrations={}) == []


plates = st.text("京粤湘浙ABCGLR0123456789", min_size=3, max_size=7)


def _support_property(read: str, registered: list[str]) -> None:
    [out] = registration_support([_plate(read, 0.3)], tuple(registered))
    if out.confidence != 0.3:
        assert read in registered, "raised by a registered plate it does not equal"


@SETTINGS
@given(plates, st.lists(plates, max_size=3))
def test_support_needs_an_exact_registered_plate(read: str, registered: list[str]) -> None:
    _support_property(read, registered)


def test_picking_the_nearest_registered_plate_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def nearest(plates: list[PlateRead], registered: tuple[str, ...]) -> tuple[PlateRead, ...]:
        def near(a: str, b: str) -> bool:
            return len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) <= 1

        return tuple(
            r.model_copy(update={"confidence": REGISTERED_AGREEMENT_CONFIDENCE})
            if any(near(r.text, t) for t in registered)
            else r
            for r in plates
        )

    monkeypatch.setattr(identification, "registration_support", nearest)

    @SETTINGS
    @given(plates, st.lists(plates, max_size=3))
    @example("浙GR0L16", ["湘GR0L16"])  # one Hanzi apart: the case the rule exists for
    def prop(read: str, registered: list[str]) -> None:
        [out] = identification.registration_support([_plate(read, 0.3)], tuple(registered))
        if out.confidence != 0.3:
            assert read in registered

    with pytest.raises(AssertionError):
        prop()


def test_a_macau_plate_matches_its_registration_however_it_is_written() -> None:
    pair = [_plate("粤ZAB12澳", 0.95, "cn_crossborder"), _plate("MX-12-34", 0.95, "macau")]
    assert plate_exceptions(pair, 0.95, registrations={"E280": ("MX1234", "粤ZAB12澳")}) == []
    assert plate_exceptions(pair, 0.95, registrations={"E280": ("MX1235", "粤ZAB12澳")}) == ["dual_plate_mismatch"]
    [raised] = registration_support([_plate("MX-12-34", 0.3, "macau")], ("MX1234",))
    assert raised.confidence == REGISTERED_AGREEMENT_CONFIDENCE
