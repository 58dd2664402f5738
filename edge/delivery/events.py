"""Writes a unit's events (contract models) to its durable outbox: one topic per type,
metrics on the way. The lane and the scanner both write through it.

When the outbox refuses an event (full under ``reject_new``), the record of the passage cannot
be kept, so the writer reports it through ``on_refused`` and the lane takes itself out of
service (audited) rather than go on without a record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from portlane.edge.contract.envelope import Envelope
from portlane.edge.contract.events import EVENTS, EventType, PassageCompleted
from portlane.edge.contract.topics import Topics
from portlane.edge.delivery.outbox import Outbox
from portlane.edge.errors import OutboxError
from pydantic import BaseModel

__all__ = ["EventMetrics", "EventWriter"]

log = logging.getLogger(__name__)


class EventMetrics(Protocol):
    def passage_completed(self, outcome: str, stage_ms: dict[str, int]) -> None: ...

    def command_rejected(self, reason: str) -> None: ...


class EventWriter:
    def __init__(
        self,
        outbox: Outbox,
        topics: Topics,
        *,
        metrics: EventMetrics | None = None,
        on_refused: Callable[[OutboxError], None] | None = None,
    ) -> None:
        self.outbox = outbox
        self.topics = topics
        self.metrics = metrics
        self.on_refused = on_refused
        self.refused = 0

    def put(self, type_: EventType, data: BaseModel, *, subject: str | None = None) -> Envelope | None:
        """Write one event; None when the outbox refused it (``on_refused`` was told)."""
        model = EVENTS[type_]
        if not isinstance(data, model):
            raise TypeError(f"{type_} carries {model.__name__}, not {type(data).__name__}")
        if self.metrics is not None:
            if isinstance(data, PassageCompleted):
                self.metrics.passage_completed(data.outcome, data.stage_ms)
            elif type_ == "command.rejected":
                self.metrics.command_rejected(str(getattr(data, "reason", "")))
        payload = data.model_dump(mode="json")
        try:
            return self.outbox.put(type_, payload, topic=self.topics.event(type_), subject=subject)
        except OutboxError as exc:
            self.refused += 1
            log.error("%s: %s", self.topics.unit, exc)
            if self.on_refused is not None:
                self.on_refused(exc)
            return None
