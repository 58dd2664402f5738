"""Group commit across a unit's stores (edge/delivery/flush.py): inside a group the audit log,
the outbox and the journal commit without an fsync and each owes the group one flush, made
when the group closes; a flush that fails is a one-line StateError. The nonce store is not
deferred (a nonce is on disk before anything its command causes is written). Outside a group,
and on another thread, every commit is flushed at once.

The flushes are observed where they happen: ``os.fsync`` is wrapped to note the file each one
was for (SQLite's own fsyncs, in C, are not seen: a commit outside a group shows up as no
flush owed).
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from portlane.edge.contract.topics import Topics
from portlane.edge.delivery.flush import FlushGroup
from portlane.edge.delivery.outbox import Outbox, OutboxEvent
from portlane.edge.errors import StateError
from portlane.edge.journal import Journal
from portlane.edge.trust.audit import AuditLog
from portlane.edge.trust.nonces import SqliteNonceStore


class Stores:
    def __init__(self, folder: Path, flushes: FlushGroup) -> None:
        self.flushes = flushes
        self.outbox = Outbox(folder / "outbox.db", site="s", unit="c1", flushes=flushes)
        self.audit = AuditLog(folder / "audit.jsonl", flushes=flushes)
        self.nonces = SqliteNonceStore(folder / "nonces.db")  # never deferred
        self.journal = Journal(folder / "journal.db", flushes=flushes)
        self.topic = Topics("s", "c1").event("passage.decided")

    def record_a_command(self, n: int) -> None:
        """What a unit writes for one accepted command that moves the arm."""
        now = dt.datetime.now(dt.UTC)
        assert self.nonces.check_and_record(f"nonce-{n}", keep_until=now + dt.timedelta(minutes=5), now=now)
        self.audit.append("command_accepted", actor="platform", reason="decision", data={"n": n})
        self.outbox.put_many([OutboxEvent("passage.decided", {"n": n}, self.topic)])
        self.journal.sync({"p1": {"decisions": n}})

    def close(self) -> None:
        for store in (self.outbox, self.audit, self.nonces, self.journal):
            store.close()
        self.flushes.close()


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The file of every ``os.fsync`` made from Python, in order."""
    seen: list[str] = []
    fsync = os.fsync

    def noted(fd: int) -> None:
        seen.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", noted)
    return seen


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    s = Stores(tmp_path, FlushGroup())
    yield s
    s.close()


def test_a_group_flushes_each_store_once(stores: Stores, fsyncs: list[str]) -> None:
    with stores.flushes.deferred():
        for n in range(3):
            stores.record_a_command(n)
        assert fsyncs == []  # nothing waited for the disk inside the group (the nonces did, in sqlite)
    assert sorted(fsyncs) == ["audit.jsonl", "journal.db-wal", "outbox.db-wal"]
    assert stores.flushes.deferred_commits == 9 and stores.flushes.flushes == 3 and stores.flushes.groups == 1


def test_outside_a_group_every_commit_waits_for_the_disk(stores: Stores, fsyncs: list[str]) -> None:
    stores.record_a_command(1)
    assert fsyncs == ["audit.jsonl"]  # the SQLite stores flush inside sqlite (synchronous=FULL)
    assert stores.flushes.deferred_commits == 0 and stores.flushes.flushes == 0


def test_a_group_defers_only_on_the_thread_that_opened_it(stores: Stores, fsyncs: list[str]) -> None:
    with stores.flushes.deferred():
        other = threading.Thread(target=stores.record_a_command, args=(7,))
        other.start()
        other.join()
        assert fsyncs == ["audit.jsonl"] and stores.flushes.deferred_commits == 0  # the thread did not wait
        stores.record_a_command(8)
    assert stores.flushes.deferred_commits == 3


def test_what_a_group_wrote_is_in_the_stores_when_it_closes(stores: Stores, tmp_path: Path) -> None:
    with stores.flushes.deferred():
        stores.record_a_command(5)
    again = Journal(tmp_path / "journal.db")
    try:
        assert again.records() == {"p1": {"decisions": 5}}
    finally:
        again.close()
    assert stores.outbox.last_seq == 1 and stores.audit.entries == 1
    now = dt.datetime.now(dt.UTC)
    assert not stores.nonces.check_and_record("nonce-5", keep_until=now, now=now)  # recorded: a replay


def test_a_flush_that_fails_is_a_state_error_naming_the_store(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing() -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(stores.journal, "flush", failing)
    problem = r"journal\.db: cannot put what was written on disk \(fsync: .*Input/output"
    with pytest.raises(StateError, match=problem), stores.flushes.deferred():
        stores.record_a_command(1)
    assert stores.flushes.flushes == 2  # the others were flushed all the same
