"""The consumer's core: MQTT messages in, verified typed outputs out. Sans-I/O and pure.

::

    consumer = SiteConsumer.for_site(site)
    for out in consumer.receive(topic, payload, now=time.monotonic()):
        match out:
            case SiteEvent(type="passage.completed", payload=PassageCompleted() as done): ...
            case UnitChanged(view=view): ...
    for need in consumer.due(time.monotonic()):
        ...  # ReplayNeed: sign replay_events for it; GapAbandoned: raise an alarm

What it subscribes to (:func:`subscriptions`): the site's events (``…/+/event/#``, including
per-lane scan topics), the units' retained status (``…/+/status``) and the command responses
(``…/+/response``). For each message, in this order, before anything about it is believed:

1. at most :data:`~portlane.edge.contract.envelope.MAX_EVENT_BYTES`, a v1 topic of this site,
   a unit id that is an id (``c9"x`` is refused here, by pattern);
2. an event (and a status that carries a signature) goes through
   :func:`portlane.edge.trust.events.verify_message`: strict JSON, signature by a key the site
   file names, that key's authority for the event, and the topic it came in on;
3. the envelope is the contract's :class:`~portlane.edge.contract.envelope.Envelope` and its id
   is ``{site}/{unit}/{epoch}/{seq}``; then the ledger (:class:`~.streams.StreamBook`):
   new, late (filled a gap), duplicate (same id, same signature) or conflict;
4. ``data`` is validated against the event type's contract model (``SiteEvent.payload``).

A unit's state (:class:`~.outputs.UnitView`) comes from its signed ``unit.status`` only. An
unsigned message on a status topic is believed only as what it can be — the broker's last
will, ``{"state": "offline", …}``, for a unit of the site — and then only as "unconfirmed
offline". Unsigned, unverifiable and malformed input yields no output: it is counted by reason
(:attr:`SiteConsumer.stats`) and cannot create units, streams, gaps or replays, so its cost is
bounded whatever its volume.

Gaps (missing ``seq`` within a unit's current epoch, or below a verified status's
``last_seq``) become :class:`~.outputs.ReplayNeed` after :data:`GAP_GRACE_S` (the event may
still be in flight), then again with capped, jittered exponential backoff; a gap no replay
fills after :data:`MAX_REPLAY_ATTEMPTS` requests is given up (:class:`~.outputs.GapAbandoned`).
Nothing here raises for anything a sender controls.
"""

from __future__ import annotations

import random
import re
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from portlane.edge.contract.commands import ID_PATTERN
from portlane.edge.contract.envelope import MAX_EVENT_BYTES, Envelope
from portlane.edge.contract.events import EVENTS, CommandRejected, CommandResponse, PassageDecided, UnitStatus
from portlane.edge.contract.times import parse_rfc3339
from portlane.edge.contract.topics import Topics
from portlane.edge.errors import TrustError
from portlane.edge.trust.authority import Authority
from portlane.edge.trust.events import VerifiedEvent, parse_envelope, verify_message
from pydantic import BaseModel, ValidationError

from .outputs import (
    Anomaly,
    CommandAnswered,
    ConsumerStats,
    GapAbandoned,
    Output,
    Refusal,
    ReplayNeed,
    SiteEvent,
    StreamView,
    UnitChanged,
    UnitState,
    UnitView,
)
from .streams import Seen, Stream, StreamBook

if TYPE_CHECKING:
    from portlane.edge.config import Site

__all__ = [
    "GAP_GRACE_S",
    "MAX_AWAITED",
    "MAX_RANGES_PER_REQUEST",
    "MAX_REPLAY_ATTEMPTS",
    "REPLAY_BACKOFF_CAP_S",
    "SiteConsumer",
    "subscriptions",
]

#: A missing seq may still be in flight: a unit re-sends what the broker did not acknowledge
#: after it reconnects, within its link's backoff cap (5 s). Ask for a replay only after that.
GAP_GRACE_S = 5.0
#: Replay requests for a gap that stays open: grace × 2^attempt, jittered, at most this apart.
REPLAY_BACKOFF_CAP_S = 120.0
#: Requests for one gap without any of it arriving before it is given up (about 10 minutes
#: with the values above): the unit no longer holds those events, or it is gone.
MAX_REPLAY_ATTEMPTS = 8
#: Missing ranges asked for at once per stream (the oldest first); the rest on the next round.
MAX_RANGES_PER_REQUEST = 4
#: Commands whose answer is awaited; beyond, the oldest is forgotten (it times out).
MAX_AWAITED = 4096
#: Refusals kept for display.
RECENT_REFUSALS = 32
#: Longest unsigned message believed as a last will (the daemons' is ~60 bytes).
MAX_WILL_BYTES = 512

_ID = re.compile(ID_PATTERN)
_MODELS: dict[str, type[BaseModel]] = {name: model for name, model in EVENTS.items()}


def subscriptions(site_id: str) -> list[str]:
    """The topic filters a site consumer subscribes to."""
    return [Topics.all_events(site_id), Topics.all_status(site_id), Topics.all_responses(site_id)]


@dataclass
class _Unit:
    name: str
    status: UnitStatus | None = None
    position: tuple[int, int] | None = None  # (epoch, seq) of the status event
    status_time: str | None = None
    key_id: str | None = None
    will: bool = False

    def view(self) -> UnitView:
        state: UnitState
        if self.will:
            state = "unconfirmed_offline"
        elif self.status is None:
            state = "unknown"
        elif self.status.state == "offline":
            state = "offline"
        elif not self.status.in_service:
            state = "closed"
        else:
            state = "online"
        return UnitView(self.name, state, self.status, self.status_time, self.key_id, self.will)


@dataclass(frozen=True, slots=True)
class _Awaited:
    unit: str
    command: str


class SiteConsumer:
    """The verified picture of one site (see the module docstring). ``authority``: the site's
    keys (:meth:`Authority.from_site`); ``units``: every lane, scanner and client id of the site
    (a last will is believed only for them); ``replayable``: the units that answer
    ``replay_events`` (lanes and scanners). ``rng`` jitters the replay backoff (tests pass a
    seeded one)."""

    def __init__(
        self,
        *,
        site_id: str,
        authority: Authority,
        units: Iterable[str],
        replayable: Iterable[str],
        backfill: bool = False,
        gap_grace_s: float = GAP_GRACE_S,
        rng: random.Random | None = None,
    ) -> None:
        self.site_id = site_id
        self.authority = authority
        self.units_of_site = frozenset(units)
        self.replayable = frozenset(replayable)
        self.gap_grace_s = gap_grace_s
        self.book = StreamBook(backfill=backfill)
        self.stats = ConsumerStats()
        self.recent_refusals: deque[Refusal] = deque(maxlen=RECENT_REFUSALS)
        self._rng = rng or random.Random()
        self._units: dict[str, _Unit] = {}
        self._awaited: OrderedDict[str, _Awaited] = OrderedDict()

    @classmethod
    def for_site(
        cls, site: Site, *, backfill: bool = False, gap_grace_s: float = GAP_GRACE_S, rng: random.Random | None = None
    ) -> SiteConsumer:
        lanes = [lane.id for lane in site.lanes]
        scanners = [s.id for s in site.scanners]
        return cls(
            site_id=site.site.id,
            authority=Authority.from_site(site),
            units=[*lanes, *scanners, *(c.id for c in site.clients)],
            replayable=[*lanes, *scanners],
            backfill=backfill,
            gap_grace_s=gap_grace_s,
            rng=rng,
        )

    # -- views ---------------------------------------------------------------------------------

    def units(self) -> dict[str, UnitView]:
        return {name: u.view() for name, u in sorted(self._units.items())}

    def unit(self, name: str) -> UnitView | None:
        u = self._units.get(name)
        return u.view() if u is not None else None

    def streams(self) -> list[StreamView]:
        return [
            StreamView(s.unit, s.epoch, s.max_seq, s.received, tuple(s.missing), s.lost)
            for s in sorted(self.book, key=lambda x: (x.unit, x.epoch))
        ]

    @property
    def missing(self) -> int:
        """Events known to be missing and still asked for."""
        return sum(s.missing_count for s in self.book)

    def restore(self, streams: Iterable[StreamView], *, now: float) -> int:
        """Put back the ledger a consumer saved (``streams()`` written to its database): after a
        restart it goes on where it stopped — it asks for what was still missing (after the grace
        period) and takes events seen before as duplicates — instead of treating every unit as
        met for the first time. Only units of the site; returns how many streams were restored."""
        n = 0
        for v in sorted(streams, key=lambda x: (x.unit, x.epoch)):
            if v.unit not in self.units_of_site or v.max_seq < 0:
                continue
            s = self.book.restore(
                v.unit, v.epoch, max_seq=v.max_seq, received=v.received, lost=v.lost, missing=v.missing
            )
            if s is not None:
                self._schedule(s, now, progressed=False)
                n += 1
        return n

    # -- input ---------------------------------------------------------------------------------

    def receive(self, topic: str, payload: bytes, *, now: float) -> list[Output]:
        """One MQTT message (retained or not: the same rules). ``now``: a monotonic clock,
        for replay scheduling. Never raises for what a sender controls."""
        self.stats.messages += 1
        if len(payload) > MAX_EVENT_BYTES:
            return self._refuse("oversize", topic)
        try:
            site, unit, kind, rest = Topics.parse(topic)
        except ValueError:
            return self._refuse("bad_topic", topic)
        if site != self.site_id:
            return self._refuse("other_site", topic)
        if not _ID.fullmatch(unit):
            return self._refuse("bad_unit", topic)
        if kind == "event":
            try:
                event_type, lane = Topics.parse_event(rest)
            except ValueError:
                return self._refuse("bad_topic", topic)
            try:
                verified = verify_message(payload, self.authority, unit=unit, event_type=event_type, lane=lane)
            except TrustError as exc:
                return self._refuse(exc.reason, topic)
            return self._accept(verified, payload, topic, now)
        if kind == "status" and not rest:
            return self._status(unit, payload, topic, now)
        if kind == "response" and not rest:
            return self._response(unit, payload, topic)
        return self._refuse("bad_topic", topic)

    def expect_answer(self, nonce: str, *, unit: str, command: str) -> None:
        """A command was sent with ``nonce``: its answer will be a :class:`CommandAnswered`."""
        self._awaited[nonce] = _Awaited(unit, command)
        while len(self._awaited) > MAX_AWAITED:
            self._awaited.popitem(last=False)

    def forget_answer(self, nonce: str) -> None:
        self._awaited.pop(nonce, None)

    def undelivered(self, event: SiteEvent, *, now: float) -> None:
        """``event`` could not be handed on (the caller's queue was full): it is missing again
        and will be replayed, so nothing is dropped in silence."""
        self.stats.overflow += 1
        self.stats.events -= 1
        s = self.book.unfill(event.unit, event.epoch, event.seq)
        if s is not None:
            self._schedule(s, now, progressed=False)

    # -- replays -------------------------------------------------------------------------------

    def due(self, now: float) -> list[ReplayNeed | GapAbandoned]:
        """Replays to request now, and gaps given up. Call it on a timer (a second is plenty)."""
        out: list[ReplayNeed | GapAbandoned] = []
        for s in self.book:
            if not s.missing or s.next_request is None or now < s.next_request:
                continue
            if s.unit not in self.replayable or not _ID.fullmatch(s.unit):
                out.append(self._give_up(s, "not_replayable"))
                continue
            if self.book.latest_epoch(s.unit) != s.epoch:
                out.append(self._give_up(s, "stream_restarted"))
                continue
            s.attempts += 1
            if s.attempts > MAX_REPLAY_ATTEMPTS:
                out.append(self._give_up(s, "no_answer"))
                continue
            for lo, hi in s.missing[:MAX_RANGES_PER_REQUEST]:
                out.append(ReplayNeed(s.unit, s.epoch, lo, hi, s.attempts))
                self.stats.replays_requested += 1
            delay = min(REPLAY_BACKOFF_CAP_S, self.gap_grace_s * 2**s.attempts)
            s.next_request = now + delay * (0.5 + self._rng.random() / 2)
        return out

    def _give_up(self, s: Stream, why: str) -> GapAbandoned:
        n = s.give_up()
        self.stats.lost += n
        return GapAbandoned(s.unit, s.epoch, n, why)  # type: ignore[arg-type]  # why is one of the Literal's

    def _schedule(self, s: Stream, now: float, *, progressed: bool) -> None:
        if not s.missing:
            s.attempts, s.next_request = 0, None
        elif progressed:
            s.attempts, s.next_request = 0, now + self.gap_grace_s  # a replay is arriving: let it finish
        elif s.next_request is None:
            s.next_request = now + self.gap_grace_s

    # -- internals -----------------------------------------------------------------------------

    def _refuse(self, reason: str, topic: str) -> list[Output]:
        self.stats.refuse(reason)
        self.recent_refusals.append(Refusal(reason, topic[:200]))
        return []

    def _accept(self, verified: VerifiedEvent, payload: bytes, topic: str, now: float) -> list[Output]:
        unit = verified.unit
        try:
            envelope = Envelope.model_validate_json(payload, strict=True)
            parse_rfc3339(envelope.time)
        except (ValidationError, ValueError) as exc:
            return self._anomaly("bad_envelope", verified, str(exc).splitlines()[0][:200], topic)
        legacy = f"{self.site_id}/{unit}/{envelope.seq}" if envelope.epoch == 0 else None
        if envelope.id not in (f"{self.site_id}/{unit}/{envelope.epoch}/{envelope.seq}", legacy):
            return self._anomaly("bad_envelope", verified, f"id {envelope.id[:80]!r} is not its unit/epoch/seq", topic)
        assert envelope.sig is not None  # verified
        observed = self.book.observe(unit, envelope.epoch, envelope.seq, envelope.sig)
        out: list[Output] = [GapAbandoned(g.unit, g.epoch, g.lost, "stream_restarted") for g in observed.given_up]
        self.stats.lost += sum(g.lost for g in observed.given_up)
        if observed.seen is Seen.DUPLICATE:
            self.stats.duplicates += 1
            return out
        if observed.seen is Seen.STALE:
            self.stats.refuse("stale_epoch")
            return out
        if observed.seen is Seen.CONFLICT:
            return out + self._anomaly(
                "conflict", verified, f"{envelope.id} signed twice with different content", topic
            )
        self._schedule(observed.stream, now, progressed=observed.seen is Seen.LATE)
        model = _MODELS.get(verified.type)
        typed: BaseModel | None = None
        if model is not None:
            try:
                typed = model.model_validate(envelope.data)
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"]) or "<root>"
                return out + self._anomaly("bad_payload", verified, f"{verified.type}: {where}: {err['msg']}", topic)
        late = observed.seen is Seen.LATE
        self.stats.events += 1
        self.stats.late += late
        out.append(SiteEvent(unit, verified.type, envelope.epoch, envelope.seq, verified.key_id, envelope, typed, late))
        if isinstance(typed, UnitStatus):
            out += self._signed_status(verified, envelope, typed, topic, now)
        out += self._signed_answer(unit, verified.type, typed)
        return out

    def _anomaly(self, kind: str, verified: VerifiedEvent, detail: str, topic: str) -> list[Output]:
        self.stats.anomalies += 1
        self.stats.refuse(kind)
        self.recent_refusals.append(Refusal(kind, topic[:200]))
        return [Anomaly(kind, verified.unit, verified.key_id, detail)]  # type: ignore[arg-type]  # one of the Literal's

    def _signed_status(
        self, verified: VerifiedEvent, envelope: Envelope, status: UnitStatus, topic: str, now: float
    ) -> list[Output]:
        if status.unit != verified.unit:
            return self._anomaly("bad_payload", verified, f"status of {status.unit!r} signed by {verified.unit}", topic)
        u = self._units.setdefault(verified.unit, _Unit(verified.unit))
        before = u.view()
        position = (envelope.epoch, envelope.seq)
        if u.position is None or position > u.position:
            u.status, u.position, u.status_time, u.key_id, u.will = (
                status,
                position,
                envelope.time,
                verified.key_id,
                False,
            )
        s, given_up = self.book.expect(verified.unit, status.epoch, status.last_seq)
        if s is not None:
            self._schedule(s, now, progressed=False)
        out: list[Output] = [GapAbandoned(g.unit, g.epoch, g.lost, "stream_restarted") for g in given_up]
        self.stats.lost += sum(g.lost for g in given_up)
        after = u.view()
        if after != before:
            out.append(UnitChanged(after))
        return out

    def _status(self, unit: str, payload: bytes, topic: str, now: float) -> list[Output]:
        try:
            body = parse_envelope(payload)
        except TrustError:
            return self._refuse("malformed_status", topic)
        if "sig" in body or "sigkeyid" in body:
            try:
                verified = verify_message(payload, self.authority, unit=unit, event_type="unit.status")
            except TrustError as exc:
                return self._refuse(exc.reason, topic)
            return self._accept(verified, payload, topic, now)
        # Unsigned: at best the broker's last will of one of the site's units.
        is_will = (
            len(payload) <= MAX_WILL_BYTES
            and body.get("state") == "offline"
            and body.get("unit", unit) == unit
            and unit in self.units_of_site
        )
        if not is_will:
            return self._refuse("unsigned_status", topic)
        self.stats.wills += 1
        u = self._units.setdefault(unit, _Unit(unit))
        if u.will:
            return []
        u.will = True
        return [UnitChanged(u.view())]

    def _response(self, unit: str, payload: bytes, topic: str) -> list[Output]:
        try:
            response = CommandResponse.model_validate(parse_envelope(payload))
        except (TrustError, ValidationError):
            return self._refuse("bad_response", topic)
        nonce = response.correlation_id
        awaited = self._awaited.get(nonce) if nonce is not None else None
        if nonce is None or awaited is None or awaited.unit != unit:
            self.stats.other_responses += 1  # an answer to another client's command: not ours
            return []
        del self._awaited[nonce]
        self.stats.answers += 1
        return [CommandAnswered(unit, nonce, awaited.command, response.ok, response.reason, signed=False)]

    def _signed_answer(self, unit: str, event_type: str, payload: BaseModel | None) -> list[Output]:
        """A unit's signed events that answer a command: ``command.rejected`` (its nonce) and
        ``passage.decided`` (the decision's ``command_nonce``)."""
        if isinstance(payload, CommandRejected) and event_type == "command.rejected":
            nonce, ok, reason = payload.nonce, False, payload.reason
        elif isinstance(payload, PassageDecided):
            nonce, ok, reason = payload.command_nonce, True, None
        else:
            return []
        awaited = self._awaited.get(nonce) if nonce is not None else None
        if nonce is None or awaited is None or awaited.unit != unit:
            return []
        del self._awaited[nonce]
        self.stats.answers += 1
        return [CommandAnswered(unit, nonce, awaited.command, ok, reason, signed=True)]
