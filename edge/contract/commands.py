"""The ``args`` of each signed command, one model per command (the wire schema).

A command whose args do not match its model is refused as ``malformed`` before anything acts
on it; unknown keys are refused too, so a signer cannot smuggle fields a later version might
read. The envelope of a signed command (``v``, ``cmd``, ``site``, ``lane``, ``nonce``,
``expires_at``, ``sig`` …) is ``portlane.edge.trust.security.SignedCommand``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ARGS",
    "AgencyArgs",
    "BoardArgs",
    "BoardLineArg",
    "CorrectIdentityArgs",
    "DecisionArgs",
    "ExpectedVehicle",
    "ExpectedVehiclesArgs",
    "LaneServiceArgs",
    "ReplayEventsArgs",
]

Text = Annotated[str, Field(max_length=200)]
Ident = Annotated[str, Field(min_length=1, max_length=64)]


class _Args(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class AgencyArgs(_Args):
    """``release`` / ``hold`` / ``divert``: the agency the verdict is given for."""

    agency: Ident


class DecisionArgs(_Args):
    """``decision``: one agency's verdict on the current passage."""

    agency: Ident
    verdict: Literal["release", "inspect", "hold", "divert"]


class CorrectIdentityArgs(_Args):
    """``correct_identity``: an officer's correction of the lane's identification (audited)."""

    plates: tuple[Text, ...] = Field((), max_length=4)
    containers: tuple[Text, ...] = Field((), max_length=4)
    tag_id: Text | None = None
    operator: Annotated[str, Field(min_length=1, max_length=64)]
    reason: Annotated[str, Field(min_length=8, max_length=500)]


class BoardLineArg(_Args):
    text: Text
    colour: Literal["red", "green", "amber"] = "green"


class BoardArgs(_Args):
    """``board_message``: lines for the LED guidance board."""

    lines: tuple[BoardLineArg, ...] = Field(min_length=1, max_length=4)


class ExpectedVehicle(_Args):
    tag_id: Ident
    plates: tuple[Text, ...] = Field(min_length=1, max_length=4)


class ExpectedVehiclesArgs(_Args):
    """``expected_vehicles``: the vehicles the platform expects and their registered plates."""

    vehicles: tuple[ExpectedVehicle, ...] = Field(max_length=100_000)


class LaneServiceArgs(_Args):
    """``close_lane`` / ``open_lane``."""

    reason: Text = "platform command"


class ReplayEventsArgs(_Args):
    """``replay_events``: re-send retained events from ``from_seq`` (to ``to_seq``) of the
    unit's current stream, with their original ids."""

    from_seq: Annotated[int, Field(ge=1)]
    to_seq: Annotated[int, Field(ge=1)] | None = None


ARGS: dict[str, type[_Args]] = {
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
}
