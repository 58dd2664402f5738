"""Reading the outbox: what the sender sends next (``pending``), what a restarting unit said
last (``newest``), and the counters (``OutboxStats``).

The sender asks for the next undelivered events many times a second. The newest of them —
every undelivered row with ``seq >= Tail.start`` — are kept in memory as they were committed
(``Tail``, at most ``TAIL_MAX`` rows), so the sender reads them without touching the disk;
older ones (a long backlog, re-queued ones after a replay) come from the store's reader
connection, which in WAL mode never waits for the writer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from portlane.edge.delivery.outbox_store import Counters, OutboxRow

__all__ = ["TAIL_MAX", "OutboxStats", "Tail", "newest", "oldest", "pending", "snapshot"]

#: Undelivered rows kept in memory for the sender (about 5 MB of typical events); beyond
#: that the sender reads them from disk.
TAIL_MAX = 10_000


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: int
    oldest_age_s: float
    dropped: int
    last_seq: int
    refused: int = 0
    epoch: int = 0
    retained: int = 0
    retained_bytes: int = 0
    first_retained_seq: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "oldest_age_s": round(self.oldest_age_s, 3),
            "dropped": self.dropped,
            "refused": self.refused,
            "last_seq": self.last_seq,
            "epoch": self.epoch,
            "retained": self.retained,
            "retained_bytes": self.retained_bytes,
            "first_retained_seq": self.first_retained_seq,
        }


class Tail:
    """The newest undelivered rows, in seq order, as committed (guarded by the store's
    ``count_lock``): every undelivered row with ``seq >= start`` is in ``rows``."""

    __slots__ = ("rows", "start")

    def __init__(self, start: int) -> None:
        self.start = start
        self.rows: dict[int, OutboxRow] = {}

    def add(self, rows: Iterable[tuple[int, str, str, bytes, float]]) -> None:
        """Rows just committed (seq above every row held); the oldest go beyond ``TAIL_MAX``."""
        held = self.rows
        for q, env_id, topic, payload, at in rows:
            held[q] = OutboxRow(q, env_id, topic, payload, at)
        while len(held) > TAIL_MAX:
            first = next(iter(held))
            del held[first]
            self.start = first + 1

    def discard(self, seqs: Iterable[int]) -> None:
        """Rows delivered or deleted."""
        for q in seqs:
            self.rows.pop(q, None)

    def restart(self, start: int) -> None:
        """Rows below ``start`` became undelivered again (a replay): from here the tail holds
        only what is committed from ``start`` on."""
        self.rows.clear()
        self.start = start

    def after(self, after: int, limit: int, skip: set[int]) -> list[OutboxRow] | None:
        """Undelivered rows with seq > ``after`` not in ``skip``; None when the tail does not
        hold all of them (read the store)."""
        if after + 1 < self.start:
            return None
        out: list[OutboxRow] = []
        for seq, row in self.rows.items():
            if seq > after and seq not in skip:
                out.append(row)
                if len(out) >= limit:
                    break
        return out


def pending(rdb: sqlite3.Connection, after: int, limit: int, skip: set[int]) -> list[OutboxRow]:
    """From disk: undelivered rows with seq > ``after``, in seq order, leaving out ``skip``."""
    rows = rdb.execute(
        "SELECT seq, id, topic, payload, created FROM outbox WHERE delivered IS NULL AND seq > ? ORDER BY seq LIMIT ?",
        (after, limit),
    ).fetchall()
    return [OutboxRow(*r) for r in rows if r[0] not in skip]


def newest(rdb: sqlite3.Connection, topic: str, limit: int) -> list[OutboxRow]:
    """The newest ``limit`` rows stored for ``topic``, delivered or not, newest first."""
    rows = rdb.execute(
        "SELECT seq, id, topic, payload, created FROM outbox WHERE topic = ? ORDER BY seq DESC LIMIT ?",
        (topic, limit),
    ).fetchall()
    return [OutboxRow(*r) for r in rows]


def oldest(rdb: sqlite3.Connection, now: float) -> tuple[float, int | None]:
    """(age of the oldest undelivered row, seq of the oldest retained one): by seq, through the
    partial indexes, so O(log n) however deep the queue is."""
    row = rdb.execute("SELECT created FROM outbox WHERE delivered IS NULL ORDER BY seq LIMIT 1").fetchone()
    first = rdb.execute("SELECT seq FROM outbox WHERE delivered IS NOT NULL ORDER BY seq LIMIT 1").fetchone()
    age = max(0.0, now - float(row[0])) if row is not None else 0.0
    return age, int(first[0]) if first is not None else None


def snapshot(
    c: Counters, *, depth: int, acking: int, keeps: bool, age: float = 0.0, first: int | None = None
) -> OutboxStats:
    """The counters as ``OutboxStats``; acks not yet written count as delivered (``depth``) and,
    when delivered events are kept, as retained."""
    return OutboxStats(
        depth=depth,
        oldest_age_s=age,
        dropped=c.dropped,
        last_seq=c.last_seq,
        refused=c.refused,
        epoch=c.epoch,
        retained=c.retained + (acking if keeps else 0),
        retained_bytes=c.retained_bytes,
        first_retained_seq=first,
    )
