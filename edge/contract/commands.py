"""The ``args`` of each signed command, one model per command (the wire schema).

Wire format of a command (one JSON object, UTF-8)::

    {"v": 1, "cmd": "release", "site": "zhuhai-hzmb", "lane": "c01", "passage_id": "p-123",
     "args": {"agency": "customs"}, "issued_at": "2026-11-23T18:00:00.000Z",
     "expires_at": "2026-11-23T18:01:00.000Z", "nonce": "<>=16 random bytes, base64url, unpadded>",
     "key_id": "platform-2026", "sig": "<Ed25519 signature, standard base64>"}

The signature is Ed25519 over the RFC 8785 form of the command without ``sig``
(``contract/canonical.py``); verification is ``portlane.edge.trust.commands``. A command whose
args do not match its model is refused as ``malformed`` before anything acts on it; unknown
keys are refused too, so a signer cannot smuggle fields a later version might read.
"""

from __future__ import annotations

import enum
import hashlib
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from .canonical import b64decode_strict, b64url_decode_strict, canonical_json
from .times import parse_rfc3339
from .vocabulary import Verdict

__all__ = [
    "ADJUDICATION_CODES",
    "ARGS",
    "CARGO_ARGS",
    "COMMAND_NAMES",
    "ID_PATTERN",
    "NONCE_MIN_BYTES",
    "PREDECISION_COMMANDS",
    "AdjudicateArgs",
    "AdjudicationCode",
    "AgencyArgs",
    "BoardArgs",
    "BoardLineArg",
    "CommandName",
    "CorrectIdentityArgs",
    "DecisionArgs",
    "DeclaredContainer",
    "ExpectedVehicle",
    "ExpectedVehiclesArgs",
    "LaneServiceArgs",
    "PredecisionArgs",
    "ReplayEventsArgs",
    "RevokeArgs",
    "SealCommandArgs",
    "SignedCommand",
    "parse_args",
]

#: Ids of sites, units and keys.
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
#: A nonce carries at least this many random bytes.
NONCE_MIN_BYTES = 16

Text = Annotated[str, Field(max_length=200)]
Ident = Annotated[str, Field(min_length=1, max_length=64)]
#: ISO 18185 seal id as the lane writes it: manufacturer id - tag id, hex (drivers.cargo_devices).
SEAL_ID = Annotated[str, Field(pattern=r"^[0-9A-F]{4}-[0-9A-F]{8}$")]


class CommandArgs(BaseModel):
    """Base of every command's ``args`` model: frozen, strict, no unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class AgencyArgs(CommandArgs):
    """``release`` / ``hold`` / ``divert``: the agency the verdict is given for."""

    agency: Ident


class DecisionArgs(CommandArgs):
    """``decision``: one agency's verdict on the current passage."""

    agency: Ident
    verdict: Verdict


class CorrectIdentityArgs(CommandArgs):
    """``correct_identity``: an officer's correction of the lane's identification (audited)."""

    plates: tuple[Text, ...] = Field((), max_length=4)
    containers: tuple[Text, ...] = Field((), max_length=4)
    tag_id: Text | None = None
    operator: Annotated[str, Field(min_length=1, max_length=64)]
    reason: Annotated[str, Field(min_length=8, max_length=500)]


class BoardLineArg(CommandArgs):
    text: Text
    colour: Literal["red", "green", "amber"] = "green"


class BoardArgs(CommandArgs):
    """``board_message``: lines for the LED guidance board."""

    lines: tuple[BoardLineArg, ...] = Field(min_length=1, max_length=4)


class ExpectedVehicle(CommandArgs):
    tag_id: Ident
    plates: tuple[Text, ...] = Field(min_length=1, max_length=4)
    seals: tuple[SEAL_ID, ...] | None = Field(
        None,
        max_length=8,
        description="ISO 18185 seal ids its declaration names for this trip; the lane reads the seals and names "
        "a missing or foreign one. None: nothing declared (only the seals' own states are checked)",
    )


class ExpectedVehiclesArgs(CommandArgs):
    """``expected_vehicles``: the vehicles the platform expects and their registered plates."""

    vehicles: tuple[ExpectedVehicle, ...] = Field(max_length=100_000)


class LaneServiceArgs(CommandArgs):
    """``close_lane`` / ``open_lane``."""

    reason: Text = "platform command"


class ReplayEventsArgs(CommandArgs):
    """``replay_events``: re-send retained events from ``from_seq`` (to ``to_seq``) of the
    unit's current stream, with their original ids."""

    from_seq: Annotated[int, Field(ge=1)]
    to_seq: Annotated[int, Field(ge=1)] | None = None


# =========================================================================== issue 21: cargo devices
# Adjudication of radiation alarms and e-lock commands. A separate block so that other additions
# to the contract merge without touching it; joined to ARGS / CommandName below.


class AdjudicationCode(enum.IntEnum):
    """Why an alarm was what it was — the closed set of OSCAR's adjudication codes 1–11 (Oak
    Ridge / OpenSensorHub), same numbers, so records can be compared with theirs. The group is
    in the name: REAL_*, INNOCENT_*, FALSE_*, TEST_*, TAMPER_*, OTHER."""

    REAL_CONTRABAND = 1  # real alarm: contraband (a source, nuclear material) found
    REAL_OTHER = 2  # real alarm: other
    INNOCENT_MEDICAL = 3  # innocent alarm: medical isotope (a patient, a consignment)
    INNOCENT_NORM = 4  # innocent alarm: naturally occurring radioactive material in the cargo
    INNOCENT_DECLARED = 5  # innocent alarm: a declared shipment of radioactive material
    FALSE_INSPECTION_NEGATIVE = 6  # false alarm: physical inspection found nothing
    FALSE_BACKGROUND_ONLY = 7  # false alarm: the isotope identifier saw background only
    FALSE_OTHER = 8  # false alarm: other
    TEST_MAINTENANCE = 9  # authorised test, maintenance or training
    TAMPER_UNAUTHORISED = 10  # tamper / fault: unauthorised activity at the portal
    OTHER = 11


#: code -> (group, label), for displays and reports.
ADJUDICATION_CODES: dict[int, tuple[str, str]] = {
    1: ("real", "contraband found"),
    2: ("real", "other"),
    3: ("innocent", "medical isotope found"),
    4: ("innocent", "NORM found"),
    5: ("innocent", "declared shipment of radioactive material"),
    6: ("false", "physical inspection negative"),
    7: ("false", "isotope identifier indicates background only"),
    8: ("false", "other"),
    9: ("test", "authorised test, maintenance or training"),
    10: ("tamper", "unauthorised activity"),
    11: ("other", "other"),
}


class AdjudicateArgs(CommandArgs):
    """``adjudicate``: an authorised agency's adjudication of the radiation alarm of the
    passage's occupancy (after secondary inspection)."""

    agency: Ident
    occupancy: Annotated[int, Field(ge=0)]
    code: Annotated[int, Field(ge=1, le=11)]
    isotopes: tuple[Annotated[str, Field(min_length=1, max_length=16)], ...] = Field((), max_length=8)
    remark: Text = ""


class SealCommandArgs(CommandArgs):
    """``seal_apply`` / ``seal_remove``: lock or unlock a cross-boundary e-lock on the vehicle in
    position. ``authorisation`` is the one-time code customs issued for this lock; the lock
    itself checks it, the lane only forwards it."""

    agency: Ident
    seal_id: SEAL_ID
    authorisation: Annotated[str, Field(pattern=r"^[!-~]{8}$", description="8 printable ASCII characters")]
    reason: Text = ""


CARGO_ARGS: dict[str, type[CommandArgs]] = {
    "adjudicate": AdjudicateArgs,
    "seal_apply": SealCommandArgs,
    "seal_remove": SealCommandArgs,
}
CargoCommandLiteral = Literal["adjudicate", "seal_apply", "seal_remove"]
# =========================================================================== end of issue 21 block


# --------------------------------------------------------------------------------------------
# Pre-decisions (issue 20): an agency's verdict signed before the vehicle arrives, and the
# control order (布控) that revokes it. The lane matches what it reads against them and releases a
# vehicle on its own only on a full match with every configured agency's pre-decision
# (``portlane.edge.lane.predecisions`` has the rules). Times inside ``args`` are the
# pre-decision's own; the command's ``issued_at``/``expires_at`` only bound its delivery.

#: ISO 6346 container number (owner, category, serial, check digit); the check digit is the lane's to check.
CONTAINER_NUMBER_PATTERN = r"^[A-Z]{3}[UJZ][0-9]{7}$"
#: ISO 6346 size/type code, e.g. ``22G1``, ``45R1``, ``L5G1``.
SIZE_TYPE_PATTERN = r"^[0-9A-Z]{4}$"
#: A loaded 6-axle container truck is at most ~49 t (GB 1589); 200 t leaves room for abnormal loads.
MAX_GROSS_WEIGHT_KG = 200_000
#: Plates, containers and seals one vehicle can carry (two plates; one 40' or two 20' boxes; a few seals).
MAX_PLATES = 4
MAX_CONTAINERS = 4
MAX_SEALS = 8
#: Lanes one pre-decision may name (a crossing's lanes in one direction).
MAX_LANES = 64


def _rfc3339(v: str) -> str:
    parse_rfc3339(v)
    return v


Rfc3339 = Annotated[str, Field(min_length=20, max_length=40), AfterValidator(_rfc3339)]


class DeclaredContainer(CommandArgs):
    number: Annotated[str, Field(pattern=CONTAINER_NUMBER_PATTERN)]
    size_type: Annotated[str, Field(pattern=SIZE_TYPE_PATTERN)]


class PredecisionArgs(CommandArgs):
    """``predecision``: one agency's verdict on a declared vehicle, signed in advance.

    What must match: ``plates`` (every plate the vehicle carries, the paired Hong Kong or Macau
    plate too), ``tag_id`` (the e-card: required, the lane releases nothing on plates alone —
    a control order on the e-card must be able to win), ``containers`` (order-free, each with its size/type
    code), ``gross_weight_kg`` within ``weight_tolerance_kg``, ``seals`` when given. Where and
    when: ``lanes``, the appointment window ``window_start``..``window_end``. ``verdict``
    ``release`` lets the lane open on a full match; ``inspect`` queues the one scan at arrival.
    ``valid_until``: after it the pre-decision is void. ``predecision_id`` is one-time: it
    releases exactly one passage."""

    predecision_id: Ident
    agency: Ident
    verdict: Literal["release", "inspect"]
    plates: tuple[Text, ...] = Field(min_length=1, max_length=MAX_PLATES)
    tag_id: Ident
    containers: tuple[DeclaredContainer, ...] = Field((), max_length=MAX_CONTAINERS)
    gross_weight_kg: Annotated[int, Field(ge=0, le=MAX_GROSS_WEIGHT_KG)] | None = None
    weight_tolerance_kg: Annotated[int, Field(ge=0, le=MAX_GROSS_WEIGHT_KG)] | None = None
    seals: tuple[Ident, ...] | None = Field(None, max_length=MAX_SEALS)
    lanes: tuple[Annotated[str, Field(pattern=ID_PATTERN)], ...] = Field(min_length=1, max_length=MAX_LANES)
    window_start: Rfc3339
    window_end: Rfc3339
    valid_until: Rfc3339

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if parse_rfc3339(self.window_end) <= parse_rfc3339(self.window_start):
            raise ValueError("window_end must be after window_start")
        if parse_rfc3339(self.valid_until) <= parse_rfc3339(self.window_start):
            raise ValueError("valid_until must be after window_start")
        if (self.gross_weight_kg is None) != (self.weight_tolerance_kg is None):
            raise ValueError("gross_weight_kg and weight_tolerance_kg go together")
        for what, values in (
            ("plates", self.plates),
            ("containers", tuple(c.number for c in self.containers)),
            ("seals", self.seals or ()),
        ):
            if len(set(values)) != len(values):
                raise ValueError(f"{what} listed twice")
        return self


class RevokeArgs(CommandArgs):
    """``revoke``: a control order (布控). Names either one pre-decision (``predecision_id``)
    or a vehicle (``plates`` and/or ``tag_id``); it wins over every pre-decision it covers,
    one already matched but not yet driven through included, until ``valid_until``."""

    agency: Ident
    predecision_id: Ident | None = None
    plates: tuple[Text, ...] = Field((), max_length=MAX_PLATES)
    tag_id: Ident | None = None
    reason: Annotated[str, Field(min_length=1, max_length=200)]
    valid_until: Rfc3339

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        vehicle = bool(self.plates) or self.tag_id is not None
        if vehicle == (self.predecision_id is not None):
            raise ValueError("name either predecision_id or a vehicle (plates and/or tag_id), not both")
        return self


#: The commands of this block (each carries ``args.agency``: per-key agency authority applies).
PREDECISION_COMMANDS = frozenset({"predecision", "revoke"})


ARGS: dict[str, type[CommandArgs]] = {
    "decision": DecisionArgs,
    "release": AgencyArgs,
    "hold": AgencyArgs,
    "divert": AgencyArgs,
    "correct_identity": CorrectIdentityArgs,
    "board_message": BoardArgs,
    "expected_vehicles": ExpectedVehiclesArgs,
    "close_lane": LaneServiceArgs,
    "open_lane": LaneServiceArgs,
    "replay_events": ReplayEventsArgs,
    **CARGO_ARGS,
    "predecision": PredecisionArgs,
    "revoke": RevokeArgs,
}


#: Per command, a model that reads only ``args`` out of the whole command's JSON, so the args are
#: validated from the bytes that arrived (JSON mode: arrays are tuples, strict types) without
#: turning them back into JSON first.
_ARGS_IN_COMMAND: dict[str, type[BaseModel]] = {
    name: create_model(
        f"_{model.__name__}In{''.join(p.capitalize() for p in name.split('_'))}",
        __config__=ConfigDict(extra="ignore", strict=True),
        args=(model, ...),
    )
    for name, model in ARGS.items()
}


def parse_args(name: str, command_json: bytes) -> CommandArgs:
    """The ``args`` of command ``name`` as its model, read from the command's own JSON bytes.
    Raises ``KeyError`` for a command without a model, ``pydantic.ValidationError`` when the
    args do not match it."""
    wrapped = _ARGS_IN_COMMAND[name].model_validate_json(command_json)
    args = getattr(wrapped, "args")  # noqa: B009 - the field of a model made at run time
    assert isinstance(args, CommandArgs)
    return args


class CommandName(enum.StrEnum):
    DECISION = "decision"  # an agency's verdict: args {agency, verdict: release|inspect|hold, ...}
    RELEASE = "release"
    HOLD = "hold"
    DIVERT = "divert"
    CORRECT_IDENTITY = "correct_identity"
    BOARD_MESSAGE = "board_message"
    EXPECTED_VEHICLES = "expected_vehicles"
    CLOSE_LANE = "close_lane"
    OPEN_LANE = "open_lane"
    REPLAY_EVENTS = "replay_events"  # re-send retained events: args {from_seq, to_seq}
    # issue 21
    ADJUDICATE = "adjudicate"  # an agency adjudicates a radiation alarm: args {agency, occupancy, code, ...}
    SEAL_APPLY = "seal_apply"  # lock an e-lock: args {agency, seal_id, authorisation}
    SEAL_REMOVE = "seal_remove"  # unlock an e-lock: args {agency, seal_id, authorisation}
    PREDECISION = "predecision"  # an agency's verdict signed in advance for a declared vehicle
    REVOKE = "revoke"  # a control order: revokes pre-decisions by id or by vehicle


COMMAND_NAMES: tuple[str, ...] = tuple(c.value for c in CommandName)
_LaneCommandLiteral = Literal[
    "decision",
    "release",
    "hold",
    "divert",
    "correct_identity",
    "board_message",
    "expected_vehicles",
    "close_lane",
    "open_lane",
    "replay_events",
    "predecision",
    "revoke",
]
CommandLiteral = Literal[_LaneCommandLiteral, CargoCommandLiteral]  # one flat Literal


class SignedCommand(BaseModel):
    """A command as signed by the central platform. Every field is required (``passage_id``
    may be null), types are strict and unknown fields are rejected, so the model and the
    received JSON object are the same thing and :meth:`signed_bytes` is what was signed."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    v: Literal[1]
    cmd: CommandLiteral
    site: str = Field(pattern=ID_PATTERN)
    lane: str = Field(pattern=ID_PATTERN)
    passage_id: str | None = Field(min_length=1, max_length=128)
    args: dict[str, Any]
    issued_at: str
    expires_at: str
    nonce: str = Field(min_length=22, max_length=128)
    key_id: str = Field(pattern=ID_PATTERN)
    sig: str = Field(min_length=1, max_length=128)

    @field_validator("v", mode="before")
    @classmethod
    def _v_is_int(cls, v: Any) -> Any:
        if type(v) is not int:  # pydantic's Literal[1] lets True through
            raise ValueError("v must be the integer 1")
        return v

    @field_validator("args")
    @classmethod
    def _args_canonical(cls, v: dict[str, Any]) -> dict[str, Any]:
        canonical_json(v, allow_floats=False)
        return v

    @field_validator("issued_at", "expires_at")
    @classmethod
    def _timestamp(cls, v: str) -> str:
        parse_rfc3339(v)
        return v

    @field_validator("nonce")
    @classmethod
    def _nonce(cls, v: str) -> str:
        if len(b64url_decode_strict(v)) < NONCE_MIN_BYTES:
            raise ValueError(f"nonce must carry at least {NONCE_MIN_BYTES} random bytes")
        return v

    @field_validator("sig")
    @classmethod
    def _sig(cls, v: str) -> str:
        if len(b64decode_strict(v)) != 64:
            raise ValueError("an Ed25519 signature is 64 bytes")
        return v

    @model_validator(mode="after")
    def _window(self) -> Self:
        if parse_rfc3339(self.expires_at) <= parse_rfc3339(self.issued_at):
            raise ValueError("expires_at must be after issued_at")
        return self

    @property
    def issued_at_dt(self) -> datetime:
        return parse_rfc3339(self.issued_at)

    @property
    def expires_at_dt(self) -> datetime:
        return parse_rfc3339(self.expires_at)

    def signed_bytes(self) -> bytes:
        """The canonical bytes the signature covers: every field except ``sig``."""
        return canonical_json(self.model_dump(exclude={"sig"}), allow_floats=False)

    def to_json_bytes(self) -> bytes:
        """The wire form: the canonical JSON of the whole command, ``sig`` included."""
        return canonical_json(self.model_dump(), allow_floats=False)

    def digest(self) -> str:
        """sha256 (hex) of the wire form: what an audit entry names a command by."""
        return hashlib.sha256(self.to_json_bytes()).hexdigest()
