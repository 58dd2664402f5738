"""Durable outbox: every event is on disk before it is sent and leaves only after PUBACK.

One SQLite database per unit (lane or scanner) in WAL mode with ``synchronous=FULL``, so a
committed event survives ``kill -9`` and a power cut. The outbox assigns the per-unit
``seq`` in the same transaction that stores the event, so ``seq`` strictly increases across
restarts and has no gaps (``meta.last_seq`` never goes back, even when rows are deleted).

Bounded: ``capacity`` events. Overflow policy:
  * ``reject_new`` (default) — ``put`` raises ``OutboxError``; the lane takes itself out of
    service rather than lose its record of a passage;
  * ``drop_oldest`` — the oldest unsent event is deleted and counted in ``dropped``.

Counters: ``depth`` (queued), ``oldest_age_s`` (of the oldest unsent event), ``dropped``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from portlane.edge.contract.envelope import Envelope
from portlane.edge.contract.times import rfc3339
from portlane.edge.errors import OutboxError

__all__ = ["Outbox", "OutboxRow", "OutboxStats"]

#: 24 h of a busy lane (5,000 vehicles a day x ~15 events) is 75,000 events; a day of
#: outage across a whole site fits many times over.
DEFAULT_CAPACITY = 1_000_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta(key, value) VALUES ('last_seq', 0), ('dropped', 0);
"""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    id: str
    topic: str
    payload: bytes
    created: float


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: int
    oldest_age_s: float
    dropped: int
    last_seq: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "oldest_age_s": round(self.oldest_age_s, 3),
            "dropped": self.dropped,
            "last_seq": self.last_seq,
        }


class Outbox:
    def __init__(
        self,
        path: str | Path,
        *,
        site: str,
        unit: str,
        capacity: int = DEFAULT_CAPACITY,
        overflow: Literal["reject_new", "drop_oldest"] = "reject_new",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.site = site
        self.unit = unit
        self.capacity = capacity
        self.overflow = overflow
        self.clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._depth = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        self._last_seq = int(self._db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0])
        self._listeners: list[Callable[[], None]] = []

    def close(self) -> None:
        self._db.close()

    def on_put(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after every successful put (wakes the sender)."""
        self._listeners.append(callback)

    # ------------------------------------------------------------------ write side
    def put(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        topic: str,
        subject: str | None = None,
        audience: tuple[str, ...] = (),
        at: float | None = None,
    ) -> Envelope:
        """Assign the next seq, build the envelope and commit it to disk. Returns the envelope."""
        now = self.clock() if at is None else at
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            if self._depth >= self.capacity:
                if self.overflow == "reject_new":
                    raise OutboxError(f"outbox full ({self.capacity} events): refusing {event_type}")
                db.execute("DELETE FROM outbox WHERE seq = (SELECT MIN(seq) FROM outbox)")
                db.execute("UPDATE meta SET value = value + 1 WHERE key = 'dropped'")
                self._depth -= 1
            (seq,) = db.execute("UPDATE meta SET value = value + 1 WHERE key = 'last_seq' RETURNING value").fetchone()
            env = Envelope(
                id=f"{self.site}/{self.unit}/{seq}",
                source=f"portlane://{self.site}/{self.unit}",
                type=f"portlane.{event_type}",
                time=rfc3339(now),
                subject=subject,
                seq=seq,
                audience=audience,
                data=data,
            )
            payload = env.model_dump_json(exclude_none=True).encode()
            db.execute(
                "INSERT INTO outbox(seq, id, topic, payload, created) VALUES (?, ?, ?, ?, ?)",
                (seq, env.id, topic, payload, now),
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._depth += 1
        self._last_seq = seq
        for cb in self._listeners:
            cb()
        return env

    # ------------------------------------------------------------------ send side
    def peek(self, *, after: int = 0, limit: int = 100) -> list[OutboxRow]:
        rows = self._db.execute(
            "SELECT seq, id, topic, payload, created FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()
        return [OutboxRow(*r) for r in rows]

    def ack(self, seqs: list[int]) -> None:
        """Delete events the broker acknowledged."""
        if not seqs:
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            cur = db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._depth -= cur.rowcount if cur.rowcount > 0 else 0

    def purge(self, count: int) -> int:
        """Delete the ``count`` oldest unsent events (technician action, audited by the caller)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        cur = db.execute("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)", (count,))
        db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (cur.rowcount,))
        db.execute("COMMIT")
        self._depth -= cur.rowcount
        return cur.rowcount

    # ------------------------------------------------------------------ counters
    @property
    def depth(self) -> int:
        return self._depth

    @property
    def last_seq(self) -> int:
        """The last seq assigned (readable after ``close()``)."""
        return self._last_seq

    def stats(self) -> OutboxStats:
        oldest = self._db.execute("SELECT MIN(created) FROM outbox").fetchone()[0]
        dropped = self._db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()[0]
        age = max(0.0, self.clock() - oldest) if oldest is not None else 0.0
        return OutboxStats(depth=self._depth, oldest_age_s=age, dropped=int(dropped), last_seq=self.last_seq)

    @staticmethod
    def decode(payload: bytes) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(payload)
        return result
