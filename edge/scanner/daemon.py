"""The shared X-ray scanner daemon: one queue for several lanes, one vehicle at a time.

Lanes ask for a scan by publishing ``inspection.requested``; this daemon queues the request,
takes the scanner's lease for one vehicle at a time, fires only when the PLC reports the
exclusion zone clear (the PLC's interlock is the first guard, ``ScannerDriver.start`` the
second, the check here the third), and publishes ``scan.queued`` / ``scan.started`` /
``scan.completed`` / ``scan.failed`` under its own unit id. Every lane subscribes to the
scanner's events; each event names the lane and passage it belongs to, and one
``scan.completed`` is shared by every agency.

Queue order: higher ``priority`` first; among equal priorities the lane served longest ago
goes first (so a busy lane cannot starve the others); FIFO within a lane.

Faults: when the PLC faults or a scan exceeds ``scan_timeout_s``, the vehicle being scanned
gets ``scan.failed``; queued vehicles get the site's policy — ``divert`` (manual inspection,
at once) or ``wait`` (kept in the queue until ``fault_wait_s`` after the fault, then
``scan.failed``). An exclusion-zone breach during a scan (radiation cut by the PLC) re-queues
that vehicle at the head, once.

Restarts: the queue and the scan in progress are journalled. A starting daemon restores the
queue and resolves the scan it was running from the PLC's own state — still scanning: wait for
its end; a newer scan id with a result: publish it; nothing happened: back to the head of the
queue — before it fires again. Inbound messages go through a bounded inbox and are validated
against the contract models; none can end the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from portlane.drivers import registry
from portlane.drivers.base import Device, ScannerDriver, ScannerState, ScannerStatus, ScanResult
from portlane.drivers.errors import DeviceError
from portlane.drivers.supervisor import Supervisor
from portlane.edge import __version__
from portlane.edge.config import MqttProtocol, ScannerConfig, Site
from portlane.edge.contract.commands import ReplayEventsArgs
from portlane.edge.contract.events import CommandResponse, EventType, InspectionRequested, PassageCompleted, ScanEvent
from portlane.edge.contract.times import rfc3339
from portlane.edge.contract.topics import Topics
from portlane.edge.delivery.events import EventWriter
from portlane.edge.delivery.inbox import Inbox
from portlane.edge.delivery.mqtt import Message, MqttLink
from portlane.edge.delivery.outbox import Outbox
from portlane.edge.delivery.sender import OutboxSender
from portlane.edge.errors import CommandRejectedError, StateError
from portlane.edge.journal import Journal
from portlane.edge.scanner.queue import QueueEntry, ScanQueue, entry_to_json
from portlane.edge.trust.anchor import AuditAnchor
from portlane.edge.trust.audit import AuditLog
from portlane.edge.trust.authority import Authority
from portlane.edge.trust.commands import CommandVerifier, RejectReason
from portlane.edge.trust.events import PeerEvents
from portlane.edge.trust.keys import broker_credentials, load_unit_signer
from portlane.edge.trust.nonces import SqliteNonceStore
from portlane.edge.trust.rejections import RejectionAggregator
from pydantic import ValidationError

__all__ = ["ScannerDaemon"]

log = logging.getLogger(__name__)

#: PLC status polling while a scan runs; a scan takes 10–40 s, progress is shown per %.
POLL_S = 0.1
#: Inbound messages waiting for the dispatcher (oldest dropped beyond; see delivery/inbox.py).
INBOX_SIZE = 256
#: Housekeeping period: aggregated rejections, audit checkpoints.
TICK_S = 1.0
#: On shutdown: how long to try to deliver what is queued (it stays on disk regardless).
DRAIN_S = 3.0
#: At start, how long to wait for the PLC's first status before resolving the journal.
RECOVER_STATUS_S = 30.0
#: Passages whose scan is settled (completed, failed, or the passage completed elsewhere),
#: remembered so that a re-delivered or replayed ``inspection.requested`` never scans a vehicle
#: twice; at start the newest this many of each are read back from the outbox.
SETTLED_REMEMBERED = 512


class ScannerDaemon:
    def __init__(
        self,
        site: Site,
        cfg: ScannerConfig,
        *,
        state_dir: Path,
        broker_url: str | None = None,
        broker_protocol: MqttProtocol | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.site = site
        self.cfg = cfg
        self.clock = clock
        self.topics = Topics(site.site.id, cfg.id)
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        # Scan results release or divert trucks: each is signed with the scanner's own key.
        self.signer = load_unit_signer(cfg.key, unit=cfg.id) if cfg.key is not None else None
        self.outbox = Outbox(
            state_dir / f"outbox-{cfg.id}.db",
            site=site.site.id,
            unit=cfg.id,
            clock=clock,
            config=site.outbox,
            signer=self.signer,
        )
        self.device: ScannerDriver = registry.create("scanner", cfg.id, cfg.device)  # type: ignore[assignment]
        self.supervisor = Supervisor(self.device, self._probe, period=cfg.device.poll_s)
        b = site.broker
        self.link = MqttLink(
            broker_url or b.url,
            client_id=f"portlane-{site.site.id}-{cfg.id}",
            protocol=(broker_protocol or b.protocol),
            **broker_credentials(b, unit=cfg.id, url=broker_url).link_kwargs(),  # TLS files, password file
            # The broker keeps what is published for us while we restart (a lane's inspection
            # request, a scanner's verdict, a command): nothing waits forever for a lost message.
            persistent_session=True,
            will=(self.topics.status, json.dumps({"state": "offline", "unit": cfg.id, "kind": "scanner"}).encode()),
            subscriptions=[
                self.topics.cmd_filter,  # replay_events only (a platform that saw a gap asks for it)
                *(
                    f"portlane/v1/{site.site.id}/{lane}/event/{t}"
                    for lane in cfg.lanes
                    for t in ("inspection.requested", "passage.completed")
                ),
            ],
            on_message=self._on_message,
            on_connect=self._on_connect,
        )
        self.sender = OutboxSender(self.outbox, self.link)
        self.events = EventWriter(self.outbox, self.topics)
        self.journal = Journal(state_dir / f"journal-{cfg.id}.db")
        self.audit = AuditLog(state_dir / "audit.jsonl")
        self.nonces = SqliteNonceStore(state_dir / f"nonces-{cfg.id}.db")
        self.verifier = CommandVerifier.from_site(
            site, cfg.id, clock=lambda: dt.datetime.fromtimestamp(self.clock(), tz=dt.UTC), nonce_store=self.nonces
        )
        self.command_rejections = RejectionAggregator(self.audit, lane=None, clock=clock)
        # The X-ray fires only for requests its lanes' keys signed.
        self.peers = PeerEvents(
            Authority.from_site(site),
            RejectionAggregator(self.audit, lane=None, kind="event_rejected", clock=clock),
            unit=cfg.id,
        )
        self.anchor = (
            AuditAnchor(self.audit, self.signer, self.events, self.link, unit=cfg.id, clock=clock)
            if self.signer is not None
            else None
        )
        if cfg.key is None:
            log.warning("%s: no signing key in the site file: its scan results go unsigned (pki init)", cfg.id)
        for unit in self.peers.unkeyed(list(cfg.lanes)):
            log.warning(
                "%s: lane %s has no signing key in the site file: its inspection requests will be refused "
                "(portlane pki init)",
                cfg.id,
                unit,
            )
        self.queue = ScanQueue()
        self.current: QueueEntry | None = None
        self.status: ScannerStatus | None = None
        self.busy_s = 0.0
        self.started_at = clock()
        self.scans = 0
        self.fired_with_zone_open = 0  # must stay 0
        self.queue_waits_ms: list[int] = []
        self.heartbeat = 0
        self._fault_since: float | None = None
        self._settled: dict[str, None] = {}  # insertion-ordered, bounded (SETTLED_REMEMBERED)
        for type_ in ("scan.completed", "scan.failed"):
            for row in reversed(self.outbox.newest(self.topics.event(type_), limit=SETTLED_REMEMBERED)):
                with contextlib.suppress(ValueError, AttributeError):
                    subject = json.loads(row.payload).get("subject")
                    if isinstance(subject, str):
                        self._settle(subject)
        self.settled_requests = 0  # requests for settled passages, ignored (re-delivered, replayed)
        self._journal_failing = False  # the last journal write failed (logged once per episode)
        self._scan_id_before: int | None = None
        self.inbox_failed = 0
        self.inbox_invalid = 0
        self._inbox: Inbox[Message] = Inbox(INBOX_SIZE)
        self._wake = asyncio.Event()
        self._lane_numbers = {lane: i + 1 for i, lane in enumerate(cfg.lanes)}

    # ------------------------------------------------------------------ plumbing
    async def _probe(self, dev: Device) -> object:
        assert isinstance(dev, ScannerDriver)
        self.status = await dev.status()
        self._wake.set()
        return self.status

    async def _on_connect(self) -> None:
        body = {
            "state": "online",
            "unit": self.cfg.id,
            "kind": "scanner",
            "version": __version__,
            "last_seq": self.outbox.last_seq,
            "epoch": self.outbox.epoch,  # last_seq counts within this stream epoch
            "since": rfc3339(self.clock()),
        }
        await self.link.publish(self.topics.status, json.dumps(body).encode(), retain=True)

    def _settle(self, passage_id: str) -> None:
        self._settled[passage_id] = None
        if len(self._settled) > SETTLED_REMEMBERED:
            del self._settled[next(iter(self._settled))]

    def _put(self, type_: EventType, **data: Any) -> None:
        event = ScanEvent(scanner=self.cfg.id, **data)
        if type_ in ("scan.completed", "scan.failed"):
            self._settle(event.passage_id)
        self.events.put(type_, event, subject=event.passage_id)
        self._save()

    def _save(self) -> None:
        """Journal the queue and the scan in progress (written only when they changed)."""
        records: dict[str, dict[str, Any]] = {f"queued:{e.passage_id}": entry_to_json(e) for e in self.queue.entries()}
        if self.current is not None:
            records["current"] = {**entry_to_json(self.current), "scan_id_before": self._scan_id_before}
        try:
            self.journal.sync(records)
        except StateError as exc:
            # A full disk or a read-only remount: the scans go on (their events are in the
            # outbox); the next save writes the difference again.
            if not self._journal_failing:
                log.error("%s: %s", self.cfg.id, exc)
            self._journal_failing = True
            return
        if self._journal_failing:
            log.warning("%s: the journal is written again", self.cfg.id)
        self._journal_failing = False

    # ------------------------------------------------------------------ inbound
    def _on_message(self, msg: Message) -> None:
        if not self._inbox.put(msg) and self._inbox.dropped in (1, 10, 100, 1000):
            log.warning("%s: inbox full, %d oldest messages dropped so far", self.cfg.id, self._inbox.dropped)

    async def _dispatcher(self) -> None:
        while True:
            msg = await self._inbox.get()
            try:
                self._handle(msg)
            except Exception:
                # No input ends the daemon: counted, logged at a bounded rate, next message.
                self.inbox_failed += 1
                if self.inbox_failed in (1, 10, 100) or self.inbox_failed % 1000 == 0:
                    log.exception("%s: a message on %s could not be handled", self.cfg.id, msg.topic[:200])

    def _handle(self, msg: Message) -> None:
        try:
            _site, lane, kind, type_ = Topics.parse(msg.topic)
        except ValueError:
            return
        if kind == "cmd" and lane == self.cfg.id:
            self._command(type_, msg.payload)
            return
        if kind != "event" or lane not in self._lane_numbers:
            return
        if type_ not in ("inspection.requested", "passage.completed"):
            return
        verified = self.peers.accept(msg.payload, unit=lane, event_type=type_)
        if verified is None:
            return
        try:
            if type_ == "inspection.requested":
                request = InspectionRequested.model_validate(verified.data)
                if request.lane == lane:
                    self._request(request)
            else:
                # Completed elsewhere (override, divert): its place in the queue is freed.
                done = PassageCompleted.model_validate(verified.data)
                self._settle(done.passage_id)
                if self.queue.remove(done.passage_id) is not None:
                    self._save()
        except ValidationError:
            self.inbox_invalid += 1

    def _command(self, name: str, payload: bytes) -> None:
        """The scanner takes one command, ``replay_events`` (signed like every command): its
        retained events in the range are sent again with their original ids."""
        nonce: str | None = None
        key_id: str | None = None
        try:
            cmd = self.verifier.verify(payload)
            nonce, key_id = cmd.nonce, cmd.key_id
            if cmd.cmd != name or name != "replay_events":
                detail = f"the scanner takes replay_events only, not {name[:64]!r}"
                raise CommandRejectedError(RejectReason.MALFORMED, detail)
            args = ReplayEventsArgs.model_validate_json(json.dumps(cmd.args))
        except CommandRejectedError as exc:
            f = exc.fields
            nonce = f.get("nonce") if isinstance(f.get("nonce"), str) else nonce
            key_id = f.get("key_id") if isinstance(f.get("key_id"), str) else key_id
            if self.command_rejections.record(exc.reason, key_id=key_id, command=name, nonce=nonce):
                self._respond(name, nonce, False, exc.reason)
            return
        except ValidationError as exc:
            if self.command_rejections.record("malformed", key_id=key_id, command=name, nonce=nonce, detail=str(exc)):
                self._respond(name, nonce, False, "malformed")
            return
        n = self.outbox.replay(args.from_seq, args.to_seq)
        self.sender.wake()
        self.audit.append(
            "command_accepted",
            actor=cmd.key_id,
            reason=cmd.cmd,
            data={"nonce": cmd.nonce, "from_seq": args.from_seq, "to_seq": args.to_seq, "replayed": n},
        )
        log.info("%s: replaying %d events from seq %d for %s", self.cfg.id, n, args.from_seq, cmd.key_id)
        self._respond(name, nonce, True, None)

    def _respond(self, name: str, nonce: str | None, ok: bool, reason: str | None) -> None:
        """Best effort, without waiting for the PUBACK (the outcome is also in the audit log)."""
        body = CommandResponse(correlation_id=nonce, command=name[:64], ok=ok, reason=reason)
        self.link.publish_best_effort(self.topics.response, body.model_dump_json().encode())

    def _request(self, r: InspectionRequested) -> None:
        if self.current and self.current.passage_id == r.passage_id:
            return  # a re-delivered request for the vehicle being scanned
        if r.passage_id in self._settled:
            # Re-delivered after a reconnect, or replayed for a platform: scanned (or given up)
            # already. One inspection per passage; the lane has its result.
            self.settled_requests += 1
            return
        if self.queue.push(r.lane, r.passage_id, r.vehicle_ref, r.priority, self.clock()):
            position = self.queue.position(r.passage_id)
            self._put("scan.queued", passage_id=r.passage_id, lane=r.lane, queue_position=position)
            self._wake.set()

    # ------------------------------------------------------------------ the scan loop
    async def _wait_status(self, pred: Callable[[ScannerStatus], bool], within_s: float) -> ScannerStatus:
        async with asyncio.timeout(within_s):
            while True:
                st = self.status
                if st is not None and pred(st):
                    return st
                self._wake.clear()
                await self._wake.wait()

    def _fail(self, e: QueueEntry, reason: str) -> None:
        self._put("scan.failed", passage_id=e.passage_id, lane=e.lane, reason=reason)

    async def _scan_loop(self) -> None:
        await self._recover()
        while True:
            self.heartbeat += 1
            st = self.status
            now = self.clock()
            if st is not None and st.state == ScannerState.FAULT:
                await self._on_fault(now)
                continue
            self._fault_since = None
            if not len(self.queue) or st is None or st.state not in (ScannerState.READY, ScannerState.COMPLETE):
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._wake.wait()
                continue
            if not st.zone_clear or st.estop:
                # Interlock: never fire while a person may be in the zone. Wait for it to clear.
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._wake.wait()
                continue
            entry = self.queue.pop(now)
            if entry is None:
                continue
            await self._scan(entry)

    async def _on_fault(self, now: float) -> None:
        if self._fault_since is None:
            self._fault_since = now
            log.warning("%s: scanner fault %s", self.cfg.id, self.status.fault_code if self.status else "?")
        expired = self.cfg.fault_policy == "divert" or now - self._fault_since > self.cfg.fault_wait_s
        if expired:
            for e in self.queue.entries():
                self.queue.remove(e.passage_id)
                self._fail(e, "scanner_fault")
        with contextlib.suppress(DeviceError):
            await self.device.reset()  # try to recover: the PLC warms up again
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self._wake.wait()

    async def _scan(self, e: QueueEntry) -> None:
        self.current = e
        cancelled = False
        t0 = self.clock()
        self.queue_waits_ms.append(int((t0 - e.queued_at) * 1000))
        try:
            st = await self.device.status()
            if not st.zone_clear or st.estop:
                self._requeue(e, retries=e.retries)
                return
            before = self._scan_id_before = st.scan_id
            self._save()  # journalled before the PLC is told to fire
            await self.device.start(
                vehicle_ref=e.vehicle_ref[:12], lane=self._lane_numbers[e.lane], seq=self.scans & 0xFFFF
            )
            # A fresh read: the poller's last status may predate the start command.
            self.status = await self.device.status()
            if self.status.scan_id == before:
                self._fail(e, f"scanner refused the scan (state {self.status.state.name})")
                return
            self.scans += 1
            self._put("scan.started", passage_id=e.passage_id, lane=e.lane, scan_id=self.status.scan_id)
            done = await self._wait_status(lambda s: s.state != ScannerState.SCANNING, within_s=self.cfg.scan_timeout_s)
            if done.state == ScannerState.COMPLETE and done.result != ScanResult.NONE:
                self._completed(e, done)
            elif e.retries == 0 and not done.zone_clear:
                log.warning("%s: zone breached during scan of %s: re-queued", self.cfg.id, e.passage_id)
                self._requeue(e, retries=e.retries + 1)
            else:
                self._fail(e, f"scanner state {done.state.name} fault {done.fault_code}")
        except TimeoutError:
            with contextlib.suppress(DeviceError):
                await self.device.abort()
            self._fail(e, "scan_timeout")
        except DeviceError as exc:
            self._fail(e, f"scanner unavailable: {exc}")
        except asyncio.CancelledError:
            # Shutdown in the middle of a scan: the journal keeps it as in progress, and the next
            # start settles it from the PLC's state.
            cancelled = True
            raise
        finally:
            self.busy_s += self.clock() - t0
            self.current = None
            if not cancelled:
                self._save()

    def _completed(self, e: QueueEntry, done: ScannerStatus) -> None:
        self._put(
            "scan.completed",
            passage_id=e.passage_id,
            lane=e.lane,
            scan_id=done.scan_id,
            result=done.result.name,
            image_ref=done.image_ref or None,
        )

    def _requeue(self, e: QueueEntry, *, retries: int) -> None:
        self.queue.push(e.lane, e.passage_id, e.vehicle_ref, e.priority, e.queued_at, head=True, retries=retries)

    async def _recover(self) -> None:
        """Resolve what the journal says an earlier run left: restore the queue; settle the scan
        it was running from the PLC's state (see the module docstring)."""
        records = self.journal.records()
        for key, r in records.items():
            if key.startswith("queued:"):
                with contextlib.suppress(KeyError, TypeError, ValueError):
                    self.queue.push(
                        r["lane"],
                        r["passage_id"],
                        r["vehicle_ref"],
                        int(r["priority"]),
                        float(r["queued_at"]),
                        retries=int(r.get("retries", 0)),
                    )
        cur = records.get("current")
        if cur is None:
            return
        try:
            e = QueueEntry(
                (0, 0.0, -1),
                cur["lane"],
                cur["passage_id"],
                cur["vehicle_ref"],
                int(cur["priority"]),
                float(cur["queued_at"]),
                int(cur.get("retries", 0)),
            )
        except (KeyError, TypeError, ValueError):
            return
        before = cur.get("scan_id_before")
        st = await self._wait_status(lambda s: True, within_s=RECOVER_STATUS_S)
        if st.state == ScannerState.SCANNING:
            log.warning("%s: restarted during the scan of %s; waiting for its end", self.cfg.id, e.passage_id)
            self.current = e
            try:
                done = await self._wait_status(
                    lambda s: s.state != ScannerState.SCANNING, within_s=self.cfg.scan_timeout_s
                )
            except TimeoutError:
                with contextlib.suppress(DeviceError):
                    await self.device.abort()
                self._fail(e, "scan_timeout")
                return
            finally:
                self.current = None
            st = done
        if st.scan_id != before and st.state == ScannerState.COMPLETE and st.result != ScanResult.NONE:
            self._completed(e, st)
        elif st.scan_id != before:
            self._fail(e, f"scanner state {st.state.name} fault {st.fault_code} after a restart")
        else:
            self._requeue(e, retries=e.retries)  # never fired: it goes first
        self._save()

    def utilisation(self) -> float:
        total = self.clock() - self.started_at
        return round(self.busy_s / total, 3) if total > 0 else 0.0

    async def run(self, stop: asyncio.Event) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self.link.run(), name=f"{self.cfg.id}:mqtt"),
                    tg.create_task(self.sender.run(), name=f"{self.cfg.id}:outbox"),
                    tg.create_task(self.supervisor.run(), name=f"{self.cfg.id}:device"),
                    tg.create_task(self._scan_loop(), name=f"{self.cfg.id}:scan"),
                    tg.create_task(self._dispatcher(), name=f"{self.cfg.id}:dispatcher"),
                ]
                while not stop.is_set():
                    self.events.flush_held()  # events the outbox refused (a full disk), in order
                    self.peers.rejections.flush()
                    self.command_rejections.flush()
                    if self.anchor is not None:
                        self.anchor.tick()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(TICK_S):
                            await stop.wait()
                self.peers.rejections.flush(force=True)
                self.command_rejections.flush(force=True)
                if self.anchor is not None:
                    self.anchor.tick(force=True)  # before the drain: delivered with the last events
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(DRAIN_S):
                        await self.sender.wait_drained()
                await self.link.close()
                for t in tasks:
                    t.cancel()
        finally:
            await self.device.close()
            self.journal.close()
            self.audit.close()
            self.nonces.close()
            self.outbox.close()
