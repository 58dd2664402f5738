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

The parts, one module each (as pymodbus separates transport and transaction):
  * ``outbox_store`` — the SQLite file: schema, opening checks, epoch and seq, the rows'
    transactions, the counters kept beside them;
  * ``outbox_policy`` — overflow (what of a batch fits) and retention (eviction);
  * ``outbox_batch`` — group commit: the hand-over between the loop and the writer thread;
  * ``outbox_queries`` — reads: the in-memory tail, pending and newest rows, the counters;
  * ``outbox_replay`` — re-queueing retained events and purging undelivered ones.
``Outbox`` composes them: its one write transaction records acks (and evicts), admits, builds
and inserts the envelopes, drops under ``drop_oldest``, then updates counters and tail together.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from portlane.edge.config import OutboxConfig, OutboxRetention
from portlane.edge.contract.envelope import Envelope
from portlane.edge.contract.times import rfc3339
from portlane.edge.delivery.flush import FlushGroup, fsync_wal
from portlane.edge.delivery.outbox_batch import GroupCommit, resolve
from portlane.edge.delivery.outbox_policy import Overflow, Retention, admit, to_drop
from portlane.edge.delivery.outbox_queries import OutboxStats, Tail, newest, oldest, pending, snapshot
from portlane.edge.delivery.outbox_replay import check_range, purged, requeue, requeued
from portlane.edge.delivery.outbox_store import OutboxEvent, OutboxRow, OutboxStore
from portlane.edge.errors import OutboxError, OutboxFullError

__all__ = ["Outbox", "OutboxEvent", "OutboxRow", "OutboxStats", "Signer"]

_T = TypeVar("_T")

#: Applied to each envelope (as a JSON-ready dict) before its row is written; returns the dict
#: to store and send — e.g. with the ``sigkeyid``/``sig`` attributes of an event signature.
Signer = Callable[[dict[str, Any]], dict[str, Any]]


class Outbox:
    def __init__(
        self,
        path: str | Path,
        *,
        site: str,
        unit: str,
        config: OutboxConfig | None = None,
        capacity: int | None = None,
        overflow: Overflow | None = None,
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
        self.overflow: Overflow = overflow or cfg.overflow
        self._retention = Retention(retention or cfg.retention)
        self.commit_batch_max = cfg.commit_batch_max
        self.clock = clock
        self.signer = signer
        self._flushes = flushes
        self._listeners: list[Callable[[], None]] = []
        self._closed = False
        self._final: OutboxStats | None = None
        self._rewinds = 0
        #: Durable transactions (one fsync each), the events they wrote, and the seconds they
        #: took, fsync included: events/commits is the group-commit batch size.
        self.commits = 0
        self.committed = 0
        self.commit_seconds = 0.0
        self._store = OutboxStore(self.path, clock=clock)
        self._counters = self._store.counters
        self._tail = Tail(self._counters.last_seq + 1)
        self._batch = GroupCommit(
            self._store,
            self._write_locked,
            batch_max=self.commit_batch_max,
            thread_name=f"outbox-{unit}",
            notify=self._notify,
        )

    def close(self) -> None:
        """Commit what ``put_async`` callers handed over and the acks not yet written, then
        close. Idempotent; ``stats()`` and the counters still answer afterwards (with the values
        at close). Call it from the event loop's thread (or with no loop running)."""
        if self._closed:
            return
        try:
            self._batch.close()
            self._final = self._stats_now()
        except sqlite3.Error:
            self._final = self._stats_memory()
        finally:
            self._closed = True
            self._store.close()

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
        with self._store.write_lock:
            # Events that put_async callers handed over earlier go first: seq follows call order.
            waiting, results = self._batch.flush_locked(list(events))
        resolve(waiting, results[: len(waiting)])
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
        event = OutboxEvent(event_type, data, topic, subject, audience, at)
        return await self._batch.submit(event, asyncio.get_running_loop())

    def ack(self, seqs: Sequence[int]) -> None:
        """The broker acknowledged ``seqs``: they are delivered (``depth`` drops at once) and kept
        for replay within the retention bounds. On an event loop the ack is written by the
        writer thread with the next group commit, without an fsync of its own (if a crash loses
        it, the event is sent again with the same id); without a loop it is written now."""
        if not seqs:
            return
        self._check_open()
        with self._store.count_lock:
            self._batch.queue_acks(seqs)
            self._tail.discard(seqs)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            with self._store.write_lock:
                waiting, results = self._batch.flush_locked([])
            resolve(waiting, results)
            return
        self._batch.schedule(loop)

    def _notify(self, results: Sequence[Envelope | BaseException]) -> None:
        if any(not isinstance(r, BaseException) for r in results):
            for cb in self._listeners:
                cb()

    def _write_locked(
        self, independent: list[OutboxEvent], atomic: list[OutboxEvent], acks: list[int]
    ) -> list[Envelope | OutboxFullError]:
        """ONE transaction (caller holds ``write_lock``; any thread): record ``acks``, then
        write ``independent`` events (each refused on its own when full) and ``atomic`` ones
        (all refused unless they all fit). With events it is committed with an fsync; acks alone
        are not (a lost ack only means the event is sent again, with the same id)."""
        store, c = self._store, self._counters
        durable = bool(independent or atomic)
        # Inside the unit's flush group (and on its thread), the group puts it on disk.
        defer = durable and self._flushes is not None and self._flushes.deferring
        rows: list[tuple[int, str, str, bytes, float]] = []
        envs: list[Envelope] = []
        done: list[tuple[int, int]] = []  # (payload bytes, replayed) of each ack recorded
        evicted = (0, 0)
        dropped: list[tuple[int, int]] = []  # (seq, replayed) of each row dropped for room
        seq = c.last_seq
        started = time.perf_counter()
        try:
            with store.transaction(
                durable=durable and not defer, doing="write an event" if durable else "record a delivery"
            ) as db:
                now = self.clock()
                if acks:
                    done, evicted = self._record_acks(db, acks, now)
                with store.count_lock:
                    undelivered = c.depth - c.requeued - sum(1 for _n, r in done if not r)
                fits = admit(self.overflow, self.capacity, undelivered, len(independent), len(atomic))
                for ev in independent[: fits.independent] + (atomic if fits.atomic else []):
                    seq += 1
                    env, payload, at = self._build(ev, seq)
                    envs.append(env)
                    rows.append((seq, env.id, ev.topic, payload, at))
                if rows:
                    store.insert(db, rows)
                    drop = to_drop(self.overflow, self.capacity, undelivered, len(rows))
                    if drop:
                        dropped = store.drop_oldest(db, drop)
                if fits.refused:
                    store.count_refused(db, fits.refused)
        except BaseException:
            with store.count_lock:  # the acks were not recorded: try them again next time
                self._batch.retry_acks(acks)
            raise
        if defer:
            assert self._flushes is not None
            self._flushes.owe(self)
        with store.count_lock:
            if durable:
                self.commits += 1
                self.committed += len(rows)
                self.commit_seconds += time.perf_counter() - started
            c.last_seq = seq
            c.depth += len(rows) - len(dropped) - len(done)
            c.requeued -= sum(1 for _q, r in dropped if r) + sum(1 for _n, r in done if r)
            c.dropped += len(dropped)
            c.refused += fits.refused
            if self._retention.keeps:
                c.retained += len(done) - evicted[0]
                c.retained_bytes += sum(n for n, _r in done) - evicted[1]
            self._batch.written(acks)
            self._tail.discard(q for q, _r in dropped)
            self._tail.add(rows)
        out: list[Envelope | OutboxFullError] = list(envs[: fits.independent])
        out += [self._full_error(ev.event_type) for ev in independent[fits.independent :]]
        if fits.atomic:
            out += envs[fits.independent :]
        else:
            out += [self._full_error(ev.event_type) for ev in atomic]
        return out

    def flush(self) -> None:
        """Put every event committed so far on disk (the flush group's, see ``flush.py``)."""
        fsync_wal(self.path)

    def _record_acks(
        self, db: sqlite3.Connection, acks: list[int], now: float
    ) -> tuple[list[tuple[int, int]], tuple[int, int]]:
        """Mark ``acks`` delivered (or delete them when nothing is retained) and evict beyond
        the retention bounds. Returns ([(payload bytes, replayed)], (evicted, evicted bytes))."""
        ids = json.dumps(acks)
        if not self._retention.keeps:
            return self._store.delete_delivered(db, ids), (0, 0)
        done = self._store.mark_delivered(db, ids, now)
        return done, self._retention.evict(db, now, self._counters.retained_bytes + sum(n for n, _r in done))

    def _full_error(self, event_type: str) -> OutboxFullError:
        return OutboxFullError(
            str(self.path),
            event_type=event_type,
            capacity=self.capacity,
            depth=self.depth,
            refused=self._counters.refused,
            dropped=self._counters.dropped,
        )

    def _build(self, ev: OutboxEvent, seq: int) -> tuple[Envelope, bytes, float]:
        now = self.clock() if ev.at is None else ev.at
        epoch = self._counters.epoch
        env = Envelope(
            id=f"{self.site}/{self.unit}/{epoch}/{seq}",
            source=f"portlane://{self.site}/{self.unit}",
            type=f"portlane.{ev.event_type}",
            time=rfc3339(now),
            subject=ev.subject,
            seq=seq,
            epoch=epoch,
            audience=ev.audience,
            data=ev.data,
        )
        if self.signer is None:
            return env, env.wire_bytes(), now
        signed = self.signer(env.model_dump(mode="json", exclude_none=True))
        # The stored bytes are exactly the signed object (the signature covers them).
        payload = json.dumps(signed, ensure_ascii=False, separators=(",", ":")).encode()
        return Envelope.model_validate(signed), payload, now

    def _check_open(self) -> None:
        if self._closed:
            raise OutboxError(f"{self.path}: outbox closed")

    # ------------------------------------------------------------------ send side
    def peek(self, *, after: int = 0, limit: int = 100) -> list[OutboxRow]:
        """Undelivered events with seq > ``after``, in seq order (acknowledged ones whose ack is
        not written yet are left out)."""
        self._check_open()
        acking = self._batch.acking
        with self._store.count_lock:
            held = self._tail.after(after, limit, acking)
        if held is not None:  # all of it is in memory
            return held
        return pending(self._store.rdb, after, limit, acking)

    def newest(self, topic: str, *, limit: int = 100) -> list[OutboxRow]:
        """The newest ``limit`` events stored for ``topic`` (delivered and retained, or not yet
        delivered), newest first: what a restarting unit reads to learn what it had already said
        before it stopped."""
        self._check_open()
        return newest(self._store.rdb, topic, limit)

    # ------------------------------------------------------------------ maintenance
    def replay(self, from_seq: int, to_seq: int | None = None) -> int:
        """Put the retained (delivered) events with ``from_seq <= seq <= to_seq`` (``None``: up
        to the last) back in the queue: they are sent again with their original id, seq and
        bytes. Returns how many were re-queued; events in the range that were never delivered
        are queued anyway, and evicted ones are gone (``stats().first_retained_seq`` says where
        the window starts). Replayed events do not count against ``capacity``."""
        self._check_open()
        check_range(from_seq, to_seq)
        hi = self.last_seq if to_seq is None else to_seq

        def tally(back: list[int]) -> None:
            if requeued(self._counters, self._tail, back):
                self._rewinds += 1

        n = len(self._maintain(lambda db: requeue(db, from_seq, hi), tally, doing="re-queue events"))
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
        gone = self._maintain(
            lambda db: OutboxStore.drop_oldest(db, count),
            lambda gone: purged(self._counters, self._tail, gone),
            doing="purge events",
        )
        return len(gone)

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
        store = self._store
        with store.write_lock:
            waiting, results = self._batch.flush_locked([])
            resolve(waiting, results)
            with store.transaction(durable=True, doing=doing) as db:
                out = change(db)
            with store.count_lock:
                tally(out)
        self._notify(results)
        return out

    # ------------------------------------------------------------------ counters
    @property
    def depth(self) -> int:
        """Undelivered events (replayed ones included; acknowledged ones not, even before the
        ack is written)."""
        return max(0, self._counters.depth - len(self._batch.acking))

    @property
    def last_seq(self) -> int:
        """The last seq assigned (readable after ``close()``)."""
        return self._counters.last_seq

    @property
    def epoch(self) -> int:
        """The store's stream epoch (ms since 1970 at creation); part of every event id."""
        return self._counters.epoch

    @property
    def opens(self) -> int:
        """How many times the store was opened (a durable write at every start)."""
        return self._counters.opens

    @property
    def dropped(self) -> int:
        return self._counters.dropped

    @property
    def refused(self) -> int:
        return self._counters.refused

    @property
    def retention(self) -> OutboxRetention:
        return self._retention.bounds

    def stats(self) -> OutboxStats:
        """Counters; after ``close()`` the values at close (never raises for a closed store).
        ``depth`` and ``retained`` change at the PUBACK; ``retained_bytes`` when the ack is
        written (with the next group commit, milliseconds later)."""
        if self._closed:
            return self._final or self._stats_memory()
        try:
            return self._stats_now()
        except sqlite3.Error as exc:
            raise self._store.state_error(exc, doing="read its counters") from exc

    def _stats_memory(self, age: float = 0.0, first: int | None = None) -> OutboxStats:
        c, acking, keeps = self._counters, len(self._batch.acking), self._retention.keeps
        return snapshot(c, depth=self.depth, acking=acking, keeps=keeps, age=age, first=first)

    def _stats_now(self) -> OutboxStats:
        age, first = oldest(self._store.rdb, self.clock())
        return self._stats_memory(age, first)

    @staticmethod
    def decode(payload: bytes) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(payload)
        return result
