"""The lane's memory of its unfinished passage, on disk, so a restart can close it out.

After ``kill -9`` or a power cut the new process reads the passage the old one was working on
and ``LaneLogic.start`` completes it as ``recovered`` (the gate had been authorised) or
``abandoned`` before taking the next vehicle. One small SQLite database per lane, WAL,
``synchronous=FULL``; a row is written when the passage changes and deleted when it completes.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from portlane.edge.errors import StateError

from .passage import Passage

__all__ = ["PassageJournal"]

SCHEMA = "CREATE TABLE IF NOT EXISTS passage (id TEXT PRIMARY KEY, body TEXT NOT NULL)"


class PassageJournal:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(SCHEMA)
            self._db.execute("SELECT COUNT(*) FROM passage").fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise StateError(
                str(self.path),
                f"cannot open the passage journal ({exc})",
                "move the file aside; the lane then starts without memory of an unfinished passage",
            ) from exc
        self._saved: dict[str, str] = {}

    def unfinished(self) -> list[Passage]:
        rows = self._db.execute("SELECT body FROM passage ORDER BY rowid").fetchall()
        out = []
        for (body,) in rows:
            try:
                out.append(Passage.from_json(json.loads(body)))
            except (ValueError, TypeError, KeyError):
                continue  # an unreadable record cannot be closed out; the rest can
        return out

    def sync(self, current: Passage | None) -> None:
        """Make the journal hold exactly ``current`` (written only when it changed)."""
        keep = current.id if current is not None else None
        for pid in [p for p in self._saved if p != keep]:
            self._db.execute("DELETE FROM passage WHERE id = ?", (pid,))
            del self._saved[pid]
        if current is None:
            return
        body = json.dumps(current.to_json(), sort_keys=True, ensure_ascii=False)
        if self._saved.get(current.id) != body:
            self._db.execute("INSERT OR REPLACE INTO passage(id, body) VALUES (?, ?)", (current.id, body))
            self._saved[current.id] = body

    def clear(self) -> None:
        self._db.execute("DELETE FROM passage")
        self._saved.clear()

    def close(self) -> None:
        self._db.close()
