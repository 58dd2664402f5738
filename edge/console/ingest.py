"""From MQTT message to accepted event: envelope parsing and the per-stream ledger. Pure.

The contract (``docs/asyncapi.yaml``, ``edge/contract/``):

* an event's ``id`` is ``{site}/{unit}/{epoch}/{seq}`` (``{site}/{unit}/{seq}`` before stream
  epochs existed; such events count as epoch 0) and is stable across redelivery: a consumer
  de-duplicates by ``id``;
* ``seq`` starts at 1 and increases by one per event of a unit's stream; a stream is
  ``(unit, epoch)``. A missing ``seq`` is a *gap* the consumer asks the unit to replay; a new
  epoch for a unit is a *stream restart* (the unit's outbox store was recreated), not a gap;
* the retained status carries ``last_seq`` (and ``epoch``): a consumer that has seen less
  knows events are still to come (or were lost) even when no later event arrives.

:class:`StreamLedger` keeps, per stream, the highest ``seq`` seen and the missing ranges.
It never trusts an event it was not given: callers feed it only events that passed
signature verification, so a forged ``seq`` cannot trigger replays or hide real events.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from portlane.edge.contract.envelope import MAX_EVENT_BYTES
from portlane.edge.contract.events import EVENTS, UnitStatus
from portlane.edge.contract.times import parse_rfc3339
from portlane.edge.contract.topics import Topics
from portlane.edge.errors import EventRejectedError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["Event", "Observation", "StreamLedger", "check_payload", "parse_event", "parse_status"]


class _Wire(BaseModel):
    """The envelope fields the console needs; extension attributes are kept in the raw dict."""

    model_config = ConfigDict(frozen=True, extra="allow")

    specversion: str
    id: str = Field(min_length=1, max_length=256)
    source: str
    type: str
    time: str
    subject: str | None = None
    seq: int = Field(ge=1)
    epoch: int = Field(0, ge=0)
    audience: tuple[str, ...] = ()
    data: dict[str, Any]
    sigkeyid: str | None = None
    sig: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    unit: str
    epoch: int
    seq: int
    type: str  # without the "portlane." prefix, e.g. "passage.completed"
    time_ms: int
    subject: str | None
    audience: tuple[str, ...]
    data: dict[str, Any]
    envelope: dict[str, Any]  # exactly as received (what a signature covers)
    sigkeyid: str | None

    @property
    def signed(self) -> bool:
        return "sig" in self.envelope


def parse_event(site: str, topic: str, payload: bytes) -> Event:
    """Parse one message of ``portlane/v1/{site}/{unit}/event/{type}``; raises
    :class:`EventRejectedError` (``malformed`` or ``wrong_source``)."""
    try:
        t_site, unit, kind, rest = Topics.parse(topic)
    except ValueError as exc:
        raise EventRejectedError("malformed", str(exc)) from None
    if kind != "event" or t_site != site:
        raise EventRejectedError("malformed", f"not an event topic of site {site}: {topic}")
    if len(payload) > MAX_EVENT_BYTES:
        raise EventRejectedError("malformed", f"{topic}: {len(payload)} bytes, more than {MAX_EVENT_BYTES}")
    try:
        raw = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventRejectedError("malformed", f"{topic}: not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise EventRejectedError("malformed", f"{topic}: an event is a JSON object")
    try:
        w = _Wire.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "<root>"
        raise EventRejectedError("malformed", f"{topic}: {where}: {err['msg']}") from None
    if w.source != f"portlane://{site}/{unit}":
        raise EventRejectedError("wrong_source", f"{topic}: source {w.source!r} is not unit {unit} of site {site}")
    if w.type != f"portlane.{rest}":
        raise EventRejectedError("malformed", f"{topic}: type {w.type!r} does not match the topic")
    try:
        time_ms = int(parse_rfc3339(w.time).timestamp() * 1000)
    except ValueError as exc:
        raise EventRejectedError("malformed", f"{topic}: time: {exc}") from None
    return Event(
        id=w.id,
        unit=unit,
        epoch=w.epoch,
        seq=w.seq,
        type=rest,
        time_ms=time_ms,
        subject=w.subject,
        audience=w.audience,
        data=w.data,
        envelope=raw,
        sigkeyid=w.sigkeyid,
    )


def check_payload(ev: Event) -> str | None:
    """None if ``data`` matches the contract's model for the type, else why not. Types this
    console does not know (a newer producer) pass: they are stored and shown as they are."""
    model = next((m for name, m in EVENTS.items() if name == ev.type), None)
    if model is None:
        return None
    try:
        model.model_validate(ev.data)
    except ValidationError as exc:
        err = exc.errors()[0]
        return f"{ev.type}: {'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
    return None


def parse_status(site: str, topic: str, payload: bytes) -> tuple[str, dict[str, Any]] | None:
    """``(unit, status)`` of a retained status message, or None if it is not one."""
    try:
        t_site, unit, kind, _rest = Topics.parse(topic)
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if kind != "status" or t_site != site:
        return None
    fields = UnitStatus.fields_of(body)
    return (unit, fields) if fields is not None else None


# --------------------------------------------------------------------------------------------
# The ledger


@dataclass
class Stream:
    unit: str
    epoch: int
    max_seq: int = 0
    missing: list[tuple[int, int]] = field(default_factory=list)  # inclusive ranges, sorted

    def seen(self, seq: int) -> bool:
        return seq <= self.max_seq and not any(a <= seq <= b for a, b in self.missing)

    def missing_count(self) -> int:
        return sum(b - a + 1 for a, b in self.missing)


@dataclass(frozen=True, slots=True)
class Observation:
    """What one event (or status) told the ledger."""

    seq_seen_before: bool = False  # same (unit, epoch, seq) under a different id: a contract breach
    gap: tuple[int, int] | None = None  # newly missing range of this stream
    filled: bool = False  # the event filled (part of) a known gap
    restart_from: int | None = None  # the unit moved to a new epoch; the previous epoch
    old_epoch: bool = False  # the event belongs to an epoch older than the unit's latest


class StreamLedger:
    """Per ``(unit, epoch)``: highest ``seq`` and missing ranges.

    ``backfill``: when a unit is seen for the first time mid-stream (``seq`` > 1), count
    1..seq-1 as missing (the unit's outbox keeps delivered events for a retention window, so
    a new console can catch up). Off, the console starts from what it first sees.
    """

    def __init__(self, *, backfill: bool = True) -> None:
        self.backfill = backfill
        self.streams: dict[tuple[str, int], Stream] = {}
        self.latest_epoch: dict[str, int] = {}

    def load(self, streams: Iterable[Stream]) -> None:
        for s in streams:
            self.streams[(s.unit, s.epoch)] = s
            self.latest_epoch[s.unit] = max(self.latest_epoch.get(s.unit, s.epoch), s.epoch)

    def stream(self, unit: str, epoch: int) -> Stream | None:
        return self.streams.get((unit, epoch))

    def observe(self, unit: str, epoch: int, seq: int) -> Observation:
        """Record an accepted event's ``seq`` (the caller already de-duplicated by id)."""
        s = self.streams.get((unit, epoch))
        restart_from: int | None = None
        latest = self.latest_epoch.get(unit)
        if s is None:
            s = self.streams[(unit, epoch)] = Stream(unit, epoch)
            if latest is None or epoch > latest:
                self.latest_epoch[unit] = epoch
                restart_from = latest
            first_contact = latest is None
            if seq > 1 and (self.backfill or not first_contact):
                s.missing.append((1, seq - 1))
                s.max_seq = seq
                return Observation(gap=(1, seq - 1), restart_from=restart_from, old_epoch=epoch < (latest or epoch))
            s.max_seq = seq
            return Observation(restart_from=restart_from, old_epoch=epoch < (latest or epoch))
        old = epoch < self.latest_epoch.get(unit, epoch)
        if s.seen(seq):
            return Observation(seq_seen_before=True, old_epoch=old)
        if seq > s.max_seq:
            gap = (s.max_seq + 1, seq - 1) if seq > s.max_seq + 1 else None
            if gap:
                s.missing.append(gap)
            s.max_seq = seq
            return Observation(gap=gap, old_epoch=old)
        s.missing = _remove(s.missing, seq)
        return Observation(filled=True, old_epoch=old)

    def expect(self, unit: str, epoch: int, last_seq: int) -> tuple[int, int] | None:
        """The unit says (retained status) it has published up to ``last_seq`` in ``epoch``.
        Returns the newly missing tail, if any (it may still be in flight: callers wait)."""
        if last_seq <= 0:
            return None
        s = self.streams.get((unit, epoch))
        if s is None:
            if unit in self.latest_epoch and epoch < self.latest_epoch[unit]:
                return None
            if unit not in self.latest_epoch and not self.backfill:
                return None
            s = self.streams[(unit, epoch)] = Stream(unit, epoch)
            self.latest_epoch[unit] = max(self.latest_epoch.get(unit, epoch), epoch)
        if last_seq <= s.max_seq:
            return None
        gap = (s.max_seq + 1, last_seq)
        s.missing.append(gap)
        s.max_seq = last_seq
        return gap


def _remove(ranges: list[tuple[int, int]], seq: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in ranges:
        if a <= seq <= b:
            if a < seq:
                out.append((a, seq - 1))
            if seq < b:
                out.append((seq + 1, b))
        else:
            out.append((a, b))
    return out
