"""The console's database: SQLite in WAL mode (stdlib ``sqlite3``), one file.

Schema (``SCHEMA``; ``meta.schema`` says which version a file has):

* ``events``    every accepted event once (``id`` unique): stream position, type, time,
                subject (passage id), audience, signature status, contract problem, the
                envelope as received. Duplicates are dropped here, by ``id``.
* ``rejected``  what failed parsing or signature verification (never in ``events``).
* ``streams``   the ledger per ``(unit, epoch)``: highest seq, missing ranges, replay state.
* ``units``     the last retained status of each unit.
* ``passages``  one row per ``passage.completed``: the clearance-time facts, with the site's
                local day and hour of arrival, for analytics.
* ``alarms``    alarms and items waiting for an officer; ``key`` is unique among the active
                ones, so a condition raised twice is one alarm.
* ``acks``      acknowledgements, one per alarm and agency.

``synchronous=NORMAL``: a power cut may lose the last transactions, and the ledger with them
— which makes the lost events a gap that the console asks to be replayed. Events, ledger
and alarms of one batch of messages are written in one transaction.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portlane.edge.console.ingest import Event, Stream
from portlane.edge.errors import ConsoleStoreError

__all__ = ["AlarmRow", "PassageRow", "Store"]

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    n INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    unit TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    subject TEXT,
    audience TEXT NOT NULL,
    signature TEXT NOT NULL,
    problem TEXT,
    received_ms INTEGER NOT NULL,
    envelope TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_subject ON events(subject);
CREATE INDEX IF NOT EXISTS events_stream ON events(unit, epoch, seq);
CREATE INDEX IF NOT EXISTS events_time ON events(time_ms);
CREATE TABLE IF NOT EXISTS rejected (
    n INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS streams (
    unit TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    max_seq INTEGER NOT NULL,
    missing TEXT NOT NULL,
    missing_since_ms INTEGER,
    replay_tries INTEGER NOT NULL DEFAULT 0,
    replay_next_ms INTEGER NOT NULL DEFAULT 0,
    replay_last TEXT,
    PRIMARY KEY (unit, epoch)
);
CREATE TABLE IF NOT EXISTS units (unit TEXT PRIMARY KEY, status TEXT NOT NULL, received_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS passages (
    passage_id TEXT PRIMARY KEY,
    lane TEXT NOT NULL,
    lane_kind TEXT NOT NULL,
    vehicle_kind TEXT NOT NULL,
    outcome TEXT NOT NULL,
    inspected INTEGER NOT NULL,
    scan_result TEXT,
    arrived_ms INTEGER NOT NULL,
    completed_ms INTEGER NOT NULL,
    local_day TEXT NOT NULL,
    local_hour INTEGER NOT NULL,
    plates TEXT NOT NULL,
    containers TEXT NOT NULL,
    stage_ms TEXT NOT NULL,
    event_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS passages_arrived ON passages(arrived_ms);
CREATE TABLE IF NOT EXISTS alarms (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    unit TEXT,
    passage_id TEXT,
    agencies TEXT NOT NULL,
    title TEXT NOT NULL,
    detail TEXT NOT NULL,
    event_id TEXT,
    raised_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    cleared_ms INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS alarms_active ON alarms(key) WHERE cleared_ms IS NULL;
CREATE INDEX IF NOT EXISTS alarms_raised ON alarms(raised_ms);
CREATE TABLE IF NOT EXISTS acks (
    alarm_id INTEGER NOT NULL REFERENCES alarms(id),
    agency TEXT NOT NULL,
    user TEXT NOT NULL,
    note TEXT NOT NULL,
    ms INTEGER NOT NULL,
    PRIMARY KEY (alarm_id, agency)
);
"""

#: How long a writer waits for another connection's lock (the CLI reading a live database).
BUSY_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class PassageRow:
    passage_id: str
    lane: str
    lane_kind: str
    vehicle_kind: str
    outcome: str
    inspected: bool
    scan_result: str | None
    arrived_ms: int
    completed_ms: int
    local_day: str
    local_hour: int
    plates: tuple[str, ...]
    containers: tuple[str, ...]
    stage_ms: dict[str, int]
    event_id: str


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


class Store:
    """One connection, used from the event loop's thread (or a CLI's). ``readonly`` opens an
    existing file without creating or migrating it (``portlane report``)."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        try:
            if readonly:
                if not self.path.exists():
                    raise ConsoleStoreError(f"{self.path}: no such database")
                self._db = sqlite3.connect(
                    f"file:{self.path}?mode=ro", uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_S
                )
                ver = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                if ver is None or int(ver[0]) != SCHEMA_VERSION:
                    raise ConsoleStoreError(f"{self.path}: not a portlane console database (schema {ver})")
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(SCHEMA)
                self._db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        except sqlite3.Error as exc:
            raise ConsoleStoreError(f"{self.path}: {exc}") from exc
        self._in_tx = False

    def close(self) -> None:
        self._db.close()

    def meta(self) -> dict[str, str]:
        return {k: v for k, v in self._db.execute("SELECT key, value FROM meta").fetchall()}

    def set_meta(self, **values: str) -> None:
        for k, v in values.items():
            self._db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value", (k, v)
            )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self._in_tx:
            yield
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._in_tx = True
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._in_tx = False

    # ------------------------------------------------------------------ events
    def insert_event(self, ev: Event, *, signature: str, problem: str | None, received_ms: int) -> bool:
        """Store ``ev``; False if an event with its id is already stored (a duplicate)."""
        cur = self._db.execute(
            "INSERT OR IGNORE INTO events(id, unit, epoch, seq, type, time_ms, subject, audience, signature,"
            " problem, received_ms, envelope) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                ev.id,
                ev.unit,
                ev.epoch,
                ev.seq,
                ev.type,
                ev.time_ms,
                ev.subject,
                json.dumps(list(ev.audience)),
                signature,
                problem,
                received_ms,
                json.dumps(ev.envelope, ensure_ascii=False, separators=(",", ":")),
            ),
        )
        return cur.rowcount == 1

    def record_rejected(self, *, topic: str, reason: str, detail: str, payload: bytes, received_ms: int) -> None:
        self._db.execute(
            "INSERT INTO rejected(received_ms, topic, reason, detail, payload) VALUES (?,?,?,?,?)",
            (received_ms, topic, reason, detail[:500], payload[:4096].decode("utf-8", "replace")),
        )

    def count(self, table: str) -> int:
        if table not in ("events", "rejected", "passages", "alarms", "acks"):
            raise ValueError(table)
        return int(self._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def events_of(self, subject: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT envelope, signature, problem FROM events WHERE subject = ? ORDER BY time_ms, unit, seq", (subject,)
        ).fetchall()
        out = []
        for env, sig, problem in rows:
            d: dict[str, Any] = json.loads(env)
            d["_signature"] = sig
            d["_problem"] = problem
            out.append(d)
        return out

    def recent_events(self, since_ms: int) -> list[tuple[str, dict[str, Any]]]:
        """``(unit, envelope)`` of events that happened since ``since_ms``, in the order received."""
        rows = self._db.execute(
            "SELECT unit, envelope FROM events WHERE time_ms >= ? ORDER BY n", (since_ms,)
        ).fetchall()
        return [(u, json.loads(e)) for u, e in rows]

    # ------------------------------------------------------------------ streams
    def save_stream(
        self, s: Stream, *, missing_since_ms: int | None, tries: int, next_ms: int, last: str | None
    ) -> None:
        self._db.execute(
            "INSERT INTO streams(unit, epoch, max_seq, missing, missing_since_ms, replay_tries, replay_next_ms,"
            " replay_last) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(unit, epoch) DO UPDATE SET max_seq=excluded.max_seq,"
            " missing=excluded.missing, missing_since_ms=excluded.missing_since_ms,"
            " replay_tries=excluded.replay_tries, replay_next_ms=excluded.replay_next_ms,"
            " replay_last=excluded.replay_last",
            (s.unit, s.epoch, s.max_seq, json.dumps(s.missing), missing_since_ms, tries, next_ms, last),
        )

    def load_streams(self) -> list[tuple[Stream, int | None, int, int, str | None]]:
        rows = self._db.execute(
            "SELECT unit, epoch, max_seq, missing, missing_since_ms, replay_tries, replay_next_ms, replay_last"
            " FROM streams"
        ).fetchall()
        return [
            (Stream(u, e, m, [(int(a), int(b)) for a, b in json.loads(miss)]), since, tries, nxt, last)
            for u, e, m, miss, since, tries, nxt, last in rows
        ]

    # ------------------------------------------------------------------ units
    def set_status(self, unit: str, status: dict[str, Any], received_ms: int) -> None:
        self._db.execute(
            "INSERT INTO units(unit, status, received_ms) VALUES (?,?,?) ON CONFLICT(unit) DO UPDATE SET"
            " status=excluded.status, received_ms=excluded.received_ms",
            (unit, json.dumps(status), received_ms),
        )

    def statuses(self) -> dict[str, dict[str, Any]]:
        return {u: json.loads(s) for u, s in self._db.execute("SELECT unit, status FROM units").fetchall()}

    # ------------------------------------------------------------------ passages
    def upsert_passage(self, p: PassageRow) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO passages(passage_id, lane, lane_kind, vehicle_kind, outcome, inspected,"
            " scan_result, arrived_ms, completed_ms, local_day, local_hour, plates, containers, stage_ms, event_id)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                p.passage_id,
                p.lane,
                p.lane_kind,
                p.vehicle_kind,
                p.outcome,
                int(p.inspected),
                p.scan_result,
                p.arrived_ms,
                p.completed_ms,
                p.local_day,
                p.local_hour,
                json.dumps(list(p.plates), ensure_ascii=False),
                json.dumps(list(p.containers)),
                json.dumps(p.stage_ms),
                p.event_id,
            ),
        )

    def passages(
        self, *, start_ms: int | None = None, end_ms: int | None = None, lanes: Sequence[str] = ()
    ) -> list[PassageRow]:
        sql = "SELECT * FROM passages WHERE 1=1"
        args: list[Any] = []
        if start_ms is not None:
            sql += " AND arrived_ms >= ?"
            args.append(start_ms)
        if end_ms is not None:
            sql += " AND arrived_ms < ?"
            args.append(end_ms)
        if lanes:
            sql += f" AND lane IN ({','.join('?' * len(lanes))})"
            args += list(lanes)
        sql += " ORDER BY arrived_ms"
        return [_passage(r) for r in self._db.execute(sql, args).fetchall()]

    def passage(self, passage_id: str) -> PassageRow | None:
        r = self._db.execute("SELECT * FROM passages WHERE passage_id = ?", (passage_id,)).fetchone()
        return _passage(r) if r else None

    def completed_per_lane(self) -> dict[str, int]:
        return {
            lane: int(n) for lane, n in self._db.execute("SELECT lane, count(*) FROM passages GROUP BY lane").fetchall()
        }

    def recent_passages(self, limit: int = 50, lane: str | None = None) -> list[PassageRow]:
        if lane:
            rows = self._db.execute(
                "SELECT * FROM passages WHERE lane = ? ORDER BY completed_ms DESC LIMIT ?", (lane, limit)
            ).fetchall()
        else:
            rows = self._db.execute("SELECT * FROM passages ORDER BY completed_ms DESC LIMIT ?", (limit,)).fetchall()
        return [_passage(r) for r in rows]

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


def _passage(r: tuple[Any, ...]) -> PassageRow:
    return PassageRow(
        passage_id=r[0],
        lane=r[1],
        lane_kind=r[2],
        vehicle_kind=r[3],
        outcome=r[4],
        inspected=bool(r[5]),
        scan_result=r[6],
        arrived_ms=r[7],
        completed_ms=r[8],
        local_day=r[9],
        local_hour=r[10],
        plates=tuple(json.loads(r[11])),
        containers=tuple(json.loads(r[12])),
        stage_ms={k: int(v) for k, v in json.loads(r[13]).items()},
        event_id=r[14],
    )
