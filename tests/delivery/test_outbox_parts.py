"""The outbox's parts on their own seams: the overflow decision (pure), the in-memory tail, the
retention eviction on a real store, and the group commit's batch bound.

``test_outbox.py`` proves the whole against a real broker; here each part is pinned where a
change to it would first go wrong.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample
from portlane.edge.config import OutboxConfig, OutboxRetention
from portlane.edge.contract.topics import Topics
from portlane.edge.delivery.outbox import Outbox
from portlane.edge.delivery.outbox_policy import EVICT_CHUNK, EVICT_CHUNKS, Admission, Overflow, Retention, admit
from portlane.edge.delivery.outbox_policy import to_drop as policy_to_drop
from portlane.edge.delivery.outbox_queries import TAIL_MAX, Tail
from portlane.edge.delivery.outbox_store import OutboxStore

Admit = Callable[[Overflow, int, int, int, int], Admission]

batches = st.tuples(
    st.sampled_from(["reject_new", "drop_oldest"]),
    st.integers(1, 50),  # capacity
    st.integers(0, 60),  # undelivered (may exceed a capacity lowered since)
    st.integers(0, 30),  # independent events
    st.integers(0, 30),  # atomic group
)


def _admission_holds(fn: Admit, batch: tuple[Overflow, int, int, int, int]) -> bool:
    """What the overflow policy promises for one batch."""
    overflow, capacity, undelivered, independent, atomic = batch
    a = fn(overflow, capacity, undelivered, independent, atomic)
    written = a.independent + (atomic if a.atomic else 0)
    if not 0 <= a.independent <= independent or a.refused != independent + atomic - written:
        return False
    if overflow == "drop_oldest":  # nothing refused; room is made by dropping
        dropped = policy_to_drop(overflow, capacity, undelivered, written)
        return a.refused == 0 and undelivered + written - dropped <= max(capacity, undelivered)
    # reject_new: never beyond the capacity, nothing refused that fitted, the group all or nothing
    room = max(0, capacity - undelivered)
    fits_all = independent + atomic <= room
    return written <= room and (a.refused == 0) == fits_all and a.independent == min(independent, room)


@given(batches)
@settings(max_examples=400, deadline=None)
def test_admission_never_exceeds_the_capacity_and_keeps_an_atomic_group_whole(
    batch: tuple[Overflow, int, int, int, int],
) -> None:
    assert _admission_holds(admit, batch)


def _without_room_check(
    overflow: Overflow, capacity: int, undelivered: int, independent: int, atomic: int
) -> Admission:
    return Admission(independent, True, 0)  # the guard removed: everything is taken


def _atomic_split(overflow: Overflow, capacity: int, undelivered: int, independent: int, atomic: int) -> Admission:
    a = admit(overflow, capacity, undelivered, independent, atomic)
    return Admission(a.independent, True, independent - a.independent)  # the group always "fits"


@pytest.mark.parametrize("mutant", [_without_room_check, _atomic_split])
def test_the_admission_property_catches_a_removed_guard(mutant: Admit) -> None:
    """The property above is not vacuous: with a guard of ``admit`` removed, hypothesis finds a
    batch that breaks it."""
    try:
        find(batches, lambda b: not _admission_holds(mutant, b), settings=settings(max_examples=2000))
    except NoSuchExample:  # pragma: no cover - the failure this test exists for
        pytest.fail(f"the admission property does not catch {mutant.__name__}")


def _row(seq: int) -> tuple[int, str, str, bytes, float]:
    return (seq, f"s/u/1/{seq}", "t", b"{}", 0.0)


def test_the_tail_holds_the_newest_rows_and_says_when_it_no_longer_covers_a_read() -> None:
    tail = Tail(1)
    tail.add(_row(q) for q in range(1, TAIL_MAX + 11))
    assert tail.start == 11 and len(tail.rows) == TAIL_MAX
    assert tail.after(0, 5, set()) is None  # rows 1..10 left memory: read them from disk
    assert [r.seq for r in tail.after(10, 3, {12}) or []] == [11, 13, 14]
    tail.discard([11, 13])
    assert [r.seq for r in tail.after(10, 2, set()) or []] == [12, 14]
    tail.restart(TAIL_MAX + 11)  # a replay re-queued older rows: nothing below is covered
    assert tail.rows == {} and tail.after(TAIL_MAX, 1, set()) is None


@pytest.fixture
def store(tmp_path: Path) -> Iterator[OutboxStore]:
    s = OutboxStore(tmp_path / "o.db")
    yield s
    s.close()


def test_eviction_by_size_takes_the_oldest_delivered_in_bounded_chunks_and_never_an_undelivered_one(
    store: OutboxStore,
) -> None:
    n = EVICT_CHUNK * EVICT_CHUNKS + 300
    rows = [(q, f"s/u/1/{q}", "t", b"x" * 100, 1000.0 + q) for q in range(1, n + 1)]
    with store.transaction(durable=True, doing="test") as db:
        store.insert(db, rows)
        store.mark_delivered(db, json.dumps(list(range(1, n - 9))), now=2000.0)  # the newest 10 stay undelivered
    retention = Retention(OutboxRetention(max_age_s=3600.0, max_mb=0.0001))  # ~104 bytes: one event
    with store.transaction(durable=True, doing="test") as db:
        count, size = retention.evict(db, now=2000.0, retained_bytes=(n - 10) * 100)
    assert count == EVICT_CHUNK * EVICT_CHUNKS and size == count * 100  # a bounded piece per ack
    with store.transaction(durable=True, doing="test") as db:
        count, _ = retention.evict(db, now=2000.5, retained_bytes=(n - 10 - count) * 100)
    assert count == n - 10 - EVICT_CHUNK * EVICT_CHUNKS - 1  # the rest, down to the one that fits
    left = store.db.execute("SELECT seq, delivered IS NULL FROM outbox ORDER BY seq").fetchall()
    assert left == [(n - 10, 0)] + [(q, 1) for q in range(n - 9, n + 1)]


def test_eviction_by_age_is_looked_at_once_a_second_at_most(store: OutboxStore) -> None:
    with store.transaction(durable=True, doing="test") as db:
        store.insert(db, [(q, f"s/u/1/{q}", "t", b"x", 100.0 * q) for q in (1, 2, 3)])
        store.mark_delivered(db, "[1, 2, 3]", now=400.0)
    retention = Retention(OutboxRetention(max_age_s=150.0, max_mb=1.0))
    with store.transaction(durable=True, doing="test") as db:
        assert retention.evict(db, now=449.5, retained_bytes=3) == (2, 2)  # created at 100 and 200
        assert retention.evict(db, now=450.4, retained_bytes=1) == (0, 0)  # row 3 is too old now: not looked at yet
        assert retention.evict(db, now=450.6, retained_bytes=1) == (1, 1)  # a second after the last look


async def test_a_group_commit_takes_at_most_commit_batch_max_events_and_keeps_call_order(tmp_path: Path) -> None:
    t = Topics("s", "l1")
    ob = Outbox(tmp_path / "g.db", site="s", unit="l1", config=OutboxConfig(commit_batch_max=10))
    try:
        envs = await asyncio.gather(*(ob.put_async("x", {"i": i}, topic=t.event("x")) for i in range(25)))
        assert [e.seq for e in envs] == list(range(1, 26))
        assert [e.data["i"] for e in envs] == list(range(25))
        assert (ob.commits, ob.committed) == (3, 25)  # 10 + 10 + 5: one transaction each
    finally:
        ob.close()
