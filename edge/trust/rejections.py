"""Rejections audited in aggregate: a flood of forgeries costs counters, not fsyncs.

Every rejected command (or event) used to write one fsync'ed audit entry and one outbox
event: 3,000 unsigned commands meant 3,000 of each, and a valid release queued behind them
waited 21.8 s. :class:`RejectionAggregator` keeps the evidence and bounds the work:

* per *bucket* — ``(key, reason)`` in one window (default one minute, aligned to the clock) —
  the first ``threshold`` rejections are written individually (kind ``command_rejected``)
  and :meth:`~RejectionAggregator.record` returns True: the caller may also publish its
  ``command.rejected`` event and answer the sender;
* past the threshold, a rejection only increments a counter and ``record`` returns False:
  no write, no event, no answer;
* when the window is over (checked on every ``record`` and by :meth:`~RejectionAggregator.flush`,
  which the daemon calls on its tick and at shutdown), each bucket that suppressed anything
  gets one summary entry (kind ``command_rejected_summary``) with the counts.

The key of a rejection that failed before the signature verified (``malformed``, ``unsigned``,
``unknown_key``, ``bad_signature``) is whatever the sender wrote, so those are bucketed under
``unauthenticated`` (the claimed key id is kept in the individual entries only): an attacker
cannot mint buckets by varying ``key_id``. ``max_individual`` caps individual entries per
window over all buckets for the same reason.

Not thread-safe: call it from the daemon's event loop.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from portlane.edge.contract.times import format_rfc3339

__all__ = [
    "PRE_AUTH_REASONS",
    "UNAUTHENTICATED",
    "AuditSink",
    "RejectionAggregator",
    "RejectionSummary",
]

#: Rejection reasons decided before the signature verified: the claimed key proves nothing.
PRE_AUTH_REASONS = frozenset({"malformed", "unsigned", "unknown_key", "bad_signature"})
#: Bucket key of rejections whose key could not be authenticated.
UNAUTHENTICATED = "unauthenticated"
_MAX_TEXT = 64


class AuditSink(Protocol):
    """What the aggregator writes to: :class:`portlane.edge.trust.audit.AuditLog` fits."""

    def append(
        self,
        kind: str,
        *,
        actor: str,
        reason: str,
        lane: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Any: ...


@dataclasses.dataclass(frozen=True, slots=True)
class RejectionSummary:
    """One finished bucket that suppressed entries: what its summary entry says."""

    key: str
    reason: str
    window_start: float
    count: int  # rejections in the window
    suppressed: int  # of which not written individually


@dataclasses.dataclass(slots=True)
class _Bucket:
    count: int = 0
    written: int = 0


class RejectionAggregator:
    """See the module docstring. ``clock`` returns UNIX seconds (windows align to it)."""

    def __init__(
        self,
        audit: AuditSink,
        *,
        lane: str | None,
        threshold: int = 10,
        window_s: float = 60.0,
        max_individual: int = 100,
        kind: str = "command_rejected",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if threshold < 0 or max_individual < 0 or window_s <= 0:
            raise ValueError("threshold and max_individual must be >= 0, window_s > 0")
        self._audit = audit
        self.lane = lane
        self.threshold = threshold
        self.window_s = window_s
        self.max_individual = max_individual
        self.kind = kind
        self._clock = clock
        self._window: float | None = None
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._individual = 0
        #: Totals since start, for metrics: rejections seen / written individually / summaries.
        self.seen = 0
        self.written = 0
        self.summaries = 0

    def record(
        self,
        reason: str,
        *,
        key_id: str | None,
        command: str | None = None,
        nonce: str | None = None,
        detail: str = "",
    ) -> bool:
        """Count one rejection; write it individually while under the thresholds. Returns True
        when it was written individually (the caller may then publish an event and answer)."""
        now = self._clock()
        self._roll(now)
        reason = str(reason)[:_MAX_TEXT]
        claimed = None if key_id is None else str(key_id)[:_MAX_TEXT]
        bucket_key = UNAUTHENTICATED if reason in PRE_AUTH_REASONS or claimed is None else claimed
        b = self._buckets.setdefault((bucket_key, reason), _Bucket())
        b.count += 1
        self.seen += 1
        if b.written >= self.threshold or self._individual >= self.max_individual:
            return False
        b.written += 1
        self._individual += 1
        self.written += 1
        self._audit.append(
            self.kind,
            actor=claimed or "unknown",
            reason=reason,
            lane=self.lane,
            data={
                "command": None if command is None else str(command)[:_MAX_TEXT],
                "nonce": None if nonce is None else str(nonce)[:128],
                "detail": str(detail)[:200],
            },
        )
        return True

    def flush(self, *, force: bool = False) -> list[RejectionSummary]:
        """Write the summaries of a finished window (all open ones with ``force``, at shutdown).
        Cheap when there is nothing to write: call it on every tick."""
        now = self._clock()
        if force:
            return self._close_window()
        return self._roll(now)

    # -- internals ---------------------------------------------------------------------------

    def _roll(self, now: float) -> list[RejectionSummary]:
        start = now - (now % self.window_s)
        if self._window is None:
            self._window = start
            return []
        if start == self._window:
            return []
        out = self._close_window()
        self._window = start
        return out

    def _close_window(self) -> list[RejectionSummary]:
        out: list[RejectionSummary] = []
        window = self._window if self._window is not None else 0.0
        for (key, reason), b in sorted(self._buckets.items()):
            if b.count <= b.written:
                continue
            summary = RejectionSummary(key, reason, window, b.count, b.count - b.written)
            self._audit.append(
                f"{self.kind}_summary",
                actor=key,
                reason=reason,
                lane=self.lane,
                data={
                    "window_start": format_rfc3339(datetime.fromtimestamp(window, tz=UTC)),
                    "window_s": self.window_s,
                    "count": summary.count,
                    "suppressed": summary.suppressed,
                },
            )
            self.summaries += 1
            out.append(summary)
        self._buckets.clear()
        self._individual = 0
        return out
