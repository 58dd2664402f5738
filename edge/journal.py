"""A daemon's memory of unfinished work, on disk, so that a restart can resolve it.

The lane journals the passage it is working on; the scanner journals its queue and the scan
in progress. After ``kill -9`` or a power cut the new process reads them back and closes them
out (``LaneLogic.start``, ``ScannerDaemon`` start-up) before taking new work. One small
SQLite database per daemon, WAL: a record is written when it changes and deleted when the work
is done, with an fsync (``synchronous=FULL``) unless the caller says the change need not wait
for the disk (``sync(flush=False)``, see there). Inside the unit's flush group
(``edge/delivery/flush.py``) the fsync is the group's, made when the dispatcher's step ends.

:class:`RecordFile` is the table underneath — JSON records by key, written in one transaction
per change set — also used directly by stores that know what changed (the lane's pre-decisions,
``lane/predecision_store.py``), where comparing every record on every write would not scale.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from portlane.edge.delivery.flush import FlushGroup, fsync_wal
from portlane.edge.errors import StateError

__all__ = ["Journal", "RecordFile"]

SCHEMA = "CREATE TABLE IF NOT EXISTS record (key TEXT PRIMARY KEY, body TEXT NOT NULL)"


def _body(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


class RecordFile:
    """JSON records by key in one SQLite file (WAL, ``synchronous=FULL``). ``what`` names the
    file in errors ("journal", "pre-decision store")."""

    def __init__(self, path: str | Path, *, what: str = "journal") -> None:
        self.path = Path(path)
        self.what = what
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StateError(
                str(self.path),
                f"cannot open the {what} ({exc})",
                "move the file aside; the daemon then starts without what it held",
            ) from exc

    def read(self) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
        """Every row: (key -> body as stored, key -> parsed record). A record that is not a
        JSON object is left out of the second (it cannot be resolved; the others can)."""
        try:
            rows = self._db.execute("SELECT key, body FROM record ORDER BY rowid").fetchall()
        except sqlite3.Error as exc:
            raise StateError(
                str(self.path), f"cannot read the {self.what} ({exc})", "move the file aside and restart"
            ) from exc
        bodies: dict[str, str] = {}
        parsed: dict[str, dict[str, Any]] = {}
        for key, body in rows:
            bodies[key] = body
            try:
                value = json.loads(body)
            except ValueError:
                continue
            if isinstance(value, dict):
                parsed[key] = value
        return bodies, parsed

    def write(self, changes: Mapping[str, str | None], *, fsync: bool = True) -> None:
        """Write ``key -> body`` (None: delete) in one transaction, on disk before it returns
        (``fsync=False``: committed without waiting for the disk; :meth:`flush` puts it there).
        Raises ``StateError`` when the write fails (a full disk, a filesystem remounted
        read-only): the file then holds what it held before."""
        if not changes:
            return
        try:
            self._db.execute("PRAGMA synchronous=FULL" if fsync else "PRAGMA synchronous=NORMAL")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for key, body in changes.items():
                    if body is None:
                        self._db.execute("DELETE FROM record WHERE key = ?", (key,))
                    else:
                        self._db.execute("INSERT OR REPLACE INTO record(key, body) VALUES (?, ?)", (key, body))
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except (sqlite3.Error, OSError) as exc:
            raise StateError(
                str(self.path),
                f"cannot write the {self.what} ({exc})",
                "free space on its filesystem or remount it read-write; the daemon writes it again on its own",
            ) from exc

    def flush(self) -> None:
        """Put every write committed so far on disk."""
        fsync_wal(self.path)

    def close(self) -> None:
        self._db.close()


class Journal:
    def __init__(self, path: str | Path, *, flushes: FlushGroup | None = None) -> None:
        """``flushes``: the unit's group commit (``edge/delivery/flush.py``): a flushed write
        inside one of its groups is put on disk when the group closes."""
        self._file = RecordFile(path, what="journal")
        self.path = self._file.path
        self._flushes = flushes
        self._saved, self._loaded = self._file.read()
        #: Commits that waited for the disk, and those that did not (``sync(flush=False)``).
        self.flushed = 0
        self.unflushed = 0

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
        changes: dict[str, str | None] = {k: None for k in self._saved if k not in records}
        for key, value in records.items():
            body = _body(value)
            if self._saved.get(key) != body:
                changes[key] = body
        if not changes:
            return
        durable = flush or any(body is None or key not in self._saved for key, body in changes.items())
        defer = durable and self._flushes is not None and self._flushes.deferring
        self._file.write(changes, fsync=durable and not defer)
        if defer:
            assert self._flushes is not None
            self._flushes.owe(self)
        if durable:
            self.flushed += 1
        else:
            self.unflushed += 1
        for key, written in changes.items():
            if written is None:
                del self._saved[key]
            else:
                self._saved[key] = written

    def flush(self) -> None:
        """Put every record committed so far on disk (the flush group's)."""
        self._file.flush()

    def close(self) -> None:
        self._file.close()
