"""The outbox's store: one SQLite file per unit, its schema, the checks made when it is opened,
the stream epoch, the transactions that write and delete rows, and the counters kept in step
with them.

Schema. ``outbox`` holds one row per event (``seq`` is the key; ``delivered`` is NULL until
the broker acknowledged it, then the time of the ack; ``replayed`` counts re-queues); ``meta``
holds the durable counters ``last_seq``, ``dropped``, ``refused``, ``opens`` and the ``epoch``.
Two partial indexes keep "oldest undelivered" and "oldest retained" O(log n) however deep the
queue is. A store written before retention or replay existed gains the columns when opened.

Identity. ``seq`` is assigned in the transaction that stores the event and never goes back
(``meta.last_seq`` survives the deletion of every row). The ``epoch`` is chosen when the store
is created (UNIX time in ms, larger than any this process handed out for the same path), so a
deleted or recreated store starts a new stream and an event id is never reused.

Two connections: the writer (``db``), used by one thread at a time under ``write_lock`` for a
whole transaction, fsync included; and a reader (``rdb``) that in WAL mode never waits for it.
``counters`` and everything the writer thread hands back to the event loop are guarded by
``count_lock``, held only briefly, so the loop never waits for a disk.

A store that cannot be used raises ``OutboxStateError`` (one line: the file, what is wrong,
what to do) when it is opened and when a write fails later.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from portlane.edge.delivery.state import corrupt_error, sqlite_state_error
from portlane.edge.errors import OutboxStateError

__all__ = ["Counters", "OutboxEvent", "OutboxRow", "OutboxStore"]

_TABLES = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL,
    delivered REAL,
    replayed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(seq) WHERE delivered IS NULL;
CREATE INDEX IF NOT EXISTS outbox_retained ON outbox(seq) WHERE delivered IS NOT NULL;
"""
_META_KEYS = ("last_seq", "dropped", "refused", "opens")
#: How long a connection waits for a lock held by another connection of the same store (the
#: reader behind a checkpoint); longer means another process holds it (one daemon per unit).
_BUSY_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    id: str
    topic: str
    payload: bytes
    created: float


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One event for ``put_many``: the arguments of ``put``."""

    event_type: str
    data: dict[str, Any]
    topic: str
    subject: str | None = None
    audience: tuple[str, ...] = ()
    at: float | None = None


@dataclass(slots=True)
class Counters:
    """What the rows say, kept in memory in step with every transaction (under ``count_lock``)."""

    epoch: int
    last_seq: int
    dropped: int
    refused: int
    opens: int
    #: Undelivered rows, replayed ones included.
    depth: int
    #: Undelivered rows that a replay put back: they do not count against the capacity.
    requeued: int
    #: Delivered rows kept for replay, and their payload bytes.
    retained: int
    retained_bytes: int


class OutboxStore:
    _epoch_lock = threading.Lock()
    #: Epochs this process handed out, per store path: a store deleted and recreated within
    #: the same millisecond still gets a larger epoch.
    _last_epoch: ClassVar[dict[str, int]] = {}

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        """Open (or create) the store at ``path``; raises ``OutboxStateError`` when it cannot be
        used."""
        self.path = Path(path)
        self.clock = clock
        self.write_lock = threading.Lock()
        self.count_lock = threading.Lock()
        self.db, self.counters = self._open()
        self.rdb = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_S)

    def _open(self) -> tuple[sqlite3.Connection, Counters]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self.state_error(exc, doing="create its directory") from exc
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_S)
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise OutboxStateError(
                    str(self.path),
                    f"cannot use a write-ahead log (journal mode stays {mode!r})",
                    f"make {self.path.parent} writable and on a local filesystem",
                )
            db.execute("PRAGMA synchronous=FULL")
            check = [str(r[0]) for r in db.execute("PRAGMA quick_check").fetchall()]
            if check != ["ok"]:
                raise corrupt_error(self.path, "; ".join(check)[:200], OutboxStateError)
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "outbox" not in tables:
                raise OutboxStateError(
                    str(self.path),
                    f"is an SQLite database but not an outbox (tables: {', '.join(sorted(tables))})",
                    "check the state directory and the unit id; move the file aside if it does not belong there",
                )
            db.execute("BEGIN IMMEDIATE")
            for stmt in _TABLES.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            columns = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
            if "delivered" not in columns:  # a store written before retention existed
                db.execute("ALTER TABLE outbox ADD COLUMN delivered REAL")
            if "replayed" not in columns:
                db.execute("ALTER TABLE outbox ADD COLUMN replayed INTEGER NOT NULL DEFAULT 0")
            for stmt in _INDEXES.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            db.executemany("INSERT OR IGNORE INTO meta(key, value) VALUES (?, 0)", [(k,) for k in _META_KEYS])
            row = db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
            if row is None:
                # A new store (or one written before epochs): a new stream. seq continues from
                # meta.last_seq, which is 0 in a new store.
                db.execute("INSERT INTO meta(key, value) VALUES ('epoch', ?)", (self._new_epoch(),))
            # A real write at every start: a read-only or full filesystem shows up now, at
            # start-up, rather than at the first event of the first vehicle.
            db.execute("UPDATE meta SET value = value + 1 WHERE key = 'opens'")
            db.execute("COMMIT")
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            depth = db.execute("SELECT COUNT(*) FROM outbox WHERE delivered IS NULL").fetchone()[0]
            requeued = db.execute("SELECT COUNT(*) FROM outbox WHERE delivered IS NULL AND replayed > 0").fetchone()[0]
            retained, retained_bytes = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox WHERE delivered IS NOT NULL"
            ).fetchone()
        except OutboxStateError:
            if db is not None:
                db.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            if db is not None:
                db.close()
            raise self.state_error(exc, doing="open it") from exc
        counters = Counters(
            epoch=int(meta["epoch"]),
            last_seq=int(meta["last_seq"]),
            dropped=int(meta["dropped"]),
            refused=int(meta["refused"]),
            opens=int(meta["opens"]),
            depth=int(depth),
            requeued=int(requeued),
            retained=int(retained),
            retained_bytes=int(retained_bytes),
        )
        return db, counters

    def _new_epoch(self) -> int:
        key = str(self.path.resolve())
        with OutboxStore._epoch_lock:
            epoch = max(int(self.clock() * 1000), OutboxStore._last_epoch.get(key, -1) + 1)
            OutboxStore._last_epoch[key] = epoch
        return epoch

    def close(self) -> None:
        self.rdb.close()
        self.db.close()

    # ------------------------------------------------------------------ transactions
    @contextlib.contextmanager
    def transaction(self, *, durable: bool, doing: str) -> Iterator[sqlite3.Connection]:
        """One transaction on the writer connection (the caller holds ``write_lock``), committed
        with an fsync when ``durable``. Rolled back on any error; an ``sqlite3``/``OSError``
        becomes an ``OutboxStateError`` saying what it was ``doing``."""
        db = self.db
        try:
            db.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):  # an unusable connection: the original error says why
                if db.in_transaction:
                    db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error | OSError):
                raise self.state_error(exc, doing=doing) from exc
            raise

    def state_error(self, exc: BaseException, *, doing: str) -> OutboxStateError:
        return sqlite_state_error(self.path, exc, doing=doing, cls=OutboxStateError)

    # ------------------------------------------------------------------ rows (inside a transaction)
    @staticmethod
    def insert(db: sqlite3.Connection, rows: list[tuple[int, str, str, bytes, float]]) -> None:
        """Store ``rows`` (seq, id, topic, payload, created) and advance ``meta.last_seq``."""
        db.executemany("INSERT INTO outbox(seq, id, topic, payload, created) VALUES (?, ?, ?, ?, ?)", rows)
        db.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (rows[-1][0],))

    @staticmethod
    def mark_delivered(db: sqlite3.Connection, acks_json: str, now: float) -> list[tuple[int, int]]:
        """Mark the undelivered rows in ``acks_json`` (a JSON array of seqs) delivered at ``now``;
        returns (payload bytes, replayed) of each."""
        sql = (
            "UPDATE outbox SET delivered = ? WHERE delivered IS NULL AND seq IN "
            "(SELECT value FROM json_each(?)) RETURNING LENGTH(payload), replayed"
        )
        return [(int(n), int(r)) for n, r in db.execute(sql, (now, acks_json)).fetchall()]

    @staticmethod
    def delete_delivered(db: sqlite3.Connection, acks_json: str) -> list[tuple[int, int]]:
        """As ``mark_delivered``, deleting the rows (nothing is retained for replay)."""
        sql = (
            "DELETE FROM outbox WHERE delivered IS NULL AND seq IN (SELECT value FROM json_each(?)) "
            "RETURNING LENGTH(payload), replayed"
        )
        return [(int(n), int(r)) for n, r in db.execute(sql, (acks_json,)).fetchall()]

    @staticmethod
    def drop_oldest(db: sqlite3.Connection, count: int) -> list[tuple[int, int]]:
        """Delete the ``count`` oldest undelivered rows and count them in ``meta.dropped``;
        returns (seq, replayed) of each."""
        gone = db.execute(
            "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE delivered IS NULL "
            "ORDER BY seq LIMIT ?) RETURNING seq, replayed",
            (count,),
        ).fetchall()
        db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (len(gone),))
        return [(int(q), int(r)) for q, r in gone]

    @staticmethod
    def count_refused(db: sqlite3.Connection, count: int) -> None:
        db.execute("UPDATE meta SET value = value + ? WHERE key = 'refused'", (count,))
