"""No input ends the lane, moves its barrier or reaches its devices unless it is authenticated.

Generated payloads — retained or not, empty, huge, deeply nested, wrong types, bad UTF-8,
forged envelopes and commands, MQTT 5 response topics with wildcards — go to every topic the
lane subscribes to. After each batch the daemon must still be running, nothing may have moved,
and a correctly signed command must still be obeyed. Then the same attacks through a real
broker: a flood of forgeries in front of a valid release, retained junk that is there at every
restart, and a sender that names someone else's topic as its response topic.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from portlane.drivers.base import GatePosition
from portlane.edge.delivery.mqtt import Message, MqttLink
from portlane.edge.demo.broker import BrokerProcess
from portlane.edge.lane.passage import LaneTimeouts, Stage

from tests.strategies import json_value
from tests.virtual_lane import SITE_ID, LaneRig, register, start_lane, stop_lane

TAG = "E200341201930500001"
PREFIX = f"portlane/v1/{SITE_ID}"
COMMANDS = (
    "decision",
    "release",
    "divert",
    "correct_identity",
    "board_message",
    "expected_vehicles",
    "close_lane",
    "open_lane",
    "replay_events",
    "self_destruct",
    "+",
    "#",
    "",
)


def _nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "envelope", "command", "deep", "huge", "utf8"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(json_value)).encode()
    if kind == "deep":
        return _nested(draw(st.integers(min_value=100, max_value=100_000)))
    if kind == "huge":
        return b'{"data": "' + b"x" * draw(st.integers(min_value=70_000, max_value=2_000_000)) + b'"}'
    if kind == "utf8":
        return b'{"cmd": "release", "args": {"agency": "\xff\xfe"}}'
    if kind == "envelope":
        data = draw(
            st.one_of(
                json_value,
                st.fixed_dictionaries(
                    {
                        "passage_id": st.text(max_size=10),
                        "lane": st.sampled_from(["c1", "c2", 7]),
                        "scanner": st.just("xray-1"),
                        "result": st.sampled_from(["GREEN", "RED", "BLUE", None]),
                        "scan_id": st.integers(),
                    }
                ),
            )
        )
        return json.dumps({"type": "portlane.scan.completed", "seq": draw(st.integers()), "data": data}).encode()
    # something shaped like a signed command, with a forged or missing signature
    return json.dumps(
        {
            "v": 1,
            "cmd": draw(st.sampled_from(COMMANDS)),
            "site": SITE_ID,
            "lane": "c1",
            "passage_id": draw(st.one_of(st.none(), st.text(max_size=12))),
            "args": draw(json_value),
            "issued_at": "2026-11-30T00:00:00.000Z",
            "expires_at": "2099-01-01T00:00:00.000Z",
            "nonce": "A" * 22,
            "key_id": "platform-demo-2026",
            "sig": draw(st.sampled_from(["", "AAAA", "A" * 86 + "=="])),
        }
    ).encode()


topics = st.one_of(
    st.sampled_from(COMMANDS).map(lambda c: f"{PREFIX}/c1/cmd/{c}"),
    st.tuples(
        st.sampled_from(["scan.started", "scan.completed", "scan.failed", "scan.queued", "x"]),
        st.sampled_from(["/c1", "/c2", "", "/c1/x"]),  # per-lane scan topics (the lane reads /c1)
    ).map(lambda t: f"{PREFIX}/xray-1/event/{t[0]}{t[1]}"),
    st.text(max_size=30),
)


@pytest.fixture
async def rig(broker: BrokerProcess, tmp_path: Path) -> LaneRig:
    r = await start_lane(broker.url, tmp_path, timeouts=LaneTimeouts(identify_s=1.0, gate_confirm_s=0.3))
    await register(r, TAG, ["粤B12345"])
    yield r
    await stop_lane(r)


async def _waiting_for_a_decision(r: LaneRig) -> str:
    r.world.present_tag(TAG)
    r.world.set_inputs(entry_loop=True, in_position=True)
    await r.until(lambda: r.logic.stage == Stage.AWAITING_DECISION)
    assert r.logic.passage is not None
    return r.logic.passage.id


#: Only bounds a broken run: behind the flood on a loaded machine the arm took up to 7 s.
FLOOD_WITHIN_S = 60.0


def _alive(r: LaneRig) -> None:
    assert not r.tasks[0].done(), "the lane daemon ended"
    running = {t.get_name() for t in asyncio.all_tasks() if not t.done()}
    assert {"c1:dispatcher", "c1:executor", "c1:mqtt", "c1:outbox"} <= running


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
@given(
    batch=st.lists(
        st.tuples(
            topics,
            payloads(),
            st.booleans(),
            st.sampled_from([{}, {"ResponseTopic": "x/#"}, {"ResponseTopic": f"{PREFIX}/platform/expected"}]),
        ),
        min_size=1,
        max_size=8,
    )
)
async def test_generated_input_on_every_subscribed_topic_changes_nothing(
    rig: LaneRig, batch: list[tuple[str, bytes, bool, dict[str, Any]]]
) -> None:
    r = rig
    if r.logic.passage is None:
        await _waiting_for_a_decision(r)
    before = (r.logic.stage, len(r.world.commands), r.logic.passage.id if r.logic.passage else None)
    handled = r.daemon.unit.commands.counters.rejected + r.daemon.unit.commands.counters.accepted
    for topic, payload, retain, props in batch:
        r.daemon.unit._on_message(Message(topic, payload, retain, props))
    # every message is handled (or dropped) before the probe, which goes last through the same inbox
    await r.platform.send("c1", "board_message", lines=[{"text": f"probe {handled}", "colour": "amber"}])
    await r.until(lambda: any(f"probe {handled}" == line.text for line in r.world.board))
    _alive(r)
    gate_cmds = [c for c in r.world.commands[before[1] :] if c.device == "gate"]
    assert gate_cmds == [] and r.world.gate.position == GatePosition.CLOSED
    assert (r.logic.stage, r.logic.passage.id if r.logic.passage else None) == (before[0], before[2])


async def test_a_valid_release_behind_2000_forgeries_is_not_held_back_by_them(rig: LaneRig) -> None:
    r = rig
    pid = await _waiting_for_a_decision(r)
    await r.platform.send("c1", "decision", pid, agency="customs", verdict="release")
    await r.until(lambda: r.logic.passage is not None and r.logic.passage.decisions.get("customs") == "release")
    valid = json.loads(r.platform.command("c1", "decision", pid, agency="border", verdict="release"))
    forged = []
    for i in range(2000):  # trusted key id, plausible fields, signature of another key
        f = dict(valid, nonce=f"{i:022d}", sig=valid["sig"][::-1])
        forged.append(json.dumps(f).encode())
    attacker = MqttLink(r.platform.link.url, client_id="t-attacker")
    task = asyncio.create_task(attacker.run())
    try:
        await attacker.wait_connected()
        # The forgeries are all on the broker before the valid release is sent: it is behind them.
        await asyncio.gather(*(attacker.publish_nowait(f"{PREFIX}/c1/cmd/decision", b) for b in forged))
        audited, t0, cpu0 = r.daemon.unit.audit.entries, time.monotonic(), time.process_time()
        await r.platform.link.publish(f"{PREFIX}/c1/cmd/decision", json.dumps(valid).encode())
        await r.until(lambda: r.world.gate.position == GatePosition.OPEN, within_s=FLOOD_WITHIN_S)
        elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
    finally:
        await attacker.close()
        task.cancel()
    # Not a speed figure: a guard that the flood costs each forgery no more than a signature
    # check. Its work is this process's CPU time (the lane and its broker clients; the broker is
    # another process), not the wall clock, which on a loaded machine measures the others: 1.8-7 s
    # for 0.6-1.0 s of CPU at load 11-14 (a 5 s wall bound failed 3 of 7 runs there). One
    # millisecond of CPU per forgery fails here; a disk write per forgery fails below.
    assert cpu < 2.0, f"the valid release took {cpu:.2f} s of CPU ({elapsed:.2f} s wall) behind the flood"
    # A flood costs counters, not one audit entry and one event per forgery.
    assert len(r.events("command.rejected")) < 200
    assert r.daemon.unit.audit.entries - audited < 200
    _alive(r)


async def test_responses_go_only_to_the_lanes_own_response_topic(rig: LaneRig, broker: BrokerProcess) -> None:
    r = rig
    seen: list[str] = []
    barriers: dict[str, asyncio.Event] = {"t/barrier/0": asyncio.Event(), f"{PREFIX}/c1/response": asyncio.Event()}

    def on(m: Message) -> None:
        seen.append(m.topic)
        if m.topic in barriers:
            barriers[m.topic].set()

    async def barrier(topic: str) -> None:
        """Our own message came back: everything the broker had before it has reached us."""
        await spy.publish(topic, b"")
        async with asyncio.timeout(5):
            await barriers[topic].wait()

    spy = MqttLink(broker.url, client_id="t-spy", subscriptions=["#"], on_message=on)
    task = asyncio.create_task(spy.run())
    try:
        await spy.wait_connected()
        await barrier("t/barrier/0")  # the spy's subscription is in force
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = f"{PREFIX}/platform/expected"
        body = r.platform.command("c1", "board_message", lines=[{"text": "hello", "colour": "green"}])
        await r.platform.link.publish(f"{PREFIX}/c1/cmd/board_message", body, properties=props)
        await r.until(lambda: any(line.text == "hello" for line in r.world.board))
        # The lane's own response arrives; anything it published before (on the same
        # connection, so in order) has arrived too.
        async with asyncio.timeout(5):
            await barriers[f"{PREFIX}/c1/response"].wait()
        assert f"{PREFIX}/platform/expected" not in seen
    finally:
        await spy.close()
        task.cancel()


async def test_retained_junk_on_the_lanes_topics_cannot_stop_a_restarting_lane(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    junk = MqttLink(broker.url, client_id="t-junk")
    task = asyncio.create_task(junk.run())
    await junk.wait_connected()
    for topic, body in [
        (f"{PREFIX}/c1/cmd/decision", b"null"),
        (
            f"{PREFIX}/c1/cmd/expected_vehicles",
            json.dumps({"vehicles": [{"tag_id": TAG, "plates": ["粤A00000"]}]}).encode(),
        ),
        (f"{PREFIX}/xray-1/event/scan.completed/c1", b'{"data": []}'),
        (f"{PREFIX}/xray-1/event/scan.failed/c1", json.dumps({"data": {"lane": "c1", "passage_id": 1}}).encode()),
    ]:
        await junk.publish(topic, body, retain=True)
    try:
        for _restart in range(2):
            r = await start_lane(broker.url, tmp_path)
            try:
                beat = r.daemon.heartbeat
                await r.until(lambda r=r, beat=beat: r.daemon.heartbeat >= beat + 3)  # ticks with the junk delivered
                _alive(r)
                assert TAG not in r.daemon.identifier.registrations  # an unsigned registration is not one
            finally:
                await stop_lane(r)
    finally:
        for topic in (
            f"{PREFIX}/c1/cmd/decision",
            f"{PREFIX}/c1/cmd/expected_vehicles",
            f"{PREFIX}/xray-1/event/scan.completed/c1",
            f"{PREFIX}/xray-1/event/scan.failed/c1",
        ):
            await junk.publish(topic, b"", retain=True)
        await junk.close()
        task.cancel()
