"""SiteClient against a real broker and a real signed lane daemon (virtual devices): every event
the lane wrote arrives once, verified, typed — including those the client missed, which it asks
the lane to replay with its own signed ``replay_events`` — and nothing unsigned on the broker
changes what it believes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from portlane.drivers.supervisor import Backoff
from portlane.edge.client import CommandTimeoutError, NoSignerError, SiteClient, SiteEvent
from portlane.edge.contract.events import UnitStatus
from portlane.edge.contract.times import rfc3339
from portlane.edge.delivery.mqtt import Message, MqttLink
from portlane.edge.demo.broker import BrokerProcess, MosquittoBroker, free_port
from portlane.edge.lane.passage import LaneTimeouts
from portlane.edge.trust.authority import Authority
from portlane.edge.trust.events import verify_event

from tests.signed_site import CONSUMER, consumer_client
from tests.virtual_lane import SITE_ID, LaneRig, arrive_and_identify, register, start_lane, stop_lane

PREFIX = f"portlane/v1/{SITE_ID}"
TAG = "E200341201930500001"
#: Generous: every wait below ends on an event; this only bounds a broken run.
WITHIN_S = 30.0


class Collector:
    """Takes the client's events as they come (the caller's side of ``client.events()``)."""

    def __init__(self, client: SiteClient) -> None:
        self.client = client
        self.events: list[SiteEvent] = []
        self.task = asyncio.create_task(self._run(), name="collector")

    async def _run(self) -> None:
        async for ev in self.client.events():
            self.events.append(ev)

    def seqs(self, unit: str) -> list[int]:
        return sorted(e.seq for e in self.events if e.unit == unit)

    async def until(self, predicate: Any) -> None:
        """Wait for ``predicate()``; on timeout, say what the client has (not just "timeout")."""
        try:
            await self.client.wait_for(predicate, WITHIN_S)
        except TimeoutError:
            c = self.client
            raise AssertionError(
                f"timed out: seqs {self.seqs('c1')}, streams {c.streams()}, stats {c.stats}, "
                f"connected {c.link.connected}"
            ) from None

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@contextlib.asynccontextmanager
async def lane_and_client(url: str, tmp_path: Path, **client_kw: Any) -> AsyncIterator[tuple[LaneRig, SiteClient]]:
    keys = tmp_path / "keys"
    keys.mkdir(exist_ok=True)
    rig = await start_lane(
        url, tmp_path / "state", key_dir=keys, clients=[consumer_client(keys)], timeouts=LaneTimeouts(identify_s=1.0)
    )
    client = SiteClient.from_site(rig.site, unit=CONSUMER, url=url, gap_grace_s=0.5, **client_kw)
    try:
        yield rig, client
    finally:
        await client.aclose()
        await stop_lane(rig)


def assert_nothing_the_lane_signed_is_refused(client: SiteClient) -> None:
    """Nothing the lane signed is refused, its retained status included."""
    assert not client.stats.refused, client.stats.refused


def publish_signed_status(rig: LaneRig) -> int:
    """A fresh ``unit.status`` of the lane now, as its unit says one at every connect: through
    the outbox (signed, sequenced), the envelope also retained on the status topic — so the
    client learns the lane's last seq without waiting for a reconnect. Returns its seq, the
    lane's last."""
    u = rig.daemon.unit
    status = UnitStatus(
        state="online",
        unit="c1",
        kind="lane",
        version="test",
        in_service=rig.daemon.logic.in_service,
        last_seq=u.outbox.last_seq,
        epoch=u.outbox.epoch,
        since=rfc3339(0),
    )
    env = u.events.put("unit.status", status)
    assert env is not None and env.sig is not None
    # The bytes signed: the envelope without its unset (None) fields, as the outbox signed it.
    u.link.publish_best_effort(u.topics.status, env.model_dump_json(exclude_none=True).encode(), retain=True)
    return env.seq


async def drive_a_passage(rig: LaneRig) -> None:
    await register(rig, TAG, ["粤B12345"])
    pid = await arrive_and_identify(rig, TAG)
    for agency in ("customs", "border"):
        await rig.platform.send("c1", "decision", pid, agency=agency, verdict="release")
    await rig.until(
        lambda: rig.logic.passage is None or rig.logic.passage.id != pid or rig.logic.stage.value != "awaiting_decision"
    )


async def test_a_client_that_came_late_gets_every_event_once_verified_by_replay(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    async with lane_and_client(broker.url, tmp_path, backfill=True) as (rig, client):
        await drive_a_passage(rig)  # events the client was not there for
        async with client:
            collector = Collector(client)
            await client.wait_subscribed()
            last = publish_signed_status(rig)
            try:
                # The lane goes on (the released vehicle drives out): later events may come too.
                await collector.until(
                    lambda: set(range(1, last + 1)) <= set(collector.seqs("c1")) and client.missing == 0
                )
            finally:
                await collector.close()
        assert client.stats.replays_requested >= 1
        assert_nothing_the_lane_signed_is_refused(client)
        assert all(e.key_id == "c1-key" and e.payload is not None for e in collector.events)
        assert {e.type for e in collector.events} >= {"passage.arrived", "vehicle.identified", "unit.status"}
        assert client.units()["c1"].state == "online"


@pytest.mark.skipif(not MosquittoBroker.available(), reason="needs the mosquitto binary (broker persistence)")
async def test_after_a_graceful_broker_restart_the_client_replays_what_it_missed(tmp_path: Path) -> None:
    """What we saw (issue 23): after a graceful restart of a persistent Mosquitto the demo's
    observer counted 12-18 events lost — they were only not delivered to it. Here the lane
    re-sends its backlog before the client is back: the client notices the gap from the lane's
    signed status and has it replayed."""
    broker = MosquittoBroker(persistence_dir=tmp_path / "mosquitto")
    await broker.start()
    try:
        quick = {"backoff": Backoff(initial=0.05, cap=0.5)}
        async with lane_and_client(broker.url, tmp_path, link_options=quick) as (rig, client):
            rig.daemon.unit.link.backoff = Backoff(initial=0.05, cap=0.2)
            async with client:
                collector = Collector(client)
                await client.wait_subscribed()
                await register(rig, TAG, ["粤B12345"])
                first = publish_signed_status(rig)
                await client.wait_for(lambda: first in collector.seqs("c1"), WITHIN_S)
                # The client comes back only once the lane has re-sent its backlog: until then it
                # reconnects to a port where nobody listens. (A slow client backoff raced the lane:
                # with an outage longer than one backoff step, the client's next attempt could
                # fall just after the restart, before the lane's.)
                broker_port, client.link.port = client.link.port, free_port()
                await broker.stop(graceful=True)
                rig.world.present_tag(TAG)
                rig.world.set_inputs(entry_loop=True)  # a vehicle arrives while the broker is down
                await rig.until(lambda: rig.logic.passage is not None)
                written = rig.daemon.unit.outbox.last_seq
                await broker.start()
                await rig.until(lambda: rig.daemon.unit.link.connected and rig.daemon.unit.outbox.stats().depth == 0)
                assert not client.link.connected
                client.link.port = broker_port
                await client.wait_subscribed()
                last = publish_signed_status(rig)
                assert last > written > first
                await client.wait_for(
                    lambda: set(range(first, last + 1)) <= set(collector.seqs("c1")) and client.missing == 0,
                    WITHIN_S,
                )
                await collector.close()
            seqs = collector.seqs("c1")
            assert len(seqs) == len(set(seqs)), "an event came out twice"
            assert client.stats.lost == 0
            # It did miss the backlog (it came back seconds after the lane), and got it replayed.
            assert client.stats.replays_requested >= 1 and client.stats.late >= 1
    finally:
        await broker.close()


async def test_nothing_unsigned_on_the_broker_is_believed_or_ends_the_client(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    """What we saw (issue 23): a retained unsigned status on ``…/c9"x/status`` with last_seq
    ahead made the console sign a replay for that id and die; unsigned events and statuses were
    taken as facts. Retained garbage is there at every start of a client."""
    seen_cmds: list[Message] = []
    lane_status_out = asyncio.Event()

    def on_spied(m: Message) -> None:
        if m.topic.endswith("/status"):
            if b'"sig"' in m.payload:  # the lane's own, signed
                lane_status_out.set()
        else:
            seen_cmds.append(m)

    spy = MqttLink(
        broker.url,
        client_id="spy",
        subscriptions=[f"{PREFIX}/+/cmd/#", f"{PREFIX}/c1/status"],
        on_message=on_spied,
    )
    junk = MqttLink(broker.url, client_id="junk")
    tasks = [asyncio.create_task(spy.run(), name="spy"), asyncio.create_task(junk.run(), name="junk")]
    try:
        async with asyncio.timeout(WITHIN_S):
            await spy.wait_subscribed()
            await junk.wait_connected()
        forged_event = {
            "specversion": "1.0",
            "id": f"{SITE_ID}/c1/1/900",
            "source": f"portlane://{SITE_ID}/c1",
            "type": "portlane.passage.completed",
            "time": rfc3339(0),
            "seq": 900,
            "epoch": 1,
            "data": {"passage_id": "fake", "outcome": "released", "inspected": False, "stages": {}, "stage_ms": {}},
        }
        retained = [
            (f'{PREFIX}/c9"x/status', {"state": "online", "unit": 'c9"x', "last_seq": 10**9, "epoch": 1}),
            (f"{PREFIX}/c1/event/passage.completed", forged_event),
            (f"{PREFIX}/c1/response", {"correlation_id": "x", "command": "release", "ok": True}),
        ]
        for topic, body in retained:
            await junk.publish(topic, json.dumps(body).encode(), retain=True)
        await junk.publish(f"{PREFIX}/xray-1/status", b"\xff" * 64, retain=True)
        await junk.publish(f"{PREFIX}/xray-1/event/scan.completed", b"[" * 100_000, retain=True)
        async with lane_and_client(broker.url, tmp_path, backfill=True) as (rig, client):
            # A forged retained status replaces the lane's own: "out of service", last_seq ahead.
            # Once the lane's own status is on the broker (not just in its outbox: sent later it
            # would replace the forgery before the client reads it).
            async with asyncio.timeout(WITHIN_S):
                await lane_status_out.wait()
            forged_status = {"state": "online", "unit": "c1", "in_service": False, "last_seq": 10**6}
            await junk.publish(f"{PREFIX}/c1/status", json.dumps(forged_status).encode(), retain=True)
            retained.append((f"{PREFIX}/c1/status", forged_status))
            async with client:
                collector = Collector(client)
                await client.wait_subscribed()
                await client.wait_for(lambda: "unsigned_status" in client.stats.refused, WITHIN_S)
                assert client.units().get("c1") is None or client.units()["c1"].state == "unknown"
                last = publish_signed_status(rig)  # the genuine lane still gets through
                await client.wait_for(lambda: last in collector.seqs("c1"), WITHIN_S)
                await collector.close()
            assert all(e.key_id == "c1-key" for e in collector.events)
            assert not any(e.subject == "fake" for e in collector.events)
            assert set(client.units()) == {"c1"} and client.units()["c1"].state == "online"
            assert {"bad_unit", "unsigned_status", "unsigned", "malformed"} <= set(client.stats.refused)
            assert not any('c9"x' in m.topic for m in seen_cmds)  # no replay signed for that id
    finally:
        for topic, _ in [*retained, (f"{PREFIX}/xray-1/status", None), (f"{PREFIX}/xray-1/event/scan.completed", None)]:
            with contextlib.suppress(ConnectionError):
                await junk.publish(topic, b"", retain=True)
        for link in (spy, junk):
            await link.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_commands_are_signed_answered_and_re_signed_when_unanswered(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    spied: list[Message] = []
    arrived = asyncio.Event()

    def on_spied(m: Message) -> None:
        spied.append(m)
        arrived.set()

    spy = MqttLink(broker.url, client_id="spy", subscriptions=[f"{PREFIX}/c9/cmd/#"], on_message=on_spied)
    spy_task = asyncio.create_task(spy.run(), name="spy")
    try:
        async with asyncio.timeout(WITHIN_S):
            await spy.wait_subscribed()
        async with lane_and_client(broker.url, tmp_path) as (rig, client):
            async with client:
                await client.wait_subscribed()
                await rig.until(lambda: rig.daemon.unit.outbox.last_seq >= 1)
                result = await client.request_replay("c1", 1, 1)  # the lane verifies our signature
                assert result.ok and result.attempts == 1 and result.command == "replay_events"
                # Nobody answers for c9: signed again with a fresh nonce, then given up.
                with pytest.raises(CommandTimeoutError):
                    await client.command(
                        "c9", "replay_events", args={"from_seq": 1, "to_seq": None}, resend_s=0.3, attempts=2
                    )
                with pytest.raises(ValueError, match="not an id"):
                    await client.command('c9"x', "replay_events", args={"from_seq": 1})
            async with asyncio.timeout(WITHIN_S):  # the spy's last PUBLISH may trail the client's timeout
                while len(spied) < 2:
                    arrived.clear()
                    await arrived.wait()
        nonces = {json.loads(m.payload)["nonce"] for m in spied}
        assert len(spied) == 2 and len(nonces) == 2  # two attempts, each signed afresh
        unsigned = SiteClient(rig.site, unit="tech", url=broker.url)
        with pytest.raises(NoSignerError):
            await unsigned.command("c1", "replay_events", args={"from_seq": 1})
    finally:
        await spy.close()
        spy_task.cancel()
        await asyncio.gather(spy_task, return_exceptions=True)


async def test_a_command_signed_before_a_new_units_nonce_store_is_signed_again(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    """A unit that has just started on a new nonce store refuses what was signed before the
    store's floor (``issued_before_store``; the floor can lie up to the clock skew ahead of the
    unit's start). The library signs the command again once the floor has passed, and the unit
    takes it — the platform simulator's registrations of a lane were refused this way for ever."""
    signatures = 0

    def first_signed_before_the_store() -> dt.datetime:
        nonlocal signatures
        signatures += 1
        now = dt.datetime.now(dt.UTC)
        return now - dt.timedelta(seconds=30) if signatures == 1 else now

    lane = lane_and_client(broker.url, tmp_path, wall_clock=first_signed_before_the_store)
    async with lane as (rig, client), client:
        await client.wait_subscribed()
        await rig.until(lambda: rig.daemon.unit.outbox.last_seq >= 1)
        result = await client.request_replay("c1", 1, 1)
    assert (result.ok, result.reason, result.attempts) == (True, None, 2) and signatures == 2


async def test_a_command_waits_for_the_broker_instead_of_running_out_of_attempts(tmp_path: Path) -> None:
    """A command asked for while the broker is down goes out when it is back: its attempts are
    counted from when it reached the broker. (The platform's decisions for a lane that had just
    identified a vehicle ran out of their 3 × 15 s while Mosquitto was down 30 s and the
    platform reconnected; the lane waited for ever for an answer nobody sent any more.)"""
    broker = MosquittoBroker(persistence_dir=tmp_path / "mosquitto")
    await broker.start()
    try:
        async with lane_and_client(broker.url, tmp_path) as (rig, client), client:
            await client.wait_subscribed()
            await rig.until(lambda: rig.daemon.unit.outbox.last_seq >= 1)
            # What is timed here is the client, not the lane: the lane is back within 0.2 s of the
            # broker (its own backoff grows to 5 s during an outage), and the client only after it
            # (until then it reconnects to a port where nobody listens), so that a resend within
            # 1.5 s is the client's doing, never a lane still reconnecting on a loaded machine.
            rig.daemon.unit.link.backoff = Backoff(initial=0.05, cap=0.2)
            broker_port, client.link.port = client.link.port, free_port()
            await broker.stop(graceful=True)
            async with asyncio.timeout(WITHIN_S):  # until the client knows it is cut off
                await client.link.wait_disconnected()
            asked = asyncio.create_task(
                client.command("c1", "replay_events", args={"from_seq": 1, "to_seq": 1}, resend_s=1.5, attempts=2)
            )
            await asyncio.sleep(3.5)  # the outage itself (longer than both attempts), not a synchronisation
            assert not asked.done()
            await broker.start()
            async with asyncio.timeout(WITHIN_S):
                await rig.daemon.unit.link.wait_subscribed()
            client.link.port = broker_port
            async with asyncio.timeout(WITHIN_S):
                result = await asked
        assert result.ok and result.attempts == 1, result
    finally:
        await broker.close()


async def test_a_real_lanes_retained_status_verifies(broker: BrokerProcess, tmp_path: Path) -> None:
    """The unit skeleton says its status at every connect: a signed ``unit.status`` event, its
    envelope retained on the status topic. The retained copy must verify as the event does, or
    a consumer that starts later (the retained copy is all it gets) never believes the unit."""
    retained: list[Message] = []
    arrived = asyncio.Event()

    def on_status(m: Message) -> None:
        if m.payload:
            retained.append(m)
            arrived.set()

    async with lane_and_client(broker.url, tmp_path) as (rig, _client):
        reader = MqttLink(broker.url, client_id="reader", subscriptions=[f"{PREFIX}/c1/status"], on_message=on_status)
        task = asyncio.create_task(reader.run(), name="reader")
        try:
            async with asyncio.timeout(WITHIN_S):
                while not retained:
                    arrived.clear()
                    await arrived.wait()
        finally:
            await reader.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        envelope = json.loads(retained[0].payload)
        assert envelope["type"] == "portlane.unit.status"
        verify_event(envelope, Authority.from_site(rig.site))  # raises bad_signature today
