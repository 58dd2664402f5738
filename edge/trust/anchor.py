"""Signed audit checkpoints, published where the unit's own user cannot rewrite them.

A hash chain proves order, not completeness: whoever can write ``audit.jsonl`` can drop its
newest entries or replace it with a fresh chain. :class:`AuditAnchor` publishes a signed
:class:`~portlane.edge.trust.audit_chain.Checkpoint` of the unit's log — as an ``audit.checkpoint``
event (durable: it goes through the outbox, the platform keeps it) and retained on
``portlane/v1/{site}/{unit}/checkpoint`` (what ``portlane audit verify --broker`` reads) — every
:data:`CHECKPOINT_S` when the log grew, and at shutdown. Entries written after the newest
published checkpoint are protected only by the chain; the period bounds that window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from portlane.edge.contract.events import AuditCheckpoint
from portlane.edge.delivery.events import EventWriter
from portlane.edge.delivery.mqtt import MqttLink
from portlane.edge.trust.audit import AuditLog
from portlane.edge.trust.audit_chain import Checkpoint
from portlane.edge.trust.events import EventSigner

__all__ = ["CHECKPOINT_S", "AuditAnchor"]

log = logging.getLogger(__name__)

#: How often a grown log is anchored: the longest window in which deleting the newest entries
#: goes unnoticed (five minutes of a busy lane is ~25 audit entries).
CHECKPOINT_S = 300.0


class AuditAnchor:
    """Call :meth:`tick` on the daemon's tick and ``tick(force=True)`` at shutdown, before the
    outbox is drained (so the last checkpoint is delivered with the last events)."""

    def __init__(
        self,
        audit: AuditLog,
        signer: EventSigner,
        events: EventWriter,
        link: MqttLink,
        *,
        unit: str,
        clock: Callable[[], float],
        period_s: float = CHECKPOINT_S,
    ) -> None:
        self.audit = audit
        self.signer = signer
        self.events = events
        self.link = link
        self.unit = unit
        self.clock = clock
        self.period_s = period_s
        self.last: Checkpoint | None = None
        self._at: float | None = None

    def tick(self, *, force: bool = False) -> Checkpoint | None:
        """Publish a checkpoint if the period is over (or ``force``) and the log grew since the
        last one. Returns what was published, or None."""
        now = self.clock()
        if not force and self._at is not None and now - self._at < self.period_s:
            return None
        self._at = now
        if self.last is not None and self.audit.entries == self.last.entries:
            return None
        cp = self.audit.checkpoint(unit=self.unit, signer=self.signer)
        self.last = cp
        self.events.put("audit.checkpoint", AuditCheckpoint(**cp.as_dict()))
        # The event is in the outbox whatever happens; the retained copy is best effort (it is
        # refreshed by the next checkpoint).
        self.link.publish_best_effort(self.events.topics.checkpoint, cp.model_dump_json().encode(), retain=True)
        return cp
