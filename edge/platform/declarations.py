"""The platform's declarations (一次申报 → 计算机自动核放): which vehicles are declared in
advance, what each agency signs for them, where it goes and when — pure.

In: the trips the platform expects (:class:`Trip`: the vehicle's registered plates, e-card,
containers, gross weight, and — a simulation's truth a real platform does not have — the lane
it will use and its place in that lane's queue), the lanes (``lanes.LaneInfo``) and a
:class:`Policy` (the share declared, the mix of deliberate mismatches). Out: the commands to
send, as :class:`Outgoing` (lane, command, ``args`` validated by the contract's models and
ready to be signed), at two moments:

``Declarations.ahead(now)``
    before the traffic: every agency's ``predecision`` for each declared trip, to each lane it
    names; and the control orders (``revoke``) lodged before the vehicle arrives.
``Declarations.on_event(lane, type, data, now)``
    a ``passage.decided`` with ``basis: predecision`` says a lane used a pre-decision: it is
    revoked by id at the other lanes it was sent to (one-time is per lane: lanes share no
    state), and the trip chosen for it gets its control order after the match.

A ``vehicle.identified`` that carries ``predecision_ids`` was decided by the lane itself: the
platform does not answer it (:func:`decided_by_lane`); one a control order held back
(:func:`under_control_order`) it never just releases.

What is declared for a trip: the registered plates (both of a cross-boundary vehicle), the
e-card, the containers with their ISO size/type codes when the lanes read containers (OCR;
a lane identifying by e-card reads none, so none are declared), the gross weight where the
lane weighs (tolerance max(500 kg, 2 %)), the crossing's lanes of the vehicle's kind, a window
from a minute ago (clock skew) to ``APPOINTMENT_S`` ahead, ``valid_until`` ``GRACE_S`` after
it, and the verdict ``release`` — a vehicle declared in advance is one the risk engine rated
low-risk; the rest it decides online.

Deliberate mismatches (:data:`Mismatch`, each named by what the lane must say):

=========================== ================================================================
``weight_out_of_tolerance`` declared ``OVERLOAD_KG`` under what the truck weighs
``container_mismatch``      a box swapped for another (only when containers are read)
``wrong_lane``              the appointment names another lane; sent to the lane the vehicle
                            uses as well (a platform broadcasting its declarations)
``expired``                 valid only ``EXPIRES_AFTER_S`` (physical time) after it was sent;
                            the trip is one of the later ones of its lane
``revoked``                 a control order on the vehicle before it arrives
``predecision_revoked``     a control order on the vehicle right after the lane matched it:
                            the lane takes the release back (``lane.exception``)
=========================== ================================================================
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, get_args

from portlane.edge.contract.commands import DeclaredContainer, PredecisionArgs, RevokeArgs
from portlane.edge.contract.times import rfc3339
from portlane.models.iso6346 import check_digit

from .lanes import LaneInfo

__all__ = [
    "APPOINTMENT_S",
    "DEFAULT_SHARE",
    "EXPIRES_AFTER_S",
    "GRACE_S",
    "MISMATCHES",
    "OVERLOAD_KG",
    "Declarations",
    "Mismatch",
    "Outgoing",
    "Policy",
    "Trip",
    "TripPlan",
    "decided_by_lane",
    "parse_mix",
    "tolerance_kg",
    "under_control_order",
]

Mismatch = Literal[
    "weight_out_of_tolerance",
    "container_mismatch",
    "wrong_lane",
    "expired",
    "revoked",
    "predecision_revoked",
]
MISMATCHES: tuple[Mismatch, ...] = get_args(Mismatch)

#: Share of the traffic declared in advance (the issue's ~70 %).
DEFAULT_SHARE = 0.7
#: A declaration cannot know fuel, the driver or dunnage: a few hundred kilograms either way,
#: and a loading variance that grows with the load.
TOLERANCE_MIN_KG = 500
TOLERANCE_SHARE = 0.02
#: The overweight trip is declared this much under its weight: a ton of undeclared cargo and
#: more, far outside any tolerance above.
OVERLOAD_KG = 4_000
#: Appointment window: from a minute ago (the lanes' clocks may be that far behind the
#: platform's) to a shift ahead; ``valid_until`` a little after its end.
WINDOW_BEFORE_S = 60.0
APPOINTMENT_S = 4 * 3600.0
GRACE_S = 1800.0
#: The expired trip's pre-decisions are valid this long after they are sent (physical time,
#: scaled by the run's time factor): long enough to reach the lanes, shorter than the way to
#: the trip's place in its lane (``EXPIRED_MIN_ORDER`` vehicles of at least ~7 s each before it).
EXPIRES_AFTER_S = 30.0
EXPIRED_MIN_ORDER = 6
#: Control orders stay in force a day.
ORDER_VALID_S = 86400.0
#: The agency that lodges control orders (布控).
ORDER_AGENCY = "customs"
#: Without an explicit mix: one trip of each applicable kind, at most one declared trip in this many.
DEFAULT_MIX_EVERY = 5


class Outgoing(NamedTuple):
    """One command for the platform to sign and send."""

    lane: str
    cmd: Literal["predecision", "revoke"]
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Trip:
    """A vehicle the platform expects, as its declaration and the registry know it."""

    vid: str
    lane: str  # the lane it will use (the simulation's truth)
    order: int  # its place in that lane's queue, 0 first
    kind: str  # truck | car
    plates: tuple[str, ...]  # as registered with its e-card
    tag_id: str
    containers: tuple[tuple[str, str], ...] = ()  # (ISO 6346 number, size/type code)
    weight_kg: int | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    share: float = DEFAULT_SHARE
    #: Deliberate mismatches: kind -> trips. None: the default mix (one of each kind that
    #: applies, at most one declared trip in ``DEFAULT_MIX_EVERY``).
    mix: Mapping[Mismatch, int] | None = None
    containers_read: bool = False  # the lanes read container numbers (OCR): declare them
    time_factor: float = 1.0  # physical seconds × this = the run's seconds
    seed: int = 0
    run: str = "d"  # prefix of the pre-decision ids: unique per run

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"share {self.share}: from 0 to 1")
        for kind, n in (self.mix or {}).items():
            if kind not in MISMATCHES or n < 0:
                raise ValueError(f"mismatch {kind}={n}: one of {', '.join(MISMATCHES)}, a count >= 0")


@dataclass(frozen=True, slots=True)
class TripPlan:
    trip: Trip
    declared: bool
    mismatch: Mismatch | None = None
    named: tuple[str, ...] = ()  # the lanes its pre-decisions name
    sent_to: tuple[str, ...] = ()  # the lanes they are sent to
    ids: tuple[tuple[str, str], ...] = ()  # (agency, pre-decision id)


def tolerance_kg(declared_kg: int) -> int:
    return max(TOLERANCE_MIN_KG, round(declared_kg * TOLERANCE_SHARE))


def decided_by_lane(identified: Mapping[str, Any]) -> bool:
    """A ``vehicle.identified`` the lane decided on itself (every agency's pre-decision matched)."""
    return bool(identified.get("predecision_ids"))


def under_control_order(identified: Mapping[str, Any]) -> bool:
    """A ``vehicle.identified`` a control order (布控) held back: a pre-decision refused ``revoked``.
    The officer never just releases such a vehicle (X-ray, or the inspection bay)."""
    return any(r.get("reason") == "revoked" for r in identified.get("predecision_refusals", ()))


def parse_mix(text: str) -> dict[Mismatch, int]:
    """``weight_out_of_tolerance=2,wrong_lane=1`` (``none`` or empty: no mismatch). ValueError
    names what is wrong."""
    mix: dict[Mismatch, int] = {}
    if text.strip() in ("", "none"):
        return mix
    for part in text.split(","):
        name, _, count = part.strip().partition("=")
        if name not in MISMATCHES:
            raise ValueError(f"{name!r} is not a mismatch; one of {', '.join(MISMATCHES)}")
        try:
            n = int(count) if count else 1
        except ValueError:
            raise ValueError(f"{part.strip()!r}: the count must be a whole number") from None
        if n < 0:
            raise ValueError(f"{part.strip()!r}: the count cannot be negative")
        mix[name] = n
    return mix


@dataclass
class Declarations:
    """The plan for one run, and what has been sent on events so far."""

    plans: dict[str, TripPlan]  # vid -> plan
    lanes: Mapping[str, LaneInfo]
    policy: Policy
    unplanted: dict[Mismatch, int] = field(default_factory=dict)  # asked for, no trip fitted
    _by_id: dict[str, str] = field(default_factory=dict)  # pre-decision id -> vid
    _done: set[tuple[str, str]] = field(default_factory=set)  # (what, key) sent on an event

    @classmethod
    def plan(cls, trips: Sequence[Trip], lanes: Mapping[str, LaneInfo], policy: Policy) -> Declarations:
        """Choose the declared trips and the deliberate mismatches (deterministic per seed)."""
        rng = random.Random(f"declarations-{policy.seed}")
        ordered = sorted(trips, key=lambda t: (t.lane, t.order, t.vid))
        declared = {t.vid for t in rng.sample(ordered, round(policy.share * len(ordered)))}
        mismatch: dict[str, Mismatch] = {}
        unplanted: dict[Mismatch, int] = {}
        budget = len(declared) // DEFAULT_MIX_EVERY if policy.mix is None else len(declared)
        wanted = dict.fromkeys(MISMATCHES, 1) if policy.mix is None else dict(policy.mix)
        for kind in MISMATCHES:
            for _ in range(wanted.get(kind, 0)):
                fits = [
                    t
                    for t in ordered
                    if t.vid in declared and t.vid not in mismatch and _applies(kind, t, lanes, policy)
                ]
                if not fits or budget <= 0:
                    if policy.mix is not None:
                        unplanted[kind] = unplanted.get(kind, 0) + 1
                    continue
                mismatch[rng.choice(fits).vid] = kind
                budget -= 1
        out = cls({}, lanes, policy, unplanted)
        for t in ordered:
            out.plans[t.vid] = out._trip_plan(t, t.vid in declared, mismatch.get(t.vid))
            out._by_id.update({pid: t.vid for _a, pid in out.plans[t.vid].ids})
        return out

    def _trip_plan(self, t: Trip, declared: bool, mismatch: Mismatch | None) -> TripPlan:
        if not declared:
            return TripPlan(t, False)
        kind = self.lanes[t.lane].kind
        same_kind = tuple(sorted(lane for lane, info in self.lanes.items() if info.kind == kind))
        named, sent_to = same_kind, same_kind
        if mismatch == "wrong_lane":
            others = tuple(lane for lane in same_kind if lane != t.lane) or tuple(
                sorted(lane for lane in self.lanes if lane != t.lane)
            )
            named, sent_to = others, (*others, t.lane)
        ids = tuple((a, f"{self.policy.run}-{t.vid}-{a}") for a in self.lanes[t.lane].agencies)
        return TripPlan(t, True, mismatch, named, sent_to, ids)

    # ---------------------------------------------------------------- what to send
    def ahead(self, now: float) -> list[Outgoing]:
        """Before the traffic: the pre-decisions (the expiring ones first: they must reach the
        lanes while still valid), then the control orders lodged before arrival."""
        plans = sorted(self.plans.values(), key=lambda p: (p.mismatch != "expired", p.trip.lane, p.trip.order))
        out = [
            Outgoing(lane, "predecision", self._predecision(p, agency, pid, now))
            for p in plans
            if p.declared
            for agency, pid in p.ids
            for lane in p.sent_to
        ]
        for p in plans:
            if p.mismatch == "revoked":
                out += self._control_order(p, p.sent_to, "control order before arrival (布控)", now)
        return out

    def on_event(self, lane: str, etype: str, data: Mapping[str, Any], now: float) -> list[Outgoing]:
        """What an event from ``lane`` makes the platform send (``passage.decided`` only)."""
        if etype != "passage.decided" or data.get("basis") != "predecision":
            return []
        pid = data.get("predecision_id")
        vid = self._by_id.get(pid) if isinstance(pid, str) else None
        if vid is None or pid is None:
            return []
        p = self.plans[vid]
        out: list[Outgoing] = []
        for other in p.sent_to:
            if other != lane and ("used", f"{pid}@{other}") not in self._done:
                self._done.add(("used", f"{pid}@{other}"))
                reason = f"used at lane {lane}: one-time"
                args = RevokeArgs(
                    agency=_agency_of(p, pid), predecision_id=pid, reason=reason, valid_until=rfc3339(now + GRACE_S)
                )
                out.append(Outgoing(other, "revoke", args.model_dump(mode="json", exclude_defaults=True)))
        if p.mismatch == "predecision_revoked" and ("after_match", vid) not in self._done:
            self._done.add(("after_match", vid))
            out += self._control_order(p, (lane,), "control order after the match (布控)", now)
        return out

    # ---------------------------------------------------------------- views
    def ids_of(self, vid: str) -> tuple[str, ...]:
        return tuple(pid for _a, pid in self.plans[vid].ids)

    def declared_boxes(self, p: TripPlan) -> tuple[tuple[str, str], ...]:
        """The (number, size/type) its pre-decisions declare: none when the lanes read no
        containers, one swapped for a ``container_mismatch``."""
        boxes = p.trip.containers if self.policy.containers_read else ()
        if p.mismatch == "container_mismatch" and boxes:
            boxes = (_swapped(boxes[0]), *boxes[1:])
        return boxes

    def identities(self) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """Pre-decision id -> the identity it declares (plates, container numbers): what a lane
        that released on it released."""
        return {
            pid: (p.trip.plates, tuple(n for n, _t in self.declared_boxes(p)))
            for p in self.plans.values()
            if p.declared
            for _a, pid in p.ids
        }

    def by_tag(self) -> dict[str, TripPlan]:
        return {p.trip.tag_id: p for p in self.plans.values()}

    def summary(self) -> dict[str, Any]:
        """What was planned: declared trips, and the deliberate mismatches by kind (vehicle ids)."""
        planted: dict[str, list[str]] = {}
        for p in self.plans.values():
            if p.mismatch is not None:
                planted.setdefault(p.mismatch, []).append(p.trip.vid)
        return {
            "declared": sum(p.declared for p in self.plans.values()),
            "undeclared": sum(not p.declared for p in self.plans.values()),
            "share": self.policy.share,
            "mismatches_planted": {k: sorted(v) for k, v in sorted(planted.items())},
            "mismatches_not_planted": dict(self.unplanted),
        }

    # ---------------------------------------------------------------- the commands
    def _predecision(self, p: TripPlan, agency: str, pid: str, now: float) -> dict[str, Any]:
        t, lane = p.trip, self.lanes[p.trip.lane]
        start = now - WINDOW_BEFORE_S
        end = now + APPOINTMENT_S
        valid_until = end + GRACE_S
        if p.mismatch == "expired":
            valid_until = now + EXPIRES_AFTER_S * self.policy.time_factor
            end = min(end, valid_until)
        boxes = self.declared_boxes(p)
        gross: int | None = None
        if lane.weighbridge and t.weight_kg is not None:
            gross = t.weight_kg - OVERLOAD_KG if p.mismatch == "weight_out_of_tolerance" else t.weight_kg
        args = PredecisionArgs(
            predecision_id=pid,
            agency=agency,
            verdict="release",
            plates=t.plates,
            tag_id=t.tag_id,
            containers=tuple(DeclaredContainer(number=n, size_type=c) for n, c in boxes),
            lanes=p.named,
            window_start=rfc3339(start),
            window_end=rfc3339(end),
            valid_until=rfc3339(valid_until),
            gross_weight_kg=gross,
            weight_tolerance_kg=None if gross is None else tolerance_kg(gross),
        )
        return args.model_dump(mode="json", exclude_none=True)

    def _control_order(self, p: TripPlan, lanes: Sequence[str], reason: str, now: float) -> list[Outgoing]:
        args = RevokeArgs(
            agency=ORDER_AGENCY,
            plates=p.trip.plates,
            tag_id=p.trip.tag_id,
            reason=reason,
            valid_until=rfc3339(now + ORDER_VALID_S),
        ).model_dump(mode="json", exclude_none=True)
        return [Outgoing(lane, "revoke", args) for lane in lanes]


def _applies(kind: Mismatch, t: Trip, lanes: Mapping[str, LaneInfo], policy: Policy) -> bool:
    if kind == "weight_out_of_tolerance":
        return lanes[t.lane].weighbridge and t.weight_kg is not None and t.weight_kg > OVERLOAD_KG
    if kind == "container_mismatch":
        return policy.containers_read and bool(t.containers)
    if kind == "wrong_lane":
        return len(lanes) > 1
    if kind == "expired":
        return t.order >= EXPIRED_MIN_ORDER
    return True


def _agency_of(p: TripPlan, pid: str) -> str:
    return next(a for a, i in p.ids if i == pid)


def _swapped(box: tuple[str, str]) -> tuple[str, str]:
    """Another box of the same owner and size: the next serial, with its own check digit."""
    number, size_type = box
    first10 = number[:4] + f"{(int(number[4:10]) + 1) % 1_000_000:06d}"
    return first10 + str(check_digit(first10)), size_type
