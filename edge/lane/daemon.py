"""The lane daemon: wiring of devices, the passage logic, commands and the durable outbox.

    gate + remote I/O polls ─ Sensors ─┐
    identification (RFID, scale, cameras) ─┤
    signed commands (MQTT) ─ verify ─┤→ LaneLogic (pure) → actions → Executor → devices / outbox / audit
    scanner events (MQTT) ─┤
    ticks (deadlines) ─┘

Each input is handed to the logic, and the actions it returns go to the executor
(``executor.py``), the only place that touches devices. The passage being worked on is
journalled (``journal.py``), so that after a restart ``LaneLogic.start`` closes it out before
the next vehicle is taken.

This module must not import ``cv2`` or ``onnxruntime`` (the gate path stays light); plate and
container recognition arrive through a ``Recogniser``, off the control loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from portlane.drivers.supervisor import DeviceHealth
from portlane.edge import __version__
from portlane.edge.config import LaneConfig, MqttProtocol, Site
from portlane.edge.contract.events import DeviceState, LaneException, LaneStatus, ScanEvent
from portlane.edge.contract.times import rfc3339
from portlane.edge.contract.topics import Topics
from portlane.edge.delivery.events import EventMetrics, EventWriter
from portlane.edge.delivery.inbox import Inbox
from portlane.edge.delivery.mqtt import Message, MqttLink
from portlane.edge.delivery.outbox import Outbox
from portlane.edge.delivery.sender import OutboxSender
from portlane.edge.errors import OutboxError, StateError
from portlane.edge.journal import Journal
from portlane.edge.trust.anchor import AuditAnchor
from portlane.edge.trust.audit import AuditLog, require_operator
from portlane.edge.trust.authority import Authority
from portlane.edge.trust.commands import CommandVerifier
from portlane.edge.trust.events import PeerEvents
from portlane.edge.trust.keys import broker_credentials, load_unit_signer
from portlane.edge.trust.nonces import SqliteNonceStore
from portlane.edge.trust.rejections import RejectionAggregator
from pydantic import ValidationError

from .actions import Action, Publish, ShowBoard, StopGate
from .commands import CommandHandler
from .devices import LaneDevices
from .executor import Executor
from .identification import Identifier
from .logic import LaneLogic
from .passage import Identity, LaneTimeouts, Passage, Sensors
from .recognition import Recogniser

__all__ = ["LaneDaemon"]

log = logging.getLogger(__name__)

#: Deadline tick of the logic; also the watchdog's main heartbeat.
TICK_S = 0.5
#: Inbound messages waiting for the dispatcher; the oldest are dropped beyond this (see
#: delivery/inbox.py). 256 forged signatures cost ~0.2 s to check on the 2-core reference box,
#: which bounds how long a valid release can wait behind a flood.
INBOX_SIZE = 256
#: At start, how many of the newest passage.completed events are checked against the journal
#: (a lane has at most one passage under way; a few cover any stop).
COMPLETED_LOOKBACK = 8
#: A lane the outbox closed tries this often whether it accepts events again.
OUTBOX_RETRY_S = 5.0
#: On shutdown: how long to try to deliver what is queued (it stays on disk regardless).
DRAIN_S = 3.0
#: A status update not acknowledged by then is superseded by the next (or the last will).
STATUS_PUBLISH_S = 5.0


class LaneDaemon:
    def __init__(
        self,
        site: Site,
        lane: LaneConfig,
        *,
        state_dir: Path,
        broker_url: str | None = None,
        broker_protocol: MqttProtocol | None = None,
        recogniser: Recogniser | None = None,
        clock: Callable[[], float] = time.time,
        timeouts: LaneTimeouts | None = None,
        metrics: EventMetrics | None = None,
    ) -> None:
        self.site = site
        self.cfg = lane
        self.clock = clock
        self.topics = Topics(site.site.id, lane.id)
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.logic = LaneLogic(
            lane.id,
            agencies=tuple(a.value for a in lane.agencies),
            has_scanner=lane.scanner is not None,
            kind=lane.kind,
            timeouts=timeouts or LaneTimeouts(decision_s=site.platform.decision_timeout_s),
        )
        # Every event the lane publishes is signed with its own key (when the site file gives it
        # one): the platform and the scanner can tell the lane's events from anyone's on the broker.
        self.signer = load_unit_signer(lane.key, unit=lane.id) if lane.key is not None else None
        self.outbox = Outbox(
            self.state_dir / f"outbox-{lane.id}.db",
            site=site.site.id,
            unit=lane.id,
            clock=clock,
            config=site.outbox,
            signer=self.signer,
        )
        self.audit = AuditLog(self.state_dir / "audit.jsonl")
        # The scanner's verdicts move the barrier: only those its key signed are acted on.
        self.peers = PeerEvents(
            Authority.from_site(site),
            RejectionAggregator(self.audit, lane=lane.id, kind="event_rejected", clock=clock),
            unit=lane.id,
        )
        if lane.key is None:
            log.warning("%s: no signing key in the site file: its events are unsigned (portlane pki init)", lane.id)
        for unit in self.peers.unkeyed([lane.scanner] if lane.scanner else []):
            log.warning(
                "%s: scanner %s has no signing key in the site file: its scan results will be refused "
                "and inspections end by the scanner's fault policy (portlane pki init)",
                lane.id,
                unit,
            )
        self.journal = Journal(self.state_dir / f"journal-{lane.id}.db")
        self.nonces = SqliteNonceStore(self.state_dir / f"nonces-{lane.id}.db")
        self.verifier = CommandVerifier.from_site(
            site,
            lane.id,
            clock=lambda: dt.datetime.fromtimestamp(self.clock(), tz=dt.UTC),
            nonce_store=self.nonces,
        )
        b = site.broker
        subscriptions = [self.topics.cmd_filter]
        if lane.scanner:
            subscriptions.append(Topics.all_events(site.site.id, lane.scanner))
        url = broker_url or b.url
        self.link = MqttLink(
            url,
            client_id=f"portlane-{site.site.id}-{lane.id}",
            protocol=(broker_protocol or b.protocol),
            **broker_credentials(b, unit=lane.id, url=url).link_kwargs(),  # TLS files, password file
            # The broker keeps what is published for us while we restart (a lane's inspection
            # request, a scanner's verdict, a command): nothing waits forever for a lost message.
            persistent_session=True,
            keepalive=b.keepalive_s,
            will=(self.topics.status, self._status("offline")),
            subscriptions=subscriptions,
            on_message=self._on_message,
            on_connect=self._on_connect,
        )
        self.sender = OutboxSender(self.outbox, self.link)
        self.devices = LaneDevices(lane, on_sample=self._on_sample, on_health=self._on_health)
        self.events = EventWriter(self.outbox, self.topics, metrics=metrics, on_refused=self._on_outbox_refused)
        self.anchor = (
            AuditAnchor(self.audit, self.signer, self.events, self.link, unit=lane.id, clock=clock)
            if self.signer is not None
            else None
        )
        self.executor = Executor(
            lane=lane.id,
            logic=self.logic,
            devices=self.devices,
            events=self.events,
            audit=self.audit,
            identify=self._start_identification,
            clock=clock,
        )
        self.identifier = Identifier(
            lane.id, self.devices, recogniser=recogniser, clock=clock, deadline_s=self.logic.timeouts.identify_s
        )
        self.commands = CommandHandler(
            lane=lane.id,
            topics=self.topics,
            verifier=self.verifier,
            logic=self.logic,
            apply=self.apply,
            identifier=self.identifier,
            audit=self.audit,
            respond=self._respond,
            replay=self.replay,
            clock=clock,
        )
        self.inbox_failed = 0
        self.heartbeat = 0
        self.ready = asyncio.Event()
        self._changed = asyncio.Event()
        self._status_in_service = True  # what the retained status last said
        self._inbox: Inbox[Message] = Inbox(INBOX_SIZE)
        self._tg: asyncio.TaskGroup | None = None
        self._identifications: set[asyncio.Task[None]] = set()
        # Why the lane took itself out of service ("gate": offline; "outbox": refused an event;
        # "journal": could not write its passage journal);
        # it comes back by itself when the last cause is gone.
        self._auto_closed: set[str] = set()
        self._journal_failing = False  # the last journal write failed (logged once per episode)
        self._outbox_tried_at = 0.0

    # ------------------------------------------------------------------ applying the logic's actions
    def apply(self, actions: Iterable[Action]) -> None:
        self.executor.apply(actions)
        p = self.logic.passage
        try:
            self.journal.sync({p.id: p.to_json()} if p is not None else {})
        except StateError as exc:
            self._on_journal_failed(exc)
        else:
            if self._journal_failing:
                self._journal_failing = False
                log.warning("%s: the journal is written again", self.cfg.id)
                self._reopen_for("journal", "the journal is written again")
        if self.logic.in_service != self._status_in_service and self._tg is not None:
            self._status_in_service = self.logic.in_service
            # The retained status says whether the lane takes vehicles: consumers (the console,
            # the platform) see a closure at once, whoever closed it.
            self._tg.create_task(self._publish_status(), name=f"{self.cfg.id}:status")
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, checked after every input the logic handled (tests
        and the demo wait on this instead of polling; wrap it in ``asyncio.timeout``)."""
        while not predicate():
            await self._changed.wait()

    def _put_event(self, event: Publish) -> None:
        self.apply([event])

    # ------------------------------------------------------------------ inputs
    def _on_sample(self, s: Sensors) -> None:
        now = self.clock()
        inputs = self.devices.inputs
        self.executor.reconcile(inputs.light.value if inputs is not None else None, now)
        if not self.logic.started:
            unfinished = []
            said = self._completed_before_stop()
            for record in self.journal.records().values():
                try:
                    p = Passage.from_json(record)
                except (ValueError, TypeError, KeyError):
                    log.warning("%s: an unreadable passage record in %s is dropped", self.cfg.id, self.journal.path)
                    continue
                if p.id in said:
                    # Stopped between writing its passage.completed and clearing the journal:
                    # it is finished; recovering it would complete it a second time.
                    log.info("%s: passage %s was completed before the stop", self.cfg.id, p.id)
                    continue
                unfinished.append(p)
            self.apply(self.logic.start(s, unfinished, now))
            return
        self.apply(self.logic.on_sensors(s, now))

    def _completed_before_stop(self) -> set[str]:
        """Passages whose ``passage.completed`` the outbox already holds (the newest few)."""
        out: set[str] = set()
        for row in self.outbox.newest(self.topics.event("passage.completed"), limit=COMPLETED_LOOKBACK):
            try:
                subject = json.loads(row.payload).get("subject")
            except (ValueError, AttributeError):
                continue
            if isinstance(subject, str):
                out.add(subject)
        return out

    async def _on_health(self, device_id: str, health: DeviceHealth, reason: str | None) -> None:
        name = device_id.split("/", 1)[1]
        self._put_event(Publish("device.state", DeviceState(device=name, health=health.value, reason=reason)))
        if name != "gate":
            return
        if health == DeviceHealth.OFFLINE and (self.logic.in_service or self._auto_closed):
            # A lane whose barrier does not answer takes itself out of service and says so.
            self._close_for("gate", f"gate offline: {reason}")
            detail = f"gate offline: {reason}"
            self._put_event(
                Publish("lane.exception", LaneException(passage_id=None, kind="device_fault", detail=detail))
            )
        elif health == DeviceHealth.ONLINE:
            self._reopen_for("gate", "gate back online")

    def _close_for(self, cause: str, reason: str) -> None:
        self._auto_closed.add(cause)
        if self.logic.in_service:
            self.apply(self.logic.set_in_service(False, operator="portlane", reason=reason[:200]))

    def _reopen_for(self, cause: str, reason: str) -> None:
        if cause not in self._auto_closed:
            return
        self._auto_closed.discard(cause)
        if not self._auto_closed:
            self.apply(self.logic.set_in_service(True, operator="portlane", reason=reason))

    def _on_outbox_refused(self, exc: OutboxError) -> None:
        # A lane that cannot record what it does takes no vehicles (nothing lost, nothing unseen).
        if self.logic.in_service or self._auto_closed:
            self._close_for("outbox", f"outbox refused an event: {exc}")

    def _on_journal_failed(self, exc: StateError) -> None:
        """The passage journal cannot be written (full disk, read-only remount): the vehicle
        under way goes on, but a lane that could not resolve a passage after a restart takes no
        new one. Every later ``apply`` writes the journal again; the first that succeeds
        re-opens the lane."""
        if self._journal_failing:
            return
        self._journal_failing = True
        log.error("%s: %s", self.cfg.id, exc)
        if self.logic.in_service or self._auto_closed:
            self._close_for("journal", f"journal not written: {exc.problem}")

    def _retry_outbox(self) -> None:
        """On the tick, for a lane the outbox closed: every ``OUTBOX_RETRY_S`` write the events it
        refused (held in memory by the writer), then record that the outbox works again; once
        that is accepted (space freed, filesystem remounted, events delivered), the lane takes
        vehicles again."""
        now = self.clock()
        if ("outbox" not in self._auto_closed and not self.events.held) or now - self._outbox_tried_at < OUTBOX_RETRY_S:
            return
        self._outbox_tried_at = now
        if not self.events.flush_held():  # what was refused first, in order
            return
        if "outbox" not in self._auto_closed:
            return
        state = DeviceState(device="outbox", health="online", reason="the outbox accepts events again")
        if self.events.put("device.state", state) is not None:
            self._reopen_for("outbox", "the outbox accepts events again")

    def _start_identification(self, passage_id: str) -> None:
        assert self._tg is not None, "identification starts only while the daemon runs"
        task = self._tg.create_task(self._identify(passage_id), name=f"{self.cfg.id}:identify-{passage_id}")
        self._identifications.add(task)
        task.add_done_callback(self._identifications.discard)

    async def _identify(self, passage_id: str) -> None:
        """Whatever fails, the passage moves on: an officer then sees an identification
        exception instead of a lane stuck in IDENTIFYING."""
        p = self.logic.passage
        arrived = p.stamps.get("arrived", self.clock()) if p else self.clock()
        try:
            ident = await self.identifier.identify(arrived)
        except Exception as exc:
            log.exception("%s: identification of %s failed", self.cfg.id, passage_id)
            ident = Identity(exceptions=("identification_failed", "unreadable_plate"))
            detail = f"{type(exc).__name__}: {exc}"[:300]
            self._put_event(
                Publish(
                    "lane.exception", LaneException(passage_id=passage_id, kind="identification_failed", detail=detail)
                )
            )
        self.apply(self.logic.on_identified(passage_id, ident, self.clock()))

    # ------------------------------------------------------------------ messages
    def _on_message(self, msg: Message) -> None:
        if not self._inbox.put(msg):
            n = self._inbox.dropped
            if n in (1, 10, 100) or n % 1000 == 0:
                log.warning("%s: inbox full, %d oldest messages dropped so far", self.cfg.id, n)

    async def _dispatcher(self) -> None:
        while True:
            msg = await self._inbox.get()
            try:
                await self._dispatch(msg)
            except Exception:
                # No input ends the daemon: a message that trips a bug is counted and logged
                # (rate-limited), and the lane goes on with the next one.
                self.inbox_failed += 1
                if self.inbox_failed in (1, 10, 100) or self.inbox_failed % 1000 == 0:
                    log.exception("%s: a message on %s could not be handled", self.cfg.id, msg.topic[:200])

    async def _dispatch(self, msg: Message) -> None:
        try:
            _site, unit, kind, rest = Topics.parse(msg.topic)
        except ValueError:
            return
        if kind == "cmd" and unit == self.cfg.id:
            await self.commands.handle(msg, rest)
        elif kind == "event" and unit == self.cfg.scanner:
            self._on_scanner_event(rest, msg.payload)

    def _on_scanner_event(self, type_: str, payload: bytes) -> None:
        if type_ not in ("scan.started", "scan.completed", "scan.failed") or self.cfg.scanner is None:
            return
        verified = self.peers.accept(payload, unit=self.cfg.scanner, event_type=type_)
        if verified is None:
            return
        try:
            data = ScanEvent.model_validate(verified.data)
        except ValidationError:
            return
        if data.lane != self.cfg.id:
            return
        kind = type_.removeprefix("scan.")
        self.apply(
            self.logic.on_scan(
                data.passage_id, kind, self.clock(), scan_id=data.scan_id, result=data.result, reason=data.reason
            )
        )

    async def _respond(self, topic: str, body: bytes) -> None:
        """Hand a command response to the broker without waiting for its PUBACK: the dispatcher
        must never stall on the broker (the response is best effort; the outcome is also in the
        durable events)."""
        self.link.publish_best_effort(topic, body)

    def _status(self, state: str) -> bytes:
        logic = getattr(self, "logic", None)
        outbox = getattr(self, "outbox", None)
        status = LaneStatus(
            state="online" if state == "online" else "offline",
            unit=self.cfg.id,
            kind="lane",
            version=__version__,
            in_service=logic.in_service if logic else True,
            stage=logic.stage.value if logic else None,
            last_seq=outbox.last_seq if outbox else 0,
            epoch=outbox.epoch if outbox else 0,  # last_seq counts within this stream epoch
            since=rfc3339(self.clock()),
        )
        return status.model_dump_json().encode()

    async def _on_connect(self) -> None:
        await self.link.publish(self.topics.status, self._status("online"), retain=True)

    async def _publish_status(self) -> None:
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(STATUS_PUBLISH_S):
                await self.link.publish(self.topics.status, self._status("online"), retain=True)

    # ------------------------------------------------------------------ technician actions
    def override(self, action: str, *, operator: str, reason: str) -> dict[str, Any]:
        operator, reason = require_operator(operator, reason)
        now = self.clock()
        if action == "open":
            self.apply(self.logic.override_open(operator=operator, reason=reason, now=now))
        elif action == "close":
            self.apply(self.logic.override_close(operator=operator, reason=reason, now=now))
        else:
            self.audit.append("override", actor=operator, reason=reason, lane=self.cfg.id, data={"action": "stop"})
            self.apply([StopGate("override")])
        return {"ok": True}

    def show_board(self, text: str, *, operator: str, reason: str) -> None:
        operator, reason = require_operator(operator, reason)
        self.audit.append("board_message", actor=operator, reason=reason, lane=self.cfg.id, data={"text": text})
        self.apply([ShowBoard.of((text, "amber"))])

    def set_in_service(self, in_service: bool, *, operator: str, reason: str) -> bool:
        operator, reason = require_operator(operator, reason)
        self.apply(self.logic.set_in_service(in_service, operator=operator, reason=reason))
        return self.logic.in_service

    def replay(self, from_seq: int, to_seq: int | None = None) -> int:
        """Re-send retained events from ``from_seq``; returns how many were queued again."""
        n = self.outbox.replay(from_seq, to_seq)
        self.sender.wake()
        return n

    def status(self) -> dict[str, Any]:
        p = self.logic.passage
        return {
            "lane": self.cfg.id,
            "kind": self.cfg.kind,
            "in_service": self.logic.in_service,
            "stage": self.logic.stage.value,
            "passage_id": p.id if p else None,
            "holding": self.logic.holding,
            "devices": {n: s.status() for n, s in self.devices.slots.items()},
            "outbox": self.outbox.stats().as_dict(),
            "events_refused": dict(self.peers.refused),  # scanner events that did not verify, by reason
            "broker": {"url": self.link.url, "connected": self.link.connected, "protocol": self.link.negotiated},
        }

    # ------------------------------------------------------------------ lifecycle
    async def _ticker(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.heartbeat += 1
            self.apply(self.logic.on_tick(self.clock()))
            self._retry_outbox()
            self.commands.rejections.flush()
            self.peers.rejections.flush()
            if self.anchor is not None:
                self.anchor.tick()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_S):
                    await stop.wait()

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then flush what can be flushed and publish offline."""
        lane = self.cfg.id
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tasks = [
                    tg.create_task(self.link.run(), name=f"{lane}:mqtt"),
                    tg.create_task(self.sender.run(), name=f"{lane}:outbox"),
                    tg.create_task(self.executor.run(), name=f"{lane}:executor"),
                    tg.create_task(self._dispatcher(), name=f"{lane}:dispatcher"),
                    tg.create_task(self.identifier.rfid_reader(), name=f"{lane}:rfid"),
                ]
                tasks += [tg.create_task(s.supervisor.run(), name=f"{lane}:{n}") for n, s in self.devices.slots.items()]
                self._put_event(
                    Publish("device.state", DeviceState(device="lane", health="online", reason="daemon started"))
                )
                self.ready.set()
                await self._ticker(stop)
                self.commands.rejections.flush(force=True)
                self.peers.rejections.flush(force=True)
                if self.anchor is not None:
                    self.anchor.tick(force=True)  # before the drain: delivered with the last events
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(DRAIN_S):
                        await self.sender.wait_drained()
                with contextlib.suppress(ConnectionError, TimeoutError):
                    async with asyncio.timeout(2.0):
                        await self.link.publish(self.topics.status, self._status("offline"), retain=True)
                await self.link.close()
                for t in [*tasks, *self._identifications]:
                    t.cancel()
        finally:
            self._tg = None
            await self.devices.close()
            self.journal.close()
            self.audit.close()
            self.nonces.close()
            self.outbox.close()
