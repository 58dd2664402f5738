"""The live picture's state: each lane with its passage under way, the shared scanner with its
queue and lease, and how each is shown (``as_dict``, the page's JSON); and the verified event as
the rules read it (:class:`LiveEvent`). The rules that move this state live in ``live.py`` and
``cargo.py``; nothing here reads an event.

A passage's stage only moves forward, by ``STAGE_RANK``: an event replayed after a gap, or a
scanner event overtaking the lane's, cannot move the picture backwards.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "STAGE_RANK",
    "UTILISATION_WINDOW_MS",
    "LaneLive",
    "LiveEvent",
    "PassageLive",
    "ScannerLive",
    "vehicle_kind",
]

STAGE_RANK = {
    "arrived": 0,
    "awaiting_decision": 1,
    "inspection_queued": 2,
    "scanning": 3,
    "awaiting_verdicts": 4,
    "released": 5,
    "diverted": 5,
}

#: The scanner's utilisation is the busy share of this window.
UTILISATION_WINDOW_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """A verified event (the library's ``SiteEvent``, or one read back from the database at
    start) as the rules read it."""

    id: str
    unit: str
    type: str  # without "portlane."
    time_ms: int
    audience: tuple[str, ...]
    data: Mapping[str, Any]


@dataclass
class PassageLive:
    id: str
    arrived_ms: int
    stage: str = "arrived"
    stage_since_ms: int = 0
    plates: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    confidence: float | None = None
    exceptions: list[str] = field(default_factory=list)
    decisions: dict[str, str] = field(default_factory=dict)
    basis: dict[str, str] = field(default_factory=dict)  # agency -> online | predecision
    scan_result: str | None = None
    predecision_refusals: list[str] = field(default_factory=list)  # why the lane did not release itself
    radiation: str | None = None  # None | alarm | adjudicated: release | adjudicated: divert
    seal_exceptions: list[str] = field(default_factory=list)

    def advance(self, stage: str, ms: int) -> bool:
        """Move to ``stage`` if it is further on (identified moves ``arrived`` on); True if moved."""
        if STAGE_RANK.get(stage, -1) <= STAGE_RANK.get(self.stage, -1) and not (
            stage == "awaiting_decision" and self.stage == "arrived"
        ):
            return False
        self.stage = stage
        self.stage_since_ms = max(ms, self.stage_since_ms)
        return True

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "arrived_ms": self.arrived_ms,
            "stage": self.stage,
            "stage_since_ms": self.stage_since_ms,
            "plates": self.plates,
            "containers": self.containers,
            "confidence": self.confidence,
            "exceptions": self.exceptions,
            "decisions": self.decisions,
            "basis": self.basis,
            "scan_result": self.scan_result,
            "predecision_refusals": self.predecision_refusals,
            "radiation": self.radiation,
            "seal_exceptions": self.seal_exceptions,
        }


@dataclass
class LaneLive:
    id: str
    kind: str
    agencies: tuple[str, ...]
    scanner: str | None
    online: bool | None = None  # None: no signed status seen yet
    state: str = "unknown"  # the library's UnitView.state: online, closed, offline, unconfirmed_offline
    in_service: bool = True
    closed_reason: str | None = None
    auto_closed: bool = False
    passage: PassageLive | None = None
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    completed: int = 0
    last: dict[str, Any] | None = None
    released_by: dict[str, int] = field(default_factory=dict)  # release basis -> completed passages
    refusals: dict[str, int] = field(default_factory=dict)  # pre-decision refusal reason -> passages

    @property
    def automatic_share(self) -> float | None:
        """The share of releases the lane made itself on signed pre-decisions (计算机自动核放)."""
        auto, online = self.released_by.get("predecision", 0), self.released_by.get("online", 0)
        return round(auto / (auto + online), 3) if auto + online else None

    def as_dict(self, alarms: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "agencies": list(self.agencies),
            "scanner": self.scanner,
            "online": self.online,
            "state": self.state,
            "in_service": self.in_service,
            "closed_reason": self.closed_reason,
            "stage": self.passage.stage if self.passage else "idle",
            "passage": self.passage.as_dict() if self.passage else None,
            "devices": self.devices,
            "completed": self.completed,
            "last": self.last,
            "released_by": self.released_by,
            "automatic_share": self.automatic_share,
            "predecision_refusals": self.refusals,
            "alarms": alarms,
        }


@dataclass
class ScannerLive:
    id: str
    lanes: tuple[str, ...]
    online: bool | None = None
    state: str = "unknown"
    queue: dict[str, dict[str, Any]] = field(default_factory=dict)  # passage id -> {lane, queued_ms}
    lease: dict[str, Any] | None = None
    busy: deque[tuple[int, int]] = field(default_factory=deque)
    scans: int = 0
    last_result: dict[str, Any] | None = None
    faults: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10))
    first_ms: int | None = None

    def utilisation(self, now_ms: int) -> float:
        """The busy share of the last ``UTILISATION_WINDOW_MS`` (or of the time since the first
        scanner event, when that is shorter)."""
        start = now_ms - UTILISATION_WINDOW_MS
        while self.busy and self.busy[0][1] < start:
            self.busy.popleft()
        busy = sum(min(b, now_ms) - max(a, start) for a, b in self.busy if b > start)
        if self.lease is not None:
            busy += now_ms - max(self.lease["since_ms"], start)
        window = min(UTILISATION_WINDOW_MS, now_ms - (self.first_ms or now_ms))
        return round(busy / window, 3) if window > 0 else 0.0

    def as_dict(self, now_ms: int, alarms: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "lanes": list(self.lanes),
            "online": self.online,
            "state": self.state,
            "queue": sorted(({"passage_id": k, **v} for k, v in self.queue.items()), key=lambda e: int(e["queued_ms"])),
            "lease": self.lease,
            "utilisation": self.utilisation(now_ms),
            "scans": self.scans,
            "last_result": self.last_result,
            "faults": list(self.faults),
            "alarms": alarms,
        }


def vehicle_kind(lane_kind: str, containers: Sequence[str]) -> str:
    """``car`` on a passenger lane; on a cargo lane ``container_truck`` with boxes, else ``truck``."""
    if lane_kind == "passenger":
        return "car"
    return "container_truck" if containers else "truck"
