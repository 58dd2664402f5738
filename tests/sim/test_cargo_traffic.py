"""The demo's cargo traffic (sealed trucks, radioactive loads) and the platform's officers for
radiation alarms and seals (``sim_devices/cargo_desk.py``)."""

from __future__ import annotations

from collections import Counter

from portlane.sim_devices.cargo_desk import CargoDesk
from portlane.sim_devices.traffic import RADIATION_LOADS, make_plan

LANES = {"c1": "cargo", "c2": "cargo", "p1": "passenger"}


def test_every_truck_is_sealed_and_declares_its_seals() -> None:
    plan = make_plan(LANES, 60, seed=7, radiation_ratio=0.2, seal_fault_ratio=0.2)
    registrations = {r["tag_id"]: r for r in plan.registrations}
    trucks = [v for lane in ("c1", "c2") for v in plan.per_lane[lane]]
    assert trucks and all(v.kind == "truck" for v in trucks)
    for v in trucks:
        declared = registrations[v.tag_id]["seals"]
        crossborder = any("粤Z" in p for p in v.plates)
        truth = plan.cargo[v.tag_id]
        if crossborder:  # the Single E-lock Scheme: one e-lock, its code held by customs
            assert len(declared) == 1 and [c[0] for c in truth.elock_codes] == declared
        else:  # one e-seal per box
            assert len(declared) == len(v.containers) and truth.elock_codes == ()
        on_truck = [s.seal_id for s in v.seals]
        if truth.seal_fault == "tampered":
            assert on_truck == declared and v.seals[0].state == "tampered"
        elif truth.seal_fault == "foreign":
            assert on_truck[0] not in declared and on_truck[1:] == declared[1:]
        else:
            assert on_truck == declared and all(s.state == "sealed" for s in v.seals)
        assert truth.radiation == (v.radiation.label if v.radiation else None)
    assert all("seals" not in registrations[v.tag_id] and not v.seals for v in plan.per_lane["p1"])
    loads = [plan.cargo[v.tag_id].radiation for v in trucks if v.radiation]
    assert loads[:3] == [r.label for r in RADIATION_LOADS]  # they take turns: NORM, medical, a real source
    assert Counter(t.seal_fault for t in plan.cargo.values())["tampered"] >= 1
    assert Counter(t.seal_fault for t in plan.cargo.values())["foreign"] >= 1


def test_the_cargo_draws_leave_the_rest_of_the_plan_as_it_was() -> None:
    plain = make_plan(LANES, 30, seed=3)
    cargo = make_plan(LANES, 30, seed=3, radiation_ratio=0.5, seal_fault_ratio=0.5)
    key = [(v.tag_id, v.plates, v.containers, v.weight_kg) for vs in plain.per_lane.values() for v in vs]
    assert key == [(v.tag_id, v.plates, v.containers, v.weight_kg) for vs in cargo.per_lane.values() for v in vs]
    assert not any(t.radiation or t.seal_fault for t in plain.cargo.values())


def test_the_desk_adjudicates_after_the_secondary_inspection_whatever_comes_first() -> None:
    plan = make_plan(LANES, 60, seed=7, radiation_ratio=0.3)
    desk = CargoDesk(plan.cargo)
    by_label = {t.radiation: tag for tag, t in plan.cargo.items() if t.radiation}
    # alarm first, then the identification
    assert desk.on_event("rpm.alarm", {"passage_id": "p1", "occupancy": 5}) == []
    first, go_on = desk.identified({"passage_id": "p1", "tag_id": by_label["norm"], "exceptions": []})
    [(cmd, pid, args)] = [c for c in first if c[0] == "adjudicate"]
    assert (cmd, pid, args["occupancy"], args["code"], args["agency"]) == ("adjudicate", "p1", 5, 4, "customs")
    assert go_on
    # identification first, then the alarm: a medical isotope
    desk.identified({"passage_id": "p2", "tag_id": by_label["medical"], "exceptions": []})
    [(_c, _p, args)] = desk.on_event("rpm.alarm", {"passage_id": "p2", "occupancy": 6})
    assert args["code"] == 3 and args["isotopes"] == ["Tc-99m"]
    # a real source: adjudicated real, and nobody releases it
    desk.on_event("rpm.alarm", {"passage_id": "p3", "occupancy": 7})
    first, go_on = desk.identified({"passage_id": "p3", "tag_id": by_label["threat"], "exceptions": []})
    assert [a["code"] for c, _p, a in first if c == "adjudicate"] == [1] and not go_on
    assert dict(desk.stats.adjudications) == {4: 1, 3: 1, 1: 1}


def test_the_desk_refuses_trucks_with_seal_exceptions_and_removes_elocks_in_order() -> None:
    plan = make_plan(LANES, 60, seed=7)
    desk = CargoDesk(plan.cargo)
    first, go_on = desk.identified(
        {"passage_id": "p1", "tag_id": "T", "exceptions": ["seal_tampered", "low_confidence"]}
    )
    assert first == [("divert", "p1", {"agency": "customs"})] and not go_on
    assert dict(desk.stats.seal_refusals) == {"seal_tampered": 1}
    tag, truth = next((t, c) for t, c in plan.cargo.items() if c.elock_codes)
    [(sid, code)] = truth.elock_codes
    lock = {"seal_id": sid, "kind": "elock", "state": "sealed"}
    assert desk.on_event("seal.read", {"passage_id": "p2", "seals": [lock], "exceptions": []}) == []  # who is it?
    first, go_on = desk.identified({"passage_id": "p2", "tag_id": tag, "exceptions": []})
    assert first == [("seal_remove", "p2", {"agency": "customs", "seal_id": sid, "authorisation": code})] and go_on
    assert desk.stats.elocks_removed == 1
