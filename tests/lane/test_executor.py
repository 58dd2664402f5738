"""The executor's device workers: an open never waits behind a guidance-board write, and a
close still waits for the red light submitted before it. The events before an action are
written in one outbox transaction (one fsync), before that action.

Virtual devices (drivers/virtual.py) stand for the lane; the board and the I/O module are held
mid-write by the test (an in-process stand-in for a slow 9600-baud frame), so the order is
observed, not timed. The latency on the wire is measured in bench/latency_bench.py.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from portlane.drivers.base import BoardLine, LightColour
from portlane.drivers.virtual_world import VirtualWorld, virtual_world
from portlane.edge.config import parse_site
from portlane.edge.contract.events import DeviceState
from portlane.edge.contract.topics import Topics
from portlane.edge.delivery.events import EventWriter
from portlane.edge.delivery.outbox import Outbox
from portlane.edge.lane.actions import Audit, CloseGate, OpenGate, Publish, SetLight, ShowBoard
from portlane.edge.lane.devices import LaneDevices
from portlane.edge.lane.executor import Executor
from portlane.edge.lane.logic import LaneLogic
from portlane.edge.lane.passage import LaneTimeouts
from portlane.edge.trust.audit import AuditLog

from tests.virtual_lane import site_dict

GUARD_S = 10.0


@dataclass
class Rig:
    world: VirtualWorld
    executor: Executor
    board_held: asyncio.Event  # set: the board write in progress may finish
    light_held: asyncio.Event
    board_busy: asyncio.Event  # set while a board write is in progress
    light_busy: asyncio.Event
    outbox: Outbox
    audit: AuditLog


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    site = parse_site(site_dict(("c1",), url="mqtt://127.0.0.1:1"))
    world = virtual_world("c1")
    devices = LaneDevices(site.lane("c1"), on_sample=lambda s: None, on_health=lambda *a: None)
    for slot in devices.slots.values():
        await slot.device.connect()
    board_held, light_held, board_busy, light_busy = (asyncio.Event() for _ in range(4))
    board_held.set()
    light_held.set()
    assert devices.board is not None
    show, set_light = devices.board.show, devices.io.set_light

    async def slow_show(lines: list[BoardLine]) -> None:
        board_busy.set()
        await board_held.wait()
        await show(lines)
        board_busy.clear()

    async def slow_light(colour: LightColour) -> None:
        light_busy.set()
        await light_held.wait()
        await set_light(colour)
        light_busy.clear()

    devices.board.show = slow_show  # type: ignore[method-assign]  # a slow frame, held by the test
    devices.io.set_light = slow_light  # type: ignore[method-assign]
    tmp = Path(tempfile.mkdtemp(prefix="executor-"))
    outbox = Outbox(tmp / "o.db", site="s", unit="c1")
    audit = AuditLog(tmp / "audit.jsonl")
    logic = LaneLogic("c1", agencies=("customs",), has_scanner=False, timeouts=LaneTimeouts())
    executor = Executor(
        lane="c1",
        logic=logic,
        devices=devices,
        events=EventWriter(outbox, Topics("s", "c1")),
        audit=audit,
        identify=lambda pid: None,
        clock=lambda: 0.0,
    )
    task = asyncio.create_task(executor.run())
    try:
        yield Rig(world, executor, board_held, light_held, board_busy, light_busy, outbox, audit)
    finally:
        board_held.set()
        light_held.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await devices.close()
        outbox.close()
        audit.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _gate(world: VirtualWorld) -> list[str]:
    return [c.action for c in world.commands if c.device == "gate"]


async def test_an_open_does_not_wait_behind_a_board_write(rig: Rig) -> None:
    rig.board_held.clear()
    async with asyncio.timeout(GUARD_S):
        rig.executor.apply([ShowBoard.of(("粤B12345", "green"), ("请稍候 WAIT", "amber"))])
        await rig.board_busy.wait()  # the board frame is on the wire ...
        rig.executor.apply([OpenGate(None, "override")])
        await rig.world.wait_until(lambda: _gate(rig.world) == ["open"])  # ... and the arm opens
    assert rig.board_busy.is_set() and not any(c.device == "board" for c in rig.world.commands)


async def test_a_close_waits_for_the_red_light_submitted_before_it(rig: Rig) -> None:
    rig.light_held.clear()
    async with asyncio.timeout(GUARD_S):
        rig.executor.apply([SetLight("red"), CloseGate(None, "exit")])
        await rig.light_busy.wait()
        for _ in range(50):  # let every other worker run as far as it can
            await asyncio.sleep(0)
        assert _gate(rig.world) == []  # red is not out yet: the arm does not come down
        rig.light_held.set()
        await rig.world.wait_until(lambda: _gate(rig.world) == ["close"])
    assert rig.world.light == LightColour.RED


async def test_the_events_before_an_action_share_one_transaction(rig: Rig) -> None:
    """A release writes its events with one fsync, not one each; an event after an action is
    written after it (the record of what came before an action is on disk before it)."""

    def state(n: int) -> Publish:
        return Publish("device.state", DeviceState(device=f"d{n}", health="online", reason=None))

    commits, seq = rig.outbox.commits, rig.outbox.last_seq
    rig.executor.apply([state(1), state(2), OpenGate(None, "override"), state(3)])
    assert rig.outbox.commits == commits + 2  # [1, 2] before the open, [3] after it
    rig.executor.apply([state(4), Audit("override", actor="tech", reason="a test override"), state(5), state(6)])
    assert rig.outbox.commits == commits + 4  # [4] before the audit entry, [5, 6] after it
    assert rig.outbox.last_seq == seq + 6
    devices = [json.loads(row.payload)["data"]["device"] for row in rig.outbox.peek(after=seq, limit=10)]
    assert devices == ["d1", "d2", "d3", "d4", "d5", "d6"]
