"""Events between units are authenticated by the application, not by the broker.

Tried as any client on the site's broker would: scan results that did not come from the
scanner's key never move a lane, inspection requests that did not come from that lane's key
never fire the X-ray, and what each unit publishes verifies with its own key.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

from portlane.drivers.base import GatePosition
from portlane.edge.contract.times import rfc3339
from portlane.edge.demo.broker import BrokerProcess
from portlane.edge.demo.observer import EventObserver
from portlane.edge.lane.passage import LaneTimeouts, Stage
from portlane.edge.trust.anchor import AuditAnchor
from portlane.edge.trust.audit_chain import Checkpoint, verify_against_checkpoint
from portlane.edge.trust.authority import Authority
from portlane.edge.trust.events import EventSigner, verify_event
from portlane.edge.trust.keys import load_unit_signer

from tests.virtual_lane import SITE_ID, LaneRig, arrive_and_identify, register, start_lane, stop_lane

TAG = "E200341201930500001"
PLATE = "粤B12345"
PREFIX = f"portlane/v1/{SITE_ID}"


def scan_envelope(kind: str, data: dict[str, Any], *, unit: str = "xray-1", n: int = 1) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"{SITE_ID}/{unit}/1/{n}",
        "source": f"portlane://{SITE_ID}/{unit}",
        "type": f"portlane.scan.{kind}",
        "time": rfc3339(0),
        "seq": n,
        "data": data,
    }


async def inspection_queued(r: LaneRig) -> str:
    pid = await arrive_and_identify(r, TAG)
    await r.platform.send("c1", "decision", pid, agency="customs", verdict="inspect")
    await r.until(lambda: r.logic.stage == Stage.INSPECTION_QUEUED)
    return pid


async def test_the_lane_signs_its_events_and_acts_only_on_scan_results_the_scanner_signed(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    obs = EventObserver(broker.url, SITE_ID)
    obs_task = asyncio.create_task(obs.link.run())
    await obs.link.wait_subscribed()
    r = await start_lane(broker.url, tmp_path / "state", timeouts=LaneTimeouts(identify_s=1.0), key_dir=keys)
    try:
        await register(r, TAG, [PLATE])
        pid = await inspection_queued(r)
        authority = Authority.from_site(r.site)

        # What the lane published verifies with the lane's key, and only with it.
        await obs.wait_for(lambda: any(e.get("type") == "portlane.inspection.requested" for e in obs.events))
        request = next(e for e in obs.events if e.get("type") == "portlane.inspection.requested")
        assert verify_event(request, authority).unit == "c1"
        assert request["sigkeyid"] == "c1-key"

        scanner = load_unit_signer(r.site.scanners[0].key, unit="xray-1")  # type: ignore[arg-type]
        lane_key = load_unit_signer(r.site.lanes[0].key, unit="c1")  # type: ignore[arg-type]
        green = {"passage_id": pid, "lane": "c1", "scanner": "xray-1", "scan_id": 7, "result": "GREEN"}
        genuine = scanner.sign(scan_envelope("completed", green))
        tampered = dict(genuine, data={**green, "result": "RED"})
        forgeries = [
            ("scan.completed", scan_envelope("completed", green)),  # unsigned
            ("scan.failed", scan_envelope("failed", {**green, "result": None, "reason": "x"})),  # unsigned divert
            ("scan.completed", lane_key.sign(scan_envelope("completed", green))),  # the lane's key is no scanner's
            ("scan.completed", EventSigner("xray-1-key", lane_key._key).sign(scan_envelope("completed", green))),
            ("scan.completed", tampered),  # signed, then changed
            ("scan.failed", genuine),  # genuine bytes on another event's topic
            # about a lane the scanner does not serve here, on c1's topic
            ("scan.completed", scanner.sign(scan_envelope("completed", {**green, "lane": "c2"}))),
            ("scan.completed", {"data": []}),  # unsigned (nothing is read before the signature)
        ]
        # Per-lane scan topics: the lane reads only …/xray-1/event/{type}/c1 (contract.topics).
        for topic, env in forgeries:
            await r.platform.link.publish(f"{PREFIX}/xray-1/event/{topic}/c1", json.dumps(env).encode())
        await r.platform.link.publish(f"{PREFIX}/xray-1/event/scan.completed/c1", b"\xff not json")
        # The inbox is handled in order: once the genuine scan.started took effect, every
        # forgery before it has been judged.
        started = scanner.sign(scan_envelope("started", {**green, "result": None}, n=2))
        await r.platform.link.publish(f"{PREFIX}/xray-1/event/scan.started/c1", json.dumps(started).encode())
        await r.until(lambda: r.logic.stage == Stage.SCANNING)
        refused = r.daemon.unit.peers.refused
        assert refused == {"unsigned": 3, "not_authorised": 2, "bad_signature": 2, "topic_mismatch": 1, "malformed": 1}
        assert r.world.gate.position == GatePosition.CLOSED
        assert r.logic.passage is not None and r.logic.passage.scan_result is None

        await r.platform.link.publish(f"{PREFIX}/xray-1/event/scan.completed/c1", json.dumps(genuine).encode())
        await r.until(lambda: r.logic.stage == Stage.AWAITING_VERDICTS)
        assert r.logic.passage is not None and r.logic.passage.scan_result == "GREEN"
        assert r.daemon.unit.peers.peers.accepted == 2
    finally:
        await stop_lane(r)
        await obs.link.close()
        obs_task.cancel()
        await asyncio.gather(obs_task, return_exceptions=True)

    # At shutdown the lane anchored its audit log: a signed checkpoint event that verifies
    # against the log on disk.
    cps = [e for e in obs.events if e.get("type") == "portlane.audit.checkpoint"]
    assert cps, "no audit checkpoint published"
    cp = Checkpoint.parse(cps[-1])
    assert cp.unit == "c1" and cp.entries >= 1
    assert verify_against_checkpoint(tmp_path / "state" / "audit.jsonl", cp, authority=authority).ok


def test_the_anchor_publishes_only_when_the_log_grew_and_the_period_is_over(tmp_path: Path) -> None:
    from portlane.edge.contract.topics import Topics
    from portlane.edge.delivery.events import EventWriter
    from portlane.edge.delivery.outbox import Outbox
    from portlane.edge.trust.audit import AuditLog
    from portlane.edge.trust.keys import generate_keypair

    now = [1000.0]
    private, _public = generate_keypair()
    outbox = Outbox(tmp_path / "o.db", site=SITE_ID, unit="c1", clock=lambda: now[0])
    audit = AuditLog(tmp_path / "audit.jsonl", clock=lambda: dt.datetime.fromtimestamp(now[0], tz=dt.UTC))

    class NoLink:  # the broker is away: the retained copy is not published
        connected = False

        def publish_best_effort(self, *a: Any, **k: Any) -> None:
            assert not self.connected

    anchor = AuditAnchor(
        audit,
        EventSigner("c1-key", private),
        EventWriter(outbox, Topics(SITE_ID, "c1")),
        NoLink(),  # type: ignore[arg-type]
        unit="c1",
        clock=lambda: now[0],
        period_s=300,
    )
    try:
        audit.append("override", actor="tech-1", reason="barrier test by hand", lane="c1", data={})
        first = anchor.tick()
        assert first is not None and first.entries == 1
        audit.append("override", actor="tech-1", reason="barrier test by hand", lane="c1", data={})
        assert anchor.tick() is None  # the period is not over
        now[0] += 301
        second = anchor.tick()
        assert second is not None and second.entries == 2
        now[0] += 301
        assert anchor.tick() is None  # nothing new to anchor
        assert anchor.tick(force=True) is None
        assert outbox.stats().depth == 2  # both are events in the outbox though the broker was away
    finally:
        audit.close()
        outbox.close()


def _scanner_authority() -> tuple[Authority, EventSigner]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from portlane.edge.trust.authority import KeyGrant, Role

    key = Ed25519PrivateKey.generate()
    grant = KeyGrant("xray-1-key", key.public_key(), Role.SCANNER, "xray-1")
    return Authority([grant], site=SITE_ID, scanner_lanes={"xray-1": ["c1", "c2"]}), EventSigner("xray-1-key", key)


def test_verify_message_refuses_what_no_parser_should_be_asked_to_guess() -> None:
    """One path from message to verified event (``verify_message``): garbage is a TrustError
    with a reason, never another exception — a 100,000-deep array used to raise RecursionError
    out of ``PeerEvents.accept``."""
    from portlane.edge.contract.envelope import MAX_EVENT_BYTES
    from portlane.edge.errors import TrustError
    from portlane.edge.trust.events import verify_message

    authority, signer = _scanner_authority()
    green = {"passage_id": "p-1", "lane": "c1", "scanner": "xray-1", "scan_id": 7, "result": "GREEN"}
    genuine = signer.sign(scan_envelope("completed", green))
    raw = json.dumps(genuine).encode()
    ok = verify_message(raw, authority, unit="xray-1", event_type="scan.completed", lane="c1")
    assert ok.data["result"] == "GREEN"
    red = json.dumps({**genuine, "data": {**green, "result": "RED"}})
    cases = {
        "deep": ("[" * 100_000).encode(),
        "deep object": ('{"a":' * 40 + "1" + "}" * 40).encode(),
        "huge": b'{"x": "' + b"a" * MAX_EVENT_BYTES + b'"}',
        "bad utf-8": b'{"x": "\xff"}',
        "duplicate key": (red[:-1] + ', "data": ' + json.dumps(green) + "}").encode(),
        "not an object": b"[]",
        "empty": b"",
    }
    for name, payload in cases.items():
        try:
            verify_message(payload, authority, unit="xray-1", event_type="scan.completed")
        except TrustError as exc:
            assert exc.reason == "malformed", name
        else:
            raise AssertionError(f"{name}: accepted")
    for unit, etype, lane in (
        ("xray-2", "scan.completed", None),
        ("xray-1", "scan.failed", None),
        ("xray-1", "scan.completed", "c2"),
    ):
        try:
            verify_message(raw, authority, unit=unit, event_type=etype, lane=lane)
        except TrustError as exc:
            assert exc.reason == "topic_mismatch", (unit, etype, lane)
        else:
            raise AssertionError(f"{unit}/{etype}/{lane}: accepted")
