"""``events tail``: events live from the broker, as the central platform receives them::

    events tail [--lane L] [--type T] [--site ID] [--broker mqtt://H:P] [--count N] [--timeout S] [--json]

Topic ``portlane/v1/{site}/{lane}/event/{type}`` (``contract.topics``); broker and site default
to the running daemon's. The connection is the project's one MQTT link
(``delivery.mqtt.MqttLink``), run in ``asyncio.run``. Once ``listening on …`` is on stderr,
no matching event is missed.

Exit codes: 0 ``--count`` events seen (or ^C) · 1 fewer before ``--timeout`` · 2 usage ·
3 broker unreachable or refused us.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
from typing import TYPE_CHECKING, Any

from portlane.edge.errors import EXIT_FAILED, EXIT_OK, UnreachableError, UsageError

from ._common import ask_quiet, console, daemon_opts, err, guard, note

if TYPE_CHECKING:
    from portlane.edge.delivery.mqtt import Message, MqttLink
    from rich.console import Console

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
#: A broker on the site LAN answers TCP and CONNECT within milliseconds; a remote one over TLS
#: within a second or two. Past this it refused us (credentials, ACL) or is not there.
CONNECT_DEADLINE_S = 5.0
#: The subscription barrier's PUBACK comes in one round trip once connected.
BARRIER_DEADLINE_S = 5.0
#: Where the barrier message goes: outside ``portlane/v1`` so that nobody consumes it.
BARRIER_TOPIC = "portlane-cli/{client_id}/barrier"


def register(sub: Any) -> None:
    p = sub.add_parser("events", help="live events from the broker")
    es = p.add_subparsers(dest="events_command", metavar="ACTION", required=True)
    t = es.add_parser("tail", help="print events as they are published")
    t.add_argument("--lane", default="+", help="lane id (default: all)")
    t.add_argument("--type", default=None, help="event type, e.g. vehicle.identified (default: all)")
    t.add_argument("--site", dest="site_id", default=None, help="site id (default: from the running daemon, else all)")
    t.add_argument("--broker", default=None, help=f"mqtt://HOST:PORT (default: the daemon's, else {DEFAULT_BROKER})")
    t.add_argument("--username", default=None)
    t.add_argument(
        "--password-env", default="PORTLANE_MQTT_PASSWORD", help="environment variable holding the broker password"
    )
    t.add_argument("--count", type=int, default=None, help="stop after N events")
    t.add_argument("--timeout", type=float, default=None, help="give up (exit 1) after S seconds")
    daemon_opts(t)
    t.set_defaults(func=run_tail)


@guard
def run_tail(args: argparse.Namespace) -> int:
    from portlane.edge.contract.topics import Topics
    from portlane.edge.delivery.mqtt import parse_url

    if args.count is not None and args.count <= 0:
        raise UsageError("--count must be positive")
    status = None if (args.broker and args.site_id) else next(iter(ask_quiet(args, "status")), None)
    daemon = status[1] if status else {}
    broker: str = args.broker or (daemon.get("broker") or {}).get("url") or DEFAULT_BROKER
    site: str = args.site_id or daemon.get("site") or "+"
    try:
        parse_url(broker)
    except ValueError as exc:
        raise UsageError(f"--broker must look like mqtt://HOST:PORT, not {broker!r}") from exc
    topic = Topics(site, args.lane).event(args.type or "#")
    return asyncio.run(_tail(args, broker, topic, None if args.json else console()))


async def _reachable(broker: str) -> None:
    """Fail fast, with the operating system's reason, when nothing listens at the broker's
    address (the link itself would quietly retry until the connect deadline)."""
    from portlane.edge.delivery.mqtt import parse_url

    host, port, _tls = parse_url(broker)
    try:
        async with asyncio.timeout(CONNECT_DEADLINE_S):
            _reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError) as exc:
        raise UnreachableError(f"cannot reach broker {broker}: {exc or 'no answer'}") from exc
    writer.close()
    with contextlib.suppress(OSError):  # the probe's own connection failing on close is no news
        await writer.wait_closed()


async def _tail(args: argparse.Namespace, broker: str, topic: str, con: Console | None) -> int:
    from portlane.edge.delivery.mqtt import MqttLink

    await _reachable(broker)
    done = asyncio.Event()
    seen = 0
    client_id = f"portlane-tail-{secrets.token_hex(4)}"

    from paho.mqtt.client import topic_matches_sub

    def on_message(msg: Message) -> None:
        nonlocal seen
        # Only what was asked for: the embedded broker (amqtt) has been seen to hand a new
        # subscriber retained status messages of other units, outside its filter.
        if done.is_set() or not topic_matches_sub(topic, msg.topic):
            return
        _print_event(con, msg)
        seen += 1
        if args.count is not None and seen >= args.count:
            done.set()

    async def on_connect() -> None:
        if link.connects > 1:
            err(f"reconnected to {broker}; events published while disconnected were missed")

    # MQTT 3.1.1 with a clean session: the broker keeps nothing of ours once we disconnect.
    link = MqttLink(
        broker,
        client_id=client_id,
        protocol="3.1.1",
        username=args.username,
        password=os.environ.get(args.password_env) if args.username else None,
        keepalive=30,
        subscriptions=[topic],
        on_message=on_message,
        on_connect=on_connect,
    )
    finished = False
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(link.run(), name="events-tail-mqtt")
        try:
            failure = await _subscribed(link, broker, client_id)
            if failure is None:
                note(f"listening on {broker} for {topic}")
                finished = await _wait(done, args.timeout)
        finally:
            await link.close()
            runner.cancel()
    if failure is not None:
        raise UnreachableError(failure)
    if not finished:
        err(f"{seen} event(s) before the {args.timeout:g} s timeout")
        return EXIT_FAILED
    return EXIT_OK


async def _subscribed(link: MqttLink, broker: str, client_id: str) -> str | None:
    """Wait until the subscription is in force; None, or why it is not.

    ``MqttLink`` sends the SUBSCRIBE before it reports the connection, but does not report the
    SUBACK. A QoS 1 message published after it is acknowledged only once the broker has read
    the SUBSCRIBE before it (a broker handles one connection's packets in order), so its PUBACK
    is the barrier — also when an ACL refuses the message (MQTT 5 reason code, or mosquitto's
    silent acknowledgement under 3.1.1).
    """
    from portlane.edge.errors import NotConnectedError, PublishRefusedError

    try:
        async with asyncio.timeout(CONNECT_DEADLINE_S):
            await link.wait_connected()
    except TimeoutError:
        return f"broker {broker} did not accept the connection within {CONNECT_DEADLINE_S:g} s (credentials? TLS?)"
    try:
        async with asyncio.timeout(BARRIER_DEADLINE_S):
            await link.publish(BARRIER_TOPIC.format(client_id=client_id), b"", qos=1)
    except PublishRefusedError:
        pass  # refused, but acknowledged: the barrier held
    except (TimeoutError, NotConnectedError) as exc:
        return f"broker {broker} dropped the connection while subscribing: {exc or 'no answer'}"
    return None


async def _wait(done: asyncio.Event, limit_s: float | None) -> bool:
    try:
        async with asyncio.timeout(limit_s):
            await done.wait()
    except TimeoutError:
        return False
    return True


def _print_event(con: Console | None, msg: Message) -> None:
    from portlane.edge.contract.topics import Topics

    try:
        payload: Any = json.loads(msg.payload)
    except ValueError:
        payload = msg.payload.decode("utf-8", "replace")
    try:
        _site, lane, _kind, rest = Topics.parse(msg.topic)
        etype = Topics.parse_event(rest)[0]  # a scanner's per-lane scan topic has the lane after the type
    except ValueError:
        lane, etype = "?", "?"
    if con is None:
        line = {"topic": msg.topic, "lane": lane, "type": etype, "payload": payload}
        print(json.dumps(line, ensure_ascii=False), flush=True)
        return
    ts = payload.get("time") if isinstance(payload, dict) else None
    ts = ts or dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    con.print(f"{ts}  [cyan]{lane}[/]  [bold]{etype}[/]  {_summary(payload)}", soft_wrap=True)


def _summary(payload: object) -> str:
    if not isinstance(payload, dict):
        return str(payload)[:200]
    data = payload.get("data")
    bits = [f"seq={payload['seq']}"] if "seq" in payload else []
    if payload.get("subject"):
        bits.append(f"subject={payload['subject']}")
    if isinstance(data, dict):
        bits += [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in list(data.items())[:6]]
    return " ".join(bits)
