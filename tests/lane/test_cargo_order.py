"""Which passage an occupancy goes to when vehicles pass the arm (``CargoRules._cargo_passes``):
the lane logic alone, on the gate controller's latched count of vehicles through the arm.

The end-to-end cases are in test_lane_cargo.py and the search in test_safety.py; these pin the
two sides of the count: a vehicle through the arm that was no passage's takes the oldest
occupancy waiting, and a passage's own vehicle whose count is read late takes none.
"""

from __future__ import annotations

from typing import Any

from portlane.drivers.cargo_devices import RpmStatus
from portlane.edge.contract.events import PlateRead, RpmOccupancyEvent
from portlane.edge.lane.actions import Action, Publish
from portlane.edge.lane.logic import LaneLogic
from portlane.edge.lane.passage import Identity, Passage, Sensors, Stage

AG = ("customs", "border")
ID = Identity(plates=(PlateRead(text="粤B12345", kind="cn", confidence=0.97),), confidence=0.97)
HEALTHY = RpmStatus(occupied=False, occupancy_count=0)
OPEN = {"gate_open": True, "gate_closed": False}


def occupancy(n: int) -> RpmOccupancyEvent:
    return RpmOccupancyEvent(
        passage_id=None,
        portal="c1/rpm",
        occupancy=n,
        started="2026-12-07T09:00:00Z",
        ended="2026-12-07T09:00:03Z",
        live_s=3.0,
        gamma_counts=(900, 910),
        neutron_counts=(1, 0),
        gamma_background_cps=(300.0, 303.0),
        neutron_background_cps=(0.3, 0.2),
        gamma_alarm=False,
        neutron_alarm=False,
        gamma_sigma=0.4,
        verdict="clear",
    )


def published(actions: list[Action], type_: str) -> list[dict[str, Any]]:
    return [a.data.model_dump() for a in actions if isinstance(a, Publish) and a.type == type_]


def lane_with_a_released_truck() -> tuple[LaneLogic, str]:
    """A cargo lane with a portal (arm passes latched at 7, exit clears at 500) whose truck took
    occupancy 1 and was released; the arm is reported open."""
    lane = LaneLogic("c1", agencies=AG, has_scanner=False, rpm="c1/rpm")
    lane.start(Sensors(arm_passes=7, exit_clears=500), [], 0)
    lane.on_rpm_status(HEALTHY, 0)
    lane.on_sensors(Sensors(entry_loop=True, arm_passes=7, exit_clears=500), 1)
    assert lane.passage is not None
    pid = lane.passage.id
    lane.on_occupancy(occupancy(1), 1.5)
    lane.on_sensors(Sensors(entry_loop=True, in_position=True, arm_passes=7, exit_clears=500), 2)
    lane.on_identified(pid, ID, 3)
    lane.on_decision(pid, "customs", "release", nonce="a", now=4)
    lane.on_decision(pid, "border", "release", nonce="b", now=4)
    assert lane.stage == Stage.RELEASED
    lane.on_sensors(Sensors(in_position=True, arm_passes=7, exit_clears=500, **OPEN), 5)
    return lane, pid


def test_a_passage_whose_count_is_read_late_leaves_the_next_trucks_occupancy_alone() -> None:
    """The exit loop's counter says the truck left before the gate controller's count of it is
    read (two controllers, one noisy bus): the count that comes afterwards is that truck's, not a
    vehicle without a passage — the occupancy of the truck behind it stays waiting for it."""
    lane, pid = lane_with_a_released_truck()
    out = lane.on_sensors(Sensors(arm_passes=7, exit_clears=501, **OPEN), 6)
    assert [d["passage_id"] for d in published(out, "passage.completed")] == [pid]
    assert lane.passage is None
    lane.on_occupancy(occupancy(2), 7)  # the next truck passed the portal, not yet at the loop
    out = lane.on_sensors(Sensors(arm_passes=8, exit_clears=501), 8)  # the late count
    assert published(out, "lane.exception") == [] and published(out, "rpm.occupancy") == []
    out = lane.on_sensors(Sensors(entry_loop=True, arm_passes=8, exit_clears=501), 9)
    assert lane.passage is not None and lane.passage.id != pid
    assert [(d["passage_id"], d["occupancy"]) for d in published(out, "rpm.occupancy")] == [(lane.passage.id, 2)]


def test_a_vehicle_through_the_arm_behind_the_passages_own_takes_the_oldest_waiting_occupancy() -> None:
    """Two vehicles through one release: the second one's occupancy, waiting, is its own — it is
    published unmatched, not given to the next passage."""
    lane, pid = lane_with_a_released_truck()
    lane.on_occupancy(occupancy(2), 5.5)  # the tailgater passed the portal
    out = lane.on_sensors(Sensors(arm_passes=9, exit_clears=500, **OPEN), 6)  # both under the arm
    unmatched = [e for e in published(out, "lane.exception") if e["kind"] == "rpm_occupancy_unmatched"]
    assert [e["detail"] for e in unmatched] == ["occupancy 2: a vehicle went through the arm without a passage"]
    assert [d["occupancy"] for d in published(out, "rpm.occupancy")] == [2]
    lane.on_sensors(Sensors(arm_passes=9, exit_clears=501, **OPEN), 7)
    assert lane.passage is None and not lane.cargo.pending
    lane.on_sensors(Sensors(arm_passes=9, exit_clears=501), 8)
    lane.on_sensors(Sensors(entry_loop=True, arm_passes=9, exit_clears=501), 9)
    assert lane.passage is not None and lane.passage.id != pid and lane.passage.cargo.occupancy is None


def test_a_controller_whose_count_starts_again_is_not_taken_for_traffic() -> None:
    """A replaced gate controller counts from 0 again: the jump (16-bit wrap) is no vehicles,
    and the occupancy waiting for the next truck stays there."""
    lane, _pid = lane_with_a_released_truck()
    lane.on_sensors(Sensors(arm_passes=8, exit_clears=501, **OPEN), 6)
    lane.on_occupancy(occupancy(2), 7)
    out = lane.on_sensors(Sensors(arm_passes=0, exit_clears=501), 8)
    assert published(out, "lane.exception") == [] and len(lane.cargo.pending) == 1


def restarted(p_json: dict[str, Any], arm_passes: int) -> LaneLogic:
    """A new process on the journalled passage, the controller's count at start ``arm_passes``."""
    lane = LaneLogic("c1", agencies=AG, has_scanner=False, rpm="c1/rpm")
    lane.start(Sensors(arm_passes=arm_passes, exit_clears=500), [Passage.from_json(p_json)], 20)
    lane.on_rpm_status(HEALTHY, 20)
    return lane


def test_a_restart_gives_a_released_truck_still_behind_the_arm_its_occupancy_again_but_not_one_gone() -> None:
    """kill -9 after the release, before the truck went under the arm: the restart closes the
    arm and the truck's new passage takes its occupancy again. Had the controller counted it
    through the arm while the lane was down, it has gone: the next truck's passage takes nothing."""
    lane, _pid = lane_with_a_released_truck()
    assert lane.passage is not None
    journalled = lane.passage.to_json()
    still_there = restarted(journalled, arm_passes=7)
    assert [occ.occupancy for _at, occ in still_there.cargo.pending] == [1]
    gone = restarted(journalled, arm_passes=8)
    assert not gone.cargo.pending


def test_counts_the_controller_missed_do_not_let_a_later_vehicle_through_the_arm_keep_its_occupancy() -> None:
    """The controller missed the count of two trucks in a row (the lane saw them leave on the exit
    loop): that owes nothing later — a vehicle through the arm on an override afterwards is still
    counted as one that was no passage's, and its occupancy is not left to the next truck."""
    lane, _pid = lane_with_a_released_truck()
    lane.on_sensors(Sensors(arm_passes=7, exit_clears=501, **OPEN), 6)  # gone, never counted
    lane.on_sensors(Sensors(arm_passes=7, exit_clears=501), 7)
    lane.on_sensors(Sensors(entry_loop=True, arm_passes=7, exit_clears=501), 8)
    assert lane.passage is not None
    second = lane.passage.id
    lane.on_occupancy(occupancy(2), 8.5)
    lane.on_sensors(Sensors(entry_loop=True, in_position=True, arm_passes=7, exit_clears=501), 9)
    lane.on_identified(second, ID, 10)
    lane.on_decision(second, "customs", "release", nonce="c", now=11)
    lane.on_decision(second, "border", "release", nonce="d", now=11)
    lane.on_sensors(Sensors(in_position=True, arm_passes=7, exit_clears=501, **OPEN), 12)
    lane.on_sensors(Sensors(arm_passes=7, exit_clears=502, **OPEN), 13)  # gone, never counted
    assert lane.passage is None
    lane.on_occupancy(occupancy(3), 14)  # a vehicle through the arm left open, no passage
    out = lane.on_sensors(Sensors(arm_passes=8, exit_clears=502, **OPEN), 15)
    lane.on_sensors(Sensors(arm_passes=8, exit_clears=502), 16)
    # Ahead by one at most: the late count of the second truck is taken for it, and the next
    # count is the vehicle's that was no passage's.
    out = lane.on_sensors(Sensors(arm_passes=9, exit_clears=502), 17)
    unmatched = [e["detail"] for e in published(out, "lane.exception") if e["kind"] == "rpm_occupancy_unmatched"]
    assert unmatched == ["occupancy 3: a vehicle went through the arm without a passage"]
