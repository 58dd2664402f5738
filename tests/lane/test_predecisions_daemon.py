"""Pre-decisions in the running lane daemon (issue 20): signed commands over a real broker, then
the broker killed — the declared truck is released by the lane on its own, the undeclared one
holds (``platform_unreachable``), and once the broker is back every event is delivered.

Virtual devices (no cameras: the plates are the e-card's registration, flagged 0.9), the
platform's commands signed with the demo key.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from portlane.drivers.base import GatePosition
from portlane.edge.demo.broker import BrokerProcess
from portlane.edge.lane.passage import LaneTimeouts, Stage

from tests.declarations import Declaration
from tests.virtual_lane import AGENCIES, WITHIN_S, LaneRig, start_lane, stop_lane

DECLARED_TAG, DECLARED_PLATE = "E200341201930500001", "粤B12345"
OTHER_TAG, OTHER_PLATE = "E200341201930500002", "粤B67890"


async def _until_delivered(r: LaneRig, what: str, send: Callable[[], Awaitable[None]]) -> None:
    """Send until the lane has it: a command published before the broker has the lane's
    subscription is lost, and a platform re-sends what went unanswered."""
    async with asyncio.timeout(WITHIN_S):
        while True:
            await send()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await r.daemon.wait_for(lambda: _has(r, what))
                    return


def _has(r: LaneRig, what: str) -> bool:
    if what == "registrations":
        return {DECLARED_TAG, OTHER_TAG} <= set(r.daemon.identifier.registrations)
    return len(r.logic.predecisions) == len(AGENCIES)


async def _arrive(r: LaneRig, tag: str) -> None:
    r.world.present_tag(tag)
    r.world.set_inputs(entry_loop=True)
    await r.until(lambda: r.logic.passage is not None)
    r.world.set_inputs(in_position=True)


async def _drive_through(r: LaneRig) -> None:
    r.world.set_inputs(entry_loop=False, in_position=False, photocell=True, safety_loop=True)
    r.world.set_inputs(photocell=False, safety_loop=False, exit_loop=True)
    r.world.set_inputs(exit_loop=False)
    await r.until(lambda: r.logic.passage is None and r.world.gate.position == GatePosition.CLOSED)


async def test_a_declared_truck_goes_through_with_the_broker_down_and_an_undeclared_one_holds(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    timeouts = LaneTimeouts(identify_s=1.0, gate_confirm_s=0.3, decision_s=1.0)
    r = await start_lane(broker.url, tmp_path, timeouts=timeouts)
    try:
        vehicles = [
            {"tag_id": DECLARED_TAG, "plates": [DECLARED_PLATE]},
            {"tag_id": OTHER_TAG, "plates": [OTHER_PLATE]},
        ]
        await _until_delivered(
            r, "registrations", lambda: r.platform.send("c1", "expected_vehicles", vehicles=vehicles)
        )
        now = time.time()
        declaration = Declaration(
            plates=(DECLARED_PLATE,),
            tag_id=DECLARED_TAG,
            containers=(),  # no container cameras on this lane
            weight_kg=None,  # no weighbridge
            window=(now - 60, now + 3600),
            valid_until=now + 7200,
        )

        async def declare() -> None:
            for agency in AGENCIES:
                await r.platform.send("c1", "predecision", **declaration.args(agency))

        await _until_delivered(r, "predecisions", declare)
        await r.until(lambda: r.daemon.unit.outbox.stats().depth == 0)

        await broker.stop()  # the platform is unreachable from here on
        await r.until(lambda: not r.daemon.unit.link.connected)

        await _arrive(r, DECLARED_TAG)
        await r.until(lambda: r.world.gate.position == GatePosition.OPEN)
        await _drive_through(r)
        [done] = r.events("passage.completed")
        assert done["outcome"] == "released" and done["release_basis"] == "predecision"
        assert done["predecision_ids"] == ["pd-customs", "pd-border"]
        decided = r.events("passage.decided")
        assert [(d["agency"], d["basis"]) for d in decided] == [("customs", "predecision"), ("border", "predecision")]

        await _arrive(r, OTHER_TAG)
        held = await r.until_event("lane.exception", lambda e: e["kind"] == "platform_unreachable")
        assert r.logic.stage == Stage.AWAITING_DECISION and r.world.gate.position == GatePosition.CLOSED
        [_, other] = r.events("vehicle.identified")
        assert other["passage_id"] == held["passage_id"]
        assert [x["reason"] for x in other["predecision_refusals"]] == ["not_declared"]

        await broker.start()
        await r.until(lambda: r.daemon.unit.link.connected and r.daemon.unit.outbox.stats().depth == 0)
    finally:
        await stop_lane(r)
