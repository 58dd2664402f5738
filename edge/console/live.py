"""The site's live picture and the alarm rules, fed by verified events. Pure: no I/O, no clock.

:class:`SiteLive` turns the consumer library's verified events (``SiteEvent``, in any order
across units, as a broker delivers them) and its unit views (``UnitView``: a unit's signed
status) into changes of the picture (its state, ``picture.py``) and effects (``effects.py``):

* each lane's state: online, in or out of service, the current passage with its stage and
  when it entered it, device health, passages completed, the last one;
* the shared scanner: queue with the time each vehicle joined it, the lease (the vehicle
  being scanned), utilisation over the last hour, recent faults;
* effects for the caller to persist: :class:`Raise` / :class:`Clear` of an alarm (``key`` names
  the condition, so raising twice is one alarm) and :class:`Completed` passages.

A passage's stage only moves forward (``picture.STAGE_RANK``): an event replayed after a gap, or a
scanner event overtaking the lane's, cannot move the picture backwards. The lanes publish no
"in position" event, so a passage is ``arrived`` until it is identified.

Alarm rules (``kind``: when raised → when cleared):

* ``device``     a device reports degraded/offline → it reports online
* ``offline``    a unit's signed status says offline, or the broker published its (unsigned)
                 last will: "unconfirmed offline" → its signed status says online again
* ``closed``     a lane out of service (its signed status says so, or it closed itself because
                 its gate went offline) → back in service
* ``stuck``      a passage stays in one stage longer than ``stuck_after_s`` → it moves on
* ``identity``   an identification with exceptions or below ``low_confidence`` → corrected or
                 the passage completed (an item for an officer)
* ``exception``  ``lane.exception`` (platform unreachable, scanner fault, ...) — notice
* ``scan_failed``, ``rejected_command``, ``override`` — notices (raised already cleared:
  they wait only for acknowledgement)
* ``radiation``, ``seal``, pre-decisions — ``cargo.py``
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from portlane.edge.client import SiteEvent, UnitView
from portlane.edge.config import Site
from portlane.edge.contract.times import parse_rfc3339
from portlane.edge.contract.vocabulary import LOW_CONFIDENCE

from .cargo import CARGO_EVENTS, EXCEPTION_TITLES, apply_cargo, completed_clears, count_refusals, note_basis
from .effects import Clear, Completed, Effect, Raise
from .picture import LaneLive, LiveEvent, PassageLive, ScannerLive, vehicle_kind
from .store import PassageRow, time_ms

__all__ = ["DEFAULT_STUCK_AFTER_S", "SiteLive", "live_event"]

#: Longest a passage may stay in one stage before it is "stuck", in real seconds. A decision
#: normally takes seconds, a scan 10–40 s plus the queue, a released truck clears the gate in
#: well under a minute; anything beyond these needs a person.
DEFAULT_STUCK_AFTER_S: dict[str, float] = {
    "arrived": 60.0,
    "awaiting_decision": 180.0,
    "inspection_queued": 900.0,
    "scanning": 180.0,
    "awaiting_verdicts": 300.0,
    "released": 120.0,
    "diverted": 120.0,
}

#: Completed passage ids remembered to ignore late events of finished passages.
_COMPLETED_MEMORY = 2000


def _ms(rfc3339: str) -> int:
    return int(parse_rfc3339(rfc3339).timestamp() * 1000)


def _notice(lane: str, t: str, d: Mapping[str, Any]) -> tuple[str, str, str, str, str]:
    """(key prefix, kind, severity, title, detail) of a one-off notice: a rejected command, an override."""
    if t == "command.rejected":
        title = f"{lane}: command {d.get('command')} rejected ({d.get('reason')})"
        return (
            "rejected:",
            "rejected_command",
            "warning",
            title,
            f"key {d.get('key_id') or '?'}, nonce {d.get('nonce') or '?'}",
        )
    title = f"{lane}: manual override {d.get('action')} by {d.get('operator')}"
    return "override:", "override", "info", title, str(d.get("reason", ""))


def live_event(ev: SiteEvent) -> LiveEvent:
    return LiveEvent(ev.id, ev.unit, ev.type, time_ms(ev.time), ev.audience, ev.data)


class SiteLive:
    def __init__(
        self,
        site: Site,
        *,
        stuck_after_s: Mapping[str, float] | None = None,
        low_confidence: float = LOW_CONFIDENCE,
    ) -> None:
        self.site_id = site.site.id
        self.site_name = site.site.name
        self.tz = ZoneInfo(site.site.timezone)
        self.stuck_after_ms = {
            k: int(v * 1000) for k, v in {**DEFAULT_STUCK_AFTER_S, **dict(stuck_after_s or {})}.items()
        }
        self.low_confidence = low_confidence
        self.lanes: dict[str, LaneLive] = {
            lc.id: LaneLive(lc.id, lc.kind, tuple(a.value for a in lc.agencies), lc.scanner) for lc in site.lanes
        }
        self.scanners: dict[str, ScannerLive] = {s.id: ScannerLive(s.id, s.lanes) for s in site.scanners}
        self.agencies = tuple(a.value for a in site.agencies)
        self._completed_ids: deque[str] = deque(maxlen=_COMPLETED_MEMORY)
        self._completed_set: set[str] = set()
        self._refused_ids: deque[str] = deque(maxlen=_COMPLETED_MEMORY)  # passages whose refusals were counted
        self._stuck: dict[str, str] = {}  # lane -> alarm key currently raised

    # ------------------------------------------------------------------ helpers
    def agencies_for(self, unit: str | None, audience: Sequence[str] = ()) -> tuple[str, ...]:
        lane = self.lanes.get(unit or "")
        if lane is not None:
            base = lane.agencies
        elif unit in self.scanners:
            base = self.agencies
        else:
            base = self.agencies
        return tuple(a for a in base if not audience or a in audience)

    def _local(self, ms: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(ms / 1000, tz=self.tz)

    def _passage(self, lane: LaneLive, pid: str | None) -> PassageLive | None:
        p = lane.passage
        return p if p is not None and pid is not None and p.id == pid else None

    def _forget_completed(self, pid: str) -> None:
        if len(self._completed_ids) == self._completed_ids.maxlen:
            self._completed_set.discard(self._completed_ids[0])
        self._completed_ids.append(pid)
        self._completed_set.add(pid)

    # ------------------------------------------------------------------ events
    def apply(self, event: SiteEvent | LiveEvent) -> list[Effect]:
        """One verified event (only the library's verified events get here)."""
        ev = live_event(event) if isinstance(event, SiteEvent) else event
        if ev.unit in self.scanners:
            return self._scanner_event(self.scanners[ev.unit], ev)
        lane = self.lanes.get(ev.unit)
        if lane is None:
            return []
        d = ev.data
        t = ev.type
        pid = d.get("passage_id") if isinstance(d.get("passage_id"), str) else None
        out: list[Effect] = []
        agencies = self.agencies_for(lane.id, ev.audience)
        if t == "passage.arrived" and pid and pid not in self._completed_set:
            if lane.passage is None or lane.passage.arrived_ms <= ev.time_ms:
                if lane.passage is not None and lane.passage.id != pid:
                    out += self._clear_stuck(lane, ev.time_ms)
                lane.passage = PassageLive(pid, ev.time_ms, "arrived", ev.time_ms)
        elif t == "vehicle.identified" and pid:
            p = self._passage(lane, pid)
            plates = [str(x.get("text", "")) for x in d.get("plates", []) if isinstance(x, dict)]
            containers = [str(x.get("number", "")) for x in d.get("containers", []) if isinstance(x, dict)]
            conf = float(d.get("confidence", 0.0))
            exceptions = [str(x) for x in d.get("exceptions", [])]
            if p is not None:
                p.plates, p.containers, p.confidence, p.exceptions = plates, containers, conf, exceptions
                if p.advance("awaiting_decision", ev.time_ms):
                    out += self._clear_stuck(lane, ev.time_ms)
            count_refusals(lane, p, pid, d.get("predecision_refusals") or (), self._refused_ids)
            if (exceptions or conf < self.low_confidence) and not d.get("corrected_by"):
                what = ", ".join(exceptions) or f"confidence {conf:.2f}"
                out.append(
                    Raise(
                        f"identity:{pid}",
                        "identity",
                        "warning",
                        lane.id,
                        pid,
                        agencies,
                        f"{lane.id}: identity needs checking",
                        f"{' / '.join(plates + containers) or 'nothing read'} — {what}",
                        ev.id,
                        ev.time_ms,
                    )
                )
        elif t == "identity.corrected" and pid:
            out.append(Clear(f"identity:{pid}", ev.time_ms))
        elif t == "passage.decided" and pid:
            p = self._passage(lane, pid)
            note_basis(p, d)
            if p is not None:
                p.decisions[str(d.get("agency"))] = str(d.get("decision"))
                if d.get("decision") == "inspect" and p.advance("inspection_queued", ev.time_ms):
                    out += self._clear_stuck(lane, ev.time_ms)
        elif t == "inspection.requested" and pid:
            p = self._passage(lane, pid)
            if p is not None and p.advance("inspection_queued", ev.time_ms):
                out += self._clear_stuck(lane, ev.time_ms)
        elif t in ("passage.released", "passage.diverted") and pid:
            p = self._passage(lane, pid)
            if p is not None and p.advance(t.removeprefix("passage."), ev.time_ms):
                out += self._clear_stuck(lane, ev.time_ms)
        elif t == "passage.completed" and pid:
            out += self._completed(lane, ev, pid)
        elif t in CARGO_EVENTS:
            out += apply_cargo(lane, ev, self._passage(lane, pid), pid, agencies)
        elif t == "device.state":
            out += self._device(lane, ev)
        elif t == "lane.exception":
            out += self._exception(lane, ev, pid, agencies)
        elif t in ("command.rejected", "override.applied"):
            key, kind, severity, title, detail = _notice(lane.id, t, d)
            out.append(
                Raise(key + ev.id, kind, severity, lane.id, pid, agencies, title, detail, ev.id, ev.time_ms, True)
            )
        return out

    def _completed(self, lane: LaneLive, ev: LiveEvent, pid: str) -> list[Effect]:
        d = ev.data
        out: list[Effect] = [Clear(f"identity:{pid}", ev.time_ms), *completed_clears(lane, pid, ev.time_ms)]
        stages = d.get("stages") or {}
        stage_ms = {str(k): int(v) for k, v in (d.get("stage_ms") or {}).items()}
        try:
            arrived_ms = _ms(stages["arrived"]) if "arrived" in stages else ev.time_ms - stage_ms.get("exited", 0)
        except ValueError:
            arrived_ms = ev.time_ms
        local = self._local(arrived_ms)
        containers = tuple(str(c) for c in d.get("containers", []))
        row = PassageRow(
            passage_id=pid,
            lane=lane.id,
            lane_kind=lane.kind,
            vehicle_kind=vehicle_kind(lane.kind, containers),
            outcome=str(d.get("outcome", "")),
            inspected=bool(d.get("inspected")),
            scan_result=d.get("scan_result"),
            arrived_ms=arrived_ms,
            completed_ms=ev.time_ms,
            local_day=local.date().isoformat(),
            local_hour=local.hour,
            plates=tuple(str(x) for x in d.get("plates", [])),
            containers=containers,
            stage_ms=stage_ms,
            event_id=ev.id,
            release_basis=d.get("release_basis") if isinstance(d.get("release_basis"), str) else None,
        )
        out.append(Completed(row))
        if pid in self._completed_set:
            return out
        self._forget_completed(pid)
        lane.completed += 1
        if row.release_basis is not None:
            lane.released_by[row.release_basis] = lane.released_by.get(row.release_basis, 0) + 1
        if lane.last is None or lane.last["completed_ms"] <= ev.time_ms:
            lane.last = {
                "passage_id": pid,
                "outcome": row.outcome,
                "completed_ms": ev.time_ms,
                "total_ms": stage_ms.get("exited", max(stage_ms.values(), default=0)),
                "plates": list(row.plates),
                "containers": list(row.containers),
            }
        if lane.passage is not None and lane.passage.id == pid:
            lane.passage = None
            out += self._clear_stuck(lane, ev.time_ms)
        for s in self.scanners.values():
            s.queue.pop(pid, None)
        return out

    def _device(self, lane: LaneLive, ev: LiveEvent) -> list[Effect]:
        d = ev.data
        name = str(d.get("device", "?"))
        health = str(d.get("health", "offline"))
        reason = d.get("reason")
        prev = lane.devices.get(name)
        if prev is not None and prev["since_ms"] > ev.time_ms:
            return []  # an older report, replayed late
        lane.devices[name] = {"health": health, "reason": reason, "since_ms": ev.time_ms}
        key = f"device:{lane.id}:{name}"
        out: list[Effect] = []
        if health == "online":
            out.append(Clear(key, ev.time_ms))
            if name == "gate" and lane.auto_closed:
                lane.auto_closed = False
                out += self._service(lane, True, None, ev.time_ms)
        else:
            out.append(
                Raise(
                    key,
                    "device",
                    "critical" if health == "offline" else "warning",
                    lane.id,
                    None,
                    lane.agencies,
                    f"{lane.id}: {name} {health}",
                    str(reason or ""),
                    ev.id,
                    ev.time_ms,
                )
            )
        return out

    def _exception(self, lane: LaneLive, ev: LiveEvent, pid: str | None, agencies: tuple[str, ...]) -> list[Effect]:
        d = ev.data
        kind = str(d.get("kind", ""))
        detail = str(d.get("detail", ""))
        out: list[Effect] = []
        if kind in ("lane_closed", "lane_opened"):
            return self._service(lane, kind == "lane_opened", detail or None, ev.time_ms)
        if kind == "device_fault" and detail.startswith("gate offline"):
            # The lane took itself out of service: its barrier does not answer.
            lane.auto_closed = True
            out += self._service(lane, False, detail, ev.time_ms)
        title = {
            "platform_unreachable": "no decision from the platform: lane holding",
            "scanner_fault": "scanner fault: vehicle diverted",
            "device_fault": "device fault",
            **EXCEPTION_TITLES,
        }.get(kind, kind.replace("_", " ") or "exception")
        out.append(
            Raise(
                f"exception:{ev.id}",
                "stuck"
                if kind == "platform_unreachable"
                else "predecision"
                if kind in EXCEPTION_TITLES
                else "exception",
                "critical" if kind in EXCEPTION_TITLES else "warning",
                lane.id,
                pid,
                agencies,
                f"{lane.id}: {title}",
                detail,
                ev.id,
                ev.time_ms,
                notice=True,
            )
        )
        return out

    def _service(self, lane: LaneLive, in_service: bool, reason: str | None, ms: int) -> list[Effect]:
        lane.in_service = in_service
        lane.closed_reason = None if in_service else (reason or "closed")
        key = f"closed:{lane.id}"
        if in_service:
            return [Clear(key, ms)]
        return [
            Raise(
                key,
                "closed",
                "critical",
                lane.id,
                None,
                lane.agencies,
                f"{lane.id}: lane out of service",
                lane.closed_reason or "",
                None,
                ms,
            )
        ]

    def _scanner_event(self, s: ScannerLive, ev: LiveEvent) -> list[Effect]:
        d = ev.data
        pid = str(d.get("passage_id", ""))
        lane = self.lanes.get(str(d.get("lane", "")))
        s.first_ms = ev.time_ms if s.first_ms is None else min(s.first_ms, ev.time_ms)
        out: list[Effect] = []
        p = self._passage(lane, pid) if lane else None
        stage = None
        if ev.type == "scan.queued":
            if pid not in self._completed_set and (s.lease is None or s.lease["passage_id"] != pid):
                s.queue[pid] = {"lane": d.get("lane"), "queued_ms": ev.time_ms, "position": d.get("queue_position")}
            stage = "inspection_queued"
        elif ev.type == "scan.started":
            s.queue.pop(pid, None)
            s.lease = {"passage_id": pid, "lane": d.get("lane"), "since_ms": ev.time_ms, "scan_id": d.get("scan_id")}
            s.scans += 1
            stage = "scanning"
        elif ev.type in ("scan.completed", "scan.failed"):
            s.queue.pop(pid, None)
            if s.lease is not None and s.lease["passage_id"] == pid:
                s.busy.append((s.lease["since_ms"], ev.time_ms))
                s.lease = None
            if ev.type == "scan.completed":
                s.last_result = {"passage_id": pid, "lane": d.get("lane"), "result": d.get("result"), "ms": ev.time_ms}
                if p is not None:
                    p.scan_result = d.get("result")
                stage = "awaiting_verdicts"
            else:
                s.faults.appendleft(
                    {"passage_id": pid, "lane": d.get("lane"), "reason": d.get("reason"), "ms": ev.time_ms}
                )
                out.append(
                    Raise(
                        f"scan_failed:{ev.id}",
                        "scan_failed",
                        "warning",
                        s.id,
                        pid or None,
                        self.agencies_for(lane.id if lane else None, ev.audience),
                        f"{s.id}: scan failed for {d.get('lane')}",
                        str(d.get("reason", "")),
                        ev.id,
                        ev.time_ms,
                        notice=True,
                    )
                )
        if p is not None and lane is not None and stage and p.advance(stage, ev.time_ms):
            out += self._clear_stuck(lane, ev.time_ms)
        return out

    # ------------------------------------------------------------------ status and time
    def on_unit(self, view: UnitView, ms: int) -> list[Effect]:
        """A unit's view changed (the library's ``UnitChanged``): online, closed or offline only
        on its signed ``unit.status``; the broker's unsigned last will only "unconfirmed offline"."""
        out: list[Effect] = []
        target: LaneLive | ScannerLive | None = self.lanes.get(view.unit) or self.scanners.get(view.unit)
        if target is None or view.state == "unknown":
            return out
        target.state = view.state
        target.online = view.state in ("online", "closed")
        key = f"offline:{view.unit}"
        status = view.status
        if target.online:
            out.append(Clear(key, ms))
        else:
            unconfirmed = view.state == "unconfirmed_offline"
            out.append(
                Raise(
                    key,
                    "offline",
                    "warning" if unconfirmed else "critical",
                    view.unit,
                    None,
                    self.agencies_for(view.unit),
                    f"{view.unit}: {'offline? (unconfirmed)' if unconfirmed else 'offline'}",
                    "the broker published its last will (unsigned: the unit's connection dropped, or anyone "
                    "wrote it); its next signed status says"
                    if unconfirmed
                    else f"it said so itself (signed) at {status.since if status else '?'}",
                    None,
                    ms,
                )
            )
        lane = target if isinstance(target, LaneLive) and target.online and not target.auto_closed else None
        if lane is not None and status is not None and status.in_service != lane.in_service:
            out += self._service(lane, status.in_service, status.reason or "out of service", ms)
        return out

    def tick(self, now_ms: int) -> list[Effect]:
        """Stuck passages: raise once per passage and stage, cleared when it moves on."""
        out: list[Effect] = []
        for lane in self.lanes.values():
            p = lane.passage
            if p is None:
                continue
            limit = self.stuck_after_ms.get(p.stage)
            if limit is None or now_ms - p.stage_since_ms <= limit:
                continue
            key = f"stuck:{lane.id}:{p.id}:{p.stage}"
            if self._stuck.get(lane.id) == key:
                continue
            out += self._clear_stuck(lane, now_ms)
            self._stuck[lane.id] = key
            out.append(
                Raise(
                    key,
                    "stuck",
                    "critical",
                    lane.id,
                    p.id,
                    lane.agencies,
                    f"{lane.id}: passage stuck in {p.stage.replace('_', ' ')}",
                    f"{' / '.join(p.plates + p.containers) or p.id}: more than {limit // 1000} s in this stage",
                    None,
                    now_ms,
                )
            )
        return out

    def _clear_stuck(self, lane: LaneLive, ms: int) -> list[Effect]:
        key = self._stuck.pop(lane.id, None)
        return [Clear(key, ms)] if key else []

    # ------------------------------------------------------------------ views
    def snapshot(self, now_ms: int, alarm_counts: Mapping[str, int] | None = None) -> dict[str, Any]:
        counts = alarm_counts or {}
        return {
            "site": {"id": self.site_id, "name": self.site_name, "timezone": str(self.tz)},
            "now_ms": now_ms,
            "completed": sum(lane.completed for lane in self.lanes.values()),
            "lanes": [lane.as_dict(counts.get(lane.id, 0)) for lane in self.lanes.values()],
            "scanners": [s.as_dict(now_ms, counts.get(s.id, 0)) for s in self.scanners.values()],
        }
