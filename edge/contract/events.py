"""Event payloads (the ``data`` of the envelope), one pydantic model per event type.

``EVENTS`` maps the event type (the topic's last level) to its model; the AsyncAPI
document is generated from it.
"""

from __future__ import annotations

import json
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "EVENTS",
    "STAGES",
    "AuditCheckpoint",
    "CommandRejected",
    "CommandResponse",
    "ContainerRead",
    "DeviceState",
    "EventType",
    "GateCause",
    "GateMoved",
    "IdentityCorrected",
    "InspectionRequested",
    "LaneException",
    "Outcome",
    "OverrideApplied",
    "PassageArrived",
    "PassageCompleted",
    "PassageDecided",
    "PassageOutcome",
    "PlateKind",
    "PlateRead",
    "ScanEvent",
    "UnitStatus",
    "VehicleIdentified",
]

#: Stage timestamps every passage.completed carries (absent when the stage did not happen).
STAGES = (
    "arrived",
    "identified",
    "decided",
    "scan_queued",
    "scan_started",
    "scan_ended",
    "released",
    "gate_opened",
    "exited",
)


class _Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


PlateKind = Literal["cn", "cn_crossborder", "hk", "macau", "unknown"]


class PlateRead(_Payload):
    text: str
    kind: PlateKind
    confidence: float = Field(ge=0, le=1)


class ContainerRead(_Payload):
    number: str
    check_digit_ok: bool
    iso_type: str | None = None
    confidence: float = Field(ge=0, le=1)


class PassageArrived(_Payload):
    passage_id: str
    lane_kind: Literal["cargo", "passenger"]


class VehicleIdentified(_Payload):
    """The lane's identification of a vehicle; the platform answers with per-agency decisions."""

    passage_id: str
    plates: tuple[PlateRead, ...] = ()
    containers: tuple[ContainerRead, ...] = ()
    tag_id: str | None = None
    weight_kg: int | None = None
    confidence: float = Field(ge=0, le=1)
    exceptions: tuple[str, ...] = Field(
        (), description="unreadable_plate, low_confidence, dual_plate_mismatch, check_digit_failed, ..."
    )
    corrected_by: str | None = Field(None, description="operator who corrected the identity, if any")


class PassageDecided(_Payload):
    passage_id: str
    agency: str
    decision: Literal["release", "inspect", "hold", "divert"]
    phase: Literal["initial", "after_scan"]
    command_nonce: str


class InspectionRequested(_Payload):
    passage_id: str
    lane: str
    method: Literal["xray"] = "xray"
    priority: int = Field(0, ge=0, le=9, description="higher is served first; equal priorities are FIFO")
    vehicle_ref: str = Field(description="container number or plate, written to the scanner PLC")
    recheck: bool = Field(
        False,
        description="the lane asks again for a passage it heard nothing of for long: a scanner that "
        "settled it sends the settling event again; a platform ignores it",
    )


class ScanEvent(_Payload):
    """Published by the scanner daemon: scan.queued / scan.started / scan.completed / scan.failed."""

    passage_id: str
    lane: str
    scanner: str
    scan_id: int | None = None
    result: Literal["GREEN", "YELLOW", "RED"] | None = None
    image_ref: str | None = None
    queue_position: int | None = None
    reason: str | None = None


GateCause = Literal["release", "divert", "override", "exit", "fault", "lane_closed", "restart"]
Outcome = Literal["released", "diverted", "override", "abandoned", "recovered"]


class GateMoved(_Payload):
    """Published when the controller reports the arm at its limit switch, not when the frame is sent."""

    passage_id: str | None
    action: Literal["open", "close", "stop"]
    cause: GateCause


class PassageOutcome(_Payload):
    passage_id: str
    outcome: Outcome


class PassageCompleted(_Payload):
    passage_id: str
    outcome: Outcome = Field(description="'recovered': closed out after a lane restart (see reason)")
    reason: str | None = Field(None, description="why the passage ended so, when that is not obvious")
    inspected: bool
    scan_id: int | None = None
    scan_result: Literal["GREEN", "YELLOW", "RED"] | None = None
    plates: tuple[str, ...] = ()
    containers: tuple[str, ...] = ()
    stages: dict[str, str] = Field(description="stage name -> RFC 3339 time, for the stages that happened")
    stage_ms: dict[str, int] = Field(description="milliseconds from 'arrived' to each stage")


class DeviceState(_Payload):
    device: str
    health: Literal["online", "degraded", "offline"]
    reason: str | None = None


class LaneException(_Payload):
    passage_id: str | None
    kind: str
    detail: str = ""


class CommandRejected(_Payload):
    command: str
    reason: str
    nonce: str | None = None
    key_id: str | None = None


class IdentityCorrected(_Payload):
    passage_id: str
    operator: str
    reason: str
    plates: tuple[str, ...] = ()
    containers: tuple[str, ...] = ()


class OverrideApplied(_Payload):
    passage_id: str | None
    operator: str
    reason: str
    action: str


class UnitStatus(_Payload):
    """What a unit (lane, scanner) says of itself: the ``unit.status`` event, written through the
    outbox like every event (signed, sequenced, replayable), whose newest envelope is also
    retained on ``portlane/v1/{site}/{unit}/status``. The broker's last will on that topic is
    the bare, unsigned ``{"state": "offline", "unit": …, "kind": …}`` (:meth:`will`): a consumer
    may take it only as "unconfirmed offline"."""

    state: Literal["online", "offline"]
    unit: str
    kind: Literal["lane", "scanner"] = "lane"
    version: str = ""
    in_service: bool = True
    reason: str | None = Field(None, description="why the unit takes no work, when it does not")
    stage: str | None = None
    last_seq: int = Field(0, description="events written before this status, in ``epoch``")
    epoch: int = 0  # the outbox's stream epoch: last_seq counts within it
    since: str = ""

    @classmethod
    def will(cls, unit: str, kind: Literal["lane", "scanner"]) -> bytes:
        """The last will: set at connect time, published by the broker, signed by nobody."""
        return json.dumps({"state": "offline", "unit": unit, "kind": kind}).encode()

    @staticmethod
    def fields_of(payload: Any) -> dict[str, Any] | None:
        """The status fields of a retained status message as parsed JSON: an envelope's
        ``data`` — with ``last_seq``/``epoch`` those of the status event itself, the newest event
        the unit had written when it said so — or the bare will itself; None when it is neither.
        Says nothing of who wrote it (that is the consumer's signature check)."""
        if not isinstance(payload, dict):
            return None
        if "specversion" not in payload:
            return payload
        data = payload.get("data")
        if not isinstance(data, dict):
            return None
        seq, epoch = payload.get("seq"), payload.get("epoch", 0)
        if type(seq) is int and type(epoch) is int:
            return {**data, "last_seq": seq, "epoch": epoch}
        return data


class CommandResponse(_Payload):
    correlation_id: str | None
    command: str
    ok: bool
    reason: str | None = None


class AuditCheckpoint(_Payload):
    """A signed anchor of the unit's audit log (``portlane.edge.trust.audit.Checkpoint``): the log
    had ``entries`` entries ending in ``head``. Also retained on ``.../{unit}/checkpoint``."""

    entries: int = Field(ge=0)
    head: str = Field(pattern=r"^[0-9a-f]{64}$")
    log: str
    time: str
    unit: str
    sigkeyid: str = Field(description="the unit's key id (site file)")
    sig: str = Field(description="Ed25519 over the RFC 8785 form of this object without sig, base64")


EventType = Literal[
    "passage.arrived",
    "vehicle.identified",
    "passage.decided",
    "inspection.requested",
    "scan.queued",
    "scan.started",
    "scan.completed",
    "scan.failed",
    "passage.released",
    "passage.diverted",
    "gate.moved",
    "passage.completed",
    "device.state",
    "lane.exception",
    "command.rejected",
    "identity.corrected",
    "override.applied",
    "audit.checkpoint",
    "unit.status",
]

EVENTS: dict[EventType, type[_Payload]] = {
    "passage.arrived": PassageArrived,
    "vehicle.identified": VehicleIdentified,
    "passage.decided": PassageDecided,
    "inspection.requested": InspectionRequested,
    "scan.queued": ScanEvent,
    "scan.started": ScanEvent,
    "scan.completed": ScanEvent,
    "scan.failed": ScanEvent,
    "passage.released": PassageOutcome,
    "passage.diverted": PassageOutcome,
    "gate.moved": GateMoved,
    "passage.completed": PassageCompleted,
    "device.state": DeviceState,
    "lane.exception": LaneException,
    "command.rejected": CommandRejected,
    "identity.corrected": IdentityCorrected,
    "override.applied": OverrideApplied,
    "audit.checkpoint": AuditCheckpoint,
    "unit.status": UnitStatus,
}

assert set(get_args(EventType)) == set(EVENTS), "EventType and EVENTS list the same event types"
