"""Platform consumers as a shared-subscription group of three on a real broker: every event
is processed exactly once across the group, duplicates are dropped, and gaps — in the middle
of a stream and at its tail (from the unit's retained ``last_seq``) — come back through the
signed ``replay_events`` command (sim_devices/consumer_group.py, docs/deployment.md)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from portlane.edge.contract.canonical import canonical_json
from portlane.edge.delivery.mqtt import MqttLink
from portlane.edge.demo.broker import BrokerProcess
from portlane.edge.trust.commands import CommandSigner
from portlane.sim_devices import consumer_group
from portlane.sim_devices.consumer_group import GapWatcher, GroupConsumer, Ledger

SITE = "testport"
EPOCH = 1764547200000
EVENTS = 100  # per unit
#: Everything (publish 300 events, find two gaps after the grace, replay them) well within.
DEADLINE_S = 30.0
#: The watcher's grace for an event in flight (the product's is 1 s). It asks for whatever stayed
#: missing that long between two of its checks; a loaded machine that stalls the loop for a second
#: (or a member behind the others) made it ask for events still in flight, and the test asserts
#: exactly which ranges were asked for.
GRACE_S = 5.0
#: Every client's cancellation must be through within this long (it is, but see the test).
SHUTDOWN_S = 5.0
KEYS = yaml.safe_load((Path(__file__).resolve().parents[2] / "firmware_config" / "demo_keys.yaml").read_text())


def envelope(unit: str, seq: int) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"{SITE}/{unit}/{EPOCH}/{seq}",
        "source": f"portlane/{SITE}/{unit}",
        "type": "portlane.test.tick",
        "seq": seq,
        "epoch": EPOCH,
        "data": {"n": seq},
    }


class FakeUnit:
    """A lane's MQTT side, reduced to what this test needs: events, retained status, and
    ``replay_events`` (signature checked) answered by sending the range again."""

    def __init__(self, url: str, unit: str, skip: set[int], dup: set[int]) -> None:
        self.url, self.unit, self.skip, self.dup = url, unit, skip, dup
        self.replays: list[tuple[int, int | None]] = []
        self.ready = asyncio.Event()
        self.key = Ed25519PublicKey.from_public_bytes(base64.b64decode(KEYS["public_key"]))

    async def run(self) -> None:
        host, port = self.url.removeprefix("mqtt://").split(":")
        prefix = f"portlane/v1/{SITE}/{self.unit}"
        async with aiomqtt.Client(host, int(port), identifier=f"unit-{self.unit}") as c:
            await c.subscribe(f"{prefix}/cmd/replay_events", qos=1)
            self.ready.set()
            for seq in range(1, EVENTS + 1):
                if seq not in self.skip:
                    await c.publish(f"{prefix}/event/test.tick", json.dumps(envelope(self.unit, seq)), qos=1)
                if seq in self.dup:  # re-sent: the first PUBACK "never came"
                    await c.publish(f"{prefix}/event/test.tick", json.dumps(envelope(self.unit, seq)), qos=1)
            status = {"state": "online", "epoch": EPOCH, "last_seq": EVENTS}
            await c.publish(f"{prefix}/status", json.dumps(status), qos=1, retain=True)
            async for msg in c.messages:
                body = json.loads(bytes(msg.payload))
                sig = base64.b64decode(body.pop("sig"))
                self.key.verify(sig, canonical_json(body, allow_floats=False))  # raises on a forged request
                lo, hi = body["args"]["from_seq"], body["args"]["to_seq"]
                self.replays.append((lo, hi))
                for seq in range(lo, (hi or EVENTS) + 1):
                    await c.publish(f"{prefix}/event/test.tick", json.dumps(envelope(self.unit, seq)), qos=1)
                answer = {"ok": True, "command": "replay_events", "correlation_id": body["nonce"]}
                await c.publish(f"{prefix}/response", json.dumps(answer), qos=1)


class Platform:
    """What the watcher asks units with: signed ``replay_events`` with the demo platform key."""

    def __init__(self, url: str) -> None:
        self.signer = CommandSigner(KEYS["key_id"], KEYS["private_key"])
        self.link = MqttLink(url, client_id="t-platform", protocol="5")

    async def request_replay(self, unit: str, from_seq: int, to_seq: int | None) -> None:
        import datetime as dt

        now = dt.datetime.now(dt.UTC)
        cmd = {"cmd": "replay_events", "site": SITE, "lane": unit, "args": {"from_seq": from_seq, "to_seq": to_seq}}
        signed = self.signer.sign({**cmd, "issued_at": now, "expires_at": now + dt.timedelta(seconds=60)})
        await self.link.publish(f"portlane/v1/{SITE}/{unit}/cmd/replay_events", signed.to_json_bytes())


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_a_group_of_three_processes_each_event_once_and_replays_gaps(
    broker: BrokerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if broker.kind != "mosquitto":
        pytest.skip("shared subscriptions ($share/...): Mosquitto; the embedded amqtt broker has none")
    monkeypatch.setattr(consumer_group, "GAP_GRACE_S", GRACE_S)
    ledger = tmp_path / "ledger.db"
    Ledger(ledger).close()  # schema before three members race to create it
    expected = 3 * EVENTS
    done = asyncio.Event()
    count = 0

    def effect(db: Any, env: dict[str, Any]) -> None:
        nonlocal count
        db.execute("CREATE TABLE IF NOT EXISTS effects (id TEXT, consumer TEXT)")
        db.execute("INSERT INTO effects VALUES (?, ?)", (env["id"], consumer_of[env["id"]]))
        count += 1
        if count >= expected:
            done.set()

    members = [GroupConsumer(broker.url, SITE, group="platform", name=f"platform-{i}", ledger=ledger) for i in range(3)]
    consumer_of: dict[str, str] = {}
    for m in members:  # the handler records which member processed the event

        def bound(db: Any, env: dict[str, Any], name: str = m.name) -> None:
            consumer_of[env["id"]] = name
            effect(db, env)

        m.handler = bound
    central = Platform(broker.url)
    watcher = GapWatcher(broker.url, SITE, ledger=ledger, request_replay=central.request_replay)
    units = [
        FakeUnit(broker.url, "c1", skip=set(), dup=set(range(10, 20))),
        FakeUnit(broker.url, "c2", skip={40, 41, 42}, dup=set()),
        FakeUnit(broker.url, "c3", skip={99, 100}, dup=set()),  # a lost tail: only the status shows it
    ]
    # Plain tasks, not a TaskGroup: an aiomqtt client cancelled in the middle of a QoS 1 publish
    # or of its message iteration can wait for its disconnection for ever (seen under load in the
    # full suite), and the shutdown is not what this test is about — it is bounded below.
    tasks = [asyncio.create_task(m.run(), name=m.name) for m in members]
    tasks += [asyncio.create_task(central.link.run(), name="central"), asyncio.create_task(watcher.run(), name="gaps")]
    try:
        async with asyncio.timeout(DEADLINE_S):
            for m in members:
                await m.wait_subscribed()
            await watcher.wait_subscribed()
            await central.link.wait_connected()
            tasks += [asyncio.create_task(u.run(), name=f"unit-{u.unit}") for u in units]
            await done.wait()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks, timeout=SHUTDOWN_S)
    failed = [t.get_name() for t in tasks if t.done() and not t.cancelled() and t.exception() is not None]
    assert not failed, failed

    read = Ledger(ledger)
    db = read.db
    ids = [i for (i,) in db.execute("SELECT id FROM effects")]
    assert len(ids) == expected and len(set(ids)) == expected  # every event processed, each once
    per_member = Counter(c for (c,) in db.execute("SELECT consumer FROM effects"))
    assert set(per_member) == {m.name for m in members}, per_member  # the broker shared the work
    assert sum(m.duplicates for m in members) >= 10  # c1's re-sends, dropped by the ledger
    assert units[0].replays == []
    assert units[1].replays == [(40, 42)]
    assert units[2].replays == [(99, 100)]
    assert sorted(watcher.requested) == [("c2", 40, 42), ("c3", 99, 100)]
    read.close()
