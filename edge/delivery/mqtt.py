"""One MQTT connection for a daemon: paho-mqtt's network thread bridged to asyncio here,
and nowhere else.

* Connection state machine with capped, jittered exponential backoff and no retry cap. Each
  connection attempt uses a fresh paho client, so paho never re-sends behind our back: what
  was not acknowledged is re-sent by the durable outbox, in order.
* ``protocol="auto"`` tries MQTT 5 and falls back to 3.1.1 when the broker refuses it (or
  hangs on an MQTT 5 CONNECT, as amqtt does); the result is remembered.
* ``publish`` resolves on PUBACK. With MQTT 5 a failing PUBACK reason code (e.g. 0x87 not
  authorised) raises ``PublishRefused`` — mosquitto acknowledges ACL-denied publishes
  silently on 3.1.1, which is one reason to prefer MQTT 5.
* Every paho callback runs in paho's thread and only hands work to the event loop; all
  bookkeeping happens on the loop thread. PUBACKs and incoming messages are handed over in
  batches: paho's thread appends to a list and wakes the loop once per batch (one
  ``call_soon_threadsafe`` rather than one per message — at thousands of events a second the
  per-message wake-up of the loop was a large part of the cost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from portlane.drivers.supervisor import Backoff

__all__ = ["Message", "MqttLink", "NotConnectedError", "PublishRefusedError", "parse_url"]

log = logging.getLogger(__name__)

#: A CONNACK normally arrives within milliseconds on a LAN; amqtt never answers an MQTT 5
#: CONNECT that carries a will, so "auto" gives up on MQTT 5 after this long.
CONNECT_TIMEOUT_S = 3.0
#: Seconds the broker keeps our session after a disconnect (MQTT 5).
SESSION_EXPIRY_S = 300
#: Unsupported protocol version: 0x84 (MQTT 5 reason code) / 1 (MQTT 3.1.1 return code).
_UNSUPPORTED = {132, 1}


class NotConnectedError(ConnectionError):
    pass


class PublishRefusedError(ConnectionError):
    pass


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    properties: dict[str, Any]


def parse_url(url: str) -> tuple[str, int, bool]:
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise ValueError(f"not an mqtt:// URL: {url!r}")
    tls = u.scheme == "mqtts"
    return u.hostname, u.port or (8883 if tls else 1883), tls


class MqttLink:
    def __init__(
        self,
        url: str,
        *,
        client_id: str,
        protocol: Literal["auto", "3.1.1", "5"] = "auto",
        username: str | None = None,
        password: str | None = None,
        keepalive: int = 15,
        will: tuple[str, bytes] | None = None,
        subscriptions: Iterable[str] = (),
        on_message: Callable[[Message], None] | None = None,
        on_connect: Callable[[], Awaitable[None]] | None = None,
        max_inflight: int = 100,
        backoff: Backoff | None = None,
        persistent_session: bool = False,
    ) -> None:
        self.host, self.port, self.tls = parse_url(url)
        self.url = url
        self.client_id = client_id
        self.protocol = protocol
        self.username = username
        self.password = password
        self.keepalive = keepalive
        self.will = will
        self.subscriptions = list(subscriptions)
        self.on_message = on_message
        self.on_connect = on_connect
        self.max_inflight = max_inflight
        self.persistent_session = persistent_session
        self.backoff = backoff or Backoff(initial=0.1, cap=5.0)
        self.negotiated: Literal["3.1.1", "5"] | None = None
        self.connects = 0
        self._client: mqtt.Client | None = None
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._connected = asyncio.Event()
        self._disconnected: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        # Hand-over from paho's thread: (kind, item) appended there, drained on the loop.
        self._handover: list[tuple[str, Any]] = []
        self._handover_lock = threading.Lock()
        self._handover_scheduled = False

    # ------------------------------------------------------------------ public
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        await self._connected.wait()

    def publish_nowait(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> asyncio.Future[None]:
        """Hand one message to the broker; the future resolves on PUBACK (QoS 1)."""
        client = self._client
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        if client is None or not self.connected:
            fut.set_exception(NotConnectedError("not connected"))
            return fut
        info = client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            fut.set_exception(NotConnectedError(f"publish failed: {mqtt.error_string(info.rc)}"))
            return fut
        if qos == 0:
            fut.set_result(None)
        else:
            self._pending[info.mid] = fut
        return fut

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, properties: Properties | None = None
    ) -> None:
        await self.publish_nowait(topic, payload, qos=qos, retain=retain, properties=properties)

    def subscribe(self, topic: str) -> None:
        """Add a subscription (kept across reconnects)."""
        if topic not in self.subscriptions:
            self.subscriptions.append(topic)
            if self._client is not None and self.connected:
                self._client.subscribe(topic, qos=1)

    async def close(self) -> None:
        """Disconnect cleanly: the broker does not publish the will on a clean DISCONNECT."""
        self._closing = True
        client = self._client
        if client is not None and self.connected:
            client.disconnect()
            if self._disconnected is not None:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    async with asyncio.timeout(2.0):
                        await asyncio.shield(self._disconnected)

    async def run(self) -> None:
        """Keep connected until cancelled (or ``close()``)."""
        self._loop = asyncio.get_running_loop()
        proto = "5" if self.protocol in ("auto", "5") else "3.1.1"
        try:
            while not self._closing:
                outcome = await self._session(proto)
                if outcome == "fallback":
                    log.info("%s: broker refused MQTT 5, using 3.1.1", self.url)
                    proto = "3.1.1"
                    continue
                if self._closing:
                    break
                await asyncio.sleep(self.backoff.next_delay())
        finally:
            self._connected.clear()

    # ------------------------------------------------------------------ internals
    def _make_client(self, proto: str) -> mqtt.Client:
        version = MQTTProtocolVersion.MQTTv5 if proto == "5" else MQTTProtocolVersion.MQTTv311
        kwargs: dict[str, Any] = {"client_id": self.client_id, "protocol": version}
        if proto == "3.1.1":
            kwargs["clean_session"] = not self.persistent_session
        client = mqtt.Client(CallbackAPIVersion.VERSION2, **kwargs)
        client.max_inflight_messages_set(self.max_inflight)
        client.max_queued_messages_set(0)
        if self.username:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set()
        if self.will is not None:
            client.will_set(self.will[0], self.will[1], qos=1, retain=True)
        loop = self._loop
        assert loop is not None

        def on_connect(_c: Any, _u: Any, _flags: Any, rc: Any, _props: Any) -> None:
            loop.call_soon_threadsafe(self._on_connack, int(rc.value) if hasattr(rc, "value") else int(rc))

        def on_connect_fail(_c: Any, _u: Any) -> None:
            loop.call_soon_threadsafe(self._on_connack, -1)

        def on_disconnect(_c: Any, _u: Any, _flags: Any, rc: Any, _props: Any) -> None:
            loop.call_soon_threadsafe(self._on_disconnect, str(rc))

        def on_publish(_c: Any, _u: Any, mid: int, rc: Any, _props: Any) -> None:
            failed = bool(getattr(rc, "is_failure", False))
            self._hand_over(loop, "puback", (mid, str(rc) if failed else None))

        def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
            props: dict[str, Any] = {}
            if msg.properties is not None:
                for name in ("ResponseTopic", "CorrelationData"):
                    if hasattr(msg.properties, name):
                        props[name] = getattr(msg.properties, name)
            m = Message(msg.topic, bytes(msg.payload), bool(msg.retain), props)
            self._hand_over(loop, "message", m)

        client.on_connect = on_connect
        client.on_connect_fail = on_connect_fail
        client.on_disconnect = on_disconnect
        client.on_publish = on_publish
        client.on_message = on_message
        return client

    async def _session(self, proto: str) -> str:
        loop = asyncio.get_running_loop()
        client = self._make_client(proto)
        self._connack: asyncio.Future[int] = loop.create_future()
        self._disconnected = loop.create_future()
        props = None
        if proto == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves it unannotated
            props.SessionExpiryInterval = SESSION_EXPIRY_S
        try:
            kw: dict[str, Any] = {"keepalive": self.keepalive, "properties": props}
            if proto == "5":
                kw["clean_start"] = not self.persistent_session
            client.connect_async(self.host, self.port, **kw)
            client.loop_start()
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    rc = await self._connack
            except TimeoutError:
                return "fallback" if (self.protocol == "auto" and proto == "5") else "retry"
            if rc != 0:
                if rc in _UNSUPPORTED and self.protocol == "auto" and proto == "5":
                    return "fallback"
                log.debug("%s: connect failed (%s)", self.url, rc)
                return "retry"
            self._client = client
            self.negotiated = "5" if proto == "5" else "3.1.1"
            self.connects += 1
            self.backoff.reset()
            for topic in self.subscriptions:
                client.subscribe(topic, qos=1)
            self._connected.set()
            log.info("%s: connected (MQTT %s)", self.url, self.negotiated)
            if self.on_connect is not None:
                await self.on_connect()
            await asyncio.shield(self._disconnected)
            return "retry"
        finally:
            self._connected.clear()
            self._client = None
            pending, self._pending = self._pending, {}
            for fut in pending.values():
                if not fut.done():
                    fut.set_exception(NotConnectedError("connection lost before PUBACK"))
            with contextlib.suppress(Exception):
                client.disconnect()
            await asyncio.to_thread(client.loop_stop)

    def _hand_over(self, loop: asyncio.AbstractEventLoop, kind: str, item: Any) -> None:
        """(paho's thread) Queue ``item`` for the loop; wake the loop once per batch."""
        with self._handover_lock:
            self._handover.append((kind, item))
            if self._handover_scheduled:
                return
            self._handover_scheduled = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(self._drain_handover)

    def _drain_handover(self) -> None:
        """(loop) Process everything paho's thread handed over, in arrival order."""
        with self._handover_lock:
            batch, self._handover = self._handover, []
            self._handover_scheduled = False
        for kind, item in batch:
            if kind == "puback":
                self._on_puback(*item)
            else:
                self._deliver(item)

    def _on_connack(self, rc: int) -> None:
        if not self._connack.done():
            self._connack.set_result(rc)

    def _on_disconnect(self, reason: str) -> None:
        if self._connected.is_set() and not self._closing:
            log.warning("%s: disconnected (%s)", self.url, reason)
        self._connected.clear()
        if self._disconnected is not None and not self._disconnected.done():
            self._disconnected.set_result(None)
        if not self._connack.done():
            self._connack.set_result(-1)

    def _on_puback(self, mid: int, failure: str | None) -> None:
        fut = self._pending.pop(mid, None)
        if fut is None or fut.done():
            return
        if failure:
            fut.set_exception(PublishRefusedError(failure))
        else:
            fut.set_result(None)

    def _deliver(self, msg: Message) -> None:
        if self.on_message is not None:
            try:
                self.on_message(msg)
            except Exception:
                log.exception("message handler failed for %s", msg.topic)
