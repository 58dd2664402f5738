"""Nonce stores: a command's nonce is recorded once, durably, so a captured command cannot be
replayed — not after a restart, not after the store is deleted or rolled back, and not after
the lane's clock jumped.

The store keeps a **floor** (``created_at``, the name the verifier reads): the verifier refuses
commands issued before it (``issued_before_store``). The floor only rises, and it never rests on
the lane's clock alone:

* **never forget without raising the floor.** A nonce is pruned only once its command expired
  an hour ago (``margin_s``) — judged by the earlier of the lane's clock and the newest expiry
  the store has recorded (the platform's clock, signed), so a lane clock running hours ahead
  prunes nothing that is still valid — and pruning raises the floor past every command it
  forgets. A clock that then steps back cannot make a forgotten command valid again.
* **a store that lost nonces starts above them.** The lane's audit log beside the store
  (``audit.jsonl`` in the same directory: hash-chained, anchored by signed checkpoints published
  off the machine) records every command the unit accepted. A new store — or one whose newest
  accepted command (by the audit log) it no longer holds: a rolled-back copy — starts its floor
  at the audit log's newest entry plus the clock skew, whatever the lane's clock says now. Only
  a new store with no audit log beside it falls back to the lane's clock.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Protocol, Self

from portlane.edge.contract.times import format_rfc3339, parse_rfc3339
from portlane.edge.errors import NonceStoreError

__all__ = ["BESIDE", "DEFAULT_SKEW_S", "Clock", "MemoryNonceStore", "NonceStore", "SqliteNonceStore", "now_checked"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

#: The clock skew a platform and a lane may have (``platform.max_clock_skew_s``'s default): a
#: command the lane accepted at ``t`` (its clock) was issued no later than ``t`` plus this.
DEFAULT_SKEW_S = 5.0
#: ``audit_path`` default: the unit's audit log in the store's own directory (``audit.jsonl``,
#: where the daemons keep it).
BESIDE: Final = "beside"
#: How much of the audit log's end is read at open: its newest entries (a few hundred). Older
#: accepted commands have expired long ago.
AUDIT_TAIL_BYTES = 256 * 1024
#: An audit time further ahead of the lane's clock than this is not believed (a forged entry
#: must not lock the lane for ever); the floor then falls back to the lane's clock.
AUDIT_AHEAD_MAX = timedelta(days=1)
#: ``nonces-{unit}.db``: the daemons' file name; the unit's accepted commands in the audit log
#: are the entries naming it (``lane``).
_STORE_NAME = re.compile(r"^nonces-(?P<unit>[a-z0-9][a-z0-9_-]{0,31})\.db$")


def now_checked(clock: Clock) -> datetime:
    now = clock()
    if now.tzinfo is None:
        raise ValueError("the clock returned a naive datetime; it must be timezone-aware")
    return now


class NonceStore(Protocol):
    @property
    def created_at(self) -> datetime | None:
        """The store's floor: commands issued before it are refused (None: no such check)."""
        ...

    def check_and_record(self, nonce: str, *, keep_until: datetime, now: datetime) -> bool:
        """Record ``nonce`` atomically; False if it was already recorded. Forgets nonces whose
        ``keep_until`` has passed (they belong to commands that are expired anyway)."""
        ...

    def close(self) -> None: ...


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass(frozen=True, slots=True)
class _AuditAnchor:
    """What the audit log beside the store says: its newest entry's time, and the nonce and
    time of the newest command this unit accepted (``None`` when the tail holds none)."""

    newest: datetime
    accepted_nonce: str | None = None
    accepted_at: datetime | None = None


def _read_audit_anchor(path: Path, unit: str | None) -> _AuditAnchor | None:
    """The anchor from the end of the audit log at ``path``, or None (no log, no entry).
    Best effort and bounded: unreadable lines are skipped, never raised."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - AUDIT_TAIL_BYTES)
            f.seek(start)
            chunk = f.read(size - start)
    except OSError:
        return None
    lines = chunk.split(b"\n")
    if start > 0:
        lines = lines[1:]  # the first piece may be the end of a longer line
    newest: datetime | None = None
    nonce: str | None = None
    accepted_at: datetime | None = None
    for line in reversed(lines):
        try:
            entry = json.loads(line)
            ts = parse_rfc3339(entry["ts"])
        except (ValueError, TypeError, KeyError, RecursionError):
            continue
        if not isinstance(entry, dict):
            continue
        newest = newest or ts
        data = entry.get("data")
        if (
            entry.get("kind") == "command_accepted"
            and isinstance(data, dict)
            and isinstance(data.get("nonce"), str)
            and (unit is None or entry.get("lane") == unit)
        ):
            nonce, accepted_at = data["nonce"], ts
            break
    return None if newest is None else _AuditAnchor(newest, nonce, accepted_at)


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

    The store's floor (:attr:`created_at`; the module docstring says how it is set and raised)
    lives in a ``meta`` table with the newest expiry recorded. ``audit_path`` is the unit's audit
    log (default: ``audit.jsonl`` beside the store; None: none); ``skew_s`` the platform's
    ``max_clock_skew_s``. A file that is not a nonce store raises :class:`NonceStoreError`
    here, at open.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        margin_s: float = 3600.0,
        synchronous: str = "FULL",
        clock: Clock | None = None,
        audit_path: str | os.PathLike[str] | None = BESIDE,
        skew_s: float = DEFAULT_SKEW_S,
    ) -> None:
        if synchronous not in ("FULL", "EXTRA", "NORMAL"):
            raise ValueError("synchronous must be FULL, EXTRA or NORMAL")
        self.path = Path(path)
        self._margin_ms = int(margin_s * 1000)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        now = now_checked(clock or (lambda: datetime.now(UTC)))
        if audit_path == BESIDE:
            audit: Path | None = self.path.parent / "audit.jsonl"
        else:
            audit = None if audit_path is None else Path(audit_path)
        m = _STORE_NAME.match(self.path.name)
        anchor = _read_audit_anchor(audit, m.group("unit") if m else None) if audit is not None else None
        if anchor is not None and anchor.newest - now > AUDIT_AHEAD_MAX:
            log.warning(
                "%s: the audit log's newest entry (%s) is more than a day ahead of this clock; not used",
                self.path,
                format_rfc3339(anchor.newest),
            )
            anchor = None
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
            self._floor_ms, self._high_ms = self._open(self._db, synchronous, now, anchor, timedelta(seconds=skew_s))
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

    def _open(
        self,
        db: sqlite3.Connection,
        synchronous: str,
        now: datetime,
        anchor: _AuditAnchor | None,
        skew: timedelta,
    ) -> tuple[int, int]:
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
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            floor = self._parse_floor(meta)
            high = int(meta.get("high_keep_until_ms", "0"))
            lost = floor is None or (
                anchor is not None
                and anchor.accepted_nonce is not None
                and anchor.accepted_at is not None
                and _ms(anchor.accepted_at) >= floor
                and db.execute("SELECT 1 FROM nonces WHERE nonce = ?", (anchor.accepted_nonce,)).fetchone() is None
            )
            if lost:
                # New, or it lost the newest command the audit log says this unit accepted
                # (recreated, rolled back): start above everything the log has seen.
                start = _ms(anchor.newest + skew) if anchor is not None else _ms(now)
                if floor is not None and anchor is not None:
                    log.warning(
                        "%s: the store does not hold the newest command the audit log recorded (rolled "
                        "back?); refusing commands issued before %s",
                        self.path,
                        format_rfc3339(_dt(start)),
                    )
                floor = max(floor or 0, start)
            assert floor is not None
            db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('created_at', ?)", (format_rfc3339(_dt(floor)),))
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('floor_ms', ?)", (str(floor),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return floor, high

    @staticmethod
    def _parse_floor(meta: dict[str, str]) -> int | None:
        """The floor recorded in ``meta`` (None for a new store)."""
        if "floor_ms" in meta:
            try:
                return int(meta["floor_ms"])
            except ValueError as exc:
                raise sqlite3.DatabaseError(f"meta.floor_ms is not an integer: {meta['floor_ms']!r}") from exc
        if "created_at" in meta:  # a store from before the floor: its birth is its floor
            try:
                return _ms(parse_rfc3339(meta["created_at"]))
            except ValueError as exc:
                raise sqlite3.DatabaseError(f"meta.created_at is not a timestamp: {meta['created_at']!r}") from exc
        return None

    @property
    def created_at(self) -> datetime:
        """The store's floor: commands issued before it are refused. Its birth, raised past
        every nonce it has forgotten and above what a lost store's audit log recorded."""
        return _dt(self._floor_ms)

    def check_and_record(self, nonce: str, *, keep_until: datetime, now: datetime) -> bool:
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                # Expired by the earlier of the lane's clock and the newest expiry recorded (the
                # platform's clock): a lane clock hours ahead forgets nothing still valid.
                high = max(self._high_ms, _ms(keep_until))
                cutoff = min(_ms(now), high) - self._margin_ms
                row = db.execute("SELECT max(keep_until_ms) FROM nonces WHERE keep_until_ms < ?", (cutoff,)).fetchone()
                forgotten = row[0] if row is not None else None
                floor = self._floor_ms
                if forgotten is not None:
                    db.execute("DELETE FROM nonces WHERE keep_until_ms < ?", (cutoff,))
                    # Each forgotten command was issued before its keep_until: refused from now on
                    # as issued before the store, whatever the clock says later.
                    floor = max(floor, int(forgotten))
                cur = db.execute(
                    "INSERT OR IGNORE INTO nonces(nonce, keep_until_ms) VALUES (?, ?)",
                    (nonce, _ms(keep_until)),
                )
                fresh = cur.rowcount == 1
                if floor != self._floor_ms:
                    db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('floor_ms', ?)", (str(floor),))
                if high != self._high_ms:
                    db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('high_keep_until_ms', ?)", (str(high),))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._floor_ms, self._high_ms = floor, high
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
