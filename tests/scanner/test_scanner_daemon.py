"""The shared scanner daemon against its PLC simulator and a real broker.

Lanes' ``inspection.requested`` events go in; ``scan.*`` events come out, one vehicle at a
time, never fired with the exclusion zone open, and a PLC fault gives every queued vehicle a
defined outcome (policy ``divert``: ``scan.failed`` at once, so each lane diverts).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from portlane.edge.config import parse_site
from portlane.edge.contract.events import DeviceState
from portlane.edge.delivery.mqtt import Message, MqttLink
from portlane.edge.demo.broker import BrokerProcess
from portlane.edge.demo.observer import EventObserver
from portlane.edge.journal import Journal
from portlane.edge.scanner.daemon import ScannerDaemon
from portlane.edge.trust.authority import Authority
from portlane.edge.trust.commands import CommandSigner
from portlane.edge.trust.events import verify_event
from portlane.edge.trust.keys import load_unit_signer
from portlane.edge.trust.pki import provision_unit_keys
from portlane.sim_devices.scanner import PlcState, ScannerWorld, start_scanner

SITE = "t-site"
DEMO_KEYS = yaml.safe_load((Path(__file__).resolve().parents[2] / "firmware_config" / "demo_keys.yaml").read_text())


def _site(link: dict[str, Any], policy: str, keys: Path) -> Any:
    """Three lanes and their scanner, each with a signing key (private halves under ``keys``)."""
    dummy = {"backend": "modbus_tcp", "link": {"kind": "tcp", "host": "127.0.0.1", "port": 9}}
    lanes = [
        {
            "id": lid,
            "kind": "cargo",
            "agencies": ["customs"],
            "scanner": "xray-1",
            "devices": {"gate": dummy, "io": dummy},
        }
        for lid in ("c1", "c2", "c3")
    ]
    raw = {
        "site": {"id": SITE, "name": "test"},
        "platform": {"keys": [{"id": DEMO_KEYS["key_id"], "public_key": DEMO_KEYS["public_key"]}]},
        "agencies": ["customs"],
        "lanes": lanes,
        "scanners": [
            {
                "id": "xray-1",
                "lanes": ["c1", "c2", "c3"],
                "fault_policy": policy,
                "scan_timeout_s": 20,
                "device": {"backend": "modbus_tcp", "link": link, "poll_s": 0.02},
            }
        ],
    }
    return parse_site(provision_unit_keys(raw, keys))


@pytest.fixture
async def rig(broker: BrokerProcess, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[dict[str, Any]]:
    world = ScannerWorld(time_factor=0.01, warmup_s=0.0, scan_s=(20.0, 30.0), seed=1)
    world.forced_result = 1
    sim = await start_scanner(world)
    site = _site(sim.link, getattr(request, "param", "divert"), tmp_path / "keys")
    lane_keys = {lane.id: load_unit_signer(lane.key, unit=lane.id) for lane in site.lanes if lane.key is not None}
    daemon = ScannerDaemon(site, site.scanners[0], state_dir=tmp_path, broker_url=broker.url)
    obs = EventObserver(broker.url, SITE)
    lane_link = MqttLink(broker.url, client_id="fake-lanes")
    stop = asyncio.Event()
    tasks = [asyncio.create_task(x) for x in (world.run(), daemon.run(stop), obs.link.run(), lane_link.run())]
    await obs.link.wait_subscribed()
    await lane_link.wait_connected()
    await daemon.unit.link.wait_subscribed()
    seq = {"n": 0}

    async def request_scan(lane: str, pid: str, *, signed_by: str | None = None) -> None:
        """Publish ``lane``'s inspection request, signed with ``signed_by``'s key (default: the
        lane's own; ``""``: unsigned)."""
        seq["n"] += 1
        env = {
            "specversion": "1.0",
            "id": f"{SITE}/{lane}/{seq['n']}",
            "source": f"portlane://{SITE}/{lane}",
            "type": "portlane.inspection.requested",
            "time": "2026-11-23T00:00:00.000Z",
            "seq": seq["n"],
            "data": {"passage_id": pid, "lane": lane, "method": "xray", "priority": 0, "vehicle_ref": "CSQU3054383"},
        }
        signer = lane if signed_by is None else signed_by
        if signer:
            env = lane_keys[signer].sign(env)
        await lane_link.publish(f"portlane/v1/{SITE}/{lane}/event/inspection.requested", json.dumps(env).encode())

    def scan_events(kind: str) -> list[dict[str, Any]]:
        return [e["data"] for e in obs.events if e["type"] == f"portlane.scan.{kind}"]

    yield {
        "world": world,
        "daemon": daemon,
        "request": request_scan,
        "events": scan_events,
        "obs": obs,
        "broker_url": broker.url,
        "stop": stop,
        "running": tasks[1],
    }
    stop.set()
    await asyncio.gather(asyncio.wait_for(tasks[1], 10), return_exceptions=True)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await sim.close()


async def test_fires_only_for_requests_the_lanes_key_signed_and_signs_what_it_publishes(rig: dict[str, Any]) -> None:
    daemon = rig["daemon"]
    await rig["request"]("c1", "forged-1", signed_by="")  # unsigned, priority like any
    await rig["request"]("c1", "forged-2", signed_by="c2")  # another lane's key, c1's topic
    await rig["request"]("c1", "p1")  # genuine: handled after both forgeries (one inbox, in order)
    obs = rig["obs"]
    await obs.wait_for(lambda: len(rig["events"]("completed")) == 1, timeout=30)
    assert [e["passage_id"] for e in rig["events"]("queued")] == ["p1"]
    assert daemon.unit.peers.refused == {"unsigned": 1, "not_authorised": 1}
    authority = Authority.from_site(daemon.site)
    scans = [e for e in obs.events if str(e.get("type", "")).startswith("portlane.scan.")]
    assert scans and all(verify_event(e, authority).unit == "xray-1" for e in scans)


async def test_scans_one_vehicle_at_a_time_and_shares_the_result(rig: dict[str, Any]) -> None:
    for lane, pid in (("c1", "p1"), ("c2", "p2"), ("c3", "p3")):
        await rig["request"](lane, pid)
    obs = rig["obs"]
    await obs.wait_for(lambda: len(rig["events"]("completed")) == 3, timeout=30)
    order = [
        (e["type"].removeprefix("portlane.scan."), e["data"]["passage_id"])
        for e in obs.events
        if e["type"] in ("portlane.scan.started", "portlane.scan.completed")
    ]
    # started/completed strictly alternate: never two vehicles under the beam.
    assert [k for k, _p in order] == ["started", "completed"] * 3
    assert {e["lane"] for e in rig["events"]("completed")} == {"c1", "c2", "c3"}
    assert all(e["result"] == "GREEN" and e["scan_id"] for e in rig["events"]("completed"))
    assert rig["world"].scans_started == 3
    # Shared with conditions: each lane's results on its own topic (…/event/scan.completed/c2),
    # which the broker lets only that lane (and the platform, the console) read.
    unit = rig["daemon"].unit
    for lane, pid in (("c1", "p1"), ("c2", "p2"), ("c3", "p3")):
        rows = unit.outbox.newest(unit.topics.lane_event("scan.completed", lane))
        assert [json.loads(r.payload)["data"]["passage_id"] for r in rows] == [pid]
    assert unit.outbox.newest(unit.topics.event("scan.completed")) == []


async def test_never_fires_while_the_zone_is_open(rig: dict[str, Any]) -> None:
    world: ScannerWorld = rig["world"]
    world.open_zone()  # a person walks into the exclusion zone
    await rig["request"]("c1", "p1")
    obs = rig["obs"]
    await obs.wait_for(lambda: len(rig["events"]("queued")) == 1, timeout=30)
    # The daemon polls the PLC (20 ms) many times while the zone is open: nothing fires.
    d: ScannerDaemon = rig["daemon"]
    start = d.supervisor.heartbeat
    await asyncio.wait_for(d.wait_for(lambda: d.supervisor.heartbeat >= start + 10), 10)
    assert world.scans_started == 0 and not rig["events"]("started")
    world.clear_zone()
    await obs.wait_for(lambda: len(rig["events"]("completed")) == 1, timeout=20)


async def test_plc_fault_diverts_the_scanned_and_the_queued(rig: dict[str, Any]) -> None:
    world: ScannerWorld = rig["world"]
    # p1 stays under the beam until the fault (100 s): with the rig's 0.2-0.3 s scans it could
    # complete while the observer, behind under load, was still catching up with the queue.
    world.scan_s = (10_000.0, 10_000.0)
    for lane, pid in (("c1", "p1"), ("c2", "p2"), ("c3", "p3")):
        await rig["request"](lane, pid)
    obs = rig["obs"]
    # All three requests must have reached the daemon (one scanning, two queued) before the fault.
    await obs.wait_for(lambda: len(rig["events"]("started")) == 1 and len(rig["events"]("queued")) == 3, timeout=30)
    world.inject_fault()
    await obs.wait_for(lambda: len(rig["events"]("failed")) == 3, timeout=20)
    assert {e["passage_id"] for e in rig["events"]("failed")} == {"p1", "p2", "p3"}
    assert world.state in (PlcState.FAULT, PlcState.WARMING, PlcState.READY)
    assert not world.radiation_on


async def test_a_scanner_daemon_killed_mid_scan_settles_it_after_restart(rig: dict[str, Any], tmp_path: Path) -> None:
    """The daemon dies (no clean shutdown) while p1 is under the beam and p2 queued: the next
    process publishes p1's result from the PLC and scans p2 — nothing waits forever."""
    obs = rig["obs"]
    # 2 s scans, not the rig's 0.2-0.3 s: p1 must still be under the beam when the daemon dies,
    # which is as soon as the observer (behind the daemon under load) has seen it start.
    rig["world"].scan_s = (200.0, 200.0)
    await rig["request"]("c1", "p1")
    await rig["request"]("c2", "p2")
    await obs.wait_for(lambda: len(rig["events"]("started")) == 1 and len(rig["events"]("queued")) == 2, timeout=30)
    old: ScannerDaemon = rig["daemon"]
    crashed = next(t for t in asyncio.all_tasks() if t.get_coro().__qualname__.startswith("ScannerDaemon.run"))  # type: ignore[union-attr]
    crashed.cancel()  # like kill -9 for what is on disk: the journal and the outbox are written synchronously
    await asyncio.gather(crashed, return_exceptions=True)
    on_disk = Journal(old.journal.path)
    assert on_disk.records().keys() >= {"current", "queued:p2"}
    on_disk.close()
    new = ScannerDaemon(old.site, old.cfg, state_dir=tmp_path, broker_url=rig["broker_url"])
    stop = asyncio.Event()
    task = asyncio.create_task(new.run(stop))
    try:
        await obs.wait_for(lambda: {e["passage_id"] for e in rig["events"]("completed")} == {"p1", "p2"}, timeout=30)
        assert rig["world"].scans_started == 2  # p1 was not fired a second time
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_replays_its_events_on_a_signed_replay_events_and_refuses_a_forged_one(rig: dict[str, Any]) -> None:
    """A platform that lost scanner events (a broker crash) asks for them again; the answer is
    the retained events with their original ids. An unsigned request is refused."""
    daemon, obs = rig["daemon"], rig["obs"]
    await rig["request"]("c1", "p1")
    await obs.wait_for(lambda: len(rig["events"]("completed")) == 1, timeout=30)
    async with asyncio.timeout(30):
        await daemon.unit.sender.wait_drained()  # delivered, so retained for a replay
    first = [e["id"] for e in obs.events if e.get("source") == f"portlane://{SITE}/xray-1"]
    responses: list[dict[str, Any]] = []
    answered = asyncio.Event()

    def on_response(m: Message) -> None:
        responses.append(json.loads(m.payload))
        if len(responses) == 2:
            answered.set()

    platform = MqttLink(
        rig["broker_url"],
        client_id="t-platform",
        subscriptions=[f"portlane/v1/{SITE}/xray-1/response"],
        on_message=on_response,
    )
    task = asyncio.create_task(platform.run())
    try:
        await platform.wait_connected()
        topic = f"portlane/v1/{SITE}/xray-1/cmd/replay_events"
        await platform.publish(topic, json.dumps({"cmd": "replay_events", "args": {"from_seq": 1}}).encode())
        now = dt.datetime.now(dt.UTC)
        signed = CommandSigner(DEMO_KEYS["key_id"], DEMO_KEYS["private_key"]).sign(
            {
                "cmd": "replay_events",
                "site": SITE,
                "lane": "xray-1",
                "args": {"from_seq": 1, "to_seq": None},
                "issued_at": now,
                "expires_at": now + dt.timedelta(seconds=60),
            }
        )
        await platform.publish(topic, signed.to_json_bytes())
        await obs.wait_for(lambda: obs.duplicates >= len(first), timeout=30)
        async with asyncio.timeout(10):
            await answered.wait()
    finally:
        await platform.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [(r["ok"], r["reason"]) for r in responses] == [(False, "unsigned"), (True, None)]


async def test_a_request_for_a_passage_already_scanned_never_fires_again(rig: dict[str, Any], tmp_path: Path) -> None:
    """One inspection per passage: an ``inspection.requested`` re-delivered after a reconnect, or
    replayed for a platform that lost events, finds the passage settled, before and after a
    restart of the scanner daemon (it reads what it settled back from its outbox)."""
    obs = rig["obs"]
    await rig["request"]("c1", "p1")
    await obs.wait_for(lambda: len(rig["events"]("completed")) == 1, timeout=30)
    old: ScannerDaemon = rig["daemon"]
    await rig["request"]("c1", "p1")  # the same request again, while the daemon runs
    await rig["request"]("c2", "p2")  # one inbox, in order: handled after the repeat
    await obs.wait_for(lambda: len(rig["events"]("completed")) == 2, timeout=30)
    assert old.settled_requests == 1
    crashed = next(t for t in asyncio.all_tasks() if t.get_coro().__qualname__.startswith("ScannerDaemon.run"))  # type: ignore[union-attr]
    crashed.cancel()
    await asyncio.gather(crashed, return_exceptions=True)
    new = ScannerDaemon(old.site, old.cfg, state_dir=tmp_path, broker_url=rig["broker_url"])
    stop = asyncio.Event()
    task = asyncio.create_task(new.run(stop))
    try:
        await new.unit.link.wait_subscribed()
        await rig["request"]("c1", "p1")  # and again after the restart
        await rig["request"]("c3", "p3")
        await obs.wait_for(lambda: len(rig["events"]("completed")) == 3, timeout=30)
        assert new.settled_requests == 1
        assert [e["passage_id"] for e in rig["events"]("completed")] == ["p1", "p2", "p3"]
        assert rig["world"].scans_started == 3
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def _closing_device(unit: Any, *, fails: bool) -> None:
    """A device task that, as it is stopped, reports itself offline (and, ``fails``, raises)."""
    try:
        await asyncio.Event().wait()
    finally:
        unit.publish("device.state", DeviceState(device="xray-1/plc", health="offline", reason="stopping"))
        if fails:
            raise RuntimeError("the adapter vanished while closing")


async def _stop_and_drain(rig: dict[str, Any]) -> None:
    """Stop the daemon; it has sent everything it wrote, and the observer has it all."""
    unit, obs = rig["daemon"].unit, rig["obs"]
    rig["stop"].set()
    await asyncio.wait_for(rig["running"], 30)
    assert unit.outbox.depth == 0
    await obs.wait_for(lambda: obs.units["xray-1"].max_seq >= unit.outbox.last_seq, timeout=30)


async def test_what_its_tasks_write_as_they_stop_goes_out_before_the_offline_status(rig: dict[str, Any]) -> None:
    """Shutdown stops what writes events first, then says offline and drains: an event a task
    writes as it is stopped (a device going offline) is delivered, not left behind the drain."""
    unit, obs = rig["daemon"].unit, rig["obs"]
    unit.spawn(_closing_device(unit, fails=False), name="device")
    await _stop_and_drain(rig)
    types = [e["type"] for e in obs.events if e["source"].endswith("/xray-1")]
    assert types[-2:] == ["portlane.device.state", "portlane.unit.status"], types
    assert obs.events[-1]["data"]["state"] == "offline"
    assert obs.events[-1]["seq"] == unit.outbox.last_seq  # nothing written after it


async def test_a_task_that_fails_as_it_stops_does_not_cost_the_offline_status(
    rig: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A device that raises while it closes is named in the log; the unit still says offline
    and drains what it wrote."""
    unit, obs = rig["daemon"].unit, rig["obs"]
    unit.spawn(_closing_device(unit, fails=True), name="failing-device")
    await _stop_and_drain(rig)
    assert obs.events[-1]["type"] == "portlane.unit.status" and obs.events[-1]["data"]["state"] == "offline"
    assert any("failing-device failed while stopping" in r.getMessage() for r in caplog.records)


async def test_a_task_still_stopping_after_the_offline_status_never_says_online(
    rig: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device stuck closing past ``STOP_S`` ends after the unit said offline; the change of
    status it reports then (the lane daemon calls ``status_changed`` on every change) says
    nothing: the last status on the broker stays offline."""
    from portlane.edge.unit import skeleton

    monkeypatch.setattr(skeleton, "STOP_S", 0.01)  # the unit says offline without it
    daemon, obs = rig["daemon"], rig["obs"]
    unit = daemon.unit
    release = asyncio.Event()

    def statuses() -> list[str]:
        return [e["data"]["state"] for e in obs.events if e["type"] == "portlane.unit.status"]

    async def stuck_device() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()  # still closing when the unit says offline
            word = unit._status_word()
            monkeypatch.setattr(unit, "_status_word", lambda: dataclasses.replace(word, in_service=not word.in_service))
            unit.status_changed()
            raise

    unit.spawn(stuck_device(), name="stuck-device")
    rig["stop"].set()
    await obs.wait_for(lambda: statuses()[-1:] == ["offline"], timeout=30)
    release.set()
    await asyncio.wait_for(rig["running"], 30)
    assert unit.outbox.depth == 0 and obs.events[-1]["seq"] == unit.outbox.last_seq
    assert statuses()[-1] == "offline"
