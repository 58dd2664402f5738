"""Lane rules for the radiation portal and seals: named blockers, adjudication effects, and the
safety invariants over random inputs — with each guard removed in turn to show it is caught.

Invariants (``_violations``, an oracle written independently of the rules):

* no release while the portal reports no verdict for the vehicle;
* no release with a radiation alarm unless an adjudication whose code allows release;
* no release while the portal is offline, faulted or tampered with;
* no release unless every declared seal was read, sealed, and no foreign seal was read;
* no release with an opened or tampered seal, or an e-lock that is not on its route;
* an alarm without an adjudication that releases always diverts (secondary inspection);
* portal faults never take the lane out of service — they are lane-wide blockers, not closures.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from portlane.edge.contract.commands import ADJUDICATION_CODES, AdjudicationCode
from portlane.edge.contract.events import RpmOccupancyEvent
from portlane.edge.lane import cargo_checks
from portlane.edge.lane.cargo_checks import (
    RpmPassage,
    SealSeen,
    adjudication_effect,
    cargo_blockers,
    check_seal_command,
    release_allowed,
    rpm_blockers,
    seal_blockers,
)


def occupancy(
    verdict: str = "clear", *, gamma: bool = False, neutron: bool = False, faults: tuple[str, ...] = ()
) -> RpmOccupancyEvent:
    return RpmOccupancyEvent(
        passage_id="p1",
        portal="c1/rpm",
        occupancy=7,
        started="2026-12-06T09:41:00.000Z",
        ended="2026-12-06T09:41:02.000Z",
        live_s=2.0,
        gamma_counts=(4800, 4790, 4850, 4810),
        neutron_counts=(3, 2, 3, 4),
        gamma_background_cps=(2400.0,) * 4,
        neutron_background_cps=(1.5,) * 4,
        gamma_alarm=gamma,
        neutron_alarm=neutron,
        gamma_sigma=9.0 if gamma else 0.3,
        nsigma=4.0,
        verdict=verdict,  # type: ignore[arg-type]
        faults=faults,
    )


LOCK = "0A1B-00C0FFEE"
ESEAL = "0011-00000005"


def kinds(blockers: tuple[cargo_checks.Blocker, ...]) -> list[str]:
    return [b.kind for b in blockers]


# --------------------------------------------------------------------------- examples


def test_a_clean_occupancy_and_matching_sealed_seals_allow_release() -> None:
    rpm = RpmPassage(occupancy=occupancy())
    read = (SealSeen(LOCK, elock=True, route="on_route"), SealSeen(ESEAL))
    assert cargo_blockers(rpm, {LOCK, ESEAL}, read) == ()
    assert release_allowed(cargo_blockers(rpm, {LOCK, ESEAL}, read))
    assert cargo_blockers(None, None, None) == ()  # a lane without these devices


def test_an_occupancy_without_its_verdict_blocks_release() -> None:
    [b] = rpm_blockers(RpmPassage(occupied=True))
    assert b.kind == "rpm_occupancy_without_verdict" and b.resolved_by == "portal" and "still in the portal" in b.detail
    [b] = rpm_blockers(RpmPassage())
    assert "no occupancy reported" in b.detail


def test_an_alarm_diverts_and_waits_for_an_adjudication() -> None:
    rpm = RpmPassage(occupancy=occupancy("alarm", gamma=True))
    [b] = rpm_blockers(rpm)
    assert (b.kind, b.resolved_by, b.divert) == ("radiation_alarm", "adjudication", True)
    assert "gamma alarm" in b.detail
    norm = RpmPassage(occupancy=occupancy("alarm", gamma=True), adjudication=AdjudicationCode.INNOCENT_NORM)
    assert rpm_blockers(norm) == ()
    real = RpmPassage(
        occupancy=occupancy("alarm", gamma=True, neutron=True), adjudication=AdjudicationCode.REAL_CONTRABAND
    )
    [b] = rpm_blockers(real)
    assert b.kind == "radiation_alarm" and b.divert and b.resolved_by == "officer"
    assert "gamma and neutron alarm adjudicated 1 (real: contraband found)" in b.detail


def test_adjudication_codes_release_only_innocent_false_and_test_alarms() -> None:
    for code, (group, _label) in ADJUDICATION_CODES.items():
        assert adjudication_effect(code) == ("release" if group in ("innocent", "false", "test") else "divert"), code
    with pytest.raises(ValueError):
        adjudication_effect(0)
    with pytest.raises(ValueError):
        adjudication_effect(12)


def test_portal_faults_and_tamper_hold_every_passage_but_not_the_lane() -> None:
    rpm = RpmPassage(online=True, occupancy=occupancy(), faults=("gamma_high",), tamper=True)
    blockers = rpm_blockers(rpm)
    assert kinds(blockers) == ["rpm_fault", "rpm_tamper"]
    assert all(b.lane_wide and b.resolved_by == "technician" and not b.divert for b in blockers)
    assert kinds(rpm_blockers(RpmPassage(online=False, occupancy=occupancy()))) == ["rpm_fault"]
    [b] = rpm_blockers(RpmPassage(occupancy=occupancy("fault", faults=("tamper",))))
    assert b.kind == "rpm_fault" and not b.lane_wide and "counted while tamper" in b.detail


def test_seal_exceptions_are_named() -> None:
    read = (
        SealSeen(LOCK, elock=True, route="off_route"),
        SealSeen("0022-00000042", state="tampered"),
        SealSeen("0033-00000001", state="opened"),
        SealSeen("0A1B-00000777", elock=True, route="no_fix"),
    )
    declared = {LOCK, ESEAL, "0022-00000042", "0033-00000001", "0A1B-00000777"}
    got = [(b.kind, b.detail) for b in seal_blockers(declared, read)]
    assert got == [
        ("seal_missing", f"declared seal {ESEAL} not read"),
        ("seal_tampered", "seal 0022-00000042 reports tampering"),
        ("seal_opened", "seal 0033-00000001 is open"),
        ("elock_off_route", "e-lock 0A1B-00000777 has no GPS track to vouch for its route"),
        ("elock_off_route", f"e-lock {LOCK} left the declared corridor"),
    ]
    assert kinds(seal_blockers({LOCK}, (SealSeen(LOCK, elock=True, route="on_route"), SealSeen(ESEAL)))) == [
        "seal_foreign"
    ]
    assert kinds(seal_blockers(set(), (SealSeen(ESEAL),))) == ["seal_foreign"]  # nothing declared
    assert seal_blockers(None, (SealSeen(ESEAL),)) == ()  # no declaration to compare with
    assert kinds(seal_blockers(None, (SealSeen(ESEAL, state="tampered"),))) == ["seal_tampered"]
    assert all(b.resolved_by == "officer" and not b.divert for b in seal_blockers(declared, read))


def test_seal_commands_are_checked_before_the_reader_is_asked() -> None:
    read = (
        SealSeen(LOCK, elock=True, route="on_route"),
        SealSeen(ESEAL),
        SealSeen("0A1B-00000002", state="opened", elock=True),
    )
    assert check_seal_command("remove", LOCK, read) is None
    assert check_seal_command("apply", LOCK, read) == "elock_not_open"
    assert check_seal_command("apply", "0A1B-00000002", read) is None
    assert check_seal_command("remove", "0A1B-00000002", read) == "elock_not_sealed"
    assert check_seal_command("remove", ESEAL, read) == "not_an_elock"
    assert check_seal_command("remove", "0A1B-0000BEEF", read) == "seal_not_in_field"


def test_a_reader_that_did_not_answer_is_a_blocker_and_customs_opening_an_elock_is_not() -> None:
    rpm = RpmPassage(occupancy=occupancy())
    [b] = cargo_blockers(rpm, {LOCK}, (), read_failed="no answer in time")
    assert (b.kind, b.resolved_by) == ("seal_read_failed", "officer") and "no answer in time" in b.detail
    opened = (SealSeen(LOCK, state="opened", elock=True, route="on_route"),)
    assert kinds(cargo_blockers(rpm, {LOCK}, opened)) == ["seal_opened"]
    assert cargo_blockers(rpm, {LOCK}, opened, opened_by_command={LOCK}) == ()  # customs removed it
    # ... but it still counts as read against the declaration, and only that lock is excused.
    assert kinds(cargo_blockers(rpm, {LOCK, ESEAL}, opened, opened_by_command={LOCK})) == ["seal_missing"]
    tampered = (*opened, SealSeen(ESEAL, state="tampered"))
    assert kinds(cargo_blockers(rpm, {LOCK, ESEAL}, tampered, opened_by_command={LOCK})) == ["seal_tampered"]


# --------------------------------------------------------------------------- invariants

seal_ids = st.sampled_from([LOCK, ESEAL, "0022-00000042", "0A1B-00000777"])
seals = st.builds(
    SealSeen,
    seal_ids,
    st.sampled_from(["sealed", "sealed", "opened", "tampered"]),
    st.booleans(),
    st.sampled_from(["on_route", "on_route", "off_route", "no_fix", None]),
)
occupancies = st.none() | st.builds(
    lambda verdict, gamma, neutron: occupancy(verdict, gamma=gamma, neutron=neutron),
    st.sampled_from(["clear", "alarm", "fault"]),
    st.booleans(),
    st.booleans(),
)
passages = st.none() | st.builds(
    RpmPassage,
    online=st.booleans(),
    occupied=st.booleans(),
    occupancy=occupancies,
    faults=st.sampled_from([(), (), ("gamma_high",), ("occupancy_stuck",)]),
    tamper=st.booleans(),
    adjudication=st.none() | st.integers(1, 11),
)
declarations = st.none() | st.frozensets(seal_ids, max_size=3)
reads = st.none() | st.lists(seals, max_size=4).map(tuple)


def _violations(
    rpm: RpmPassage | None, declared: frozenset[str] | None, read: tuple[SealSeen, ...] | None
) -> list[str]:
    """What is wrong if the rules allowed release / did not divert (an oracle independent of them)."""
    blockers = cargo_blockers(rpm, declared, read)
    released = release_allowed(blockers)
    diverted = any(b.divert for b in blockers)
    bad: list[str] = []
    if rpm is not None:
        occ = rpm.occupancy
        alarm = occ is not None and (occ.verdict == "alarm" or occ.gamma_alarm or occ.neutron_alarm)
        releasing_code = rpm.adjudication is not None and ADJUDICATION_CODES[rpm.adjudication][0] in (
            "innocent",
            "false",
            "test",
        )
        if released and occ is None:
            bad.append("released without the portal's verdict")
        if released and alarm and not releasing_code:
            bad.append("released with an unadjudicated (or real) radiation alarm")
        if alarm and not releasing_code and not diverted:
            bad.append("alarm not diverted to secondary inspection")
        if released and (not rpm.online or rpm.faults or rpm.tamper or (occ is not None and occ.verdict == "fault")):
            bad.append("released on a faulted or tampered portal")
        if any(
            b.kind in ("rpm_fault", "rpm_tamper") and (b.divert or not b.lane_wide)
            for b in blockers
            if b.detail.startswith("radiation portal")
        ):
            bad.append("a portal fault treated as more than a lane-wide hold")
    if read is not None:
        seen = {s.seal_id for s in read}
        if released and declared is not None and (set(declared) - seen or seen - set(declared)):
            bad.append("released with a missing or foreign seal")
        if released and any(s.state != "sealed" for s in read):
            bad.append("released with an opened or tampered seal")
        if released and any(s.elock and s.route != "on_route" for s in read):
            bad.append("released with an e-lock off its route")
    return bad


def _check_invariants() -> None:
    @settings(max_examples=600, derandomize=True, suppress_health_check=[HealthCheck.too_slow], database=None)
    @given(rpm=passages, declared=declarations, read=reads)
    def check(rpm: RpmPassage | None, declared: frozenset[str] | None, read: tuple[SealSeen, ...] | None) -> None:
        assert _violations(rpm, declared, read) == []

    check()


def test_cargo_invariants_hold() -> None:
    _check_invariants()


def _no(*_: object) -> tuple[cargo_checks.Blocker, ...]:
    return ()


MUTANTS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "verdict": lambda mp: mp.setattr(cargo_checks, "_verdict", _no),
    "alarm": lambda mp: mp.setattr(cargo_checks, "_alarm", _no),
    "portal_health": lambda mp: mp.setattr(cargo_checks, "portal_health", _no),
    "declared_seals": lambda mp: mp.setattr(cargo_checks, "_declared_read", _no),
    "seal_states": lambda mp: mp.setattr(cargo_checks, "_seal_states", _no),
    "adjudication_effect": lambda mp: mp.setattr(cargo_checks, "adjudication_effect", lambda code: "release"),
}


@pytest.mark.parametrize("guard", sorted(MUTANTS))
def test_removing_a_guard_is_caught(guard: str, monkeypatch: pytest.MonkeyPatch) -> None:
    MUTANTS[guard](monkeypatch)
    with pytest.raises(AssertionError):
        _check_invariants()


# --------------------------------------------------------------------------- from the drivers


def test_driver_readings_become_contract_events_with_their_verdict() -> None:
    import dataclasses
    import datetime

    from portlane.drivers.cargo_devices import (
        RadiationFault,
        RouteStatus,
        RpmOccupancy,
        RpmStatus,
        SealKind,
        SealRecord,
        SealState,
    )

    occ = RpmOccupancy(
        number=41,
        started_at=1_796_550_060.0,
        ended_at=1_796_550_062.4,
        samples=12,
        sample_s=0.2,
        gamma_counts=(6100, 6230, 5980, 6050),
        neutron_counts=(3, 2, 3, 4),
        gamma_background_cps=(2400.0,) * 4,
        neutron_background_cps=(1.5,) * 4,
        gamma_alarm=True,
        neutron_alarm=False,
        nsigma=4.0,
        max_gamma_cps=10_900,
    )
    ev = cargo_checks.occupancy_event(
        occ, RpmStatus(occupied=False, occupancy_count=41), portal="c1/rpm", passage_id="p1"
    )
    assert (ev.verdict, ev.occupancy, ev.live_s, ev.faults) == ("alarm", 41, 2.4, ())
    assert ev.started.endswith("Z") and ev.gamma_sigma == round((10_900 - 9600) / 9600**0.5, 2)
    faulted = RpmStatus(occupied=False, occupancy_count=41, faults=frozenset({RadiationFault.GAMMA_HIGH}), tamper=True)
    clean = dataclasses.replace(occ, gamma_alarm=False)
    ev = cargo_checks.occupancy_event(clean, faulted, portal="c1/rpm", passage_id=None)
    assert (ev.verdict, ev.faults) == ("fault", ("gamma_high", "tamper"))
    assert cargo_checks.occupancy_event(clean, None, portal="c1/rpm", passage_id=None).verdict == "clear"
    t = datetime.datetime(2026, 12, 6, 9, 41, tzinfo=datetime.UTC)
    lock = SealRecord(
        0x0A1B, 0xC0FFEE, SealKind.ELOCK, SealState.SEALED, sealed_at=t, battery_pct=87, route=RouteStatus.OFF_ROUTE
    )
    assert cargo_checks.seal_seen(lock) == SealSeen(LOCK, "sealed", True, "off_route")
    info = cargo_checks.seal_info(lock)
    assert (info.seal_id, info.kind, info.sealed_at, info.opened_at, info.route) == (
        LOCK,
        "elock",
        "2026-12-06T09:41:00.000Z",
        None,
        "off_route",
    )
