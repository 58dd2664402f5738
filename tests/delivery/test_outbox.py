"""The durable outbox, against a real broker: nothing lost, nothing reordered."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from portlane.edge.config import OutboxRetention
from portlane.edge.contract.topics import Topics
from portlane.edge.delivery.mqtt import MqttLink
from portlane.edge.delivery.outbox import Outbox, OutboxEvent
from portlane.edge.delivery.sender import OutboxSender
from portlane.edge.demo.broker import BrokerProcess, MosquittoBroker
from portlane.edge.demo.observer import EventObserver
from portlane.edge.errors import OutboxError, OutboxFullError

PUMP = Path(__file__).resolve().parents[1] / "pump.py"


@pytest.fixture(autouse=True)
def _close_outboxes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every outbox a test here opens is closed when the test ends (many tests stop with the
    store mid-state on purpose); its writer thread and SQLite files must not outlive the test."""
    opened: list[Outbox] = []
    init = Outbox.__init__

    def tracking_init(self: Outbox, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(Outbox, "__init__", tracking_init)
    yield
    for ob in opened:
        ob.close()


SITE = Path(__file__).resolve().parents[2] / "firmware_config" / "sites" / "zhuhai-hzmb-cargo.yaml"


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


def test_refused_events_are_held_and_written_in_order_when_the_outbox_accepts_again(tmp_path: Path) -> None:
    """Nothing lost on a full outbox (or disk): the writer holds what was refused, queues newer
    events behind it, and writes them all, in order, once there is room."""
    from portlane.edge.contract.events import DeviceState
    from portlane.edge.delivery.events import EventWriter

    ob = Outbox(tmp_path / "h.db", site="s", unit="l1", capacity=2, overflow="reject_new")
    refusals: list[OutboxError] = []
    writer = EventWriter(ob, Topics("s", "l1"), on_refused=refusals.append)
    try:
        results = [
            writer.put("device.state", DeviceState(device=f"d{i}", health="online", reason=None)) for i in range(4)
        ]
        assert [r is not None for r in results] == [True, True, False, False]
        assert len(refusals) == 2 and writer.refused == 2 and len(writer.held) == 2
        assert not writer.flush_held()  # still full: nothing written, nothing lost
        assert ob.last_seq == 2
        ob.ack([1, 2])  # delivered: room again
        assert writer.flush_held() and not writer.held
        assert [(r.seq, json.loads(r.payload)["data"]["device"]) for r in ob.peek()] == [(3, "d2"), (4, "d3")]
    finally:
        ob.close()


def test_oldest_age_uses_injected_clock(tmp_path: Path) -> None:
    now = [1000.0]
    ob = Outbox(tmp_path / "c.db", site="s", unit="l", clock=lambda: now[0])
    ob.put("x", {}, topic="t")
    now[0] = 1042.5
    assert ob.stats().oldest_age_s == pytest.approx(42.5)


async def _observe(url: str, **kw: object) -> tuple[EventObserver, asyncio.Task[None]]:
    obs = EventObserver(url, "test-site", **kw)  # type: ignore[arg-type]
    task = asyncio.create_task(obs.link.run())
    await asyncio.wait_for(obs.link.wait_subscribed(), 10)  # nothing published from here on is missed
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


@pytest.mark.parametrize("mode", ["put", "async"])
async def test_daemon_sigkill_mid_stream_loses_nothing(broker: BrokerProcess, tmp_path: Path, mode: str) -> None:
    obs, obs_task = await _observe(broker.url)
    db = tmp_path / "pump.db"
    total = 400
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    argv = [sys.executable, str(PUMP), broker.url, str(db), "l9", str(total), mode]
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


# ---------------------------------------------------------------------- identity: stream epoch
def test_epoch_is_kept_across_reopen_and_is_part_of_every_id(tmp_path: Path) -> None:
    t = Topics("s", "l1")
    ob = Outbox(tmp_path / "o.db", site="s", unit="l1", clock=lambda: 1_800_000_000.0)
    env = ob.put("x.y", {}, topic=t.event("x.y"))
    assert ob.epoch == env.epoch == 1_800_000_000_000
    assert env.id == "s/l1/1800000000000/1"
    assert Outbox.decode(ob.peek()[0].payload)["epoch"] == ob.epoch  # on the wire too
    ob.close()
    ob = Outbox(tmp_path / "o.db", site="s", unit="l1", clock=lambda: 1_900_000_000.0)
    assert ob.epoch == 1_800_000_000_000  # the store's creation time, not the opening's
    assert ob.put("x.y", {}, topic=t.event("x.y")).id == "s/l1/1800000000000/2"


@pytest.mark.parametrize("loss", ["deleted", "zero_bytes", "recreated_same_instant"])
def test_a_lost_store_gets_a_new_epoch_and_never_reuses_an_id(tmp_path: Path, loss: str) -> None:
    t = Topics("s", "l1")
    now = [1_800_000_000.0]
    path = tmp_path / "o.db"
    ob = Outbox(path, site="s", unit="l1", clock=lambda: now[0])
    first = [ob.put("x.y", {}, topic=t.event("x.y")) for _ in range(3)]
    ob.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    if loss == "zero_bytes":
        path.write_bytes(b"")
    if loss != "recreated_same_instant":
        now[0] += 60.0
    ob = Outbox(path, site="s", unit="l1", clock=lambda: now[0])
    again = [ob.put("x.y", {}, topic=t.event("x.y")) for _ in range(3)]
    assert [e.seq for e in again] == [1, 2, 3]  # seq restarts only with a new epoch...
    assert again[0].epoch > first[0].epoch  # ...which is larger
    assert not {e.id for e in first} & {e.id for e in again}


def test_a_store_from_before_epochs_is_migrated_and_keeps_its_queue(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(
        """
        PRAGMA journal_mode=WAL;
        CREATE TABLE outbox (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, topic TEXT NOT NULL,
                             payload BLOB NOT NULL, created REAL NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO meta VALUES ('last_seq', 41), ('dropped', 2);
        INSERT INTO outbox VALUES (41, 's/l1/41', 't', CAST('{"seq":41}' AS BLOB), 1.0);
        """
    )
    db.close()
    ob = Outbox(path, site="s", unit="l1")
    assert ob.depth == 1 and [r.payload for r in ob.peek()] == [b'{"seq":41}']
    env = ob.put("x.y", {}, topic="t")
    assert env.seq == 42 and env.id == f"s/l1/{ob.epoch}/42" and ob.epoch > 0
    assert ob.stats().dropped == 2


# ---------------------------------------------------------------------- refusals and site policy
def test_refusals_are_counted_persisted_and_carry_counts(tmp_path: Path) -> None:
    t = Topics("s", "l1")
    ob = Outbox(tmp_path / "a.db", site="s", unit="l1", capacity=2)
    ob.put("x", {}, topic=t.event("x"))
    ob.put("x", {}, topic=t.event("x"))
    for n in (1, 2):
        with pytest.raises(OutboxFullError) as ei:
            ob.put("passage.completed", {}, topic=t.event("x"))
        err = ei.value
        assert isinstance(err, OutboxError)
        assert (err.event_type, err.capacity, err.depth, err.refused, err.dropped) == ("passage.completed", 2, 2, n, 0)
        assert str(tmp_path / "a.db") in str(err) and "passage.completed" in str(err)
    assert ob.stats().refused == 2 and ob.stats().as_dict()["refused"] == 2
    ob.close()
    assert Outbox(tmp_path / "a.db", site="s", unit="l1", capacity=2).refused == 2


def test_put_many_is_all_or_nothing_when_full(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "a.db", site="s", unit="l1", capacity=3)
    ob.put("x", {}, topic="t")
    with pytest.raises(OutboxFullError):
        ob.put_many([OutboxEvent("x", {}, "t")] * 3)
    assert (ob.depth, ob.last_seq, ob.refused) == (1, 1, 3)
    assert [e.seq for e in ob.put_many([OutboxEvent("x", {"i": i}, "t") for i in range(2)])] == [2, 3]


def test_capacity_and_overflow_come_from_the_site_file(tmp_path: Path) -> None:
    from portlane.edge.config import parse_site
    from portlane.edge.errors import ConfigError

    raw = yaml.safe_load(SITE.read_text(encoding="utf-8"))
    raw["outbox"] = {"capacity": 3, "overflow": "drop_oldest", "retention": {"max_age_s": 3600, "max_mb": 0.5}}
    site = parse_site(raw)
    ob = Outbox(tmp_path / "c.db", site="s", unit="l1", config=site.outbox)
    assert (ob.capacity, ob.overflow, ob.retention.max_age_s, ob.retention.max_mb) == (3, "drop_oldest", 3600, 0.5)
    for _ in range(5):
        ob.put("x", {}, topic="t")
    assert (ob.depth, ob.dropped) == (3, 2)
    raw["outbox"] = {"capacity": 0, "overflow": "drop_newest"}
    with pytest.raises(ConfigError) as ei:
        parse_site(raw, file="site.yaml")
    assert {p for p, _r in ei.value.problems} == {"outbox.capacity", "outbox.overflow"}


# ---------------------------------------------------------------------- closed stores
def test_stats_after_close_answer_and_writes_after_close_say_so(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", site="s", unit="l1")
    ob.put("x", {}, topic="t")
    ob.close()
    ob.close()  # idempotent
    st = ob.stats()  # a status ticker may still ask: no "Cannot operate on a closed database"
    assert (st.depth, st.last_seq, st.epoch) == (1, 1, ob.epoch)
    with pytest.raises(OutboxError, match="closed"):
        ob.put("x", {}, topic="t")


# ---------------------------------------------------------------------- retention and replay
def test_delivered_events_are_retained_then_evicted_oldest_first_never_undelivered(tmp_path: Path) -> None:
    now = [1000.0]
    ob = Outbox(
        tmp_path / "r.db",
        site="s",
        unit="l1",
        clock=lambda: now[0],
        retention=OutboxRetention(max_age_s=100.0, max_mb=2000 / (1024 * 1024)),  # ~2,000 payload bytes
    )
    envs = [ob.put("x", {"pad": "p" * 300}, topic="t") for _ in range(10)]
    size = len(ob.peek(limit=1)[0].payload)
    ob.ack([e.seq for e in envs[:8]])
    st = ob.stats()
    kept = 2000 // size
    assert st.depth == 2 and st.retained == kept  # the byte bound evicted the oldest delivered
    assert st.first_retained_seq == 8 - kept + 1
    assert [r.seq for r in ob.peek()] == [9, 10]  # undelivered are never evicted
    now[0] += 101.0  # past the age bound
    ob.ack([9])
    st = ob.stats()
    assert (st.retained, st.depth, [r.seq for r in ob.peek()]) == (0, 1, [10])


def test_without_retention_delivered_events_are_deleted(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "n.db", site="s", unit="l1", retention=OutboxRetention(max_mb=0))
    ob.put("x", {}, topic="t")
    ob.ack([1])
    assert ob.stats().retained == 0 and ob.replay(1) == 0


def test_replay_requeues_retained_events_with_their_original_bytes(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "p.db", site="s", unit="l1", capacity=5)
    for i in range(5):
        ob.put("x", {"i": i}, topic=f"t/{i}")
    original = {r.seq: (r.id, r.topic, r.payload) for r in ob.peek()}
    ob.ack([1, 2, 3, 4])
    assert ob.depth == 1 and ob.stats().retained == 4
    assert ob.replay(2, 3) == 2
    assert [r.seq for r in ob.peek()] == [2, 3, 5]
    assert {r.seq: (r.id, r.topic, r.payload) for r in ob.peek()} == {s: original[s] for s in (2, 3, 5)}
    assert ob.replay(1) == 2  # 1 and 4: 2 and 3 are already queued, 5 was never delivered
    assert ob.depth == 5 and ob.rewinds == 2
    # Replayed events do not count against capacity: the lane keeps recording.
    assert ob.put("x", {}, topic="t").seq == 6
    with pytest.raises(ValueError):
        ob.replay(0)
    with pytest.raises(ValueError):
        ob.replay(5, 4)


# ---------------------------------------------------------------------- group commit
async def test_concurrent_put_async_share_one_commit_and_return_only_when_durable(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "g.db"
    ob = Outbox(path, site="s", unit="l1")
    commits: list[int] = []
    ob.on_put(lambda: commits.append(ob.last_seq))
    witness = sqlite3.connect(path)

    async def one(i: int) -> int:
        env = await ob.put_async("x", {"i": i}, topic="t")
        # When the caller has its envelope, another connection sees the row: it is committed.
        (n,) = witness.execute("SELECT COUNT(*) FROM outbox WHERE seq = ?", (env.seq,)).fetchone()
        return int(n)

    seen = await asyncio.gather(*(one(i) for i in range(200)))
    assert seen == [1] * 200
    assert len(commits) <= 3  # 200 concurrent puts: one or two group commits, not 200
    assert sorted(Outbox.decode(r.payload)["data"]["i"] for r in ob.peek(limit=500)) == list(range(200))
    ob.close()
    witness.close()


def test_signer_hook_signs_the_envelope_before_it_is_written(tmp_path: Path) -> None:
    def signer(env: dict[str, object]) -> dict[str, object]:
        assert "sig" not in env and env["epoch"]
        return {**env, "sigkeyid": "lane-c1", "sig": f"signed:{env['id']}"}

    ob = Outbox(tmp_path / "s.db", site="s", unit="c1", signer=signer)
    env = ob.put("x", {"a": 1}, topic="t")
    assert (env.sigkeyid, env.sig) == ("lane-c1", f"signed:{env.id}")
    wire = Outbox.decode(ob.peek()[0].payload)
    assert wire["sig"] == env.sig and wire["sigkeyid"] == "lane-c1" and wire["data"] == {"a": 1}


def test_replay_command_checks_its_arguments_and_says_what_is_gone(tmp_path: Path) -> None:
    from portlane.edge.delivery.replay import replay_command
    from portlane.edge.errors import ReplayArgsError

    ob = Outbox(tmp_path / "rc.db", site="s", unit="l1", retention=OutboxRetention(max_mb=600 / (1024 * 1024)))
    for i in range(10):
        ob.put("x", {"pad": "p" * 100, "i": i}, topic="t")
    ob.ack(list(range(1, 11)))  # the byte bound keeps only the newest few
    first = ob.stats().first_retained_seq
    assert first is not None and first > 1
    out = replay_command(ob, {"from_seq": 1, "to_seq": None})
    assert out["replayed"] == 10 - first + 1 and out["not_retained"] == [1, first - 1]
    assert out["epoch"] == ob.epoch and out["last_seq"] == 10
    assert [r.seq for r in ob.peek()] == list(range(first, 11))
    for bad in ({"from_seq": 0}, {"from_seq": "1"}, {"from_seq": 5, "to_seq": 4}, {"from_seq": 11}, {"from": 1}):
        with pytest.raises(ReplayArgsError):
            replay_command(ob, bad)
