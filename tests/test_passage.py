"""Example-based tests of the passage state machine (the invariants are in test_safety.py)."""

from __future__ import annotations

from portlane.edge.lane.logic import Identity, LaneLogic, LaneTimeouts, Sensors, Stage

AG = ("customs", "border")
ID = Identity(plates=(("粤B12345", "cn", 0.97),), confidence=0.97)


def types(actions: list) -> list[str]:
    return [a.args["type"] if a.kind == "publish" else a.kind for a in actions]


def arrive(lane: LaneLogic, now: float = 0.0) -> str:
    lane.on_sensors(Sensors(entry_loop=True), now)
    out = lane.on_sensors(Sensors(entry_loop=True, in_position=True), now + 1)
    assert "identify" in types(out)
    assert lane.passage is not None
    pid = lane.passage.id
    lane.on_identified(pid, ID, now + 2)
    return pid


def test_joint_release_then_exit_completes_with_stage_times() -> None:
    lane = LaneLogic("c1", agencies=AG, has_scanner=False)
    pid = arrive(lane)
    ok, _r, out = lane.on_decision(pid, "customs", "release", nonce="a", now=3)
    assert ok and "gate" not in types(out)  # border has not released yet
    ok, _r, out = lane.on_decision(pid, "border", "release", nonce="b", now=4)
    assert types(out)[:3] == ["passage.decided", "passage.released", "board"] and "gate" in types(out)
    lane.on_sensors(Sensors(in_position=True, gate_open=True, gate_closed=False), 5)
    lane.on_sensors(Sensors(photocell=True, safety_loop=True, gate_open=True, gate_closed=False), 6)
    out = lane.on_sensors(Sensors(exit_loop=True, gate_open=True, gate_closed=False), 7)
    assert [a.args["action"] for a in out if a.kind == "gate"] == ["close"]  # closes once the arm is clear
    out = lane.on_sensors(Sensors(), 8)
    done = [a.args["data"] for a in out if a.kind == "publish" and a.args["type"] == "passage.completed"]
    assert done and done[0]["outcome"] == "released" and done[0]["stage_ms"]["exited"] == 8000
    assert set(done[0]["stages"]) >= {"arrived", "identified", "decided", "released", "gate_opened", "exited"}
    assert lane.stage == Stage.IDLE


def test_one_scan_serves_every_agency_and_a_second_inspect_is_refused() -> None:
    lane = LaneLogic("c1", agencies=AG, has_scanner=True)
    pid = arrive(lane)
    ok, _r, out = lane.on_decision(pid, "customs", "inspect", nonce="a", now=3)
    assert ok and "request_scan" in types(out) and lane.stage == Stage.INSPECTION_QUEUED
    lane.on_scan(pid, "started", 4, scan_id=7)
    lane.on_scan(pid, "completed", 9, scan_id=7, result="GREEN")
    assert lane.stage == Stage.AWAITING_VERDICTS
    assert lane.on_decision(pid, "border", "inspect", nonce="b", now=10)[:2] == (False, "already_inspected")
    lane.on_decision(pid, "customs", "release", nonce="c", now=10)
    ok, _r, out = lane.on_decision(pid, "border", "release", nonce="d", now=11)
    assert "gate" in types(out)


def test_stale_and_unknown_agency_decisions_are_refused() -> None:
    lane = LaneLogic("c1", agencies=AG, has_scanner=False)
    pid = arrive(lane)
    assert lane.on_decision("other", "customs", "release", nonce="a", now=3)[:2] == (False, "stale_passage")
    assert lane.on_decision(pid, "police", "release", nonce="a", now=3)[:2] == (False, "unknown_agency")


def test_no_decision_means_hold_and_one_exception() -> None:
    lane = LaneLogic("c1", agencies=AG, has_scanner=False, timeouts=LaneTimeouts(decision_s=30))
    arrive(lane)
    assert lane.on_tick(20) == []
    out = lane.on_tick(40)
    assert [a.args["data"]["kind"] for a in out if a.kind == "publish"] == ["platform_unreachable"]
    assert lane.on_tick(80) == [] and lane.stage == Stage.AWAITING_DECISION  # still holding, said once


def test_override_keeps_the_arm_up_until_something_passes() -> None:
    lane = LaneLogic("c1", agencies=AG, has_scanner=False, timeouts=LaneTimeouts(exit_s=60))
    out = lane.override_open(operator="tech-li", reason="stalled truck, lifting by hand", now=0)
    assert types(out)[:2] == ["audit", "override.applied"] and "gate" in types(out)
    assert "gate" not in types(lane.on_sensors(Sensors(gate_open=True, gate_closed=False), 1))
    assert "gate" not in types(lane.on_sensors(Sensors(photocell=True, gate_open=True, gate_closed=False), 2))
    out = lane.on_sensors(Sensors(gate_open=True, gate_closed=False), 3)
    assert [a.args["action"] for a in out if a.kind == "gate"] == ["close"]


def test_override_closes_by_itself_when_nothing_came() -> None:
    lane = LaneLogic("c1", agencies=AG, has_scanner=False, timeouts=LaneTimeouts(exit_s=60))
    lane.override_open(operator="tech-li", reason="testing the arm after repair", now=0)
    lane.on_sensors(Sensors(gate_open=True, gate_closed=False), 1)
    assert "gate" not in types(lane.on_tick(30))
    assert "gate" in types(lane.on_tick(61))
