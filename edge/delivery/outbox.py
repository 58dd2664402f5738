"""Durable outbox: every event is on disk before it is sent; a delivered event stays for a
retention window so that it can be replayed.

One SQLite database per unit (lane or scanner) in WAL mode. An event is committed with
``synchronous=FULL`` (the WAL is fsynced) before ``put`` returns, so a returned event survives
``kill -9`` and a power cut. Several events can share one commit and one fsync (group commit):
``put_many`` commits a caller's burst in one transaction, and ``put_async`` batches the puts
of every task that calls it in the same event-loop turn; each caller gets its envelope only
after the commit.

Identity. The outbox assigns the per-unit ``seq`` in the transaction that stores the event:
``seq`` strictly increases and has no gaps (``meta.last_seq`` never goes back, even when rows
are deleted). Each store has a stream ``epoch`` chosen when the store is created (UNIX time in
ms); the event id is ``{site}/{unit}/{epoch}/{seq}``. A zero-byte, deleted or recreated store
gets a new, larger epoch and starts again at seq 1, so an id is never reused.

Delivery. ``peek`` returns undelivered events in seq order; ``ack`` marks the ones the broker
acknowledged (PUBACK) as delivered. Acks are committed without an fsync: an ack lost in a
power cut only means the event is sent again with the same id.

Retention and replay. Delivered events stay for ``retention.max_age_s`` and up to
``retention.max_mb`` of payload; the bound evicts the oldest delivered events first, never
an undelivered one. ``replay(from_seq, to_seq)`` puts retained events back in the queue; they
are re-sent with their original id, seq and bytes (a broker that crashed may have lost events
it had acknowledged; a subscriber that finds a gap asks for them again).

Bounded: ``capacity`` undelivered events (replayed ones are not counted). Overflow policy:
  * ``reject_new`` (default) — ``put`` raises ``OutboxFullError`` and counts the refusal in
    ``refused`` (persisted); the lane takes itself out of service rather than lose its record
    of a passage, and audits the refusal;
  * ``drop_oldest`` — the oldest undelivered event is deleted and counted in ``dropped``.

A store that cannot be used — corrupt, truncated, not a database, read-only, on a full disk —
raises ``OutboxStateError`` (a ``StateError``: one line naming the file, what is wrong and
what to do) when it is opened, and when a write fails later.

Counters (``stats()``, also after ``close()``): ``depth`` (undelivered), ``oldest_age_s`` (of
the oldest undelivered event), ``dropped``, ``refused``, ``last_seq``, ``epoch``, ``retained``
(delivered events kept for replay) and their bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from portlane.edge.config import OutboxConfig, OutboxRetention
from portlane.edge.contract.envelope import Envelope
from portlane.edge.contract.times import rfc3339
from portlane.edge.delivery.flush import FlushGroup, fsync_wal
from portlane.edge.delivery.state import corrupt_error, sqlite_state_error
from portlane.edge.errors import OutboxError, OutboxFullError, OutboxStateError

__all__ = ["Outbox", "OutboxEvent", "OutboxRow", "OutboxStats", "Signer"]

_T = TypeVar("_T")

#: 24 h of a busy lane (5,000 vehicles a day x ~15 events) is 75,000 events; a day of
#: outage across a whole site fits many times over.
DEFAULT_CAPACITY = OutboxConfig().capacity

#: Applied to each envelope (as a JSON-ready dict) before its row is written; returns the dict
#: to store and send — e.g. with the ``sigkeyid``/``sig`` attributes of an event signature.
Signer = Callable[[dict[str, Any]], dict[str, Any]]

#: Undelivered rows kept in memory for the sender (about 5 MB of typical events); beyond
#: that the sender reads them from disk.
TAIL_MAX = 10_000
#: How often (at most) ``ack`` looks for retained events to evict by age.
EVICT_CHECK_S = 1.0
#: Eviction deletes at most EVICT_CHUNKS x EVICT_CHUNK events per ack, so that an ack never
#: stalls the loop for long; the rest goes with the next acks.
EVICT_CHUNK = 500
EVICT_CHUNKS = 8

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


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: int
    oldest_age_s: float
    dropped: int
    last_seq: int
    refused: int = 0
    epoch: int = 0
    retained: int = 0
    retained_bytes: int = 0
    first_retained_seq: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "oldest_age_s": round(self.oldest_age_s, 3),
            "dropped": self.dropped,
            "refused": self.refused,
            "last_seq": self.last_seq,
            "epoch": self.epoch,
            "retained": self.retained,
            "retained_bytes": self.retained_bytes,
            "first_retained_seq": self.first_retained_seq,
        }


class _Waiter:
    """A ``put_async`` call waiting for the next group commit."""

    __slots__ = ("event", "future")

    def __init__(self, event: OutboxEvent, future: asyncio.Future[Envelope]) -> None:
        self.event = event
        self.future = future


class Outbox:
    _epoch_lock = threading.Lock()
    #: Epochs this process handed out, per store path: a store deleted and recreated within
    #: the same millisecond still gets a larger epoch.
    _last_epoch: ClassVar[dict[str, int]] = {}

    def __init__(
        self,
        path: str | Path,
        *,
        site: str,
        unit: str,
        config: OutboxConfig | None = None,
        capacity: int | None = None,
        overflow: Literal["reject_new", "drop_oldest"] | None = None,
        retention: OutboxRetention | None = None,
        clock: Callable[[], float] = time.time,
        signer: Signer | None = None,
        flushes: FlushGroup | None = None,
    ) -> None:
        """Open (or create) the store at ``path``. ``config`` is the site's ``outbox:`` section;
        ``capacity``/``overflow``/``retention`` override single fields of it. ``flushes``: the
        unit's group commit (``delivery/flush.py``): events written inside one of its groups are
        put on disk when the group closes. Raises ``OutboxStateError`` when the store cannot be
        used."""
        cfg = config or OutboxConfig()
        self.path = Path(path)
        self.site = site
        self.unit = unit
        self.capacity = capacity if capacity is not None else cfg.capacity
        self.overflow: Literal["reject_new", "drop_oldest"] = overflow or cfg.overflow
        self.retention = retention or cfg.retention
        self.commit_batch_max = cfg.commit_batch_max
        self.clock = clock
        self.signer = signer
        self._flushes = flushes
        self._listeners: list[Callable[[], None]] = []
        # The writer connection is used by one thread at a time (``_write_lock``, held for a
        # whole transaction, fsync included); counters and the hand-over lists are guarded by
        # ``_count_lock``, held only briefly, so the loop never waits for a disk.
        self._write_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._waiting: list[_Waiter] = []  # put_async calls not yet committed
        self._ack_queue: list[int] = []  # acks not yet written
        self._acking: set[int] = set()  # the same, for peek to leave out
        # The newest undelivered rows, in seq order, as committed: the sender reads them from
        # here rather than from disk. Every undelivered row with seq >= _tail_from is in it.
        self._tail: dict[int, OutboxRow] = {}
        self._job: asyncio.Future[tuple[list[_Waiter], list[Envelope | OutboxFullError] | BaseException]] | None
        self._job = None
        self._kick_scheduled = False
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        self._final: OutboxStats | None = None
        self._rewinds = 0
        self._next_evict_check = 0.0
        #: Durable transactions (one fsync each), the events they wrote, and the seconds they
        #: took, fsync included: events/commits is the group-commit batch size.
        self.commits = 0
        self.committed = 0
        self.commit_seconds = 0.0
        self._db = self._open()
        self._tail_from = self._last_seq + 1
        # Reads (peek, stats) on their own connection: in WAL mode they never wait for a writer.
        self._rdb = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)

    # ------------------------------------------------------------------ opening
    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _state_error(self.path, exc, doing="create its directory") from exc
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
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
                raise _corrupt(self.path, "; ".join(check)[:200])
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
            self._epoch = int(meta["epoch"])
            self._last_seq = int(meta["last_seq"])
            self._dropped = int(meta["dropped"])
            self._refused = int(meta["refused"])
            self.opens = int(meta["opens"])
            self._depth = int(db.execute("SELECT COUNT(*) FROM outbox WHERE delivered IS NULL").fetchone()[0])
            self._requeued = int(
                db.execute("SELECT COUNT(*) FROM outbox WHERE delivered IS NULL AND replayed > 0").fetchone()[0]
            )
            n, size = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox WHERE delivered IS NOT NULL"
            ).fetchone()
            self._retained, self._retained_bytes = int(n), int(size)
        except OutboxStateError:
            if db is not None:
                db.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            if db is not None:
                db.close()
            raise _state_error(self.path, exc, doing="open it") from exc
        return db

    def _new_epoch(self) -> int:
        key = str(self.path.resolve())
        with Outbox._epoch_lock:
            epoch = max(int(self.clock() * 1000), Outbox._last_epoch.get(key, -1) + 1)
            Outbox._last_epoch[key] = epoch
        return epoch

    def close(self) -> None:
        """Commit what ``put_async`` callers handed over and the acks not yet written, then
        close. Idempotent; ``stats()`` and the counters still answer afterwards (with the values
        at close). Call it from the event loop's thread (or with no loop running)."""
        if self._closed:
            return
        try:
            if self._executor is not None:
                self._executor.shutdown(wait=True)  # a commit in progress finishes
            with self._write_lock:
                waiting, acks = self._take()
                if waiting or acks:
                    results: list[Envelope | OutboxFullError] | BaseException
                    try:
                        results = self._transact_locked([w.event for w in waiting], [], acks)
                    except Exception as exc:
                        results = exc
                    _resolve(waiting, results)
            self._final = self._stats_now()
        except sqlite3.Error:
            self._final = self._stats_memory()
        finally:
            self._closed = True
            self._rdb.close()
            self._db.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def on_put(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the event loop's thread) after every commit that added events,
        and after a replay: it wakes the sender."""
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
        """Assign the next seq, build the envelope and commit it to disk (one fsync). When this
        returns, the event is durable. Raises ``OutboxFullError`` (full, ``reject_new``) or
        ``OutboxStateError`` (the store cannot be written)."""
        env = self.put_many([OutboxEvent(event_type, data, topic, subject, audience, at)])
        return env[0]

    def put_many(self, events: Sequence[OutboxEvent]) -> list[Envelope]:
        """Commit ``events`` in one transaction with one fsync, in order; all or nothing (when
        the outbox cannot take them all under ``reject_new``, none is written and each counts
        as refused). When this returns, every event is durable. It waits for a group commit
        in progress (at most one fsync)."""
        self._check_open()
        if not events:
            return []
        with self._write_lock:
            # Events that put_async callers handed over earlier go first: seq follows call order.
            waiting, acks = self._take()
            try:
                results = self._transact_locked([w.event for w in waiting], list(events), acks)
            except Exception as exc:
                _resolve(waiting, exc)
                raise
        _resolve(waiting, results[: len(waiting)])
        self._notify(results)
        out: list[Envelope] = []
        for r in results[len(waiting) :]:
            if isinstance(r, BaseException):
                raise r
            out.append(r)
        return out

    async def put_async(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        topic: str,
        subject: str | None = None,
        audience: tuple[str, ...] = (),
        at: float | None = None,
    ) -> Envelope:
        """As ``put``, for many concurrent producers (group commit). Events are committed by the
        outbox's writer thread, so the event loop keeps running during the fsync: the puts that
        arrive while one commit is on its way to disk share the next transaction and fsync.
        Returns after the commit: the event is durable when the caller gets its envelope."""
        self._check_open()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Envelope] = loop.create_future()
        with self._count_lock:
            self._waiting.append(_Waiter(OutboxEvent(event_type, data, topic, subject, audience, at), fut))
        self._schedule(loop)
        return await fut

    # ------------------------------------------------------------------ the writer
    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start a group commit on the next loop turn, unless one is running (its completion
        starts the next): puts of the same turn, and of the whole time the previous commit
        took, share one transaction."""
        if self._job is None and not self._kick_scheduled:
            self._kick_scheduled = True
            loop.call_soon(self._kick)

    def _kick(self) -> None:
        self._kick_scheduled = False
        if self._job is not None or self._closed:
            return
        with self._count_lock:
            if not self._waiting and not self._ack_queue:
                return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"outbox-{self.unit}")
        self._job = asyncio.get_running_loop().run_in_executor(self._executor, self._job_run)
        self._job.add_done_callback(self._job_done)

    def _job_run(self) -> tuple[list[_Waiter], list[Envelope | OutboxFullError] | BaseException]:
        """(writer thread) One transaction: the events and acks handed over so far."""
        with self._write_lock:
            waiting, acks = self._take(self.commit_batch_max)
            try:
                return waiting, self._transact_locked([w.event for w in waiting], [], acks)
            except Exception as exc:
                return waiting, exc

    def _job_done(
        self, job: asyncio.Future[tuple[list[_Waiter], list[Envelope | OutboxFullError] | BaseException]]
    ) -> None:
        """(loop) Hand each caller its envelope (or error), wake the sender, start the next."""
        self._job = None
        if job.cancelled():
            return
        exc = job.exception()
        if exc is not None:  # the executor itself failed (shut down): nothing was written
            return
        waiting, results = job.result()
        _resolve(waiting, results)
        if not isinstance(results, BaseException):
            self._notify(results)
        if not self._closed:
            self._kick()

    def _take(self, limit: int | None = None) -> tuple[list[_Waiter], list[int]]:
        with self._count_lock:
            if limit is None:
                waiting, self._waiting = self._waiting, []
            else:
                waiting, self._waiting = self._waiting[:limit], self._waiting[limit:]
            acks, self._ack_queue = self._ack_queue, []
        return waiting, acks

    def _notify(self, results: Sequence[Envelope | BaseException]) -> None:
        if any(not isinstance(r, BaseException) for r in results):
            for cb in self._listeners:
                cb()

    def _transact_locked(
        self, independent: list[OutboxEvent], atomic: list[OutboxEvent], acks: list[int]
    ) -> list[Envelope | OutboxFullError]:
        """ONE transaction (caller holds ``_write_lock``; any thread): record ``acks``, then
        write ``independent`` events (each refused on its own when full) and ``atomic`` ones
        (all refused unless they all fit). With events it is committed with an fsync; acks alone
        are not (a lost ack only means the event is sent again, with the same id)."""
        db = self._db
        durable = bool(independent or atomic)
        # Inside the unit's flush group (and on its thread), the group puts it on disk.
        defer = durable and self._flushes is not None and self._flushes.deferring
        refused_now = drop = requeued_dropped = 0
        dropped_seqs: list[int] = []
        rows: list[tuple[int, str, str, bytes, float]] = []
        envs: list[Envelope] = []
        take_ind, take_atomic = len(independent), True
        done: list[tuple[int, int]] = []
        evicted = (0, 0)
        seq = self._last_seq
        started = time.perf_counter()
        try:
            db.execute("PRAGMA synchronous=FULL" if durable and not defer else "PRAGMA synchronous=NORMAL")
            db.execute("BEGIN IMMEDIATE")
            now = self.clock()
            if acks:
                done, evicted = self._record_acks(db, acks, now)
            with self._count_lock:
                undelivered = self._depth - self._requeued - sum(1 for _n, r in done if not r)
            room = self.capacity - undelivered
            if self.overflow == "reject_new":
                take_ind = max(0, min(len(independent), room))
                take_atomic = len(atomic) <= room - take_ind
            to_write = independent[:take_ind] + (atomic if take_atomic else [])
            refused_now = len(independent) + len(atomic) - len(to_write)
            for ev in to_write:
                seq += 1
                env, payload, at = self._build(ev, seq)
                envs.append(env)
                rows.append((seq, env.id, ev.topic, payload, at))
            if rows:
                db.executemany("INSERT INTO outbox(seq, id, topic, payload, created) VALUES (?, ?, ?, ?, ?)", rows)
                db.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (seq,))
            if self.overflow == "drop_oldest" and rows:
                drop = max(0, undelivered + len(rows) - self.capacity)
                if drop:
                    gone = db.execute(
                        "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE delivered IS NULL "
                        "ORDER BY seq LIMIT ?) RETURNING seq, replayed",
                        (drop,),
                    ).fetchall()
                    dropped_seqs = [int(q) for q, _r in gone]
                    requeued_dropped = sum(1 for _q, r in gone if r)
                    drop = len(gone)
                    db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (drop,))
            if refused_now:
                db.execute("UPDATE meta SET value = value + ? WHERE key = 'refused'", (refused_now,))
            db.execute("COMMIT")
        except BaseException as exc:
            self._rollback()
            with self._count_lock:  # the acks were not recorded: try them again next time
                self._ack_queue[:0] = acks
            if isinstance(exc, sqlite3.Error | OSError):
                raise _state_error(self.path, exc, doing="write an event" if durable else "record a delivery") from exc
            raise
        if defer:
            assert self._flushes is not None
            self._flushes.owe(self)
        with self._count_lock:
            if durable:
                self.commits += 1
                self.committed += len(rows)
                self.commit_seconds += time.perf_counter() - started
            self._last_seq = seq
            self._depth += len(rows) - drop - len(done)
            self._requeued -= requeued_dropped + sum(1 for _n, r in done if r)
            self._dropped += drop
            self._refused += refused_now
            if self._keep():
                self._retained += len(done) - evicted[0]
                self._retained_bytes += sum(n for n, _r in done) - evicted[1]
            self._acking.difference_update(acks)
            for q in dropped_seqs:
                self._tail.pop(q, None)
            for q, env_id, topic, payload, at in rows:
                self._tail[q] = OutboxRow(q, env_id, topic, payload, at)
            while len(self._tail) > TAIL_MAX:
                first = next(iter(self._tail))
                del self._tail[first]
                self._tail_from = first + 1
        out: list[Envelope | OutboxFullError] = list(envs[:take_ind])
        out += [self._full_error(ev.event_type) for ev in independent[take_ind:]]
        if take_atomic:
            out += envs[take_ind:]
        else:
            out += [self._full_error(ev.event_type) for ev in atomic]
        return out

    def flush(self) -> None:
        """Put every event committed so far on disk (the flush group's, see ``flush.py``)."""
        fsync_wal(self.path)

    def _keep(self) -> bool:
        return self.retention.max_age_s > 0 and self.retention.max_mb > 0

    def _record_acks(
        self, db: sqlite3.Connection, acks: list[int], now: float
    ) -> tuple[list[tuple[int, int]], tuple[int, int]]:
        """Mark ``acks`` delivered (or delete them when nothing is retained) and evict beyond
        the retention bounds. Returns ([(payload bytes, replayed)], (evicted, evicted bytes))."""
        ids = json.dumps(acks)
        if self._keep():
            sql = (
                "UPDATE outbox SET delivered = ? WHERE delivered IS NULL AND seq IN "
                "(SELECT value FROM json_each(?)) RETURNING LENGTH(payload), replayed"
            )
            done = [(int(n), int(r)) for n, r in db.execute(sql, (now, ids)).fetchall()]
            return done, self._evict(now, sum(n for n, _r in done))
        sql = (
            "DELETE FROM outbox WHERE delivered IS NULL AND seq IN (SELECT value FROM json_each(?)) "
            "RETURNING LENGTH(payload), replayed"
        )
        return [(int(n), int(r)) for n, r in db.execute(sql, (ids,)).fetchall()], (0, 0)

    def _full_error(self, event_type: str) -> OutboxFullError:
        return OutboxFullError(
            str(self.path),
            event_type=event_type,
            capacity=self.capacity,
            depth=self.depth,
            refused=self._refused,
            dropped=self._dropped,
        )

    def _build(self, ev: OutboxEvent, seq: int) -> tuple[Envelope, bytes, float]:
        now = self.clock() if ev.at is None else ev.at
        env = Envelope(
            id=f"{self.site}/{self.unit}/{self._epoch}/{seq}",
            source=f"portlane://{self.site}/{self.unit}",
            type=f"portlane.{ev.event_type}",
            time=rfc3339(now),
            subject=ev.subject,
            seq=seq,
            epoch=self._epoch,
            audience=ev.audience,
            data=ev.data,
        )
        if self.signer is None:
            return env, env.model_dump_json(exclude_none=True).encode(), now
        signed = self.signer(env.model_dump(mode="json", exclude_none=True))
        # The stored bytes are exactly the signed object (the signature covers them).
        payload = json.dumps(signed, ensure_ascii=False, separators=(",", ":")).encode()
        return Envelope.model_validate(signed), payload, now

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):  # an unusable connection: the original error says why
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")

    def _check_open(self) -> None:
        if self._closed:
            raise OutboxError(f"{self.path}: outbox closed")

    # ------------------------------------------------------------------ send side
    def peek(self, *, after: int = 0, limit: int = 100) -> list[OutboxRow]:
        """Undelivered events with seq > ``after``, in seq order (acknowledged ones whose ack is
        not written yet are left out)."""
        self._check_open()
        acking = self._acking
        with self._count_lock:
            if after + 1 >= self._tail_from:  # all of it is in memory
                out: list[OutboxRow] = []
                for seq, row in self._tail.items():
                    if seq > after and seq not in acking:
                        out.append(row)
                        if len(out) >= limit:
                            break
                return out
        rows = self._rdb.execute(
            "SELECT seq, id, topic, payload, created FROM outbox WHERE delivered IS NULL AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()
        return [OutboxRow(*r) for r in rows if r[0] not in acking]

    def newest(self, topic: str, *, limit: int = 100) -> list[OutboxRow]:
        """The newest ``limit`` events stored for ``topic`` (delivered and retained, or not yet
        delivered), newest first: what a restarting unit reads to learn what it had already said
        before it stopped."""
        self._check_open()
        rows = self._rdb.execute(
            "SELECT seq, id, topic, payload, created FROM outbox WHERE topic = ? ORDER BY seq DESC LIMIT ?",
            (topic, limit),
        ).fetchall()
        return [OutboxRow(*r) for r in rows]

    def ack(self, seqs: Sequence[int]) -> None:
        """The broker acknowledged ``seqs``: they are delivered (``depth`` drops at once) and kept
        for replay within the retention bounds. On an event loop the ack is written by the
        writer thread with the next group commit, without an fsync of its own (if a crash loses
        it, the event is sent again with the same id); without a loop it is written now."""
        if not seqs:
            return
        self._check_open()
        with self._count_lock:
            self._ack_queue.extend(seqs)
            self._acking.update(seqs)
            for q in seqs:
                self._tail.pop(q, None)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            with self._write_lock:
                waiting, acks = self._take()
                self._transact_locked([w.event for w in waiting], [], acks)
            return
        self._schedule(loop)

    def _evict(self, now: float, added_bytes: int) -> tuple[int, int]:
        """Delete the oldest delivered events beyond the retention bounds (inside the ack's
        transaction; ``added_bytes`` were just acknowledged). Returns (events, bytes) evicted.
        Never touches undelivered events. Works in bounded chunks, oldest seq first: a large
        excess (after the bounds were lowered) is worked off over the next acks."""
        db = self._db
        count = size = 0
        if now >= self._next_evict_check:
            self._next_evict_check = now + EVICT_CHECK_S
            cutoff = now - self.retention.max_age_s
            for _ in range(EVICT_CHUNKS):
                gone = db.execute(
                    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE delivered IS NOT NULL "
                    "ORDER BY seq LIMIT ?) AND created < ? RETURNING LENGTH(payload)",
                    (EVICT_CHUNK, cutoff),
                ).fetchall()
                count += len(gone)
                size += sum(int(n) for (n,) in gone)
                if len(gone) < EVICT_CHUNK:
                    break
        max_bytes = int(self.retention.max_mb * 1024 * 1024)
        for _ in range(EVICT_CHUNKS):
            excess = self._retained_bytes + added_bytes - size - max_bytes
            if excess <= 0:
                break
            rows = db.execute(
                "SELECT seq, LENGTH(payload) FROM outbox WHERE delivered IS NOT NULL ORDER BY seq LIMIT ?",
                (EVICT_CHUNK,),
            ).fetchall()
            if not rows:
                break
            upto, freed = rows[-1][0], 0
            for s, n in rows:
                freed += int(n)
                if freed >= excess:
                    upto = s
                    break
            gone = db.execute(
                "DELETE FROM outbox WHERE delivered IS NOT NULL AND seq <= ? RETURNING LENGTH(payload)", (upto,)
            ).fetchall()
            count += len(gone)
            size += sum(int(n) for (n,) in gone)
        return count, size

    def replay(self, from_seq: int, to_seq: int | None = None) -> int:
        """Put the retained (delivered) events with ``from_seq <= seq <= to_seq`` (``None``: up
        to the last) back in the queue: they are sent again with their original id, seq and
        bytes. Returns how many were re-queued; events in the range that were never delivered
        are queued anyway, and evicted ones are gone (``stats().first_retained_seq`` says where
        the window starts). Replayed events do not count against ``capacity``."""
        self._check_open()
        if from_seq < 1 or (to_seq is not None and to_seq < from_seq):
            raise ValueError(f"replay range must be 1 <= from_seq <= to_seq, got {from_seq}..{to_seq}")
        hi = self._last_seq if to_seq is None else to_seq

        def requeue(db: sqlite3.Connection) -> list[int]:
            back = db.execute(
                "UPDATE outbox SET delivered = NULL, replayed = replayed + 1 "
                "WHERE delivered IS NOT NULL AND seq BETWEEN ? AND ? RETURNING LENGTH(payload)",
                (from_seq, hi),
            ).fetchall()
            return [int(b) for (b,) in back]

        def tally(back: list[int]) -> None:
            self._depth += len(back)
            self._requeued += len(back)
            self._retained -= len(back)
            self._retained_bytes -= sum(back)
            if back:
                self._rewinds += 1
                # Re-queued rows are not in the tail: peek goes to disk from here on.
                self._tail.clear()
                self._tail_from = self._last_seq + 1

        n = len(self._maintain(requeue, tally, doing="re-queue events"))
        if n:
            for cb in self._listeners:
                cb()
        return n

    @property
    def rewinds(self) -> int:
        """How many replays re-queued events (the sender starts again from the lowest seq)."""
        return self._rewinds

    def purge(self, count: int) -> int:
        """Delete the ``count`` oldest undelivered events (technician action, audited by the
        caller); counted in ``dropped``."""
        self._check_open()

        def delete(db: sqlite3.Connection) -> list[tuple[int, int]]:
            gone = db.execute(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE delivered IS NULL "
                "ORDER BY seq LIMIT ?) RETURNING seq, replayed",
                (count,),
            ).fetchall()
            db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (len(gone),))
            return [(int(q), int(r)) for q, r in gone]

        def tally(gone: list[tuple[int, int]]) -> None:
            self._depth -= len(gone)
            self._requeued -= sum(1 for _q, r in gone if r)
            self._dropped += len(gone)
            for q, _r in gone:
                self._tail.pop(q, None)

        return len(self._maintain(delete, tally, doing="purge events"))

    def _maintain(
        self,
        change: Callable[[sqlite3.Connection], list[_T]],
        tally: Callable[[list[_T]], None],
        *,
        doing: str,
    ) -> list[_T]:
        """Run a maintenance ``change`` in its own transaction, after writing pending acks (so
        that it sees every delivery the sender knows of); ``tally`` updates the counters from
        its result, under the locks."""
        with self._write_lock:
            waiting, acks = self._take()
            try:
                results = self._transact_locked([w.event for w in waiting], [], acks)
            except Exception as exc:
                _resolve(waiting, exc)
                raise
            _resolve(waiting, results)
            db = self._db
            try:
                db.execute("PRAGMA synchronous=FULL")
                db.execute("BEGIN IMMEDIATE")
                out = change(db)
                db.execute("COMMIT")
            except BaseException as exc:
                self._rollback()
                if isinstance(exc, sqlite3.Error | OSError):
                    raise _state_error(self.path, exc, doing=doing) from exc
                raise
            with self._count_lock:
                tally(out)
        self._notify(results)
        return out

    # ------------------------------------------------------------------ counters
    @property
    def depth(self) -> int:
        """Undelivered events (replayed ones included; acknowledged ones not, even before the
        ack is written)."""
        return max(0, self._depth - len(self._acking))

    @property
    def last_seq(self) -> int:
        """The last seq assigned (readable after ``close()``)."""
        return self._last_seq

    @property
    def epoch(self) -> int:
        """The store's stream epoch (ms since 1970 at creation); part of every event id."""
        return self._epoch

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def refused(self) -> int:
        return self._refused

    def stats(self) -> OutboxStats:
        """Counters; after ``close()`` the values at close (never raises for a closed store).
        ``depth`` and ``retained`` change at the PUBACK; ``retained_bytes`` when the ack is
        written (with the next group commit, milliseconds later)."""
        if self._closed:
            return self._final or self._stats_memory()
        try:
            return self._stats_now()
        except sqlite3.Error as exc:
            raise _state_error(self.path, exc, doing="read its counters") from exc

    def _stats_memory(self, age: float = 0.0, first: int | None = None) -> OutboxStats:
        return OutboxStats(
            depth=self.depth,
            oldest_age_s=age,
            dropped=self._dropped,
            last_seq=self._last_seq,
            refused=self._refused,
            epoch=self._epoch,
            retained=self._retained + (len(self._acking) if self._keep() else 0),
            retained_bytes=self._retained_bytes,
            first_retained_seq=first,
        )

    def _stats_now(self) -> OutboxStats:
        db = self._rdb
        # Oldest by seq, through the partial indexes: O(log n) however deep the queue is.
        row = db.execute("SELECT created FROM outbox WHERE delivered IS NULL ORDER BY seq LIMIT 1").fetchone()
        first = db.execute("SELECT seq FROM outbox WHERE delivered IS NOT NULL ORDER BY seq LIMIT 1").fetchone()
        age = max(0.0, self.clock() - float(row[0])) if row is not None else 0.0
        return self._stats_memory(age, int(first[0]) if first is not None else None)

    @staticmethod
    def decode(payload: bytes) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(payload)
        return result


def _resolve(waiting: list[_Waiter], results: Sequence[Envelope | BaseException] | BaseException) -> None:
    """Hand each ``put_async`` caller its envelope or error (a cancelled caller's event is on
    disk all the same)."""
    for i, w in enumerate(waiting):
        if w.future.done():
            continue
        r = results if isinstance(results, BaseException) else results[i]
        if isinstance(r, BaseException):
            w.future.set_exception(r)
        else:
            w.future.set_result(r)


# ---------------------------------------------------------------------- state errors
def _state_error(path: Path, exc: BaseException, *, doing: str) -> OutboxStateError:
    return sqlite_state_error(path, exc, doing=doing, cls=OutboxStateError)


def _corrupt(path: Path, detail: str) -> OutboxStateError:
    return corrupt_error(path, detail, OutboxStateError)
