"""The MQTT contract: the AsyncAPI document is current, envelopes and topics are well-formed."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
import yaml
from portlane.edge.contract.asyncapi import build, render
from portlane.edge.contract.commands import COMMAND_NAMES, CommandLiteral
from portlane.edge.contract.events import EVENTS
from portlane.edge.contract.topics import LANE_SCOPED_EVENTS, Topics
from portlane.edge.delivery.outbox import Outbox

ROOT = Path(__file__).resolve().parents[2]


def test_asyncapi_document_is_current() -> None:
    checked_in = (ROOT / "docs" / "asyncapi.yaml").read_text(encoding="utf-8")
    assert checked_in == render(), (
        "docs/asyncapi.yaml is stale: run `python -m portlane.edge.contract.asyncapi > docs/asyncapi.yaml`"
    )


def test_every_event_type_has_a_channel_and_resolvable_refs() -> None:
    doc = build()
    for type_ in EVENTS:
        # A scanner's scan.* events on the topic of the lane whose passage it is (contract.topics).
        scope = "/{lane}" if type_ in LANE_SCOPED_EVENTS else ""
        assert doc["channels"][f"event.{type_}"]["address"].endswith(f"/event/{type_}{scope}")
    text = yaml.safe_dump(doc)
    for ref in {line.split("'")[1] for line in text.splitlines() if "$ref: '#/" in line}:
        node = doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]


def test_the_signed_command_names_are_the_contract_command_names() -> None:
    """``SignedCommand.cmd`` (a Literal, what pydantic checks) and ``CommandName`` (what the units
    register handlers from) name the same commands: one added to one only is caught here."""
    assert sorted(get_args(CommandLiteral)) == sorted(COMMAND_NAMES)


def test_topics_round_trip() -> None:
    t = Topics("zhuhai-hzmb-cargo", "c1")
    assert Topics.parse(t.event("passage.completed")) == ("zhuhai-hzmb-cargo", "c1", "event", "passage.completed")
    assert Topics.parse(t.cmd("decision"))[2:] == ("cmd", "decision")
    with pytest.raises(ValueError):
        Topics.parse("other/v1/x/y/event/z")


def test_envelope_is_cloudevents_with_seq(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", site="s1", unit="c1", clock=lambda: 1_700_000_000.0)
    data = EVENTS["passage.arrived"].model_validate({"passage_id": "p1", "lane_kind": "cargo"}).model_dump()
    env = ob.put("passage.arrived", data, topic=Topics("s1", "c1").event("passage.arrived"), subject="p1")
    assert env.specversion == "1.0" and env.source == "portlane://s1/c1"
    assert env.type == "portlane.passage.arrived" and env.time == "2023-11-14T22:13:20.000Z"
    # id = {site}/{unit}/{epoch}/{seq}; the epoch is the store's creation time in ms.
    assert (env.seq, env.epoch, env.id, env.subject) == (1, 1_700_000_000_000, "s1/c1/1700000000000/1", "p1")
    ob.close()


def test_payloads_reject_unknown_fields() -> None:
    with pytest.raises(ValueError):
        EVENTS["passage.arrived"].model_validate({"passage_id": "p", "lane_kind": "cargo", "extra": 1})


def test_a_read_names_its_doubt_in_a_bounded_field() -> None:
    ident = EVENTS["vehicle.identified"]
    base = {"passage_id": "p", "confidence": 0.4, "exceptions": ["low_confidence"]}
    got = ident.model_validate(
        {
            **base,
            "plates": [{"text": "浙GR0L16", "kind": "cn", "confidence": 0.4, "doubt": "province"}],
            "containers": [{"number": "CSQU3054383", "check_digit_ok": True, "confidence": 0.5, "doubt": "inferred"}],
        }
    )
    assert (got.plates[0].doubt, got.containers[0].doubt) == ("province", "inferred")  # type: ignore[attr-defined]
    # older lanes send none: still valid, and nothing is written for it on the wire
    old = ident.model_validate({**base, "plates": [{"text": "粤B12345", "kind": "cn", "confidence": 0.9}]})
    assert old.plates[0].doubt is None and "doubt" not in old.model_dump_json(exclude_none=True)  # type: ignore[attr-defined]
    with pytest.raises(ValueError):  # a name, not a story
        ident.model_validate(
            {**base, "plates": [{"text": "粤B12345", "kind": "cn", "confidence": 0.4, "doubt": "x" * 33}]}
        )


PREDECISION = {
    "predecision_id": "pd-1",
    "agency": "customs",
    "verdict": "release",
    "plates": ["粤Z1234港", "AB1234"],
    "tag_id": "E200341201930500001",
    "containers": [{"number": "CSQU3054383", "size_type": "45G1"}],
    "gross_weight_kg": 30000,
    "weight_tolerance_kg": 500,
    "lanes": ["c1"],
    "window_start": "2026-11-23T18:00:00.000Z",
    "window_end": "2026-11-23T20:00:00.000Z",
    "valid_until": "2026-11-23T22:00:00.000Z",
}


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"window_end": "2026-11-23T17:00:00.000Z"}, "window_end must be after"),
        ({"valid_until": "2026-11-23T17:00:00.000Z"}, "valid_until must be after"),
        ({"weight_tolerance_kg": None}, "go together"),
        ({"plates": ["AB1234", "AB1234"]}, "plates listed twice"),
        ({"verdict": "hold"}, "verdict"),
        ({"tag_id": None}, "tag_id"),
        ({"containers": [{"number": "CSQU305438", "size_type": "45G1"}]}, "number"),
        ({"window_start": "2026-11-23 18:00:00.000+08:00"}, "RFC 3339"),
        ({"extra": 1}, "extra"),
    ],
)
def test_a_predecision_that_cannot_be_matched_safely_is_malformed(change: dict[str, object], why: str) -> None:
    """What the lane would have to guess is refused at the contract (the command is 'malformed')."""
    import json

    from portlane.edge.contract.commands import PredecisionArgs
    from pydantic import ValidationError

    args = {k: v for k, v in {**PREDECISION, **change}.items() if v is not None}
    with pytest.raises(ValidationError, match=why):
        PredecisionArgs.model_validate_json(json.dumps(args))
    assert PredecisionArgs.model_validate_json(json.dumps(PREDECISION)).agency == "customs"


def test_a_revoke_names_one_pre_decision_or_one_vehicle() -> None:
    import json

    from portlane.edge.contract.commands import RevokeArgs
    from pydantic import ValidationError

    base = {"agency": "customs", "reason": "control order", "valid_until": "2026-11-24T00:00:00.000Z"}
    for target in ({"predecision_id": "pd-1"}, {"plates": ["AB1234"]}, {"tag_id": "E2"}):
        RevokeArgs.model_validate_json(json.dumps({**base, **target}))
    for bad in ({}, {"predecision_id": "pd-1", "tag_id": "E2"}):
        with pytest.raises(ValidationError, match="either predecision_id or a vehicle"):
            RevokeArgs.model_validate_json(json.dumps({**base, **bad}))
