"""The shared X-ray scanner daemon: a unit (``portlane.edge.unit``) wired to the scanner's PLC.

    PLC status polls ─ on_status ─┐
    lanes' inspection.requested / passage.completed ─ the unit's peer intake ─┤→ ScannerLogic (pure)
    the executor's report of a firing ─┤      → actions → ScannerExecutor → PLC / outbox
    ticks (scan deadline, fault policy) ─┘

Lanes ask for a scan by publishing ``inspection.requested``; the logic (``logic.py``) queues
the request, takes the lease for one vehicle at a time and fires only when the PLC reports the
exclusion zone clear (the PLC's interlock is the first guard, ``ScannerDriver.start`` the
second, the executor's fresh read the third, the logic the fourth); the scanner publishes
``scan.queued`` / ``scan.started`` / ``scan.completed`` / ``scan.failed`` under its own unit
id, and every lane and agency sees them. The queue and the scan in progress are journalled
after every input; a starting daemon settles the journalled scan from the PLC's own state
before it fires again. The unit skeleton brings the outbox, the broker link, signatures, the
audit log, the command path (``replay_events``), the status and the ordered shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Unpack

from portlane.drivers import registry
from portlane.drivers.base import Device
from portlane.drivers.scanner_device import ScannerDriver, ScannerStatus
from portlane.drivers.supervisor import Supervisor
from portlane.edge.config import ScannerConfig, Site
from portlane.edge.contract.events import InspectionRequested, PassageCompleted
from portlane.edge.errors import StateError
from portlane.edge.journal import Journal
from portlane.edge.trust.events import VerifiedEvent
from portlane.edge.unit.actions import Publish
from portlane.edge.unit.skeleton import Connection, StatusWord, Unit, restart_needed
from pydantic import ValidationError

from .executor import ScannerExecutor
from .logic import SETTLED_REMEMBERED, ScannerAction, ScannerLogic

__all__ = ["ScannerDaemon"]

log = logging.getLogger(__name__)

#: Housekeeping period: deadlines, fault policy, aggregated rejections, audit checkpoints.
TICK_S = 1.0
#: The lanes' events the scanner acts on.
LANE_EVENTS = ("inspection.requested", "passage.completed")


class ScannerDaemon:
    def __init__(
        self,
        site: Site,
        cfg: ScannerConfig,
        *,
        state_dir: Path,
        **connection: Unpack[Connection],
    ) -> None:
        self.site = site
        self.cfg = cfg
        self.clock = clock = connection.get("clock", time.time)
        state_dir = Path(state_dir)
        self.logic = ScannerLogic(
            cfg.id,
            cfg.lanes,
            fault_policy=cfg.fault_policy,
            fault_wait_s=cfg.fault_wait_s,
            scan_timeout_s=cfg.scan_timeout_s,
        )
        self.unit = Unit(
            site,
            unit=cfg.id,
            kind="scanner",
            key=cfg.key,
            state_dir=state_dir,
            status=self._status_word,
            **connection,
        )
        # The X-ray fires only for requests its lanes' keys signed.
        for lane in cfg.lanes:
            self.unit.listen(lane, LANE_EVENTS, self._on_lane_event)
        for unit in self.unit.unkeyed(cfg.lanes):
            log.warning(
                "%s: lane %s has no signing key in the site file: its inspection requests will be refused "
                "(portlane pki init)",
                cfg.id,
                unit,
            )
        self.device: ScannerDriver = registry.create("scanner", cfg.id, cfg.device)  # type: ignore[assignment]
        self.supervisor = Supervisor(self.device, self._probe, period=cfg.device.poll_s)
        self.journal = Journal(state_dir / f"journal-{cfg.id}.db", flushes=self.unit.flushes)
        # The outbox seq of the event that settled each passage, to send it again to a lane that
        # asks (``Resend``); read back from the outbox at start.
        self._settling_seq: OrderedDict[str, int] = OrderedDict()
        self.logic.restore(self.journal.records(), self._settled_in_outbox())
        self.executor = ScannerExecutor(
            scanner=cfg.id,
            device=self.device,
            events=self.unit.events,
            report=self._on_fired,
            resend=self._resend,
            on_published=self._on_published,
        )
        self.inbox_invalid = 0
        self.unit_started_at = clock()
        self._changed = asyncio.Event()
        self._journal_failing = False  # the last journal write failed (logged once per episode)
        self.ready = self.unit.ready

    # ------------------------------------------------------------------ what others read
    @property
    def heartbeat(self) -> int:
        return self.unit.heartbeat

    @property
    def status(self) -> ScannerStatus | None:
        return self.logic.status

    @property
    def scans(self) -> int:
        return self.logic.scans

    @property
    def queue_waits_ms(self) -> list[int]:
        return self.logic.queue_waits_ms

    @property
    def settled_requests(self) -> int:
        return self.logic.settled_requests

    @property
    def fired_with_zone_open(self) -> int:
        return self.executor.fired_with_zone_open

    def utilisation(self) -> float:
        total = self.clock() - self.unit_started_at
        return round(self.logic.busy_s / total, 3) if total > 0 else 0.0

    # ------------------------------------------------------------------ inputs
    def apply(self, actions: Iterable[ScannerAction]) -> None:
        self.executor.apply(actions)
        self._save()
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, checked after every input the logic handled (every
        PLC poll, request, report and tick; wrap it in ``asyncio.timeout``)."""
        while not predicate():
            await self._changed.wait()

    async def _probe(self, dev: Device) -> object:
        assert isinstance(dev, ScannerDriver)
        st = await dev.status()
        self.apply(self.logic.on_status(st, self.clock()))
        return st

    def _on_fired(self, passage_id: str, status: ScannerStatus | None, zone_refused: bool, error: str | None) -> None:
        self.apply(self.logic.on_fired(passage_id, self.clock(), status=status, zone_refused=zone_refused, error=error))

    def _on_lane_event(self, event: VerifiedEvent) -> None:
        try:
            if event.type == "inspection.requested":
                request = InspectionRequested.model_validate(event.data)
                if request.lane == event.unit:
                    self.apply(self.logic.on_request(request, self.clock()))
            else:
                done = PassageCompleted.model_validate(event.data)
                self.apply(self.logic.on_passage_completed(done.passage_id))
        except ValidationError:
            self.inbox_invalid += 1

    def _tick(self) -> None:
        self.apply(self.logic.on_tick(self.clock()))

    # ------------------------------------------------------------------ settled passages
    def _on_published(self, event: Publish, seq: int | None) -> None:
        if event.type in ("scan.completed", "scan.failed") and event.subject is not None and seq is not None:
            self._remember(event.subject, seq)

    def _remember(self, passage_id: str, seq: int) -> None:
        self._settling_seq[passage_id] = seq
        self._settling_seq.move_to_end(passage_id)
        if len(self._settling_seq) > SETTLED_REMEMBERED:
            self._settling_seq.popitem(last=False)

    def _settled_in_outbox(self) -> list[str]:
        """Passages the outbox says were settled, oldest first (the newest few of each type)."""
        rows = []
        t = self.unit.topics
        for type_ in ("scan.completed", "scan.failed"):
            # Per-lane scan topics (each of its lanes), and the unscoped one of an older outbox.
            for topic in (t.event(type_), *(t.lane_event(type_, lane) for lane in self.cfg.lanes)):
                rows += self.unit.outbox.newest(topic, limit=SETTLED_REMEMBERED)
        out = []
        for row in sorted(rows, key=lambda r: r.seq):
            with contextlib.suppress(ValueError, AttributeError):
                subject = json.loads(row.payload).get("subject")
                if isinstance(subject, str):
                    self._remember(subject, row.seq)
                    out.append(subject)
        return out

    def _resend(self, passage_id: str) -> None:
        seq = self._settling_seq.get(passage_id)
        if seq is None:
            log.info("%s: %s asked again, but its settling event is no longer kept", self.cfg.id, passage_id)
            return
        n = self.unit.replay(seq, seq)
        log.info("%s: settling event of %s sent again (%d)", self.cfg.id, passage_id, n)

    def reload(self, site: Site) -> list[str]:
        """Take a new site file's keys and authority in place; return what needs a restart."""
        restart = restart_needed(self.site, site, self.cfg.id)
        if not restart:
            self.unit.reload_trust(site)
            self.site = site
        return restart

    # ------------------------------------------------------------------ state
    def _save(self) -> None:
        """Journal the queue and the scan in progress (written only when they changed)."""
        try:
            self.journal.sync(self.logic.journal())
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

    def _status_word(self) -> StatusWord:
        logic = getattr(self, "logic", None)
        return StatusWord(stage=logic.phase.value if logic is not None else None)

    def snapshot(self) -> dict[str, Any]:
        """The scanner's state for the control socket."""
        st = self.logic.status
        return {
            "scanner": self.cfg.id,
            "phase": self.logic.phase.value,
            "plc": None if st is None else {"state": st.state.name, "zone_clear": st.zone_clear, "estop": st.estop},
            "queue": [e.passage_id for e in self.logic.queue.entries()],
            "current": self.logic.current.passage_id if self.logic.current else None,
            "scans": self.logic.scans,
            "utilisation": self.utilisation(),
            **self.unit.stats(),
        }

    # ------------------------------------------------------------------ lifecycle
    async def run(self, stop: asyncio.Event) -> None:
        self.unit_started_at = self.clock()
        tasks = {"device": self.supervisor.run, "executor": self.executor.run}
        try:
            await self.unit.run(stop, tasks=tasks, tick=self._tick, tick_s=TICK_S)
        finally:
            await self.device.close()
            self.journal.close()
