"""Example-based tests of the passage state machine (the invariants are in test_safety.py)."""

from __future__ import annotations

from portlane.edge.contract.events import PlateRead
from portlane.edge.lane.actions import Audit, SetLight
from portlane.edge.lane.logic import LaneLogic
from portlane.edge.lane.passage import Identity, LaneTimeouts, Sensors, Stage

from tests.lane_actions import published, types

AG = ("customs", "border")
ID = Identity(plates=(PlateRead(text="粤B12345", kind="cn", confidence=0.97),), confidence=0.97)
OPEN = Sensors(gate_open=True, gate_closed=False)


def started(lane: LaneLogic, now: float = -1.0) -> LaneLogic:
    lane.start(Sensors(), [], now)
    return lane


def arrive(lane: LaneLogic, now: float = 0.0) -> str:
    if not lane.started:
        started(lane)
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
    assert ok and "open" not in types(out)  # border has not released yet
    ok, _r, out = lane.on_decision(pid, "border", "release", nonce="b", now=4)
    assert types(out) == ["passage.decided", "passage.released", "open"]
    out = lane.on_sensors(Sensors(in_position=True, gate_open=True, gate_closed=False), 5)
    assert types(out)[:2] == ["gate.moved", "SetLight"]  # gate.moved only once the controller reports it open
    lane.on_sensors(Sensors(photocell=True, safety_loop=True, gate_open=True, gate_closed=False), 6)
    out = lane.on_sensors(Sensors(exit_loop=True, gate_open=True, gate_closed=False), 7)
    assert "close" in types(out)  # closes once the arm is clear
    out = lane.on_sensors(Sensors(), 8)
    done = published(out, "passage.completed")
    assert done and done[0]["outcome"] == "released" and done[0]["stage_ms"]["exited"] == 8000
    assert set(done[0]["stages"]) >= {"arrived", "identified", "decided", "released", "gate_opened", "exited"}
    assert lane.stage == Stage.IDLE


def test_one_scan_serves_every_agency_and_a_second_inspect_is_refused() -> None:
    lane = LaneLogic("c1", agencies=AG, has_scanner=True)
    pid = arrive(lane)
    ok, _r, out = lane.on_decision(pid, "customs", "inspect", nonce="a", now=3)
    assert ok and "inspection.requested" in types(out) and lane.stage == Stage.INSPECTION_QUEUED
    lane.on_scan(pid, "started", 4, scan_id=7)
    lane.on_scan(pid, "completed", 9, scan_id=7, result="GREEN")
    assert lane.stage == Stage.AWAITING_VERDICTS
    assert lane.on_decision(pid, "border", "inspect", nonce="b", now=10)[:2] == (False, "already_inspected")
    lane.on_decision(pid, "customs", "release", nonce="c", now=10)
    ok, _r, out = lane.on_decision(pid, "border", "release", nonce="d", now=11)
    assert "open" in types(out)


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
    assert [e["kind"] for e in published(out, "lane.exception")] == ["platform_unreachable"]
    assert lane.on_tick(80) == [] and lane.stage == Stage.AWAITING_DECISION  # still holding, said once


def test_override_keeps_the_arm_up_until_something_passes() -> None:
    lane = started(LaneLogic("c1", agencies=AG, has_scanner=False, timeouts=LaneTimeouts(exit_s=60)))
    out = lane.override_open(operator="tech-li", reason="stalled truck, lifting by hand", now=0)
    assert types(out)[:2] == ["audit", "override.applied"] and "open" in types(out)
    assert "close" not in types(lane.on_sensors(OPEN, 1))
    assert "close" not in types(lane.on_sensors(Sensors(photocell=True, gate_open=True, gate_closed=False), 2))
    assert "close" in types(lane.on_sensors(OPEN, 3))


def test_override_closes_by_itself_when_nothing_came() -> None:
    lane = started(LaneLogic("c1", agencies=AG, has_scanner=False, timeouts=LaneTimeouts(exit_s=60)))
    lane.override_open(operator="tech-li", reason="testing the arm after repair", now=0)
    lane.on_sensors(OPEN, 1)
    assert "close" not in types(lane.on_tick(30))
    assert "close" in types(lane.on_tick(61))


def test_an_override_close_is_published_like_an_override_open() -> None:
    """Issue 24: `gate open` published override.applied, `gate close` did not."""
    lane = started(LaneLogic("c1", agencies=AG, has_scanner=False, timeouts=LaneTimeouts(exit_s=60)))
    lane.override_open(operator="tech-li", reason="testing the arm after repair", now=0)
    lane.on_sensors(OPEN, 1)
    out = lane.override_close(operator="tech-li", reason="arm tested, closing it again", now=2)
    assert types(out)[:2] == ["audit", "override.applied"] and "close" in types(out)
    [applied] = published(out, "override.applied")
    assert applied["action"] == "gate_close" and applied["operator"] == "tech-li"
    # refused (something under the arm): nothing was applied, nothing is published
    lane.override_open(operator="tech-li", reason="testing the arm after repair", now=3)
    lane.on_sensors(Sensors(photocell=True, gate_open=True, gate_closed=False), 4)
    refused = lane.override_close(operator="tech-li", reason="arm tested, closing it again", now=5)
    assert types(refused) == ["audit", "audit"] and not published(refused, "override.applied")


def release(lane: LaneLogic, now: float = 4.0) -> str:
    pid = arrive(lane)
    lane.on_decision(pid, "customs", "release", nonce="a", now=now)
    lane.on_decision(pid, "border", "release", nonce="b", now=now)
    return pid


def test_an_unconfirmed_open_is_retried_with_backoff_then_raised() -> None:
    lane = LaneLogic("c1", agencies=AG, has_scanner=False, timeouts=LaneTimeouts(gate_confirm_s=2))
    release(lane, now=10)
    assert lane.on_tick(11) == []  # the arm needs time to travel
    assert types(lane.on_tick(12.5)) == ["open"]  # not at the open limit switch after 2 s: sent again
    assert lane.on_tick(14) == []  # the next attempt waits twice as long
    out = lane.on_tick(16.6)
    assert types(out) == ["lane.exception", "open"]
    assert published(out, "lane.exception")[0]["kind"] == "gate_not_opening"
    assert published(lane.on_tick(30), "lane.exception") == []  # raised once, still retrying
    out = lane.on_sensors(Sensors(entry_loop=True, in_position=True, gate_open=True, gate_closed=False), 31)
    assert [e["action"] for e in published(out, "gate.moved")] == ["open"]


def released_with_counters() -> LaneLogic:
    """A lane whose controllers latch counters (arm passes 7, under-arm clears 30, exit clears
    500 at start), with one vehicle released and the arm reported open at t=4."""
    lane = LaneLogic("c1", agencies=AG, has_scanner=False)
    lane.start(Sensors(arm_passes=7, under_clears=30, exit_clears=500), [], -1)
    lane.on_sensors(Sensors(entry_loop=True, arm_passes=7, under_clears=30, exit_clears=500), 0)
    pid = lane.passage.id if lane.passage else ""
    lane.on_sensors(Sensors(entry_loop=True, in_position=True, arm_passes=7, under_clears=30, exit_clears=500), 1)
    lane.on_identified(pid, ID, 2)
    lane.on_decision(pid, "customs", "release", nonce="a", now=3)
    lane.on_decision(pid, "border", "release", nonce="b", now=3)
    lane.on_sensors(
        Sensors(in_position=True, gate_open=True, gate_closed=False, arm_passes=7, under_clears=30, exit_clears=500), 4
    )
    return lane


def test_a_vehicle_missed_between_samples_still_completes_on_the_latched_counters() -> None:
    """A starved loop sees the truck in position, then nothing at all: the gate's passes counter
    and the I/O module's exit-loop counter say it went under the arm and left."""
    lane = released_with_counters()
    # next sample, seconds later: the truck has gone; the next one waits on the entry loop
    out = lane.on_sensors(
        Sensors(entry_loop=True, gate_open=True, gate_closed=False, arm_passes=8, under_clears=31, exit_clears=501), 9
    )
    assert "close" in types(out)
    assert [d["outcome"] for d in published(out, "passage.completed")] == ["released"]


def test_the_light_turns_red_once_the_released_vehicle_is_past_the_arm_and_a_second_one_is_named() -> None:
    """One vehicle per release: drivers go on green, so green must end as the first vehicle
    passes, not when the arm is down; a second vehicle through on the same release (the starved
    loop saw it late) is the named exception ``tailgating``."""
    lane = released_with_counters()
    out = lane.on_sensors(
        Sensors(photocell=True, gate_open=True, gate_closed=False, arm_passes=8, under_clears=30, exit_clears=500), 5
    )
    assert any(isinstance(a, SetLight) and a.colour == "red" for a in out)
    assert published(out, "lane.exception") == []
    out = lane.on_sensors(
        Sensors(photocell=True, gate_open=True, gate_closed=False, arm_passes=9, under_clears=31, exit_clears=500), 6
    )
    assert [e["kind"] for e in published(out, "lane.exception")] == ["tailgating"]
    out = lane.on_sensors(
        Sensors(photocell=True, gate_open=True, gate_closed=False, arm_passes=9, under_clears=31, exit_clears=500), 7
    )
    assert published(out, "lane.exception") == []  # raised once


def test_a_missed_exit_loop_without_counters_ends_in_a_named_exception_not_a_wedge() -> None:
    lane = LaneLogic("c1", agencies=AG, has_scanner=False, timeouts=LaneTimeouts(exit_s=20))
    release(lane, now=3)
    lane.on_sensors(OPEN, 4)
    lane.on_sensors(Sensors(photocell=True, gate_open=True, gate_closed=False), 5)  # seen under the arm
    lane.on_sensors(Sensors(entry_loop=True, gate_open=True, gate_closed=False), 9)  # exit loop never sampled
    assert lane.stage == Stage.EXITING
    out = lane.on_tick(40)
    assert [e["kind"] for e in published(out, "lane.exception")] == ["exit_not_seen"]
    assert lane.stage == Stage.IDLE


def test_start_closes_out_an_unfinished_passage_and_brings_the_arm_down() -> None:
    before = LaneLogic("c1", agencies=AG, has_scanner=False)
    release(before)
    assert before.passage is not None
    journal = [before.passage]
    lane = LaneLogic("c1", agencies=AG, has_scanner=False)
    out = lane.start(OPEN, journal, 100)
    assert [(d["outcome"], d["reason"]) for d in published(out, "passage.completed")] == [
        ("recovered", "lane restarted during released")
    ]
    assert "close" in types(out)
    # the next vehicle is not taken before the arm is confirmed down
    assert (
        published(lane.on_sensors(Sensors(entry_loop=True, gate_open=True, gate_closed=False), 101), "passage.arrived")
        == []
    )
    assert published(lane.on_sensors(Sensors(entry_loop=True), 102), "passage.arrived")


def test_start_with_something_under_an_open_arm_holds() -> None:
    lane = LaneLogic("c1", agencies=AG, has_scanner=False)
    out = lane.start(Sensors(photocell=True, gate_open=True, gate_closed=False), [], 0)
    assert [e["kind"] for e in published(out, "lane.exception")] == ["gate_open_at_start"]
    assert "close" not in types(out) and lane.holding == "gate_open_at_start"
    out = lane.on_sensors(Sensors(entry_loop=True, gate_open=True, gate_closed=False), 1)
    assert "close" in types(out) and not published(out, "passage.arrived")
    assert published(lane.on_sensors(Sensors(entry_loop=True), 2), "passage.arrived")
    assert lane.holding is None


def test_a_lane_that_hears_nothing_of_its_scan_asks_again_and_a_replayed_start_never_moves_it_back() -> None:
    """Around a broker restart the scanner's events can be lost or arrive out of order. A lane
    waiting on the scanner re-checks (a re-sent request marked ``recheck``) instead of waiting
    for ever; a re-sent or replayed ``scan.started`` after the result is ignored."""
    t = LaneTimeouts()
    lane = LaneLogic("c1", agencies=AG, has_scanner=True, timeouts=t)
    pid = arrive(lane)
    _ok, _r, out = lane.on_decision(pid, "customs", "inspect", nonce="a", now=3)
    [first] = published(out, "inspection.requested")
    assert first["recheck"] is False
    assert published(lane.on_tick(3 + t.scan_recheck_s - 1), "inspection.requested") == []
    lane.on_scan(pid, "queued", 3 + t.scan_recheck_s - 0.5)  # news: the scanner has it
    assert published(lane.on_tick(3 + t.scan_recheck_s + 1), "inspection.requested") == []
    [again] = published(lane.on_tick(3 + 2 * t.scan_recheck_s + 1), "inspection.requested")
    assert again["recheck"] is True and again["passage_id"] == pid
    lane.on_scan(pid, "completed", 100, scan_id=7, result="GREEN")
    assert lane.stage == Stage.AWAITING_VERDICTS
    assert lane.on_scan(pid, "started", 101, scan_id=7) == [] and lane.stage == Stage.AWAITING_VERDICTS
    assert published(lane.on_tick(100 + 3 * t.scan_recheck_s), "inspection.requested") == []


def test_a_fault_closure_never_reopens_what_an_operator_closed() -> None:
    lane = started(LaneLogic("c1", agencies=AG, has_scanner=False))
    lane.set_in_service(False, operator="portlane", reason="gate offline", cause="gate")
    out = lane.set_in_service(False, operator="tech-7", reason="barrier motor replaced")
    assert [a.kind for a in out if isinstance(a, Audit)] == ["lane_closed"]  # recorded although already closed
    lane.set_in_service(True, operator="portlane", reason="gate back online", cause="gate")
    assert not lane.in_service and set(lane.closures) == {"operator"}
    out = lane.set_in_service(True, operator="tech-7", reason="lane back in use")
    assert lane.in_service and "ShowBoard" in types(out)
