"""The lane daemon on virtual devices and a real broker: a whole passage, the executor's guards
through the real class, gate movements confirmed by the controller, and restarts.

The virtual backend (drivers/virtual.py) plays the lane's devices in-process: the test sets the
loops and photocells and reads what the gate controller was told; the platform's commands are
signed and go through the broker like the real ones.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from portlane.drivers.base import GatePosition, LightColour
from portlane.edge.contract.events import UnitStatus
from portlane.edge.delivery.mqtt import Message, MqttLink
from portlane.edge.demo.broker import BrokerProcess
from portlane.edge.errors import StateError
from portlane.edge.journal import Journal
from portlane.edge.lane.actions import CloseGate, OpenGate
from portlane.edge.lane.passage import LaneTimeouts, Stage

from tests.virtual_lane import WITHIN_S, LaneRig, arrive_and_identify, register, start_lane, stop_lane

TAG = "E200341201930500001"
PLATE = "粤B12345"


@pytest.fixture
async def rig(broker: BrokerProcess, tmp_path: Path) -> LaneRig:
    r = await start_lane(broker.url, tmp_path, timeouts=LaneTimeouts(identify_s=1.0, gate_confirm_s=0.3))
    await register(r, TAG, [PLATE])
    yield r
    await stop_lane(r)


async def release(r: LaneRig, pid: str) -> None:
    for agency in ("customs", "border"):
        await r.platform.send("c1", "decision", pid, agency=agency, verdict="release")
    await r.until(lambda: r.world.gate.position == GatePosition.OPEN)


async def test_a_passage_end_to_end_on_virtual_devices(rig: LaneRig) -> None:
    r = rig
    pid = await arrive_and_identify(r, TAG)
    [ident] = r.events("vehicle.identified")
    assert ident["tag_id"] == TAG and [p["text"] for p in ident["plates"]] == [PLATE]
    await release(r, pid)
    await r.until(lambda: r.world.light.value == "green")
    # The vehicle drives under the arm and out: the arm comes down behind it.
    r.world.set_inputs(entry_loop=False, in_position=False, photocell=True, safety_loop=True)
    r.world.set_inputs(photocell=False, safety_loop=False, exit_loop=True)
    r.world.set_inputs(exit_loop=False)
    await r.until(lambda: r.logic.passage is None and r.world.gate.position == GatePosition.CLOSED)
    await r.until_event("gate.moved", lambda m: m["action"] == "close")
    [done] = r.events("passage.completed")
    assert done["outcome"] == "released" and {"released", "gate_opened", "exited"} <= set(done["stages"])
    moved = [(m["action"], m["cause"]) for m in r.events("gate.moved")]
    assert moved == [("open", "release"), ("close", "exit")]


async def test_gate_moved_waits_for_the_controller_and_an_ignored_open_is_sent_again(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    # The open is confirmed within 2 s, else sent again (then 4 s): with the rig's 0.3 s a lane
    # slowed down on a loaded machine could send the retry before this test looked, or a third
    # open before it saw the second one confirmed.
    r = await start_lane(broker.url, tmp_path, timeouts=LaneTimeouts(identify_s=1.0, gate_confirm_s=2.0))
    try:
        await register(r, TAG, [PLATE])
        pid = await arrive_and_identify(r, TAG)
        r.world.faults("gate").ignore_commands = 1  # line noise ate the first open: the arm did not move
        for agency in ("customs", "border"):
            await r.platform.send("c1", "decision", pid, agency=agency, verdict="release")
        await r.until(lambda: r.logic.stage == Stage.RELEASED)
        assert r.events("gate.moved") == [] and r.world.light.value != "green"
        await r.until(lambda: r.world.gate.position == GatePosition.OPEN)
        opens = [c.action for c in r.world.commands if c.device == "gate" and c.action.startswith("open")]
        assert opens == ["open (ignored)", "open"]  # the first was ignored, the retry moved the arm
        await r.until(lambda: bool(r.events("gate.moved")) and r.world.light.value == "green")
    finally:
        await stop_lane(r)


async def test_the_executor_refuses_an_open_without_authority_and_a_close_onto_a_vehicle(rig: LaneRig) -> None:
    """The guards of the real Executor, fed actions the logic would never produce."""
    r = rig
    ex = r.daemon.executor
    await ex.execute(OpenGate("no-such-passage", "release"))
    assert r.world.gate.position == GatePosition.CLOSED and ex.counters.gate_opens_unauthorised_refused == 1
    # An override opens (it was audited before the action was produced) ...
    await ex.execute(OpenGate(None, "override"))
    assert r.world.gate.position == GatePosition.OPEN
    # ... and a close with something under the arm is refused on a fresh read of the
    # controller, whatever the logic's last sample said.
    r.world.set_inputs(photocell=True)
    await ex.execute(CloseGate(None, "exit"))
    assert r.world.gate.position == GatePosition.OPEN and ex.counters.closes_refused_occupied == 1
    assert r.logic.gate.commanded == "open"  # the logic knows the arm is still up
    r.world.set_inputs(photocell=False)
    await ex.execute(CloseGate(None, "exit"))
    assert r.world.gate.position == GatePosition.CLOSED


async def test_a_lane_restarted_with_the_arm_up_closes_it_and_closes_out_the_passage(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    """kill -9 with the arm open after a release: the next process must not leave the arm up
    nor give the next vehicle a passage through an open arm."""
    r = await start_lane(broker.url, tmp_path, timeouts=LaneTimeouts(identify_s=1.0, gate_confirm_s=0.3))
    await register(r, TAG, [PLATE])
    pid = await arrive_and_identify(r, TAG)
    await release(r, pid)
    # The process dies: no shutdown path runs (cancel the run task without setting stop).
    r.tasks[0].cancel()
    await asyncio.gather(r.tasks[0], return_exceptions=True)
    await r.platform.link.close()
    r.tasks[1].cancel()
    on_disk = Journal(tmp_path / "journal-c1.db")
    assert pid in on_disk.records()
    on_disk.close()
    # The vehicle backed off meanwhile; the arm is still up.
    r.world.set_inputs(entry_loop=False, in_position=False)
    assert r.world.gate.position == GatePosition.OPEN
    r2 = await start_lane(broker.url, tmp_path, timeouts=LaneTimeouts(identify_s=1.0, gate_confirm_s=0.3))
    try:
        await r2.until(lambda: r2.world.gate.position == GatePosition.CLOSED)
        [done] = [d for d in r2.events("passage.completed") if d["passage_id"] == pid]
        assert done["outcome"] == "recovered" and "restarted" in done["reason"]
        assert r2.world.light.value == "red"
    finally:
        await stop_lane(r2)


async def test_a_lane_restarted_with_something_under_the_open_arm_holds(broker: BrokerProcess, tmp_path: Path) -> None:
    r = await start_lane(broker.url, tmp_path)
    try:
        await r.daemon.executor.execute(OpenGate(None, "override"))
        r.world.set_inputs(photocell=True)
    finally:
        await stop_lane(r)
    r2 = await start_lane(broker.url, tmp_path)
    try:
        await r2.until(lambda: r2.logic.holding == "gate_open_at_start")
        assert [e["kind"] for e in r2.events("lane.exception")] == ["gate_open_at_start"]
        r2.world.set_inputs(entry_loop=True)  # a vehicle waits: no passage while holding
        r2.world.set_inputs(photocell=False)
        await r2.until(lambda: r2.world.gate.position == GatePosition.CLOSED)
        await r2.until(lambda: r2.logic.passage is not None)  # now it is taken, arm down
        assert r2.logic.holding is None
    finally:
        await stop_lane(r2)


async def test_a_lost_green_is_sent_again_until_the_module_shows_it(rig: LaneRig) -> None:
    """Drivers go on green: a light command lost on the wire must not stall the lane."""
    r = rig
    pid = await arrive_and_identify(r, TAG)
    await release(r, pid)
    await r.until(lambda: r.world.light.value == "green")
    assert r.daemon.executor.counters.resent.get("SetLight", 0) == 0
    r.world.light = LightColour.RED  # the module restarted (or the command never arrived)
    await r.until(lambda: r.world.light.value == "green")
    assert r.daemon.executor.counters.resent["SetLight"] == 1


async def test_closing_the_lane_updates_its_retained_status(rig: LaneRig, broker: BrokerProcess) -> None:
    r = rig
    statuses: list[dict[str, object]] = []
    got = asyncio.Event()

    def on(msg: Message) -> None:
        fields = UnitStatus.fields_of(json.loads(msg.payload))  # the envelope's data (unit.status)
        assert fields is not None
        statuses.append(fields)
        got.set()

    watcher = MqttLink(broker.url, client_id="t-status", subscriptions=["portlane/v1/t-site/c1/status"], on_message=on)
    task = asyncio.create_task(watcher.run())
    try:
        async with asyncio.timeout(WITHIN_S):
            while not statuses or statuses[-1].get("in_service") is not True:
                got.clear()
                await got.wait()
        await r.platform.send("c1", "close_lane", reason="maintenance of the barrier motor")
        await r.until(lambda: not r.logic.in_service)
        async with asyncio.timeout(WITHIN_S):
            while statuses[-1].get("in_service") is not False:
                got.clear()
                await got.wait()
    finally:
        await watcher.close()
        task.cancel()


async def test_a_lane_the_outbox_closed_takes_vehicles_again_once_it_accepts_events(
    broker: BrokerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk-full chaos scenario: a lane that could not record events took itself out of
    service and stayed out after space came back. Here the outbox is full (capacity 4, the
    broker gone); once the broker is back and the queue drains, the lane re-opens by itself."""
    from portlane.edge.lane import daemon as lane_daemon

    monkeypatch.setattr(lane_daemon, "OUTBOX_RETRY_S", 0.0)  # try on every tick
    r = await start_lane(broker.url, tmp_path, outbox={"capacity": 4, "overflow": "reject_new"})
    try:
        await r.until(lambda: r.daemon.unit.outbox.stats().depth == 0)
        await broker.stop()
        await r.until(lambda: not r.daemon.unit.link.connected)
        for _ in range(3):  # vehicles arrive and back off: events the outbox must hold
            r.world.set_inputs(entry_loop=True)
            await r.until(lambda: r.logic.passage is not None or not r.logic.in_service)
            r.world.set_inputs(entry_loop=False)
            if not r.logic.in_service:
                break
            await r.until(lambda: r.logic.passage is None)
        await r.until(lambda: not r.logic.in_service)
        assert r.daemon.unit.outbox.stats().refused >= 1
        await broker.start()
        await r.until(lambda: r.logic.in_service)
        assert r.daemon.unit.outbox.stats().depth <= 4
    finally:
        await stop_lane(r)


async def test_a_journal_it_cannot_write_closes_the_lane_and_the_vehicle_under_way_still_goes_through(
    broker: BrokerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk-full chaos scenario ended the lane daemon: the passage journal's write raised
    "database or disk is full" out of ``apply``. Now the lane takes itself out of service (it
    could not resolve a passage after a restart), lets the released vehicle through, and
    re-opens by itself once the journal is written again."""
    r = await start_lane(broker.url, tmp_path, timeouts=LaneTimeouts(identify_s=1.0, gate_confirm_s=0.3))
    try:
        await register(r, TAG, [PLATE])
        pid = await arrive_and_identify(r, TAG)
        journal = r.daemon.journal
        full = {"on": True}
        write = journal.sync

        def sync(records: dict[str, Any], *, flush: bool = True) -> None:  # its own failure: tests/lane/test_journal.py
            if full["on"]:
                raise StateError(str(journal.path), "cannot write the journal (database or disk is full)", "free space")
            write(records, flush=flush)

        monkeypatch.setattr(journal, "sync", sync)
        await release(r, pid)
        assert not r.logic.in_service and "journal" in r.logic.closures
        r.world.set_inputs(entry_loop=False, in_position=False, photocell=True, safety_loop=True)
        r.world.set_inputs(photocell=False, safety_loop=False, exit_loop=True)
        r.world.set_inputs(exit_loop=False)
        await r.until(lambda: r.logic.passage is None)
        assert [e["outcome"] for e in r.events("passage.completed")] == ["released"]
        full["on"] = False  # space comes back
        r.world.set_inputs(lamp_ok=False)  # any change: the next apply writes the journal
        await r.until(lambda: r.logic.in_service)
    finally:
        await stop_lane(r)


async def test_a_lane_stopped_after_completing_a_passage_but_before_clearing_its_journal_completes_it_once(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    """kill -9 between writing passage.completed and clearing the journal (the chaos lane_kill
    scenario showed 25 completions for 24 vehicles): the restarted lane must not recover it."""
    r = await start_lane(broker.url, tmp_path, timeouts=LaneTimeouts(identify_s=1.0, gate_confirm_s=0.3))
    await register(r, TAG, [PLATE])
    pid = await arrive_and_identify(r, TAG)
    await release(r, pid)
    r.world.set_inputs(entry_loop=False, in_position=False, photocell=True, safety_loop=True)
    r.world.set_inputs(photocell=False, safety_loop=False, exit_loop=True)
    assert r.logic.passage is not None
    record = r.logic.passage.to_json()  # what the journal held just before the completion
    r.world.set_inputs(exit_loop=False)
    await r.until(lambda: r.logic.passage is None and r.world.gate.position == GatePosition.CLOSED)
    await stop_lane(r)
    journal = Journal(tmp_path / "journal-c1.db")
    journal.sync({pid: record})  # as if the process had died before the journal was cleared
    journal.close()
    r2 = await start_lane(broker.url, tmp_path, timeouts=LaneTimeouts(identify_s=1.0, gate_confirm_s=0.3))
    try:
        await r2.until(lambda: r2.logic.started)
        assert r2.logic.passage is None and r2.logic.in_service
        assert r2.events("passage.completed") == []
        # The next vehicle gets a passage of its own.
        r2.world.set_inputs(entry_loop=True)
        await r2.until(lambda: r2.logic.passage is not None)
        assert r2.logic.passage is not None and r2.logic.passage.id != pid
    finally:
        await stop_lane(r2)


async def test_an_operators_closure_survives_a_restart_and_no_fault_recovery_reopens_it(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    """A technician closes the lane; a restart (``config apply``, SIGTERM, a power cut) must not
    put it back in service, nor must the gate coming back online after a fault: only an
    operator's ``lane open`` does (issue 24)."""
    r = await start_lane(broker.url, tmp_path, timeouts=LaneTimeouts(identify_s=1.0, gate_confirm_s=0.3))
    try:
        await r.until(lambda: r.logic.started)
        r.daemon.set_in_service(False, operator="tech-7", reason="barrier motor replaced")
        assert not r.logic.in_service
    finally:
        await stop_lane(r)
    r2 = await start_lane(broker.url, tmp_path, timeouts=LaneTimeouts(identify_s=1.0, gate_confirm_s=0.3))
    try:
        await r2.until(lambda: r2.logic.started)
        assert not r2.logic.in_service and set(r2.logic.closures) == {"operator"}
        assert r2.logic.closures["operator"].operator == "tech-7"
        # A fault and its recovery come and go: the operator's closure stays.
        r2.world.faults("gate").unplugged = True
        await r2.until(lambda: "gate" in r2.logic.closures)
        r2.world.faults("gate").unplugged = False
        await r2.until(lambda: "gate" not in r2.logic.closures)
        assert not r2.logic.in_service
        # A vehicle on the entry loop gets no passage.
        r2.world.set_inputs(entry_loop=True)
        await r2.until(lambda: r2.logic.sensors.entry_loop)
        assert r2.logic.passage is None
        r2.world.set_inputs(entry_loop=False)
        assert r2.daemon.set_in_service(True, operator="tech-7", reason="motor tested, lane back in use")
    finally:
        await stop_lane(r2)
    r3 = await start_lane(broker.url, tmp_path, timeouts=LaneTimeouts(identify_s=1.0, gate_confirm_s=0.3))
    try:
        await r3.until(lambda: r3.logic.started)
        assert r3.logic.in_service  # the reopening is journalled too
    finally:
        await stop_lane(r3)


async def test_the_journal_waits_for_the_disk_only_before_a_device_moves(rig: LaneRig) -> None:
    """An agency's decision before the last moves nothing: its journal write is committed
    without an fsync (it is in the file for a restart; a power cut may take it). The last
    decision opens the arm: that write is flushed, and before the open frame."""
    r = rig
    pid = await arrive_and_identify(r, TAG)
    journal = r.daemon.journal
    flushes: list[tuple[bool, int]] = []  # (flush asked for, gate commands sent so far)
    sync = journal.sync

    def watched(records: dict[str, dict[str, Any]], *, flush: bool = True) -> None:
        flushes.append((flush, len([c for c in r.world.commands if c.device == "gate"])))
        sync(records, flush=flush)

    journal.sync = watched  # type: ignore[method-assign]
    flushed, unflushed = journal.flushed, journal.unflushed
    await r.platform.send("c1", "decision", pid, agency="customs", verdict="release")
    await r.until(lambda: r.logic.passage is not None and r.logic.passage.decisions.get("customs") == "release")
    assert (journal.flushed, journal.unflushed) == (flushed, unflushed + 1)
    on_disk = Journal(journal.path)  # written all the same: a crash of the process keeps it
    try:
        assert on_disk.records()[pid]["decisions"] == {"customs": "release"}
    finally:
        on_disk.close()
    opens_before = len([c for c in r.world.commands if c.device == "gate"])
    await r.platform.send("c1", "decision", pid, agency="border", verdict="release")
    await r.until(lambda: r.world.gate.position == GatePosition.OPEN)
    assert journal.flushed >= flushed + 1
    [(_, gate_commands)] = [f for f in flushes if f[0]][:1]
    assert gate_commands == opens_before  # the flushed write came before the open frame


async def test_the_decisions_waiting_together_share_one_flush_per_store_before_the_open(rig: LaneRig) -> None:
    """Both agencies' decisions reach the lane before it handles the first: one dispatcher step
    records both (audit entries, events, journal) and flushes each store once, before the open
    frame goes out (delivery/flush.py); their nonces are on disk as each is verified."""
    r = rig
    pid = await arrive_and_identify(r, TAG)
    unit = r.daemon.unit
    gate_commands = lambda: len([c for c in r.world.commands if c.device == "gate"])  # noqa: E731
    before = gate_commands()
    flushed: list[tuple[str, int]] = []  # (file, gate commands sent when it was flushed)
    for store in (unit.audit, unit.outbox, r.daemon.journal):

        def noted(flush: Any = store.flush, name: str = store.path.name) -> None:
            flushed.append((name, gate_commands()))
            flush()

        setattr(store, "flush", noted)  # noqa: B010 - a bound method replaced on the instance
    owed: list[str] = []
    owe = unit.flushes.owe

    def noted_owe(store: Any) -> None:
        owed.append(store.path.name)
        owe(store)

    unit.flushes.owe = noted_owe  # type: ignore[method-assign]
    topic = f"portlane/v1/{r.site.site.id}/c1/cmd/decision"
    for agency in ("customs", "border"):  # as the broker hands them over back to back
        payload = r.platform.command("c1", "decision", pid, agency=agency, verdict="release")
        unit._on_message(Message(topic, payload, False, {}))
    await r.until(lambda: r.world.gate.position == GatePosition.OPEN)
    assert sorted(name for name, _ in flushed) == ["audit.jsonl", "journal-c1.db", "outbox-c1.db"]
    assert {sent for _, sent in flushed} == {before}  # all on disk before the open frame
    # A nonce is never left to the group: it is on disk before anything its command causes is
    # written, so a power cut cannot keep an effect without its nonce (a replay).
    assert owed and "nonces-c1.db" not in owed
    assert [e["agency"] for e in r.events("passage.decided")] == ["customs", "border"]
