"""Pre-decisions at the lane (一次申报 → 计算机自动核放): the book and the matching rules — pure.

After a vehicle's declaration the platform's risk engine sends each agency's verdict in advance,
signed (``predecision`` command, ``contract.commands.PredecisionArgs``). The lane keeps them in a
bounded :class:`PredecisionBook` and, when it has identified a vehicle, asks
:meth:`PredecisionBook.match` whether it may decide on its own. The principle is *automatic,
never wrong*: the answer is a :class:`FullMatch` only on signed, unexpired, unused, unrevoked
pre-decisions of **every** agency of the lane that each match **everything** the lane read;
anything else is a :class:`NoMatch` with named reasons (``contract.events.PredecisionReason``),
and the passage goes to the platform — to an officer — as without pre-decisions.

The rules are ``predecision_rules.py``. The book is bounded (``capacity``; a full book refuses
new pre-decisions, never old ones), drops entries ``EXPIRED_MEMORY_S`` after they expired (until
then a late vehicle is told ``expired``, not ``not_declared``), keeps used and revoked entries as
tombstones as long as a copy of them could still be valid, and never refuses a control order. Every change is recorded
as a pending record (:meth:`PredecisionBook.pending`) for the lane's store
(``predecision_store.py``) to write before the gate moves.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from portlane.edge.contract.events import PlateRead, PredecisionRefusal

from .predecision_rules import (
    EXCEPTION_REASONS,
    MAX_REFUSALS,
    RULES,
    TOLERATED_EXCEPTIONS,
    Context,
    ControlOrder,
    Declared,
    FullMatch,
    NoMatch,
    Observed,
    Refusal,
    Verdict,
    plate_consistent,
    plate_in_doubt,
)

__all__ = [
    "DEFAULT_CAPACITY",
    "EXPIRED_MEMORY_S",
    "MAX_VALIDITY_S",
    "ORDER_CAPACITY",
    "Added",
    "Entry",
    "PredecisionBook",
    "Revoked",
]

#: Pre-decisions one lane keeps. A busy lane clears ~5,000 vehicles a day with 3 agencies, so
#: 15,000 pre-decisions a day; declarations are lodged up to a few days ahead.
DEFAULT_CAPACITY = 50_000
#: Control orders kept. Never refused: past this the lane releases nothing on its own.
ORDER_CAPACITY = 20_000
#: An expired pre-decision is remembered this long, so that a late vehicle hears ``expired``
#: (an officer's shift), then dropped.
EXPIRED_MEMORY_S = 12 * 3600.0
#: Longest a pre-decision may stay valid from its arrival at the lane: ROCARS takes cargo
#: declarations up to 14 days before the crossing.
MAX_VALIDITY_S = 14 * 86400.0
#: The book drops what can no longer matter at most this often (a pass is O(entries)).
PURGE_EVERY_S = 60.0


# -------------------------------------------------------------------------------------------
# The book


@dataclass(slots=True)
class Entry:
    declared: Declared
    used_by: str | None = None  # passage id
    used_at: float | None = None
    revoked_by: str | None = None  # control order key
    revoked_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "declared": self.declared.to_json(),
            "used_by": self.used_by,
            "used_at": self.used_at,
            "revoked_by": self.revoked_by,
            "revoked_at": self.revoked_at,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Entry:
        return cls(
            Declared.from_json(d["declared"]),
            used_by=d.get("used_by"),
            used_at=d.get("used_at"),
            revoked_by=d.get("revoked_by"),
            revoked_at=d.get("revoked_at"),
        )


@dataclass(frozen=True, slots=True)
class Added:
    accepted: bool
    reason: str | None = None  # why refused: expired, validity_too_long, conflicting_id, book_full


@dataclass(frozen=True, slots=True)
class Revoked:
    """What a control order changed: pre-decisions newly revoked, and those already used."""

    revoked: tuple[Entry, ...]
    already_used: tuple[Entry, ...]


@dataclass
class PredecisionBook:
    """The lane's pre-decisions and control orders. All times are UNIX seconds (the logic's clock)."""

    capacity: int = DEFAULT_CAPACITY
    order_capacity: int = ORDER_CAPACITY
    entries: dict[str, Entry] = field(default_factory=dict)
    orders: dict[str, ControlOrder] = field(default_factory=dict)
    _by_plate: dict[str, set[str]] = field(default_factory=dict)
    _by_suffix: dict[str, set[str]] = field(default_factory=dict)  # plate without its province
    _by_tag: dict[str, set[str]] = field(default_factory=dict)
    _dirty: set[str] = field(default_factory=set)
    _purged_at: float = float("-inf")

    # ---------------------------------------------------------------- changes
    def add(self, d: Declared, now: float) -> Added:
        """A verified pre-decision. Idempotent for a copy of one already held (any state)."""
        known = self.entries.get(d.id)
        if known is not None:
            if known.declared.same_content(d):
                return Added(True, "duplicate")
            return Added(False, "conflicting_id")
        if d.valid_until <= now:
            return Added(False, "expired")
        if d.valid_until - now > MAX_VALIDITY_S:
            return Added(False, "validity_too_long")
        if len(self.entries) >= self.capacity:
            self.purge(now)
            if len(self.entries) >= self.capacity:
                return Added(False, "book_full")
        e = Entry(d)
        for o in self.orders.values():
            if o.covers(d) and (o.predecision_id is not None or now < o.valid_until):
                e.revoked_by, e.revoked_at = o.key, now
                break
        self._put(e)
        return Added(True)

    def revoke(self, order: ControlOrder, now: float) -> Revoked:
        """A control order. Never refused. Marks every pre-decision it covers revoked for good,
        and is kept so that a copy arriving later is revoked at once."""
        self.orders[order.key] = order
        self._dirty.add(f"o:{order.key}")
        newly: list[Entry] = []
        used: list[Entry] = []
        for e in self._covered(order):
            if e.used_by is not None:
                used.append(e)
            if e.revoked_by is None:
                e.revoked_by, e.revoked_at = order.key, now
                self._dirty.add(f"p:{e.declared.id}")
                newly.append(e)
        return Revoked(tuple(newly), tuple(used))

    def use(self, ids: Iterable[str], passage_id: str, now: float) -> None:
        for pid in ids:
            e = self.entries[pid]
            e.used_by, e.used_at = passage_id, now
            self._dirty.add(f"p:{pid}")

    def tick(self, now: float) -> None:
        """On the lane's clock tick: purge every ``PURGE_EVERY_S``."""
        if now - self._purged_at >= PURGE_EVERY_S:
            self.purge(now)

    def purge(self, now: float) -> int:
        """Drop what can no longer matter: entries ``EXPIRED_MEMORY_S`` after their expiry, and
        control orders past their own ``valid_until`` and every entry they could cover."""
        self._purged_at = now
        gone = [i for i, e in self.entries.items() if now > e.declared.valid_until + EXPIRED_MEMORY_S]
        for i in gone:
            self._drop(i)
        for key, o in list(self.orders.items()):
            if now <= o.valid_until + EXPIRED_MEMORY_S:
                continue
            if o.predecision_id is not None and o.predecision_id in self.entries:
                continue  # the tombstone must outlive the pre-decision it revokes
            del self.orders[key]
            self._dirty.add(f"o:{key}")
        return len(gone)

    # ---------------------------------------------------------------- matching
    def match(self, o: Observed, *, lane: str, agencies: tuple[str, ...], now: float) -> FullMatch | NoMatch:
        """Decide whether the lane may release (or queue the scan) on its own; see the module."""
        candidates = [self.entries[i] for i in sorted(self._candidates(o))]
        if not candidates:
            return NoMatch((PredecisionRefusal(reason="not_declared", detail=_describe(o)),))
        # What refuses whatever the pre-decisions say: identification exceptions, control orders.
        blocking: list[PredecisionRefusal] = []
        for exc in o.exceptions:
            if exc not in TOLERATED_EXCEPTIONS:
                reason = EXCEPTION_REASONS.get(exc, "identification_exception")
                blocking.append(PredecisionRefusal(reason=reason, detail=f"identification: {exc}"))
        if len(self.orders) > self.order_capacity:
            detail = "control orders beyond capacity: automatic release suspended"
            blocking.append(PredecisionRefusal(reason="revoked", detail=detail))
        for order in self.orders.values():
            if now < order.valid_until and order.hits(o):
                detail = f"control order on {order.target()} ({order.agency}): {order.reason}"
                blocking.append(PredecisionRefusal(reason="revoked", agency=order.agency, detail=detail[:300]))
        resolvable, why = self._doubt(o, candidates)
        chosen: list[Declared] = []
        failed: list[PredecisionRefusal] = []  # of the agencies without a full match
        for agency in agencies:
            mine = [e for e in candidates if e.declared.agency == agency]
            if not mine:
                detail = f"no pre-decision of {agency} for {_describe(o)}"
                failed.append(PredecisionRefusal(reason="not_declared", agency=agency, detail=detail[:300]))
                continue
            full: list[Declared] = []
            refused: list[PredecisionRefusal] = []
            for e in mine:
                d = e.declared
                ctx = Context(o, lane, now, resolvable and _anchored(d, o), why or _unanchored(d, o))
                found = [*self._state(e), *(r for rule in RULES for r in rule(d, ctx))]
                if not found:
                    full.append(d)
                refused += [
                    PredecisionRefusal(reason=reason, agency=agency, predecision_id=d.id, detail=detail[:300])
                    for reason, detail in found
                ]
            if full:
                # Several trips declared and matching: an inspection wins, then the soonest to expire.
                chosen.append(min(full, key=lambda d: (d.verdict != "inspect", d.valid_until, d.id)))
            else:
                failed += refused
        if not blocking and not failed:
            verdict: Verdict = "inspect" if any(d.verdict == "inspect" for d in chosen) else "release"
            return FullMatch(verdict, tuple(chosen))
        return NoMatch(tuple([*blocking, *failed][:MAX_REFUSALS]))

    def _state(self, e: Entry) -> Iterator[Refusal]:
        if e.revoked_by is not None:
            o = self.orders.get(e.revoked_by)
            yield "revoked", (f"control order on {o.target()} ({o.agency}): {o.reason}" if o else "revoked")
        if e.used_by is not None:
            yield "already_used", f"released passage {e.used_by}"

    def _doubt(self, o: Observed, candidates: list[Entry]) -> tuple[bool, str]:
        """May a read in doubt be resolved? Only with the e-card read, and only if exactly one
        declared vehicle (its plates) is consistent with every read and the e-card."""
        if not any(plate_in_doubt(r) for r in o.plates):
            return True, ""
        if o.tag_id is None:
            return False, "the e-card was not read"
        vehicles = {
            e.declared.plates
            for e in candidates
            if e.declared.tag_id == o.tag_id
            and all(any(plate_consistent(r, p, relaxed=plate_in_doubt(r)) for p in e.declared.plates) for r in o.plates)
        }
        if len(vehicles) != 1:
            return False, f"{len(vehicles)} declared vehicles fit the reads and the e-card"
        return True, ""

    def _candidates(self, o: Observed) -> set[str]:
        """Pre-decisions about this vehicle: its e-card, a plate read, or (for a read in doubt)
        a plate that differs from it only in the province."""
        out: set[str] = set(self._by_tag.get(o.tag_id, ())) if o.tag_id else set()
        for r in o.plates:
            out |= self._by_plate.get(r.text, set())
            if plate_in_doubt(r) and len(r.text) > 1:
                out |= {i for i in self._by_suffix.get(r.text[1:], ()) if _consistent_any(r, self.entries[i])}
        return out

    def _covered(self, order: ControlOrder) -> list[Entry]:
        if order.predecision_id is not None:
            e = self.entries.get(order.predecision_id)
            return [e] if e is not None else []
        ids: set[str] = set(self._by_tag.get(order.tag_id, ())) if order.tag_id else set()
        for p in order.plates:
            ids |= self._by_plate.get(p, set())
        return [self.entries[i] for i in sorted(ids)]

    # ---------------------------------------------------------------- persistence
    def pending(self) -> dict[str, dict[str, Any] | None]:
        """Records changed since the last :meth:`saved`: key -> record (None: delete)."""
        out: dict[str, dict[str, Any] | None] = {}
        for key in self._dirty:
            kind, _, ident = key.partition(":")
            if kind == "p":
                e = self.entries.get(ident)
                out[key] = e.to_json() if e is not None else None
            else:
                o = self.orders.get(ident)
                out[key] = o.to_json() if o is not None else None
        return out

    def saved(self, keys: Iterable[str]) -> None:
        self._dirty.difference_update(keys)

    def restore(self, records: Mapping[str, Mapping[str, Any]], now: float) -> list[str]:
        """Load records written by :meth:`pending` (a restart); returns the keys of those that
        could not be read (dropped). Expired ones are purged at once."""
        bad: list[str] = []
        for key, rec in records.items():
            kind, _, ident = key.partition(":")
            try:
                if kind == "p":
                    self._put(Entry.from_json(rec), dirty=False)
                elif kind == "o":
                    self.orders[ident] = ControlOrder.from_json(rec)
                else:
                    bad.append(key)
            except (KeyError, TypeError, ValueError):
                bad.append(key)
        self.purge(now)
        return bad

    # ---------------------------------------------------------------- lookups
    def __len__(self) -> int:
        return len(self.entries)

    def stats(self, now: float) -> dict[str, int]:
        s = {"live": 0, "used": 0, "revoked": 0, "expired": 0, "orders": len(self.orders)}
        for e in self.entries.values():
            if e.revoked_by is not None:
                s["revoked"] += 1
            elif e.used_by is not None:
                s["used"] += 1
            elif now >= e.declared.valid_until:
                s["expired"] += 1
            else:
                s["live"] += 1
        return s

    def digest(self) -> str:
        """sha256 over every entry and order (tests: the book read back equals the one written)."""
        body = {
            "p": {i: e.to_json() for i, e in sorted(self.entries.items())},
            "o": {k: o.to_json() for k, o in sorted(self.orders.items())},
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    # ---------------------------------------------------------------- index
    def _put(self, e: Entry, *, dirty: bool = True) -> None:
        d = e.declared
        self.entries[d.id] = e
        for p in d.plates:
            self._by_plate.setdefault(p, set()).add(d.id)
            if len(p) > 1:
                self._by_suffix.setdefault(p[1:], set()).add(d.id)
        self._by_tag.setdefault(d.tag_id, set()).add(d.id)
        if dirty:
            self._dirty.add(f"p:{d.id}")

    def _drop(self, pid: str) -> None:
        d = self.entries.pop(pid).declared
        for index, keys in ((self._by_plate, d.plates), (self._by_suffix, {p[1:] for p in d.plates if len(p) > 1})):
            for k in keys:
                ids = index.get(k)
                if ids is not None:
                    ids.discard(pid)
                    if not ids:
                        del index[k]
        ids = self._by_tag.get(d.tag_id)
        if ids is not None:
            ids.discard(pid)
            if not ids:
                del self._by_tag[d.tag_id]
        self._dirty.add(f"p:{pid}")


def _anchored(d: Declared, o: Observed) -> bool:
    """Beside a read in doubt, the vehicle is vouched for by its declared e-card *and* a declared
    plate read with confidence (the paired plate of a cross-boundary vehicle): an e-card alone
    could be on another truck whose plate differs only where the read is in doubt."""
    return d.tag_id == o.tag_id and any(not plate_in_doubt(r) and r.text in d.plates for r in o.plates)


def _unanchored(d: Declared, o: Observed) -> str:
    if d.tag_id != o.tag_id:
        return "its e-card was not read"
    return "no other declared plate read with confidence"


def _consistent_any(r: PlateRead, e: Entry) -> bool:
    return any(plate_consistent(r, p, relaxed=True) for p in e.declared.plates)


def _describe(o: Observed) -> str:
    plates = ", ".join(r.text for r in o.plates) or "no plate"
    return f"{plates}; e-card {o.tag_id or 'not read'}"
