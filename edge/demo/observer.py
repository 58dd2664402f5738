"""An independent subscriber that checks delivery: what arrived on the broker, per unit.

Used by ``portlane demo`` (its received / lost / duplicate counts come from here, not from
the lanes' own counters) and by the delivery tests. It records, per unit (lane or scanner),
every ``seq`` seen, duplicates (same ``id`` again), and order violations (a new ``seq`` lower
than one already seen). ``lost`` is computed against the last seq each unit says it
published (its retained status carries ``last_seq``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from portlane.edge.contract.topics import Topics
from portlane.edge.delivery.mqtt import Message, MqttLink

__all__ = ["EventObserver", "UnitLedger"]

log = logging.getLogger(__name__)


@dataclass
class UnitLedger:
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


class EventObserver:
    def __init__(
        self,
        url: str,
        site: str,
        *,
        client_id: str = "portlane-observer",
        protocol: str = "auto",
        persistent_session: bool = False,
        tls: dict[str, str] | None = None,
    ) -> None:
        self.site = site
        self.units: dict[str, UnitLedger] = defaultdict(UnitLedger)
        self.events: list[dict[str, Any]] = []
        self.malformed = 0
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._changed = asyncio.Event()
        self.link = MqttLink(
            url,
            client_id=client_id,
            protocol=protocol,  # type: ignore[arg-type]
            subscriptions=[Topics.all_events(site), f"portlane/v1/{site}/+/status"],
            on_message=self._on_message,
            persistent_session=persistent_session,
            **(tls or {}),  # ca_file / cert_file / key_file for an mqtts:// broker
        )

    def on_event(self, cb: Callable[[dict[str, Any]], None]) -> None:
        self._listeners.append(cb)

    @property
    def received(self) -> int:
        return sum(u.received for u in self.units.values())

    @property
    def duplicates(self) -> int:
        return sum(u.duplicates for u in self.units.values())

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

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
        led = self.units[unit]
        if kind == "status":
            led.last_status = body
        elif kind == "event":
            seq = int(body.get("seq", 0))
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
