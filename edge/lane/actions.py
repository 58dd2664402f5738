"""The typed seam between the lane's pure logic and its I/O.

``LaneLogic`` returns a list of these small frozen values (``Publish`` is every unit's, from
``portlane.edge.unit.actions``); the ``Executor`` carries them out
in order, matching on their type (h11-style events and effects, no dicts read back with
string keys). Events and audit entries are written to disk at once, in the order the logic
produced them; device actions run on the executor's task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from portlane.edge.contract.events import GateCause
from portlane.edge.unit.actions import Publish

__all__ = [
    "Action",
    "Audit",
    "BoardColour",
    "BoardText",
    "CloseGate",
    "GateCause",
    "Identify",
    "OpenGate",
    "Publish",
    "SealCommand",
    "SetLight",
    "ShowBoard",
    "StopGate",
]

LightColour = Literal["red", "green", "amber", "off"]
BoardColour = Literal["red", "green", "amber"]


@dataclass(frozen=True, slots=True)
class OpenGate:
    passage_id: str | None
    cause: GateCause


@dataclass(frozen=True, slots=True)
class CloseGate:
    passage_id: str | None
    cause: GateCause


@dataclass(frozen=True, slots=True)
class StopGate:
    cause: GateCause


@dataclass(frozen=True, slots=True)
class SetLight:
    colour: LightColour


@dataclass(frozen=True, slots=True)
class BoardText:
    text: str
    colour: BoardColour = "green"


@dataclass(frozen=True, slots=True)
class ShowBoard:
    lines: tuple[BoardText, ...]

    @classmethod
    def of(cls, *lines: tuple[str, BoardColour]) -> ShowBoard:
        return cls(tuple(BoardText(t, c) for t, c in lines))


@dataclass(frozen=True, slots=True)
class Identify:
    """Start collecting the vehicle's identity (tag, weight, camera reads) for this passage."""

    passage_id: str


@dataclass(frozen=True, slots=True)
class Audit:
    """An entry in the append-only audit log, written before the action it justifies."""

    kind: str
    actor: str
    reason: str
    passage_id: str | None = None
    data: tuple[tuple[str, Any], ...] = ()

    def fields(self) -> dict[str, Any]:
        return {"passage_id": self.passage_id, **dict(self.data)}


@dataclass(frozen=True, slots=True)
class SealCommand:
    """Apply or remove an e-lock on a verified ``seal_apply`` / ``seal_remove``: the executor
    audits it, then tells the reader (the lock checks the authorisation code itself), then
    reports the lock's answer back to the logic (``seal.changed``, or a named refusal)."""

    action: Literal["apply", "remove"]
    seal_id: str
    authorisation: str = field(repr=False)  # customs' one-time code: never logged, audited or published
    passage_id: str | None = None
    agency: str = ""
    key_id: str = ""
    nonce: str = ""


Action = OpenGate | CloseGate | StopGate | SetLight | ShowBoard | Identify | Publish | Audit | SealCommand
