"""The confirmation policy (``models/calibration.py``): rules, fit with a margin, reliability.

Safety properties (hypothesis), each with a mutant test showing it fails without its guard:

* a container number is confirmed only with its check digit *read* and valid (not inferred,
  corrected, or valid through the 10 -> 0 fold with a doubtful character before the check
  digit), every owner letter sure, and at most one character below the sure level — the one
  character the check digit pins;
* a read with a structural doubt (a rival reading, a framing that changed the province …) is
  never confirmed, whatever its confidences.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from portlane.models import calibration, iso6346
from portlane.models.calibration import SHIPPED, Policy, container_decision, fit, isotonic, plate_decision
from portlane.models.grammar import CONFIRMED, LOW_CONFIDENCE, PlateRead
from portlane.models.iso6346 import ContainerRead

SETTINGS = settings(max_examples=1000, deadline=None, derandomize=True, database=None, report_multiple_bugs=False)

SURE = SHIPPED.container_sure
#: Character confidences as recognisers give them: mostly sure, a few doubtful.
char_conf = st.sampled_from([0.99] * 24 + [0.97, 0.92, 0.85, 0.6, 0.35, 0.1])


def _box(number: str, cc: tuple[float, ...], **kw: object) -> ContainerRead:
    return ContainerRead(number, iso6346.is_valid(number), char_confidences=cc, confidence=min(cc), **kw)  # type: ignore[arg-type]


def test_one_doubtful_digit_is_pinned_by_the_check_digit_two_are_not() -> None:
    sure = (0.99,) * 11
    assert container_decision(_box("CSQU3054383", sure)) == (CONFIRMED, "")
    one = (*sure[:6], 0.55, *sure[7:])
    assert container_decision(_box("CSQU3054383", one)) == (CONFIRMED, "")
    two = (*sure[:6], 0.55, 0.6, *sure[8:])
    assert container_decision(_box("CSQU3054383", two)) == (LOW_CONFIDENCE, "confidence")
    letter = (0.55, *sure[1:])  # an owner letter: A/K, G/Q … slip through the check
    assert container_decision(_box("CSQU3054383", letter)) == (LOW_CONFIDENCE, "confidence")
    assert container_decision(_box("CSQU3054383", sure, check_digit_inferred=True))[0] == LOW_CONFIDENCE
    assert container_decision(_box("CSQU3054384", sure)) == (LOW_CONFIDENCE, "check_digit")


def test_small_province_waits_for_a_second_source() -> None:
    r = PlateRead("粤B12345", "cn", 0.99, None, (0.99,) * 7, LOW_CONFIDENCE, "", 0.0, 25.0)
    assert plate_decision(r) == (LOW_CONFIDENCE, "province")
    assert plate_decision(dataclasses.replace(r, glyph_px=60.0)) == (CONFIRMED, "")
    assert plate_decision(dataclasses.replace(r, glyph_px=60.0, doubt="rival")) == (LOW_CONFIDENCE, "rival")
    hk = PlateRead("AB1234", "hk", 0.95, None, (0.95,) * 6, LOW_CONFIDENCE, "", 0.0, None)
    assert plate_decision(hk) == (CONFIRMED, "")  # no Hanzi: its size does not matter


def test_a_province_read_alone_lowers_the_floor_to_its_own_and_no_further() -> None:
    r = PlateRead("粤B12345", "cn", 0.99, None, (0.99,) * 7, LOW_CONFIDENCE, "", 0.0, 25.0)
    alone = dataclasses.replace(r, province_alone=True)
    assert plate_decision(alone) == (CONFIRMED, "")
    assert plate_decision(dataclasses.replace(alone, glyph_px=SHIPPED.province_px_alone - 1)) == (
        LOW_CONFIDENCE,
        "province",
    )
    assert plate_decision(dataclasses.replace(alone, glyph_px=None)) == (LOW_CONFIDENCE, "province")
    # the evidence does not lift a structural doubt, a weak Hanzi, nor a policy without the floor
    assert plate_decision(dataclasses.replace(alone, doubt="framing")) == (LOW_CONFIDENCE, "framing")
    weak = dataclasses.replace(alone, char_confidences=(0.8,) + (0.99,) * 6)
    assert plate_decision(weak) == (LOW_CONFIDENCE, "confidence")
    assert plate_decision(alone, Policy()) == (LOW_CONFIDENCE, "province")  # default: off


def test_fit_keeps_a_margin_and_never_goes_below_the_floors() -> None:
    right = _box("CSQU3054383", (0.99,) * 10 + (0.65,))
    wrong = _box("CSQU3054383", (0.99,) * 10 + (0.45,))  # same shape, labelled wrong
    p = fit([(right, True), (wrong, False)])
    # 0.5 would confirm the right read, but one step looser (0.4) confirms the wrong one
    assert p.container_min_one == 0.6
    assert fit([(right, True)]).container_min_one == calibration.GRID["container_min_one"][0]
    assert container_decision(wrong, p)[0] == LOW_CONFIDENCE and container_decision(right, p)[0] == CONFIRMED


def test_fit_of_the_read_alone_floor_keeps_its_margin() -> None:
    def plate(px: float) -> PlateRead:
        return PlateRead("湘GR0L16", "cn", 0.99, None, (0.99,) * 7, LOW_CONFIDENCE, "", 0.0, px, province_alone=True)

    p = fit([(plate(35.0), True), (plate(20.0), False)])
    # 24 px would keep the 20 px read out, but one step looser (18 px) confirms it
    assert p.province_px_alone == 30.0
    assert fit([(plate(35.0), True)]).province_px_alone == calibration.GRID["province_px_alone"][0]


def test_isotonic_is_monotone_and_smoothed() -> None:
    f = isotonic([(0.2, False), (0.3, True), (0.4, False), (0.9, True), (0.95, True), (0.99, True)])
    xs = [0.1, 0.25, 0.35, 0.5, 0.92, 0.99, 1.0]
    ys = [f(x) for x in xs]
    assert ys == sorted(ys) and ys[-1] == pytest.approx(4 / 5)  # 3 right of 3, one pseudo-read each way
    table = calibration.reliability([(0.1, False), (0.97, True), (0.99, True)])
    assert [b["n"] for b in table] == [1, 1, 1] and table[-1]["observed"] == 1.0


# -- safety properties -----------------------------------------------------------------------------

numbers = st.builds(
    lambda owner, serial: owner + "U" + serial,
    st.text("ABCDEFGHJKLMNPRSTUVWXYZ", min_size=3, max_size=3),
    st.text("0123456789", min_size=6, max_size=6),
).map(lambda n10: n10 + str(iso6346.check_digit(n10)))
rarely = st.sampled_from([False, False, False, True])
#: numbers valid only through the 10 -> 0 fold, as often as the others
folded = numbers.filter(lambda n: iso6346.remainder(n[:10]) == 10)
#: Slip weights as reads give them: none measured, or per character nothing, little, or some.
slip_weights = st.one_of(
    st.just(()), st.lists(st.sampled_from([0.0] * 4 + [0.0006, 0.01, 0.011, 0.3]), min_size=11, max_size=11).map(tuple)
)
container_reads = st.builds(
    lambda number, flip, cc, inferred, corrected, doubt, cost, weights: ContainerRead(
        number if not flip else number[:10] + str((int(number[10]) + 1) % 10),
        not flip,
        check_digit_inferred=inferred,
        corrected=corrected,
        confidence=min(cc),
        char_confidences=tuple(cc),
        doubt=doubt,
        cost=cost,
        slip_weights=weights,
    ),
    st.one_of(numbers, folded),
    rarely,
    st.lists(char_conf, min_size=11, max_size=11),
    rarely,
    rarely,
    st.sampled_from(["", "", "", "rival", "confidence", "inferred"]),
    st.sampled_from([0.0, 0.5, 3.0]),
    slip_weights,
)


def _container_property(r: ContainerRead, policy: Policy) -> None:
    status, _doubt = calibration.container_decision(r, policy)
    if status != CONFIRMED:
        return
    cc = r.char_confidences
    assert iso6346.is_valid(r.number) and not r.check_digit_inferred and not r.corrected
    for i, c in enumerate(cc):
        if c >= policy.container_sure:
            continue
        # the one doubtful character: no other keeps the number valid, or those that do weigh nothing
        if r.slip_weights:
            assert r.slip_weights[i] <= calibration.SLIP_MAX, "a doubtful character whose slips weigh"
        else:
            assert i >= 3, "an owner letter, unmeasured: letters 11 apart slip the check"
            assert r.number[10] != "0" or i == 10, "check digit 0 (the fold): no doubt before it, unmeasured"
    assert all(w <= calibration.SURE_SLIP_MAX for w in r.slip_weights), "a second valid reading weighs"
    assert r.doubt not in calibration.STRUCTURAL
    assert sum(c < policy.container_sure for c in cc) <= 1, "two doubtful characters: one pair in ten passes"
    assert min(cc) >= policy.container_min_one


@SETTINGS
@given(container_reads)
def test_confirmed_number_has_a_read_check_digit_and_one_doubt_at_most(r: ContainerRead) -> None:
    _container_property(r, SHIPPED)


#: Reads each guard exists for (hypothesis also finds such reads; these make it certain).
_SURE = (0.99,) * 11
_FOLDED = next(
    n + str(iso6346.check_digit(n)) for n in (f"CSQU{i:06d}" for i in range(1000)) if iso6346.remainder(n) == 10
)
GUARDED = [
    _box("CSQU3054383", (*_SURE[:6], 0.6, 0.6, *_SURE[8:])),  # two doubtful digits
    _box("CSQU3054383", _SURE, check_digit_inferred=True, doubt="inferred"),  # computed check digit
    _box(_FOLDED, (*_SURE[:6], 0.6, *_SURE[7:])),  # through the fold, one doubtful digit
    _box("CSQU3054383", (0.6, *_SURE[1:]), slip_weights=(0.2, *(0.0,) * 10)),  # a doubtful C, and M weighs
    _box(_FOLDED, (*_SURE[:6], 0.6, *_SURE[7:]), slip_weights=(*(0.0,) * 6, 0.2, *(0.0,) * 4)),  # through the fold
    _box("CSQU3054383", _SURE, slip_weights=(0.3, *(0.0,) * 10)),  # a sure C, and M beside it weighs
]


def _mutant_caught(monkeypatch: pytest.MonkeyPatch, mutant: object) -> None:
    monkeypatch.setattr(calibration, "container_decision", mutant)

    @SETTINGS
    @given(container_reads)
    @example(GUARDED[0])
    @example(GUARDED[1])
    @example(GUARDED[2])
    @example(GUARDED[3])
    @example(GUARDED[4])
    @example(GUARDED[5])
    def prop(r: ContainerRead) -> None:
        _container_property(r, SHIPPED)

    with pytest.raises(AssertionError):
        prop()


def test_removing_the_second_doubt_guard_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    real = calibration.container_decision

    def mutant(r: ContainerRead, policy: Policy = SHIPPED) -> tuple[str, str]:
        # weakest-but-one guard removed: only the weakest character is checked
        return real(r, dataclasses.replace(policy, container_sure=0.0))

    _mutant_caught(monkeypatch, mutant)


def test_removing_the_inferred_guard_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    real = calibration.container_decision

    def mutant(r: ContainerRead, policy: Policy = SHIPPED) -> tuple[str, str]:
        return real(dataclasses.replace(r, check_digit_inferred=False, doubt=""), policy)

    _mutant_caught(monkeypatch, mutant)


def test_a_doubtful_owner_letter_is_pinned_only_when_the_letters_the_check_cannot_tell_weigh_nothing() -> None:
    # the letters the check digit cannot tell from C in first place: values 11 apart (13, 24, 35)
    assert [c for c in "ABDEFGHIJKLMNOPQRSTUVWXYZ" if iso6346.is_valid(c + "SQU3054383")] == ["M", "W"]
    doubtful_c = (0.6, *_SURE[1:])
    assert container_decision(_box("CSQU3054383", doubtful_c)) == (LOW_CONFIDENCE, "confidence")  # not measured
    nothing = (0.0,) * 11
    pinned = _box(
        "CSQU3054383", doubtful_c, slip_weights=(0.0006, 0.05, *nothing[2:])
    )  # a sure letter's slips under SURE_SLIP_MAX: no matter
    assert container_decision(pinned) == (CONFIRMED, "")
    beside = _box("CSQU3054383", doubtful_c, slip_weights=(0.0006, 0.3, *nothing[2:]))
    assert container_decision(beside) == (LOW_CONFIDENCE, "slip")  # a second valid reading
    weighs = _box("CSQU3054383", doubtful_c, slip_weights=(0.02, *nothing[1:]))
    assert container_decision(weighs) == (LOW_CONFIDENCE, "confidence")
    # still one doubtful character at most: a doubtful owner letter and a doubtful digit are two
    two = _box("CSQU3054383", (0.6, *_SURE[1:6], 0.6, *_SURE[7:]), slip_weights=nothing)
    assert container_decision(two) == (LOW_CONFIDENCE, "confidence")


def test_removing_the_slip_guard_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    real = calibration.container_decision

    def mutant(r: ContainerRead, policy: Policy = SHIPPED) -> tuple[str, str]:
        # the slips are measured but not looked at: every doubtful character passes
        return real(dataclasses.replace(r, slip_weights=(0.0,) * 11) if r.slip_weights else r, policy)

    _mutant_caught(monkeypatch, mutant)


def test_removing_the_sure_slip_guard_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    real = calibration.container_decision

    def mutant(r: ContainerRead, policy: Policy = SHIPPED) -> tuple[str, str]:
        # only the doubtful character's slips are looked at, as before the bound on sure ones
        got = real(r, policy)
        return (CONFIRMED, "") if got == (LOW_CONFIDENCE, "slip") else got

    _mutant_caught(monkeypatch, mutant)


def test_through_the_fold_a_doubtful_check_digit_is_pinned_and_a_doubtful_digit_before_it_is_not() -> None:
    # The ten sure characters leave remainder 10, whose check digit is 0: no other check digit
    # makes those ten valid, so a doubtful 0 read there is the number's own (as any check digit).
    assert all(not iso6346.is_valid(_FOLDED[:10] + str(d)) for d in range(1, 10))
    assert container_decision(_box(_FOLDED, (*_SURE[:10], 0.6))) == (CONFIRMED, "")
    # A doubtful digit before it may turn remainder 0 into 10 (check digit 0 both): held.
    slips = [
        _FOLDED[:i] + d + _FOLDED[i + 1 : 10] + "0"
        for i in range(4, 10)
        for d in "0123456789"
        if d != _FOLDED[i] and iso6346.remainder(_FOLDED[:i] + d + _FOLDED[i + 1 : 10]) in (0, 10)
    ]
    assert slips, "some single substitution before the check digit keeps check digit 0"
    for i in range(4, 10):
        cc = (*_SURE[:i], 0.6, *_SURE[i + 1 :])
        assert container_decision(_box(_FOLDED, cc)) == (LOW_CONFIDENCE, "fold")  # unmeasured
        weighs = tuple(0.05 if k == i else 0.0 for k in range(11))
        assert container_decision(_box(_FOLDED, cc, slip_weights=weighs)) == (LOW_CONFIDENCE, "fold")
        # measured, and the one digit that keeps it valid has no weight: pinned, as any digit
        assert container_decision(_box(_FOLDED, cc, slip_weights=(0.0,) * 11)) == (CONFIRMED, "")


def test_a_number_with_remainder_0_is_exposed_to_the_fold_too() -> None:
    """Check digit 0 is remainders 0 and 10: a number read with remainder 0 may be a remainder-10
    number with one digit misread, so a doubtful digit before its check digit is held unless the
    digit that would make it so has no weight."""
    zero = next(n + "0" for n in (f"CSQU{i:06d}" for i in range(1000)) if iso6346.remainder(n) == 0)
    slips = [
        (i, d)
        for i in range(4, 10)
        for d in "0123456789"
        if d != zero[i] and iso6346.is_valid(zero[:i] + d + zero[i + 1 :])
    ]
    assert slips, "a single substitution before the check digit keeps the number valid"
    i = slips[0][0]
    cc = (*_SURE[:i], 0.6, *_SURE[i + 1 :])
    assert container_decision(_box(zero, cc)) == (LOW_CONFIDENCE, "fold")  # unmeasured
    weighs = tuple(0.05 if k == i else 0.0 for k in range(11))
    assert container_decision(_box(zero, cc, slip_weights=weighs)) == (LOW_CONFIDENCE, "fold")
    assert container_decision(_box(zero, cc, slip_weights=(0.0,) * 11)) == (CONFIRMED, "")


def test_removing_the_fold_guard_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    real = calibration.container_decision

    def mutant(r: ContainerRead, policy: Policy = SHIPPED) -> tuple[str, str]:
        got = real(r, policy)
        return (CONFIRMED, "") if got == (LOW_CONFIDENCE, "fold") else got

    _mutant_caught(monkeypatch, mutant)


plate_reads = st.builds(
    lambda text, cc, doubt, px, alone: PlateRead(
        text, "cn", min(cc), None, tuple(cc), LOW_CONFIDENCE, doubt, 0.0, px, province_alone=alone
    ),
    st.sampled_from(["粤B12345", "湘GR0L16"]),
    st.lists(char_conf, min_size=7, max_size=7),
    st.sampled_from([*sorted(calibration.STRUCTURAL), "", "province", "confidence"]),
    # the floors' neighbourhoods as well as anywhere (p0012's province was 31.5 px)
    st.one_of(st.none(), st.floats(5.0, 200.0), st.sampled_from([17.9, 18.0, 25.0, 31.5, 39.9, 40.0])),
    st.booleans(),
)


def _plate_property(r: PlateRead) -> None:
    status, doubt = calibration.plate_decision(r, SHIPPED)
    if r.doubt in calibration.STRUCTURAL:
        assert status == LOW_CONFIDENCE and doubt == r.doubt
    if status == CONFIRMED:
        # a province under the size floor confirms only when it was read alone, and never under
        # the floor of the read-alone evidence
        assert r.glyph_px is not None and r.glyph_px >= SHIPPED.province_px_alone
        assert r.glyph_px >= SHIPPED.province_px or r.province_alone
        assert r.char_confidences[0] >= SHIPPED.province_conf


@SETTINGS
@given(plate_reads)
def test_structural_doubts_and_small_provinces_never_confirm(r: PlateRead) -> None:
    _plate_property(r)


def _plate_mutant_is_caught(monkeypatch: pytest.MonkeyPatch, change: Callable[[PlateRead], PlateRead]) -> None:
    """``plate_decision`` deciding on ``change(read)`` instead of the read: the property fails."""
    real = calibration.plate_decision

    def mutant(r: PlateRead, policy: Policy = SHIPPED) -> tuple[str, str]:
        return real(change(r), policy)

    monkeypatch.setattr(calibration, "plate_decision", mutant)

    @SETTINGS
    @given(plate_reads)
    def prop(r: PlateRead) -> None:
        _plate_property(r)

    with pytest.raises(AssertionError):
        prop()


def test_removing_the_structural_guard_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    _plate_mutant_is_caught(monkeypatch, lambda r: dataclasses.replace(r, doubt=""))


def test_removing_the_read_alone_guard_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: every small province treated as read alone (the evidence no longer asked for)."""
    _plate_mutant_is_caught(monkeypatch, lambda r: dataclasses.replace(r, province_alone=True))
