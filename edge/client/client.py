"""``SiteClient``: the consumer core on a real MQTT connection, with signed commands.

::

    site = load_site("/etc/portlane/site.yaml")
    async with SiteClient.from_site(site, unit="console") as client:
        async for event in client.events():          # verified, de-duplicated, typed
            print(event.unit, event.seq, event.type, event.payload)

One :class:`~portlane.edge.delivery.mqtt.MqttLink` (the package's one paho bridge: reconnects
with capped jittered backoff, TLS client certificates from the site file) subscribed to
:func:`~.consumer.subscriptions`; every message goes through :class:`~.consumer.SiteConsumer`
on the event loop; a ticker asks units to replay what is missing (signed ``replay_events``) and
re-signs commands nobody answered. Events wait for the caller in a bounded queue; one the
caller does not take in time is marked missing again and replayed, never dropped in silence.

Commands (:meth:`SiteClient.command`) are signed with the client's key (``clients[].key`` of
the site file, or a :class:`~portlane.edge.trust.commands.CommandSigner` given), sent to
``…/{unit}/cmd/{name}`` and matched to their answer by nonce; unanswered after ``resend_s`` they
are signed again with a fresh nonce and validity, up to ``attempts`` times.

Errors (``portlane.edge.errors``): ``ClientError`` — ``NoSignerError`` (no key to sign
commands with), ``CommandTimeoutError`` (no answer after every attempt; also a
``TimeoutError``), ``ClientStateError`` (used before start, after close, or started twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from portlane.edge.contract.commands import ID_PATTERN
from portlane.edge.contract.topics import Topics
from portlane.edge.delivery.mqtt import Message, MqttLink
from portlane.edge.errors import ClientError, ClientStateError, CommandTimeoutError, NoSignerError
from portlane.edge.trust.commands import CommandSigner, RejectReason
from portlane.edge.trust.keys import broker_credentials, load_unit_key, private_key_b64
from portlane.edge.trust.pki import client_id

from .consumer import GAP_GRACE_S, SiteConsumer, subscriptions
from .outputs import (
    Anomaly,
    CommandAnswered,
    ConsumerStats,
    GapAbandoned,
    Output,
    ReplayNeed,
    SiteEvent,
    StreamView,
    UnitChanged,
    UnitView,
)

if TYPE_CHECKING:
    from portlane.edge.config import MqttProtocol, Site

__all__ = [
    "COMMAND_ATTEMPTS",
    "COMMAND_RESEND_S",
    "COMMAND_TTL_S",
    "ClientError",
    "ClientStateError",
    "CommandResult",
    "CommandTimeoutError",
    "NoSignerError",
    "SiteClient",
]

log = logging.getLogger(__name__)

#: Validity of a command this client signs: long enough for a broker to deliver it and for a
#: few seconds of clock skew, short enough that a captured one is soon worthless.
COMMAND_TTL_S = 60.0
#: A command not answered within this long is signed afresh and sent again (lost with a broker).
COMMAND_RESEND_S = 15.0
COMMAND_ATTEMPTS = 3
#: Events waiting for the caller; beyond, an event is marked missing and replayed later.
QUEUE_SIZE = 10_000
#: The ticker: replay scheduling and resends need no finer resolution.
TICK_S = 0.5
#: Alarms (anomalies, gaps given up) kept for display.
RECENT_ALARMS = 64

_ID = re.compile(ID_PATTERN)


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The answer to a command. ``nonce``: that of the attempt answered; ``signed``: the
    answer is the unit's signed event, not its (unsigned) response."""

    unit: str
    command: str
    ok: bool
    reason: str | None
    nonce: str
    attempts: int
    signed: bool


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class SiteClient:
    """A consumer of one site (see the module docstring).

    ``unit``: this client's id in the site file (its broker client id is
    ``portlane-{site}-{unit}``, its TLS files and key are looked up for it). ``url`` overrides
    the site's broker; ``link_options`` replaces the credentials read from the site file (TLS
    files as ``ca_file``/``cert_file``/``key_file``). ``backfill``: ask units first met
    mid-stream for their earlier events; ``gap_grace_s``: how long a missing event may still be
    in flight before it is asked for. ``on_output``: every output is handed to this callback
    (on the event loop) instead of the :meth:`events` queue. ``on_sent``: told the topic and wire
    bytes of every command this client publishes (its own commands and its replay requests), when
    it hands them to the broker.
    """

    def __init__(
        self,
        site: Site,
        *,
        unit: str,
        signer: CommandSigner | None = None,
        url: str | None = None,
        protocol: MqttProtocol | None = None,
        link_options: Mapping[str, Any] | None = None,
        backfill: bool = False,
        gap_grace_s: float = GAP_GRACE_S,
        persistent_session: bool = False,
        queue_size: int = QUEUE_SIZE,
        on_output: Callable[[Output], None] | None = None,
        on_sent: Callable[[str, bytes], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        if not _ID.fullmatch(unit):
            raise ValueError(f"unit {unit!r} is not an id ({ID_PATTERN})")
        self.site = site
        self.site_id = site.site.id
        self.unit = unit
        self.signer = signer
        self.consumer = SiteConsumer.for_site(site, backfill=backfill, gap_grace_s=gap_grace_s)
        self.on_output = on_output
        self.on_sent = on_sent
        self.alarms: deque[Anomaly | GapAbandoned] = deque(maxlen=RECENT_ALARMS)
        self._clock = clock
        self._wall_clock = wall_clock
        self._queue: asyncio.Queue[SiteEvent] = asyncio.Queue(maxsize=queue_size)
        self._answers: dict[str, asyncio.Future[CommandAnswered]] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        use_url = url or site.broker.url
        options = (
            dict(link_options)
            if link_options is not None
            else broker_credentials(site.broker, unit=unit, url=use_url).link_kwargs()
        )
        self.link = MqttLink(
            use_url,
            client_id=client_id(self.site_id, unit),
            protocol=protocol or site.broker.protocol,
            keepalive=site.broker.keepalive_s,
            subscriptions=subscriptions(self.site_id),
            on_message=self._on_message,
            persistent_session=persistent_session,
            **options,
        )

    @classmethod
    def from_site(cls, site: Site, *, unit: str, **kw: Any) -> SiteClient:
        """A client that signs commands with ``unit``'s key from the site file, when its
        ``clients[]`` entry has one and lists commands. Raises ``CredentialError`` when the key
        file is missing or does not match the site file."""
        entry = next((c for c in site.clients if c.id == unit), None)
        if "signer" not in kw and entry is not None and entry.key is not None and entry.commands:
            kw["signer"] = CommandSigner(entry.key.id, private_key_b64(load_unit_key(entry.key, unit=unit)))
        return cls(site, unit=unit, **kw)

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Stay connected and consume until cancelled (what ``async with`` runs in a task)."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.link.run(), name=f"client-{self.unit}:mqtt")
            tg.create_task(self._ticker(), name=f"client-{self.unit}:ticker")

    async def __aenter__(self) -> Self:
        if self._task is not None or self._closed:
            raise ClientStateError("a SiteClient is started once; make a new one")
        self._task = asyncio.create_task(self.run(), name=f"client-{self.unit}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Disconnect and stop; idempotent."""
        if self._closed:
            return
        self._closed = True
        await self.link.close()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for fut in self._answers.values():
            if not fut.done():
                fut.cancel()

    async def wait_subscribed(self) -> None:
        """Until connected and every subscription acknowledged: nothing published after this
        is missed."""
        await self.link.wait_subscribed()

    # -- reading -------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[SiteEvent]:
        """Verified events, each once, in arrival order (``late`` ones filled a gap)."""
        while True:
            yield await self._queue.get()

    def units(self) -> dict[str, UnitView]:
        return self.consumer.units()

    def streams(self) -> list[StreamView]:
        return self.consumer.streams()

    @property
    def stats(self) -> ConsumerStats:
        return self.consumer.stats

    @property
    def missing(self) -> int:
        return self.consumer.missing

    def restore(self, streams: Iterable[StreamView]) -> int:
        """Put back a ledger saved from :meth:`streams` (a restart): see ``SiteConsumer.restore``.
        Call it before the client starts."""
        return self.consumer.restore(streams, now=self._clock())

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:  # noqa: ASYNC109
        """Until ``predicate()`` holds (checked after every message and tick); TimeoutError after
        ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    # -- commands ------------------------------------------------------------------------------

    async def command(
        self,
        unit: str,
        name: str,
        *,
        args: Mapping[str, Any] | None = None,
        passage_id: str | None = None,
        ttl_s: float = COMMAND_TTL_S,
        resend_s: float = COMMAND_RESEND_S,
        attempts: int = COMMAND_ATTEMPTS,
    ) -> CommandResult:
        """Sign ``name`` for ``unit``, send it, and return its answer; unanswered after
        ``resend_s`` it is signed again (fresh nonce, fresh validity) up to ``attempts`` times,
        then :class:`CommandTimeoutError`. An attempt starts only once the client is connected
        (a broker that is down holds the command back; it is signed when it goes out)."""
        if self.signer is None:
            raise NoSignerError(f"client {self.unit} has no signing key; give its clients[] entry a key and commands")
        if not _ID.fullmatch(unit):
            raise ValueError(f"unit {unit!r} is not an id ({ID_PATTERN})")
        if self._task is None or self._closed:
            raise ClientStateError("start the client (async with) before sending commands")
        for attempt in range(1, attempts + 1):
            # Only what reached the broker is timed: while the link is down (a broker restart) a
            # command is not sent, and its attempts would run out before the broker is back —
            # the unit would wait for an answer nobody sends any more.
            await self.link.wait_connected()
            nonce, fut = self._send(unit, name, dict(args or {}), passage_id, ttl_s)
            try:
                async with asyncio.timeout(resend_s):
                    answer = await fut
            except TimeoutError:
                log.info("%s: %s to %s not answered (attempt %d)", self.unit, name, unit, attempt)
                continue
            finally:
                self._answers.pop(nonce, None)
                self.consumer.forget_answer(nonce)
            if answer.reason == RejectReason.ISSUED_BEFORE_STORE and attempt < attempts:
                # The unit has just started on a new nonce store, whose floor is up to the site's
                # clock skew past its last audit entry: what was signed before it is refused, the
                # same command signed once the floor has passed is not.
                log.info("%s: %s to %s signed before the unit's nonce store; signing it again", self.unit, name, unit)
                await asyncio.sleep(self.site.platform.max_clock_skew_s)
                continue
            return CommandResult(unit, name, answer.ok, answer.reason, nonce, attempt, answer.signed)
        raise CommandTimeoutError(f"{name} to {unit}: no answer after {attempts} attempts of {resend_s:g} s")

    async def request_replay(self, unit: str, from_seq: int, to_seq: int | None = None) -> CommandResult:
        """Ask ``unit`` to send its events ``from_seq..to_seq`` again (they arrive as events)."""
        return await self.command(unit, "replay_events", args={"from_seq": from_seq, "to_seq": to_seq})

    def _send(
        self, unit: str, name: str, args: dict[str, Any], passage_id: str | None, ttl_s: float
    ) -> tuple[str, asyncio.Future[CommandAnswered]]:
        nonce = self._sign_and_publish(unit, name, args, passage_id, ttl_s)
        fut: asyncio.Future[CommandAnswered] = asyncio.get_running_loop().create_future()
        self._answers[nonce] = fut
        return nonce, fut

    def _sign_and_publish(
        self, unit: str, name: str, args: dict[str, Any], passage_id: str | None, ttl_s: float
    ) -> str:
        """Sign and hand to the broker (best effort: an unsent command is re-signed by the
        caller's resend, a replay request by the next round); the nonce, awaited from now."""
        assert self.signer is not None
        now = self._wall_clock()
        signed = self.signer.sign(
            {
                "cmd": name,
                "site": self.site_id,
                "lane": unit,
                "passage_id": passage_id,
                "args": args,
                "issued_at": now,
                "expires_at": now + dt.timedelta(seconds=ttl_s),
            }
        )
        self.consumer.expect_answer(signed.nonce, unit=unit, command=name)
        topic, payload = Topics(self.site_id, unit).cmd(name), signed.to_json_bytes()
        self.link.publish_best_effort(topic, payload)
        if self.on_sent is not None:
            self.on_sent(topic, payload)
        return signed.nonce

    # -- the loop ------------------------------------------------------------------------------

    def _on_message(self, msg: Message) -> None:
        self._handle(self.consumer.receive(msg.topic, msg.payload, now=self._clock()))

    def _handle(self, outputs: list[Output] | list[ReplayNeed | GapAbandoned]) -> None:
        for out in outputs:
            match out:
                case ReplayNeed():
                    self._replay(out)
                    continue
                case CommandAnswered(nonce=nonce):
                    fut = self._answers.get(nonce)
                    if fut is not None and not fut.done():
                        fut.set_result(out)
                case Anomaly() | GapAbandoned():
                    self.alarms.append(out)
                    log.warning("%s: %s", self.unit, out)
                case UnitChanged():
                    pass
                case SiteEvent() if self.on_output is None:
                    try:
                        self._queue.put_nowait(out)
                    except asyncio.QueueFull:
                        self.consumer.undelivered(out, now=self._clock())
            if self.on_output is not None:
                self.on_output(out)
        self._changed.set()

    def _replay(self, need: ReplayNeed) -> None:
        if self.signer is None:
            return  # counted as missing; a client without a key cannot ask
        log.info(
            "%s: %s epoch %d missing %d..%d: asking for a replay",
            self.unit,
            need.unit,
            need.epoch,
            need.from_seq,
            need.to_seq,
        )
        args = {"from_seq": need.from_seq, "to_seq": need.to_seq}
        self._sign_and_publish(need.unit, "replay_events", args, None, COMMAND_TTL_S)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self._handle(self.consumer.due(self._clock()))
