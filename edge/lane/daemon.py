"""The lane daemon: a unit (``portlane.edge.unit``) wired to the lane's devices and logic.

    gate + remote I/O polls ─ Sensors ─┐
    identification (RFID, scale, cameras, seals) ─┤
    radiation portal: state polls, occupancies (+ N42.42 file) ─┤
    signed commands ─ the unit's command path ─┤→ LaneLogic (pure) → actions → Executor → devices / outbox / audit
    scanner events ─ the unit's peer intake ─┤
    ticks (deadlines) ─┘

The unit skeleton brings the outbox, the broker link, signatures, the audit log, the command
path, the status and the ordered shutdown; this module keeps only the lane's domain.

Each input is handed to the logic, and the actions it returns go to the executor
(``executor.py``), the only place that touches devices. The passage being worked on is
journalled (``journal.py``), so that after a restart ``LaneLogic.start`` closes it out before
the next vehicle is taken.

This module must not import ``cv2`` or ``onnxruntime`` (the gate path stays light); plate and
container recognition arrive through a ``Recogniser``, off the control loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, Unpack

from portlane.drivers.cargo_devices import RpmOccupancy, RpmStatus
from portlane.drivers.supervisor import DeviceHealth
from portlane.edge import __version__
from portlane.edge.config import LaneConfig, Site
from portlane.edge.contract.events import DeviceState, LaneException, ScanEvent
from portlane.edge.contract.n42 import PortalInfo
from portlane.edge.delivery.events import EventMetrics
from portlane.edge.errors import OutboxError, StateError
from portlane.edge.journal import Journal
from portlane.edge.trust.audit import require_operator
from portlane.edge.trust.events import VerifiedEvent
from portlane.edge.unit.skeleton import Connection, StatusWord, Unit, restart_needed
from pydantic import ValidationError

from .actions import Action, Publish, ShowBoard, StopGate
from .cargo_checks import occupancy_event
from .commands import LANE_COMMANDS, LaneCommands
from .devices import LaneDevices
from .executor import DeviceAction, Executor
from .identification import Identifier
from .logic import LaneLogic
from .n42_store import N42Store
from .passage import Identity, LaneTimeouts, Passage, Sensors
from .predecision_store import PredecisionStore
from .recognition import Recogniser
from .technician import OPERATOR

__all__ = ["LaneDaemon"]

log = logging.getLogger(__name__)

#: Deadline tick of the logic; also the watchdog's main heartbeat.
TICK_S = 0.5
#: At start, how many of the newest passage.completed events are checked against the journal
#: (a lane has at most one passage under way; a few cover any stop).
COMPLETED_LOOKBACK = 8
#: A lane the outbox closed tries this often whether it accepts events again.
OUTBOX_RETRY_S = 5.0
#: The journal record of an operator's closure (beside the passage under way).
CLOSURE_KEY = "lane:closure"
#: The scanner's events a lane acts on.
SCAN_EVENTS = ("scan.queued", "scan.started", "scan.completed", "scan.failed")


class LaneDaemon:
    def __init__(
        self,
        site: Site,
        lane: LaneConfig,
        *,
        state_dir: Path,
        recogniser: Recogniser | None = None,
        timeouts: LaneTimeouts | None = None,
        metrics: EventMetrics | None = None,
        **connection: Unpack[Connection],
    ) -> None:
        self.site = site
        self.cfg = lane
        self.clock = clock = connection.get("clock", time.time)
        self.state_dir = Path(state_dir)
        # Signed pre-decisions and control orders, on disk: a use is written before the gate moves,
        # so a restart never lets a used pre-decision release a second vehicle.
        self.predecision_store = PredecisionStore(clock=clock)
        self.logic = LaneLogic(
            lane.id,
            predecisions=self.predecision_store.book,
            agencies=tuple(a.value for a in lane.agencies),
            has_scanner=lane.scanner is not None,
            kind=lane.kind,
            timeouts=timeouts or LaneTimeouts(decision_s=site.platform.decision_timeout_s),
            rpm=f"{lane.id}/rpm" if lane.devices.rpm is not None else None,
            seal_reader=f"{lane.id}/seal_reader" if lane.devices.seal_reader is not None else None,
        )
        self.unit = Unit(
            site,
            unit=lane.id,
            kind="lane",
            key=lane.key,
            state_dir=self.state_dir,
            audit_lane=lane.id,
            metrics=metrics,
            **connection,
            on_refused=self._on_outbox_refused,
            status=self._status_word,
        )
        if lane.scanner:
            # The scanner's verdicts move the barrier: only those its key signed are acted on.
            self.unit.listen(lane.scanner, SCAN_EVENTS, self._on_scanner_event)
            for unit in self.unit.unkeyed([lane.scanner]):
                log.warning(
                    "%s: scanner %s has no signing key in the site file: its scan results will be refused "
                    "and inspections end by the scanner's fault policy (portlane pki init)",
                    lane.id,
                    unit,
                )
        self.journal = Journal(self.state_dir / f"journal-{lane.id}.db", flushes=self.unit.flushes)
        self.predecision_store.open(self.state_dir / f"predecisions-{lane.id}.db")
        closure = self.journal.records().get(CLOSURE_KEY)
        if closure is not None:
            # An operator closed the lane before the stop (a restart, a new site file, a power
            # cut): it stays closed until an operator opens it.
            self.logic.restore_closure(str(closure.get("operator", "?")), str(closure.get("reason", "")))
            log.warning(
                "%s: closed by %s before the stop (%s): stays closed",
                lane.id,
                closure.get("operator"),
                closure.get("reason"),
            )
        self.devices = LaneDevices(
            lane, on_sample=self._on_sample, on_health=self._on_health, on_rpm=self._on_rpm_status
        )
        where = f"{site.site.id} lane {lane.id}"
        self.n42 = N42Store(self.state_dir, lane.id, PortalInfo(f"{lane.id}/rpm", location=where), version=__version__)
        self._n42_failing = False
        self.executor = Executor(
            lane=lane.id,
            logic=self.logic,
            devices=self.devices,
            events=self.unit.events,
            audit=self.unit.audit,
            identify=self._start_identification,
            clock=clock,
            report=self.apply,
        )
        self.identifier = Identifier(
            lane.id, self.devices, recogniser=recogniser, clock=clock, deadline_s=self.logic.timeouts.identify_s
        )
        self.commands = LaneCommands(logic=self.logic, apply=self.apply, identifier=self.identifier, clock=clock)
        for name in LANE_COMMANDS:
            self.unit.command(name, self.commands.handle)
        self.ready = self.unit.ready
        self._changed = asyncio.Event()
        self._identifications: set[asyncio.Task[None]] = set()
        self._journal_failing = False  # the last journal write failed (logged once per episode)
        self._outbox_tried_at = 0.0

    @property
    def heartbeat(self) -> int:
        return self.unit.heartbeat

    # ------------------------------------------------------------------ applying the logic's actions
    def apply(self, actions: Iterable[Action]) -> None:
        todo = tuple(actions)
        self.executor.apply(todo)
        p = self.logic.passage
        records = {p.id: p.to_json()} if p is not None else {}
        closed = self.logic.closures.get(OPERATOR)
        if closed is not None:
            records[CLOSURE_KEY] = {"operator": closed.operator, "reason": closed.reason}
        try:
            # On disk before a device moves (the executor's workers run once this returns); a
            # change that moves nothing (an agency's decision before the last, exit tracking)
            # does not wait for the disk: the next flush takes it along.
            self.journal.sync(records, flush=any(isinstance(a, DeviceAction) for a in todo))
            self.predecision_store.sync()  # a use or a revoke on disk before the executor opens
        except StateError as exc:
            self._on_journal_failed(exc)
        else:
            if self._journal_failing:
                self._journal_failing = False
                log.warning("%s: the journal is written again", self.cfg.id)
                self._reopen_for("journal", "the journal is written again")
        # The status says whether the lane takes vehicles: consumers (the console, the platform)
        # see a closure at once, whoever closed it.
        self.unit.status_changed()
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
            for key, record in self.journal.records().items():
                if key == CLOSURE_KEY:
                    continue
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
        for row in self.unit.outbox.newest(self.unit.topics.event("passage.completed"), limit=COMPLETED_LOOKBACK):
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
        if name == "rpm" and health == DeviceHealth.OFFLINE:
            # A portal that does not answer clears nobody: automatic release waits (not the lane).
            self._on_rpm_status(None)
        if name != "gate":
            return
        if health == DeviceHealth.OFFLINE:
            # A lane whose barrier does not answer takes itself out of service and says so.
            self._close_for("gate", f"gate offline: {reason}")
            detail = f"gate offline: {reason}"
            self._put_event(
                Publish("lane.exception", LaneException(passage_id=None, kind="device_fault", detail=detail))
            )
        elif health == DeviceHealth.ONLINE:
            self._reopen_for("gate", "gate back online")

    def _close_for(self, cause: str, reason: str) -> None:
        """The lane takes itself out of service for ``cause`` (audited once per episode)."""
        self.apply(self.logic.set_in_service(False, operator="portlane", reason=reason[:200], cause=cause))

    def _reopen_for(self, cause: str, reason: str) -> None:
        """``cause`` is gone; the lane takes vehicles again unless another cause (or an operator)
        keeps it closed."""
        self.apply(self.logic.set_in_service(True, operator="portlane", reason=reason, cause=cause))

    def _on_outbox_refused(self, exc: OutboxError) -> None:
        # A lane that cannot record what it does takes no vehicles (nothing lost, nothing unseen).
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
        self._close_for("journal", f"journal not written: {exc.problem}")

    def _retry_outbox(self) -> None:
        """On the tick, for a lane the outbox closed: every ``OUTBOX_RETRY_S`` write the events it
        refused (held in memory by the writer), then record that the outbox works again; once
        that is accepted (space freed, filesystem remounted, events delivered), the lane takes
        vehicles again."""
        now = self.clock()
        events = self.unit.events
        closed = "outbox" in self.logic.closures
        if (not closed and not events.held) or now - self._outbox_tried_at < OUTBOX_RETRY_S:
            return
        self._outbox_tried_at = now
        if not events.flush_held():  # what was refused first, in order
            return
        if not closed:
            return
        state = DeviceState(device="outbox", health="online", reason="the outbox accepts events again")
        if self.unit.events.put("device.state", state) is not None:
            self._reopen_for("outbox", "the outbox accepts events again")

    # ------------------------------------------------------------------ radiation portal
    def _on_rpm_status(self, status: RpmStatus | None) -> None:
        """Every poll of the portal (None: offline); the logic speaks only on a change."""
        actions = self.logic.on_rpm_status(status, self.clock())
        if actions:
            self.apply(actions)

    def _on_occupancy(self, occ: RpmOccupancy) -> None:
        """An occupancy: its verdict with the portal's state as it ended, its N42.42 document on
        disk, then the logic (which gives it its passage and publishes it)."""
        event = occupancy_event(occ, self.devices.rpm_status, portal=f"{self.cfg.id}/rpm", passage_id=None)
        try:
            event = event.model_copy(update={"n42": self.n42.write(event)})
        except OSError as exc:
            if not self._n42_failing:  # once per episode: the occupancy is published all the same
                log.error("%s: N42.42 document of occupancy %d not written: %s", self.cfg.id, occ.number, exc)
            self._n42_failing = True
        else:
            self._n42_failing = False
        self.apply(self.logic.on_occupancy(event, self.clock()))

    def _start_identification(self, passage_id: str) -> None:
        self.unit.spawn(self._identify(passage_id), name=f"identify-{passage_id}")

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

    # ------------------------------------------------------------------ peers and status
    def _on_scanner_event(self, event: VerifiedEvent) -> None:
        try:
            data = ScanEvent.model_validate(event.data)
        except ValidationError:
            return
        if data.lane != self.cfg.id:
            return
        kind = event.type.removeprefix("scan.")
        self.apply(
            self.logic.on_scan(
                data.passage_id, kind, self.clock(), scan_id=data.scan_id, result=data.result, reason=data.reason
            )
        )

    def _status_word(self) -> StatusWord:
        logic = getattr(self, "logic", None)
        if logic is None:
            return StatusWord()
        reason = None if logic.in_service else ", ".join(sorted(logic.closures))
        return StatusWord(in_service=logic.in_service, reason=reason, stage=logic.stage.value)

    # ------------------------------------------------------------------ technician actions
    def override(self, action: str, *, operator: str, reason: str) -> dict[str, Any]:
        operator, reason = require_operator(operator, reason)
        now = self.clock()
        if action == "open":
            self.apply(self.logic.override_open(operator=operator, reason=reason, now=now))
        elif action == "close":
            self.apply(self.logic.override_close(operator=operator, reason=reason, now=now))
        else:
            self.unit.audit.append("override", actor=operator, reason=reason, lane=self.cfg.id, data={"action": "stop"})
            self.apply([StopGate("override")])
        return {"ok": True}

    def show_board(self, text: str, *, operator: str, reason: str) -> None:
        operator, reason = require_operator(operator, reason)
        self.unit.audit.append("board_message", actor=operator, reason=reason, lane=self.cfg.id, data={"text": text})
        self.apply([ShowBoard.of((text, "amber"))])

    def set_in_service(self, in_service: bool, *, operator: str, reason: str) -> bool:
        operator, reason = require_operator(operator, reason)
        self.apply(self.logic.set_in_service(in_service, operator=operator, reason=reason))
        return self.logic.in_service

    def reload(self, site: Site) -> list[str]:
        """Take a new site file where it can be taken in place — keys and authority, the
        decision deadline — and return what needs a restart instead (empty: all applied)."""
        restart = restart_needed(self.site, site, self.cfg.id)
        if restart:
            return restart
        self.unit.reload_trust(site)
        self.logic.timeouts = replace(self.logic.timeouts, decision_s=site.platform.decision_timeout_s)
        self.site = site
        self.cfg = site.lane(self.cfg.id)
        return []

    def status(self) -> dict[str, Any]:
        p = self.logic.passage
        return {
            "lane": self.cfg.id,
            "kind": self.cfg.kind,
            "in_service": self.logic.in_service,
            "closed_for": {c: {"by": x.operator, "reason": x.reason} for c, x in self.logic.closures.items()},
            "predecisions": self.logic.predecisions.stats(self.clock()),
            "stage": self.logic.stage.value,
            "passage_id": p.id if p else None,
            "holding": self.logic.holding,
            "auto_release_held": self.logic.cargo.held(),  # lane-wide: the portal's faults
            "devices": {n: s.status() for n, s in self.devices.slots.items()},
            **self.unit.stats(),
        }

    # ------------------------------------------------------------------ lifecycle
    def _tick(self) -> None:
        self.apply(self.logic.on_tick(self.clock()))
        self._retry_outbox()

    def _started(self) -> None:
        self._put_event(Publish("device.state", DeviceState(device="lane", health="online", reason="daemon started")))

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then flush what can be flushed and publish offline."""
        tasks: dict[str, Callable[[], Awaitable[None]]] = {
            "executor": self.executor.run,
            "rfid-reader": self.identifier.rfid_reader,
            "rpm-occupancies": lambda: self.devices.occupancies(self._on_occupancy),
        }
        tasks |= {f"device-{name}": slot.supervisor.run for name, slot in self.devices.slots.items()}
        try:
            await self.unit.run(stop, tasks=tasks, tick=self._tick, tick_s=TICK_S, started=self._started)
        finally:
            await self.devices.close()
            self.journal.close()
            self.predecision_store.close()
