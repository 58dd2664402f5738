"""Least privilege in the shipped broker configuration (issue 23), against a real Mosquitto.

What we saw: the secure demo's Mosquitto ran with ``user root``; the CA's private key sat beside
the unit files; every lane could read every lane's scan results (``xray-1/event/#``); the
console read every command. Now Mosquitto drops to its own user, the CA key is never in a
directory a unit or the broker reads (the demo does not keep it at all), lanes read only their
own passages' scan topics (per-lane scan topics), and the console has its own certificate and
an ACL without commands. The attacks of the issue are refused; the test logs the broker's
answers (CONNACK reason, PUBACK reason code, its connection log).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import load_pem_x509_certificate
from portlane.edge.config import load_site
from portlane.edge.demo.broker import MosquittoBroker
from portlane.edge.demo.options import DEFAULT_SITE
from portlane.edge.demo.secure import secure_demo
from portlane.edge.errors import PkiError, PublishRefusedError
from portlane.edge.trust.pki import init_pki, shipped_mosquitto_conf

from tests.broker_clients import Client, raw_connect, tls_context

pytestmark = pytest.mark.skipif(not MosquittoBroker.available(), reason="needs the mosquitto binary")
log = logging.getLogger(__name__)

SITE = load_site(DEFAULT_SITE)
BASE = f"portlane/v1/{SITE.site.id}"


def _uids(pid: int) -> list[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError(f"no Uid line for {pid}")


async def test_mosquitto_does_not_run_as_root(secure: MosquittoBroker) -> None:
    conf = shipped_mosquitto_conf()
    assert re.search(r"(?m)^user mosquitto$", conf) and not re.search(r"(?m)^user root", conf)
    assert secure.pid is not None
    uids = _uids(secure.pid)
    log.info("mosquitto pid %s runs with uids %s (test euid %s)", secure.pid, uids, os.geteuid())
    assert 0 not in uids  # as root it dropped to 'mosquitto'; otherwise it runs as the test's user


def _private_keys(directory: Path) -> list[tuple[Path, ec.EllipticCurvePrivateKey]]:
    out = []
    for f in directory.rglob("*"):
        if f.is_file() and b"PRIVATE KEY" in f.read_bytes():
            key = serialization.load_pem_private_key(f.read_bytes(), password=None)
            if isinstance(key, ec.EllipticCurvePrivateKey):
                out.append((f, key))
    return out


def _ca_key_files(directory: Path, ca_cert: Path) -> list[Path]:
    ca_public = load_pem_x509_certificate(ca_cert.read_bytes()).public_key()
    assert isinstance(ca_public, ec.EllipticCurvePublicKey)
    return [f for f, k in _private_keys(directory) if k.public_key().public_numbers() == ca_public.public_numbers()]


def test_the_ca_key_is_in_no_directory_a_unit_or_the_broker_reads(pki: Path, tmp_path: Path) -> None:
    ca_cert = pki / "broker" / "ca.crt"
    assert _ca_key_files(pki / "units", ca_cert) == [] and _ca_key_files(pki / "broker", ca_cert) == []
    assert _ca_key_files(pki, ca_cert) == [pki / "ca" / "ca.key"]  # pki init keeps it apart (to move offline)
    with pytest.raises(PkiError, match="must not be where units or the broker read"):
        init_pki(SITE, tmp_path / "x", ca_dir=Path("units") / "c1")
    away = tmp_path / "offline-ca"
    init_pki(SITE, tmp_path / "y", ca_dir=away)
    assert (away / "ca.key").exists() and not (tmp_path / "y" / "ca").exists()


async def test_the_secure_demo_keeps_no_ca_key() -> None:
    raw = yaml.safe_load(DEFAULT_SITE.read_text(encoding="utf-8"))
    demo = secure_demo(raw)
    try:
        # Before: directory/ca/ca.key, beside units/ that the demo's units read.
        assert _ca_key_files(demo.directory, demo.directory / "broker" / "ca.crt") == []
        assert not (demo.directory / "ca").exists()
        for unit in (demo.directory / "units").iterdir():
            names = {f.name for f in unit.iterdir()}
            assert names <= {"ca.crt", "client.crt", "client.key", "signing.key"}, (unit, names)
        assert (demo.directory / "units" / "console" / "client.crt").exists()  # its own certificate
    finally:
        await demo.close()


async def test_each_lane_reads_only_its_own_scan_results(secure: MosquittoBroker, pki: Path) -> None:
    """Per-lane scan topics (contract.topics): the scanner publishes a lane's scan events on
    ``xray-1/event/{type}/{lane}``; the shipped ACL (``portlane pki init``, as rendered by
    default) lets lane c1 read only ``xray-1/event/+/c1``. Before, every lane read
    ``xray-1/event/#``: c1 received c2's results."""
    async with (
        Client(secure, pki, "c1", subscriptions=[f"{BASE}/xray-1/event/#"]) as c1,
        Client(secure, pki, "c2", subscriptions=[f"{BASE}/xray-1/event/#"]) as c2,
        Client(secure, pki, "xray-1") as scanner,
    ):
        for topic in ("scan.completed/c2", "scan.completed", "scan.started/c2", "device.state"):
            await scanner.link.publish(f"{BASE}/xray-1/event/{topic}", b"{}")
        await scanner.link.publish(f"{BASE}/xray-1/event/scan.completed/c1", b"{}")
        await c1.wait_for(f"{BASE}/xray-1/event/scan.completed/c1")  # in order after all the others
        await c2.wait_for(f"{BASE}/xray-1/event/scan.started/c2")
        log.info("lane c1 received %s; lane c2 received %s", c1.topics(), c2.topics())
        assert c1.topics() == [f"{BASE}/xray-1/event/scan.completed/c1"]
        assert c2.topics() == [f"{BASE}/xray-1/event/scan.completed/c2", f"{BASE}/xray-1/event/scan.started/c2"]


async def test_the_console_has_its_own_certificate_and_reads_no_commands(secure: MosquittoBroker, pki: Path) -> None:
    async with (
        Client(secure, pki, "console", subscriptions=[f"{BASE}/#"]) as console,
        Client(secure, pki, "platform") as platform,
        Client(secure, pki, "c1") as lane,
    ):
        await platform.link.publish(f"{BASE}/c1/cmd/release", b'{"a": "command"}')
        await lane.link.publish(f"{BASE}/c1/event/marker", b"{}")
        await console.wait_for(f"{BASE}/c1/event/marker")
        assert console.topics() == [f"{BASE}/c1/event/marker"]  # the command was not delivered to it
        await console.link.publish(f"{BASE}/c1/cmd/replay_events", b"{}")  # what it may send
        with pytest.raises(PublishRefusedError, match="Not authorized") as refused:
            await console.link.publish(f"{BASE}/c1/cmd/release", b"{}")
        log.info("console publishing a release: PUBACK %s", refused.value)


async def test_the_attacks_of_the_issue_are_refused(secure: MosquittoBroker, pki: Path) -> None:
    answers: dict[str, str] = {}
    # An anonymous client (it trusts the broker, but has no certificate), and plain MQTT.
    answers["anonymous"] = await asyncio.to_thread(raw_connect, secure, tls=tls_context(pki, None))
    answers["plain"] = await asyncio.to_thread(raw_connect, secure, tls=None)
    assert not answers["anonymous"].startswith("connack:Success") and not answers["plain"].startswith("connack")
    c1_id = f"portlane-{SITE.site.id}-c1"
    async with (
        Client(secure, pki, "platform", subscriptions=[f"{BASE}/#"]) as watcher,
        Client(secure, pki, "c1") as lane,
    ):
        # Lane c1's certificate publishing on other units' topics: PUBACK 0x87.
        for topic in (f"{BASE}/c2/event/passage.completed", f"{BASE}/xray-1/event/scan.completed", f"{BASE}/c2/status"):
            with pytest.raises(PublishRefusedError) as exc:
                await lane.link.publish(topic, b'{"forged": true}')
            answers[f"c1 publishes {topic.removeprefix(BASE)}"] = str(exc.value)
            assert "Not authorized" in str(exc.value)
        # Lane c2's certificate asking for c1's client id: the broker names it after its certificate.
        answers["c2 takes c1's id"] = await asyncio.to_thread(
            raw_connect, secure, tls=tls_context(pki, "c2"), client_id=c1_id
        )
        await lane.link.publish(f"{BASE}/c1/event/still-here", b"{}")
        await watcher.wait_for(f"{BASE}/c1/event/still-here")
        assert lane.link.connected and lane.link.connects == 1  # c1 was not kicked
        assert watcher.topics() == [f"{BASE}/c1/event/still-here"]
    connections = [line for line in secure.log.splitlines() if "New client connected" in line]
    answers["broker log"] = " | ".join(line.split(": ", 1)[-1] for line in connections)
    for what, answer in answers.items():
        log.info("%s: %s", what, answer)
    assert f"as portlane-{SITE.site.id}-c2" in answers["broker log"]
