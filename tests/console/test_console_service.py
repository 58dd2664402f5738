"""The console against a real broker, on the consumer library: duplicates dropped, gaps replayed
with its own signed ``replay_events``, forgeries refused (a site alarm, never a fact), a restart
that goes on from the saved ledger, and the web API with its roles. Every unit signs its events
with its own key, as on a site (``console_helpers.SignedConsoleSite``)."""

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
from console_helpers import SITE_ID, SignedConsoleSite, completed, envelope
from portlane.edge.console.auth import User, hash_password
from portlane.edge.console.service import ConsoleService
from portlane.edge.contract.canonical import canonical_json
from portlane.edge.contract.topics import Topics
from portlane.edge.delivery.mqtt import Message, MqttLink
from portlane.edge.demo.broker import BrokerProcess
from portlane.edge.trust.keys import load_public_key

#: Deadline for anything crossing the local broker (bounds a broken run: every wait ends on an event).
WAIT_S = 30.0
#: A missing event may be in flight this long before the console asks for it (tests: short). The
#: console asks again after twice this (jittered, on its 0.5 s ticker) without progress: the test
#: must answer and deliver within that, and 0.3 s (a second request after 0.5 s) was tight for
#: five broker hops and a signature check on a loaded 2-core machine (``replays_requested == 1``).
GRACE_S = 2.0


class FakeUnit:
    """A lane as seen on the broker: publishes (signed) events and status, receives commands."""

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

    async def command(self) -> dict[str, Any]:
        async with asyncio.timeout(WAIT_S):
            msg = await self.commands.get()
        body: dict[str, Any] = json.loads(msg.payload)
        assert msg.topic == self.topics.cmd(body["cmd"])
        return body


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


async def until(svc: ConsoleService, predicate: Callable[[], bool]) -> None:
    try:
        async with asyncio.timeout(WAIT_S):
            await svc.wait_for(predicate)
    except TimeoutError:
        raise AssertionError(f"timed out: {svc.stats.as_dict()}, streams {svc.client.streams()}") from None


def arrived(seq: int, pid: str = "p-1", **kw: Any) -> dict[str, Any]:
    return envelope("c1", seq, "passage.arrived", {"passage_id": pid, "lane_kind": "cargo"}, **kw)


def console(signed: SignedConsoleSite, db: Path, url: str, **kw: Any) -> ConsoleService:
    return ConsoleService(
        site=signed.site, db=db, broker_url=url, http=None, connect_timeout_s=WAIT_S, gap_grace_s=GRACE_S, **kw
    )


def active(svc: ConsoleService) -> set[str]:
    return svc.db().active_alarm_keys()


async def test_duplicates_dropped_gap_replayed_forgeries_refused_and_a_restart_goes_on(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    signed = SignedConsoleSite(tmp_path / "keys")
    console_key = next(c.key for c in signed.site.clients if c.id == "console")
    assert console_key is not None
    svc = console(signed, tmp_path / "console.db", broker.url)
    unit = FakeUnit(broker.url, "c1")
    async with svc, running(unit.link):
        for seq in (1, 2, 2, 5):
            await unit.event(signed.sign(arrived(seq, pid=f"p-{seq}")))
        await until(svc, lambda: svc.stats.stored == 3 and svc.client.stats.duplicates == 1)
        assert [v.missing for v in svc.client.streams()] == [((3, 4),)]
        # After the grace (3 and 4 may have been in flight): the console's own signed request.
        cmd = await unit.command()
        assert cmd["cmd"] == "replay_events" and cmd["args"] == {"from_seq": 3, "to_seq": 4}
        assert cmd["lane"] == "c1" and cmd["key_id"] == console_key.id
        body = canonical_json({k: v for k, v in cmd.items() if k != "sig"}, allow_floats=False)
        load_public_key(console_key.public_key).verify(base64.b64decode(cmd["sig"]), body)
        await unit.respond(cmd["nonce"], "replay_events", True)
        for seq in (3, 4):
            await unit.event(signed.sign(arrived(seq, pid=f"p-{seq}")))
        await until(svc, lambda: svc.client.missing == 0 and svc.stats.stored == 5)
        assert svc.client.stats.replays_requested == 1 and svc.findings.answers == {"c1": "accepted"}

        # A forged event (signed, then changed) is refused before it is read: a site alarm, not a
        # fact, and its seq moves nothing (no gap, no replay).
        good = signed.sign(arrived(6, pid="p-6"))
        await unit.event({**good, "seq": 60, "data": {**good["data"], "passage_id": "p-forged"}})
        await unit.event(good)
        await until(svc, lambda: svc.stats.stored == 6 and "refused:bad_signature" in active(svc))
        assert svc.db().count("events") == 6 and svc.db().count("rejected") == 1
        assert [v.max_seq for v in svc.client.streams()] == [6] and svc.client.missing == 0
        assert [e["_signature"] for e in svc.db().events_of("p-6")] == [f"verified:{signed.signers['c1'].key_id}"]
        assert svc.db().events_of("p-forged") == []

    # A restart goes on from the saved ledger: the event published meanwhile arrives from the
    # broker's persistent session, nothing is asked for again from seq 1 (backfill is on).
    unit = FakeUnit(broker.url, "c1")
    async with running(unit.link):
        await unit.event(signed.sign(arrived(7, pid="p-7")))
    async with console(signed, tmp_path / "console.db", broker.url) as again:
        await until(again, lambda: [v.max_seq for v in again.client.streams()] == [7] and again.complete())
        assert again.client.missing == 0 and again.client.stats.replays_requested == 0
        assert again.live.lanes["c1"].passage.id == "p-7"  # type: ignore[union-attr]
        assert again.db().count("events") == 7


async def test_status_announces_missing_events_and_a_refused_replay_raises_an_alarm(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    signed = SignedConsoleSite(tmp_path / "keys")
    svc = console(signed, tmp_path / "console.db", broker.url)
    unit = FakeUnit(broker.url, "c1")
    async with running(unit.link), svc:
        await unit.status(signed.status("c1", 4, last_seq=3, epoch=4))  # signed: 3 events before it
        # The library counts the gap as the status arrives; the console's view takes the status
        # in its next written batch: wait for both.
        await until(svc, lambda: svc.client.missing == 3 and svc.live.lanes["c1"].state == "online")
        assert not svc.complete()
        cmd = await unit.command()
        assert cmd["args"] == {"from_seq": 1, "to_seq": 3}
        await unit.respond(cmd["nonce"], "replay_events", False, "malformed")
        await until(svc, lambda: "gap:c1:4" in active(svc))
        [gap] = [a for a in svc.db().alarms(active_only=True) if a.kind == "gap"]
        assert "refused: malformed" in gap.detail and gap.agencies == () and svc.stats.as_dict()["replay_refused"] == 1
        # The events arrive after all (e.g. the technician replayed them): the alarm clears.
        for seq in (1, 2, 3):
            data = {"passage_id": None, "action": "close", "cause": "exit"}
            await unit.event(signed.sign(envelope("c1", seq, "gate.moved", data, epoch=4)))
        await until(svc, lambda: svc.complete() and "gap:c1:4" not in active(svc))


async def test_web_api_roles_acknowledgement_and_live_stream(broker: BrokerProcess, tmp_path: Path) -> None:
    pw = hash_password("pw-for-tests")
    users = {
        "li": User(name="li", role="supervisor", password=pw),
        "wang": User(name="wang", role="officer", agency="customs", password=pw),  # type: ignore[arg-type]
        "chen": User(name="chen", role="officer", agency="maritime", password=pw),  # type: ignore[arg-type]
    }
    signed = SignedConsoleSite(tmp_path / "keys")
    svc = ConsoleService(
        site=signed.site,
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
        "plates": [{"text": "粤Z1234港", "kind": "cn_crossborder", "confidence": 0.41, "doubt": "rival"}],
        "containers": [{"number": "CSQU3054383", "check_digit_ok": True, "confidence": 0.97}],
        "tag_id": "E2801160",
        "weight_kg": 32000,
        "confidence": 0.41,
        "exceptions": ["low_confidence"],
    }
    decided = {"passage_id": "p-9", "agency": "border", "decision": "release", "phase": "initial", "command_nonce": "n"}
    async with running(unit.link), svc:
        assert svc.url is not None
        await unit.event(signed.sign(arrived(1, pid="p-9", t=t0)))
        await unit.event(signed.sign(envelope("c1", 2, "vehicle.identified", ident, t=t0 + 1)))
        await unit.event(signed.sign(envelope("c1", 3, "passage.decided", decided, t=t0 + 2, audience=("border",))))
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
            # why the lane held the plate reaches the passage page (the console checks it, as the contract says)
            assert detail["identification"]["plates"][0]["doubt"] == "rival"
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
        stages = {"arrived": 0, "identified": 1000, "decided": 2000, "released": 2100, "exited": 9000}
        done = completed("p-9", stages, t0=t0, containers=["CSQU3054383"])
        await unit.event(signed.sign(envelope("c1", 4, "passage.completed", done, t=t0 + 9)))
        await until(svc, lambda: svc.db().count("passages") == 1)
        async with aiohttp.ClientSession(svc.url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await http.post("/api/login", json={"name": "li", "password": "pw-for-tests"}, headers=hdr)
            async with http.get("/api/clearance") as r:
                rep = await r.json()
            async with http.get("/api/clearance?from=tomorrow") as r:
                assert r.status == 400
        assert rep["groups"]["all"]["all"]["stages"]["exited"]["p50"] == 9000.0
        assert rep["groups"]["kind"]["container_truck"]["passages"] == 1


@pytest.mark.parametrize(
    "bad",
    [
        "site: {",
        "http: {port: -1}\n",
        "stuck_after_s: {warp: 3}\n",
        "require_signed_events: false\n",  # issue 23: only signed units are believed, whatever it says
        "event_keys: []\n",
    ],
)
def test_console_config_errors_name_file_and_key(tmp_path: Path, bad: str) -> None:
    from portlane.edge.console.config import load_console_config
    from portlane.edge.errors import ConfigError

    p = tmp_path / "console.yaml"
    p.write_text(bad)
    with pytest.raises(ConfigError) as e:
        load_console_config(p)
    assert str(p) in str(e.value)
    if "signed" in bad or "keys" in bad:
        assert "removed in issue 23" in str(e.value) and "delete the key" in str(e.value)
