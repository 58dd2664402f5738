"""One path for every signed command a unit takes: verify, read the args, act, answer.

    cmd/{name} ─ verify (signature, key, time, target, authority, nonce; args as their model)
               ─ the unit's handler acts ─ audit ``command_accepted`` ─ answer ok
    any refusal ─ counted by reason ─ aggregated (``RejectionAggregator``) ─ while under its
               thresholds: audited, published as a ``command.rejected`` event and answered

Every unit (lane, scanner, and any later kind) receives its commands through a
:class:`CommandPath`; what differs is only the handler, which gets a
:class:`~portlane.edge.trust.commands.VerifiedCommand` whose ``args`` is already the command's
model and returns an :class:`Outcome`. The answer goes to the unit's own response topic, never
to a topic the sender names, and without waiting for the broker (the outcome is also in the
durable events and the audit log). A message the sender controls never raises out of
:meth:`CommandPath.handle`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from portlane.edge.contract.events import CommandRejected, CommandResponse
from portlane.edge.contract.topics import Topics
from portlane.edge.delivery.events import EventWriter
from portlane.edge.errors import CommandRejectedError
from portlane.edge.trust.audit import AuditLog
from portlane.edge.trust.commands import CommandVerifier, RejectReason, VerifiedCommand
from portlane.edge.trust.rejections import RejectionAggregator

__all__ = ["CommandCounters", "CommandHandler", "CommandPath", "Outcome"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a unit's handler decided for a verified command: ``ok``, or refused with ``reason``
    (a word the platform can act on: ``stale_passage``, ``wrong_stage`` …). ``audit`` is extra
    data for the ``command_accepted`` entry; ``effect`` is carried out after that entry is
    written (the record is on disk before anything moves)."""

    ok: bool
    reason: str | None = None
    audit: Mapping[str, Any] = field(default_factory=dict)
    effect: Callable[[], None] | None = None


CommandHandler = Callable[[VerifiedCommand], Outcome]


@dataclass
class CommandCounters:
    accepted: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)


class CommandPath:
    """Commands for one unit. ``handlers`` maps each command name the unit takes to its
    handler; any other name is refused as ``malformed`` after verification (so a captured
    command cannot probe which names a unit knows)."""

    def __init__(
        self,
        *,
        unit: str,
        lane: str | None,
        topics: Topics,
        verifier: CommandVerifier,
        audit: AuditLog,
        events: EventWriter,
        respond: Callable[[str, bytes], None],
        clock: Callable[[], float],
        handlers: Mapping[str, CommandHandler] | None = None,
    ) -> None:
        self.unit = unit
        self.lane = lane  # the audit entries' lane (None for a unit that is not a lane)
        self.topics = topics
        self.verifier = verifier
        self.audit = audit
        self.events = events
        self.respond = respond  # (topic, body): best effort, never waits for the broker
        self.handlers: dict[str, CommandHandler] = dict(handlers or {})
        self.counters = CommandCounters()
        self.rejections = RejectionAggregator(audit, lane=lane, clock=clock)

    def register(self, name: str, handler: CommandHandler) -> None:
        self.handlers[name] = handler

    def handle(self, name: str, payload: bytes) -> None:
        """One message on ``cmd/{name}``."""
        try:
            cmd = self.verifier.verify(payload)
        except CommandRejectedError as exc:
            self._reject(name, exc.reason, exc.nonce, exc.key_id, exc.detail)
            return
        if cmd.name != name:
            self._reject(name, RejectReason.MALFORMED, cmd.nonce, cmd.key_id, f"topic says {name}, command {cmd.name}")
            return
        handler = self.handlers.get(name)
        if handler is None:
            detail = f"{self.unit} does not take {name!r}"
            self._reject(name, RejectReason.MALFORMED, cmd.nonce, cmd.key_id, detail)
            return
        outcome = handler(cmd)
        if not outcome.ok:
            self._reject(name, outcome.reason or "refused", cmd.nonce, cmd.key_id, outcome.reason or "")
            return
        self.counters.accepted += 1
        self.audit.append(
            "command_accepted",
            actor=cmd.key_id,
            reason=cmd.name,
            lane=self.lane,
            data={"nonce": cmd.nonce, "passage_id": cmd.passage_id, **outcome.audit},
        )
        if outcome.effect is not None:
            outcome.effect()
        self._answer(name, cmd.nonce, True, None)

    def flush(self, *, force: bool = False) -> None:
        """Close the aggregation window when it is over (on the unit's tick; ``force`` at stop)."""
        self.rejections.flush(force=force)

    def _reject(self, name: str, reason: str, nonce: str | None, key_id: str | None, detail: str) -> None:
        """Count a refusal; audit, publish and answer it only while under the aggregator's
        thresholds (a flood costs counters, not fsyncs)."""
        reason = str(reason)
        c = self.counters
        c.rejected += 1
        c.rejected_by_reason[reason] = c.rejected_by_reason.get(reason, 0) + 1
        if not self.rejections.record(reason, key_id=key_id, command=name, nonce=nonce, detail=detail):
            return
        self.events.put(
            "command.rejected", CommandRejected(command=name[:64], reason=reason, nonce=nonce, key_id=key_id)
        )
        self._answer(name, nonce, False, reason)

    def _answer(self, name: str, nonce: str | None, ok: bool, reason: str | None) -> None:
        body = CommandResponse(correlation_id=nonce, command=name[:64], ok=ok, reason=reason)
        self.respond(self.topics.response, body.model_dump_json().encode())
