"""One flush per store for everything a unit records in one step: group commit across stores.

A command a unit accepts is recorded in four places — its nonce (nonce store), the audit entry,
the events it causes (outbox) and, for a lane, the passage journal — each durable on its own
with an fsync. The platform's decisions for one passage (one per agency) arrive within a
millisecond or two and are handled one after another, so a release paid for ten or more fsyncs
in a row before its open frame could go out.

The unit's dispatcher handles every message waiting for it in one step of the event loop, and
within that step nothing leaves the process: device frames are sent by the executor's tasks and
MQTT packets by the socket's writer callback, both only once the step has returned. So the
stores may commit without waiting for the disk inside the step, as long as everything is on
disk before the step ends — which is what :class:`FlushGroup` does:

    with unit.flushes.deferred():        # the dispatcher, around the messages waiting now
        ... the audit log, outbox and journal commit without fsync and ``owe`` the group a flush
    # on leaving: every store that wrote is flushed at once (one thread each), and the step
    # returns only when all are on disk

The nonce store is not deferred: a command's nonce is on disk before anything the command
causes is written, so that a power cut can never leave an effect on disk without its nonce (it
could then be replayed) — which the kernel's own writeback of the other files could otherwise
do before the group's flush. Outside a group, and on any thread but the one that opened it,
the stores wait for the disk on every commit as before.

A store that cannot be flushed (an fsync failing: the disk is failing, and after a failed fsync
the page cache cannot be trusted) raises :class:`~portlane.edge.errors.StateError` out of the
step, before anything recorded in it could move a device: the unit stops, and systemd's restart
finds the state directory as it is.

SQLite stores in WAL mode commit inside a group with ``synchronous=NORMAL`` (the transaction is
appended to the ``-wal`` file, not synced); their flush is an fsync of that file, which makes
every transaction appended so far durable, in order — what ``synchronous=FULL`` does at each
commit (``fsync_wal``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from portlane.edge.errors import StateError

__all__ = ["FlushGroup", "Flushable", "fsync_wal"]

log = logging.getLogger(__name__)

#: Threads that flush stores at once (a lane's audit log, outbox and journal).
FLUSH_THREADS = 3


class Flushable(Protocol):
    @property
    def path(self) -> Path: ...

    def flush(self) -> None:
        """Put every write committed so far on disk (fsync); raise ``OSError`` when it fails."""
        ...


def fsync_wal(db: Path) -> None:
    """fsync the write-ahead log of the SQLite database ``db`` (WAL mode): every transaction
    committed with ``synchronous=NORMAL`` so far becomes durable."""
    fd = os.open(f"{db}-wal", os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FlushGroup:
    """Flushes owed by the stores of one unit (see the module docstring)."""

    def __init__(self) -> None:
        self._thread: int | None = None  # the thread that opened the group; None: closed
        self._owed: dict[Path, Flushable] = {}
        self._pool: ThreadPoolExecutor | None = None
        #: Groups closed, commits that did not wait for the disk, store flushes made.
        self.groups = 0
        self.deferred_commits = 0
        self.flushes = 0

    @property
    def deferring(self) -> bool:
        """A group is open on this thread: commit without waiting for the disk, then ``owe``."""
        return self._thread is not None and self._thread == threading.get_ident()

    def owe(self, store: Flushable) -> None:
        """``store`` committed without an fsync; flush it when the group closes."""
        assert self.deferring, "a store owes a flush only inside a group, on its thread"
        self.deferred_commits += 1
        self._owed.setdefault(store.path, store)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Defer the stores' fsyncs to the end of the block (nested blocks join the outer one)."""
        if self._thread is not None:
            yield
            return
        self._thread = threading.get_ident()
        try:
            yield
        finally:
            self._thread = None
            self.groups += 1
            self._flush()

    def _flush(self) -> None:
        """Every owed store at once: the first on this thread, the others on the pool's; all are
        waited for, and the first failure is raised."""
        owed = list(self._owed.values())
        self._owed.clear()
        if not owed:
            return
        if len(owed) > 1 and self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=FLUSH_THREADS, thread_name_prefix="flush")
        futures = [self._pool.submit(self._flush_one, store) for store in owed[1:]] if self._pool else []
        failures: list[BaseException] = []
        try:
            self._flush_one(owed[0])
        except StateError as exc:
            failures.append(exc)
        failures += [exc for exc in (f.exception() for f in futures) if exc is not None]
        if failures:
            raise failures[0]

    def _flush_one(self, store: Flushable) -> None:
        try:
            store.flush()
        except OSError as exc:
            raise StateError(
                str(store.path),
                f"cannot put what was written on disk (fsync: {exc})",
                "the disk is failing: check it (dmesg, smartctl); the unit stops rather than move a "
                "device on a record it could not keep",
            ) from exc
        self.flushes += 1

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
