"""Clients of the shipped secure broker for tests: an ``MqttLink`` as one unit (its own
certificate), and a bare paho connection that reports the broker's CONNACK reason or the error."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from portlane.edge.delivery.mqtt import Message, MqttLink
from portlane.edge.demo.broker import MosquittoBroker

#: A CONNACK or a refusal arrives within milliseconds on loopback; this is only a safety net
#: (a TLS handshake on a loaded 2-core CI machine takes longer).
DEADLINE_S = 30.0


class Client:
    """An MqttLink as one unit (its certificate), running in the test's task group."""

    def __init__(self, broker: MosquittoBroker, pki: Path, unit: str, *, client_id: str | None = None, **kw: Any):
        d = pki / "units" / unit
        self.messages: list[Message] = []
        self.arrived = asyncio.Event()
        self.link = MqttLink(
            broker.url,
            client_id=client_id or certificate_name(d / "client.crt"),
            ca_file=str(d / "ca.crt"),
            cert_file=str(d / "client.crt"),
            key_file=str(d / "client.key"),
            on_message=self._on_message,
            **kw,
        )
        self.task: asyncio.Task[None] | None = None

    def _on_message(self, m: Message) -> None:
        self.messages.append(m)
        self.arrived.set()

    async def __aenter__(self) -> Client:
        self.task = asyncio.create_task(self.link.run(), name=f"client-{self.link.client_id}")
        async with asyncio.timeout(DEADLINE_S):
            # Subscribed, not only connected: what another client publishes from here on
            # reaches this one (the broker may read another connection's PUBLISH first).
            await self.link.wait_subscribed()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.link.close()
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    def topics(self) -> list[str]:
        return [m.topic for m in self.messages]

    async def wait_for(self, topic: str) -> None:
        async with asyncio.timeout(DEADLINE_S):
            while topic not in self.topics():
                self.arrived.clear()
                await self.arrived.wait()


def raw_connect(broker: MosquittoBroker, *, tls: ssl.SSLContext | None, client_id: str = "x") -> str:
    """Connect with plain paho (blocking, in a thread); the CONNACK reason or the error."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5)
    if tls is not None:
        c.tls_set_context(tls)
    result: list[str] = []
    c.on_connect = lambda _c, _u, _f, rc, _p: result.append(f"connack:{rc}")
    c.on_disconnect = lambda _c, _u, _f, rc, _p: result.append(f"disconnect:{rc}")
    try:
        c.connect("localhost", broker.port, keepalive=5)
        for _ in range(100):  # each loop() call waits at most 0.1 s for the socket
            if result:
                break
            if c.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:
                result.append("connection lost")
    except (OSError, ssl.SSLError) as exc:
        result.append(f"error:{type(exc).__name__}")
    finally:
        c.disconnect()
    return result[0] if result else "no answer"


def tls_context(pki: Path, unit: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca" / "ca.crt"))
    if unit is not None:
        d = pki / "units" / unit
        ctx.load_cert_chain(d / "client.crt", d / "client.key")
    return ctx


def certificate_name(cert: Path) -> str:
    """The common name of a unit's certificate: its MQTT client id (``portlane-{site}-{unit}``)."""
    name = x509.load_pem_x509_certificate(cert.read_bytes()).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(name[0].value)
