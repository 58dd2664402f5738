"""The platform's declarations (issue 20 phase 2): what it signs in advance, checked against the
lanes' real books.

``edge/platform/declarations.py`` is pure: trips in, commands out. Every command it plans is
signed here for real (one Ed25519 key per agency) and fed to a real ``PredecisionBook`` per
lane, which matches the vehicle the trip really is: a declared trip is released at its lane,
each deliberate mismatch is refused there under its name, an undeclared one is
``not_declared``. One-time is per lane, so the platform must revoke a used pre-decision at the
other lanes it sent it to: a property over random plans shows that a declared vehicle is then
released at one lane at most (a twin with its plates and e-card is refused everywhere else), and
that removing the revoke is caught.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from portlane.edge.contract.commands import PredecisionArgs, RevokeArgs, parse_args
from portlane.edge.contract.events import ContainerRead, PlateRead
from portlane.edge.lane.passage import Identity
from portlane.edge.lane.predecision_rules import ControlOrder, Declared, FullMatch, NoMatch, Observed
from portlane.edge.lane.predecisions import PredecisionBook
from portlane.edge.platform.declarations import (
    EXPIRES_AFTER_S,
    MISMATCHES,
    OVERLOAD_KG,
    Declarations,
    Outgoing,
    Policy,
    Trip,
    decided_by_lane,
    parse_mix,
    tolerance_kg,
)
from portlane.edge.platform.lanes import LaneInfo
from portlane.models.iso6346 import check_digit

from tests.declarations import sign

NOW = 1_800_000_000.0
THREE = ("customs", "border", "quarantine")
LANES = {
    "c1": LaneInfo("cargo", THREE, scanner="x1", weighbridge=True),
    "c2": LaneInfo("cargo", THREE, scanner="x1", weighbridge=True),
    "c3": LaneInfo("cargo", THREE, scanner="x1", weighbridge=True),
    "p1": LaneInfo("passenger", ("customs", "border")),
}


def _box(i: int) -> str:
    first10 = f"CSQU{i:06d}"
    return first10 + str(check_digit(first10))


def make_trips(n: int, lanes: dict[str, LaneInfo] = LANES) -> list[Trip]:
    """``n`` vehicles round robin over ``lanes``: trucks (some cross-boundary) and cars."""
    out: list[Trip] = []
    order = dict.fromkeys(lanes, 0)
    for i in range(n):
        lane = list(lanes)[i % len(lanes)]
        truck = lanes[lane].kind == "cargo"
        plates = (f"粤B{i:05d}",) if truck and i % 3 else (f"粤Z{i:04d}港", f"AB{i + 1}")
        boxes = ((_box(i), "45G1"),) if i % 2 else ((_box(i), "22G1"), (_box(i + 500), "22G1"))
        out.append(
            Trip(
                vid=f"v{i + 1}",
                lane=lane,
                order=order[lane],
                kind="truck" if truck else "car",
                plates=plates,
                tag_id=f"E280{i:020X}",
                containers=boxes if truck else (),
                weight_kg=20_000 + 137 * i if truck else 1_800,
            )
        )
        order[lane] += 1
    return out


def books_after(commands: Iterable[Outgoing], lanes: Iterable[str], *, now: float = NOW) -> dict[str, PredecisionBook]:
    """Each lane's book after the commands signed by their agencies' keys (as the lane's command
    path builds them after verification)."""
    books = {lane: PredecisionBook() for lane in lanes}
    apply(books, commands, now=now)
    return books


def apply(books: dict[str, PredecisionBook], commands: Iterable[Outgoing], *, now: float) -> None:
    for lane, cmd, args in commands:
        signed = sign(cmd, args, lane=lane, key=args["agency"], now=now)
        parsed = parse_args(cmd, signed.to_json_bytes())  # read from the wire bytes, strictly
        if isinstance(parsed, PredecisionArgs):
            added = books[lane].add(Declared.from_command(signed, parsed), now)
            assert added.accepted, (lane, args["predecision_id"], added.reason)
        else:
            assert isinstance(parsed, RevokeArgs)
            books[lane].revoke(ControlOrder.from_command(signed, parsed), now)


def truth(t: Trip, lane: LaneInfo, *, containers: bool) -> Observed:
    """What a lane reads of the trip's vehicle: its plates with confidence, its e-card, its boxes
    (when the lane reads containers) and its weight (when it weighs)."""
    boxes = tuple(ContainerRead(number=n, check_digit_ok=True, iso_type=c, confidence=0.99) for n, c in t.containers)
    identity = Identity(
        plates=tuple(PlateRead(text=p, kind="cn", confidence=0.97) for p in t.plates),
        containers=boxes if containers else (),
        tag_id=t.tag_id,
        weight_kg=t.weight_kg if lane.weighbridge else None,
        confidence=0.97,
    )
    return Observed.from_identity(identity)


def match(
    books: dict[str, PredecisionBook],
    t: Trip,
    lane: str,
    *,
    now: float,
    containers: bool = True,
    lanes: dict[str, LaneInfo] = LANES,
) -> FullMatch | NoMatch:
    observed = truth(t, lanes[lane], containers=containers)
    return books[lane].match(observed, lane=lane, agencies=lanes[lane].agencies, now=now)


# ------------------------------------------------------------------------------ what is sent


def test_the_share_is_declared_with_one_pre_decision_per_agency_for_each_lane_of_its_kind() -> None:
    trips = make_trips(80)
    d = Declarations.plan(trips, LANES, Policy(share=0.7, mix={}, seed=3))
    sent = d.ahead(NOW)
    declared = [p for p in d.plans.values() if p.declared]
    assert len(declared) == 56 and d.summary()["undeclared"] == 24
    ids = [a["predecision_id"] for _l, c, a in sent if c == "predecision"]
    assert len(set(ids)) == sum(len(LANES[p.trip.lane].agencies) for p in declared)  # one id per trip and agency
    for p in declared:
        kind = LANES[p.trip.lane].kind
        assert p.named == p.sent_to == tuple(sorted(x for x, info in LANES.items() if info.kind == kind))
        mine = [(lane, a) for lane, c, a in sent if c == "predecision" and a["tag_id"] == p.trip.tag_id]
        assert sorted((lane, a["agency"]) for lane, a in mine) == sorted(
            (lane, agency) for lane in p.sent_to for agency in LANES[p.trip.lane].agencies
        )
        for _lane, a in mine:
            model = PredecisionArgs.model_validate_json(json.dumps(a))  # the contract, strictly
            assert model.plates == p.trip.plates and model.tag_id == p.trip.tag_id and model.verdict == "release"
            assert model.containers == ()  # without OCR the lanes read no container: none declared
            if LANES[p.trip.lane].weighbridge:
                assert model.gross_weight_kg == p.trip.weight_kg
                assert model.weight_tolerance_kg == max(500, round(0.02 * (p.trip.weight_kg or 0)))
            else:
                assert model.gross_weight_kg is None
    assert not [c for _l, c, _a in sent if c == "revoke"]  # no control order without the mix asking


def test_plans_are_deterministic_per_seed() -> None:
    trips = make_trips(40)
    one, two = (Declarations.plan(trips, LANES, Policy(seed=5)).ahead(NOW) for _ in range(2))
    other = Declarations.plan(trips, LANES, Policy(seed=6)).ahead(NOW)
    assert one == two and one != other


def test_the_default_mix_plants_a_few_and_never_more_than_one_declared_trip_in_five() -> None:
    big = Declarations.plan(make_trips(80), LANES, Policy(seed=7))
    planted = big.summary()["mismatches_planted"]
    assert set(planted) == set(MISMATCHES) - {"container_mismatch"}  # no containers read: no swap
    small = Declarations.plan(make_trips(9), LANES, Policy(seed=7))
    assert sum(len(v) for v in small.summary()["mismatches_planted"].values()) == 6 // 5


# ------------------------------------------------------------------------------ at the lanes


def test_declared_trips_are_released_at_their_lane_and_each_deliberate_mismatch_is_named_there() -> None:
    trips = make_trips(60)
    mix = dict.fromkeys(MISMATCHES, 2)
    policy = Policy(share=0.8, mix=mix, containers_read=True, seed=11, time_factor=0.1)
    d = Declarations.plan(trips, LANES, policy)
    books = books_after(d.ahead(NOW), LANES)
    later = NOW + EXPIRES_AFTER_S * policy.time_factor + 1.0  # the expired trips' validity is over
    named: dict[str, int] = {}
    for p in d.plans.values():
        result = match(books, p.trip, p.trip.lane, now=later)
        if not p.declared:
            assert isinstance(result, NoMatch) and set(result.reasons) == {"not_declared"}, p
        elif p.mismatch in (None, "predecision_revoked"):
            assert isinstance(result, FullMatch), (p, result)
            assert result.ids == d.ids_of(p.trip.vid) and result.verdict == "release"
        else:
            assert isinstance(result, NoMatch) and p.mismatch in result.reasons, (p, result)
            named[p.mismatch] = named.get(p.mismatch, 0) + 1
    assert named == {k: 2 for k in MISMATCHES if k != "predecision_revoked"}


def test_the_overweight_and_swapped_trips_say_what_was_declared() -> None:
    trips = make_trips(30)
    policy = Policy(share=1.0, mix={"weight_out_of_tolerance": 1, "container_mismatch": 1}, containers_read=True)
    d = Declarations.plan(trips, LANES, policy)
    books = books_after(d.ahead(NOW), LANES)
    for p in (p for p in d.plans.values() if p.mismatch):
        result = match(books, p.trip, p.trip.lane, now=NOW)
        assert isinstance(result, NoMatch)
        detail = next(r.detail for r in result.refusals if r.reason == p.mismatch)
        if p.mismatch == "weight_out_of_tolerance":
            w = (p.trip.weight_kg or 0) - OVERLOAD_KG
            assert detail == f"declared {w} ± {tolerance_kg(w)} kg, weighed {p.trip.weight_kg} kg"
        else:
            assert p.trip.containers[0][0] in detail and "read" in detail


def test_the_identity_of_each_pre_decision_is_what_its_command_declares() -> None:
    """``identities()`` (what the demo judges a release on pre-decisions by) is what was signed:
    the swapped box of a container_mismatch, no boxes when the lanes read none."""
    for read in (True, False):
        policy = Policy(share=0.7, mix={"container_mismatch": 1}, containers_read=read, seed=5)
        d = Declarations.plan(make_trips(30), LANES, policy)
        signed = {
            o.args["predecision_id"]: (
                tuple(o.args["plates"]),
                tuple(c["number"] for c in o.args.get("containers", ())),
            )
            for o in d.ahead(NOW)
            if o.cmd == "predecision"
        }
        ids = d.identities()
        assert ids == signed and len(ids) == sum(len(p.ids) for p in d.plans.values() if p.declared) > 0
        swapped = next(p for p in d.plans.values() if p.mismatch == "container_mismatch") if read else None
        if swapped is not None:
            (_a, pid), *_ = swapped.ids
            assert ids[pid][1][0] != swapped.trip.containers[0][0]
        assert any(boxes for _plates, boxes in ids.values()) is read


def test_without_container_reads_a_truck_declared_without_boxes_matches() -> None:
    d = Declarations.plan(make_trips(12), LANES, Policy(share=1.0, mix={}))
    books = books_after(d.ahead(NOW), LANES)
    for p in d.plans.values():
        assert isinstance(match(books, p.trip, p.trip.lane, now=NOW, containers=False), FullMatch)


def test_the_wrong_lane_trip_is_named_wrong_lane_where_it_turns_up_and_never_released_anywhere() -> None:
    d = Declarations.plan(make_trips(24), LANES, Policy(share=1.0, mix={"wrong_lane": 1}))
    p = next(p for p in d.plans.values() if p.mismatch == "wrong_lane")
    assert p.trip.lane not in p.named and p.trip.lane in p.sent_to
    books = books_after(d.ahead(NOW), LANES)
    result = match(books, p.trip, p.trip.lane, now=NOW)
    assert isinstance(result, NoMatch) and set(result.reasons) == {"wrong_lane"}


def test_a_used_pre_decision_is_revoked_by_id_at_every_other_lane_once() -> None:
    d = Declarations.plan(make_trips(24), LANES, Policy(share=1.0, mix={}))
    p = next(p for p in d.plans.values() if p.trip.kind == "truck")
    (agency, pid), *_ = p.ids
    used = {"passage_id": "x", "agency": agency, "decision": "release", "basis": "predecision", "predecision_id": pid}
    out = d.on_event(p.trip.lane, "passage.decided", used, NOW)
    assert sorted(o.lane for o in out) == sorted(x for x in p.sent_to if x != p.trip.lane)
    for o in out:
        args = RevokeArgs.model_validate_json(json.dumps(o.args))
        assert o.cmd == "revoke" and args.predecision_id == pid and args.agency == agency
    assert d.on_event(p.trip.lane, "passage.decided", used, NOW + 1) == []  # a redelivery: once
    online = {**used, "basis": "online", "predecision_id": None}
    assert d.on_event(p.trip.lane, "passage.decided", online, NOW) == []
    assert d.on_event(p.trip.lane, "vehicle.identified", used, NOW) == []


def test_the_control_order_after_the_match_goes_to_the_lane_that_matched_and_covers_what_it_used() -> None:
    d = Declarations.plan(make_trips(24), LANES, Policy(share=1.0, mix={"predecision_revoked": 1}))
    p = next(p for p in d.plans.values() if p.mismatch == "predecision_revoked")
    books = books_after(d.ahead(NOW), LANES)
    result = match(books, p.trip, p.trip.lane, now=NOW)
    assert isinstance(result, FullMatch)
    books[p.trip.lane].use(result.ids, "the-passage", NOW)
    out: list[Outgoing] = []
    for agency, pid in p.ids:
        data = {"agency": agency, "basis": "predecision", "predecision_id": pid}
        out += d.on_event(p.trip.lane, "passage.decided", data, NOW)
    orders = [o for o in out if o.lane == p.trip.lane]
    assert len(orders) == 1 and orders[0].args["tag_id"] == p.trip.tag_id
    apply(books, orders, now=NOW + 0.5)
    assert all(books[p.trip.lane].entries[i].revoked_by is not None for i in result.ids)


def test_the_control_order_before_arrival_refuses_the_vehicle_revoked() -> None:
    d = Declarations.plan(make_trips(24), LANES, Policy(share=1.0, mix={"revoked": 1}))
    p = next(p for p in d.plans.values() if p.mismatch == "revoked")
    orders = [o for o in d.ahead(NOW) if o.cmd == "revoke"]
    assert sorted(o.lane for o in orders) == sorted(p.sent_to)
    books = books_after(d.ahead(NOW), LANES)
    result = match(books, p.trip, p.trip.lane, now=NOW)
    assert isinstance(result, NoMatch) and "revoked" in result.reasons


def test_an_identification_with_pre_decision_ids_is_the_lanes_to_decide() -> None:
    assert decided_by_lane({"passage_id": "p", "predecision_ids": ["a", "b"]})
    assert not decided_by_lane({"passage_id": "p", "predecision_ids": []})
    assert not decided_by_lane({"passage_id": "p", "predecision_refusals": [{"reason": "not_declared"}]})


# ------------------------------------------------------------------------------ one-time across lanes


def releases(d: Declarations, lanes: dict[str, LaneInfo]) -> dict[str, list[str]]:
    """Each declared trip drives through its lane; then a twin — the same plates and e-card —
    turns up at every other lane of its kind, one after the other. After every release on
    pre-decisions the platform hears one ``passage.decided`` per agency and what it sends is
    applied. Returns, per vehicle, the lanes that released it (or its twin) on pre-decisions."""
    books = books_after(d.ahead(NOW), lanes)
    read = d.policy.containers_read
    arrivals = [(p, p.trip.lane) for p in d.plans.values()]
    arrivals += [
        (p, lane)
        for p in d.plans.values()
        for lane, info in sorted(lanes.items())
        if lane != p.trip.lane and info.kind == lanes[p.trip.lane].kind
    ]
    out: dict[str, list[str]] = {}
    t = NOW + 10.0
    for p, lane in arrivals:
        t += 1.0
        result = match(books, p.trip, lane, now=t, containers=read, lanes=lanes)
        if not isinstance(result, FullMatch):
            continue
        out.setdefault(p.trip.vid, []).append(lane)
        books[lane].use(result.ids, f"passage-{p.trip.vid}-{lane}", t)
        for declared in result.used:
            data = {"agency": declared.agency, "basis": "predecision", "predecision_id": declared.id}
            apply(books, d.on_event(lane, "passage.decided", data, t), now=t)
    return out


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), share=st.floats(0.0, 1.0), vehicles=st.integers(1, 30), cargo=st.integers(1, 4))
def test_a_declared_vehicle_is_released_at_one_lane_at_most(seed: int, share: float, vehicles: int, cargo: int) -> None:
    lanes = {f"c{i + 1}": LANES["c1"] for i in range(cargo)} | {"p1": LANES["p1"]}
    d = Declarations.plan(make_trips(vehicles, lanes), lanes, Policy(share=share, seed=seed))
    released = releases(d, lanes)
    assert {vid: at for vid, at in released.items() if len(at) > 1} == {}
    normal = [p for p in d.plans.values() if p.declared and p.mismatch in (None, "predecision_revoked")]
    assert all(released.get(p.trip.vid) == [p.trip.lane] for p in normal)  # each at its own lane


class _NoRevokeAtOtherLanes(Declarations):
    """Mutant: the platform does not revoke a used pre-decision at the other lanes."""

    def on_event(self, lane: str, etype: str, data: Mapping[str, Any], now: float) -> list[Outgoing]:
        return [o for o in super().on_event(lane, etype, data, now) if "predecision_id" not in o.args]


def test_the_property_catches_a_platform_that_does_not_revoke_at_the_other_lanes() -> None:
    lanes = {"c1": LANES["c1"], "c2": LANES["c2"], "p1": LANES["p1"]}
    trips = make_trips(6, lanes)
    good = Declarations.plan(trips, lanes, Policy(share=1.0, mix={}))
    assert all(len(at) == 1 for at in releases(good, lanes).values())
    mutant = _NoRevokeAtOtherLanes.plan(trips, lanes, Policy(share=1.0, mix={}))
    assert isinstance(mutant, _NoRevokeAtOtherLanes)
    twice = {vid: at for vid, at in releases(mutant, lanes).items() if len(at) > 1}
    assert twice  # caught: a truck and its twin both released, at c1 and c2


# ------------------------------------------------------------------------------ options


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("weight=1", "not a mismatch"),
        ("wrong_lane=x", "whole number"),
        ("expired=-1", "negative"),
    ],
)
def test_a_bad_mix_is_named(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_mix(text)


def test_mix_spellings() -> None:
    assert parse_mix("none") == parse_mix("") == {}
    assert parse_mix("wrong_lane,expired=2") == {"wrong_lane": 1, "expired": 2}
    with pytest.raises(ValueError, match="share"):
        Policy(share=1.5)
