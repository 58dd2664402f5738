"""The console's database: SQLite in WAL mode (stdlib ``sqlite3``), one file.

Schema (``SCHEMA``; ``meta.schema`` says which version a file has):

* ``events``    every verified event once (``id`` unique): stream position, type, time, subject
                (passage id), audience, the key that signed it, the envelope as published.
                Only what the consumer library (``portlane.edge.client``) verified gets here.
* ``rejected``  input the library refused (unsigned, forged, malformed): topic and reason only —
                a count for the site alarm, never a fact.
* ``streams``   the library's ledger per ``(unit, epoch)``: highest seq, received, missing
                ranges, given up — put back into the library at start (``SiteClient.restore``).
* ``units``     each unit's view: its newest signed status, or "unconfirmed offline".
* ``passages``  one row per ``passage.completed``: the clearance-time facts, with the site's
                local day and hour of arrival and what released it (``release_basis``), for
                analytics.
* ``alarms``    alarms and items waiting for an officer; ``key`` is unique among the active
                ones, so a condition raised twice is one alarm.
* ``acks``      acknowledgements, one per alarm and agency.

``synchronous=NORMAL``: a power cut may lose the last transactions, and the ledger with them
— which makes the lost events a gap that the library asks to be replayed. Events, ledger and
alarms of one batch are written in one transaction. A schema 1 file (before issue 23) is
upgraded in place when a writer opens it; ``portlane report`` reads either.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portlane.edge.client import SiteEvent, StreamView, UnitView
from portlane.edge.contract.events import UnitStatus
from portlane.edge.contract.times import parse_rfc3339
from portlane.edge.errors import ConsoleStoreError

from .store_alarms import AlarmRow, AlarmTables

__all__ = ["AlarmRow", "PassageRow", "Store", "time_ms", "unit_record", "unit_view"]

SCHEMA_VERSION = 2
#: Versions ``portlane report`` reads (a schema 1 file has no ``release_basis``: read as unknown).
READABLE = (1, 2)

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
    received INTEGER NOT NULL DEFAULT 0,
    lost INTEGER NOT NULL DEFAULT 0,
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
    event_id TEXT NOT NULL,
    release_basis TEXT
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

#: Schema 1 → 2 (issue 23): the ledger is the library's (received, lost); passages say what
#: released them.
MIGRATE_1_TO_2 = (
    "ALTER TABLE streams ADD COLUMN received INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE streams ADD COLUMN lost INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE passages ADD COLUMN release_basis TEXT",
)

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
    release_basis: str | None = None  # predecision | online | override; None: not opened (or schema 1)


class Store(AlarmTables):
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
                if ver is None or int(ver[0]) not in READABLE:
                    raise ConsoleStoreError(f"{self.path}: not a portlane console database (schema {ver})")
                self.schema = int(ver[0])
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._migrate()
                self.schema = SCHEMA_VERSION
        except sqlite3.Error as exc:
            raise ConsoleStoreError(f"{self.path}: {exc}") from exc
        self._in_tx = False

    def _migrate(self) -> None:
        """Create the schema, or bring a schema 1 file up to date (one transaction)."""
        has_meta = self._db.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone()
        ver = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone() if has_meta else None
        if ver is not None and int(ver[0]) == 1:
            self._db.execute("BEGIN IMMEDIATE")
            for stmt in MIGRATE_1_TO_2:
                self._db.execute(stmt)
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))
            self._db.execute("COMMIT")
        elif ver is not None and int(ver[0]) != SCHEMA_VERSION:
            raise ConsoleStoreError(f"{self.path}: schema {ver[0]} is newer than this portlane ({SCHEMA_VERSION})")
        self._db.executescript(SCHEMA)
        self._db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))

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
    def insert_event(self, ev: SiteEvent, *, received_ms: int) -> bool:
        """Store a verified event; False if an event with its id is already stored (it came again
        after a restart of the console: the library's ledger had it as a gap or as new)."""
        env = ev.envelope
        cur = self._db.execute(
            "INSERT OR IGNORE INTO events(id, unit, epoch, seq, type, time_ms, subject, audience, signature,"
            " problem, received_ms, envelope) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                ev.id,
                ev.unit,
                ev.epoch,
                ev.seq,
                ev.type,
                time_ms(env.time),
                ev.subject,
                json.dumps(list(ev.audience)),
                f"verified:{ev.key_id}",
                None,
                received_ms,
                env.wire_bytes().decode("utf-8"),  # as published and signed (absent fields left out)
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
    def save_streams(self, streams: Iterable[StreamView]) -> None:
        """The library's ledger (``SiteClient.streams()``), inside the caller's transaction."""
        self._db.executemany(
            "INSERT INTO streams(unit, epoch, max_seq, missing, received, lost) VALUES (?,?,?,?,?,?)"
            " ON CONFLICT(unit, epoch) DO UPDATE SET max_seq=excluded.max_seq, missing=excluded.missing,"
            " received=excluded.received, lost=excluded.lost",
            [(v.unit, v.epoch, v.max_seq, json.dumps(v.missing), v.received, v.lost) for v in streams],
        )

    def load_streams(self) -> list[StreamView]:
        rows = self._db.execute("SELECT unit, epoch, max_seq, missing, received, lost FROM streams").fetchall()
        return [
            StreamView(u, int(e), int(m), int(r), tuple((int(a), int(b)) for a, b in json.loads(miss)), int(lost))
            for u, e, m, miss, r, lost in rows
        ]

    # ------------------------------------------------------------------ units
    def set_unit(self, unit: str, view: dict[str, Any], received_ms: int) -> None:
        """A unit's view (``live.unit_record``: its signed status, or unconfirmed offline)."""
        self._db.execute(
            "INSERT INTO units(unit, status, received_ms) VALUES (?,?,?) ON CONFLICT(unit) DO UPDATE SET"
            " status=excluded.status, received_ms=excluded.received_ms",
            (unit, json.dumps(view), received_ms),
        )

    def units(self) -> dict[str, dict[str, Any]]:
        return {u: json.loads(s) for u, s in self._db.execute("SELECT unit, status FROM units").fetchall()}

    # ------------------------------------------------------------------ passages
    @property
    def _passage_columns(self) -> str:
        basis = "release_basis" if self.schema >= 2 else "NULL AS release_basis"
        return (
            "passage_id, lane, lane_kind, vehicle_kind, outcome, inspected, scan_result, arrived_ms, completed_ms,"
            f" local_day, local_hour, plates, containers, stage_ms, event_id, {basis}"
        )

    def upsert_passage(self, p: PassageRow) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO passages(passage_id, lane, lane_kind, vehicle_kind, outcome, inspected,"
            " scan_result, arrived_ms, completed_ms, local_day, local_hour, plates, containers, stage_ms, event_id,"
            " release_basis) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
                p.release_basis,
            ),
        )

    def passages(
        self, *, start_ms: int | None = None, end_ms: int | None = None, lanes: Sequence[str] = ()
    ) -> list[PassageRow]:
        sql = f"SELECT {self._passage_columns} FROM passages WHERE 1=1"
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
        r = self._db.execute(
            f"SELECT {self._passage_columns} FROM passages WHERE passage_id = ?", (passage_id,)
        ).fetchone()
        return _passage(r) if r else None

    def released_by_basis(self) -> dict[str, dict[str, int]]:
        """Per lane, completed passages per release basis (predecision, online, override)."""
        if self.schema < 2:
            return {}
        out: dict[str, dict[str, int]] = {}
        rows = self._db.execute(
            "SELECT lane, release_basis, count(*) FROM passages WHERE release_basis IS NOT NULL"
            " GROUP BY lane, release_basis"
        ).fetchall()
        for lane, basis, n in rows:
            out.setdefault(lane, {})[basis] = int(n)
        return out

    def completed_per_lane(self) -> dict[str, int]:
        return {
            lane: int(n) for lane, n in self._db.execute("SELECT lane, count(*) FROM passages GROUP BY lane").fetchall()
        }

    def recent_passages(self, limit: int = 50, lane: str | None = None) -> list[PassageRow]:
        if lane:
            rows = self._db.execute(
                f"SELECT {self._passage_columns} FROM passages WHERE lane = ? ORDER BY completed_ms DESC LIMIT ?",
                (lane, limit),
            ).fetchall()
        else:
            rows = self._db.execute(
                f"SELECT {self._passage_columns} FROM passages ORDER BY completed_ms DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_passage(r) for r in rows]


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
        release_basis=r[15],
    )


def unit_record(view: UnitView) -> dict[str, Any]:
    """A unit's view as the ``units`` table keeps it."""
    return {
        "state": view.state,
        "status": view.status.model_dump(mode="json") if view.status is not None else None,
        "status_time": view.status_time,
        "key_id": view.key_id,
        "will": view.will,
    }


def unit_view(unit: str, record: Mapping[str, Any]) -> UnitView | None:
    """The view a ``units`` row holds; None for a row this version cannot read (schema 1 kept the
    unsigned retained status itself: not believed)."""
    try:
        status = record.get("status")
        return UnitView(
            unit,
            record["state"],
            UnitStatus.model_validate(status) if status is not None else None,
            record.get("status_time"),
            record.get("key_id"),
            bool(record.get("will")),
        )
    except (KeyError, TypeError, ValueError):
        return None


def time_ms(rfc3339: str) -> int:
    """Milliseconds since 1970 of an RFC 3339 time (an envelope's ``time``)."""
    return int(parse_rfc3339(rfc3339).timestamp() * 1000)
