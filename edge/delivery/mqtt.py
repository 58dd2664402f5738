"""One MQTT connection for a daemon: paho-mqtt driven by the asyncio event loop here, and
nowhere else.

* Connection state machine with capped, jittered exponential backoff and no retry cap. Each
  connection attempt uses a fresh paho client, so paho never re-sends behind our back: what
  was not acknowledged is re-sent by the durable outbox, in order.
* ``protocol="auto"`` tries MQTT 5 and falls back to 3.1.1 when the broker refuses it (or
  hangs on an MQTT 5 CONNECT, as amqtt does); the result is remembered.
* ``publish`` resolves on PUBACK. With MQTT 5 a failing PUBACK reason code (e.g. 0x87 not
  authorised) raises ``PublishRefused`` — mosquitto acknowledges ACL-denied publishes
  silently on 3.1.1, which is one reason to prefer MQTT 5.
* paho runs in its "external event loop" mode: its socket is watched by the loop's selector
  (epoll) and read/written by ``loop_read``/``loop_write`` on the loop thread, its timers by a
  task calling ``loop_misc``. No paho thread: no select() (which cannot watch a descriptor
  above 1023 — a process with 32 lanes and their devices has more open files than that), no
  hand-off between threads per PUBACK, and all bookkeeping on the loop thread. Only the
  blocking TCP connect runs in a worker thread.
* The socket sends at once (``TCP_NODELAY``): MQTT's packets are small, and with Nagle's
  algorithm a PUBACK or a publish waits for the TCP acknowledgement of the previous segment —
  up to the peer's delayed-ACK timer (40 ms on Linux) when the peer has nothing to send back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
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
from portlane.edge.config import MqttProtocol
from portlane.edge.errors import NotConnectedError, PublishRefusedError

__all__ = ["Message", "MqttLink", "parse_url"]

log = logging.getLogger(__name__)

#: A CONNACK normally arrives within milliseconds on a LAN; amqtt never answers an MQTT 5
#: CONNECT that carries a will, so "auto" gives up on MQTT 5 after this long.
CONNECT_TIMEOUT_S = 3.0
#: Seconds the broker keeps our session after a disconnect (MQTT 5).
SESSION_EXPIRY_S = 300
#: How often paho's timers run (keepalive PINGREQ, PINGRESP deadline): well within keepalive.
MISC_PERIOD_S = 1.0
#: Unsupported protocol version: 0x84 (MQTT 5 reason code) / 1 (MQTT 3.1.1 return code).
_UNSUPPORTED = {132, 1}


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
        protocol: MqttProtocol = "auto",
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
        password_file: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        max_packet_size: int | None = None,
    ) -> None:
        """TLS (``mqtts://``): ``ca_file`` verifies the broker (default: the system's CAs);
        ``cert_file``/``key_file`` are this unit's client certificate. ``password_file`` is read
        at every connect (a rotated password is picked up; trailing newline stripped).
        ``max_packet_size`` is announced to an MQTT 5 broker (it sends nothing larger) and
        larger incoming messages are dropped on 3.1.1."""
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
        self.password_file = password_file
        self.ca_file = ca_file
        self.cert_file = cert_file
        self.key_file = key_file
        self.max_packet_size = max_packet_size
        self.dropped_oversize = 0
        self.backoff = backoff or Backoff(initial=0.1, cap=5.0)
        self.negotiated: Literal["3.1.1", "5"] | None = None
        self.connects = 0
        self._client: mqtt.Client | None = None
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._connected = asyncio.Event()
        self._subscribed = asyncio.Event()  # every subscription of this connection acknowledged
        self._sub_mids: set[int] = set()
        self._disconnected: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._loop_thread = 0  # the event loop's thread id (paho's callbacks check it)

    # ------------------------------------------------------------------ public
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_subscribed(self) -> None:
        """Wait until connected AND the broker acknowledged every subscription (SUBACK): from
        then on, nothing published on those topics is missed."""
        while True:
            await self._connected.wait()
            await self._subscribed.wait()
            if self._connected.is_set():
                return

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def wait_disconnected(self) -> None:
        """Until the current connection is lost (the broker went away, or :meth:`close`); at once
        when not connected."""
        lost = self._disconnected
        if self._connected.is_set() and lost is not None:
            await asyncio.shield(lost)

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

    def publish_best_effort(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Hand a message to the broker without waiting for its PUBACK and without raising: for
        what is also kept elsewhere (command responses, the retained copy of a durable event).
        A message not sent or not acknowledged is logged at INFO."""
        if not self.connected or self._loop is None:
            log.info("%s: not connected; %s not sent", self.url, topic[:200])
            return
        self.publish_nowait(topic, payload, qos=1, retain=retain).add_done_callback(_log_unacknowledged)

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, properties: Properties | None = None
    ) -> None:
        await self.publish_nowait(topic, payload, qos=qos, retain=retain, properties=properties)

    def subscribe(self, topic: str) -> None:
        """Add a subscription (kept across reconnects)."""
        if topic not in self.subscriptions:
            self.subscriptions.append(topic)
            if self._client is not None and self.connected:
                self._track_subscription(self._client.subscribe(topic, qos=1))

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
        self._loop_thread = threading.get_ident()
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
    def _call_in_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn`` on the event loop: now when on its thread, else scheduled thread-safely
        (paho calls the socket callbacks from the worker thread that runs ``connect``)."""
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(fn, *args)

    def _make_client(self, proto: str) -> mqtt.Client:
        version = MQTTProtocolVersion.MQTTv5 if proto == "5" else MQTTProtocolVersion.MQTTv311
        kwargs: dict[str, Any] = {"client_id": self.client_id, "protocol": version}
        if proto == "3.1.1":
            kwargs["clean_session"] = not self.persistent_session
        client = mqtt.Client(CallbackAPIVersion.VERSION2, **kwargs)
        client.max_inflight_messages_set(self.max_inflight)
        client.max_queued_messages_set(0)
        client.connect_timeout = CONNECT_TIMEOUT_S
        password = self.password
        if self.password_file is not None:
            with open(self.password_file, encoding="utf-8") as f:
                password = f.read().rstrip("\r\n")
        if self.username:
            client.username_pw_set(self.username, password)
        if self.tls:
            client.tls_set(ca_certs=self.ca_file, certfile=self.cert_file, keyfile=self.key_file)
        if self.will is not None:
            client.will_set(self.will[0], self.will[1], qos=1, retain=True)

        # Protocol callbacks come from loop_read/loop_write/loop_misc, which run on the loop.
        def on_connect(_c: Any, _u: Any, _flags: Any, rc: Any, _props: Any) -> None:
            self._call_in_loop(self._on_connack, int(rc.value) if hasattr(rc, "value") else int(rc))

        def on_disconnect(_c: Any, _u: Any, _flags: Any, rc: Any, _props: Any) -> None:
            self._call_in_loop(self._on_disconnect, str(rc))

        def on_publish(_c: Any, _u: Any, mid: int, rc: Any, _props: Any) -> None:
            failed = bool(getattr(rc, "is_failure", False))
            self._call_in_loop(self._on_puback, mid, str(rc) if failed else None)

        def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
            if self.max_packet_size is not None and len(msg.payload) > self.max_packet_size:
                self._call_in_loop(self._count_oversize)
                return
            props: dict[str, Any] = {}
            if msg.properties is not None:
                for name in ("ResponseTopic", "CorrelationData"):
                    if hasattr(msg.properties, name):
                        props[name] = getattr(msg.properties, name)
            self._call_in_loop(self._deliver, Message(msg.topic, bytes(msg.payload), bool(msg.retain), props))

        # Socket callbacks: paho's socket is watched by the event loop's selector (epoll), not
        # by a paho thread doing select() — which cannot watch a descriptor above 1023, and a
        # process with dozens of lanes and their devices has more open files than that.
        def on_socket_open(c: mqtt.Client, _u: Any, sock: Any) -> None:
            _send_at_once(sock)
            self._call_in_loop(self._watch_reads, c, sock)

        def on_socket_close(_c: mqtt.Client, _u: Any, sock: Any) -> None:
            self._call_in_loop(self._unwatch, sock)

        def on_socket_register_write(c: mqtt.Client, _u: Any, sock: Any) -> None:
            self._call_in_loop(self._watch_writes, c, sock)

        def on_socket_unregister_write(_c: mqtt.Client, _u: Any, sock: Any) -> None:
            self._call_in_loop(self._unwatch_writes, sock)

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_publish = on_publish
        client.on_message = on_message

        def on_subscribe(_c: Any, _u: Any, mid: int, _rcs: Any, _props: Any) -> None:
            self._call_in_loop(self._on_suback, mid)

        client.on_subscribe = on_subscribe
        client.on_socket_open = on_socket_open
        client.on_socket_close = on_socket_close
        client.on_socket_register_write = on_socket_register_write
        client.on_socket_unregister_write = on_socket_unregister_write
        return client

    def _watch_reads(self, client: mqtt.Client, sock: Any) -> None:
        assert self._loop is not None
        if sock.fileno() < 0:  # closed again before we got here
            return
        self._loop.add_reader(sock, self._readable, client)

    def _watch_writes(self, client: mqtt.Client, sock: Any) -> None:
        assert self._loop is not None
        if sock.fileno() < 0:
            return
        self._loop.add_writer(sock, self._writable, client)

    def _unwatch_writes(self, sock: Any) -> None:
        assert self._loop is not None
        if sock.fileno() >= 0:
            self._loop.remove_writer(sock)

    def _unwatch(self, sock: Any) -> None:
        assert self._loop is not None
        if sock.fileno() >= 0:
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)

    def _readable(self, client: mqtt.Client) -> None:
        try:
            client.loop_read()
        except Exception as exc:  # a broken connection surfaces here (e.g. BrokenPipe)
            log.debug("%s: read failed (%s)", self.url, exc)
            self._on_disconnect(f"read failed: {exc}")

    def _writable(self, client: mqtt.Client) -> None:
        try:
            client.loop_write()
        except Exception as exc:
            log.debug("%s: write failed (%s)", self.url, exc)
            self._on_disconnect(f"write failed: {exc}")

    async def _timers(self, client: mqtt.Client) -> None:
        """paho's timers: keepalive PINGREQ and the PINGRESP deadline."""
        while True:
            if client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return  # no connection any more: the session is ending
            await asyncio.sleep(MISC_PERIOD_S)

    async def _session(self, proto: str) -> str:
        loop = asyncio.get_running_loop()
        client = self._make_client(proto)
        self._connack: asyncio.Future[int] = loop.create_future()
        self._disconnected = loop.create_future()
        props = None
        if proto == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves it unannotated
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            if self.max_packet_size is not None:
                props.MaximumPacketSize = self.max_packet_size
        kw: dict[str, Any] = {"keepalive": self.keepalive, "properties": props}
        if proto == "5":
            kw["clean_start"] = not self.persistent_session
        try:
            try:
                # connect() resolves the name and opens the TCP connection, blocking up to
                # CONNECT_TIMEOUT_S: in a worker thread, never on the loop.
                await asyncio.to_thread(client.connect, self.host, self.port, **kw)
            except (OSError, ValueError) as exc:
                log.debug("%s: cannot connect (%s)", self.url, exc)
                return "retry"
            async with asyncio.TaskGroup() as tg:
                timers = tg.create_task(self._timers(client), name=f"{self.client_id}:mqtt-timers")
                try:
                    return await self._connected_session(client, proto)
                finally:
                    timers.cancel()
        finally:
            self._connected.clear()
            if self._disconnected is not None and not self._disconnected.done():
                self._disconnected.set_result(None)  # however the session ended (a cancel too)
            self._client = None
            pending, self._pending = self._pending, {}
            for fut in pending.values():
                if not fut.done():
                    fut.set_exception(NotConnectedError("connection lost before PUBACK"))
            with contextlib.suppress(Exception):
                client.disconnect()
                client.loop_write()  # the DISCONNECT, if the socket takes it now
            sock = client.socket()
            if sock is not None:
                self._unwatch(sock)
                with contextlib.suppress(OSError):
                    sock.close()

    async def _connected_session(self, client: mqtt.Client, proto: str) -> str:
        assert self._disconnected is not None
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
        self._sub_mids.clear()
        self._subscribed.clear()
        for topic in self.subscriptions:
            self._track_subscription(client.subscribe(topic, qos=1))
        if not self._sub_mids:
            self._subscribed.set()
        self._connected.set()
        log.info("%s: connected (MQTT %s)", self.url, self.negotiated)
        if self.on_connect is not None:
            await self.on_connect()
        await asyncio.shield(self._disconnected)
        return "retry"

    def _track_subscription(self, result: tuple[MQTTErrorCode, int | None]) -> None:
        rc, mid = result
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
            self._sub_mids.add(mid)
            self._subscribed.clear()

    def _on_suback(self, mid: int) -> None:
        self._sub_mids.discard(mid)
        if not self._sub_mids:
            self._subscribed.set()

    def _on_connack(self, rc: int) -> None:
        if not self._connack.done():
            self._connack.set_result(rc)

    def _on_disconnect(self, reason: str) -> None:
        if self._connected.is_set() and not self._closing:
            log.warning("%s: disconnected (%s)", self.url, reason)
        self._connected.clear()
        self._subscribed.clear()
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

    def _count_oversize(self) -> None:
        self.dropped_oversize += 1

    def _deliver(self, msg: Message) -> None:
        if self.on_message is not None:
            try:
                self.on_message(msg)
            except Exception:
                log.exception("message handler failed for %s", msg.topic)


def _send_at_once(sock: Any) -> None:
    """Switch Nagle's algorithm off on a TCP socket (see the module docstring)."""
    with contextlib.suppress(OSError, AttributeError, ValueError):  # not TCP (a test's socketpair)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _log_unacknowledged(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.info("publish not acknowledged by the broker: %s", fut.exception())
