"""The console against a real broker: de-duplication, gaps and signed replay requests, event
signatures, restarts, and the web API with its roles."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from console_helpers import SITE_ID, completed, envelope, sign_event, site
from portlane.edge.console.auth import User, hash_password
from portlane.edge.console.gaps import GAP_GRACE_MS, REPLAY_BACKOFF_MS
from portlane.edge.console.replay import ReplayRequester
from portlane.edge.console.service import ConsoleService
from portlane.edge.console.signatures import EventKey, EventVerifier
from portlane.edge.contract.canonical import canonical_json
from portlane.edge.contract.topics import Topics
from portlane.edge.delivery.mqtt import Message, MqttLink
from portlane.edge.demo.broker import BrokerProcess
from portlane.edge.trust.keys import generate_keypair, load_public_key

#: Deadline for anything crossing the local broker.
WAIT_S = 10.0


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


class FakeUnit:
    """A lane as seen on the broker: publishes events and status, receives commands."""

    def __init__(self, url: str, unit: str) -> None:
        self.unit = unit
        self.topics = Topics(SITE_ID, unit)
        self.commands: asyncio.Queue[Message] = asyncio.Queue()
        self.link = MqttLink(
            url, client_id=f"fake-{unit}", subscriptions=[self.topics.cmd_filter], on_message=self.commands.put_nowait
        )

    async def event(self, env: dict[str, Any]) -> None:
        await self.link.publish(self.topics.event(env["type"].removeprefix("portlane.")), json.dumps(env).encode())

    async def status(self, body: dict[str, Any]) -> None:
        await self.link.publish(self.topics.status, json.dumps(body).encode(), retain=True)

    async def respond(self, correlation: str, command: str, ok: bool, reason: str | None = None) -> None:
        body = {"correlation_id": correlation, "command": command, "ok": ok, "reason": reason}
        await self.link.publish(self.topics.response, json.dumps(body).encode())


@contextlib.asynccontextmanager
async def running(link: MqttLink) -> AsyncIterator[None]:
    task = asyncio.create_task(link.run(), name="fake-unit")
    try:
        async with asyncio.timeout(WAIT_S):
            await link.wait_connected()
        yield
    finally:
        await link.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def subscribed(svc: ConsoleService, unit: FakeUnit) -> None:
    """The console's subscription is active (SUBACK is not awaited by MqttLink): a status
    published now reaches it."""
    await unit.status({"state": "online", "unit": unit.unit, "kind": "lane", "last_seq": 0})
    await until(svc, lambda: unit.unit in svc._statuses)


async def until(svc: ConsoleService, predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        await svc.wait_for(predicate)


def arrived(seq: int, pid: str = "p-1", **kw: Any) -> dict[str, Any]:
    return envelope("c1", seq, "passage.arrived", {"passage_id": pid, "lane_kind": "cargo"}, **kw)


async def test_duplicates_dropped_gap_replayed_and_signatures_checked(broker: BrokerProcess, tmp_path: Path) -> None:
    console_priv, console_pub = generate_keypair()
    lane_priv, lane_pub = generate_keypair()
    clock = Clock()
    svc = ConsoleService(
        site=site(),
        db=tmp_path / "console.db",
        broker_url=broker.url,
        http=None,
        connect_timeout_s=WAIT_S,
        replay=ReplayRequester(site=SITE_ID, key_id="console-1", private_key=console_priv),
        verifier=EventVerifier([EventKey("lane-c1", lane_pub, ("c1",))]),
        clock=clock,
    )
    unit = FakeUnit(broker.url, "c1")
    async with svc, running(unit.link):
        await subscribed(svc, unit)
        for seq in (1, 2, 2, 5):
            await unit.event(arrived(seq, pid=f"p-{seq}"))
        await until(svc, lambda: svc.stats.stored == 3 and svc.stats.duplicates == 1)
        assert svc.ledger.stream("c1", 1).missing == [(3, 4)]  # type: ignore[union-attr]
        svc.tick()
        assert unit.commands.empty()  # still within the grace period: 3 and 4 may be in flight
        clock.t += GAP_GRACE_MS / 1000 + 1
        svc.tick()
        async with asyncio.timeout(WAIT_S):
            cmd_msg = await unit.commands.get()
        assert cmd_msg.topic == unit.topics.cmd("replay_events")
        cmd = json.loads(cmd_msg.payload)
        assert cmd["args"] == {"from_seq": 3, "to_seq": 4} and cmd["lane"] == "c1" and cmd["key_id"] == "console-1"
        body = canonical_json({k: v for k, v in cmd.items() if k != "sig"}, allow_floats=False)
        load_public_key(console_pub).verify(base64.b64decode(cmd["sig"]), body)
        await unit.respond(cmd["nonce"], "replay_events", True)
        for seq in (3, 4):
            await unit.event(arrived(seq, pid=f"p-{seq}"))
        await until(svc, lambda: svc.ledger.stream("c1", 1).missing == [])  # type: ignore[union-attr]
        assert svc.stats.replays_requested == 1 and svc.stats.stored == 5
        assert svc.gaps.replays[("c1", 1)].last == "accepted"

        # Signatures: a forged event is rejected (and raises an alarm); a signed one is stored.
        good = sign_event(arrived(6, pid="p-6"), "lane-c1", lane_priv)
        forged = {**good, "data": {**good["data"], "passage_id": "p-forged"}}
        await unit.event(forged)
        await until(svc, lambda: svc.stats.rejected == 1)
        assert svc.stats.rejected_by_reason == {"bad_signature": 1}
        assert svc.ledger.stream("c1", 1).max_seq == 5  # type: ignore[union-attr]  # a forged seq is not trusted
        await unit.event(good)
        await until(svc, lambda: svc.stats.signed == 1)
        db = svc.db()
        assert db.count("events") == 6 and db.count("rejected") == 1
        assert "signature:c1" in db.active_alarm_keys()
        assert [e["_signature"] for e in db.events_of("p-6")] == ["verified:lane-c1"]

    # A restart keeps the ledger and the live picture; events published meanwhile arrive
    # from the broker's persistent session, so nothing is missing.
    unit = FakeUnit(broker.url, "c1")
    async with running(unit.link):
        await unit.event(sign_event(arrived(7, pid="p-7"), "lane-c1", lane_priv))
    async with ConsoleService(
        site=site(),
        db=tmp_path / "console.db",
        broker_url=broker.url,
        http=None,
        verifier=EventVerifier([EventKey("lane-c1", lane_pub, ("c1",))]),
        clock=clock,
    ) as again:
        await until(
            again, lambda: again.ledger.stream("c1", 1) is not None and again.ledger.stream("c1", 1).max_seq == 7
        )  # type: ignore[union-attr]
        assert again.ledger.stream("c1", 1).missing == []  # type: ignore[union-attr]
        assert again.live.lanes["c1"].passage.id == "p-7"  # type: ignore[union-attr]


async def test_status_announces_missing_events_and_a_refused_replay_raises_an_alarm(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    priv, _pub = generate_keypair()
    clock = Clock()
    svc = ConsoleService(
        site=site(),
        db=tmp_path / "console.db",
        broker_url=broker.url,
        http=None,
        connect_timeout_s=WAIT_S,
        replay=ReplayRequester(site=SITE_ID, key_id="console-1", private_key=priv),
        clock=clock,
    )
    unit = FakeUnit(broker.url, "c1")
    async with running(unit.link), svc:
        await unit.status({"state": "online", "unit": "c1", "kind": "lane", "last_seq": 3, "epoch": 4})
        await until(svc, lambda: svc.ledger.stream("c1", 4) is not None)
        assert svc.ledger.stream("c1", 4).missing == [(1, 3)]  # type: ignore[union-attr]
        assert not svc.complete()
        for attempt in (1, 2):
            clock.t += max(GAP_GRACE_MS, REPLAY_BACKOFF_MS[0]) / 1000 + 1
            svc.tick()
            async with asyncio.timeout(WAIT_S):
                cmd = json.loads((await unit.commands.get()).payload)
            assert cmd["args"] == {"from_seq": 1, "to_seq": 3}
            await unit.respond(cmd["nonce"], "replay_events", False, "malformed")
            await until(svc, lambda n=attempt: svc.stats.replay_refused == n)  # type: ignore[misc]
        svc.tick()
        gap = [a for a in svc.db().alarms(active_only=True) if a.kind == "gap"]
        assert len(gap) == 1 and "refused: malformed" in gap[0].detail and gap[0].agencies == ()
        # The events arrive after all (e.g. the technician replayed them): the alarm clears.
        for seq in (1, 2, 3):
            await unit.event(
                envelope("c1", seq, "gate.moved", {"passage_id": None, "action": "close", "cause": "exit"}, epoch=4)
            )
        await until(svc, svc.complete)
        svc.tick()
        assert not [a for a in svc.db().alarms(active_only=True) if a.kind == "gap"]


async def test_web_api_roles_acknowledgement_and_live_stream(broker: BrokerProcess, tmp_path: Path) -> None:
    pw = hash_password("pw-for-tests")
    users = {
        "li": User(name="li", role="supervisor", password=pw),
        "wang": User(name="wang", role="officer", agency="customs", password=pw),  # type: ignore[arg-type]
        "chen": User(name="chen", role="officer", agency="maritime", password=pw),  # type: ignore[arg-type]
    }
    svc = ConsoleService(
        site=site(),
        db=tmp_path / "c.db",
        broker_url=broker.url,
        http=("127.0.0.1", 0),
        users=users,
        connect_timeout_s=WAIT_S,
    )
    unit = FakeUnit(broker.url, "c1")
    t0 = 1_800_000_000.0
    ident = {
        "passage_id": "p-9",
        "plates": [{"text": "粤Z1234港", "kind": "cn_crossborder", "confidence": 0.41}],
        "containers": [{"number": "CSQU3054383", "check_digit_ok": True, "confidence": 0.97}],
        "tag_id": "E2801160",
        "weight_kg": 32000,
        "confidence": 0.41,
        "exceptions": ["low_confidence"],
    }
    decided = {"passage_id": "p-9", "agency": "border", "decision": "release", "phase": "initial", "command_nonce": "n"}
    async with running(unit.link), svc:
        assert svc.url is not None
        await subscribed(svc, unit)
        await unit.event(arrived(1, pid="p-9", t=t0))
        await unit.event(envelope("c1", 2, "vehicle.identified", ident, t=t0 + 1))
        await unit.event(envelope("c1", 3, "passage.decided", decided, t=t0 + 2, audience=("border",)))
        await until(svc, lambda: svc.stats.stored == 3)
        jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
        hdr = {"X-Portlane": "1"}
        async with aiohttp.ClientSession(svc.url, cookie_jar=jar) as http:
            async with http.get("/api/overview") as r:
                assert r.status == 401
            async with http.get("/", allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"].startswith("/login")
            async with http.post("/api/login", json={"name": "li", "password": "pw-for-tests"}) as r:
                assert r.status == 403  # no X-Portlane header: what a cross-site form would send
            async with http.post("/api/login", json={"name": "li", "password": "nope"}, headers=hdr) as r:
                assert r.status == 401
            async with http.post("/api/login", json={"name": "li", "password": "pw-for-tests"}, headers=hdr) as r:
                assert r.status == 200
                assert "HttpOnly" in r.headers["Set-Cookie"] and "SameSite=Strict" in r.headers["Set-Cookie"]
            async with http.get("/api/overview") as r:
                snap = await r.json()
                assert "script-src 'self'" in r.headers["Content-Security-Policy"]
            c1 = next(x for x in snap["lanes"] if x["id"] == "c1")
            assert c1["stage"] == "awaiting_decision" and c1["passage"]["decisions"] == {"border": "release"}
            assert c1["alarms"] == 1
            async with http.get("/api/alarms") as r:
                (alarm,) = (await r.json())["alarms"]
            assert alarm["kind"] == "identity" and alarm["can_ack"] is False
            async with http.post(f"/api/alarms/{alarm['id']}/ack", json={}, headers=hdr) as r:
                assert r.status == 403  # supervisors are read-only
            async with http.get("/api/stream") as r:
                assert r.headers["Content-Type"].startswith("text/event-stream")
                first = await r.content.readuntil(b"\n\n")
                assert first.startswith(b"event: overview\n")
                assert json.loads(first.split(b"data: ", 1)[1])["lanes"][0]["id"] == "c1"
            async with http.get("/static/app.js") as r:
                assert r.status == 200 and "EventSource" in await r.text()

        async with aiohttp.ClientSession(svc.url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.post("/api/login", json={"name": "wang", "password": "pw-for-tests"}, headers=hdr) as r:
                assert r.status == 200
            async with http.get("/api/alarms") as r:
                (alarm,) = (await r.json())["alarms"]
            assert alarm["can_ack"] is True
            async with http.post(f"/api/alarms/{alarm['id']}/ack", json={"note": "plate checked"}, headers=hdr) as r:
                assert r.status == 200
                assert (await r.json())["alarm"]["acks"]["customs"]["user"] == "wang"
            async with http.post(f"/api/alarms/{alarm['id']}/ack", json={}, headers=hdr) as r:
                assert r.status == 409
            async with http.get("/api/passages/p-9") as r:
                detail = await r.json()
            assert detail["identification"]["containers"][0]["number"] == "CSQU3054383"
            assert detail["decisions"] == []  # the border decision's audience excludes customs
            assert [e["type"] for e in detail["timeline"]] == ["passage.arrived", "vehicle.identified"]

        async with aiohttp.ClientSession(svc.url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.post("/api/login", json={"name": "chen", "password": "pw-for-tests"}, headers=hdr) as r:
                assert r.status == 200
            async with http.get("/api/alarms") as r:
                assert (await r.json())["alarms"] == []  # maritime works on none of these lanes
            async with http.post(f"/api/alarms/{alarm['id']}/ack", json={}, headers=hdr) as r:
                assert r.status == 404

        # Completing the passage stores its clearance facts; the API gives the report's figures.
        await unit.event(
            envelope(
                "c1",
                4,
                "passage.completed",
                completed(
                    "p-9",
                    {"arrived": 0, "identified": 1000, "decided": 2000, "released": 2100, "exited": 9000},
                    t0=t0,
                    containers=["CSQU3054383"],
                ),
                t=t0 + 9,
            )
        )
        await until(svc, lambda: svc.db().count("passages") == 1)
        async with aiohttp.ClientSession(svc.url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await http.post("/api/login", json={"name": "li", "password": "pw-for-tests"}, headers=hdr)
            async with http.get("/api/clearance") as r:
                rep = await r.json()
            async with http.get("/api/clearance?from=tomorrow") as r:
                assert r.status == 400
        assert rep["groups"]["all"]["all"]["stages"]["exited"]["p50"] == 9000.0
        assert rep["groups"]["kind"]["container_truck"]["passages"] == 1


@pytest.mark.parametrize("bad", ["site: {", "http: {port: -1}\n", "stuck_after_s: {warp: 3}\n"])
def test_console_config_errors_name_file_and_key(tmp_path: Path, bad: str) -> None:
    from portlane.edge.console.config import load_console_config
    from portlane.edge.errors import ConfigError

    p = tmp_path / "console.yaml"
    p.write_text(bad)
    with pytest.raises(ConfigError) as e:
        load_console_config(p)
    assert str(p) in str(e.value)
