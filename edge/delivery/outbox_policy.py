"""What the outbox keeps: the overflow policy for undelivered events and the retention bounds
for delivered ones.

Overflow. ``capacity`` bounds the undelivered events (replayed ones are not counted: a replay
never makes room by refusing new events). ``admit`` decides, before anything is written, how
much of a batch fits; ``to_drop`` how many of the oldest undelivered events make room after it:
  * ``reject_new`` (default) — what does not fit is refused (``OutboxFullError``, counted in
    ``refused``); the lane takes itself out of service rather than lose its record of a
    passage. Independent events are refused one by one, an atomic group (``put_many``) only
    as a whole;
  * ``drop_oldest`` — everything is written and the oldest undelivered events are deleted,
    counted in ``dropped``.

Retention. Delivered events stay for ``max_age_s`` and up to ``max_mb`` of payload (either
bound at 0: nothing is retained, an acknowledged event is deleted). ``Retention.evict`` runs
inside the transaction that records acks and deletes the oldest delivered events beyond the
bounds — never an undelivered one — in bounded chunks, so that an ack never stalls the loop for
long; a large excess (after the bounds were lowered) is worked off over the next acks.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Literal

from portlane.edge.config import OutboxRetention

__all__ = ["EVICT_CHECK_S", "EVICT_CHUNK", "EVICT_CHUNKS", "Admission", "Overflow", "Retention", "admit", "to_drop"]

Overflow = Literal["reject_new", "drop_oldest"]

#: How often (at most) eviction looks for retained events past their age.
EVICT_CHECK_S = 1.0
#: Eviction deletes at most EVICT_CHUNKS x EVICT_CHUNK events per ack, so that an ack never
#: stalls the loop for long; the rest goes with the next acks.
EVICT_CHUNK = 500
EVICT_CHUNKS = 8


@dataclass(frozen=True, slots=True)
class Admission:
    """How much of a batch is written: the first ``independent`` of the independent events, and
    the atomic group whole or not at all."""

    independent: int
    atomic: bool
    refused: int


def admit(overflow: Overflow, capacity: int, undelivered: int, independent: int, atomic: int) -> Admission:
    """Decide what of a batch of ``independent`` single events and an ``atomic`` group fits, with
    ``undelivered`` events (replayed ones left out) already queued."""
    take, whole = independent, True
    if overflow == "reject_new":
        room = capacity - undelivered
        take = max(0, min(independent, room))
        whole = atomic <= room - take
    return Admission(take, whole, independent - take + (0 if whole else atomic))


def to_drop(overflow: Overflow, capacity: int, undelivered: int, written: int) -> int:
    """How many of the oldest undelivered events go to make room for ``written`` new ones."""
    if overflow != "drop_oldest" or not written:
        return 0
    return max(0, undelivered + written - capacity)


class Retention:
    """The retention bounds of delivered events and the eviction that keeps them."""

    __slots__ = ("_next_check", "bounds")

    def __init__(self, bounds: OutboxRetention) -> None:
        self.bounds = bounds
        self._next_check = 0.0

    @property
    def keeps(self) -> bool:
        """Whether delivered events are retained at all."""
        return self.bounds.max_age_s > 0 and self.bounds.max_mb > 0

    def evict(self, db: sqlite3.Connection, now: float, retained_bytes: int) -> tuple[int, int]:
        """Delete the oldest delivered events beyond the bounds (inside the ack's transaction;
        ``retained_bytes`` counts the events just acknowledged). Returns (events, bytes)
        evicted. Never touches undelivered events; works in bounded chunks, oldest seq first."""
        count = size = 0
        if now >= self._next_check:
            self._next_check = now + EVICT_CHECK_S
            cutoff = now - self.bounds.max_age_s
            for _ in range(EVICT_CHUNKS):
                gone = db.execute(
                    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE delivered IS NOT NULL "
                    "ORDER BY seq LIMIT ?) AND created < ? RETURNING LENGTH(payload)",
                    (EVICT_CHUNK, cutoff),
                ).fetchall()
                count += len(gone)
                size += sum(int(n) for (n,) in gone)
                if len(gone) < EVICT_CHUNK:
                    break
        max_bytes = int(self.bounds.max_mb * 1024 * 1024)
        for _ in range(EVICT_CHUNKS):
            excess = retained_bytes - size - max_bytes
            if excess <= 0:
                break
            rows = db.execute(
                "SELECT seq, LENGTH(payload) FROM outbox WHERE delivered IS NOT NULL ORDER BY seq LIMIT ?",
                (EVICT_CHUNK,),
            ).fetchall()
            if not rows:
                break
            upto, freed = rows[-1][0], 0
            for s, n in rows:
                freed += int(n)
                if freed >= excess:
                    upto = s
                    break
            gone = db.execute(
                "DELETE FROM outbox WHERE delivered IS NOT NULL AND seq <= ? RETURNING LENGTH(payload)", (upto,)
            ).fetchall()
            count += len(gone)
            size += sum(int(n) for (n,) in gone)
        return count, size
