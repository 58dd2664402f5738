"""The shared scanner's logic: lease, queue policy, fault policy, re-queue, restart recovery — pure.

Inputs in (the PLC's status, a lane's verified request, a passage completed elsewhere, the
executor's report of a firing, a tick), typed actions out (:class:`Fire`, :class:`Abort`,
:class:`Reset`, :class:`~portlane.edge.unit.actions.Publish` of a ``ScanEvent``,
:class:`Resend`). The scanner's executor (``executor.py``) alone touches the PLC; nothing
outside this class assigns its state. The lane's ``LaneLogic`` is the model.

Safety, as the logic sees it (the executor checks the PLC again right before it fires, the
driver checks the interlock inputs, the PLC has its own interlock):

* :class:`Fire` only when the newest status says READY or COMPLETE, the exclusion zone clear
  and the e-stop released, and no lease is held — one vehicle at a time;
* the lease is held from the moment :class:`Fire` is decided until that scan is settled
  (completed, failed, re-queued), whatever the PLC reports in between.

The lease's life::

    IDLE ──Fire──▶ FIRING ──on_fired: the PLC took it──▶ SCANNING ──status: not scanning──▶ IDLE
                     │ refused / zone opened / error: settled or re-queued         │ timeout: Abort
    RECOVERING (after a restart with a scan in the journal) ──first status──▶ SCANNING or settled

Queue order: higher ``priority`` first; among equal priorities the lane served longest ago
(``queue.py``). Faults: the vehicle being scanned gets ``scan.failed``; queued vehicles get the
site's policy — ``divert`` (at once) or ``wait`` (until ``fault_wait_s`` after the fault). An
exclusion-zone breach during a scan re-queues that vehicle at the head, once.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from portlane.drivers.scanner_device import ScannerState, ScannerStatus, ScanResult
from portlane.edge.contract.events import InspectionRequested, ScanEvent
from portlane.edge.unit.actions import Publish

from .queue import QueueEntry, ScanQueue, entry_from_json, entry_to_json

__all__ = [
    "RESET_EVERY_S",
    "SETTLED_REMEMBERED",
    "Abort",
    "Fire",
    "Phase",
    "Resend",
    "Reset",
    "ScannerAction",
    "ScannerLogic",
]

#: A faulted PLC is asked to reset at most this often (it warms up again after a reset).
RESET_EVERY_S = 1.0
#: Passages whose scan is settled (completed, failed, or the passage completed elsewhere),
#: remembered so that a re-delivered or replayed ``inspection.requested`` never scans a vehicle
#: twice.
SETTLED_REMEMBERED = 512

FIREABLE = (ScannerState.READY, ScannerState.COMPLETE)
_RESULTS: dict[ScanResult, Literal["GREEN", "YELLOW", "RED"] | None] = {
    ScanResult.NONE: None,
    ScanResult.GREEN: "GREEN",
    ScanResult.YELLOW: "YELLOW",
    ScanResult.RED: "RED",
}
ScanEventType = Literal["scan.queued", "scan.started", "scan.completed", "scan.failed"]


class Phase(enum.Enum):
    IDLE = "idle"
    RECOVERING = "recovering"  # a scan of an earlier run is in the journal; waiting for the PLC
    FIRING = "firing"  # Fire decided; the executor has not reported yet
    SCANNING = "scanning"


@dataclass(frozen=True, slots=True)
class Fire:
    """Start a scan of ``entry`` (the executor re-reads the PLC first and refuses an open zone)."""

    entry: QueueEntry
    lane_number: int
    seq: int


@dataclass(frozen=True, slots=True)
class Abort:
    """Stop the scan in progress (a scan that ran past its deadline)."""


@dataclass(frozen=True, slots=True)
class Reset:
    """Ask a faulted PLC to reset."""


@dataclass(frozen=True, slots=True)
class Resend:
    """Send the event that settled ``passage_id`` again, with its original id (a lane asked
    again for a scan it never heard the end of)."""

    passage_id: str


ScannerAction = Fire | Abort | Reset | Publish | Resend


class ScannerLogic:
    def __init__(
        self,
        scanner: str,
        lanes: Sequence[str],
        *,
        fault_policy: Literal["divert", "wait"] = "divert",
        fault_wait_s: float = 60.0,
        scan_timeout_s: float = 60.0,
    ) -> None:
        self.scanner = scanner
        self.lane_numbers = {lane: i + 1 for i, lane in enumerate(lanes)}
        self.fault_policy = fault_policy
        self.fault_wait_s = fault_wait_s
        self.scan_timeout_s = scan_timeout_s
        self.queue = ScanQueue()
        self.phase = Phase.IDLE
        self.current: QueueEntry | None = None  # the lease
        self.status: ScannerStatus | None = None  # the newest the PLC reported
        self.scan_id_before: int | None = None  # the PLC's scan id before the current firing
        self.scan_id: int | None = None  # the current scan's id, once the PLC took it
        self.started_at = 0.0
        self.fault_since: float | None = None
        self.scans = 0
        self.busy_s = 0.0
        self.queue_waits_ms: list[int] = []
        self.settled_requests = 0  # requests for settled passages, ignored (re-delivered, replayed)
        self._settled: OrderedDict[str, None] = OrderedDict()
        self._reset_at: float | None = None
        self._leased_at = 0.0

    # ------------------------------------------------------------------ restart
    def restore(self, records: Mapping[str, Mapping[str, Any]], settled: Iterable[str]) -> None:
        """Before the first status: the journal an earlier run left, and the passages its
        outbox says were settled (oldest first)."""
        for pid in settled:
            self._settle(pid)
        for key, r in records.items():
            if key.startswith("queued:"):
                e = entry_from_json(r)
                if e is not None:
                    self.queue.push(e.lane, e.passage_id, e.vehicle_ref, e.priority, e.queued_at, retries=e.retries)
        cur = records.get("current")
        e = entry_from_json(cur) if cur is not None else None
        if e is not None and cur is not None:
            before = cur.get("scan_id_before")
            self.current = e
            self.scan_id_before = before if isinstance(before, int) else None
            self.phase = Phase.RECOVERING

    def journal(self) -> dict[str, dict[str, Any]]:
        """What must survive a restart: the queue and the scan the lease is held for."""
        records: dict[str, dict[str, Any]] = {f"queued:{e.passage_id}": entry_to_json(e) for e in self.queue.entries()}
        if self.current is not None:
            records["current"] = {**entry_to_json(self.current), "scan_id_before": self.scan_id_before}
        return records

    # ------------------------------------------------------------------ inputs
    def on_status(self, st: ScannerStatus, now: float) -> list[ScannerAction]:
        self.status = st
        out: list[ScannerAction] = []
        if self.phase is Phase.RECOVERING:
            out += self._recover(st, now)
        elif self.phase is Phase.SCANNING:
            out += self._check_end(st, now)
        out += self._fault(st, now)
        out += self._maybe_fire(now)
        return out

    def on_request(self, r: InspectionRequested, now: float) -> list[ScannerAction]:
        if r.lane not in self.lane_numbers:
            return []
        if self.current is not None and self.current.passage_id == r.passage_id:
            return []  # a re-delivered request for the vehicle being scanned
        if r.passage_id in self._settled:
            # Re-delivered after a reconnect, or replayed for a platform: scanned (or given up)
            # already — one inspection per passage. A lane that asks again (``recheck``) never
            # heard the end: it gets the settling event again.
            self.settled_requests += 1
            return [Resend(r.passage_id)] if r.recheck else []
        if not self.queue.push(r.lane, r.passage_id, r.vehicle_ref, r.priority, now):
            return []
        out: list[ScannerAction] = [
            self._event("scan.queued", r.passage_id, r.lane, queue_position=self.queue.position(r.passage_id))
        ]
        return out + self._maybe_fire(now)

    def on_passage_completed(self, passage_id: str) -> list[ScannerAction]:
        """Completed elsewhere (override, divert): its place in the queue is freed."""
        self._settle(passage_id)
        self.queue.remove(passage_id)
        return []

    def on_fired(
        self,
        passage_id: str,
        now: float,
        *,
        status: ScannerStatus | None = None,
        zone_refused: bool = False,
        error: str | None = None,
    ) -> list[ScannerAction]:
        """The executor's report on a :class:`Fire`: the PLC's status after the start command,
        or that it refused to fire (the zone was open when it looked), or a device error."""
        e = self.current
        if self.phase is not Phase.FIRING or e is None or e.passage_id != passage_id:
            return []
        if status is not None:
            self.status = status
        if error is not None:
            return self._settle_fail(f"scanner unavailable: {error}", now) + self._maybe_fire(now)
        if zone_refused or status is None:
            self._requeue(e, retries=e.retries)
            self._release(now)
            return self._maybe_fire(now)
        if status.scan_id == self.scan_id_before:
            return self._settle_fail(f"scanner refused the scan (state {status.state.name})", now) + self._maybe_fire(
                now
            )
        self.scans += 1
        self.phase = Phase.SCANNING
        self.scan_id = status.scan_id
        self.started_at = now
        out: list[ScannerAction] = [self._event("scan.started", e.passage_id, e.lane, scan_id=status.scan_id)]
        return out + self._check_end(status, now) + self._maybe_fire(now)

    def on_tick(self, now: float) -> list[ScannerAction]:
        out: list[ScannerAction] = []
        if self.phase is Phase.SCANNING and now - self.started_at > self.scan_timeout_s:
            out += [Abort(), *self._settle_fail("scan_timeout", now)]
        if self.status is not None:
            out += self._fault(self.status, now)
        return out + self._maybe_fire(now)

    # ------------------------------------------------------------------ rules
    def may_fire(self, st: ScannerStatus | None) -> bool:
        """The logic's own guard: a PLC ready, its zone clear, its e-stop released, no lease."""
        return (
            self.phase is Phase.IDLE
            and self.current is None
            and st is not None
            and st.state in FIREABLE
            and st.zone_clear
            and not st.estop
        )

    def _maybe_fire(self, now: float) -> list[ScannerAction]:
        if not len(self.queue) or not self.may_fire(self.status):
            return []
        assert self.status is not None
        e = self.queue.pop(now)
        if e is None:
            return []
        self.current = e
        self.phase = Phase.FIRING
        self.scan_id_before = self.status.scan_id
        self.scan_id = None
        self._leased_at = now
        self.queue_waits_ms.append(int((now - e.queued_at) * 1000))
        return [Fire(e, self.lane_numbers.get(e.lane, 0), self.scans & 0xFFFF)]

    def _check_end(self, st: ScannerStatus, now: float) -> list[ScannerAction]:
        e = self.current
        if e is None or st.state == ScannerState.SCANNING:
            return []
        if self.scan_id is not None and st.scan_id != self.scan_id and st.state != ScannerState.FAULT:
            return []  # a status read before this scan started (another poll in flight)
        if st.state == ScannerState.COMPLETE and st.result != ScanResult.NONE:
            return self._settle_done(e, st, now)
        if e.retries == 0 and not st.zone_clear:
            # Someone entered the zone: the PLC cut the radiation. Once more, first in line.
            self._requeue(e, retries=e.retries + 1)
            self._release(now)
            return []
        return self._settle_fail(f"scanner state {st.state.name} fault {st.fault_code}", now)

    def _recover(self, st: ScannerStatus, now: float) -> list[ScannerAction]:
        """The first status after a restart settles the scan the journal says was running."""
        e = self.current
        assert e is not None
        before = self.scan_id_before
        if st.state == ScannerState.SCANNING:
            # Still scanning: wait for its end (the deadline counts from now).
            self.phase = Phase.SCANNING
            self.scan_id = st.scan_id
            self.started_at = now
            return []
        if st.scan_id != before and st.state == ScannerState.COMPLETE and st.result != ScanResult.NONE:
            return self._settle_done(e, st, now)
        if st.scan_id != before:
            return self._settle_fail(f"scanner state {st.state.name} fault {st.fault_code} after a restart", now)
        self._requeue(e, retries=e.retries)  # never fired: it goes first
        self._release(now)
        return []

    def _fault(self, st: ScannerStatus, now: float) -> list[ScannerAction]:
        if st.state != ScannerState.FAULT:
            self.fault_since = None
            return []
        out: list[ScannerAction] = []
        if self.fault_since is None:
            self.fault_since = now
        if self.fault_policy == "divert" or now - self.fault_since > self.fault_wait_s:
            for e in self.queue.entries():
                self.queue.remove(e.passage_id)
                out.append(self._fail_event(e, "scanner_fault"))
        if self._reset_at is None or now - self._reset_at >= RESET_EVERY_S:
            self._reset_at = now
            out.append(Reset())
        return out

    # ------------------------------------------------------------------ settling
    def _settle_done(self, e: QueueEntry, st: ScannerStatus, now: float) -> list[ScannerAction]:
        self._release(now)
        return [
            self._event(
                "scan.completed",
                e.passage_id,
                e.lane,
                scan_id=st.scan_id,
                result=_RESULTS[st.result],
                image_ref=st.image_ref or None,
            )
        ]

    def _settle_fail(self, reason: str, now: float) -> list[ScannerAction]:
        e = self.current
        assert e is not None
        self._release(now)
        return [self._fail_event(e, reason)]

    def _fail_event(self, e: QueueEntry, reason: str) -> Publish:
        return self._event("scan.failed", e.passage_id, e.lane, reason=reason[:200])

    def _release(self, now: float) -> None:
        if self.current is not None and self.phase is not Phase.RECOVERING:
            self.busy_s += max(0.0, now - self._leased_at)
        self.current = None
        self.phase = Phase.IDLE
        self.scan_id = None

    def _requeue(self, e: QueueEntry, *, retries: int) -> None:
        self.queue.push(e.lane, e.passage_id, e.vehicle_ref, e.priority, e.queued_at, head=True, retries=retries)

    def _event(
        self,
        type_: ScanEventType,
        passage_id: str,
        lane: str,
        *,
        scan_id: int | None = None,
        result: Literal["GREEN", "YELLOW", "RED"] | None = None,
        image_ref: str | None = None,
        queue_position: int | None = None,
        reason: str | None = None,
    ) -> Publish:
        if type_ in ("scan.completed", "scan.failed"):
            self._settle(passage_id)
        event = ScanEvent(
            passage_id=passage_id,
            lane=lane,
            scanner=self.scanner,
            scan_id=scan_id,
            result=result,
            image_ref=image_ref,
            queue_position=queue_position,
            reason=reason,
        )
        return Publish(type_, event)

    def _settle(self, passage_id: str) -> None:
        self._settled[passage_id] = None
        self._settled.move_to_end(passage_id)
        if len(self._settled) > SETTLED_REMEMBERED:
            self._settled.popitem(last=False)

    def settled(self, passage_id: str) -> bool:
        return passage_id in self._settled
