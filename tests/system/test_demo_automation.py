"""The demo's per-passage automation (``edge/demo/automation.py``, issue 22), on constructed
event lists: a passage the lane released on its own on a fully matching pre-decision counts as
automated, judged by the identity it was declared with; a read in doubt that no pre-decision
settled needs an officer; a wrong identity, by reads or by declaration, is counted wrong."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

from portlane.edge.contract.events import PlateRead
from portlane.edge.demo.automation import Truth, per_passage
from portlane.edge.lane.predecision_rules import FullMatch, Observed
from portlane.edge.lane.predecisions import PredecisionBook

from tests.declarations import AGENCIES, BOXES, HK_TRUCK_PLATES, TAG, Declaration, reads

_seq = itertools.count(1)

A = "E280A"  # e-cards
B = "E280B"
C = "E280C"
TRUCK_A = Truth.of(("粤B12345",), ("CSQU3054383",), ("粤B12345",))
TRUCK_B = Truth.of(("湘A55555",), ("MSKU0539301",), ("湘A55555",))
CAR_C = Truth.of(("粤Z1234港", "AB123"), (), ("粤Z1234港", "AB123"))
VEHICLES = {A: TRUCK_A, B: TRUCK_B, C: CAR_C}
DECLARED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "d-a-customs": (("粤B12345",), ("CSQU3054383",)),
    "d-a-border": (("粤B12345",), ("CSQU3054383",)),
    "d-b-customs": (("湘A55555",), ("MSKU0539301",)),
}


def ident(
    pid: str,
    tag: str | None,
    plates: tuple[tuple[str, float], ...],
    boxes: tuple[str, ...] = (),
    *,
    exceptions: tuple[str, ...] = (),
    ids: tuple[str, ...] = (),
    refusals: tuple[str, ...] = (),
    corrected_by: str | None = None,
    source: str = "portlane/site/c1",
) -> dict[str, Any]:
    data = {
        "passage_id": pid,
        "tag_id": tag,
        "plates": [{"text": t, "kind": "cn", "confidence": c} for t, c in plates],
        "containers": [{"number": n, "check_digit_ok": True, "iso_type": "22G1", "confidence": 0.9} for n in boxes],
        "confidence": 0.9,
        "exceptions": list(exceptions),
        "corrected_by": corrected_by,
        "predecision_ids": list(ids),
        "predecision_refusals": [{"reason": r, "detail": ""} for r in refusals],
    }
    n = next(_seq)
    return {"id": f"ev{n}", "type": "portlane.vehicle.identified", "source": source, "seq": n, "data": data}


def score(*events: dict[str, Any], vehicles: dict[str, Truth] = VEHICLES) -> dict[str, Any]:
    return per_passage(events, vehicles, DECLARED)


def counts(out: dict[str, Any]) -> tuple[int, int, int, int, int]:
    return (
        out["automated_right_by_reads"],
        out["automated_right_by_declaration"],
        out["needs_officer"],
        out["automated_wrong"],
        out["passages"],
    )


def test_a_clean_identification_is_automated_by_its_reads_and_judged_by_them() -> None:
    right = ident("p1", A, (("粤B12345", 0.97),), ("CSQU3054383",))
    misread = ident("p2", B, (("湘A55556", 0.97),), ("MSKU0539301",))  # confident and wrong
    out = score(right, misread)
    assert counts(out) == (1, 0, 0, 1, 2)
    assert out["automated_right"] == 1 and out["automated_right_share"] == 0.5
    assert out["wrong"] == [
        {
            "passage": "p2",
            "by": "reads",
            "identified": ["MSKU0539301", "湘A55556"],
            "vehicle": ["MSKU0539301", "湘A55555"],
        }
    ]


def test_a_read_in_doubt_released_on_a_full_match_is_automated_by_declaration() -> None:
    """The province Hanzi read in doubt (浙 for 湘) is what the rules let a unique declaration
    settle: the lane released the declared identity, which is the truck's — right, although the
    read text alone is not."""
    doubt = ident(
        "p1", B, (("浙A55555", 0.41),), ("MSKU0539301",), exceptions=("low_confidence",), ids=("d-b-customs",)
    )
    out = score(doubt)
    assert counts(out) == (0, 1, 0, 0, 1) and out["automated_right"] == 1 and out["automated_right_share"] == 1.0


def test_a_full_match_on_another_vehicles_declaration_is_wrong_not_right() -> None:
    """Truck B released on truck A's pre-decisions (a matching bug): counted wrong, loudly."""
    bad = ident(
        "p1",
        B,
        (("湘A55555", 0.41),),
        ("MSKU0539301",),
        exceptions=("low_confidence",),
        ids=("d-a-customs", "d-a-border"),
    )
    unknown = ident("p2", A, (("粤B12345", 0.41),), ("CSQU3054383",), exceptions=("low_confidence",), ids=("d-x",))
    out = score(bad, unknown)
    assert counts(out) == (0, 0, 0, 2, 2)
    assert out["wrong"][0] == {
        "passage": "p1",
        "by": "declaration",
        "identified": ["CSQU3054383", "粤B12345"],
        "vehicle": ["MSKU0539301", "湘A55555"],
    }
    assert out["wrong"][1]["identified"] == ["unknown pre-decision d-x"]


def test_exceptions_no_pre_decision_settled_need_an_officer_with_the_reasons() -> None:
    refused = ident(
        "p1", B, (("浙A55555", 0.41),), ("MSKU0539301",), exceptions=("low_confidence",), refusals=("plate_mismatch",)
    )
    box = ident(
        "p2",
        A,
        (("粤B12345", 0.97),),
        (),
        exceptions=("unreadable_container",),
        refusals=("identification_exception", "container_mismatch"),
    )
    undeclared = ident(
        "p3", C, (("粤Z1234港", 0.97), ("AB123", 0.3)), exceptions=("low_confidence",), refusals=("not_declared",)
    )
    refused["data"]["plates"][0]["doubt"] = "province"  # the recogniser's named doubt
    no_card = ident("p4", None, (("粤B12345", 0.97),), ("CSQU3054383",))
    out = score(refused, box, undeclared, no_card)
    assert counts(out) == (0, 0, 4, 0, 4) and out["automated_right_share"] == 0.0
    assert out["needs_officer_exceptions"] == {"low_confidence": 2, "no_ecard": 1, "unreadable_container": 1}
    assert out["needs_officer_refusals"] == {
        "container_mismatch": 1,
        "identification_exception": 1,
        "not_declared": 1,
        "plate_mismatch": 1,
    }
    # each one named, with what the lane read (and why it doubted) and the vehicle that drove through
    first = out["needs_officer_passages"][0]
    assert first == {
        "passage": "p1",
        "exceptions": ["low_confidence"],
        "refusals": ["plate_mismatch"],
        "reads": ["浙A55555 0.41 (province)", "MSKU0539301 0.9"],
        "vehicle": ["MSKU0539301", "湘A55555"],
    }
    assert [(o["passage"], o["vehicle"]) for o in out["needs_officer_passages"][1:]] == [
        ("p2", ["CSQU3054383", "粤B12345"]),
        ("p3", ["AB123", "粤Z1234港"]),
        ("p4", None),
    ]


def test_planted_faults_flagged_are_counted_apart_and_out_of_the_share() -> None:
    swapped = Truth.of(("粤Z1234港", "KR8194"), (), ("粤Z1234港", "AB123"))
    sealed = Truth.of(("粤B12345",), ("CSQU3054383",), ("粤B12345",), seal_fault=True)
    vehicles = {A: sealed, B: TRUCK_B, C: swapped, "E280D": TRUCK_A}
    out = score(
        ident("p1", C, (("粤Z1234港", 0.97), ("KR8194", 0.97)), exceptions=("dual_plate_mismatch",)),
        ident("p2", A, (("粤B12345", 0.97),), ("CSQU3054383",), exceptions=("seal_tampered",)),
        ident("p3", B, (("湘A55555", 0.97),), ("MSKU0539301",)),
        # a seal exception on a truck whose seals are as declared (a reader fault): an officer
        ident("p4", "E280D", (("粤B12345", 0.97),), ("CSQU3054383",), exceptions=("seal_read_failed",)),
        vehicles=vehicles,
    )
    assert out["swapped_plate_caught"] == 1 and out["seal_fault_caught"] == 1
    assert counts(out) == (1, 0, 1, 0, 4) and out["automated_right_share"] == 0.5


def test_each_passage_is_judged_once_on_the_lanes_own_identification() -> None:
    """A replayed event (same id), the platform's correction and the identification a control
    order sends after taking the release back do not count again."""
    first = ident("p1", A, (("粤B12345", 0.97),), ("CSQU3054383",), ids=("d-a-customs", "d-a-border"))
    corrected = ident("p2", B, (("湘A55555", 1.0),), ("MSKU0539301",), corrected_by="officer-1")
    lane_p2 = ident("p2", B, (("湘A55555", 0.41),), ("MSKU0539301",), exceptions=("low_confidence",))
    withdrawn = ident("p1", A, (("粤B12345", 0.97),), ("CSQU3054383",), refusals=("revoked",))
    out = score(first, dict(first), corrected, lane_p2, withdrawn)
    assert counts(out) == (1, 0, 1, 0, 2) and out["withdrawn_by_control_order"] == 1
    assert out["needs_officer_exceptions"] == {"low_confidence": 1}


def test_the_lanes_own_event_for_a_province_in_doubt_on_a_full_match_scores_by_declaration() -> None:
    """The chain end to end, without hand-written fields: the lane's book matches a cross-boundary
    truck whose 粤Z plate was read as 湘Z… in doubt (its Hong Kong plate and e-card sure), the
    lane's ``vehicle.identified`` is built by the contract's model, and the scorer counts it
    automated by declaration — right for the declared truck, wrong for a truck it is not."""
    book = PredecisionBook()
    declaration = Declaration()
    for d in declaration.every(AGENCIES):
        assert book.add(d, 1000.0).accepted
    base = reads(exceptions=("low_confidence",))
    doubt = PlateRead(text="湘Z1234港", kind="cn_crossborder", confidence=0.45)
    identity = replace(base, plates=(doubt, base.plates[1]), confidence=0.45)
    result = book.match(Observed.from_identity(identity), lane="c1", agencies=AGENCIES, now=1000.0)
    assert isinstance(result, FullMatch)
    data = identity.event("c1-p1", predecision_ids=result.ids).model_dump(mode="json")
    event = {"id": "e1", "type": "portlane.vehicle.identified", "source": "portlane/site/c1", "seq": 1, "data": data}
    declared = {i: (HK_TRUCK_PLATES, tuple(n for n, _t in BOXES)) for i in result.ids}
    truck = Truth.of(HK_TRUCK_PLATES, (n for n, _t in BOXES), HK_TRUCK_PLATES)
    out = per_passage([event], {TAG: truck}, declared)
    assert counts(out) == (0, 1, 0, 0, 1)
    other = Truth.of(("湘Z1234港", "AB1234"), (n for n, _t in BOXES), ("湘Z1234港", "AB1234"))
    assert counts(per_passage([event], {TAG: other}, declared)) == (0, 0, 0, 1, 1)
