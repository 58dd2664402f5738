"""Replay and purge: putting delivered events back in the queue, and taking undelivered ones out.

``requeue`` (``Outbox.replay``) marks the retained events of a seq range undelivered again:
they are re-sent with their original id, seq and bytes (a broker that crashed may have lost
events it had acknowledged; a subscriber that finds a gap asks for them again, see
``delivery/replay.py`` for the command). Re-queued events do not count against the capacity,
and the in-memory tail no longer holds every undelivered row, so the sender reads from disk and
starts again from the lowest seq (``rewound``). ``purge`` deletes the oldest undelivered
events (a technician's action, audited by the caller), counted in ``dropped``.

Both run as maintenance transactions of their own (``Outbox`` writes pending acks first, so
they see every delivery the sender knows of); the functions here are their SQL and the change
each makes to the counters, applied under ``count_lock`` (purge deletes with the store's
``drop_oldest``, as the ``drop_oldest`` overflow policy does).
"""

from __future__ import annotations

import sqlite3

from portlane.edge.delivery.outbox_queries import Tail
from portlane.edge.delivery.outbox_store import Counters

__all__ = ["check_range", "purged", "requeue", "requeued"]


def check_range(from_seq: int, to_seq: int | None) -> None:
    if from_seq < 1 or (to_seq is not None and to_seq < from_seq):
        raise ValueError(f"replay range must be 1 <= from_seq <= to_seq, got {from_seq}..{to_seq}")


def requeue(db: sqlite3.Connection, from_seq: int, to_seq: int) -> list[int]:
    """Mark the delivered rows with ``from_seq <= seq <= to_seq`` undelivered; their payload sizes."""
    back = db.execute(
        "UPDATE outbox SET delivered = NULL, replayed = replayed + 1 "
        "WHERE delivered IS NOT NULL AND seq BETWEEN ? AND ? RETURNING LENGTH(payload)",
        (from_seq, to_seq),
    ).fetchall()
    return [int(b) for (b,) in back]


def requeued(c: Counters, tail: Tail, back: list[int]) -> bool:
    """Count ``back`` (payload sizes of re-queued rows); True when the queue was rewound."""
    c.depth += len(back)
    c.requeued += len(back)
    c.retained -= len(back)
    c.retained_bytes -= sum(back)
    if not back:
        return False
    # Re-queued rows are not in the tail: reads go to disk from here on.
    tail.restart(c.last_seq + 1)
    return True


def purged(c: Counters, tail: Tail, gone: list[tuple[int, int]]) -> None:
    """Count ``gone`` ((seq, replayed) of rows ``OutboxStore.drop_oldest`` deleted)."""
    c.depth -= len(gone)
    c.requeued -= sum(1 for _q, r in gone if r)
    c.dropped += len(gone)
    tail.discard(q for q, _r in gone)
