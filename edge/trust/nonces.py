"""Nonce stores: a command's nonce is recorded once, durably, so a captured command cannot be
replayed — not after a restart, and not after the store is deleted (it records its creation
time, and the verifier refuses commands issued before it).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, Self

from portlane.edge.contract.times import format_rfc3339, parse_rfc3339
from portlane.edge.errors import NonceStoreError

__all__ = ["Clock", "MemoryNonceStore", "NonceStore", "SqliteNonceStore", "now_checked"]

Clock = Callable[[], datetime]


def now_checked(clock: Clock) -> datetime:
    now = clock()
    if now.tzinfo is None:
        raise ValueError("the clock returned a naive datetime; it must be timezone-aware")
    return now


class NonceStore(Protocol):
    @property
    def created_at(self) -> datetime | None:
        """When the store was created (None: unknown, no ``issued_before_store`` check)."""
        ...

    def check_and_record(self, nonce: str, *, keep_until: datetime, now: datetime) -> bool:
        """Record ``nonce`` atomically; False if it was already recorded. Forgets nonces whose
        ``keep_until`` has passed (they belong to commands that are expired anyway)."""
        ...

    def close(self) -> None: ...


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


class MemoryNonceStore:
    """In-memory nonce store for tests and simulators. Forgets everything on restart."""

    def __init__(self, *, created_at: datetime | None = None) -> None:
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        self._created_at = created_at

    @property
    def created_at(self) -> datetime | None:
        return self._created_at

    def check_and_record(self, nonce: str, *, keep_until: datetime, now: datetime) -> bool:
        with self._lock:
            cutoff = _ms(now)
            for n in [n for n, until in self._seen.items() if until < cutoff]:
                del self._seen[n]
            if nonce in self._seen:
                return False
            self._seen[nonce] = _ms(keep_until)
            return True

    def count(self) -> int:
        return len(self._seen)

    def close(self) -> None:
        pass


class SqliteNonceStore:
    """Nonces that survive restarts and power cuts: SQLite in WAL mode, ``synchronous=FULL``
    so a nonce is on disk before the command it belongs to is acted on. Safe for several
    processes (one file per site is fine) and threads.

    Rows are pruned in the same transaction as each insert once ``keep_until + margin`` is
    past; the margin (default one hour) covers a wall clock stepped backwards by NTP, which
    would otherwise make an already-pruned, expired command look valid again.

    The store records its creation time (``clock()``, default the wall clock) in a ``meta``
    table: the verifier refuses commands issued before it, so deleting or recreating the file
    does not reopen replays. A store from before that table existed gets "now" — the cautious
    choice. A file that is not a nonce store raises :class:`NonceStoreError` here, at open.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        margin_s: float = 3600.0,
        synchronous: str = "FULL",
        clock: Clock | None = None,
    ) -> None:
        if synchronous not in ("FULL", "EXTRA", "NORMAL"):
            raise ValueError("synchronous must be FULL, EXTRA or NORMAL")
        self.path = Path(path)
        self._margin_ms = int(margin_s * 1000)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        now = now_checked(clock or (lambda: datetime.now(UTC)))
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
            self._created_at = self._open(self._db, synchronous, now)
        except sqlite3.Error as exc:
            if self._db is not None:
                self._db.close()
                self._db = None
            raise NonceStoreError(
                str(self.path),
                f"not a usable nonce store ({exc})",
                "stop the daemon, move the file aside (keep it as evidence) and start again — a new store "
                "refuses commands issued before it",
            ) from exc

    @staticmethod
    def _open(db: sqlite3.Connection, synchronous: str, now: datetime) -> datetime:
        # Reading the schema fails at once on a file that is not SQLite ("file is not a database").
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        check = db.execute("PRAGMA quick_check").fetchone()
        if check is None or check[0] != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {check[0] if check else 'no answer'}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, keep_until_ms INTEGER NOT NULL) "
                "WITHOUT ROWID"
            )
            db.execute("CREATE INDEX IF NOT EXISTS nonces_keep_until ON nonces(keep_until_ms)")
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
            db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('created_at', ?)", (format_rfc3339(now),))
            row = db.execute("SELECT value FROM meta WHERE key = 'created_at'").fetchone()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        try:
            return parse_rfc3339(str(row[0]))
        except ValueError as exc:
            raise sqlite3.DatabaseError(f"meta.created_at is not a timestamp: {row[0]!r}") from exc

    @property
    def created_at(self) -> datetime:
        """When this store file was created; commands issued before it are refused."""
        return self._created_at

    def check_and_record(self, nonce: str, *, keep_until: datetime, now: datetime) -> bool:
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM nonces WHERE keep_until_ms < ?", (_ms(now) - self._margin_ms,))
                cur = db.execute(
                    "INSERT OR IGNORE INTO nonces(nonce, keep_until_ms) VALUES (?, ?)",
                    (nonce, _ms(keep_until)),
                )
                fresh = cur.rowcount == 1
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return fresh

    def count(self) -> int:
        """Number of nonces held (not ``__len__``: an empty store must not be falsy)."""
        with self._lock:
            row = self._conn().execute("SELECT count(*) FROM nonces").fetchone()
            return int(row[0])

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("nonce store is closed")
        return self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
