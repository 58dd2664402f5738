"""A broker crash is not the end of the line: gap → replay → complete.

Mosquitto acknowledges an event (PUBACK) once it holds it — in memory. Killed with -9 before
its next autosave, it loses every message it was keeping for an offline subscriber, although
the lane was told they were delivered. The outbox keeps delivered events for a retention
window; the subscriber finds the gap by seq and asks for a replay; the events come again with
their original ids.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from portlane.edge.contract.topics import Topics
from portlane.edge.delivery.mqtt import MqttLink
from portlane.edge.delivery.outbox import Outbox
from portlane.edge.delivery.sender import OutboxSender
from portlane.edge.demo.broker import MosquittoBroker
from portlane.edge.demo.observer import EventObserver

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MosquittoBroker.available(), reason="needs mosquitto (persistent sessions)"),
]

SITE = "test-site"


async def _platform(url: str) -> tuple[EventObserver, asyncio.Task[None]]:
    """The platform's durable subscriber: persistent session, QoS 1."""
    obs = EventObserver(url, SITE, client_id="platform-durable", protocol="5", persistent_session=True)
    task = asyncio.create_task(obs.link.run(), name="platform")
    await asyncio.wait_for(obs.link.wait_subscribed(), 10)  # nothing published from here on is missed
    return obs, task


async def test_events_a_crashed_broker_lost_are_replayed_from_the_outbox(tmp_path: Path) -> None:
    broker = MosquittoBroker(persistence_dir=tmp_path / "mosquitto")
    await broker.start()
    tasks: list[asyncio.Task[None]] = []
    try:
        # 1. The platform subscribes with a persistent session, then goes offline.
        obs, obs_task = await _platform(broker.url)
        await obs.link.close()
        obs_task.cancel()
        await asyncio.gather(obs_task, return_exceptions=True)

        # 2. The lane publishes 300 events; the broker acknowledges every one of them.
        ob = Outbox(tmp_path / "outbox-c1.db", site=SITE, unit="c1")
        link = MqttLink(broker.url, client_id="lane-c1", protocol="5")
        sender = OutboxSender(ob, link)
        tasks += [asyncio.create_task(link.run(), name="mqtt"), asyncio.create_task(sender.run(), name="sender")]
        t = Topics(SITE, "c1")
        for i in range(300):
            await ob.put_async("test.tick", {"n": i}, topic=t.event("test.tick"))
        await asyncio.wait_for(sender.wait_drained(), 30)
        assert ob.depth == 0 and ob.stats().retained == 300  # delivered, and kept for replay

        # 3. The broker crashes before it saved the offline subscriber's queue, and restarts.
        await broker.stop()  # SIGKILL
        await broker.start()
        await asyncio.wait_for(link.wait_connected(), 30)

        # 4. The platform comes back; the lane goes on publishing.
        obs, obs_task = await _platform(broker.url)
        tasks.append(obs_task)
        for i in range(300, 320):
            await ob.put_async("test.tick", {"n": i}, topic=t.event("test.tick"))
        await obs.wait_for(lambda: obs.units["c1"].max_seq >= 320, timeout=30)
        led = obs.units["c1"]
        assert led.received == 20, "the crash lost the queued events (else this test shows nothing)"
        gaps = obs.gaps("c1")
        assert gaps == [(1, 300)]

        # 5. The platform asks for the gap (stand-in for the signed replay_events command), and
        #    gets every event back with its original id.
        for lo, hi in gaps:
            assert ob.replay(lo, hi) == hi - lo + 1
        await obs.wait_for(lambda: not obs.gaps("c1"), timeout=30)
        assert led.missing(320) == [] and led.mismatched_ids == 0 and led.epoch == ob.epoch
        ids = {e["id"] for e in obs.events}
        assert ids == {f"{SITE}/c1/{ob.epoch}/{s}" for s in range(1, 321)}
        await asyncio.wait_for(sender.wait_drained(), 30)
        ob.close()  # writes the last acks
        assert ob.stats().retained == 320 and ob.stats().depth == 0
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await broker.close()
