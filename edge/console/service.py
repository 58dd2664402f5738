"""ConsoleService: the console daemon as one async context manager.

::

    async with ConsoleService(site=site, db=path, broker_url=url, http=("127.0.0.1", 8080)) as c:
        await stop.wait()            # c.url is where the page is served

Inside: one :class:`~portlane.edge.client.SiteClient` — the consumer library, the one home for
verification, de-duplication, gaps and replays — whose outputs (``on_output``) an ingest task
takes in batches and writes each batch in one transaction (verified event → stored once → live
picture and alarms; a unit's signed status → its view; the library's anomalies and gaps given up
→ site alarms), a ticker (stuck passages; what the library refused and what is still missing →
site alarms; the ledger saved), and the web server.

Only what the library verified is stored as fact: unsigned, forged and malformed input is counted
and shown as a site alarm (``findings.py``), never stored. A unit is online, offline or closed
only on its signed ``unit.status``; the broker's last will makes it "unconfirmed offline".

The library's ledger is saved with each batch (``streams`` table) and put back at start
(``SiteClient.restore``): a restarted console asks for what it was missing and goes on, instead
of fetching every stream from seq 1 again.

On exit the service first *drains*: it waits (at most :data:`DRAIN_TIMEOUT_S`) until it has
every event up to the ``last_seq`` each unit's signed status announced, so a run that ends
(``portlane demo``) leaves a complete database behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from portlane.edge.client import (
    Anomaly,
    CommandAnswered,
    ConsumerStats,
    GapAbandoned,
    Output,
    SiteClient,
    SiteEvent,
    StreamView,
    UnitChanged,
)
from portlane.edge.client.consumer import GAP_GRACE_S
from portlane.edge.config import MqttProtocol, Site
from portlane.edge.contract.envelope import Envelope
from portlane.edge.delivery.mqtt import MqttLink
from portlane.edge.trust.audit import AuditLog
from portlane.edge.trust.commands import CommandSigner

from .auth import User, load_users
from .effects import Completed, Effect, apply_effects
from .findings import GAP_ALARM_AFTER_MS, Findings
from .live import SiteLive, live_event
from .picture import LiveEvent
from .store import Store, time_ms, unit_record, unit_view

__all__ = ["ConsoleService", "ConsoleStats"]

log = logging.getLogger(__name__)

#: Live picture rebuilt from the database at start: a lane's current passage is minutes old.
REBUILD_WINDOW_MS = 6 * 3600 * 1000
#: Ticker period: stuck detection and the findings need no finer resolution.
TICK_S = 1.0
#: Largest batch written in one transaction.
BATCH = 500
#: After the first output of a batch, what else arrives within this long joins it: one
#: transaction per burst instead of one per event (a commit costs more than ten events' writes).
COALESCE_S = 0.01
#: How long ``__aexit__`` waits for the events each unit's status announced.
DRAIN_TIMEOUT_S = 5.0


@dataclass
class ConsoleStats:
    """What the console did with what the library handed it; ``as_dict`` adds the library's own
    counters (messages, duplicates, refused by reason, replays, lost)."""

    library: ConsumerStats
    findings: Findings
    stored: int = 0
    already_stored: int = 0  # verified events the database had (a console restart)
    batches: int = 0

    def as_dict(self) -> dict[str, Any]:
        lib = self.library
        return {
            "received": lib.messages,
            "stored": self.stored,
            "duplicates": lib.duplicates + self.already_stored,
            "refused": lib.refused_total,
            "refused_by_reason": dict(sorted(lib.refused.items())),
            "anomalies": lib.anomalies,
            "replays_requested": lib.replays_requested,
            "replay_refused": self.findings.replay_refused,
            "late": lib.late,
            "lost": lib.lost,
            "unconfirmed_offline": lib.wills,
            "batches": self.batches,
        }


class ConsoleService:
    """``client_id``: the console's ``clients[]`` entry in the site file (its broker identity,
    TLS files, and the key it signs ``replay_events`` with — ``signer`` replaces that key).
    ``link_options`` replaces the broker credentials read from the site file."""

    def __init__(
        self,
        *,
        site: Site,
        db: str | Path,
        broker_url: str | None = None,
        broker_protocol: MqttProtocol | None = None,
        http: tuple[str, int] | None = ("127.0.0.1", 8080),
        users: Mapping[str, User] | str | Path | None = None,
        signer: CommandSigner | None = None,
        stuck_after_s: Mapping[str, float] | None = None,
        low_confidence: float | None = None,
        backfill: bool = True,
        cookie_secure: bool = False,
        client_id: str = "console",
        connect_timeout_s: float | None = None,
        audit_log: str | Path | None = None,
        persistent_session: bool = True,
        link_options: Mapping[str, Any] | None = None,
        gap_grace_s: float = GAP_GRACE_S,
        gap_alarm_after_s: float = GAP_ALARM_AFTER_MS / 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.site = site
        self.site_id = site.site.id
        self.db_path = Path(db)
        #: Failed sign-ins (aggregated): a hash-chained audit log beside the database by default.
        self.audit_path = Path(audit_log) if audit_log is not None else self.db_path.with_name("console-audit.jsonl")
        self.audit: AuditLog | None = None
        self.http = http
        self.connect_timeout_s = connect_timeout_s
        self.cookie_secure = cookie_secure
        self.clock = clock
        self.users: Mapping[str, User] = (
            load_users(users) if isinstance(users, str | Path) else dict(users) if users is not None else {}
        )
        self.live = SiteLive(
            site, stuck_after_s=stuck_after_s, **({"low_confidence": low_confidence} if low_confidence else {})
        )
        self._outputs: asyncio.Queue[Output] = asyncio.Queue()
        self.client = SiteClient.from_site(
            site,
            unit=client_id,
            **({"signer": signer} if signer is not None else {}),
            url=broker_url,
            protocol=broker_protocol,
            link_options=link_options,
            backfill=backfill,
            gap_grace_s=gap_grace_s,
            persistent_session=persistent_session,
            on_output=self._outputs.put_nowait,
        )
        self.findings = Findings(
            can_ask=self.client.signer is not None, gap_alarm_after_ms=int(gap_alarm_after_s * 1000)
        )
        self._stats = ConsoleStats(self.client.stats, self.findings)
        self.store: Store | None = None
        self._saved: dict[tuple[str, int], StreamView] = {}  # the ledger as last written
        self._busy = False  # a batch is being written
        self._changed = asyncio.Event()
        self.version = 0
        self.closing = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._runner: Any = None
        self.url: str | None = None
        self.heartbeat = 0

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Self:
        if self._tg is not None:
            raise RuntimeError("ConsoleService is already running")
        self.store = Store(self.db_path)
        self.audit = AuditLog(self.audit_path)
        self.store.set_meta(site=self.site_id, site_name=self.live.site_name, timezone=str(self.live.tz))
        self._load()
        tg = asyncio.TaskGroup()
        await tg.__aenter__()
        self._tg = tg
        try:
            await self.client.__aenter__()
            self._tasks = [
                tg.create_task(self._ingest_loop(), name="console:ingest"),
                tg.create_task(self._ticker(), name="console:ticker"),
            ]
            if self.http is not None:
                from .web import start_web

                self._runner, self.url = await start_web(self, *self.http)
            if self.connect_timeout_s is not None:
                # Subscribed before the caller goes on (the demo starts traffic next).
                async with asyncio.timeout(self.connect_timeout_s):
                    await self.client.wait_subscribed()
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_TIMEOUT_S):
                    await self.wait_for(self.complete)
        await self._shutdown()

    async def _shutdown(self) -> None:
        self.closing.set()
        self.notify_changed()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.client.aclose()
        for t in self._tasks:
            t.cancel()
        tg, self._tg = self._tg, None
        if tg is not None:
            await tg.__aexit__(None, None, None)
        if self.store is not None:
            with self.store.transaction():
                self._save_streams()
            self.store.close()
            self.store = None
        if self.audit is not None:
            self.audit.close()
            self.audit = None

    def db(self) -> Store:
        if self.store is None:
            raise RuntimeError("ConsoleService is not running (use it as an async context manager)")
        return self.store

    def _load(self) -> None:
        """The library's ledger, the units' views and the live picture from the database (a restart)."""
        st = self.db()
        streams = st.load_streams()
        self.client.restore(streams)
        self._saved = {(v.unit, v.epoch): v for v in self.client.streams()}
        self.findings.load(st.active_alarm_keys(), streams)
        now = self.now_ms()
        # Replay recent events through the live picture, effects discarded: alarms are in the
        # database already. Completed counts come from the passages table.
        for unit, env in st.recent_events(now - REBUILD_WINDOW_MS):
            with contextlib.suppress(ValueError):
                e = Envelope.model_validate(env)
                self.live.apply(LiveEvent(e.id, unit, e.event_type, time_ms(e.time), e.audience, e.data))
        counts = st.completed_per_lane()
        for lane_id, lane in self.live.lanes.items():
            lane.completed = counts.get(lane_id, 0)
        for lane_id, by_basis in st.released_by_basis().items():
            if lane_id in self.live.lanes:
                self.live.lanes[lane_id].released_by = by_basis
        for unit, record in st.units().items():
            view = unit_view(unit, record)
            if view is not None:
                self.live.on_unit(view, now)
        units = [*(lane.id for lane in self.site.lanes), *(s.id for s in self.site.scanners)]
        with st.transaction():
            authority = self.client.consumer.authority
            unkeyed = [u for u in units if not authority.unit_key_ids(u)]
            apply_effects(st, self.findings.unkeyed(unkeyed, now))

    # ------------------------------------------------------------------ public helpers
    @property
    def link(self) -> MqttLink:
        return self.client.link

    @property
    def connected(self) -> bool:
        """Whether the console's broker connection is up."""
        return self.client.link.connected

    @property
    def stats(self) -> ConsoleStats:
        return self._stats

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def notify_changed(self) -> None:
        """The picture changed: wake the page's event streams (and ``wait_for`` callers)."""
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_changed(self, version: int) -> int:
        """Wait until the picture changed after ``version``; returns the new version."""
        while self.version == version and not self.closing.is_set():
            await self._changed.wait()
        return self.version

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds (checked after every change). Callers set a deadline."""
        while not predicate():
            await self._changed.wait()

    def complete(self) -> bool:
        """Nothing is missing of what the units' signed statuses announced, and nothing is queued."""
        return self._outputs.empty() and not self._busy and self.client.missing == 0

    # ------------------------------------------------------------------ ingest
    async def _ingest_loop(self) -> None:
        while True:
            batch = [await self._outputs.get()]
            self._busy = True  # a batch in hand: not complete() until it is written
            try:
                if self._outputs.qsize() < BATCH:
                    await asyncio.sleep(COALESCE_S)
                while len(batch) < BATCH and not self._outputs.empty():
                    batch.append(self._outputs.get_nowait())
                self.ingest(batch)
            finally:
                self._busy = False
            self.notify_changed()

    def ingest(self, batch: list[Output]) -> None:
        """Write what the library handed out, in one transaction (public for benchmarks and tests)."""
        st = self.db()
        now = self.now_ms()
        with st.transaction():
            for out in batch:
                apply_effects(st, self._output(st, out, now))
            self._save_streams()
        self._stats.batches += 1

    def _output(self, st: Store, out: Output, now: int) -> list[Effect]:
        match out:
            case SiteEvent():
                effects = self.findings.event(out, now)
                if not st.insert_event(out, received_ms=now):
                    self._stats.already_stored += 1
                    return effects
                self._stats.stored += 1
                ev = live_event(out)
                if self.client.consumer.book.latest_epoch(out.unit) not in (None, out.epoch):
                    # An older epoch's late event: recorded, and its passage counted, nothing more.
                    return effects + [e for e in self.live.apply(ev) if isinstance(e, Completed)]
                return effects + self.live.apply(ev)
            case UnitChanged(view=view):
                st.set_unit(view.unit, unit_record(view), now)
                return self.live.on_unit(view, now)
            case Anomaly() | GapAbandoned() | CommandAnswered():
                return self.findings.output(out, now)
        return []

    def _save_streams(self) -> None:
        changed = [v for v in self.client.streams() if self._saved.get((v.unit, v.epoch)) != v]
        if changed:
            self.db().save_streams(changed)
            self._saved.update({(v.unit, v.epoch): v for v in changed})

    # ------------------------------------------------------------------ time
    async def _ticker(self) -> None:
        while not self.closing.is_set():
            self.heartbeat += 1
            self.tick()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_S):
                    await self.closing.wait()

    def tick(self) -> None:
        st = self.db()
        now = self.now_ms()
        effects = self.live.tick(now)
        refusals, refused = self.findings.refusals(self.client.stats, self.client.consumer.recent_refusals, now)
        effects += refusals
        effects += self.findings.gaps(self.client.streams(), self._attempts, now)
        with st.transaction():
            for r in refused:
                st.record_rejected(topic=r.topic, reason=r.reason, detail="", payload=b"", received_ms=now)
            apply_effects(st, effects)
            self._save_streams()
        if effects:
            self.notify_changed()

    def _attempts(self, unit: str, epoch: int) -> int:
        s = self.client.consumer.book.get(unit, epoch)
        return s.attempts if s is not None else 0

    # ------------------------------------------------------------------ views for the web layer
    def alarm_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for a in self.db().alarms(active_only=True):
            if a.unit:
                counts[a.unit] = counts.get(a.unit, 0) + 1
        return counts

    def snapshot(self) -> dict[str, Any]:
        snap = self.live.snapshot(self.now_ms(), self.alarm_counts())
        snap["console"] = {
            "connected": self.connected,
            "stats": self._stats.as_dict(),
            "missing": {f"{v.unit}/{v.epoch}": v.missing_count for v in self.client.streams() if v.missing},
        }
        return snap
