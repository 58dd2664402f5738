"""Independent subscribers that check delivery, per unit.

* :class:`DemoObserver` — ``portlane demo``'s observer: what a platform gets of the run, through
  the consumer library (``portlane.edge.client``): every event verified against the site's keys,
  once; what it missed (a broker restart, a reconnect) it asks the unit to replay with its own
  key (the site's ``observer`` client); ``lost`` is what is still missing after the replays — the
  gaps the library gave up on, and what never came by the end. The demo's received / lost /
  duplicate counts come from here, not from the lanes' own counters.
* :class:`EventObserver` — a raw counter of what arrived on the broker (no verification, no
  replays), for the delivery tests and the benchmarks of the wire: per unit (lane or scanner) and
  stream epoch every ``seq`` seen, duplicates (same ``id`` again), and order violations (a new
  ``seq`` lower than one already seen); ``lost`` counts against the last seq each unit says it
  published (its retained status carries ``last_seq`` and ``epoch``), so it means "not delivered
  to this subscriber", which only equals lost while nothing ever asks for a replay.

A unit whose events arrive with a new ``epoch`` restarted its stream (its outbox store was
recreated): that is counted in ``restarts``, not as a gap.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from portlane.edge.client import Output, SiteClient, SiteEvent
from portlane.edge.client.consumer import GAP_GRACE_S
from portlane.edge.config import MqttProtocol, Site
from portlane.edge.contract.events import UnitStatus
from portlane.edge.contract.topics import Topics
from portlane.edge.delivery.mqtt import Message, MqttLink

__all__ = ["OBSERVER", "DemoObserver", "EventObserver", "UnitLedger"]

log = logging.getLogger(__name__)

#: The demo's observer is the site's ``clients`` entry of this id (role console, ``replay_events``):
#: its key asks for what it missed; under ``--secure`` its certificate is ``units/observer``.
OBSERVER = "observer"


class DemoObserver:
    """What a platform gets of a run, through the consumer library (see the module docstring).
    ``unit``: its ``clients`` entry in the site file (key, TLS files); ``url``/``protocol``: the
    broker (default: the site file's)."""

    def __init__(
        self,
        site: Site,
        *,
        unit: str = OBSERVER,
        url: str | None = None,
        protocol: MqttProtocol | None = None,
        gap_grace_s: float = GAP_GRACE_S,
    ) -> None:
        self.client = SiteClient.from_site(
            site, unit=unit, url=url, protocol=protocol, backfill=True, gap_grace_s=gap_grace_s, on_output=self._on
        )
        self.events: list[dict[str, Any]] = []  # verified envelopes, each once, in arrival order
        self.restarts = 0  # a unit came back with a new stream epoch
        self._epochs: dict[str, int] = {}
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._changed = asyncio.Event()

    @property
    def link(self) -> MqttLink:
        return self.client.link

    async def run(self) -> None:
        """Stay connected and ask for replays until cancelled."""
        await self.client.run()

    def on_event(self, cb: Callable[[dict[str, Any]], None]) -> None:
        self._listeners.append(cb)

    @property
    def received(self) -> int:
        """Verified events delivered to it, repeats included (the units' retained status too)."""
        return self.client.stats.events + self.client.stats.duplicates

    @property
    def duplicates(self) -> int:
        return self.client.stats.duplicates

    @property
    def out_of_order(self) -> int:
        """Events that came after newer ones (a redelivery, a replay that filled a gap)."""
        return self.client.stats.late

    def max_seq(self, unit: str) -> int:
        """The highest seq of ``unit``'s newest stream it has (or knows of, from a signed status)."""
        streams = [v for v in self.client.streams() if v.unit == unit]
        return max(streams, key=lambda v: v.epoch).max_seq if streams else 0

    def complete(self, expected_last_seq: dict[str, int]) -> bool:
        """It has every event up to each unit's expected last seq, nothing missing."""
        return self.client.missing == 0 and all(self.max_seq(u) >= s for u, s in expected_last_seq.items() if s)

    def lost(self, expected_last_seq: dict[str, int] | None = None) -> int:
        """Events lost: the gaps the library gave up on after its replays, what is still missing
        now, and what never came of each unit's ``expected_last_seq`` (its outbox's last seq)."""
        missing = sum(v.missing_count for v in self.client.streams())
        beyond = sum(max(0, s - self.max_seq(u)) for u, s in (expected_last_seq or {}).items())
        return self.client.stats.lost + missing + beyond

    def lost_by_unit(self, expected_last_seq: dict[str, int] | None = None) -> dict[str, dict[str, int]]:
        """Where :meth:`lost` comes from, per unit that lost any: ``given_up`` (gaps of its
        streams the library gave up on), ``missing`` (asked for, not come yet) and ``never_came``
        (after the last it has)."""
        out: dict[str, dict[str, int]] = defaultdict(lambda: {"given_up": 0, "missing": 0, "never_came": 0})
        for v in self.client.streams():
            if v.lost:
                out[v.unit]["given_up"] += v.lost
            if v.missing_count:
                out[v.unit]["missing"] += v.missing_count
        for u, s in (expected_last_seq or {}).items():
            if s > self.max_seq(u):
                out[u]["never_came"] += s - self.max_seq(u)
        return dict(out)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Until ``predicate()`` holds (checked on every output and tick of the library)."""
        await self.client.wait_for(predicate, timeout)

    def _on(self, out: Output) -> None:
        if not isinstance(out, SiteEvent):
            return
        known = self._epochs.get(out.unit)
        if known is not None and out.epoch > known:
            self.restarts += 1
        if known is None or out.epoch > known:
            self._epochs[out.unit] = out.epoch
        env = out.envelope.model_dump(mode="json")
        self.events.append(env)
        for cb in self._listeners:
            cb(env)


@dataclass
class UnitLedger:
    epoch: int = 0
    seqs: set[int] = field(default_factory=set)
    ids: dict[int, str] = field(default_factory=dict)
    max_seq: int = 0
    received: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    mismatched_ids: int = 0
    last_status: dict[str, Any] = field(default_factory=dict)

    def missing(self, upto: int | None = None) -> list[int]:
        top = self.max_seq if upto is None else upto
        return [s for s in range(1, top + 1) if s not in self.seqs]

    def gaps(self, upto: int | None = None) -> list[tuple[int, int]]:
        """Missing seqs as inclusive ranges, e.g. [(12, 190)]."""
        out: list[tuple[int, int]] = []
        for s in self.missing(upto):
            if out and out[-1][1] == s - 1:
                out[-1] = (out[-1][0], s)
            else:
                out.append((s, s))
        return out


class EventObserver:
    def __init__(
        self,
        url: str,
        site: str,
        *,
        client_id: str = "portlane-observer",
        protocol: MqttProtocol = "auto",
        persistent_session: bool = False,
        tls: dict[str, str] | None = None,
    ) -> None:
        self.site = site
        self.units: dict[str, UnitLedger] = defaultdict(UnitLedger)
        self.streams: dict[tuple[str, int], UnitLedger] = {}
        self.restarts = 0  # a unit came back with a new stream epoch
        self.events: list[dict[str, Any]] = []
        self.malformed = 0
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._changed = asyncio.Event()
        self.link = MqttLink(
            url,
            client_id=client_id,
            protocol=protocol,
            subscriptions=[Topics.all_events(site), Topics.all_status(site)],
            on_message=self._on_message,
            persistent_session=persistent_session,
            # ca_file / cert_file / key_file for an mqtts:// broker
            ca_file=(tls or {}).get("ca_file"),
            cert_file=(tls or {}).get("cert_file"),
            key_file=(tls or {}).get("key_file"),
        )

    def on_event(self, cb: Callable[[dict[str, Any]], None]) -> None:
        self._listeners.append(cb)

    @property
    def received(self) -> int:
        return sum(u.received for u in self.streams.values())

    @property
    def duplicates(self) -> int:
        return sum(u.duplicates for u in self.streams.values())

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait until ``predicate()`` holds (checked on every message); TimeoutError after
        ``timeout`` seconds (the deadline is part of every call: a test must never hang)."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def gaps(self, unit: str) -> list[tuple[int, int]]:
        """Seq ranges of ``unit``'s current epoch not received, up to the last seq it says it
        published (retained status) or the highest seen."""
        led = self.units[unit]
        st = led.last_status
        top = int(st.get("last_seq", 0)) if int(st.get("epoch", led.epoch) or 0) == led.epoch else 0
        return led.gaps(max(top, led.max_seq))

    def lost(self, expected_last_seq: dict[str, int] | None = None) -> int:
        total = 0
        for unit, led in self.units.items():
            upto = (expected_last_seq or {}).get(unit, led.last_status.get("last_seq", led.max_seq))
            total += len(led.missing(max(upto, led.max_seq)))
        for unit, last in (expected_last_seq or {}).items():
            if unit not in self.units:
                total += last
        return total

    def _on_message(self, msg: Message) -> None:
        try:
            _site, unit, kind, _rest = Topics.parse(msg.topic)
            body = json.loads(msg.payload)
        except (ValueError, json.JSONDecodeError):
            self.malformed += 1
            return
        if kind == "status":
            self.units[unit].last_status = UnitStatus.fields_of(body) or {}
        elif kind == "event":
            seq = int(body.get("seq", 0))
            led = self._ledger(unit, int(body.get("epoch", 0) or 0))
            led.received += 1
            if seq in led.seqs:
                led.duplicates += 1
                if led.ids.get(seq) != body.get("id"):
                    led.mismatched_ids += 1
            else:
                if seq < led.max_seq:
                    led.out_of_order += 1
                led.seqs.add(seq)
                led.ids[seq] = body.get("id", "")
                led.max_seq = max(led.max_seq, seq)
                self.events.append(body)
                for cb in self._listeners:
                    cb(body)
        self._changed.set()

    def _ledger(self, unit: str, epoch: int) -> UnitLedger:
        """The ledger of (unit, epoch); a newer epoch becomes the unit's current ledger."""
        known = self.streams.get((unit, epoch))
        if known is not None:
            return known
        current = self.units.get(unit)
        led = UnitLedger(epoch=epoch)
        self.streams[(unit, epoch)] = led
        if current is None or (current.epoch == 0 and not current.received):
            if current is not None:
                led.last_status = current.last_status
            self.units[unit] = led
        elif epoch > current.epoch:
            self.restarts += 1
            led.last_status = current.last_status
            self.units[unit] = led
        return led
