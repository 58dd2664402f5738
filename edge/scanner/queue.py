"""The shared scanner's queue: priority, then the lane served longest ago, then FIFO — pure.

A busy lane cannot starve the others: among equal priorities the lane whose last scan is
oldest goes first. A passage is queued once, however often its request is re-delivered.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["QueueEntry", "ScanQueue", "entry_from_json", "entry_to_json"]


@dataclass(order=True)
class QueueEntry:
    sort_key: tuple[int, float, int] = field(compare=True)
    lane: str = field(compare=False)
    passage_id: str = field(compare=False)
    vehicle_ref: str = field(compare=False)
    priority: int = field(compare=False)
    queued_at: float = field(compare=False)
    retries: int = field(default=0, compare=False)


class ScanQueue:
    """Priority + per-lane fairness + FIFO; pure, for tests."""

    def __init__(self) -> None:
        self._entries: list[QueueEntry] = []
        self._served: dict[str, float] = {}
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def push(
        self,
        lane: str,
        passage_id: str,
        vehicle_ref: str,
        priority: int,
        now: float,
        *,
        head: bool = False,
        retries: int = 0,
    ) -> bool:
        """Queue a passage; False if it was already queued (a re-delivered request)."""
        if passage_id in self:
            return False
        n = -1 if head else next(self._order)
        self._entries.append(QueueEntry((0, 0.0, n), lane, passage_id, vehicle_ref, priority, now, retries))
        return True

    def __contains__(self, passage_id: object) -> bool:
        return any(e.passage_id == passage_id for e in self._entries)

    def remove(self, passage_id: str) -> QueueEntry | None:
        for e in self._entries:
            if e.passage_id == passage_id:
                self._entries.remove(e)
                return e
        return None

    def pop(self, now: float) -> QueueEntry | None:
        if not self._entries:
            return None
        for e in self._entries:
            e.sort_key = (-e.priority, self._served.get(e.lane, 0.0), e.sort_key[2])
        best = min(self._entries)
        self._entries.remove(best)
        self._served[best.lane] = now
        return best

    def entries(self) -> list[QueueEntry]:
        return list(self._entries)

    def position(self, passage_id: str) -> int | None:
        """1-based position in serving order now (None when not queued)."""
        ranked = sorted(self._entries, key=lambda e: (-e.priority, self._served.get(e.lane, 0.0), e.sort_key[2]))
        for i, e in enumerate(ranked, 1):
            if e.passage_id == passage_id:
                return i
        return None


def entry_to_json(e: QueueEntry) -> dict[str, Any]:
    return {
        "lane": e.lane,
        "passage_id": e.passage_id,
        "vehicle_ref": e.vehicle_ref,
        "priority": e.priority,
        "queued_at": e.queued_at,
        "retries": e.retries,
    }


def entry_from_json(r: Mapping[str, Any]) -> QueueEntry | None:
    """An entry journalled by :func:`entry_to_json`, or None when the record is unusable."""
    try:
        return QueueEntry(
            (0, 0.0, -1),
            str(r["lane"]),
            str(r["passage_id"]),
            str(r["vehicle_ref"]),
            int(r["priority"]),
            float(r["queued_at"]),
            int(r.get("retries", 0)),
        )
    except (KeyError, TypeError, ValueError):
        return None
