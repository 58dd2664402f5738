"""Group commit: many producers on the event loop, one writer thread, one transaction and one
fsync per batch.

``put_async`` callers hand their event over (``submit``) and await a future; the sender hands
over the seqs the broker acknowledged (``queue_acks``). The first hand-over of a loop turn
schedules a job on the outbox's writer thread, which takes everything handed over so far (at
most ``batch_max`` events) and writes it in ONE transaction through the ``write`` function it
was given; the loop keeps running during the fsync, so the events that arrive meanwhile share
the next transaction. When the job is done each caller gets its envelope (or its error) on the
loop, the listeners are told, and the next job starts if anything is waiting.

The synchronous paths (``put``/``put_many``, maintenance, ``close``) take whatever is waiting
with ``take`` and write it first, in the same transaction as their own work, so seq follows
call order whichever path an event came by.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from portlane.edge.contract.envelope import Envelope
from portlane.edge.delivery.outbox_store import OutboxEvent, OutboxStore
from portlane.edge.errors import OutboxFullError

__all__ = ["GroupCommit", "Waiter", "resolve"]

#: What one write hands back: per event its envelope or why it was refused, or the error that
#: stopped the whole transaction.
Results = list[Envelope | OutboxFullError] | BaseException
#: The outbox's one transaction: independent events (each refused on its own), an atomic group
#: (all or nothing) and acks; the caller holds the store's ``write_lock``.
Write = Callable[[list[OutboxEvent], list[OutboxEvent], list[int]], list[Envelope | OutboxFullError]]


class Waiter:
    """A ``put_async`` call waiting for the next group commit."""

    __slots__ = ("event", "future")

    def __init__(self, event: OutboxEvent, future: asyncio.Future[Envelope]) -> None:
        self.event = event
        self.future = future


def resolve(waiting: list[Waiter], results: Sequence[Envelope | BaseException] | BaseException) -> None:
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


class GroupCommit:
    def __init__(
        self,
        store: OutboxStore,
        write: Write,
        *,
        batch_max: int,
        thread_name: str,
        notify: Callable[[Sequence[Envelope | BaseException]], None],
    ) -> None:
        self._store = store
        self._write = write
        self._batch_max = batch_max
        self._thread_name = thread_name
        self._notify = notify
        # Guarded by the store's count_lock:
        self.waiting: list[Waiter] = []  # put_async calls not yet committed
        self.ack_queue: list[int] = []  # acks not yet written
        self.acking: set[int] = set()  # the same, for reads to leave out
        self._job: asyncio.Future[tuple[list[Waiter], Results]] | None = None
        self._kick_scheduled = False
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False

    # ------------------------------------------------------------------ hand-over (loop)
    def submit(self, event: OutboxEvent, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Envelope]:
        fut: asyncio.Future[Envelope] = loop.create_future()
        with self._store.count_lock:
            self.waiting.append(Waiter(event, fut))
        self.schedule(loop)
        return fut

    def queue_acks(self, seqs: Sequence[int]) -> None:
        """Hand over acknowledged seqs (the caller holds ``count_lock``)."""
        self.ack_queue.extend(seqs)
        self.acking.update(seqs)

    def take(self, limit: int | None = None) -> tuple[list[Waiter], list[int]]:
        """Everything handed over so far (at most ``limit`` events), for the caller to write."""
        with self._store.count_lock:
            if limit is None:
                waiting, self.waiting = self.waiting, []
            else:
                waiting, self.waiting = self.waiting[:limit], self.waiting[limit:]
            acks, self.ack_queue = self.ack_queue, []
        return waiting, acks

    def retry_acks(self, acks: list[int]) -> None:
        """Acks whose transaction failed go first in the next one (the caller holds ``count_lock``)."""
        self.ack_queue[:0] = acks

    def written(self, acks: list[int]) -> None:
        """The transaction recorded ``acks`` (the caller holds ``count_lock``)."""
        self.acking.difference_update(acks)

    def flush_locked(self, atomic: list[OutboxEvent]) -> tuple[list[Waiter], list[Envelope | OutboxFullError]]:
        """Write what is waiting, then ``atomic``, in one transaction (the caller holds
        ``write_lock``). The waiting callers get an error that stops the transaction."""
        waiting, acks = self.take()
        try:
            results = self._write([w.event for w in waiting], atomic, acks)
        except Exception as exc:
            resolve(waiting, exc)
            raise
        return waiting, results

    # ------------------------------------------------------------------ the writer thread
    def schedule(self, loop: asyncio.AbstractEventLoop) -> None:
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
        with self._store.count_lock:
            if not self.waiting and not self.ack_queue:
                return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._thread_name)
        self._job = asyncio.get_running_loop().run_in_executor(self._executor, self._job_run)
        self._job.add_done_callback(self._job_done)

    def _job_run(self) -> tuple[list[Waiter], Results]:
        """(writer thread) One transaction: the events and acks handed over so far."""
        with self._store.write_lock:
            waiting, acks = self.take(self._batch_max)
            try:
                return waiting, self._write([w.event for w in waiting], [], acks)
            except Exception as exc:
                return waiting, exc

    def _job_done(self, job: asyncio.Future[tuple[list[Waiter], Results]]) -> None:
        """(loop) Hand each caller its envelope (or error), wake the sender, start the next."""
        self._job = None
        if job.cancelled():
            return
        if job.exception() is not None:  # the executor itself failed (shut down): nothing was written
            return
        waiting, results = job.result()
        resolve(waiting, results)
        if not isinstance(results, BaseException):
            self._notify(results)
        if not self._closed:
            self._kick()

    def close(self) -> None:
        """Let a commit in progress finish, then write what is still handed over. Call it from
        the event loop's thread (or with no loop running)."""
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        with self._store.write_lock:
            waiting, acks = self.take()
            if waiting or acks:
                results: Results
                try:
                    results = self._write([w.event for w in waiting], [], acks)
                except Exception as exc:
                    results = exc
                resolve(waiting, results)
