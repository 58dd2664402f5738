"""The unit skeleton: what every portlane unit (a lane, a scanner, any later kind) is made of.

    identity (site, unit id, kind) ─ signing key
    outbox (SQLite, seq/epoch, signed) ─ EventWriter ─ OutboxSender ─ MqttLink (persistent session,
        last will, subscriptions)
    audit log ─ AuditAnchor (signed checkpoints)
    nonce store ─ CommandVerifier ─ CommandPath (one path for every command; ``replay_events``
        built in)
    PeerEvents ─ PeerIntake (other units' events: verified, once, in order per passage)
    bounded inbox ─ dispatcher (commands → the path; peer events → the unit's handlers), every
        message waiting handled in one step with one flush per store (``FlushGroup``)
    signed status (``unit.status`` event, retained) and the unsigned last will
    tick (aggregated rejections, checkpoints, held events, the unit's own tick)
    ordered shutdown: stop what writes events (dispatcher, device tasks, spawned work) → rejections
        and a last checkpoint → offline status → drain → disconnect → close the stores

A daemon composes one :class:`Unit` and keeps only its domain: it registers the commands it
takes (:meth:`Unit.command`), the peer events it listens to (:meth:`Unit.listen`), what its
status says (``status`` callback), its tick, and the tasks that drive its devices; then it
awaits :meth:`Unit.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

from portlane.edge import __version__
from portlane.edge.config import MqttProtocol, Site, UnitKey
from portlane.edge.contract.commands import ReplayEventsArgs
from portlane.edge.contract.envelope import Envelope
from portlane.edge.contract.events import EventType, UnitStatus
from portlane.edge.contract.times import rfc3339
from portlane.edge.contract.topics import LANE_SCOPED_EVENTS, Topics
from portlane.edge.delivery.events import EventMetrics, EventWriter
from portlane.edge.delivery.flush import FlushGroup
from portlane.edge.delivery.inbox import Inbox
from portlane.edge.delivery.mqtt import Message, MqttLink
from portlane.edge.delivery.outbox import Outbox
from portlane.edge.delivery.sender import OutboxSender
from portlane.edge.errors import OutboxError
from portlane.edge.trust.anchor import AuditAnchor
from portlane.edge.trust.audit import AuditLog
from portlane.edge.trust.authority import Authority
from portlane.edge.trust.command_path import CommandHandler, CommandPath, Outcome
from portlane.edge.trust.commands import CommandVerifier, VerifiedCommand
from portlane.edge.trust.events import PeerEvents, VerifiedEvent
from portlane.edge.trust.keys import broker_credentials, load_unit_signer
from portlane.edge.trust.nonces import SqliteNonceStore
from portlane.edge.trust.rejections import RejectionAggregator

from .intake import PeerIntake

__all__ = ["DRAIN_S", "INBOX_SIZE", "STEP_MESSAGES", "Connection", "StatusWord", "Unit", "UnitKind", "restart_needed"]

log = logging.getLogger(__name__)

#: Inbound messages waiting for the dispatcher; the oldest are dropped beyond this (see
#: delivery/inbox.py). 256 forged signatures cost ~0.2 s to check on the 2-core reference box,
#: which bounds how long a valid release can wait behind a flood.
INBOX_SIZE = 256
#: Messages the dispatcher handles in one step, under one flush per store (``FlushGroup``):
#: a passage's decisions (one per agency) and a few more; a flood is taken in steps of this.
STEP_MESSAGES = 32
#: On shutdown: how long to try to deliver what is queued (it stays on disk regardless).
DRAIN_S = 3.0
#: On shutdown: how long the unit's tasks may take to end before it says offline without them.
STOP_S = 5.0

UnitKind = Literal["lane", "scanner"]
PeerHandler = Callable[[VerifiedEvent], None]


class Connection(TypedDict, total=False):
    """How a daemon's unit reaches the broker and tells time, when not as the site file says:
    the keyword arguments every daemon passes on to its :class:`Unit` (tests and the demo point
    them at their own broker and clock)."""

    broker_url: str | None
    broker_protocol: MqttProtocol | None
    clock: Callable[[], float]


@dataclass(frozen=True, slots=True)
class StatusWord:
    """What a unit says of itself beyond being online: whether it takes work, why not, and the
    stage it is in."""

    in_service: bool = True
    reason: str | None = None
    stage: str | None = None


class Unit:
    def __init__(
        self,
        site: Site,
        *,
        unit: str,
        kind: UnitKind,
        key: UnitKey | None,
        state_dir: Path,
        audit_lane: str | None = None,
        broker_url: str | None = None,
        broker_protocol: MqttProtocol | None = None,
        clock: Callable[[], float] = time.time,
        metrics: EventMetrics | None = None,
        on_refused: Callable[[OutboxError], None] | None = None,
        status: Callable[[], StatusWord] = StatusWord,
    ) -> None:
        self.site = site
        self.id = unit
        self.kind: UnitKind = kind
        self.clock = clock
        self.topics = Topics(site.site.id, unit)
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._status_word = status
        # Every event the unit publishes is signed with its own key (when the site file gives it
        # one): the platform and the other units can tell its events from anyone's on the broker.
        self.signer = load_unit_signer(key, unit=unit) if key is not None else None
        if key is None:
            log.warning("%s: no signing key in the site file: its events are unsigned (portlane pki init)", unit)
        # What the stores write while the dispatcher handles the messages of one step goes to
        # disk once per store at the end of the step, before anything can move or leave.
        self.flushes = FlushGroup()
        self.outbox = Outbox(
            self.state_dir / f"outbox-{unit}.db",
            site=site.site.id,
            unit=unit,
            clock=clock,
            config=site.outbox,
            signer=self.signer,
            flushes=self.flushes,
        )
        self.audit = AuditLog(self.state_dir / "audit.jsonl", flushes=self.flushes)
        # Not in the flush group: a command's nonce is on disk before anything it causes is written.
        self.nonces = SqliteNonceStore(self.state_dir / f"nonces-{unit}.db")
        self.authority = Authority.from_site(site)
        self.peers = PeerIntake(
            PeerEvents(
                self.authority,
                RejectionAggregator(self.audit, lane=audit_lane, kind="event_rejected", clock=clock),
                unit=unit,
            )
        )
        b = site.broker
        url = broker_url or b.url
        self.link = MqttLink(
            url,
            client_id=f"portlane-{site.site.id}-{unit}",
            protocol=(broker_protocol or b.protocol),
            **broker_credentials(b, unit=unit, url=url).link_kwargs(),  # TLS files, password file
            # The broker keeps what is published for us while we restart (a lane's inspection
            # request, a scanner's verdict, a command): nothing waits forever for a lost message.
            persistent_session=True,
            keepalive=b.keepalive_s,
            will=(self.topics.status, UnitStatus.will(unit, kind)),
            subscriptions=[self.topics.cmd_filter],
            on_message=self._on_message,
            on_connect=self._on_connect,
        )
        # The newest unit.status is kept retained on …/status, by the sender, in order with the events.
        self.sender = OutboxSender(
            self.outbox, self.link, retained={self.topics.event("unit.status"): self.topics.status}
        )
        self.events = EventWriter(self.outbox, self.topics, metrics=metrics, on_refused=on_refused)
        self.anchor = (
            AuditAnchor(self.audit, self.signer, self.events, self.link, unit=unit, clock=clock)
            if self.signer is not None
            else None
        )
        self.commands = CommandPath(
            unit=unit,
            lane=audit_lane,
            topics=self.topics,
            verifier=CommandVerifier.from_site(
                site,
                unit,
                clock=lambda: dt.datetime.fromtimestamp(self.clock(), tz=dt.UTC),
                nonce_store=self.nonces,
            ),
            audit=self.audit,
            events=self.events,
            respond=self.link.publish_best_effort,
            clock=clock,
        )
        self.commands.register("replay_events", self._replay_command)
        self.heartbeat = 0
        self.inbox_failed = 0
        self.ready = asyncio.Event()
        self._inbox: Inbox[Message] = Inbox(INBOX_SIZE)
        self._listeners: dict[tuple[str, str], PeerHandler] = {}
        self._said: StatusWord | None = None  # what the last status said
        self._tg: asyncio.TaskGroup | None = None
        self._spawned: set[asyncio.Task[None]] = set()
        self._stopping = False  # set once ``stop`` is: what the unit's tasks raise then is logged

    # ------------------------------------------------------------------ what the daemon registers
    def command(self, name: str, handler: CommandHandler) -> None:
        """Take signed command ``name``; ``handler`` gets it verified, its args as their model."""
        self.commands.register(name, handler)

    def listen(self, peer: str, types: Iterable[str], handler: PeerHandler) -> None:
        """Act on ``peer``'s events of ``types``: only those its key signed (and may sign), once
        each, never an older one about a passage after a newer one (:class:`PeerIntake`)."""
        peer_topics = Topics(self.site.site.id, peer)
        for t in types:
            self._listeners[(peer, t)] = handler
            # A scanner's scan.* events about this unit's passages come on its per-lane topics
            # (the broker lets a lane read no other lane's); one filter covers every scan type.
            self.link.subscribe(peer_topics.lane_scans(self.id) if t in LANE_SCOPED_EVENTS else peer_topics.event(t))

    def reload_trust(self, site: Site) -> None:
        """Take a new site file's keys and authority (platform keys, clients, other units' keys,
        clock skew and validity) in place: the nonce store, the outbox and the connection stay."""
        self.site = site
        self.authority = Authority.from_site(site)
        self.peers.peers.authority = self.authority
        self.commands.verifier = CommandVerifier.from_site(
            site,
            self.id,
            clock=lambda: dt.datetime.fromtimestamp(self.clock(), tz=dt.UTC),
            nonce_store=self.nonces,
        )

    def unkeyed(self, units: Iterable[str]) -> list[str]:
        """Those of ``units`` the site file gives no signing key (nothing of theirs is believed)."""
        return self.peers.peers.unkeyed(list(units))

    # ------------------------------------------------------------------ events and status
    def publish(self, type_: EventType, data: Any, *, subject: str | None = None) -> None:
        """Write one event to the outbox (signed); the sender delivers it."""
        self.events.put(type_, data, subject=subject)

    def status_changed(self) -> None:
        """Say the unit's status again if it changed whether it takes work, or why not (the
        stage rides along but does not by itself make a new status: that is the events' job)."""
        if self._stopping:
            return  # offline is said (or about to be): nothing after it says online
        word, said = self._status_word(), self._said
        if said is not None and (word.in_service, word.reason) != (said.in_service, said.reason):
            self._say("online")  # (nothing said yet: the first connect says it)

    def _say(self, state: Literal["online", "offline"]) -> Envelope | None:
        """Write the unit's status as a signed event (the sender also keeps it retained on
        ``…/status``, once the events before it are sent); returns it."""
        word = self._status_word()
        self._said = word
        reason = word.reason if state == "online" else (word.reason or "stopped")
        status = UnitStatus(
            state=state,
            unit=self.id,
            kind=self.kind,
            version=__version__,
            in_service=word.in_service,
            reason=reason,
            stage=word.stage,
            last_seq=self.outbox.last_seq,
            epoch=self.outbox.epoch,  # last_seq counts within this stream epoch
            since=rfc3339(self.clock()),
        )
        return self.events.put("unit.status", status)

    async def _on_connect(self) -> None:
        if not self._stopping:  # a reconnect during the drain must not say online after offline
            self._say("online")

    # ------------------------------------------------------------------ commands every unit takes
    def _replay_command(self, cmd: VerifiedCommand) -> Outcome:
        assert isinstance(cmd.args, ReplayEventsArgs)
        n = self.replay(cmd.args.from_seq, cmd.args.to_seq)
        log.info("%s: replaying %d events from seq %d for %s", self.id, n, cmd.args.from_seq, cmd.key_id)
        return Outcome(True, audit={"from_seq": cmd.args.from_seq, "to_seq": cmd.args.to_seq, "replayed": n})

    def replay(self, from_seq: int, to_seq: int | None = None) -> int:
        """Re-send retained events from ``from_seq``; returns how many were queued again."""
        n = self.outbox.replay(from_seq, to_seq)
        self.sender.wake()
        return n

    # ------------------------------------------------------------------ inbound
    def _on_message(self, msg: Message) -> None:
        if not self._inbox.put(msg):
            n = self._inbox.dropped
            if n in (1, 10, 100) or n % 1000 == 0:
                log.warning("%s: inbox full, %d oldest messages dropped so far", self.id, n)

    async def _dispatcher(self) -> None:
        while True:
            msg: Message | None = await self._inbox.get()
            # Every message waiting now, in one step: nothing the step records can move a device
            # or leave the process before the step returns, so the stores commit without waiting
            # for the disk and are flushed once each when it ends (delivery/flush.py). A flush
            # that fails ends the unit here, before the executor could act on what it recorded.
            with self.flushes.deferred():
                for _ in range(STEP_MESSAGES):
                    if msg is None:
                        break
                    self._dispatch_one(msg)
                    msg = self._inbox.get_nowait()
            if msg is not None:
                self._inbox.put_back(msg)

    def _dispatch_one(self, msg: Message) -> None:
        try:
            self.dispatch(msg)
        except Exception:
            # No input ends the daemon: a message that trips a bug is counted and logged
            # (rate-limited), and the unit goes on with the next one.
            self.inbox_failed += 1
            if self.inbox_failed in (1, 10, 100) or self.inbox_failed % 1000 == 0:
                log.exception("%s: a message on %s could not be handled", self.id, msg.topic[:200])

    def dispatch(self, msg: Message) -> None:
        try:
            _site, unit, kind, rest = Topics.parse(msg.topic)
        except ValueError:
            return
        if kind == "cmd" and unit == self.id:
            self.commands.handle(rest, msg.payload)
            return
        if kind != "event":
            return
        try:
            event_type, lane = Topics.parse_event(rest)
        except ValueError:
            return
        handler = self._listeners.get((unit, event_type))
        if handler is None or (event_type in LANE_SCOPED_EVENTS and lane != self.id):
            return  # a scan event is taken only from this unit's own per-lane topic
        verified = self.peers.accept(msg.payload, unit=unit, event_type=event_type, lane=lane)
        if verified is not None:
            handler(verified)

    # ------------------------------------------------------------------ lifecycle
    def flush(self, *, force: bool = False) -> None:
        """Housekeeping on the tick: aggregated rejections, audit checkpoints, held events."""
        self.events.flush_held()  # events the outbox refused (a full disk), in order
        self.commands.flush(force=force)
        self.peers.peers.rejections.flush(force=force)
        if self.anchor is not None:
            self.anchor.tick(force=force)

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        """A task of the running unit (identification, a status publish …), ended at stop."""
        assert self._tg is not None, "the unit is not running"
        task = self._tg.create_task(self._guarded(coro, name), name=f"{self.id}:{name}")
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)
        return task

    async def run(
        self,
        stop: asyncio.Event,
        *,
        tasks: Mapping[str, Callable[[], Awaitable[None]]],
        tick: Callable[[], None],
        tick_s: float,
        started: Callable[[], None] | None = None,
    ) -> None:
        """Run the link, the sender, the dispatcher and the unit's ``tasks`` until ``stop`` is
        set, calling ``tick`` every ``tick_s``; then shut down in order and close the stores."""
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                delivery = [
                    tg.create_task(self.link.run(), name=f"{self.id}:mqtt"),
                    tg.create_task(self.sender.run(), name=f"{self.id}:outbox"),
                ]
                work = [tg.create_task(self._dispatcher(), name=f"{self.id}:dispatcher")]
                work += [
                    tg.create_task(self._guarded(fn(), name), name=f"{self.id}:{name}") for name, fn in tasks.items()
                ]
                if started is not None:
                    started()
                self.ready.set()
                while not stop.is_set():
                    self.heartbeat += 1
                    tick()
                    self.flush()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(tick_s):
                            await stop.wait()
                # What could still write an event (commands, devices, identifications) stops
                # first, so that nothing is queued behind the offline status and the drain.
                self._stopping = True
                await self._stop(*work, *self._spawned)
                await self._shutdown()
                for t in [*delivery, *self._spawned]:
                    t.cancel()
        finally:
            self._tg = None
            self.audit.close()
            self.nonces.close()
            self.outbox.close()
            self.flushes.close()

    async def _guarded(self, work: Awaitable[None], name: str) -> None:
        """One of the unit's tasks: an error ends the unit (the task group's), except while the
        unit stops — a device that fails to close must not cost the offline status and the drain."""
        try:
            await work
        except Exception:
            if not self._stopping:
                raise
            log.warning("%s: %s failed while stopping", self.id, name, exc_info=True)

    async def _stop(self, *tasks: asyncio.Task[None]) -> None:
        """Cancel ``tasks`` and wait up to ``STOP_S`` for them to end; one that does not (a device
        stuck closing) is named and left to the task group, after the drain."""
        for t in tasks:
            t.cancel()
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=STOP_S)
        if pending:
            log.warning(
                "%s: %s still stopping after %.0f s; saying offline without them",
                self.id,
                ", ".join(sorted(t.get_name() for t in pending)),
                STOP_S,
            )

    async def _shutdown(self) -> None:
        self.flush(force=True)  # the last checkpoint goes out with the last events
        self._say("offline")  # retained by the sender once delivered; else the will says it
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_S):
                await self.sender.wait_drained()
        if self.outbox.depth:
            log.warning(
                "%s: stopping with %d events not acknowledged by the broker (seq up to %d): they stay in "
                "the outbox and are sent on the next start",
                self.id,
                self.outbox.depth,
                self.outbox.last_seq,
            )
        await self.link.close()

    def stats(self) -> dict[str, Any]:
        """What every unit reports on its control socket."""
        return {
            "outbox": self.outbox.stats().as_dict(),
            "flushes": {
                "steps": self.flushes.groups,
                "deferred_commits": self.flushes.deferred_commits,
                "flushes": self.flushes.flushes,
            },
            "events_refused": dict(self.peers.refused),  # peer events that did not verify, by reason
            "peer_events_stale": self.peers.stale,
            "commands": {
                "accepted": self.commands.counters.accepted,
                "rejected": self.commands.counters.rejected,
                "rejected_by_reason": dict(self.commands.counters.rejected_by_reason),
            },
            "broker": {"url": self.link.url, "connected": self.link.connected, "protocol": self.link.negotiated},
        }


def restart_needed(old: Site, new: Site, unit: str) -> list[str]:
    """What of a new site file a running unit cannot take in place: its own entry (devices,
    links, its key), the broker, the state directory, the outbox, the site's identity and the
    agencies. Trust (platform keys, clients, the other units' keys and their grants) and the
    platform's deadlines are taken in place (:meth:`Unit.reload_trust`)."""

    def own(site: Site) -> Any:
        for group in (site.lanes, site.scanners):
            for u in group:
                if u.id == unit:
                    return u.model_dump()
        return None

    out = []
    if own(old) != own(new):
        out.append(f"{unit}'s own entry" if own(new) is not None else f"{unit} is no longer in the file")
    for name in ("site", "broker", "state_dir", "outbox", "agencies"):
        if getattr(old, name) != getattr(new, name):
            out.append(name)
    return out
