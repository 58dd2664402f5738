"""Pre-decisions matched at the lane (issue 20): the test matrix.

The book and its rules (``lane/predecisions.py``) on signed pre-decisions: a full match, each
named refusal reason, identification doubts resolved only by the e-card and uniqueness, a
pre-decision used once, control orders; then the lane logic on them (``lane/autorelease.py``):
release or scan without a round trip, the audit entry and the release basis, revoke after
match, replay of a used pre-decision; the store across a restart; and the trust path — a
pre-decision signed by one agency's key for another agency never reaches the book.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from portlane.edge.config import parse_site
from portlane.edge.contract.events import PlateRead
from portlane.edge.errors import CommandRejectedError, StateError
from portlane.edge.lane.actions import Audit, OpenGate, Publish
from portlane.edge.lane.logic import LaneLogic
from portlane.edge.lane.passage import Identity, Passage, Sensors, Stage
from portlane.edge.lane.predecision_rules import FullMatch, NoMatch, Observed
from portlane.edge.lane.predecision_store import PredecisionStore
from portlane.edge.lane.predecisions import EXPIRED_MEMORY_S, PredecisionBook
from portlane.edge.trust.commands import CommandVerifier, RejectReason
from portlane.edge.trust.nonces import MemoryNonceStore

from tests.declarations import AGENCIES, KEYS, SITE, TAG, WEIGHT_KG, Declaration, control_order, reads, sign
from tests.lane_actions import published, types
from tests.virtual_lane import site_dict

NOW = 1000.0


def book_with(*declarations: Declaration, agencies: tuple[str, ...] = AGENCIES) -> PredecisionBook:
    book = PredecisionBook()
    for decl in declarations:
        for d in decl.every(agencies):
            assert book.add(d, NOW).accepted
    return book


def match(book: PredecisionBook, identity: Identity, *, lane: str = "c1", now: float = NOW) -> FullMatch | NoMatch:
    return book.match(Observed.from_identity(identity), lane=lane, agencies=AGENCIES, now=now)


def reasons(result: FullMatch | NoMatch) -> set[str]:
    assert isinstance(result, NoMatch), f"expected a refusal, got {result}"
    return set(result.reasons)


# ------------------------------------------------------------------------------ the book


def test_a_full_match_of_every_agency_releases_with_their_ids() -> None:
    book = book_with(Declaration())
    result = match(book, reads())
    assert isinstance(result, FullMatch) and result.verdict == "release"
    assert result.ids == ("pd-customs", "pd-border")  # the lane's agency order


def test_containers_match_in_any_order() -> None:
    boxes = (("CSQU3054383", "22G1"), ("MSKU1234565", "22G1"))
    book = book_with(Declaration(containers=boxes))
    assert isinstance(match(book, reads(containers=tuple(reversed(boxes)))), FullMatch)


def test_an_inspect_verdict_of_any_agency_queues_the_scan() -> None:
    book = book_with(Declaration(verdicts={"border": "inspect"}))
    result = match(book, reads())
    assert isinstance(result, FullMatch) and result.verdict == "inspect"


REFUSALS: dict[str, tuple[Declaration, Identity, float]] = {
    "plate_mismatch": (Declaration(), reads(("粤Z1234港", "AB1235")), NOW),
    "paired plate not read": (Declaration(), reads(("粤Z1234港",)), NOW),
    "tag_mismatch": (Declaration(), reads(tag_id="E200341201930599999"), NOW),
    "e-card not read": (Declaration(), reads(tag_id=None), NOW),
    "container_mismatch": (Declaration(), reads(containers=(("TGHU1234566", "45G1"),)), NOW),
    "check digit failed": (Declaration(), reads(check_digit_ok=False), NOW),
    "size_type_mismatch": (Declaration(), reads(containers=(("CSQU3054383", "22G1"),)), NOW),
    "size/type not read": (Declaration(), reads(containers=(("CSQU3054383", None),)), NOW),
    "weight_out_of_tolerance": (Declaration(), reads(weight_kg=WEIGHT_KG + 501), NOW),
    "not weighed": (Declaration(), reads(weight_kg=None), NOW),
    "outside_window (early)": (Declaration(window=(2000.0, 4600.0)), reads(), NOW),
    "outside_window (late)": (Declaration(), reads(), 5000.0),
    "wrong_lane": (Declaration(lanes=("c2", "c3")), reads(), NOW),
    "expired": (Declaration(valid_until=1500.0, window=(900.0, 1400.0)), reads(), 1600.0),
    "seal_mismatch": (Declaration(seals=("ESEAL-0001",)), reads(), NOW),
    "identification_exception": (Declaration(), reads(exceptions=("radiation_alarm",)), NOW),
    "not_declared": (Declaration(plates=("粤B99999",), tag_id="E2000000000000"), reads(), NOW),
}
EXPECTED = {
    "paired plate not read": "plate_mismatch",
    "e-card not read": "tag_mismatch",
    "check digit failed": "container_mismatch",
    "size/type not read": "size_type_mismatch",
    "not weighed": "weight_out_of_tolerance",
    "outside_window (early)": "outside_window",
    "outside_window (late)": "outside_window",
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_each_refusal_reason_is_named_and_nothing_is_released(case: str) -> None:
    declaration, identity, now = REFUSALS[case]
    book = book_with(declaration)
    result = match(book, identity, now=now)
    assert EXPECTED.get(case, case) in reasons(result)
    assert all(r.detail for r in result.refusals)  # the officer sees what was declared and read


def test_one_agency_missing_is_not_declared_for_that_agency() -> None:
    book = book_with(Declaration(), agencies=("customs",))
    result = match(book, reads())
    assert isinstance(result, NoMatch)
    assert [(r.reason, r.agency) for r in result.refusals] == [("not_declared", "border")]


def test_a_second_vehicle_with_the_same_plate_is_refused_already_used() -> None:
    book = book_with(Declaration())
    first = match(book, reads())
    assert isinstance(first, FullMatch)
    book.use(first.ids, "c1-p1", NOW)
    assert reasons(match(book, reads(), now=NOW + 60)) == {"already_used"}


def test_a_used_trip_does_not_hide_the_next_declared_trip() -> None:
    book = book_with(Declaration(), Declaration(id_prefix="pd2", window=(4000.0, 7000.0)))
    first = match(book, reads())
    assert isinstance(first, FullMatch) and first.ids == ("pd-customs", "pd-border")
    book.use(first.ids, "c1-p1", NOW)
    second = match(book, reads(), now=5000.0)
    assert isinstance(second, FullMatch) and second.ids == ("pd2-customs", "pd2-border")


def test_of_two_matching_trips_an_inspection_wins() -> None:
    book = book_with(Declaration(), Declaration(id_prefix="pd2", verdicts={"customs": "inspect"}))
    result = match(book, reads())
    assert isinstance(result, FullMatch) and result.verdict == "inspect" and result.ids[0] == "pd2-customs"


# ------------------------------------------------------------------------------ doubts

MAINLAND = Declaration(plates=("粤B12345",), containers=(), weight_kg=None)


def _one_in_doubt(first: str, *, tag_id: str | None = TAG, confidence: float = 0.45) -> Identity:
    """The cross-boundary truck: its 粤Z plate read in doubt, its Hong Kong plate with confidence."""
    base = reads(tag_id=tag_id, exceptions=("low_confidence",))
    doubtful = PlateRead(text=first, kind="cn_crossborder", confidence=confidence)
    return replace(base, plates=(doubtful, base.plates[1]), confidence=confidence)


def test_a_read_in_doubt_is_resolved_by_the_e_card_and_the_paired_plate_read_with_confidence() -> None:
    book = book_with(Declaration())
    assert isinstance(match(book, _one_in_doubt("粤Z1234港", confidence=0.55)), FullMatch)


def test_a_province_in_doubt_is_resolved_only_with_the_e_card() -> None:
    book = book_with(Declaration())
    assert isinstance(match(book, _one_in_doubt("湘Z1234港")), FullMatch)
    assert "plate_mismatch" in reasons(match(book, _one_in_doubt("湘Z1234港", tag_id=None)))


def test_a_single_plate_read_in_doubt_always_goes_to_an_officer() -> None:
    """Its e-card alone could be on another truck whose plate differs where the read is in doubt."""
    book = book_with(MAINLAND)
    doubtful = reads(("粤B12345",), confidence=0.55, containers=(), weight_kg=None, exceptions=("low_confidence",))
    result = match(book, doubtful)
    assert reasons(result) == {"plate_mismatch"}
    assert any("no other declared plate read with confidence" in r.detail for r in result.refusals)


def test_a_confident_read_is_never_matched_to_the_nearest_declared_plate() -> None:
    book = book_with(MAINLAND)
    near = reads(("湘B12345",), confidence=0.97, containers=(), weight_kg=None)  # same e-card, other province
    assert reasons(match(book, near)) == {"plate_mismatch"}
    one_off = reads(("粤B12346",), confidence=0.45, containers=(), weight_kg=None, exceptions=("low_confidence",))
    assert "plate_mismatch" in reasons(match(book, one_off))  # in doubt, but not only in its province


def test_a_doubt_that_fits_two_declared_vehicles_is_not_resolved() -> None:
    """The e-card re-issued to another truck while an old declaration still names it."""
    other = Declaration(plates=("湘B12345",), containers=(), weight_kg=None, id_prefix="other")
    book = book_with(MAINLAND, other)
    doubtful = reads(("皖B12345",), confidence=0.45, containers=(), weight_kg=None, exceptions=("low_confidence",))
    result = match(book, doubtful)
    assert "plate_mismatch" in reasons(result)
    assert any("2 declared vehicles" in r.detail for r in result.refusals)


def test_a_dual_plate_mismatch_refuses_even_when_the_reads_equal_the_declaration() -> None:
    book = book_with(Declaration())
    assert reasons(match(book, reads(exceptions=("dual_plate_mismatch",)))) == {"plate_mismatch"}


# ------------------------------------------------------------------------------ control orders and the book's bounds


@pytest.mark.parametrize(
    "order",
    [
        dict(predecision_id="pd-border"),
        dict(plates=("AB1234",)),
        dict(tag_id=TAG),
    ],
    ids=["by id", "by plate", "by e-card"],
)
def test_a_control_order_wins(order: dict[str, Any]) -> None:
    book = book_with(Declaration())
    book.revoke(control_order(**order), NOW)
    assert "revoked" in reasons(match(book, reads()))


def test_a_control_order_on_a_vehicle_blocks_a_pre_decision_that_arrives_after_it() -> None:
    book = PredecisionBook()
    book.revoke(control_order(tag_id=TAG), NOW)
    book.revoke(control_order(predecision_id="pd-border"), NOW)
    for d in Declaration().every():
        assert book.add(d, NOW).accepted
    assert all(e.revoked_by is not None for e in book.entries.values())
    assert "revoked" in reasons(match(book, reads()))


def test_a_re_sent_pre_decision_is_idempotent_and_a_used_one_stays_used() -> None:
    book = book_with(Declaration())
    book.use(("pd-customs", "pd-border"), "c1-p1", NOW)
    again = Declaration().declared("customs", now=NOW + 5)  # signed afresh: another nonce
    assert book.add(again, NOW + 5).reason == "duplicate"
    assert reasons(match(book, reads())) == {"already_used"}
    changed = Declaration(weight_kg=10_000).declared("customs")
    assert book.add(changed, NOW).reason == "conflicting_id"


def test_refused_into_the_book() -> None:
    book = PredecisionBook(capacity=2)
    assert (
        book.add(Declaration(valid_until=1200.0, window=(900.0, 1100.0)).declared("customs"), 1300.0).reason
        == "expired"
    )
    too_long = Declaration(valid_until=NOW + 15 * 86400).declared("customs")
    assert book.add(too_long, NOW).reason == "validity_too_long"
    for d in Declaration().every():
        assert book.add(d, NOW).accepted
    assert book.add(Declaration(id_prefix="x").declared("customs"), NOW).reason == "book_full"


def test_expired_entries_are_named_for_a_while_then_dropped_and_the_store_deletes_them(tmp_path: Path) -> None:
    clock = [NOW]
    store = PredecisionStore(clock=lambda: clock[0])
    store.open(tmp_path / "p.db")
    for d in Declaration(valid_until=1500.0, window=(900.0, 1400.0)).every():
        store.book.add(d, NOW)
    store.sync()
    assert "expired" in reasons(match(store.book, reads(), now=1600.0))
    store.book.purge(1500.0 + EXPIRED_MEMORY_S + 1)
    assert len(store.book) == 0 and store.sync() == 2
    store.close()
    clock[0] = 1500.0 + EXPIRED_MEMORY_S + 2
    again = PredecisionStore(clock=lambda: clock[0])
    assert len(again.open(tmp_path / "p.db")) == 0
    again.close()


# ------------------------------------------------------------------------------ the lane logic on pre-decisions


def lane_with(book: PredecisionBook, *, has_scanner: bool = True) -> LaneLogic:
    lane = LaneLogic("c1", agencies=AGENCIES, has_scanner=has_scanner, predecisions=book)
    lane.start(Sensors(), [], NOW - 10)
    return lane


def identify(lane: LaneLogic, identity: Identity, now: float = NOW) -> list[Any]:
    lane.on_sensors(Sensors(entry_loop=True), now - 2)
    lane.on_sensors(Sensors(entry_loop=True, in_position=True), now - 1)
    assert lane.passage is not None
    return lane.on_identified(lane.passage.id, identity, now)


def drive_out(lane: LaneLogic, now: float) -> list[Any]:
    lane.on_sensors(Sensors(in_position=True, gate_open=True, gate_closed=False), now)
    lane.on_sensors(Sensors(photocell=True, safety_loop=True, gate_open=True, gate_closed=False), now + 1)
    lane.on_sensors(Sensors(exit_loop=True, gate_open=True, gate_closed=False), now + 2)
    return lane.on_sensors(Sensors(), now + 3)


def test_a_full_match_releases_without_a_round_trip_audited_before_the_gate_moves() -> None:
    lane = lane_with(book_with(Declaration()))
    out = identify(lane, reads())
    assert types(out) == [
        "vehicle.identified",
        "audit",
        "passage.decided",
        "passage.decided",
        "passage.released",
        "open",
    ]
    [ident] = published(out, "vehicle.identified")
    assert ident["predecision_ids"] == ("pd-customs", "pd-border") and ident["predecision_refusals"] == ()
    [audit] = [a for a in out if isinstance(a, Audit)]
    assert audit.kind == "automatic_release" and audit.fields()["predecisions"] == ("pd-customs", "pd-border")
    assert len(audit.fields()["digests"]) == 2  # the signed commands, for the record
    decided = published(out, "passage.decided")
    assert {(d["agency"], d["basis"], d["predecision_id"]) for d in decided} == {
        ("customs", "predecision", "pd-customs"),
        ("border", "predecision", "pd-border"),
    }
    assert all(e.used_by == lane.passage.id for e in lane.predecisions.entries.values())  # type: ignore[union-attr]
    done = published(drive_out(lane, NOW + 1), "passage.completed")
    assert done[0]["release_basis"] == "predecision" and done[0]["predecision_ids"] == ("pd-customs", "pd-border")


def test_an_inspect_pre_decision_queues_the_scan_at_once_and_the_release_after_it_is_online() -> None:
    lane = lane_with(book_with(Declaration(verdicts={"customs": "inspect"})))
    out = identify(lane, reads())
    assert "inspection.requested" in types(out) and "open" not in types(out)
    pid = lane.passage.id  # type: ignore[union-attr]
    lane.on_scan(pid, "completed", NOW + 30, scan_id=1, result="GREEN")
    for agency in AGENCIES:
        lane.on_decision(pid, agency, "release", nonce="n", now=NOW + 31)
    done = published(drive_out(lane, NOW + 32), "passage.completed")
    assert done[0]["release_basis"] == "online" and done[0]["inspected"]
    assert done[0]["predecision_ids"] == ("pd-customs", "pd-border")


def test_an_inspect_pre_decision_at_a_lane_without_scanner_goes_to_an_officer() -> None:
    lane = lane_with(book_with(Declaration(verdicts={"customs": "inspect"})), has_scanner=False)
    out = identify(lane, reads())
    [ident] = published(out, "vehicle.identified")
    assert [r["reason"] for r in ident["predecision_refusals"]] == ["wrong_lane"]
    assert lane.stage == Stage.AWAITING_DECISION and not any(e.used_by for e in lane.predecisions.entries.values())


def test_a_mismatch_goes_to_the_platform_with_the_reasons_and_is_released_online() -> None:
    lane = lane_with(book_with(Declaration()))
    out = identify(lane, reads(weight_kg=34_000))
    assert "open" not in types(out) and lane.stage == Stage.AWAITING_DECISION
    [ident] = published(out, "vehicle.identified")
    assert [(r["reason"], r["agency"]) for r in ident["predecision_refusals"]] == [
        ("weight_out_of_tolerance", "customs"),
        ("weight_out_of_tolerance", "border"),
    ]
    pid = lane.passage.id  # type: ignore[union-attr]
    for agency in AGENCIES:
        lane.on_decision(pid, agency, "release", nonce="n", now=NOW + 5)
    done = published(drive_out(lane, NOW + 6), "passage.completed")
    assert done[0]["release_basis"] == "online" and done[0]["predecision_ids"] == ()
    assert not any(e.used_by for e in lane.predecisions.entries.values())  # not used: not released on them


def test_replaying_a_used_pre_decision_releases_nothing() -> None:
    book = book_with(Declaration())
    lane = lane_with(book)
    identify(lane, reads())
    drive_out(lane, NOW + 1)
    for d in Declaration().every(now=NOW + 10):  # the platform sends it again, signed afresh
        assert lane.on_predecision(d, NOW + 10)[0]
    out = identify(lane, reads(), now=NOW + 20)  # a second truck with the same plates and e-card
    assert "open" not in types(out)
    [ident] = published(out, "vehicle.identified")
    assert {r["reason"] for r in ident["predecision_refusals"]} == {"already_used"}


def test_revoke_after_match_before_the_open_is_carried_out_wins() -> None:
    """The open is queued for the executor; a control order arrives first: the executor's second
    guard refuses it, the arm is told to come down, the officer decides."""
    lane = lane_with(book_with(Declaration()))
    out = identify(lane, reads())
    [open_] = [a for a in out if isinstance(a, OpenGate)]
    pid = lane.passage.id  # type: ignore[union-attr]
    ok, _reason, actions = lane.on_revoke(control_order(plates=("AB1234",)), NOW + 1)
    assert ok and not lane.authorises_open(open_.passage_id, open_.cause)
    assert lane.stage == Stage.AWAITING_DECISION and lane.passage.gate_authority is None  # type: ignore[union-attr]
    assert "close" in types(actions) and "predecision_revoked" in [
        a.data.kind for a in actions if isinstance(a, Publish) and a.type == "lane.exception"
    ]
    [again] = published(actions, "vehicle.identified")
    assert [r["reason"] for r in again["predecision_refusals"]] == ["revoked"]
    # The platform's officer decides online now.
    for agency in AGENCIES:
        assert lane.on_decision(pid, agency, "hold", nonce="n", now=NOW + 2)[0]
    assert lane.stage == Stage.AWAITING_DECISION


def test_revoke_after_the_arm_opened_but_before_the_vehicle_moved_brings_it_down() -> None:
    lane = lane_with(book_with(Declaration()))
    identify(lane, reads())
    lane.on_sensors(Sensors(in_position=True, gate_open=True, gate_closed=False), NOW + 1)  # arm up, light green
    _ok, _r, actions = lane.on_revoke(control_order(predecision_id="pd-customs"), NOW + 2)
    assert "close" in types(actions) and lane.stage == Stage.AWAITING_DECISION


def test_revoke_once_the_vehicle_is_under_the_arm_is_too_late_and_said_so() -> None:
    lane = lane_with(book_with(Declaration()))
    identify(lane, reads())
    lane.on_sensors(Sensors(in_position=True, gate_open=True, gate_closed=False), NOW + 1)
    lane.on_sensors(Sensors(photocell=True, safety_loop=True, gate_open=True, gate_closed=False), NOW + 2)
    _ok, _r, actions = lane.on_revoke(control_order(tag_id=TAG), NOW + 3)
    kinds = [a.data.kind for a in actions if isinstance(a, Publish) and a.type == "lane.exception"]
    assert kinds == ["revoked_after_release"] and "close" not in types(actions)


def test_revoke_of_a_pre_decision_used_by_a_completed_passage_names_that_passage() -> None:
    lane = lane_with(book_with(Declaration()))
    identify(lane, reads())
    first = lane.passage.id  # type: ignore[union-attr]
    drive_out(lane, NOW + 1)
    _ok, _r, actions = lane.on_revoke(control_order(predecision_id="pd-border"), NOW + 60)
    late = [a.data for a in actions if isinstance(a, Publish) and a.type == "lane.exception"]
    assert [(e.kind, e.passage_id) for e in late] == [("revoked_after_release", first)]


def test_a_pre_decision_for_an_agency_the_lane_does_not_have_is_refused() -> None:
    lane = lane_with(PredecisionBook())
    assert lane.on_predecision(Declaration().declared("quarantine"), NOW)[:2] == (False, "unknown_agency")


# ------------------------------------------------------------------------------ restart with pre-decisions on disk


def test_restart_with_pre_decisions_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "predecisions-c1.db"
    clock = [NOW]
    store = PredecisionStore(clock=lambda: clock[0])
    lane = LaneLogic("c1", agencies=AGENCIES, has_scanner=True, predecisions=store.book)
    store.open(path)
    for decl in (Declaration(), Declaration(id_prefix="pd2", plates=("粤B12345",), tag_id="E2", containers=())):
        for d in decl.every():
            lane.on_predecision(d, NOW)
    lane.on_revoke(control_order(predecision_id="pd2-border"), NOW)
    lane.start(Sensors(), [], NOW)
    identify(lane, reads())
    store.sync()  # the daemon's apply: before the executor can send the open frame
    before = store.book.digest()
    store.close()  # kill -9 here: what was synced is what the next process finds

    clock[0] = NOW + 30
    again = PredecisionStore(clock=lambda: clock[0])
    assert again.open(path) is again.book and again.book.digest() == before
    restarted = lane_with(again.book)
    out = identify(restarted, reads(), now=NOW + 40)  # the same truck again: its pre-decisions are used
    assert {r["reason"] for r in published(out, "vehicle.identified")[0]["predecision_refusals"]} == {"already_used"}
    assert again.book.entries["pd2-border"].revoked_by is not None
    again.close()


def test_a_passage_in_the_journal_marks_its_pre_decisions_used_even_if_the_book_write_was_lost() -> None:
    book = book_with(Declaration())
    lane = LaneLogic("c1", agencies=AGENCIES, has_scanner=True, predecisions=book)
    journalled = Passage(id="c1-old-1", stage=Stage.RELEASED, gate_authority="release", basis="predecision")
    journalled.predecision_ids = ("pd-customs", "pd-border")
    out = lane.start(Sensors(), [Passage.from_json(journalled.to_json())], NOW)
    assert published(out, "passage.completed")[0]["outcome"] == "recovered"
    assert {e.used_by for e in book.entries.values()} == {"c1-old-1"}


def test_the_store_refuses_to_sync_before_it_is_open_and_closes_twice(tmp_path: Path) -> None:
    store = PredecisionStore()
    with pytest.raises(StateError, match="call open"):
        store.sync()
    store.open(tmp_path / "p.db")
    store.close()
    store.close()


# ------------------------------------------------------------------------------ trust: each agency signs only its own


def _verifier(agencies_of_keys: dict[str, list[str]]) -> CommandVerifier:
    raw = site_dict(("c1",), url="mqtt://127.0.0.1:1")
    raw["site"]["id"] = SITE
    raw["platform"]["keys"] = [
        {"id": f"{a}-key", "public_key": KEYS[a][1], "agencies": ags, "commands": ["predecision", "revoke"]}
        for a, ags in agencies_of_keys.items()
    ]
    site = parse_site(raw)
    return CommandVerifier.from_site(
        site, "c1", clock=lambda: dt.datetime.fromtimestamp(NOW, tz=dt.UTC), nonce_store=MemoryNonceStore()
    )


def test_a_pre_decision_signed_by_one_agencys_key_for_another_agency_is_refused() -> None:
    verifier = _verifier({"customs": ["customs"], "border": ["border"]})
    forged = Declaration().command("border", key="customs")  # customs' key, border's verdict
    with pytest.raises(CommandRejectedError) as exc:
        verifier.verify(forged.to_json_bytes())
    assert exc.value.reason is RejectReason.NOT_AUTHORISED and "border" in exc.value.detail
    own = Declaration().command("border", key="border")
    assert verifier.verify(own.to_json_bytes()).args.agency == "border"


def test_a_revoke_needs_the_agency_authority_too() -> None:
    verifier = _verifier({"customs": ["customs"]})
    forged = sign(
        "revoke", {"agency": "border", "tag_id": TAG, "reason": "x", "valid_until": "1970-01-02T00:00:00.000Z"}
    )
    with pytest.raises(CommandRejectedError) as exc:
        verifier.verify(forged.to_json_bytes())
    assert exc.value.reason is RejectReason.NOT_AUTHORISED
