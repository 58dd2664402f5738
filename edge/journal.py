"""A daemon's memory of unfinished work, on disk, so that a restart can resolve it.

The lane journals the passage it is working on; the scanner journals its queue and the scan
in progress. After ``kill -9`` or a power cut the new process reads them back and closes them
out (``LaneLogic.start``, ``ScannerDaemon`` start-up) before taking new work. One small
SQLite database per daemon, WAL: a record is written when it changes and deleted when the work
is done, with an fsync (``synchronous=FULL``) unless the caller says the change need not wait
for the disk (``sync(flush=False)``, see there).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from portlane.edge.delivery.flush import FlushGroup, fsync_wal
from portlane.edge.errors import StateError

__all__ = ["Journal"]

SCHEMA = "CREATE TABLE IF NOT EXISTS record (key TEXT PRIMARY KEY, body TEXT NOT NULL)"


class Journal:
    def __init__(self, path: str | Path, *, flushes: FlushGroup | None = None) -> None:
        """``flushes``: the unit's group commit (``edge/delivery/flush.py``): a flushed write
        inside one of its groups is put on disk when the group closes."""
        self.path = Path(path)
        self._flushes = flushes
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(SCHEMA)
            rows = self._db.execute("SELECT key, body FROM record ORDER BY rowid").fetchall()
        except (sqlite3.Error, OSError) as exc:
            raise StateError(
                str(self.path),
                f"cannot open the journal ({exc})",
                "move the file aside; the daemon then starts without memory of unfinished work",
            ) from exc
        self._saved: dict[str, str] = {}
        self._loaded: dict[str, dict[str, Any]] = {}
        #: Commits that waited for the disk, and those that did not (``sync(flush=False)``).
        self.flushed = 0
        self.unflushed = 0
        for key, body in rows:
            self._saved[key] = body
            try:
                value = json.loads(body)
            except ValueError:
                continue  # an unreadable record cannot be resolved; the others can
            if isinstance(value, dict):
                self._loaded[key] = value

    def records(self) -> dict[str, dict[str, Any]]:
        """What the journal held when it was opened."""
        return dict(self._loaded)

    def sync(self, records: dict[str, dict[str, Any]], *, flush: bool = True) -> None:
        """Make the journal hold exactly ``records`` (rows are written only when they changed),
        in one transaction. Raises ``StateError`` when the write fails (a full disk, a
        filesystem remounted read-only): the journal then holds what it held before, and the
        next ``sync`` writes the difference again.

        ``flush=False``: the transaction is committed without waiting for the disk (WAL,
        ``synchronous=NORMAL``): a crash of the process keeps it, a power cut may lose it, and
        the next flushed ``sync`` puts it on disk together with its own change (the WAL is one
        file, written in order). A record added or removed is flushed all the same: the work a
        restart must resolve, and the end of it, are always on disk."""
        deletes = [k for k in self._saved if k not in records]
        writes: dict[str, str] = {}
        for key, value in records.items():
            body = json.dumps(value, sort_keys=True, ensure_ascii=False)
            if self._saved.get(key) != body:
                writes[key] = body
        if not deletes and not writes:
            return
        durable = flush or bool(deletes) or any(key not in self._saved for key in writes)
        defer = durable and self._flushes is not None and self._flushes.deferring
        try:
            self._db.execute("PRAGMA synchronous=FULL" if durable and not defer else "PRAGMA synchronous=NORMAL")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for key in deletes:
                    self._db.execute("DELETE FROM record WHERE key = ?", (key,))
                for key, body in writes.items():
                    self._db.execute("INSERT OR REPLACE INTO record(key, body) VALUES (?, ?)", (key, body))
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except (sqlite3.Error, OSError) as exc:
            raise StateError(
                str(self.path),
                f"cannot write the journal ({exc})",
                "free space on its filesystem or remount it read-write; the daemon writes it again on its own",
            ) from exc
        for key in deletes:
            del self._saved[key]
        self._saved.update(writes)
        if defer:
            assert self._flushes is not None
            self._flushes.owe(self)
        if durable:
            self.flushed += 1
        else:
            self.unflushed += 1

    def flush(self) -> None:
        """Put every record committed so far on disk (the flush group's)."""
        fsync_wal(self.path)

    def close(self) -> None:
        self._db.close()
