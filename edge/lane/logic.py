"""The passage state machine and the lane's safety logic — pure, synchronous, no I/O.

    IDLE → ARRIVED → IDENTIFYING → AWAITING_DECISION ─┬─ RELEASED ─┐
                                                      ├─ DIVERTED ─┤→ EXITING → COMPLETED → IDLE
                                                      └─ INSPECTION_QUEUED → SCANNING → AWAITING_VERDICTS ─┘

``LaneLogic`` takes inputs (sensor snapshots, identification results, verified commands,
scanner events, clock ticks, technician actions) and returns typed actions
(``portlane.edge.lane.actions``: open or close the gate, set the light, show the board, start
an identification, publish an event model, write an audit entry) for the executor to carry
out. Its state changes only through its own methods. Because it does no I/O it can be
driven by hypothesis through random interleavings, and the safety invariants are checked on
its outputs:

* the gate is told to open only for the current passage after a release (or divert) that
  every configured agency gave, or after an audited override;
* the gate is told to close only when neither the photocell nor the safety loop is occupied
  (and the daemon checks the controller's own inputs once more before sending the frame);
* a passage has at most one scan and exactly one terminal outcome.

Decisions. Each configured agency answers ``release``, ``inspect`` (X-ray), ``hold`` or
``divert``. ``divert`` by any agency diverts the vehicle to the manual inspection bay: the
gate opens towards the bay (a divert is a signed, per-passage decision, not a guess).
``inspect`` by any agency queues the one scan; its result is shared with every agency and
all of them answer again ("after_scan" phase). The gate opens on release only when every
agency of the lane has released in the current phase. ``hold`` keeps the vehicle waiting.
Without a decision the lane waits — it never guesses (policy ``hold``).

Pre-decisions (``autorelease.py``, ``predecisions.py``): the only decisions the lane takes
itself are the ones every agency signed in advance for the vehicle it has identified, matched in
full at identification; a control order takes such a release back until the vehicle moves.
The way out (``way_out.py``) and a technician's actions (``technician.py``) are mixed in too.

Cargo lanes with a radiation portal or a seal reader (``cargo.py``): every automatic release —
online decisions and pre-decisions alike — asks ``_cargo_hold`` first: an occupancy without
verdict, an unadjudicated alarm, a faulted portal or a seal exception holds it, and an
adjudicated real alarm diverts the vehicle.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import replace
from typing import Literal

from portlane.edge.contract.events import (
    STAGES,
    IdentityCorrected,
    InspectionRequested,
    LaneException,
    PassageArrived,
    PassageCompleted,
    PassageDecided,
    PassageOutcome,
    ReleaseBasis,
)
from portlane.edge.contract.times import rfc3339
from portlane.edge.contract.vocabulary import VERDICTS

from .actions import Action, Audit, BoardColour, GateCause, Identify, Publish, SetLight, ShowBoard
from .autorelease import PredecisionRules
from .cargo import CargoRules
from .gate import GateTracker
from .passage import (
    DECIDING,
    GATE_MAY_BE_OPEN,
    CargoLane,
    Identity,
    LaneTimeouts,
    Passage,
    Sensors,
    Stage,
    counted_since,
)
from .predecisions import PredecisionBook
from .technician import CLOSED, WELCOME, Closure, TechnicianActions
from .way_out import WayOut

__all__ = ["LaneLogic"]

WAIT: tuple[str, BoardColour] = ("请等待 PLEASE WAIT", "amber")
WAIT_RED: tuple[str, BoardColour] = ("请等待 PLEASE WAIT", "red")


class LaneLogic(PredecisionRules, CargoRules, WayOut, TechnicianActions):
    def __init__(
        self,
        lane: str,
        *,
        agencies: tuple[str, ...],
        has_scanner: bool,
        kind: str = "cargo",
        timeouts: LaneTimeouts | None = None,
        id_prefix: str = "",
        predecisions: PredecisionBook | None = None,
        rpm: str | None = None,
        seal_reader: str | None = None,
    ) -> None:
        self.lane = lane
        self.agencies = tuple(agencies)
        self.has_scanner = has_scanner
        self.kind: str = kind
        self.timeouts = timeouts or LaneTimeouts()
        self.passage: Passage | None = None
        self.history: deque[Passage] = deque(maxlen=50)  # completed passages, newest last
        # Why the lane takes no vehicles, by cause: "operator" (a technician or the platform:
        # only an operator reopens it, and it survives restarts) or a cause the lane found itself
        # ("gate" offline, "outbox" refusing, "journal" unwritable: it reopens when that is gone).
        self.closures: dict[str, Closure] = {}
        self.sensors = Sensors()
        self.gate = GateTracker(self.timeouts)
        self.started = False  # start-up reconciliation done: only then is a vehicle taken
        self.holding: str | None = None  # why no vehicle is taken although in service
        self._counter = itertools.count(1)
        self._id_prefix = id_prefix or lane
        # the arm left open without a passage (override, abandoned): evidence since it opened
        self._idle_open: Passage | None = None
        self._scan_news_at = 0.0  # when the scanner last said anything of the passage's scan
        # signed pre-decisions and control orders (autorelease.py); the daemon's store persists it
        self.predecisions = predecisions if predecisions is not None else PredecisionBook()
        self.cargo = CargoLane(portal=rpm, reader=seal_reader)  # radiation portal and seals (cargo.py)

    # ------------------------------------------------------------------ guards
    def authorises_open(self, passage_id: str | None, cause: GateCause) -> bool:
        """Second guard, checked by the executor right before an open frame is sent."""
        if cause == "override":
            return True  # audited before the action was produced
        p = self.passage
        return (
            p is not None
            and p.id == passage_id
            and p.gate_authority is not None
            and self.predecisions_hold(p)
            and self.cargo_allows_open(p)
        )

    @staticmethod
    def may_close(sensors: Sensors) -> bool:
        return not sensors.under_arm

    # ------------------------------------------------------------------ helpers
    @property
    def stage(self) -> Stage:
        return self.passage.stage if self.passage else Stage.IDLE

    def _new_id(self, now: float) -> str:
        return f"{self._id_prefix}-{int(now * 1000):x}-{next(self._counter)}"

    def _exception(self, p: Passage | None, kind: str, detail: str) -> Publish:
        return Publish("lane.exception", LaneException(passage_id=p.id if p else None, kind=kind, detail=detail))

    def _alert_once(self, p: Passage, kind: str, detail: str, *, key: str | None = None) -> list[Action]:
        """A named exception, raised once per passage (per ``key``, default the kind)."""
        if (key or kind) in p.alerted:
            return []
        p.alerted.add(key or kind)
        return [self._exception(p, kind, detail)]

    def _open(self, p: Passage | None, cause: GateCause, now: float) -> list[Action]:
        """Command the arm open and note the latched counters, so that the way out is judged on
        what happened after this moment."""
        track = p if p is not None else self._idle_open
        if track is not None:
            s = self.sensors
            track.base_arm_passes = s.arm_passes
            track.base_under_clears = s.under_clears
            track.base_exit_clears = s.exit_clears
            track.exit_busy_at_open = s.exit_loop
            track.under_seen = track.exit_seen = track.passed_arm = False
        return self.gate.open(cause, p.id if p else None, now)

    def _close(self, cause: GateCause, now: float) -> list[Action]:
        if not self.may_close(self.sensors):
            return []  # never close onto something; retried on the next sensor change
        if self.gate.commanded == "close":
            return []
        self._idle_open = None
        p = self.passage
        return self.gate.close(cause, p.id if p else None, now)

    # ------------------------------------------------------------------ start-up
    def start(self, s: Sensors, unfinished: list[Passage], now: float) -> list[Action]:
        """Start-up reconciliation, on the first complete sample of the lane's inputs.

        Passages an earlier run left unfinished are closed out (``recovered`` if the gate had
        been authorised for them, else ``abandoned``) before the next vehicle is taken. The arm
        is brought down if nothing is under it; otherwise the lane raises
        ``gate_open_at_start`` and takes no vehicle until it could close it.
        """
        self.sensors = s
        self.started = True
        out: list[Action] = []
        for p in unfinished:
            self._recover_predecisions(p, now)
            self._cargo_restarted(p, now)
            p.outcome = "recovered" if p.gate_authority else "abandoned"
            p.reason = f"lane restarted during {p.stage.value}"
            out += self._completion(p, now)
        out.append(SetLight("red"))
        if s.gate_closed and not s.gate_open:
            self.gate.assume("close", cause="restart", now=now)
            out.append(WELCOME if self.in_service else CLOSED)
        elif not s.under_arm:
            out += self.gate.close("restart", None, now)
            out.append(WELCOME if self.in_service else CLOSED)
        else:
            self.gate.assume("open", cause="restart", now=now)
            self.holding = "gate_open_at_start"
            out.append(self._exception(None, "gate_open_at_start", "arm found open with something under it; holding"))
            out.append(ShowBoard.of(("请停车 STOP", "red")))
        return out

    # ------------------------------------------------------------------ sensors
    def on_sensors(self, s: Sensors, now: float) -> list[Action]:
        self.sensors = s
        if not self.started:
            return []
        idle = self._idle_open  # (the sample may close the arm, and forget it)
        return self._on_sample(s, now) + self._cargo_passes(s, idle)

    def _on_sample(self, s: Sensors, now: float) -> list[Action]:
        out, moved = self.gate.on_sensors(s)
        p = self.passage
        if moved == "opened" and p is not None and p.stage in GATE_MAY_BE_OPEN:
            p.stamps.setdefault("gate_opened", now)
            if p.stage == Stage.RELEASED:
                out.append(ShowBoard.of(("放行 PROCEED", "green")))
        if moved == "closed" and self.holding == "gate_open_at_start":
            self.holding = None
            out.append(WELCOME if self.in_service else CLOSED)
        if p is None:
            out += self._idle(s, now)
            return out
        if p.stage == Stage.ARRIVED and s.in_position:
            p.stage = Stage.IDENTIFYING
            p.stamps["identifying"] = now
            out.append(Identify(p.id))
        out += self._withdrawn_on_sensors(p, s, now)
        if p.stage in GATE_MAY_BE_OPEN:
            had_passed = p.passed_arm
            self._track_exit(p, s, now)
            if p.passed_arm and not had_passed:
                # One vehicle per release: red as soon as it is past the arm, so the next driver
                # stops even while the arm is still coming down.
                out.append(SetLight("red"))
            passes = counted_since(s.arm_passes, p.base_arm_passes)
            if passes is not None and passes >= 2:
                detail = f"{passes} vehicles passed the arm on one release"
                out += self._alert_once(p, "tailgating", detail)
            if p.stage in (Stage.RELEASED, Stage.DIVERTED) and (p.passed_arm or p.under_seen or p.exit_seen):
                p.stage = Stage.EXITING
        if p.stage == Stage.EXITING:
            if p.passed_arm and not s.under_arm and self.gate.commanded == "open":
                # Close as soon as the vehicle has cleared the arm, as barrier controllers do:
                # the next vehicle must find it closed.
                out += self._close("exit", now)
            if p.passed_arm and self._exited(p, s):
                # The vehicle is past the exit loop: its passage is over even if something else
                # is under the arm now; the arm comes down once that has cleared (_idle).
                p.stamps["exited"] = now
                out += self._close("exit", now)
                out += self._complete(now)
        return out

    def _idle(self, s: Sensors, now: float) -> list[Action]:
        out: list[Action] = []
        t = self._idle_open
        if self.gate.commanded == "open" and t is not None:
            # Left open without a passage (override, abandoned): close once something has
            # passed under the arm and cleared it, or after exit_s with nothing under it.
            self._track_exit(t, s, now)
            opened = t.stamps.get("opened", now)
            if not s.under_arm and (t.passed_arm or now - opened > self.timeouts.exit_s):
                out += self._close("exit", now)
            return out
        if self.gate.commanded == "open":
            # Open with no record of why (found so at start, a refused close): down once clear.
            return [] if s.under_arm else self._close("restart" if self.holding else "exit", now)
        # Level, not edge: the next vehicle may already be on the entry loop in the same
        # sample in which the previous one cleared the exit loop. Only with the arm down.
        if s.entry_loop and self.in_service and self.holding is None and not s.under_arm and self.gate.is_closed:
            p = self.passage = Passage(id=self._new_id(now), stage=Stage.ARRIVED, stamps={"arrived": now})
            out.append(Publish("passage.arrived", PassageArrived(passage_id=p.id, lane_kind=self._lane_kind)))
            out.append(SetLight("red"))
            out.append(ShowBoard.of(("请停车 STOP", "red"), ("识别中 IDENTIFYING", "amber")))
            out += self._cargo_arrived(p, now)
        return out

    @property
    def _lane_kind(self) -> Literal["cargo", "passenger"]:
        return "passenger" if self.kind == "passenger" else "cargo"

    # ------------------------------------------------------------------ identification
    def on_identified(self, passage_id: str, identity: Identity, now: float) -> list[Action]:
        p = self.passage
        if p is None or p.id != passage_id or p.stage != Stage.IDENTIFYING:
            return []
        identity, seals = self._cargo_identified(p, identity)
        p.identity = identity
        p.stage = Stage.AWAITING_DECISION
        p.stamps["identified"] = now
        p.phase = "initial"
        p.decisions = {}
        return [*seals, *self._decide_on_predecisions(p, identity, now), *self._cargo_board(p)]

    def correct_identity(
        self, passage_id: str, identity: Identity, *, operator: str, reason: str, now: float
    ) -> tuple[bool, str | None, list[Action]]:
        p = self.passage
        if p is None or p.id != passage_id:
            return False, "stale_passage", []
        if p.stage not in (Stage.IDENTIFYING, *DECIDING):
            return False, "wrong_stage", []
        if not operator.strip() or len(reason.strip()) < 8:
            return False, "malformed: a correction needs an operator and a reason of at least 8 characters", []
        old = p.identity
        identity = self._with_seal_exceptions(p, identity)
        p.identity = identity
        p.stage = Stage.AWAITING_DECISION if p.phase == "initial" else Stage.AWAITING_VERDICTS
        p.stamps.setdefault("identified", now)
        corrected = IdentityCorrected(
            passage_id=p.id,
            operator=operator,
            reason=reason,
            plates=tuple(r.text for r in identity.plates),
            containers=tuple(c.number for c in identity.containers),
        )
        before = old.vehicle_ref if old else None
        out: list[Action] = [
            Audit("correction", operator, reason, p.id, (("before", before), ("after", identity.vehicle_ref))),
            Publish("identity.corrected", corrected),
            Publish("vehicle.identified", identity.event(p.id)),
        ]
        return True, None, out

    # ------------------------------------------------------------------ decisions
    def on_decision(
        self, passage_id: str | None, agency: str, decision: str, *, nonce: str, now: float
    ) -> tuple[bool, str | None, list[Action]]:
        """Apply one agency's (already authenticated) decision. Returns (accepted, reason, actions)."""
        p = self.passage
        if p is None or p.id != passage_id:
            return False, "stale_passage", []
        if agency not in self.agencies:
            return False, "unknown_agency", []
        if p.stage not in DECIDING:
            return False, "wrong_stage", []
        verdict = next((v for v in VERDICTS if v == decision), None)
        if verdict is None:
            return False, "unknown_decision", []
        if decision == "inspect" and (p.inspected or p.phase == "after_scan"):
            return False, "already_inspected", []
        if decision == "inspect" and not self.has_scanner:
            return False, "no_scanner", []
        p.decisions[agency] = decision
        decided = PassageDecided(passage_id=p.id, agency=agency, decision=verdict, phase=p.phase, command_nonce=nonce)
        out: list[Action] = [Publish("passage.decided", decided)]
        if decision == "divert":
            p.stamps.setdefault("decided", now)
            p.basis = "online"
            out += self._divert(now)
        elif decision == "inspect":
            p.stamps.setdefault("decided", now)
            out += self._queue_inspection(now)
        elif all(p.decisions.get(a) == "release" for a in self.agencies):
            p.stamps.setdefault("decided", now)
            out += self._release(now)
        return True, None, out

    def _inspection_request(self, p: Passage, *, recheck: bool = False) -> InspectionRequested:
        ref = p.identity.vehicle_ref if p.identity else p.id
        return InspectionRequested(
            passage_id=p.id, lane=self.lane, method="xray", priority=0, vehicle_ref=ref, recheck=recheck
        )

    def _queue_inspection(self, now: float) -> list[Action]:
        p = self.passage
        assert p is not None
        p.stage = Stage.INSPECTION_QUEUED
        p.scans += 1
        p.stamps["scan_queued"] = now
        self._scan_news_at = now
        return [
            Publish("inspection.requested", self._inspection_request(p)),
            ShowBoard.of(("前往查验 X-RAY", "amber"), WAIT),
        ]

    def _release(self, now: float, basis: ReleaseBasis = "online") -> list[Action]:
        """Every release the lane decides itself goes through here (online decisions and
        pre-decisions), after the portal and the seals: ``_cargo_hold`` holds it (or diverts)
        while a blocker stands."""
        p = self.passage
        assert p is not None
        held = self._cargo_hold(p, now, basis)
        if held is not None:
            return held
        p.stage = Stage.RELEASED
        p.outcome = "released"
        p.gate_authority = "release"
        p.basis = basis
        p.stamps["released"] = now
        return [
            Publish("passage.released", PassageOutcome(passage_id=p.id, outcome="released")),
            *self._open(p, "release", now),
        ]

    def _divert(self, now: float) -> list[Action]:
        p = self.passage
        assert p is not None
        p.stage = Stage.DIVERTED
        p.outcome = "diverted"
        p.gate_authority = "divert"
        p.stamps.setdefault("released", now)
        return [
            Publish("passage.diverted", PassageOutcome(passage_id=p.id, outcome="diverted")),
            ShowBoard.of(("人工查验 INSPECTION BAY", "amber")),
            *self._open(p, "divert", now),
        ]

    # ------------------------------------------------------------------ scanner
    def on_scan(
        self,
        passage_id: str,
        kind: str,
        now: float,
        *,
        scan_id: int | None = None,
        result: Literal["GREEN", "YELLOW", "RED"] | None = None,
        reason: str | None = None,
    ) -> list[Action]:
        p = self.passage
        if p is None or p.id != passage_id:
            return []
        if p.stage in (Stage.INSPECTION_QUEUED, Stage.SCANNING):
            self._scan_news_at = now
        if kind == "started" and p.stage == Stage.INSPECTION_QUEUED:
            p.stage = Stage.SCANNING
            p.stamps["scan_started"] = now
            p.scan_id = scan_id
            return []
        if kind == "completed" and p.stage in (Stage.INSPECTION_QUEUED, Stage.SCANNING):
            p.stage = Stage.AWAITING_VERDICTS
            p.stamps["scan_ended"] = now
            p.scan_id = scan_id
            p.scan_result = result
            p.phase = "after_scan"
            p.decisions = {}
            return [ShowBoard.of(("查验完成 SCANNED", "green"), WAIT)]
        if kind == "failed" and p.stage in (Stage.INSPECTION_QUEUED, Stage.SCANNING):
            p.stamps["scan_ended"] = now
            return [self._exception(p, "scanner_fault", reason or ""), *self._divert(now)]
        return []

    # ------------------------------------------------------------------ time
    def on_tick(self, now: float) -> list[Action]:
        self.predecisions.tick(now)
        # The passage's deadlines first: a close decided now supersedes re-sending an open.
        out = self._deadlines(now) if self.started else []
        return out + self.gate.on_tick(now)

    def _deadlines(self, now: float) -> list[Action]:
        out: list[Action] = []
        p = self.passage
        if p is None:
            return self._idle(self.sensors, now) if self.gate.commanded == "open" else []
        t, s = self.timeouts, self.sensors
        since = now - p.stamps.get("arrived", now)
        if p.stage == Stage.ARRIVED and since > t.arrive_s:
            if not s.entry_loop and not s.in_position:
                p.outcome, p.reason = "abandoned", "left before reaching the stop position"
                return out + self._complete(now)
            out += self._alert_once(p, "vehicle_not_in_position", f"on the entry loop for {since:.0f} s")
        elif p.stage == Stage.IDENTIFYING and now - p.stamps.get("identifying", now) > 3 * t.identify_s:
            # The identification task never reported: decide on nothing rather than wait forever.
            ident = Identity(exceptions=("identification_timeout", "unreadable_plate"))
            out += [self._exception(p, "identification_timeout", f"no identification after {3 * t.identify_s:.0f} s")]
            out += self.on_identified(p.id, ident, now)
        elif p.stage in DECIDING and not p.cargo.release_waiting:  # a held release named its blockers
            start = p.stamps.get("scan_ended", p.stamps.get("identified", now))
            if now - start > t.decision_s:
                detail = f"no decision for {t.decision_s:.0f} s; holding"
                alert = self._alert_once(p, "platform_unreachable", detail, key=f"platform_unreachable:{p.phase}")
                if alert:
                    out += [*alert, ShowBoard.of(WAIT_RED)]
        elif p.stage in (Stage.INSPECTION_QUEUED, Stage.SCANNING):
            if now - p.stamps.get("scan_queued", now) > t.scan_s:
                out += self._alert_once(p, "scan_overdue", f"no scan result {t.scan_s:.0f} s after the request")
            if now - max(self._scan_news_at, p.stamps.get("scan_queued", now)) > t.scan_recheck_s:
                # Nothing heard of this scan for long (a lost or reordered event around a broker
                # restart): ask the scanner again rather than wait for ever. It queues a request it
                # never got and sends the result again of a scan it settled.
                self._scan_news_at = now
                out.append(Publish("inspection.requested", self._inspection_request(p, recheck=True)))
        elif p.stage in GATE_MAY_BE_OPEN:
            out += self._exit_deadline(p, now)
        return out

    # ------------------------------------------------------------------ executor feedback
    def on_close_refused(self, now: float) -> list[Action]:
        """The executor's fresh read found something under the arm: the arm stays up, and the
        logic closes it once a later sample shows it clear."""
        self.sensors = replace(self.sensors, photocell=True)
        self.gate.assume("open", cause="exit", now=now)
        return []

    # ------------------------------------------------------------------ completion
    def _complete(self, now: float) -> list[Action]:
        p = self.passage
        assert p is not None
        if p.outcome is None:
            p.outcome = "abandoned"
        self.passage = None
        return [*self._completion(p, now), WELCOME if self.in_service else CLOSED]

    def _completion(self, p: Passage, now: float) -> list[Action]:
        p.stage = Stage.COMPLETED
        self.history.append(p)
        arrived = p.stamps.get("arrived", now)
        stamps = {k: rfc3339(v) for k, v in p.stamps.items() if k in STAGES}
        stage_ms = {k: round((v - arrived) * 1000) for k, v in p.stamps.items() if k in STAGES}
        ident = p.identity or Identity()
        done = PassageCompleted(
            passage_id=p.id,
            outcome=p.outcome or "abandoned",
            reason=p.reason,
            inspected=p.inspected,
            scan_id=p.scan_id,
            scan_result=p.scan_result,
            plates=tuple(r.text for r in ident.plates),
            containers=tuple(c.number for c in ident.containers),
            stages=stamps,
            stage_ms=stage_ms,
            release_basis=p.basis,
            predecision_ids=p.predecision_ids,
        )
        return [Publish("passage.completed", done)]
