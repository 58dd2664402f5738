"""The shipped broker configuration, attacked: a real Mosquitto with firmware_config/broker/
mosquitto.conf (only paths and port changed), the site's ACL and a PKI from `portlane pki init`.
"""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest
from cryptography import x509
from portlane.edge.config import load_site
from portlane.edge.demo.broker import MosquittoBroker
from portlane.edge.errors import NotConnectedError, PkiError, PublishRefusedError
from portlane.edge.trust.pki import SiteCA, init_pki, render_acl, site_units

from tests.broker_clients import Client, raw_connect, tls_context

pytestmark = pytest.mark.skipif(not MosquittoBroker.available(), reason="needs the mosquitto binary")

ROOT = Path(__file__).resolve().parents[2]
SITE = load_site(ROOT / "firmware_config/sites/zhuhai-hzmb-cargo.yaml")
SID = SITE.site.id
BASE = f"portlane/v1/{SID}"
#: A CONNACK or a refusal arrives within milliseconds on loopback; this is only a safety net.
DEADLINE_S = 10.0


# -- the PKI itself ------------------------------------------------------------------------------


def test_pki_layout_and_modes(pki: Path) -> None:
    units = {u.id: u for u in site_units(SITE)}
    assert {"c1", "c4", "p2", "xray-1", "platform", "console", "tech"} <= set(units)
    for unit in units:
        d = pki / "units" / unit
        cert = x509.load_pem_x509_certificate((d / "client.crt").read_bytes())
        assert cert.subject.rfc4514_string() == f"CN=portlane-{SID}-{unit}"
        assert stat.S_IMODE((d / "client.key").stat().st_mode) == 0o600
        assert (d / "signing.key").exists() == (unit != "platform")
    assert stat.S_IMODE((pki / "ca" / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((pki / "broker" / "server.key").stat().st_mode) == 0o600
    fragment = (pki / "site-keys.yaml").read_text()
    assert "c1: {id: c1-" in fragment and "platform:" not in fragment
    with pytest.raises(PkiError, match="already holds a site CA"):
        init_pki(SITE, pki)


def test_acl_gives_each_user_only_its_topics() -> None:
    acl = render_acl(SITE)
    block = acl.split(f"user portlane-{SID}-c1\n")[1].split("\n\n")[0].splitlines()
    assert block == [
        f"topic write {BASE}/c1/event/#",
        f"topic write {BASE}/c1/status",
        f"topic write {BASE}/c1/response",
        f"topic write {BASE}/c1/checkpoint",
        f"topic read {BASE}/c1/cmd/#",
        f"topic read {BASE}/platform/expected",
        f"topic read {BASE}/xray-1/event/+/c1",  # per-lane scan topics: its own passages' results only
    ]
    assert "pattern" not in acl and "topic readwrite" not in acl


# -- attacks ---------------------------------------------------------------------------------------


async def test_anonymous_and_foreign_clients_cannot_connect(secure: MosquittoBroker, pki: Path) -> None:
    # A client that trusts the broker but has no certificate of its own.
    no_cert = await asyncio.to_thread(raw_connect, secure, tls=tls_context(pki, None))
    assert not no_cert.startswith("connack:Success"), no_cert
    # A certificate from another CA (self-made "lane c1").
    rogue_dir = pki.parent / f"{pki.name}-rogue"
    rogue_dir.mkdir(exist_ok=True)
    rogue = SiteCA.create(SID)
    cert, key = rogue.issue(f"portlane-{SID}-c1")
    (rogue_dir / "c.crt").write_bytes(cert)
    (rogue_dir / "c.key").write_bytes(key)
    ctx = tls_context(pki, None)
    ctx.load_cert_chain(rogue_dir / "c.crt", rogue_dir / "c.key")
    forged = await asyncio.to_thread(raw_connect, secure, tls=ctx)
    assert not forged.startswith("connack:Success"), forged
    # Plain MQTT on the TLS port.
    plain = await asyncio.to_thread(raw_connect, secure, tls=None)
    assert not plain.startswith("connack:Success"), plain
    # The real certificate works (the test would pass vacuously if nothing could connect).
    ok = await asyncio.to_thread(raw_connect, secure, tls=tls_context(pki, "c1"))
    assert ok.startswith("connack:Success"), ok


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_lane_cannot_publish_on_other_units_topics(secure: MosquittoBroker, pki: Path, protocol: str) -> None:
    forbidden = [
        f"{BASE}/c2/event/passage.completed",  # another lane's events
        f"{BASE}/c2/status",  # another lane's retained status
        f"{BASE}/xray-1/event/scan.completed",  # the scanner's verdict
        f"{BASE}/c1/cmd/release",  # commands to itself
        f"{BASE}/c2/cmd/release",
        f"{BASE}/platform/expected",  # registrations
        "x/anything",
    ]
    async with (
        Client(secure, pki, "platform", subscriptions=[f"{BASE}/#", "x/#"]) as watcher,
        Client(secure, pki, "c1", protocol=protocol) as lane,  # type: ignore[arg-type]
    ):
        for topic in forbidden:
            if protocol == "5":
                with pytest.raises(PublishRefusedError, match="Not authorized"):
                    await lane.link.publish(topic, b'{"forged": true}')
            else:
                await lane.link.publish(topic, b'{"forged": true}')  # 3.1.1: acknowledged, then dropped
        marker = f"{BASE}/c1/event/marker"
        await lane.link.publish(marker, b"{}")
        await watcher.wait_for(marker)  # in order after every forged one, had they been accepted
        assert watcher.topics() == [marker]


async def test_a_second_connection_with_a_lanes_client_id_does_not_kick_the_lane(
    secure: MosquittoBroker, pki: Path
) -> None:
    lane_id = f"portlane-{SID}-c1"
    will = (f"{BASE}/c1/status", b'{"state":"offline"}')
    async with (
        Client(secure, pki, "platform", subscriptions=[f"{BASE}/c1/status"]) as watcher,
        Client(secure, pki, "c1", will=will) as lane,
    ):
        # c2's certificate asking for c1's client id: the broker names it after its certificate.
        async with Client(secure, pki, "c2", client_id=lane_id) as intruder:
            await intruder.link.publish(f"{BASE}/c2/event/hello", b"{}")
            await lane.link.publish(f"{BASE}/c1/event/still-here", b"{}")  # same connection: PUBACKed
        assert lane.link.connected and lane.link.connects == 1
        # A raw client with c2's certificate and c1's id, for good measure.
        await asyncio.to_thread(raw_connect, secure, tls=tls_context(pki, "c2"), client_id=lane_id)
        await lane.link.publish(f"{BASE}/c1/status", b'{"state":"online"}', retain=True)
        await watcher.wait_for(f"{BASE}/c1/status")
        assert [m.payload for m in watcher.messages] == [b'{"state":"online"}']  # no "offline" will
        assert lane.link.connects == 1
    assert f"as {lane_id}" in secure.log and "as portlane-zhuhai-hzmb-cargo-c2" in secure.log


async def test_oversize_packets_are_refused(secure: MosquittoBroker, pki: Path) -> None:
    async with (
        Client(secure, pki, "platform", subscriptions=[f"{BASE}/#"]) as watcher,
        Client(secure, pki, "c1") as lane,
    ):
        big = b"x" * (SITE.broker.max_packet_size + 1)
        with pytest.raises((NotConnectedError, PublishRefusedError)):
            await lane.link.publish(f"{BASE}/c1/event/huge", big)
        # The lane reconnects by itself; the huge message never reached anyone.
        async with asyncio.timeout(DEADLINE_S):
            await lane.link.wait_connected()
        marker = f"{BASE}/c1/event/after"
        await lane.link.publish(marker, b"{}")
        await watcher.wait_for(marker)
        assert watcher.topics() == [marker]


async def test_the_units_can_do_their_jobs(secure: MosquittoBroker, pki: Path) -> None:
    """The ACL is not merely closed: each unit reaches what the contract says it reads."""
    async with (
        Client(
            secure,
            pki,
            "c1",
            subscriptions=[f"{BASE}/c1/cmd/+", f"{BASE}/platform/expected", f"{BASE}/xray-1/event/+/c1"],
        ) as lane,
        Client(
            secure,
            pki,
            "xray-1",
            subscriptions=[f"{BASE}/c1/event/inspection.requested", f"{BASE}/c1/event/passage.completed"],
        ) as scanner,
        Client(secure, pki, "platform", subscriptions=[f"{BASE}/+/event/#", f"{BASE}/+/response"]) as platform,
        Client(secure, pki, "console", subscriptions=[f"{BASE}/+/status"]) as console,
    ):
        await platform.link.publish(f"{BASE}/c1/cmd/release", b"{}")
        await platform.link.publish(f"{BASE}/platform/expected", b"{}", retain=True)
        await lane.wait_for(f"{BASE}/c1/cmd/release")
        await lane.wait_for(f"{BASE}/platform/expected")
        await lane.link.publish(f"{BASE}/c1/event/inspection.requested", b"{}")
        await scanner.wait_for(f"{BASE}/c1/event/inspection.requested")
        await scanner.link.publish(f"{BASE}/xray-1/event/scan.completed/c1", b"{}")  # per-lane scan topic
        await lane.wait_for(f"{BASE}/xray-1/event/scan.completed/c1")
        await platform.wait_for(f"{BASE}/xray-1/event/scan.completed/c1")
        await lane.link.publish(f"{BASE}/c1/response", b"{}")
        await platform.wait_for(f"{BASE}/c1/response")
        await lane.link.publish(f"{BASE}/c1/status", b"{}")
        await console.wait_for(f"{BASE}/c1/status")
        await console.link.publish(f"{BASE}/xray-1/cmd/replay_events", b"{}")
        with pytest.raises(PublishRefusedError):
            await console.link.publish(f"{BASE}/c1/cmd/release", b"{}")
        # The scanner does not see lanes' other events.
        assert all(t.endswith(("inspection.requested", "passage.completed")) for t in scanner.topics())
        await platform.link.publish(f"{BASE}/platform/expected", b"", retain=True)  # clear the retained message
