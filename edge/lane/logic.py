"""The passage state machine and the lane's safety logic — pure, synchronous, no I/O.

    IDLE → ARRIVED → IDENTIFYING → AWAITING_DECISION ─┬─ RELEASED ─┐
                                                      ├─ DIVERTED ─┤→ EXITING → COMPLETED → IDLE
                                                      └─ INSPECTION_QUEUED → SCANNING → AWAITING_VERDICTS ─┘

``LaneLogic`` takes inputs (sensor snapshots, identification results, verified commands,
scanner events, clock ticks, technician actions) and returns ``Action``s for the daemon to
carry out (publish an event, move the gate, set the light, write the board, start an
identification, request a scan, write an audit entry). Because it does no I/O it can be
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
Without a decision the lane waits — it never releases on its own (policy ``hold``).
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Action",
    "Identity",
    "LaneLogic",
    "LaneTimeouts",
    "Passage",
    "Sensors",
    "Stage",
]


class Stage(enum.StrEnum):
    IDLE = "idle"
    ARRIVED = "arrived"
    IDENTIFYING = "identifying"
    AWAITING_DECISION = "awaiting_decision"
    INSPECTION_QUEUED = "inspection_queued"
    SCANNING = "scanning"
    AWAITING_VERDICTS = "awaiting_verdicts"
    RELEASED = "released"
    DIVERTED = "diverted"
    EXITING = "exiting"
    COMPLETED = "completed"


DECIDING = (Stage.AWAITING_DECISION, Stage.AWAITING_VERDICTS)
GATE_MAY_BE_OPEN = (Stage.RELEASED, Stage.DIVERTED, Stage.EXITING)


@dataclass(frozen=True, slots=True)
class Sensors:
    entry_loop: bool = False
    in_position: bool = False
    exit_loop: bool = False
    photocell: bool = False
    safety_loop: bool = False
    gate_open: bool = False  # open limit switch
    gate_closed: bool = True  # closed limit switch

    @property
    def under_arm(self) -> bool:
        return self.photocell or self.safety_loop


@dataclass(frozen=True, slots=True)
class Identity:
    plates: tuple[tuple[str, str, float], ...] = ()  # (text, kind, confidence)
    containers: tuple[tuple[str, bool, float], ...] = ()  # (number, check_digit_ok, confidence)
    tag_id: str | None = None
    weight_kg: int | None = None
    confidence: float = 0.0
    exceptions: tuple[str, ...] = ()
    corrected_by: str | None = None

    @property
    def vehicle_ref(self) -> str:
        if self.containers:
            return self.containers[0][0]
        if self.plates:
            return self.plates[0][0]
        return self.tag_id or "UNKNOWN"


@dataclass(frozen=True, slots=True)
class Action:
    kind: Literal["publish", "gate", "light", "board", "identify", "request_scan", "audit", "cancel_scan"]
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LaneTimeouts:
    identify_s: float = 5.0  # longest wait for tag/plates/weight before deciding on what we have
    decision_s: float = 120.0  # no decision for this long: say so (board "wait") and keep holding
    exit_s: float = 60.0  # gate open and nobody drove through: close when clear, mark abandoned


@dataclass
class Passage:
    id: str
    stage: Stage
    stamps: dict[str, float] = field(default_factory=dict)
    identity: Identity | None = None
    phase: Literal["initial", "after_scan"] = "initial"
    decisions: dict[str, str] = field(default_factory=dict)
    scans: int = 0
    scan_id: int | None = None
    scan_result: str | None = None
    outcome: str | None = None
    gate_authority: str | None = None  # release | divert | override
    exit_seen: bool = False
    under_seen: bool = False
    decision_overdue: bool = False
    completions: int = 0

    @property
    def inspected(self) -> bool:
        return self.scans > 0


class LaneLogic:
    def __init__(
        self,
        lane: str,
        *,
        agencies: tuple[str, ...],
        has_scanner: bool,
        kind: str = "cargo",
        timeouts: LaneTimeouts | None = None,
        id_prefix: str = "",
    ) -> None:
        self.lane = lane
        self.agencies = tuple(agencies)
        self.has_scanner = has_scanner
        self.kind = kind
        self.timeouts = timeouts or LaneTimeouts()
        self.passage: Passage | None = None
        self.history: list[Passage] = []  # completed passages (bounded by the daemon)
        self.in_service = True
        self.sensors = Sensors()
        self.gate_commanded: str | None = None  # last gate command: open | close
        self._counter = itertools.count(1)
        self._idle_under_seen = False
        self._opened_idle_at = 0.0
        self._id_prefix = id_prefix or lane

    # ------------------------------------------------------------------ guards
    def authorises_open(self, passage_id: str | None, cause: str) -> bool:
        """Second guard, checked by the executor right before an open frame is sent."""
        if cause == "override":
            return True  # audited before the action was produced
        p = self.passage
        return p is not None and p.id == passage_id and p.gate_authority is not None

    @staticmethod
    def may_close(sensors: Sensors) -> bool:
        return not sensors.under_arm

    # ------------------------------------------------------------------ helpers
    @property
    def stage(self) -> Stage:
        return self.passage.stage if self.passage else Stage.IDLE

    def _new_id(self, now: float) -> str:
        return f"{self._id_prefix}-{int(now * 1000):x}-{next(self._counter)}"

    def _publish(self, type_: str, **data: Any) -> Action:
        return Action("publish", {"type": type_, "data": data})

    def _board(self, *lines: tuple[str, str]) -> Action:
        return Action("board", {"lines": list(lines)})

    def _open(self, cause: str) -> list[Action]:
        p = self.passage
        self.gate_commanded = "open"
        return [
            Action("gate", {"action": "open", "cause": cause, "passage_id": p.id if p else None}),
            Action("light", {"colour": "green"}),
            self._publish("gate.moved", passage_id=p.id if p else None, action="open", cause=cause),
        ]

    def _close(self, cause: str) -> list[Action]:
        if not self.may_close(self.sensors):
            return []  # never close onto something; retried on the next sensor change
        self.gate_commanded = "close"
        self._idle_under_seen = False
        p = self.passage
        return [
            Action("gate", {"action": "close", "cause": cause, "passage_id": p.id if p else None}),
            Action("light", {"colour": "red"}),
            self._publish("gate.moved", passage_id=p.id if p else None, action="close", cause=cause),
        ]

    # ------------------------------------------------------------------ sensors
    def on_sensors(self, s: Sensors, now: float) -> list[Action]:
        self.sensors = s
        out: list[Action] = []
        p = self.passage
        if p is None:
            # Level, not edge: the next vehicle may already be on the entry loop in the same
            # sample in which the previous one cleared the exit loop.
            if s.entry_loop and self.in_service and not s.under_arm:
                p = self.passage = Passage(id=self._new_id(now), stage=Stage.ARRIVED, stamps={"arrived": now})
                out.append(self._publish("passage.arrived", passage_id=p.id, lane_kind=self.kind))
                out.append(Action("light", {"colour": "red"}))
                out.append(self._board(("请停车 STOP", "red"), ("识别中 IDENTIFYING", "amber")))
            elif self.gate_commanded == "open":
                # Left open without a passage (override, abandoned): close once something has
                # passed under the arm and cleared it, or after exit_s with nothing coming.
                if s.under_arm:
                    self._idle_under_seen = True
                elif not s.exit_loop and (self._idle_under_seen or now - self._opened_idle_at > self.timeouts.exit_s):
                    out += self._close("exit")
        if p is None:
            return out
        if p.stage == Stage.ARRIVED and s.in_position:
            p.stage = Stage.IDENTIFYING
            p.stamps["identifying"] = now
            out.append(Action("identify", {"passage_id": p.id}))
        if p.stage in GATE_MAY_BE_OPEN and s.gate_open and "gate_opened" not in p.stamps:
            p.stamps["gate_opened"] = now
        if p.stage in (Stage.RELEASED, Stage.DIVERTED) and (s.under_arm or s.exit_loop):
            p.stage = Stage.EXITING
        if p.stage == Stage.EXITING:
            if s.under_arm:
                p.under_seen = True
            if s.exit_loop:
                p.exit_seen = True
            if (p.under_seen or p.exit_seen) and not s.under_arm and self.gate_commanded == "open":
                # Close as soon as the vehicle has cleared the arm, as barrier controllers do:
                # the next vehicle must find it closed.
                out += self._close("exit")
            if p.exit_seen and not s.exit_loop and not s.under_arm:
                p.stamps["exited"] = now
                if self.gate_commanded == "open":
                    out += self._close("exit")
                out += self._complete(now)
        return out

    # ------------------------------------------------------------------ identification
    def on_identified(self, passage_id: str, identity: Identity, now: float) -> list[Action]:
        p = self.passage
        if p is None or p.id != passage_id or p.stage != Stage.IDENTIFYING:
            return []
        p.identity = identity
        p.stage = Stage.AWAITING_DECISION
        p.stamps["identified"] = now
        p.phase = "initial"
        p.decisions = {}
        plate = identity.plates[0][0] if identity.plates else "????"
        return [
            self._publish("vehicle.identified", **self._identity_data(p.id, identity)),
            self._board((plate, "green"), ("请等待 PLEASE WAIT", "amber")),
        ]

    @staticmethod
    def _identity_data(pid: str, identity: Identity) -> dict[str, Any]:
        return {
            "passage_id": pid,
            "plates": [{"text": t, "kind": k, "confidence": round(c, 3)} for t, k, c in identity.plates],
            "containers": [
                {"number": n, "check_digit_ok": ok, "confidence": round(c, 3)} for n, ok, c in identity.containers
            ],
            "tag_id": identity.tag_id,
            "weight_kg": identity.weight_kg,
            "confidence": round(identity.confidence, 3),
            "exceptions": list(identity.exceptions),
            "corrected_by": identity.corrected_by,
        }

    def correct_identity(
        self, passage_id: str, identity: Identity, *, operator: str, reason: str, now: float
    ) -> tuple[bool, str | None, list[Action]]:
        p = self.passage
        if p is None or p.id != passage_id:
            return False, "stale_passage", []
        if p.stage not in (Stage.IDENTIFYING, *DECIDING):
            return False, "wrong_stage", []
        old = p.identity
        p.identity = identity
        p.stage = Stage.AWAITING_DECISION if p.phase == "initial" else Stage.AWAITING_VERDICTS
        p.stamps.setdefault("identified", now)
        out = [
            Action(
                "audit",
                {
                    "kind": "correction",
                    "actor": operator,
                    "reason": reason,
                    "passage_id": p.id,
                    "data": {"before": old.vehicle_ref if old else None, "after": identity.vehicle_ref},
                },
            ),
            self._publish(
                "identity.corrected",
                passage_id=p.id,
                operator=operator,
                reason=reason,
                plates=[t for t, _k, _c in identity.plates],
                containers=[n for n, _ok, _c in identity.containers],
            ),
            self._publish("vehicle.identified", **self._identity_data(p.id, identity)),
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
        if decision == "inspect" and (p.inspected or p.phase == "after_scan"):
            return False, "already_inspected", []
        if decision == "inspect" and not self.has_scanner:
            return False, "no_scanner", []
        if decision not in ("release", "inspect", "hold", "divert"):
            return False, "unknown_decision", []
        p.decisions[agency] = decision
        out = [
            self._publish(
                "passage.decided", passage_id=p.id, agency=agency, decision=decision, phase=p.phase, command_nonce=nonce
            )
        ]
        if decision == "divert":
            p.stamps.setdefault("decided", now)
            out += self._divert("agency")
        elif decision == "inspect":
            p.stamps.setdefault("decided", now)
            p.stage = Stage.INSPECTION_QUEUED
            p.scans += 1
            p.stamps["scan_queued"] = now
            out.append(
                Action(
                    "request_scan", {"passage_id": p.id, "vehicle_ref": p.identity.vehicle_ref if p.identity else ""}
                )
            )
            out.append(self._board(("前往查验 X-RAY", "amber"), ("请等待 PLEASE WAIT", "amber")))
        elif all(p.decisions.get(a) == "release" for a in self.agencies):
            p.stamps.setdefault("decided", now)
            out += self._release(now)
        return True, None, out

    def _release(self, now: float) -> list[Action]:
        p = self.passage
        assert p is not None
        p.stage = Stage.RELEASED
        p.outcome = "released"
        p.gate_authority = "release"
        p.stamps["released"] = now
        return [
            self._publish("passage.released", passage_id=p.id, outcome="released"),
            self._board(("放行 PROCEED", "green")),
            *self._open("release"),
        ]

    def _divert(self, cause: str) -> list[Action]:
        p = self.passage
        assert p is not None
        p.stage = Stage.DIVERTED
        p.outcome = "diverted"
        p.gate_authority = "divert"
        return [
            self._publish("passage.diverted", passage_id=p.id, outcome="diverted"),
            self._board(("人工查验 INSPECTION BAY", "amber")),
            *self._open("divert"),
        ]

    # ------------------------------------------------------------------ scanner
    def on_scan(
        self,
        passage_id: str,
        kind: str,
        now: float,
        *,
        scan_id: int | None = None,
        result: str | None = None,
        reason: str | None = None,
    ) -> list[Action]:
        p = self.passage
        if p is None or p.id != passage_id:
            return []
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
            return [self._board(("查验完成 SCANNED", "green"), ("请等待 PLEASE WAIT", "amber"))]
        if kind == "failed" and p.stage in (Stage.INSPECTION_QUEUED, Stage.SCANNING):
            p.stamps["scan_ended"] = now
            return [
                self._publish("lane.exception", passage_id=p.id, kind="scanner_fault", detail=reason or ""),
                *self._divert("scanner_fault"),
            ]
        return []

    # ------------------------------------------------------------------ time
    def on_tick(self, now: float) -> list[Action]:
        p = self.passage
        if p is None:
            return self.on_sensors(self.sensors, now) if self.gate_commanded == "open" else []
        t = self.timeouts
        if p.stage in DECIDING and not p.decision_overdue:
            since = p.stamps.get("scan_ended", p.stamps.get("identified", now))
            if now - since > t.decision_s:
                p.decision_overdue = True
                return [
                    self._publish(
                        "lane.exception",
                        passage_id=p.id,
                        kind="platform_unreachable",
                        detail=f"no decision for {t.decision_s:.0f} s; holding",
                    ),
                    self._board(("请等待 PLEASE WAIT", "red")),
                ]
        if p.stage in (Stage.RELEASED, Stage.DIVERTED, Stage.EXITING):
            opened = p.stamps.get("released", p.stamps.get("gate_opened", now))
            if (
                now - opened > t.exit_s
                and not p.exit_seen
                and not self.sensors.under_arm
                and not self.sensors.entry_loop
            ):
                # Nobody drove through: the vehicle was taken away by hand.
                out = self._close("exit")
                if out:
                    p.outcome = "abandoned" if p.outcome is None else p.outcome
                    out += self._complete(now)
                return out
        return []

    # ------------------------------------------------------------------ technician
    def override_open(self, *, operator: str, reason: str, now: float) -> list[Action]:
        """Manual override: opens the gate for whatever is in the lane. The caller has already
        validated operator and reason; this writes the audit entry first."""
        p = self.passage
        pid = p.id if p else None
        out = [
            Action(
                "audit",
                {
                    "kind": "override",
                    "actor": operator,
                    "reason": reason,
                    "passage_id": pid,
                    "data": {"action": "gate_open"},
                },
            ),
            self._publish("override.applied", passage_id=pid, operator=operator, reason=reason, action="gate_open"),
        ]
        if p is not None and p.stage not in GATE_MAY_BE_OPEN:
            p.stage = Stage.RELEASED
            p.outcome = "override"
            p.gate_authority = "override"
            p.stamps.setdefault("released", now)
            out.append(Action("cancel_scan", {"passage_id": p.id}))
        self._opened_idle_at = now
        out += self._open("override")
        return out

    def override_close(self, *, operator: str, reason: str) -> list[Action]:
        out = [
            Action(
                "audit",
                {
                    "kind": "override",
                    "actor": operator,
                    "reason": reason,
                    "passage_id": self.passage.id if self.passage else None,
                    "data": {"action": "gate_close"},
                },
            )
        ]
        closing = self._close("override")
        if not closing:
            out.append(
                Action(
                    "audit",
                    {
                        "kind": "override_refused",
                        "actor": operator,
                        "reason": "something under the arm",
                        "passage_id": None,
                        "data": {},
                    },
                )
            )
        return out + closing

    def set_in_service(self, in_service: bool, *, operator: str, reason: str) -> list[Action]:
        self.in_service = in_service
        out = [
            Action(
                "audit",
                {
                    "kind": "lane_opened" if in_service else "lane_closed",
                    "actor": operator,
                    "reason": reason,
                    "passage_id": None,
                    "data": {},
                },
            )
        ]
        if in_service:
            out.append(self._board(("欢迎 WELCOME", "green")))
        else:
            out.append(self._board(("车道关闭 LANE CLOSED", "red")))
            out.append(Action("light", {"colour": "red"}))
        return out

    # ------------------------------------------------------------------ completion
    def _complete(self, now: float) -> list[Action]:
        p = self.passage
        assert p is not None
        p.completions += 1
        p.stage = Stage.COMPLETED
        if p.outcome is None:
            p.outcome = "abandoned"
        self.passage = None
        self.history.append(p)
        del self.history[:-50]
        arrived = p.stamps.get("arrived", now)
        from portlane.edge.contract.envelope import rfc3339
        from portlane.edge.contract.events import STAGES

        stamps = {k: rfc3339(v) for k, v in p.stamps.items() if k in STAGES}
        stage_ms = {k: int(round((v - arrived) * 1000)) for k, v in p.stamps.items() if k in STAGES}
        ident = p.identity or Identity()
        return [
            self._publish(
                "passage.completed",
                passage_id=p.id,
                outcome=p.outcome,
                inspected=p.inspected,
                scan_id=p.scan_id,
                scan_result=p.scan_result,
                plates=[t for t, _k, _c in ident.plates],
                containers=[n for n, _ok, _c in ident.containers],
                stages=stamps,
                stage_ms=stage_ms,
            ),
            self._board(("欢迎 WELCOME", "green")) if self.in_service else self._board(("车道关闭 LANE CLOSED", "red")),
        ]
