"""Pre-decisions at the lane: what a declared vehicle is, what the lane read, and the matching
rules — pure (the book that keeps them is ``predecisions.py``).

What "matches" means, rule by rule (each a small function in ``RULES``; adding the seals read by
the devices issue is adding the reads to :class:`Observed`):

* **state** — ``revoked`` (by id, or a control order on the vehicle: it wins over everything),
  ``already_used`` (one pre-decision releases one passage), ``expired`` (``valid_until``),
  ``wrong_lane`` (``lanes``), ``outside_window`` (appointment window);
* **plates** — every declared plate read (the paired Hong Kong/Macau plate too) and no plate read
  that is not declared, compared as normalised text. A read in doubt (below
  ``LOW_CONFIDENCE``; a province Hanzi in doubt may differ in that one character) is accepted
  only when the e-card was read and is the declared one, another declared plate was read with
  confidence, *and* the declared vehicle is the only one in the book consistent with every
  read and the e-card — never by picking the nearest declared plate (``plate_mismatch``). So a
  single-plate vehicle read in doubt always goes to an officer: its e-card alone could be on
  another truck whose plate differs only where the read is in doubt;
* **e-card** — declared tag read (``tag_mismatch``);
* **containers** — the same numbers, order-free, each read with a good check digit
  (``container_mismatch``); each with its declared ISO size/type code, compared as codes
  (``size_type_mismatch``; not read is a mismatch);
* **weight** — weighed, within the declared tolerance (``weight_out_of_tolerance``);
* **seals** — when declared, exactly the declared seal ids read (``seal_mismatch``);
* **identification** — an identification exception other than ``low_confidence`` (which the
  plate rule handles) refuses (``identification_exception``, or the field it concerns).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from portlane.edge.contract.commands import PredecisionArgs, RevokeArgs, SignedCommand
from portlane.edge.contract.events import ContainerRead, PlateRead, PredecisionReason, PredecisionRefusal
from portlane.edge.contract.times import parse_rfc3339, rfc3339
from portlane.edge.contract.vocabulary import LOW_CONFIDENCE
from portlane.models.grammar import CN_PROVINCES, normalise

from .passage import Identity

__all__ = [
    "EXCEPTION_REASONS",
    "MAX_REFUSALS",
    "RULES",
    "TOLERATED_EXCEPTIONS",
    "Context",
    "ControlOrder",
    "Declared",
    "FullMatch",
    "NoMatch",
    "Observed",
    "Refusal",
    "Verdict",
    "plate_consistent",
    "plate_in_doubt",
]

#: Reasons reported per identification (the event carries at most 32).
MAX_REFUSALS = 24
#: Identification exceptions the rules themselves settle; any other refuses automatic release.
TOLERATED_EXCEPTIONS = frozenset({"low_confidence"})
#: Identification exceptions that concern one field: refused under that field's reason.
EXCEPTION_REASONS: Mapping[str, PredecisionReason] = {
    "unreadable_plate": "plate_mismatch",
    "dual_plate_mismatch": "plate_mismatch",
    "check_digit_failed": "container_mismatch",
}

Verdict = Literal["release", "inspect"]


def _ts(rfc3339: str) -> float:
    return parse_rfc3339(rfc3339).timestamp()


def _plate(text: str) -> str:
    return normalise(text)


# -------------------------------------------------------------------------------------------
# What was declared, what was read


@dataclass(frozen=True, slots=True)
class Declared:
    """One agency's pre-decision as the lane holds it: the signed command's args, and where it
    came from (key, nonce, digest of the signed command) for the audit entry and the events."""

    id: str
    agency: str
    verdict: Verdict
    plates: frozenset[str]  # normalised
    tag_id: str
    containers: tuple[tuple[str, str], ...]  # (number, size/type code), sorted
    gross_weight_kg: int | None
    weight_tolerance_kg: int | None
    seals: frozenset[str] | None
    lanes: frozenset[str]
    window_start: float
    window_end: float
    valid_until: float
    key_id: str
    nonce: str
    issued_at: float
    digest: str  # sha256 of the signed command's wire form

    @classmethod
    def from_command(cls, cmd: SignedCommand, args: PredecisionArgs) -> Declared:
        """From a verified ``predecision`` command (the only way one enters a lane's book)."""
        return cls(
            id=args.predecision_id,
            agency=args.agency,
            verdict=args.verdict,
            plates=frozenset(_plate(p) for p in args.plates),
            tag_id=args.tag_id,
            containers=tuple(sorted((c.number, c.size_type) for c in args.containers)),
            gross_weight_kg=args.gross_weight_kg,
            weight_tolerance_kg=args.weight_tolerance_kg,
            seals=frozenset(args.seals) if args.seals is not None else None,
            lanes=frozenset(args.lanes),
            window_start=_ts(args.window_start),
            window_end=_ts(args.window_end),
            valid_until=_ts(args.valid_until),
            key_id=cmd.key_id,
            nonce=cmd.nonce,
            issued_at=cmd.issued_at_dt.timestamp(),
            digest=cmd.digest(),
        )

    def same_content(self, other: Declared) -> bool:
        """The same pre-decision signed again (a platform re-sends with a fresh nonce)."""
        mine, theirs = asdict(self), asdict(other)
        for k in ("key_id", "nonce", "issued_at", "digest"):
            mine.pop(k), theirs.pop(k)
        return mine == theirs

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["plates"] = sorted(self.plates)
        d["containers"] = [list(c) for c in self.containers]
        d["seals"] = sorted(self.seals) if self.seals is not None else None
        d["lanes"] = sorted(self.lanes)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Declared:
        d = dict(d)
        d["plates"] = frozenset(d["plates"])
        d["containers"] = tuple((str(n), str(t)) for n, t in d["containers"])
        d["seals"] = frozenset(d["seals"]) if d.get("seals") is not None else None
        d["lanes"] = frozenset(d["lanes"])
        return cls(**d)


@dataclass(frozen=True, slots=True)
class ControlOrder:
    """A signed ``revoke`` (布控): one pre-decision by id, or a vehicle by plates and/or e-card."""

    key: str  # the command's nonce: unique
    agency: str
    key_id: str
    reason: str
    predecision_id: str | None
    plates: frozenset[str]  # normalised
    tag_id: str | None
    valid_until: float
    issued_at: float

    @classmethod
    def from_command(cls, cmd: SignedCommand, args: RevokeArgs) -> ControlOrder:
        return cls(
            key=cmd.nonce,
            agency=args.agency,
            key_id=cmd.key_id,
            reason=args.reason,
            predecision_id=args.predecision_id,
            plates=frozenset(_plate(p) for p in args.plates),
            tag_id=args.tag_id,
            valid_until=_ts(args.valid_until),
            issued_at=cmd.issued_at_dt.timestamp(),
        )

    def covers(self, d: Declared) -> bool:
        if self.predecision_id is not None:
            return d.id == self.predecision_id
        return bool(self.plates & d.plates) or (self.tag_id is not None and self.tag_id == d.tag_id)

    def hits(self, o: Observed) -> bool:
        """Is the vehicle read (plates, e-card) under this order? A read in doubt counts if it
        could be a plate of the order (the order wins)."""
        if self.predecision_id is not None:
            return False
        if self.tag_id is not None and self.tag_id == o.tag_id:
            return True
        return any(plate_consistent(r, p, relaxed=plate_in_doubt(r)) for r in o.plates for p in self.plates)

    def target(self) -> str:
        if self.predecision_id is not None:
            return f"pre-decision {self.predecision_id}"
        parts = sorted(self.plates) + ([f"e-card {self.tag_id}"] if self.tag_id else [])
        return "vehicle " + ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["plates"] = sorted(self.plates)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ControlOrder:
        d = dict(d)
        d["plates"] = frozenset(d["plates"])
        return cls(**d)


@dataclass(frozen=True, slots=True)
class Observed:
    """What the lane read of the vehicle, as the rules compare it."""

    plates: tuple[PlateRead, ...] = ()
    tag_id: str | None = None
    containers: tuple[ContainerRead, ...] = ()
    weight_kg: int | None = None
    seals: tuple[str, ...] = ()  # e-seal / e-lock ids the seal reader read (none: no reader, or its read failed)
    exceptions: tuple[str, ...] = ()

    @classmethod
    def from_identity(cls, identity: Identity) -> Observed:
        plates: dict[str, PlateRead] = {}
        for r in identity.plates:  # one read per plate text: the least confident one
            t = _plate(r.text)
            if t not in plates or r.confidence < plates[t].confidence:
                plates[t] = r.model_copy(update={"text": t})
        return cls(
            plates=tuple(plates.values()),
            tag_id=identity.tag_id,
            containers=identity.containers,
            weight_kg=identity.weight_kg,
            seals=tuple(r.seal_id for r in identity.seals or ()),
            exceptions=identity.exceptions,
        )


def plate_in_doubt(r: PlateRead) -> bool:
    return r.confidence < LOW_CONFIDENCE


def plate_consistent(read: PlateRead, plate: str, *, relaxed: bool) -> bool:
    """Could ``read`` be ``plate``? Exactly, or — for a read in doubt (``relaxed``) — with only
    the province Hanzi differing (a province in doubt is read with a low confidence, not guessed).
    Nothing else: no nearest plate."""
    if read.text == plate:
        return True
    return (
        relaxed
        and len(read.text) == len(plate) > 1
        and plate[0] in CN_PROVINCES
        and read.text[1:] == plate[1:]
        and not read.text[0].isascii()
    )


# -------------------------------------------------------------------------------------------
# The rules


@dataclass(frozen=True, slots=True)
class Context:
    """What a rule may look at besides the pre-decision: the reads, where and when, and whether
    a read in doubt may be resolved for this pre-decision (see :meth:`PredecisionBook.match`)."""

    observed: Observed
    lane: str
    now: float
    doubt_resolvable: bool
    doubt_detail: str


Refusal = tuple[PredecisionReason, str]  # reason, detail


def _rule_lane(d: Declared, c: Context) -> Iterator[Refusal]:
    if c.lane not in d.lanes:
        yield "wrong_lane", f"declared for {', '.join(sorted(d.lanes))}, arrived at {c.lane}"


def _rule_time(d: Declared, c: Context) -> Iterator[Refusal]:
    if c.now >= d.valid_until:
        yield "expired", f"valid until {_when(d.valid_until)}"
    elif not d.window_start <= c.now <= d.window_end:
        yield "outside_window", f"appointment {_when(d.window_start)} to {_when(d.window_end)}"


def _rule_tag(d: Declared, c: Context) -> Iterator[Refusal]:
    if c.observed.tag_id != d.tag_id:
        read = c.observed.tag_id or "nothing"
        yield "tag_mismatch", f"declared e-card {d.tag_id}, read {read}"


def _rule_plates(d: Declared, c: Context) -> Iterator[Refusal]:
    reads = c.observed.plates
    for r in reads:
        doubt = plate_in_doubt(r)
        if not any(plate_consistent(r, p, relaxed=doubt) for p in d.plates):
            yield "plate_mismatch", f"read {r.text}, declared {', '.join(sorted(d.plates))}"
        elif doubt and not c.doubt_resolvable:
            yield "plate_mismatch", f"read {r.text} in doubt ({r.confidence:.2f}): {c.doubt_detail}"
    for p in sorted(d.plates):
        if not any(plate_consistent(r, p, relaxed=plate_in_doubt(r)) for r in reads):
            yield "plate_mismatch", f"declared {p} not read"


def _rule_containers(d: Declared, c: Context) -> Iterator[Refusal]:
    reads = c.observed.containers
    bad = [r.number for r in reads if not r.check_digit_ok]
    if bad:
        yield "container_mismatch", f"check digit failed: {', '.join(bad)}"
        return
    declared = sorted(n for n, _t in d.containers)
    read = sorted(r.number for r in reads)
    if declared != read:
        yield "container_mismatch", f"declared {', '.join(declared) or 'none'}, read {', '.join(read) or 'none'}"
        return
    types = {r.number: r.iso_type for r in reads}
    for number, code in d.containers:
        if not _same_size_type(code, types.get(number)):
            yield "size_type_mismatch", f"{number}: declared {code}, read {types.get(number) or 'nothing'}"


def _same_size_type(declared: str, read: str | None) -> bool:
    """ISO 6346 size/type codes compared as codes. An equivalence table (e.g. old and new type
    codes of one box) belongs in ``models/iso6346.py``; until it exists only equal codes match."""
    return read is not None and read == declared


def _rule_weight(d: Declared, c: Context) -> Iterator[Refusal]:
    if d.gross_weight_kg is None or d.weight_tolerance_kg is None:
        return
    w = c.observed.weight_kg
    if w is None:
        yield "weight_out_of_tolerance", f"declared {d.gross_weight_kg} kg, not weighed"
    elif abs(w - d.gross_weight_kg) > d.weight_tolerance_kg:
        yield "weight_out_of_tolerance", f"declared {d.gross_weight_kg} ± {d.weight_tolerance_kg} kg, weighed {w} kg"


def _rule_seals(d: Declared, c: Context) -> Iterator[Refusal]:
    if d.seals is None:
        return
    read = frozenset(c.observed.seals)
    if read != d.seals:
        yield (
            "seal_mismatch",
            f"declared {', '.join(sorted(d.seals)) or 'none'}, read {', '.join(sorted(read)) or 'none'}",
        )


#: Every rule a pre-decision must pass, in the order its reasons are reported.
RULES = (_rule_lane, _rule_time, _rule_tag, _rule_plates, _rule_containers, _rule_weight, _rule_seals)


def _when(ts: float) -> str:
    return rfc3339(ts)


# -------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class FullMatch:
    """Every agency's pre-decision matched: the lane decides (release, or queue the scan)."""

    verdict: Verdict
    used: tuple[Declared, ...]  # one per agency, in the lane's agency order

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(d.id for d in self.used)


@dataclass(frozen=True, slots=True)
class NoMatch:
    """The passage goes to the platform, carrying why."""

    refusals: tuple[PredecisionRefusal, ...]

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.reason for r in self.refusals))
