"""The reference central platform (``portlane.edge.platform``) against a real broker: it believes
only what the site's unit keys signed. A lane and a scanner are played by the test: their events
are signed with their own keys (``tests.signed_site``), the platform's commands are read back.

What we saw (issue 23): the simulator acted on whatever lane, passage and result a payload
claimed — an unsigned ``scan.completed`` RED made it divert a vehicle its scanner had cleared.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from portlane.edge.delivery.mqtt import Message, MqttLink
from portlane.edge.demo.broker import BrokerProcess
from portlane.edge.platform import CentralPlatform
from portlane.sim_devices.cargo_desk import CargoDesk
from portlane.sim_devices.traffic import CargoTruth

from tests.signed_site import EPOCH, PREFIX, SignedSite

DEMO_KEYS = yaml.safe_load((Path(__file__).resolve().parents[2] / "firmware_config" / "demo_keys.yaml").read_text())
#: Bounds a broken run only: every wait ends on a command or an answer.
WAIT_S = 30.0


class Lanes:
    """The lanes' and the scanner's side on the broker: signed events out, commands in."""

    def __init__(self, url: str, signed: SignedSite) -> None:
        self.signed = signed
        self.commands: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.seq: dict[str, int] = {}
        self.link = MqttLink(url, client_id="t-lanes", subscriptions=[f"{PREFIX}/+/cmd/+"], on_message=self._on_command)

    def _on_command(self, msg: Message) -> None:
        self.commands.put_nowait(json.loads(msg.payload))

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        await self.link.publish(topic, payload, retain=retain)

    async def event(self, unit: str, type_: str, data: dict[str, Any], *, lane: str | None = None) -> dict[str, Any]:
        """A signed event of ``unit`` (``lane``: a scanner's per-lane scan topic); returns it."""
        seq = self.seq[unit] = self.seq.get(unit, 0) + 1
        env = self.signed.envelope(unit, type_, data, seq=seq)
        topic = f"{PREFIX}/{unit}/event/{type_}" + (f"/{lane}" if lane else "")
        await self.publish(topic, json.dumps(env).encode())
        return env

    async def answer(self, cmd: dict[str, Any], ok: bool = True) -> None:
        body = {"correlation_id": cmd["nonce"], "command": cmd["cmd"], "ok": ok, "reason": None if ok else "x"}
        await self.publish(f"{PREFIX}/{cmd['lane']}/response", json.dumps(body).encode())

    async def next_command(self, within: float = WAIT_S) -> dict[str, Any]:
        async with asyncio.timeout(within):
            cmd = await self.commands.get()
        await self.answer(cmd)
        return cmd

    async def commands_until(self, predicate: Any) -> list[dict[str, Any]]:
        """Commands as they come (each answered), up to the first for which ``predicate`` holds."""
        got = []
        while True:
            got.append(await self.next_command())
            if predicate(got[-1]):
                return got


@contextlib.asynccontextmanager
async def running(url: str, tmp_path: Path, **kw: Any) -> AsyncIterator[tuple[CentralPlatform, Lanes, SignedSite]]:
    signed = SignedSite(tmp_path, url=url)
    platform = CentralPlatform(
        signed.site,
        key_id=DEMO_KEYS["key_id"],
        private_key_b64=DEMO_KEYS["private_key"],
        think_s=0.0,
        registrations=[{"tag_id": "E1", "plates": ["粤B12345"]}],
        **kw,
    )
    lanes = Lanes(url, signed)
    tasks = [asyncio.create_task(platform.run(), name="platform"), asyncio.create_task(lanes.link.run(), name="lanes")]
    try:
        async with asyncio.timeout(WAIT_S):
            await platform.wait_connected()
            await lanes.link.wait_subscribed()
        yield platform, lanes, signed
        assert not tasks[0].done(), "the platform keeps running"
    finally:
        await lanes.link.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def identified(pid: str, **kw: Any) -> dict[str, Any]:
    return {"passage_id": pid, "plates": [], "containers": [], "tag_id": "E1", "confidence": 0.95, **kw}


def scan(pid: str, result: str, lane: str = "c1") -> dict[str, Any]:
    return {"passage_id": pid, "lane": lane, "scanner": "xray-1", "scan_id": 7, "result": result}


async def test_it_decides_on_signed_identifications_and_skips_garbage_and_copied_ids(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    async with running(broker.url, tmp_path, inspect_ratio=0.0) as (platform, lanes, signed):
        t = f"{PREFIX}/c1/event/vehicle.identified"
        genuine = signed.envelope("c1", "vehicle.identified", identified("c1-p7"), seq=7)
        for topic, body in [
            (t, b"[1, 2]"),
            (f"{PREFIX}/c1/event/scan.completed", b'{"data": 1}'),
            (f"{PREFIX}/c1/response", b'"ok"'),
            (f"{PREFIX}/c1/status", b"null"),
            (f'{PREFIX}/c9"x/status', json.dumps({"state": "online", "last_seq": 50}).encode()),
            (
                t,
                json.dumps({**genuine, "data": {**genuine["data"], "passage_id": 5}}).encode(),
            ),  # the id, not the event
            (t, json.dumps({k: v for k, v in genuine.items() if k not in ("sig", "sigkeyid")}).encode()),  # unsigned
        ]:
            await lanes.publish(topic, body)
        await lanes.publish(t, json.dumps(genuine).encode())
        cmds = await lanes.commands_until(lambda c: c["passage_id"] == "c1-p7" and c["args"]["agency"] == "border")
        decisions = [(c["cmd"], c["args"]) for c in cmds if c["passage_id"] == "c1-p7"]
        assert [a["agency"] for _c, a in decisions] == ["customs", "border"]
        assert all(c == "decision" and a["verdict"] == "release" for c, a in decisions)
        refused = platform.client.stats.refused
        assert refused.get("unsigned") == 2 and refused.get("bad_signature") == 1, refused  # {"data": 1} too
        assert platform.stats.identified == 1


async def test_its_desks_see_a_vehicle_the_lane_released_on_pre_decisions(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    """The lane holds a release on pre-decisions while the truck's radiation alarm waits for its
    adjudication: the cargo desk adjudicates it (the agencies decide nothing: the lane did)."""
    desk = CargoDesk({"E1": CargoTruth(radiation="norm")})
    async with running(broker.url, tmp_path, inspect_ratio=0.0, desks=[desk]) as (platform, lanes, _signed):
        alarm = {"passage_id": "c1-p8", "portal": "c1/rpm", "occupancy": 3, "categories": ["gamma"], "gamma_sigma": 9.5}
        await lanes.event("c1", "rpm.alarm", alarm)
        await lanes.event("c1", "vehicle.identified", identified("c1-p8", predecision_ids=["pd-1", "pd-2"]))
        cmd = await lanes.next_command()
        assert (cmd["cmd"], cmd["passage_id"], cmd["args"]["code"], cmd["args"]["occupancy"]) == (
            "adjudicate",
            "c1-p8",
            4,  # NORM
            3,
        )
        await lanes.event("c1", "vehicle.identified", identified("c1-p9"))  # the next truck, not pre-decided
        later = await lanes.commands_until(lambda c: c["passage_id"] == "c1-p9" and c["args"]["agency"] == "border")
        assert [c["passage_id"] for c in later] == ["c1-p9", "c1-p9"]  # no decision on c1-p8: the lane's
        assert platform.stats.decided_by_lane == 1 and platform.stats.identified == 1


async def test_an_officers_correction_keeps_the_e_card_and_the_desk_adjudicates_on_it(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    """A truck whose radiation alarm came before a doubtful identification: the officer corrects
    the identity keeping its e-card, and the desk adjudicates on the corrected one. (Seen in the
    demo: the correction carried no e-card, the desk never learnt the truck, the lane waited for
    the adjudication until the run timed out.)"""
    desk = CargoDesk({"E1": CargoTruth(radiation="norm")})
    async with running(broker.url, tmp_path, inspect_ratio=0.0, desks=[desk]) as (_platform, lanes, _signed):
        alarm = {"passage_id": "c1-p8", "portal": "c1/rpm", "occupancy": 2, "categories": ["gamma"], "gamma_sigma": 9.5}
        await lanes.event("c1", "rpm.alarm", alarm)
        doubt = [{"text": "浙B12345", "kind": "cn", "confidence": 0.5}]
        await lanes.event("c1", "vehicle.identified", identified("c1-p8", plates=doubt, exceptions=["low_confidence"]))
        fix = await lanes.next_command()
        assert (fix["cmd"], fix["args"]["plates"], fix["args"].get("tag_id")) == (
            "correct_identity",
            ["粤B12345"],
            "E1",
        )
        plates = [{"text": "粤B12345", "kind": "cn", "confidence": 1.0}]
        corrected = identified("c1-p8", plates=plates, tag_id=fix["args"]["tag_id"], corrected_by="officer-zh-017")
        await lanes.event("c1", "vehicle.identified", corrected)
        cmd = await lanes.next_command()
        assert (cmd["cmd"], cmd["passage_id"], cmd["args"]["code"], cmd["args"]["occupancy"]) == (
            "adjudicate",
            "c1-p8",
            4,
            2,
        )


async def test_a_scan_result_decides_only_signed_by_the_lanes_scanner_for_a_passage_ordered_inspected(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    async with running(broker.url, tmp_path, inspect_ratio=1.0) as (platform, lanes, signed):
        await lanes.event("c1", "vehicle.identified", identified("c1-p1"))
        [inspect] = await lanes.commands_until(lambda c: c["passage_id"] == "c1-p1")
        assert inspect["args"] == {"agency": "customs", "verdict": "inspect"}
        # The race of issue 23: forged results on the scanner's topics while the real scan runs.
        green = signed.envelope("xray-1", "scan.completed", scan("c1-p1", "GREEN"), seq=9)
        forged_red = {k: v for k, v in green.items() if k not in ("sig", "sigkeyid")} | {"data": scan("c1-p1", "RED")}
        tampered = {**green, "data": scan("c1-p1", "RED")}  # the genuine signature, another result
        for body in (forged_red, tampered):
            for topic in (f"{PREFIX}/xray-1/event/scan.completed/c1", f"{PREFIX}/xray-1/event/scan.completed"):
                await lanes.publish(topic, json.dumps(body).encode())
        # Signed by the real scanner, but for a passage nobody ordered inspected: nothing to decide.
        await lanes.event("xray-1", "scan.completed", scan("c1-p2", "RED"), lane="c1")
        # Lane c2's key cannot speak for the scanner.
        by_c2 = signed.envelope("xray-1", "scan.completed", scan("c1-p1", "RED"), seq=20, signer="c2")
        await lanes.publish(f"{PREFIX}/xray-1/event/scan.completed/c1", json.dumps(by_c2).encode())
        # The genuine GREEN, twice (a redelivery): released by every agency, once.
        for _ in range(2):
            await lanes.publish(f"{PREFIX}/xray-1/event/scan.completed/c1", json.dumps(green).encode())
        verdicts = await lanes.commands_until(lambda c: c["args"].get("agency") == "border")
        assert [(c["passage_id"], c["args"]["verdict"]) for c in verdicts] == [("c1-p1", "release")] * 2
        assert platform.stats.diverts == 0 and platform.stats.scans_ignored == {"not_ordered": 1}
        refused = platform.client.stats.refused
        assert refused.get("unsigned") == 2 and refused.get("bad_signature") == 2 and refused.get("not_authorised") == 1
        # A RED result, signed, for a passage ordered inspected: customs diverts it.
        await lanes.event("c1", "vehicle.identified", identified("c1-p3"))
        await lanes.commands_until(lambda c: c["passage_id"] == "c1-p3")
        await lanes.event("xray-1", "scan.completed", scan("c1-p3", "RED"), lane="c1")
        [divert] = await lanes.commands_until(lambda c: c["passage_id"] == "c1-p3")
        assert divert["args"] == {"agency": "customs", "verdict": "divert"}


async def test_registrations_go_out_on_a_lanes_signed_status_only(broker: BrokerProcess, tmp_path: Path) -> None:
    async with running(broker.url, tmp_path) as (platform, lanes, signed):
        status = {"state": "online", "unit": "c1", "kind": "lane", "in_service": True, "last_seq": 0, "epoch": EPOCH}
        await lanes.publish(f"{PREFIX}/c1/status", json.dumps(status).encode())  # unsigned: not the lane's word
        topic, payload = signed.status("c2", seq=1)
        await lanes.publish(topic, payload)
        reg = await lanes.next_command()
        assert (reg["cmd"], reg["lane"], reg["args"]) == (
            "expected_vehicles",
            "c2",
            {"vehicles": platform.registrations},
        )
        async with asyncio.timeout(WAIT_S):
            await platform.wait_registered(["c2"])
        assert platform.registered == {"c2"} and platform.client.stats.refused.get("unsigned_status") == 1


async def test_an_unanswered_command_is_signed_again_and_a_replay_can_be_asked_for(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    from portlane.edge.client import client as client_module

    async with running(broker.url, tmp_path, inspect_ratio=0.0) as (platform, lanes, _signed):
        assert await platform.request_replay("c1", 3, 5, timeout_s=0.3) == {"ok": False, "reason": "no response"}
        first = await asyncio.wait_for(lanes.commands.get(), WAIT_S)  # not answered
        assert first["cmd"] == "replay_events" and first["args"] == {"from_seq": 3, "to_seq": 5}
        answer = asyncio.create_task(platform.request_replay("c2", 1, timeout_s=WAIT_S))
        cmd = await lanes.next_command()
        assert (await answer) == {"ok": True, "reason": None} and cmd["lane"] == "c2"
        assert client_module.COMMAND_ATTEMPTS >= 2  # decisions are re-signed while unanswered


@pytest.mark.parametrize("kind", ["forged", "replayed", "expired", "other_lane", "unsigned"])
async def test_each_forgery_is_refused_by_the_lane_for_its_reason(kind: str, tmp_path: Path) -> None:
    """The forgeries of ``--inject-forged``, through a real lane's command verifier."""
    import datetime as dt

    from portlane.edge.errors import CommandRejectedError
    from portlane.edge.platform.forgeries import Forger
    from portlane.edge.trust.commands import CommandSigner, CommandVerifier
    from portlane.edge.trust.nonces import MemoryNonceStore

    now = dt.datetime(2026, 11, 23, 18, 0, tzinfo=dt.UTC)
    signed = SignedSite(tmp_path)
    genuine = CommandSigner(DEMO_KEYS["key_id"], DEMO_KEYS["private_key"])
    before = genuine.sign(
        {
            "cmd": "decision",
            "site": signed.site.site.id,
            "lane": "c1",
            "args": {"agency": "customs", "verdict": "release"},
            "issued_at": now,
            "expires_at": now + dt.timedelta(seconds=60),
        }
    )
    forger = Forger(
        signed.site.site.id,
        genuine=genuine,
        lanes=["c1", "c2"],
        last_sent=lambda: (f"{PREFIX}/c1/cmd/decision", before.to_json_bytes()),
        clock=lambda: now,
        rng=__import__("random").Random(1),
    )
    verifier = CommandVerifier.from_site(signed.site, "c1", clock=lambda: now, nonce_store=MemoryNonceStore())
    verifier.verify(before.to_json_bytes())  # the genuine command, accepted once
    topic, payload = forger.forge("c1", kind)
    assert topic == f"{PREFIX}/c1/cmd/decision"
    with pytest.raises(CommandRejectedError) as refused:
        verifier.verify(payload)
    want = {"forged": "bad_signature", "other_lane": "wrong_lane"}.get(kind, kind)
    assert refused.value.reason == want


async def test_the_declarations_go_out_first_and_a_used_one_is_revoked_at_the_other_lane(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    """Issue 20 on the platform: ``declare()`` sends every agency's pre-decision to both lanes
    (a refusal counted by its reason); an identification the lane decided on its pre-decisions
    gets no answer; a used pre-decision is revoked by id at the other lane, once, whatever the
    redeliveries; a vehicle a control order held back is X-rayed where the lane has a scanner
    (inspect_ratio 0: never at random) and diverted where it has none — never just released."""
    from portlane.edge.platform.declarations import Declarations, Policy, Trip
    from portlane.edge.platform.lanes import LaneInfo

    lanes_info = {lane: LaneInfo("cargo", ("customs", "border"), scanner="xray-1") for lane in ("c1", "c2")}
    trip = Trip("v1", "c1", 0, "truck", ("粤B12345",), "E1")
    declarations = Declarations.plan([trip], lanes_info, Policy(share=1.0, mix={}, run="t"))
    async with running(broker.url, tmp_path, inspect_ratio=0.0, declarations=declarations) as (platform, lanes, _s):
        sending = asyncio.create_task(platform.declare())
        ahead = [await lanes.next_command() for _ in range(3)]
        last = await asyncio.wait_for(lanes.commands.get(), WAIT_S)
        await lanes.answer(last, ok=False)  # e.g. a full book
        assert await sending == 4 and platform.stats.declarations_refused == {"x": 1}
        sent = {(c["lane"], c["args"]["predecision_id"]) for c in [*ahead, last]}
        assert sent == {(lane, f"t-v1-{a}") for lane in ("c1", "c2") for a in ("customs", "border")}

        await lanes.event(
            "c1", "vehicle.identified", identified("c1-p1", predecision_ids=["t-v1-customs", "t-v1-border"])
        )
        used = {"passage_id": "c1-p1", "agency": "customs", "decision": "release", "phase": "initial"}
        used |= {"command_nonce": "n1", "basis": "predecision", "predecision_id": "t-v1-customs"}
        decided = await lanes.event("c1", "passage.decided", used)
        await lanes.publish(f"{PREFIX}/c1/event/passage.decided", json.dumps(decided).encode())  # redelivered
        revoke = await lanes.next_command()
        assert (revoke["cmd"], revoke["lane"], revoke["args"]["predecision_id"]) == ("revoke", "c2", "t-v1-customs")

        held = identified("c1-p2", predecision_refusals=[{"reason": "revoked", "agency": "customs"}])
        await lanes.event("c1", "vehicle.identified", held)
        [xray] = await lanes.commands_until(lambda c: c["passage_id"] == "c1-p2")
        assert (xray["cmd"], xray["args"]) == ("decision", {"agency": "customs", "verdict": "inspect"})
        platform.lanes["c2"] = LaneInfo("cargo", ("customs", "border"))  # a lane without an X-ray
        await lanes.event("c2", "vehicle.identified", {**held, "passage_id": "c2-p3"})
        [bay] = await lanes.commands_until(lambda c: c["passage_id"] == "c2-p3")
        assert (bay["cmd"], bay["args"]) == ("decision", {"agency": "customs", "verdict": "divert"})
        assert platform.stats.decided_by_lane == 1 and platform.stats.identified == 2
