"""What the consumer hands out: small frozen values the caller matches on (h11's shape).

* :class:`SiteEvent` — a verified event seen for the first time, with its contract model;
* :class:`UnitChanged` — a unit's :class:`UnitView` changed (its signed status, or the
  broker's unsigned last will);
* :class:`CommandAnswered` — a command this client sent was answered;
* :class:`GapAbandoned` — missing events given up on (a stream restart, no answer to replays);
* :class:`Anomaly` — something signed by a trusted key that breaks the contract (two events
  under one id, data that does not match its model): an alarm, never a fact;
* :class:`ReplayNeed` — (from ``SiteConsumer.due``) ask a unit to replay a range.

Unsigned and unverifiable input produces no output at all: it is counted
(``ConsumerStats.refused``) and the newest few are kept for display (``recent_refusals``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from portlane.edge.contract.envelope import Envelope
from portlane.edge.contract.events import UnitStatus
from pydantic import BaseModel

__all__ = [
    "Anomaly",
    "CommandAnswered",
    "ConsumerStats",
    "GapAbandoned",
    "Output",
    "Refusal",
    "ReplayNeed",
    "SiteEvent",
    "StreamView",
    "UnitChanged",
    "UnitState",
    "UnitView",
]

#: ``unknown``: no signed word yet; ``closed``: online but out of service;
#: ``unconfirmed_offline``: the broker published the unit's (unsigned) last will.
UnitState = Literal["unknown", "online", "closed", "offline", "unconfirmed_offline"]


@dataclass(frozen=True, slots=True)
class SiteEvent:
    """A verified event, first time seen. ``payload`` is its contract model
    (``contract.events.EVENTS``); None for a type this version does not know (a newer unit)."""

    unit: str
    type: str  # without "portlane.", e.g. "passage.completed"
    epoch: int
    seq: int
    key_id: str
    envelope: Envelope
    payload: BaseModel | None
    late: bool = False  # it filled a gap: a replay or a late redelivery, after newer events

    @property
    def id(self) -> str:
        return self.envelope.id

    @property
    def time(self) -> str:
        return self.envelope.time

    @property
    def subject(self) -> str | None:
        return self.envelope.subject

    @property
    def audience(self) -> tuple[str, ...]:
        return self.envelope.audience

    @property
    def data(self) -> Mapping[str, Any]:
        return self.envelope.data


@dataclass(frozen=True, slots=True)
class UnitView:
    """What the site's units say about themselves. ``state`` comes from the unit's newest
    signed ``unit.status`` only; the broker's last will (unsigned) makes it
    ``unconfirmed_offline`` and nothing more."""

    unit: str
    state: UnitState = "unknown"
    status: UnitStatus | None = None
    status_time: str | None = None  # the status event's time
    key_id: str | None = None
    will: bool = False  # an unsigned last will came after the newest signed status


@dataclass(frozen=True, slots=True)
class UnitChanged:
    view: UnitView


@dataclass(frozen=True, slots=True)
class CommandAnswered:
    """``signed``: the answer is the unit's signed event (``command.rejected`` naming the nonce,
    ``passage.decided`` naming it as ``command_nonce``); otherwise the unsigned response on the
    unit's response topic, which only the broker ACL protects."""

    unit: str
    nonce: str
    command: str
    ok: bool
    reason: str | None = None
    signed: bool = False


@dataclass(frozen=True, slots=True)
class GapAbandoned:
    unit: str
    epoch: int
    count: int
    why: Literal["stream_restarted", "no_answer", "too_many_gaps", "not_replayable"]


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: Literal["conflict", "bad_payload", "bad_envelope"]
    unit: str
    key_id: str
    detail: str


@dataclass(frozen=True, slots=True)
class ReplayNeed:
    unit: str
    epoch: int
    from_seq: int
    to_seq: int
    attempt: int


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    topic: str  # as received, cut to 200 characters


@dataclass(frozen=True, slots=True)
class StreamView:
    unit: str
    epoch: int
    max_seq: int
    received: int
    missing: tuple[tuple[int, int], ...]
    lost: int

    @property
    def missing_count(self) -> int:
        return sum(b - a + 1 for a, b in self.missing)


@dataclass
class ConsumerStats:
    messages: int = 0
    events: int = 0  # delivered: verified, first time
    late: int = 0  # of which filled a gap
    duplicates: int = 0
    anomalies: int = 0
    lost: int = 0  # missing events given up on
    wills: int = 0
    replays_requested: int = 0
    answers: int = 0
    other_responses: int = 0  # answers to other clients' commands (or to nothing)
    overflow: int = 0  # events the caller did not take in time (asked for again)
    refused: dict[str, int] = field(default_factory=dict)  # by reason (a closed set)

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "events": self.events,
            "late": self.late,
            "duplicates": self.duplicates,
            "anomalies": self.anomalies,
            "lost": self.lost,
            "wills": self.wills,
            "replays_requested": self.replays_requested,
            "answers": self.answers,
            "other_responses": self.other_responses,
            "overflow": self.overflow,
            "refused": dict(sorted(self.refused.items())),
        }


Output = SiteEvent | UnitChanged | CommandAnswered | GapAbandoned | Anomaly
