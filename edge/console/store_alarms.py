"""The console database's alarm tables: alarms (one active row per condition ``key``) and one
acknowledgement per alarm and agency. A part of :class:`~.store.Store` (its mixin), on the same
connection; the schema is the store's."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["AlarmRow", "AlarmTables"]


@dataclass(frozen=True, slots=True)
class AlarmRow:
    id: int
    key: str
    kind: str
    severity: str
    unit: str | None
    passage_id: str | None
    agencies: tuple[str, ...]
    title: str
    detail: str
    event_id: str | None
    raised_ms: int
    updated_ms: int
    cleared_ms: int | None
    acks: dict[str, dict[str, Any]]  # agency -> {user, note, ms}

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "kind": self.kind,
            "severity": self.severity,
            "unit": self.unit,
            "passage_id": self.passage_id,
            "agencies": list(self.agencies),
            "title": self.title,
            "detail": self.detail,
            "event_id": self.event_id,
            "raised_ms": self.raised_ms,
            "updated_ms": self.updated_ms,
            "cleared_ms": self.cleared_ms,
            "active": self.cleared_ms is None,
            "acks": self.acks,
        }


class AlarmTables:
    _db: sqlite3.Connection

    # ------------------------------------------------------------------ alarms
    def raise_alarm(
        self,
        *,
        key: str,
        kind: str,
        severity: str,
        unit: str | None,
        passage_id: str | None,
        agencies: Sequence[str],
        title: str,
        detail: str,
        event_id: str | None,
        ms: int,
    ) -> tuple[int, bool]:
        """Raise (or refresh) the active alarm ``key``; returns ``(id, new)``."""
        row = self._db.execute("SELECT id FROM alarms WHERE key = ? AND cleared_ms IS NULL", (key,)).fetchone()
        if row is not None:
            self._db.execute("UPDATE alarms SET detail = ?, updated_ms = ? WHERE id = ?", (detail, ms, row[0]))
            return int(row[0]), False
        cur = self._db.execute(
            "INSERT INTO alarms(key, kind, severity, unit, passage_id, agencies, title, detail, event_id, raised_ms,"
            " updated_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (key, kind, severity, unit, passage_id, json.dumps(list(agencies)), title, detail, event_id, ms, ms),
        )
        return int(cur.lastrowid or 0), True

    def clear_alarm(self, key: str, ms: int) -> bool:
        cur = self._db.execute(
            "UPDATE alarms SET cleared_ms = ?, updated_ms = ? WHERE key = ? AND cleared_ms IS NULL", (ms, ms, key)
        )
        return cur.rowcount > 0

    def active_alarm_keys(self) -> set[str]:
        return {k for (k,) in self._db.execute("SELECT key FROM alarms WHERE cleared_ms IS NULL").fetchall()}

    def ack(self, alarm_id: int, *, agency: str, user: str, note: str, ms: int) -> bool:
        """Record ``agency``'s acknowledgement; False if the alarm does not exist or is not
        that agency's, or the agency already acknowledged it."""
        a = self.alarm(alarm_id)
        if a is None or (a.agencies and agency not in a.agencies) or agency in a.acks:
            return False
        self._db.execute(
            "INSERT INTO acks(alarm_id, agency, user, note, ms) VALUES (?,?,?,?,?)",
            (alarm_id, agency, user, note[:500], ms),
        )
        return True

    def alarm(self, alarm_id: int) -> AlarmRow | None:
        rows = self._alarms("WHERE id = ?", [alarm_id], 1)
        return rows[0] if rows else None

    def alarms(self, *, since_ms: int | None = None, active_only: bool = False, limit: int = 500) -> list[AlarmRow]:
        where, args = "WHERE 1=1", []
        if active_only:
            where += " AND cleared_ms IS NULL"
        if since_ms is not None:
            where += " AND (raised_ms >= ? OR cleared_ms IS NULL)"
            args.append(since_ms)
        return self._alarms(where, args, limit)

    def _alarms(self, where: str, args: list[Any], limit: int) -> list[AlarmRow]:
        rows = self._db.execute(
            "SELECT id, key, kind, severity, unit, passage_id, agencies, title, detail, event_id, raised_ms,"
            f" updated_ms, cleared_ms FROM alarms {where} ORDER BY id DESC LIMIT ?",
            [*args, limit],
        ).fetchall()
        ids = [r[0] for r in rows]
        acks: dict[int, dict[str, dict[str, Any]]] = {}
        if ids:
            for aid, agency, user, note, ms in self._db.execute(
                f"SELECT alarm_id, agency, user, note, ms FROM acks WHERE alarm_id IN ({','.join('?' * len(ids))})",
                ids,
            ).fetchall():
                acks.setdefault(aid, {})[agency] = {"user": user, "note": note, "ms": ms}
        return [
            AlarmRow(
                id=r[0],
                key=r[1],
                kind=r[2],
                severity=r[3],
                unit=r[4],
                passage_id=r[5],
                agencies=tuple(json.loads(r[6])),
                title=r[7],
                detail=r[8],
                event_id=r[9],
                raised_ms=r[10],
                updated_ms=r[11],
                cleared_ms=r[12],
                acks=acks.get(r[0], {}),
            )
            for r in rows
        ]
