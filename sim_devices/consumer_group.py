"""The central platform's event consumers as an MQTT shared-subscription group.

A platform scales out by running several consumers of the sites' events behind one shared
subscription, ``$share/<group>/portlane/v1/<site>/+/event/#``: the broker hands each message
to one member of the group. QoS 1 is at least once, so a member may still see an event twice
(a unit re-sends what it never saw acknowledged; a replay re-sends on purpose), and an event
can be missed (a member disconnects with messages in flight; a broker loses its queue). So:

* **processed once** — every member claims an event in the group's shared ledger (one
  database: SQLite here, the platform's own database in production) *in the same transaction*
  as the event's effect: ``INSERT OR IGNORE`` of its ``id`` (``{site}/{unit}/{epoch}/{seq}``);
  only the member whose insert took effect runs the handler. A crash before the commit leaves
  neither the claim nor the effect, so a re-delivery is processed then;
* **gaps → replay** — a watcher (``GapWatcher``) looks at the ledger per ``(unit, epoch)``
  and at the units' retained status (``last_seq``); a seq still missing after ``GAP_GRACE_S``
  (members process concurrently, so a later seq can land first) is asked for again with the
  signed ``replay_events`` command of the contract (``docs/asyncapi.yaml``; ``request_replay(unit, from_seq, to_seq)``,
  e.g. ``portlane.edge.platform.CentralPlatform.request_replay``). A new epoch is a stream restart, not a gap.

The consumers speak MQTT 5 (aiomqtt); nothing here imports ``portlane.edge``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt

__all__ = ["GAP_GRACE_S", "GapWatcher", "GroupConsumer", "Ledger", "group_topic"]

log = logging.getLogger(__name__)

#: A missing seq is a gap only once it has stayed missing this long: the members of a group
#: process concurrently, so seq n+1 can be processed a moment before seq n.
GAP_GRACE_S = 1.0
#: A replay asked for and not yet seen is asked for again after this long.
REPLAY_RETRY_S = 10.0
#: SQLite waits this long for another member's transaction on the shared ledger.
LEDGER_BUSY_MS = 5000
#: Back-off between broker reconnections.
RECONNECT_S = 0.5

Handler = Callable[[sqlite3.Connection, dict[str, Any]], None]
ReplayRequest = Callable[[str, int, int | None], Awaitable[Any]]


def group_topic(group: str, site: str) -> str:
    return f"$share/{group}/portlane/v1/{site}/+/event/#"


def _mqtt_endpoint(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("mqtt://").rstrip("/").partition(":")
    return host, int(port or 1883)


class Ledger:
    """The group's shared record of processed events (one connection per member)."""

    SCHEMA = """
        CREATE TABLE IF NOT EXISTS processed (
            id TEXT PRIMARY KEY, unit TEXT NOT NULL, epoch INTEGER NOT NULL, seq INTEGER NOT NULL,
            consumer TEXT NOT NULL, at REAL NOT NULL);
        CREATE INDEX IF NOT EXISTS processed_stream ON processed (unit, epoch, seq);
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, timeout=LEDGER_BUSY_MS / 1000)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(self.SCHEMA)

    def process(self, env: dict[str, Any], unit: str, consumer: str, handler: Handler | None) -> bool:
        """Claim ``env`` and run ``handler`` in one transaction; False when it was processed before."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            cur = db.execute(
                "INSERT OR IGNORE INTO processed (id, unit, epoch, seq, consumer, at) VALUES (?, ?, ?, ?, ?, ?)",
                (str(env["id"]), unit, int(env.get("epoch", 0)), int(env["seq"]), consumer, time.time()),
            )
            first = cur.rowcount == 1
            if first and handler is not None:
                handler(db, env)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return first

    def streams(self) -> dict[tuple[str, int], tuple[int, int, int]]:
        """(unit, epoch) -> (min seq, max seq, count) of what was processed."""
        rows = self.db.execute("SELECT unit, epoch, MIN(seq), MAX(seq), COUNT(*) FROM processed GROUP BY unit, epoch")
        return {(u, e): (lo, hi, n) for u, e, lo, hi, n in rows}

    def missing(self, unit: str, epoch: int, upto: int) -> list[int]:
        have = {s for (s,) in self.db.execute("SELECT seq FROM processed WHERE unit=? AND epoch=?", (unit, epoch))}
        return [s for s in range(1, upto + 1) if s not in have]

    def close(self) -> None:
        self.db.close()


class GroupConsumer:
    """One member of the shared-subscription group."""

    def __init__(
        self, url: str, site: str, *, group: str, name: str, ledger: Path, handler: Handler | None = None
    ) -> None:
        self.url, self.site, self.group, self.name = url, site, group, name
        self.ledger_path = ledger
        self.handler = handler
        self.received = 0
        self.processed = 0
        self.duplicates = 0
        self.malformed = 0
        self._subscribed = asyncio.Event()

    async def wait_subscribed(self) -> None:
        await self._subscribed.wait()

    async def run(self) -> None:
        host, port = _mqtt_endpoint(self.url)
        ledger = Ledger(self.ledger_path)
        try:
            while True:
                try:
                    async with aiomqtt.Client(
                        host, port, identifier=self.name, protocol=aiomqtt.ProtocolVersion.V5
                    ) as client:
                        await client.subscribe(group_topic(self.group, self.site), qos=1)
                        self._subscribed.set()
                        async for msg in client.messages:
                            self._on_message(ledger, str(msg.topic), bytes(msg.payload))
                except aiomqtt.MqttError as exc:
                    self._subscribed.clear()
                    log.debug("%s: broker connection lost (%s)", self.name, exc)
                    await asyncio.sleep(RECONNECT_S)
        finally:
            ledger.close()

    def _on_message(self, ledger: Ledger, topic: str, payload: bytes) -> None:
        self.received += 1
        try:
            env = json.loads(payload)
            unit = topic.split("/")[3]
            first = ledger.process(env, unit, self.name, self.handler)
        except (ValueError, KeyError, TypeError, IndexError):
            self.malformed += 1
            return
        if first:
            self.processed += 1
        else:
            self.duplicates += 1


class GapWatcher:
    """Finds the group's gaps per (unit, epoch) and asks the unit to replay them."""

    def __init__(
        self, url: str, site: str, *, ledger: Path, request_replay: ReplayRequest, name: str = "platform-gaps"
    ) -> None:
        self.url, self.site, self.name = url, site, name
        self.ledger_path = ledger
        self.request_replay = request_replay
        self.last_seq: dict[tuple[str, int], int] = {}  # from the units' retained status
        self.requested: list[tuple[str, int, int]] = []  # (unit, from_seq, to_seq), in order
        self._seen_missing: dict[tuple[str, int, int], float] = {}  # (unit, epoch, seq) -> first seen
        self._asked: dict[tuple[str, int, int], float] = {}
        self._subscribed = asyncio.Event()

    async def wait_subscribed(self) -> None:
        await self._subscribed.wait()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._status(), name=f"{self.name}-status")
            tg.create_task(self._check_loop(), name=f"{self.name}-check")

    async def _status(self) -> None:
        host, port = _mqtt_endpoint(self.url)
        while True:
            try:
                async with aiomqtt.Client(
                    host, port, identifier=self.name, protocol=aiomqtt.ProtocolVersion.V5
                ) as client:
                    await client.subscribe(f"portlane/v1/{self.site}/+/status", qos=1)
                    self._subscribed.set()
                    async for msg in client.messages:
                        with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
                            st = json.loads(bytes(msg.payload))
                            unit = str(msg.topic).split("/")[3]
                            key = (unit, int(st.get("epoch", 0)))
                            self.last_seq[key] = max(self.last_seq.get(key, 0), int(st["last_seq"]))
            except aiomqtt.MqttError as exc:
                self._subscribed.clear()
                log.debug("%s: broker connection lost (%s)", self.name, exc)
                await asyncio.sleep(RECONNECT_S)

    async def _check_loop(self) -> None:
        ledger = Ledger(self.ledger_path)
        try:
            while True:
                await self.check(ledger)
                await asyncio.sleep(GAP_GRACE_S / 2)  # the watcher's polling period
        finally:
            ledger.close()

    async def check(self, ledger: Ledger) -> None:
        now = time.monotonic()
        streams = ledger.streams()
        upto = {k: hi for k, (_, hi, _) in streams.items()}
        for k, last in self.last_seq.items():
            upto[k] = max(upto.get(k, 0), last)
        missing_now: set[tuple[str, int, int]] = set()
        for (unit, epoch), hi in upto.items():
            for seq in ledger.missing(unit, epoch, hi):
                missing_now.add((unit, epoch, seq))
        self._seen_missing = {k: self._seen_missing.get(k, now) for k in missing_now}
        due = sorted(
            k
            for k, t0 in self._seen_missing.items()
            if now - t0 >= GAP_GRACE_S and now - self._asked.get(k, -1e9) >= REPLAY_RETRY_S
        )
        for unit, epoch, lo, hi in _ranges(due):
            for seq in range(lo, hi + 1):
                self._asked[(unit, epoch, seq)] = now
            self.requested.append((unit, lo, hi))
            log.info("%s: %s epoch %s missing %s..%s: asking for a replay", self.name, unit, epoch, lo, hi)
            await self.request_replay(unit, lo, hi)


def _ranges(keys: list[tuple[str, int, int]]) -> list[tuple[str, int, int, int]]:
    """Sorted (unit, epoch, seq) -> runs (unit, epoch, first, last)."""
    out: list[tuple[str, int, int, int]] = []
    for unit, epoch, seq in keys:
        if out and out[-1][:2] == (unit, epoch) and out[-1][3] == seq - 1:
            out[-1] = (unit, epoch, out[-1][2], seq)
        else:
            out.append((unit, epoch, seq, seq))
    return out
