"""The console believes only signed units (issue 23), against a real broker.

What we saw:

* **the console believed unsigned events and status** (``require_signed_events: false`` by
  default): anyone on the broker added fake passages, fake completed passages with made-up stage
  times that fed the clearance-time report, fake device faults, and marked a lane "out of service";
* **one retained message stopped the console**: an unsigned status on ``…/c9"x/status`` (not a
  unit id) with a ``last_seq`` ahead made it sign a ``replay_events`` for that id; the signer
  raised, the ticker died — and, retained, at every restart.

Now everything goes through the consumer library: unsigned or unverifiable input is refused
before it is read, counted, and shown as a site alarm; it creates no unit, stream, gap or replay.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from console_helpers import SITE_ID, SignedConsoleSite, completed, envelope
from portlane.edge.console.analytics import clearance
from portlane.edge.console.service import ConsoleService
from portlane.edge.contract.topics import Topics
from portlane.edge.delivery.mqtt import MqttLink
from portlane.edge.demo.broker import BrokerProcess

#: Bounds a broken run only: every wait ends on an event.
WAIT_S = 30.0
PREFIX = f"portlane/v1/{SITE_ID}"


async def publish(url: str, messages: list[tuple[str, bytes, bool]]) -> None:
    link = MqttLink(url, client_id="t-anyone-on-the-broker")
    task = asyncio.create_task(link.run(), name="anyone")
    try:
        async with asyncio.timeout(WAIT_S):
            await link.wait_connected()
            for topic, payload, retain in messages:
                await link.publish(topic, payload, retain=retain)
    finally:
        await link.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(svc: ConsoleService, predicate: object) -> None:
    async with asyncio.timeout(WAIT_S):
        await svc.wait_for(predicate)  # type: ignore[arg-type]


def console(signed: SignedConsoleSite, tmp_path: Path, url: str) -> ConsoleService:
    return ConsoleService(
        site=signed.site, db=tmp_path / "c.db", broker_url=url, http=None, connect_timeout_s=WAIT_S, gap_grace_s=0.2
    )


async def test_unsigned_events_and_status_are_refused_and_shown_never_stored(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    signed = SignedConsoleSite(tmp_path / "keys")
    t = Topics(SITE_ID, "c1")
    t0 = 1_800_000_000.0
    fake_completed = completed("p-fake", {"arrived": 0, "identified": 1, "exited": 2}, t0=t0)  # made-up stage times
    unsigned = [
        (
            t.event("passage.arrived"),
            envelope("c1", 1, "passage.arrived", {"passage_id": "p-fake", "lane_kind": "cargo"}),
        ),
        (t.event("passage.completed"), envelope("c1", 2, "passage.completed", fake_completed, t=t0 + 3)),
        (t.event("device.state"), envelope("c1", 3, "device.state", {"device": "gate", "health": "offline"})),
    ]
    # Signed, but by lane c2's key for lane c1: a stolen controller speaks only for itself.
    by_c2 = signed.sign(envelope("c1", 4, "device.state", {"device": "gate", "health": "offline"}), by="c2")
    lane_closed = {"state": "online", "unit": "c1", "kind": "lane", "in_service": False, "last_seq": 90}
    async with console(signed, tmp_path, broker.url) as svc:
        await publish(
            broker.url,
            [(topic, json.dumps(env).encode(), False) for topic, env in unsigned]
            + [
                (t.event("device.state"), json.dumps(by_c2).encode(), False),
                (t.status, json.dumps(lane_closed).encode(), True),
            ],
        )
        want = {"refused:unsigned", "refused:not_authorised", "refused:unsigned_status"}
        await until(svc, lambda: want <= svc.db().active_alarm_keys())
        st = svc.db()
        assert st.count("events") == 0 and st.count("passages") == 0  # before: 3 events, 1 passage
        assert clearance(st, site=SITE_ID, tz=svc.live.tz).groups["all"]["all"]["passages"] == 0
        alarms = {a.key: a for a in st.alarms(active_only=True)}
        assert not [k for k in alarms if k.startswith(("device:", "closed:"))]  # no fake fault, lane not closed
        assert svc.live.lanes["c1"].in_service and svc.live.lanes["c1"].state == "unknown"
        assert all(alarms[k].agencies == () and alarms[k].kind == "signature" for k in want)  # site alarms
        assert svc.client.streams() == [] and svc.client.missing == 0  # no gap, no replay from it
        assert st.count("rejected") == 5  # counted with topic and reason only
        # The genuine lane's signed status still counts.
        await publish(broker.url, [(t.status, json.dumps(signed.status("c1", 1)).encode(), True)])
        await until(svc, lambda: svc.live.lanes["c1"].state == "online")
    await publish(broker.url, [(t.status, b"", True)])  # clear the retained message


async def test_a_retained_status_of_a_unit_that_is_no_id_cannot_stop_the_console(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    signed = SignedConsoleSite(tmp_path / "keys")
    junk = json.dumps({"state": "online", "unit": 'c9"x', "kind": "lane", "last_seq": 50, "epoch": 1}).encode()
    await publish(broker.url, [(f'{PREFIX}/c9"x/status', junk, True), (f"{PREFIX}/c1/status", b"null", True)])
    try:
        for _restart in range(2):  # retained: it comes back at every start
            async with console(signed, tmp_path, broker.url) as svc:
                # The refusal alarm is the ticker's own work: it ran after the junk came.
                await until(svc, lambda svc=svc: "refused:bad_unit" in svc.db().active_alarm_keys())  # type: ignore[misc]
                assert svc.complete() and svc.client.streams() == [] and svc.client.stats.replays_requested == 0
                assert not any(t.done() for t in svc._tasks), "the console's tasks keep running"
    finally:
        await publish(broker.url, [(f'{PREFIX}/c9"x/status', b"", True), (f"{PREFIX}/c1/status", b"", True)])
