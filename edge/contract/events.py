"""Event payloads (the ``data`` of the envelope), one pydantic model per event type.

``EVENTS`` maps the event type (the topic's last level) to its model; the AsyncAPI
document is generated from it.
"""

from __future__ import annotations

import json
from typing import Any, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field

from .vocabulary import Verdict

__all__ = [
    "CARGO_EVENTS",
    "EVENTS",
    "STAGES",
    "AuditCheckpoint",
    "CargoEventType",
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
    "PredecisionReason",
    "PredecisionRefusal",
    "RadiationCategory",
    "ReleaseBasis",
    "RpmAdjudicated",
    "RpmAlarm",
    "RpmOccupancyEvent",
    "RpmVerdict",
    "ScanEvent",
    "SealChanged",
    "SealInfo",
    "SealRead",
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


#: Why the recogniser did not confirm a read, named for the officer (``models/fusion.py``).
_DOUBT = Field(
    None,
    max_length=32,
    description=(
        "why the lane's recogniser did not confirm this read (null when it did, or when the read"
        " is not the recogniser's): rival (another reading has weight), slip (another valid"
        " number or plate has weight), province (a small province Hanzi), framing (another framing"
        " read another province), slant (a slanted plate's two views did not read the same),"
        " upscaled (found only in a small frame enlarged), fragment (a mark that is part of a"
        " longer line), inferred (check digit computed, not read), fold (check digit 0),"
        " confidence (weak characters), ..."
    ),
)


class PlateRead(_Payload):
    text: str
    kind: PlateKind
    confidence: float = Field(ge=0, le=1)
    doubt: str | None = _DOUBT


class ContainerRead(_Payload):
    number: str
    check_digit_ok: bool
    iso_type: str | None = None
    confidence: float = Field(ge=0, le=1)
    doubt: str | None = _DOUBT


# --------------------------------------------------------------------------------------------
# Pre-decisions (issue 20): why a declared vehicle was not released by the lane itself, and on
# what basis a passage was released. Matching rules: ``portlane.edge.lane.predecisions``.

#: Why the lane did not release on pre-decisions: the passage went to the platform (an officer).
PredecisionReason = Literal[
    "not_declared",
    "plate_mismatch",
    "tag_mismatch",
    "container_mismatch",
    "size_type_mismatch",
    "weight_out_of_tolerance",
    "seal_mismatch",
    "outside_window",
    "wrong_lane",
    "expired",
    "already_used",
    "revoked",
    "identification_exception",
]
#: What opened the gate: every agency's pre-decision matched at the lane, the platform's
#: decisions on the identification, or an audited override.
ReleaseBasis = Literal["predecision", "online", "override"]


class PredecisionRefusal(_Payload):
    reason: PredecisionReason
    agency: str | None = Field(None, description="the agency whose pre-decision did not match (None: all)")
    predecision_id: str | None = None
    detail: str = Field("", max_length=300, description="what was declared and what was read, for the officer")


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
    predecision_ids: tuple[str, ...] = Field(
        (), description="pre-decisions this identity matched in full (the lane decides on them itself)"
    )
    predecision_refusals: tuple[PredecisionRefusal, ...] = Field(
        (), max_length=32, description="why the lane did not release on pre-decisions ('not_declared': none found)"
    )


class PassageDecided(_Payload):
    passage_id: str
    agency: str
    decision: Verdict
    phase: Literal["initial", "after_scan"]
    command_nonce: str = Field(description="nonce of the signed command that carried the verdict")
    basis: ReleaseBasis = Field("online", description="'predecision': signed in advance, matched at the lane")
    predecision_id: str | None = None


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


GateCause = Literal["release", "divert", "override", "exit", "fault", "lane_closed", "restart", "revoke"]
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
    release_basis: ReleaseBasis | None = Field(None, description="what opened the gate (None: it was not opened)")
    predecision_ids: tuple[str, ...] = Field((), description="the pre-decisions used, when the basis is 'predecision'")


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
    """A signed anchor of the unit's audit log (``portlane.edge.trust.audit_chain.Checkpoint``): the log
    had ``entries`` entries ending in ``head``. Also retained on ``.../{unit}/checkpoint``."""

    entries: int = Field(ge=0)
    head: str = Field(pattern=r"^[0-9a-f]{64}$")
    log: str
    time: str
    unit: str
    sigkeyid: str = Field(description="the unit's key id (site file)")
    sig: str = Field(description="Ed25519 over the RFC 8785 form of this object without sig, base64")


_LaneEventType = Literal[
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

# =========================================================================== issue 21: cargo devices
# Radiation portal monitors and e-seals / e-locks. A separate block so that other additions to
# the contract merge without touching it; joined to EventType / EVENTS below.

#: What a radiation portal concluded about one occupancy: ``clear`` (no alarm, portal healthy),
#: ``alarm`` (gamma and/or neutron alarm: secondary inspection and an adjudication), ``fault``
#: (the portal was faulted or tampered with, so its counts cannot clear the vehicle).
RpmVerdict = Literal["clear", "alarm", "fault"]
RadiationCategory = Literal["gamma", "neutron"]


class RpmOccupancyEvent(_Payload):
    """One vehicle's pass through a radiation portal: counts, backgrounds, alarm and verdict."""

    passage_id: str | None
    portal: str = Field(description="device id of the portal, e.g. c1/rpm")
    occupancy: int = Field(ge=0, description="the portal's own occupancy counter")
    started: str = Field(description="RFC 3339, first sample")
    ended: str = Field(description="RFC 3339, end of occupancy")
    live_s: float = Field(ge=0, description="counting time: samples x sample length")
    gamma_counts: tuple[int, ...] = Field(description="per gamma panel, over the occupancy")
    neutron_counts: tuple[int, ...] = Field(description="per neutron detector, over the occupancy")
    gamma_background_cps: tuple[float, ...] = Field(description="per panel, counts/s, before the occupancy")
    neutron_background_cps: tuple[float, ...]
    gamma_alarm: bool
    neutron_alarm: bool
    gamma_sigma: float = Field(description="(busiest second - background) / sqrt(background), all panels")
    nsigma: float | None = Field(None, description="the portal's alarm threshold in sigmas, when it reports it")
    speed_kph: float | None = None
    verdict: RpmVerdict
    faults: tuple[str, ...] = Field((), description="portal faults during the occupancy: gamma_high, tamper, ...")
    n42: str | None = Field(
        None,
        description="the occupancy's ANSI N42.42-2012 document, a path relative to the lane's state directory "
        "(n42/<lane>/<file>.n42); the lane keeps the newest ones",
    )


class RpmAlarm(_Payload):
    """A radiation alarm: the passage is held, diverted to secondary inspection, and needs an
    adjudication before any release."""

    passage_id: str | None
    portal: str
    occupancy: int = Field(ge=0)
    categories: tuple[RadiationCategory, ...] = Field(min_length=1)
    gamma_sigma: float


class RpmAdjudicated(_Payload):
    """An agency's adjudication of a radiation alarm (the signed ``adjudicate`` command), and
    what it does to the passage."""

    passage_id: str
    occupancy: int = Field(ge=0)
    agency: str
    code: int = Field(ge=1, le=11, description="contract.commands.ADJUDICATION_CODES")
    code_name: str
    effect: Literal["release", "divert"] = Field(description="release allowed, or the vehicle stays diverted")
    isotopes: tuple[str, ...] = ()
    remark: str = ""
    command_nonce: str


class SealInfo(_Payload):
    """One e-seal or e-lock as read at the lane (ISO 18185 data; route for e-locks)."""

    seal_id: str = Field(pattern=r"^[0-9A-F]{4}-[0-9A-F]{8}$", description="manufacturer id - tag id, hex")
    kind: Literal["eseal", "elock"]
    state: Literal["sealed", "opened", "tampered"]
    sealed_at: str | None = Field(None, description="RFC 3339, the seal's own clock (to the minute)")
    opened_at: str | None = None
    battery_pct: int | None = Field(None, ge=0, le=100)
    battery_low: bool = False
    route: Literal["on_route", "off_route", "no_fix"] | None = Field(None, description="e-locks only")


class SealRead(_Payload):
    """The seals the lane read on the vehicle in position, and how they compare with the
    declaration (the named seal exceptions, empty when every declared seal is read and sealed)."""

    passage_id: str | None
    reader: str
    seals: tuple[SealInfo, ...]
    declared: tuple[str, ...] = Field((), description="seal ids the declaration names")
    exceptions: tuple[str, ...] = Field((), description="seal_missing, seal_foreign, seal_opened, ...")


class SealChanged(_Payload):
    """An e-lock applied or removed by the lane on a signed command (audited)."""

    passage_id: str | None
    reader: str
    seal_id: str = Field(pattern=r"^[0-9A-F]{4}-[0-9A-F]{8}$")
    action: Literal["apply", "remove"]
    state: Literal["sealed", "opened", "tampered"]
    agency: str
    command_nonce: str


CargoEventType = Literal[
    "rpm.occupancy",
    "rpm.alarm",
    "rpm.adjudicated",
    "seal.read",
    "seal.changed",
]

CARGO_EVENTS: dict[CargoEventType, type[_Payload]] = {
    "rpm.occupancy": RpmOccupancyEvent,
    "rpm.alarm": RpmAlarm,
    "rpm.adjudicated": RpmAdjudicated,
    "seal.read": SealRead,
    "seal.changed": SealChanged,
}
# =========================================================================== end of issue 21 block

EventType = Literal[_LaneEventType, CargoEventType]  # one flat Literal

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
    **cast("dict[EventType, type[_Payload]]", CARGO_EVENTS),
}

assert set(get_args(EventType)) == set(EVENTS), "EventType and EVENTS list the same event types"
