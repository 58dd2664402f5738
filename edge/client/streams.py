"""What a consumer has of each unit's event stream, and what is missing. Pure, bounded.

A unit's events form one stream per ``epoch`` (its outbox store's birth): ``seq`` 1, 2, 3 …
without gaps. A stream here is ``(unit, epoch)`` with the highest ``seq`` seen, the missing
ranges below it (sorted, disjoint, inclusive) and the signatures of its recent events — an
event whose ``seq`` was seen before is a duplicate when it carries the same signature (the same
signed bytes: Ed25519 signatures are deterministic) and a *conflict* otherwise (the unit signed
two different events under one id: a contract breach worth an alarm).

A new epoch of a unit is a stream restart, not a gap: what the older epoch still missed can no
longer be replayed (``replay_events`` names no epoch; the unit's old store is gone), so it is
given up (``lost``).

Only verified events and verified statuses may be fed in: the callers (``consumer``) verify
first, so a forged ``seq`` or ``last_seq`` can neither hide a real event nor trigger a replay.

Memory is bounded per stream (:data:`MAX_MISSING_RANGES`, :data:`MAX_SIGNATURES`) and per unit
(:data:`MAX_EPOCHS`); the number of units is bounded by the caller (only units the site trusts
get here).
"""

from __future__ import annotations

import bisect
import enum
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

__all__ = ["MAX_EPOCHS", "MAX_MISSING_RANGES", "MAX_SIGNATURES", "Seen", "Stream", "StreamBook"]

#: Missing ranges kept per stream. Each range costs two integers whatever its length, so this
#: bounds memory, not the number of missing events; beyond it the oldest ranges are given up.
MAX_MISSING_RANGES = 256
#: Signatures of the newest events kept per stream, to tell a duplicate from a conflict. Older
#: duplicates are taken for duplicates (a redelivery comes soon after the original).
MAX_SIGNATURES = 2048
#: Epochs kept per unit: the current one, and older ones whose late events may still arrive.
MAX_EPOCHS = 3


class Seen(enum.Enum):
    NEW = "new"  # first time, beyond everything seen (or the first event of the stream)
    LATE = "late"  # first time, filling a missing seq (a replay or a late redelivery)
    DUPLICATE = "duplicate"  # seen before, same signature
    CONFLICT = "conflict"  # seen before with another signature
    STALE = "stale"  # an epoch older than those kept


@dataclass
class Stream:
    unit: str
    epoch: int
    max_seq: int = 0
    received: int = 0
    lost: int = 0  # seqs given up on
    missing: list[tuple[int, int]] = field(default_factory=list)
    signatures: OrderedDict[int, str] = field(default_factory=OrderedDict)
    # Replay scheduling (the consumer's): attempts since the last progress, next request time.
    attempts: int = 0
    next_request: float | None = None

    def has(self, seq: int) -> bool:
        return seq <= self.max_seq and self._range_of(seq) is None

    @property
    def missing_count(self) -> int:
        return sum(b - a + 1 for a, b in self.missing)

    def _range_of(self, seq: int) -> int | None:
        i = bisect.bisect_right(self.missing, (seq, float("inf"))) - 1
        if i >= 0 and self.missing[i][0] <= seq <= self.missing[i][1]:
            return i
        return None

    def add_missing(self, lo: int, hi: int) -> int:
        """Mark ``lo..hi`` missing (they are above every range); returns how many older seqs
        were given up to stay within :data:`MAX_MISSING_RANGES`."""
        self.missing.append((lo, hi))
        given_up = 0
        while len(self.missing) > MAX_MISSING_RANGES:
            a, b = self.missing.pop(0)
            given_up += b - a + 1
        self.lost += given_up
        return given_up

    def fill(self, seq: int) -> bool:
        """Take ``seq`` out of the missing ranges; False if it was not missing."""
        i = self._range_of(seq)
        if i is None:
            return False
        a, b = self.missing[i]
        parts = [r for r in ((a, seq - 1), (seq + 1, b)) if r[0] <= r[1]]
        self.missing[i : i + 1] = parts
        if len(self.missing) > MAX_MISSING_RANGES:  # a split can add one range
            a, b = self.missing.pop(0)
            self.lost += b - a + 1
        return True

    def unfill(self, seq: int) -> None:
        """Mark an already seen ``seq`` missing again (its delivery was dropped)."""
        if not self.has(seq):
            return
        bisect.insort(self.missing, (seq, seq))
        merged: list[tuple[int, int]] = []
        for a, b in self.missing:
            if merged and a <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
            else:
                merged.append((a, b))
        self.missing = merged[-MAX_MISSING_RANGES:]
        self.signatures.pop(seq, None)

    def give_up(self) -> int:
        """Give up every missing seq; returns how many."""
        n = self.missing_count
        self.lost += n
        self.missing.clear()
        self.attempts, self.next_request = 0, None
        return n

    def remember(self, seq: int, signature: str) -> None:
        self.signatures[seq] = signature
        self.signatures.move_to_end(seq)
        while len(self.signatures) > MAX_SIGNATURES:
            self.signatures.popitem(last=False)


@dataclass(frozen=True, slots=True)
class Observed:
    seen: Seen
    stream: Stream
    given_up: tuple[Stream, ...] = ()  # older epochs (or ranges) given up because of this event


class StreamBook:
    """Every stream of the site. ``backfill``: a unit first met mid-stream has its earlier
    events counted missing (and so replayed); off, the consumer starts from what it first sees."""

    def __init__(self, *, backfill: bool = False) -> None:
        self.backfill = backfill
        self._streams: dict[tuple[str, int], Stream] = {}
        self._latest: dict[str, int] = {}

    def __iter__(self) -> Iterator[Stream]:
        return iter(list(self._streams.values()))

    def get(self, unit: str, epoch: int) -> Stream | None:
        return self._streams.get((unit, epoch))

    def latest_epoch(self, unit: str) -> int | None:
        return self._latest.get(unit)

    def observe(self, unit: str, epoch: int, seq: int, signature: str) -> Observed:
        """Record one verified event."""
        s = self._streams.get((unit, epoch))
        if s is not None:
            if s.has(seq):
                known = s.signatures.get(seq)
                return Observed(Seen.DUPLICATE if known in (None, signature) else Seen.CONFLICT, s)
            s.received += 1
            s.remember(seq, signature)
            if seq > s.max_seq:
                if seq > s.max_seq + 1:
                    s.add_missing(s.max_seq + 1, seq - 1)
                s.max_seq = seq
                return Observed(Seen.NEW, s)
            s.fill(seq)
            return Observed(Seen.LATE, s)
        latest = self._latest.get(unit)
        restart = latest is not None and epoch > latest
        s, given_up = self._open(unit, epoch)
        if s is None:
            return Observed(Seen.STALE, Stream(unit, epoch), given_up)
        s.received += 1
        s.remember(seq, signature)
        if seq > 1 and (restart or (latest is None and self.backfill)):
            # A restart (new epoch) starts at 1: all of it is wanted. A first contact mid-stream
            # only with backfill. (An older epoch met late cannot be replayed any more.)
            s.add_missing(1, seq - 1)
        s.max_seq = seq
        return Observed(Seen.NEW, s, given_up)

    def expect(self, unit: str, epoch: int, last_seq: int) -> tuple[Stream | None, tuple[Stream, ...]]:
        """A verified status says the unit has written up to ``last_seq`` in ``epoch``: what is
        above the highest seq seen is missing (it may still be in flight)."""
        if last_seq <= 0:
            return self._streams.get((unit, epoch)), ()
        s = self._streams.get((unit, epoch))
        given_up: tuple[Stream, ...] = ()
        latest = self._latest.get(unit)
        if s is None and latest is not None and epoch < latest:
            return None, ()  # an old status of an epoch since replaced
        if s is None:
            first = latest is None
            s, given_up = self._open(unit, epoch)
            if s is None:
                return None, given_up
            if first and not self.backfill:
                s.max_seq = last_seq  # start from here
                return s, given_up
        if last_seq > s.max_seq:
            s.add_missing(s.max_seq + 1, last_seq)
            s.max_seq = last_seq
        return s, given_up

    def _open(self, unit: str, epoch: int) -> tuple[Stream | None, tuple[Stream, ...]]:
        """A new stream for ``(unit, epoch)``; what it makes give up: the older epochs' missing
        seqs when it is the unit's newest epoch, and the oldest epoch beyond :data:`MAX_EPOCHS`.
        None when ``epoch`` is older than every epoch kept and there is no room for it."""
        latest = self._latest.get(unit)
        s = Stream(unit, epoch)
        self._streams[(unit, epoch)] = s
        given_up: list[Stream] = []
        if latest is None or epoch > latest:
            self._latest[unit] = epoch
            for old in self._unit_streams(unit):
                if old is not s and old.missing:
                    old.give_up()
                    given_up.append(old)
        mine = sorted(self._unit_streams(unit), key=lambda x: x.epoch)
        while len(mine) > MAX_EPOCHS:
            oldest = mine.pop(0)
            del self._streams[(unit, oldest.epoch)]
            if oldest is s:
                return None, tuple(given_up)
            if oldest.missing:
                oldest.give_up()
                given_up.append(oldest)
        return s, tuple(given_up)

    def _unit_streams(self, unit: str) -> list[Stream]:
        return [s for (u, _e), s in self._streams.items() if u == unit]

    def restore(
        self,
        unit: str,
        epoch: int,
        *,
        max_seq: int,
        received: int = 0,
        lost: int = 0,
        missing: Iterable[tuple[int, int]] = (),
    ) -> Stream | None:
        """Put back a stream a consumer saved (its database, after a restart): the highest seq,
        what was received and given up, the missing ranges (clipped to ``max_seq``, merged,
        the newest :data:`MAX_MISSING_RANGES` kept). Events seen before the save come again as
        duplicates (their signatures are not kept), never as new ones. Returns the stream, or
        None when ``epoch`` is older than every epoch kept for the unit."""
        ranges = sorted((max(1, int(a)), min(int(b), max_seq)) for a, b in missing)
        merged: list[tuple[int, int]] = []
        for a, b in ranges:
            if a > b:
                continue
            if merged and a <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
            else:
                merged.append((a, b))
        s = self._streams.get((unit, epoch))
        if s is None:
            s, _given_up = self._open(unit, epoch)
            if s is None:
                return None
        s.max_seq, s.received, s.lost = max_seq, received, lost
        s.missing = merged[-MAX_MISSING_RANGES:]
        s.attempts, s.next_request = 0, None
        return s

    def unfill(self, unit: str, epoch: int, seq: int) -> Stream | None:
        """An event that was seen could not be delivered: it is missing again (asked again)."""
        s = self._streams.get((unit, epoch))
        if s is not None:
            s.unfill(seq)
        return s
