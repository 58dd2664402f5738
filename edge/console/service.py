"""ConsoleService: the console daemon as one async context manager.

::

    async with ConsoleService(site=site, db=path, broker_url=url, http=("127.0.0.1", 8080)) as c:
        await stop.wait()            # c.url is where the page is served

Inside: one :class:`MqttLink` (persistent session, subscribed to the site's events, retained
statuses and command responses), an ingest task that takes messages in batches and writes
each batch in one transaction (parse → verify signature → de-duplicate by id → ledger →
live picture and alarms), a ticker (stuck passages, replay requests), and the web server.

On exit the service first *drains*: it waits (at most :data:`DRAIN_TIMEOUT_S`) until it has
every event up to the ``last_seq`` each unit's retained status announced, so a run that
ends (``portlane demo``) leaves a complete database behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from portlane.edge.config import MqttProtocol, Site
from portlane.edge.contract.topics import Topics
from portlane.edge.delivery.mqtt import Message, MqttLink
from portlane.edge.errors import EventRejectedError
from portlane.edge.trust.audit import AuditLog
from portlane.edge.trust.keys import broker_credentials

from .auth import User, load_users
from .effects import Completed, Effect, Raise, apply_effects
from .gaps import GapRecovery
from .ingest import Observation, StreamLedger, check_payload, parse_event, parse_status
from .live import SiteLive
from .replay import ReplayRequester
from .signatures import EventVerifier
from .store import Store

__all__ = ["ConsoleService", "ConsoleStats"]

log = logging.getLogger(__name__)

#: Live picture rebuilt from the database at start: a lane's current passage is minutes old.
REBUILD_WINDOW_MS = 6 * 3600 * 1000
#: Ticker period: stuck detection and replay scheduling need no finer resolution.
TICK_S = 1.0
#: Largest batch written in one transaction.
BATCH = 500
#: How long ``__aexit__`` waits for the events each unit's status announced.
DRAIN_TIMEOUT_S = 5.0


@dataclass
class ConsoleStats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    signed: int = 0
    gaps_detected: int = 0
    replays_requested: int = 0
    replay_refused: int = 0
    restarts: int = 0
    contract_problems: int = 0
    batches: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ConsoleService:
    def __init__(
        self,
        *,
        site: Site,
        db: str | Path,
        broker_url: str | None = None,
        broker_protocol: MqttProtocol | None = None,
        http: tuple[str, int] | None = ("127.0.0.1", 8080),
        users: Mapping[str, User] | str | Path | None = None,
        replay: ReplayRequester | None = None,
        verifier: EventVerifier | None = None,
        stuck_after_s: Mapping[str, float] | None = None,
        low_confidence: float | None = None,
        backfill: bool = True,
        cookie_secure: bool = False,
        client_id: str = "console",
        connect_timeout_s: float | None = None,
        audit_log: str | Path | None = None,
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
        self.replay = replay
        self.verifier = verifier or EventVerifier.for_site(site)
        self.live = SiteLive(
            site, stuck_after_s=stuck_after_s, **({"low_confidence": low_confidence} if low_confidence else {})
        )
        self.ledger = StreamLedger(backfill=backfill)
        self.gaps = GapRecovery(self.ledger, replay)
        self.stats = ConsoleStats()
        self.store: Store | None = None
        self._statuses: dict[str, dict[str, Any]] = {}
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._changed = asyncio.Event()
        self.version = 0
        self.closing = asyncio.Event()
        b = site.broker
        url = broker_url or b.url
        self.link = MqttLink(
            url,
            client_id=f"portlane-{self.site_id}-{client_id}",
            protocol=broker_protocol or b.protocol,
            **broker_credentials(b, unit=client_id, url=url).link_kwargs(),  # TLS files, password file
            keepalive=b.keepalive_s,
            subscriptions=[
                Topics.all_events(self.site_id),
                Topics.all_status(self.site_id),
                Topics.all_responses(self.site_id),
            ],
            on_message=self._inbox.put_nowait,
            persistent_session=True,
        )
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
            self._tasks = [
                tg.create_task(self.link.run(), name="console:mqtt"),
                tg.create_task(self._ingest_loop(), name="console:ingest"),
                tg.create_task(self._ticker(), name="console:ticker"),
            ]
            if self.http is not None:
                from .web import start_web

                self._runner, self.url = await start_web(self, *self.http)
            if self.connect_timeout_s is not None:
                # Subscribed before the caller goes on (the demo starts traffic next).
                async with asyncio.timeout(self.connect_timeout_s):
                    await self.link.wait_connected()
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
        await self.link.close()
        for t in self._tasks:
            t.cancel()
        tg, self._tg = self._tg, None
        if tg is not None:
            await tg.__aexit__(None, None, None)
        if self.store is not None:
            with self.store.transaction():
                self._flush_streams()
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
        """Ledger, replay state and the live picture from the database (a restart)."""
        st = self.db()
        self.gaps.load(st)
        now = self.now_ms()
        # Replay recent events through the live picture, effects discarded: alarms are in the
        # database already. Completed counts come from the passages table.
        for unit, env in st.recent_events(now - REBUILD_WINDOW_MS):
            with contextlib.suppress(EventRejectedError, KeyError, AttributeError):
                topic = Topics(self.site_id, unit).event(str(env["type"]).removeprefix("portlane."))
                self.live.apply(parse_event(self.site_id, topic, json.dumps(env).encode()))
        counts = st.completed_per_lane()
        for lane_id, lane in self.live.lanes.items():
            lane.completed = counts.get(lane_id, 0)
        for unit, status in st.statuses().items():
            self._statuses[unit] = status
            self.live.on_status(unit, status, now)

    # ------------------------------------------------------------------ public helpers
    @property
    def connected(self) -> bool:
        """Whether the console's broker connection is up."""
        return self.link.connected

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
        """Every unit that announced ``last_seq`` has all events up to it, and nothing is queued."""
        if not self._inbox.empty():
            return False
        for unit, status in self._statuses.items():
            last = int(status.get("last_seq") or 0)
            epoch = self._status_epoch(unit, status)
            s = self.ledger.stream(unit, epoch)
            if last and (s is None or s.max_seq < last or s.missing):
                return False
        return True

    def _status_epoch(self, unit: str, status: Mapping[str, Any]) -> int:
        e = status.get("epoch")
        return int(e) if isinstance(e, int) else self.ledger.latest_epoch.get(unit, 0)

    # ------------------------------------------------------------------ ingest
    async def _ingest_loop(self) -> None:
        while True:
            batch = [await self._inbox.get()]
            while len(batch) < BATCH and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            self.ingest(batch)

    def ingest(self, batch: list[Message]) -> None:
        """Process messages in one transaction (public for benchmarks and tests)."""
        st = self.db()
        now = self.now_ms()
        with st.transaction():
            for msg in batch:
                try:
                    _site, unit, kind, _rest = Topics.parse(msg.topic)
                except ValueError:
                    continue
                if kind == "event":
                    self._event(st, msg, now)
                elif kind == "status":
                    self._status(st, msg, now)
                elif kind == "response":
                    self._response(st, unit, msg, now)
            self._flush_streams()
        self.stats.batches += 1
        self.notify_changed()

    def _reject(self, st: Store, msg: Message, exc: EventRejectedError, now: int, unit: str | None) -> None:
        self.stats.rejected += 1
        self.stats.rejected_by_reason[exc.reason] = self.stats.rejected_by_reason.get(exc.reason, 0) + 1
        st.record_rejected(topic=msg.topic, reason=exc.reason, detail=exc.detail, payload=msg.payload, received_ms=now)
        signature = exc.reason in ("unknown_key", "bad_signature", "not_authorised", "unsigned")
        apply_effects(
            st,
            [
                Raise(
                    f"{'signature' if signature else 'malformed'}:{unit or '?'}",
                    "signature" if signature else "contract",
                    "critical" if signature else "warning",
                    unit,
                    None,
                    (),
                    f"{unit or '?'}: event rejected ({exc.reason})",
                    exc.detail[:300],
                    None,
                    now,
                )
            ],
        )

    def _event(self, st: Store, msg: Message, now: int) -> None:
        self.stats.received += 1
        unit: str | None = None
        try:
            ev = parse_event(self.site_id, msg.topic, msg.payload)
            unit = ev.unit
            signature = self.verifier.verify(ev.envelope, ev.unit)
        except EventRejectedError as exc:
            self._reject(st, msg, exc, now, unit)
            return
        problem = check_payload(ev)
        if not st.insert_event(ev, signature=signature, problem=problem, received_ms=now):
            self.stats.duplicates += 1
            return
        self.stats.stored += 1
        if signature != "unsigned":
            self.stats.signed += 1
        obs = self.ledger.observe(ev.unit, ev.epoch, ev.seq)
        self.gaps.dirty.add((ev.unit, ev.epoch))
        effects = self._ledger_effects(ev.unit, ev.epoch, obs, ev.id, now)
        if problem:
            self.stats.contract_problems += 1
            effects.append(
                Raise(
                    f"contract:{ev.unit}",
                    "contract",
                    "warning",
                    ev.unit,
                    ev.subject,
                    (),
                    f"{ev.unit}: event does not match the contract",
                    f"{ev.id}: {problem}"[:300],
                    ev.id,
                    now,
                )
            )
        if not obs.old_epoch:
            effects += self.live.apply(ev)
        else:
            effects += [e for e in self.live.apply(ev) if isinstance(e, Completed)]
        apply_effects(st, effects)

    def _ledger_effects(self, unit: str, epoch: int, obs: Observation, event_id: str, now: int) -> list[Effect]:
        out: list[Effect] = []
        if obs.gap is not None:
            self.stats.gaps_detected += 1
            self.gaps.missing((unit, epoch), now)
            log.info("%s epoch %s: seq %s–%s missing", unit, epoch, *obs.gap)
        if obs.seq_seen_before:
            out.append(
                Raise(
                    f"contract:{unit}",
                    "contract",
                    "warning",
                    unit,
                    None,
                    (),
                    f"{unit}: one seq under two ids",
                    f"{event_id} repeats a seq already received under another id",
                    event_id,
                    now,
                )
            )
        if obs.restart_from is not None:
            self.stats.restarts += 1
            old = self.ledger.stream(unit, obs.restart_from)
            lost = old.missing_count() if old else 0
            out.append(
                Raise(
                    f"restart:{unit}:{epoch}",
                    "stream_restart",
                    "warning" if lost else "info",
                    unit,
                    None,
                    (),
                    f"{unit}: event stream restarted (epoch {epoch})",
                    f"{lost} events of epoch {obs.restart_from} were never received" if lost else "nothing missing",
                    event_id,
                    now,
                    notice=True,
                )
            )
        return out

    def _status(self, st: Store, msg: Message, now: int) -> None:
        parsed = parse_status(self.site_id, msg.topic, msg.payload)
        if parsed is None:
            return
        unit, body = parsed
        self._statuses[unit] = body
        st.set_status(unit, body, now)
        effects = self.live.on_status(unit, body, now)
        last = body.get("last_seq")
        if isinstance(last, int) and last > 0:
            epoch = self._status_epoch(unit, body)
            gap = self.ledger.expect(unit, epoch, last)
            if gap is not None:
                self.gaps.dirty.add((unit, epoch))
                effects += self._ledger_effects(unit, epoch, Observation(gap=gap), "", now)
        apply_effects(st, effects)

    def _response(self, st: Store, unit: str, msg: Message, now: int) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        apply_effects(st, self.live.on_response(unit, body, now))
        if self.gaps.answered(str(body.get("correlation_id")), bool(body.get("ok")), body.get("reason")) is False:
            self.stats.replay_refused += 1
            log.warning("%s refused replay: %s", unit, body.get("reason"))

    def _flush_streams(self) -> None:
        self.gaps.flush(self.db())

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
        with st.transaction():
            effects += self._schedule_replays(now)
            apply_effects(st, effects)
            self._flush_streams()
        if effects:
            self.notify_changed()

    def _schedule_replays(self, now: int) -> list[Effect]:
        effects, requests = self.gaps.schedule(now, connected=self.link.connected)
        for req in requests:
            self.link.publish_nowait(req.topic, req.payload).add_done_callback(_ignore_result)
            self.stats.replays_requested += 1
        return effects

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
            "connected": self.link.connected,
            "stats": self.stats.as_dict(),
            "missing": {f"{u}/{e}": s.missing_count() for (u, e), s in self.ledger.streams.items() if s.missing},
        }
        return snap


def _ignore_result(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved: a lost replay request is simply asked again later
