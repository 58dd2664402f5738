"""Writes a unit's events (contract models) to its durable outbox: one topic per type (or the
topic the caller names: a scanner's per-lane scan topics, ``contract.topics``), metrics on the
way. The lane and the scanner both write through it.

When the outbox refuses an event (full under ``reject_new``, a full disk, a read-only
remount), the writer reports it through ``on_refused`` and the lane takes itself out of service
(audited) rather than take vehicles it cannot record. The refused event is not dropped: it is
held in memory, in order (at most ``HELD_MAX``; newer events queue behind it), and written as
soon as the outbox accepts again (``flush_held``, on the daemon's tick) — the vehicle under way
when the disk filled still gets its ``vehicle.identified`` to the platform, and its decision.
Held events are lost only if the process dies before space comes back.

``put_many`` writes several events in one transaction (one fsync): what a daemon writes for
one input — a decision and the release it completes — costs the disk one flush, not one each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from portlane.edge.contract.envelope import Envelope
from portlane.edge.contract.events import EVENTS, EventType, PassageCompleted
from portlane.edge.contract.topics import Topics
from portlane.edge.delivery.outbox import Outbox, OutboxEvent
from portlane.edge.errors import OutboxError
from pydantic import BaseModel

__all__ = ["EventMetrics", "EventWriter"]

log = logging.getLogger(__name__)

#: Refused events held in memory for a later write; beyond this the oldest are dropped (logged).
HELD_MAX = 256


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
        self.held: list[tuple[EventType, dict[str, Any], str | None, str]] = []  # refused, in order (with topic)
        self.held_dropped = 0
        self._refusal: OutboxError | None = None  # why the outbox last refused

    def put(
        self, type_: EventType, data: BaseModel, *, subject: str | None = None, topic: str | None = None
    ) -> Envelope | None:
        """Write one event on ``topic`` (default: the unit's topic for the type); None when the
        outbox refused it (``on_refused`` was told)."""
        return self.put_many([(type_, data, subject, topic)])[0]

    def put_many(self, events: Sequence[tuple[EventType, BaseModel, str | None, str | None]]) -> list[Envelope | None]:
        """Write ``(type, data, subject, topic)`` events in order (``topic`` None: the unit's
        topic for the type), in one transaction (one fsync): all of them, or — when the outbox
        refuses — none, each then held (``None`` in its place)."""
        payloads = [
            (type_, self._payload(type_, data), subject, topic or self.topics.event(type_))
            for type_, data, subject, topic in events
        ]
        if not payloads:
            return []
        if self.held:
            # Not before what is held (order kept); the daemon's tick writes them (flush_held).
            assert self._refusal is not None
            for item in payloads:
                self._hold(*item, self._refusal)
            return [None] * len(payloads)
        try:
            envelopes = self.outbox.put_many(
                [OutboxEvent(type_, payload, topic, subject) for type_, payload, subject, topic in payloads]
            )
        except OutboxError as exc:
            for item in payloads:
                self._hold(*item, exc)
            return [None] * len(payloads)
        return list(envelopes)

    def _payload(self, type_: EventType, data: BaseModel) -> dict[str, Any]:
        model = EVENTS[type_]
        if not isinstance(data, model):
            raise TypeError(f"{type_} carries {model.__name__}, not {type(data).__name__}")
        if self.metrics is not None:
            if isinstance(data, PassageCompleted):
                self.metrics.passage_completed(data.outcome, data.stage_ms)
            elif type_ == "command.rejected":
                self.metrics.command_rejected(str(getattr(data, "reason", "")))
        return data.model_dump(mode="json")

    def flush_held(self) -> bool:
        """Write the held events, oldest first (the daemons call it on their tick); True when
        none is left."""
        while self.held:
            type_, payload, subject, topic = self.held[0]
            try:
                self.outbox.put(type_, payload, topic=topic, subject=subject)
            except OutboxError as exc:
                self._refusal = exc
                return False
            self.held.pop(0)
            if not self.held:
                log.warning("%s: the outbox accepts events again; the held events are written", self.topics.unit)
        return True

    def _hold(
        self, type_: EventType, payload: dict[str, Any], subject: str | None, topic: str, exc: OutboxError
    ) -> None:
        self.refused += 1
        self._refusal = exc
        if not self.held:
            log.error("%s: %s (events are held in memory until it accepts again)", self.topics.unit, exc)
        self.held.append((type_, payload, subject, topic))
        if len(self.held) > HELD_MAX:
            self.held.pop(0)
            self.held_dropped += 1
            if self.held_dropped in (1, 10, 100, 1000):
                log.error(
                    "%s: %d held events dropped (more than %d held)", self.topics.unit, self.held_dropped, HELD_MAX
                )
        if self.on_refused is not None:
            self.on_refused(exc)
