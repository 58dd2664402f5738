"""The lane's vocabulary: stages, sensor samples, identities and the passage record — pure data.

``Sensors`` is one sample of the lane's inputs. Levels (a loop is occupied now) can be missed
when the control loop is starved: a truck may cross the exit loop between two samples. The
counters are latched by the devices themselves (the gate controller counts vehicles that
passed under the arm and clearings of its photocell; the remote I/O module counts edges of
the exit loop), so evidence that something happened survives slow sampling. A counter is
``None`` when the device does not report it; the logic then falls back to levels.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import asdict, dataclass, field
from dataclasses import replace as dataclass_replace
from typing import Any, Literal

from portlane.drivers.base import counter_delta
from portlane.drivers.cargo_devices import RpmStatus, SealRecord
from portlane.edge.contract.events import (
    ContainerRead,
    PlateRead,
    PredecisionRefusal,
    ReleaseBasis,
    RpmOccupancyEvent,
    VehicleIdentified,
)

from .cargo_checks import SealSeen

__all__ = [
    "DECIDING",
    "GATE_MAY_BE_OPEN",
    "CargoLane",
    "CargoPassage",
    "Identity",
    "LaneTimeouts",
    "Passage",
    "Sensors",
    "Stage",
    "counted_since",
]


def counted_since(now: int | None, base: int | None) -> int | None:
    """Events counted since ``base`` (16-bit wrap-around safe), or None without a counter."""
    if now is None or base is None:
        return None
    return counter_delta(now, base)


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
    arm_passes: int | None = None  # gate controller: vehicles that passed under the open arm
    under_clears: int | None = None  # gate controller: photocell/safety loop went from blocked to clear
    exit_clears: int | None = None  # I/O module: exit loop went from occupied to free

    @property
    def under_arm(self) -> bool:
        return self.photocell or self.safety_loop


@dataclass(frozen=True, slots=True)
class Identity:
    plates: tuple[PlateRead, ...] = ()
    containers: tuple[ContainerRead, ...] = ()
    tag_id: str | None = None
    weight_kg: int | None = None
    confidence: float = 0.0
    exceptions: tuple[str, ...] = ()
    corrected_by: str | None = None
    # e-seals / e-locks read at the stop line: None when not read — the lane has no reader, or
    # its read failed (``seal_error`` says why); the seal ids the vehicle's declaration names
    seals: tuple[SealRecord, ...] | None = None
    seal_error: str | None = None
    declared_seals: tuple[str, ...] | None = None

    @property
    def vehicle_ref(self) -> str:
        if self.containers:
            return self.containers[0].number
        if self.plates:
            return self.plates[0].text
        return self.tag_id or "UNKNOWN"

    def event(
        self,
        passage_id: str,
        *,
        predecision_ids: tuple[str, ...] = (),
        refusals: tuple[PredecisionRefusal, ...] = (),
    ) -> VehicleIdentified:
        return VehicleIdentified(
            passage_id=passage_id,
            plates=self.plates,
            containers=self.containers,
            tag_id=self.tag_id,
            weight_kg=self.weight_kg,
            confidence=round(self.confidence, 3),
            exceptions=self.exceptions,
            corrected_by=self.corrected_by,
            predecision_ids=predecision_ids,
            predecision_refusals=refusals,
        )


@dataclass(frozen=True, slots=True)
class LaneTimeouts:
    """Deadlines of each stage. Past one the lane publishes a named ``lane.exception`` and says on
    the board what it needs; it never waits silently."""

    arrive_s: float = 30.0  # on the entry loop, never in position: ask to move forward / abandon
    identify_s: float = 5.0  # longest wait for tag/plates/weight before deciding on what we have
    decision_s: float = 120.0  # no decision for this long: say so (board "wait") and keep holding
    scan_s: float = 900.0  # queued + scanning longer than this: the scanner is overdue
    scan_recheck_s: float = 30.0  # nothing heard of the scan for this long: ask the scanner again
    exit_s: float = 60.0  # gate open and nobody drove through: close when clear, mark abandoned
    gate_confirm_s: float = 4.0  # a barrier arm moves in 1-6 s; not at its limit switch by then: retry
    gate_retry_cap_s: float = 30.0  # retries back off up to this interval, without a retry cap


@dataclass
class CargoLane:
    """The lane-wide side of the radiation portal and the seals (``cargo.py``): which devices
    the lane has, the portal's state, occupancies waiting for their passage, and the lane-wide
    blockers already said in this episode."""

    portal: str | None = None  # the portal's device id (``c1/rpm``); None: the lane has none
    reader: str | None = None  # the seal reader's device id; None: none
    online: bool = False
    status: RpmStatus | None = None
    pending: deque[tuple[float, RpmOccupancyEvent]] = field(default_factory=deque)  # (reported at, occupancy)
    said: frozenset[tuple[str, str]] = frozenset()
    passes_seen: int | None = None  # the gate controller's count of vehicles through the arm, last read
    passes: int = 0  # vehicles through the arm since the start, by that count
    through: int = 0  # ... that were a passage's own vehicle, or took a waiting occupancy

    def held(self) -> list[str]:
        """Why automatic release is held lane-wide now (for the status)."""
        return [f"{kind}: {detail}" for kind, detail in sorted(self.said)]


@dataclass
class CargoPassage:
    """What the lane knows of one passage's radiation portal pass and seals (``cargo.py``).

    Only the occupancy is journalled: a lane restarted mid-passage closes the passage out, and
    the vehicle still behind the arm gets a new one, which takes that occupancy again (the portal
    reported it once). Seals are read again; an alarm is adjudicated again, for the new passage."""

    occupancy: RpmOccupancyEvent | None = None  # this vehicle's pass through the portal
    adjudication: int | None = None  # the code of the accepted ``adjudicate`` for its alarm
    seals: tuple[SealSeen, ...] | None = None  # as read at identification, then as the locks answered
    seal_error: str | None = None  # the reader's read of this vehicle failed
    declared: tuple[str, ...] | None = None  # seal ids its declaration names (None: none)
    opened_by_command: set[str] = field(default_factory=set)  # e-locks removed on a signed command
    release_waiting: bool = False  # every agency released; a blocker holds the release
    basis: ReleaseBasis = "online"  # what that held release rests on (online decisions, pre-decisions)
    passed: bool = False  # its vehicle went under the arm and was counted as the lane's (CargoLane.through)
    seal_busy: int = 0  # e-lock commands sent to the reader and not yet answered


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
    scan_result: Literal["GREEN", "YELLOW", "RED"] | None = None
    outcome: Literal["released", "diverted", "override", "abandoned", "recovered"] | None = None
    reason: str | None = None  # why a passage ended the way it did, when that is not obvious
    gate_authority: Literal["release", "divert", "override"] | None = None
    basis: ReleaseBasis | None = None  # what the gate authority rests on
    predecision_ids: tuple[str, ...] = ()  # pre-decisions this passage used (release or inspection)
    withdrawn: bool = False  # a release on pre-decisions revoked before the vehicle moved
    # evidence of the vehicle's way out, from the moment the gate was commanded open
    base_arm_passes: int | None = None
    base_under_clears: int | None = None
    base_exit_clears: int | None = None
    exit_busy_at_open: bool = False
    under_seen: bool = False
    exit_seen: bool = False
    passed_arm: bool = False
    alerted: set[str] = field(default_factory=set)  # lane.exception kinds already raised
    cargo: CargoPassage = field(default_factory=CargoPassage)

    @property
    def inspected(self) -> bool:
        return self.scans > 0

    def to_json(self) -> dict[str, Any]:
        """The journal's form of an unfinished passage (restored after a restart)."""
        ident = self.identity
        d = asdict(dataclass_replace(self, identity=None, cargo=CargoPassage()))
        occ = self.cargo.occupancy
        d["cargo"] = {"occupancy": occ.model_dump(mode="json") if occ is not None else None}
        d["stage"] = self.stage.value
        d["alerted"] = sorted(self.alerted)
        d["identity"] = ident.event(self.id).model_dump(mode="json") if ident else None
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Passage:
        d = dict(d)
        d["stage"] = Stage(d["stage"])
        d["alerted"] = set(d.get("alerted", ()))
        occ = (d.get("cargo") or {}).get("occupancy")
        d["cargo"] = CargoPassage(occupancy=RpmOccupancyEvent.model_validate(occ) if occ is not None else None)
        d["predecision_ids"] = tuple(d.get("predecision_ids", ()))
        ident = d.get("identity")
        if ident is not None:
            ev = VehicleIdentified.model_validate(ident)
            d["identity"] = Identity(
                plates=ev.plates,
                containers=ev.containers,
                tag_id=ev.tag_id,
                weight_kg=ev.weight_kg,
                confidence=ev.confidence,
                exceptions=ev.exceptions,
                corrected_by=ev.corrected_by,
            )
        return cls(**d)
