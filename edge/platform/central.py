"""The reference central platform: the risk engine and the agencies, answering a site's lanes —
on the consumer library, so it believes only what the site's unit keys signed.

This is the code a platform team reads to learn the contract from the platform's side. It reads
the site through :class:`~portlane.edge.client.SiteClient` (verified, de-duplicated, gaps
replayed, typed) and signs its commands with an agency key (``platform.keys`` of the site file):

* **registrations** — when a lane says it is online (its signed ``unit.status``) it gets the
  expected vehicles as the signed ``expected_vehicles`` command (a lane trusts no unsigned list);
* **identifications** — on a verified ``vehicle.identified``: an officer corrects an identity
  the lane could not settle (``correct_identity``), or the agencies decide — every agency
  ``release``, or customs orders an X-ray (``inspect``) for a share of the cargo traffic; a
  vehicle the lane released itself on its pre-decisions is the lane's (the desks still see it); one
  a control order held back is never just released (X-ray, or the inspection bay);
* **declarations** (issue 20, ``declarations.py``) — the pre-decisions and control orders it
  signs in advance go out before the traffic (:meth:`declare`); a pre-decision a lane used
  (``passage.decided`` basis ``predecision``) is revoked at the other lanes;
* **scan results** — only a verified ``scan.completed`` of the lane's own scanner, for a passage
  this platform ordered inspected (its own ``inspect``, or the lane's signed ``passage.decided``
  saying it took one), and only once per passage: RED → customs ``divert``, else every agency
  ``release``. An unsigned or forged result, one from another scanner or for a passage nobody
  ordered inspected decides nothing — the cleared vehicle is not diverted by a forged RED, a RED
  one is not released by a forged GREEN.

What the library does for it, as a platform must: each event once (a redelivery or a replay is a
duplicate); after a reconnect, the units' signed statuses reveal what was written meanwhile and
the library asks for it (signed ``replay_events``) — a ``vehicle.identified`` published while
the platform was away still gets its decisions; a command nobody answers is signed afresh (new
nonce) and sent again, then given up (``CommandTimeoutError``, logged).

Hooks (each a few lines, in a named method):

* **desks** (:class:`Desk`) — officers the platform consults, e.g. the cargo lanes' radiation and
  seal desk: the events each reads (``on_event`` → commands to send), and ``identified`` (commands
  to send first, and whether the agencies then decide as usual);
* :meth:`CentralPlatform.register` (what a lane gets when it comes online), :meth:`decide`
  (release or inspect), :meth:`after_scan` (the verdicts on a scan), :meth:`sent` (every command
  as it goes out) — subclasses override them.

``--inject-forged K`` (``forgeries.py``) sends K forged commands among the genuine ones.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections import OrderedDict
from collections.abc import Collection, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from portlane.edge.client import (
    CommandTimeoutError,
    Output,
    SiteClient,
    SiteEvent,
)
from portlane.edge.config import MqttProtocol, Site
from portlane.edge.contract.events import PassageDecided, ScanEvent, UnitStatus, VehicleIdentified
from portlane.edge.trust.commands import CommandSigner

from .declarations import Declarations, Outgoing, decided_by_lane, under_control_order
from .forgeries import Forger
from .lanes import LaneInfo, lane_infos

__all__ = ["PLATFORM", "CentralPlatform", "CentralStats", "Command", "Desk"]

log = logging.getLogger(__name__)

#: The platform's ``clients`` entry (broker identity, TLS files): role ``platform``.
PLATFORM = "platform"
#: Identification exceptions an officer settles by looking at the pictures (``correct_identity``).
OFFICER_EXCEPTIONS = frozenset({"unreadable_plate", "dual_plate_mismatch", "low_confidence"})
#: Passages ordered inspected and not yet decided after their scan: a scanner settles a passage
#: within minutes; this covers hours of a busy site.
ORDERED_REMEMBERED = 10_000
#: The forgeries go out with a third of the genuine commands (at random) until K are sent.
FORGE_SHARE = 0.35

#: (command, passage id, args) for the platform to sign and send (a desk's answer).
Command = tuple[str, str | None, dict[str, Any]]


class Desk(Protocol):
    """An officers' desk the platform consults (e.g. the cargo lanes' radiation and seal desk)."""

    #: The event types it reads (besides ``vehicle.identified``, which every desk sees).
    events: Collection[str]

    def on_event(self, event_type: str, data: Mapping[str, Any]) -> list[Command]:
        """A verified event of ``events``: the commands to send."""
        ...

    def identified(self, data: Mapping[str, Any]) -> tuple[list[Command], bool]:
        """On ``vehicle.identified``: commands to send first, and whether the agencies then
        decide as usual (False: the desk settled the passage)."""
        ...


@dataclass
class CentralStats:
    identified: int = 0
    commands_sent: int = 0
    inspections_ordered: int = 0
    forged_sent: int = 0
    corrections: int = 0
    diverts: int = 0
    responses_ok: int = 0
    responses_rejected: int = 0
    commands_unanswered: int = 0
    decided_by_lane: int = 0  # released by the lane itself on its pre-decisions
    declarations_refused: dict[str, int] = field(default_factory=dict)  # reason (or no answer) -> count
    inspected_passages: set[str] = field(default_factory=set)
    #: Verified scan results it did not decide on: ``not_ordered`` (a passage nobody ordered
    #: inspected, or decided already), ``not_its_scanner`` (another scanner than the lane's).
    scans_ignored: dict[str, int] = field(default_factory=dict)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CentralPlatform:
    """A simulated central platform for ``site`` (see the module docstring). ``key_id`` /
    ``private_key_b64``: the agency key it signs with (one the site's ``platform.keys`` names).
    ``url``, ``protocol``, ``link_options``: the broker, as for :class:`SiteClient` (default: the
    site file's, with the TLS files of its ``platform`` client)."""

    def __init__(
        self,
        site: Site,
        *,
        key_id: str,
        private_key_b64: str,
        url: str | None = None,
        protocol: MqttProtocol | None = None,
        link_options: Mapping[str, Any] | None = None,
        unit: str = PLATFORM,
        inspect_ratio: float = 0.25,
        forged: int = 0,
        seed: int = 0,
        think_s: float = 0.3,
        registrations: Sequence[Mapping[str, Any]] = (),
        desks: Iterable[Desk] = (),
        declarations: Declarations | None = None,
        review_s: float = 0.0,  # an officer's look at an identification the lane could not decide
        clock: Any = _utc_now,
    ) -> None:
        self.site = site
        self.site_id = site.site.id
        self.lanes = lane_infos(site)
        self.inspect_ratio = inspect_ratio
        self.rng = random.Random(seed)
        self.think_s = think_s
        self.review_s = review_s
        self.declarations = declarations
        self.clock = clock
        self.registrations = [dict(r) for r in registrations]
        self.desks = list(desks)
        self.stats = CentralStats()
        self.registered: set[str] = set()  # lanes that accepted the registrations
        self._registered_changed = asyncio.Event()
        self._ordered: OrderedDict[str, str] = OrderedDict()  # passage ordered inspected -> its lane
        self._last_sent: tuple[str, bytes] | None = None
        self._tg: asyncio.TaskGroup | None = None
        signer = CommandSigner(key_id, private_key_b64)
        self.client = SiteClient(
            site,
            unit=unit,
            signer=signer,
            url=url,
            protocol=protocol,
            link_options=link_options,
            on_output=self._on_output,
            on_sent=self.sent,
            wall_clock=clock,
        )
        self.forged_left = forged
        self.forger = Forger(
            self.site_id,
            genuine=signer,
            lanes=list(self.lanes),
            last_sent=lambda: self._last_sent,
            clock=clock,
            rng=self.rng,
        )

    # ------------------------------------------------------------------ lifecycle
    @property
    def connected(self) -> bool:
        return self.client.link.connected

    async def wait_connected(self) -> None:
        """Until subscribed: nothing a unit publishes after this is missed."""
        await self.client.wait_subscribed()

    async def wait_registered(self, lanes: Iterable[str]) -> None:
        """Until every one of ``lanes`` has accepted the expected-vehicle registrations."""
        want = set(lanes)
        while not want <= self.registered:
            self._registered_changed.clear()
            await self._registered_changed.wait()

    async def run(self) -> None:
        """Stay connected and decide until cancelled (the decisions under way end with it)."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            try:
                async with self.client:
                    await asyncio.Event().wait()  # the client's own tasks do the work
            finally:
                self._tg = None

    def _spawn(self, coro: Coroutine[Any, Any, object], name: str) -> None:
        if self._tg is None:
            coro.close()  # not running (stopping): nothing is decided any more
            return
        self._tg.create_task(self._guarded(coro), name=f"platform:{name}")

    @staticmethod
    async def _guarded(coro: Coroutine[Any, Any, object]) -> None:
        try:
            await coro
        except Exception:
            # A platform that silently stops deciding would look like a wedged lane: logged, and
            # the platform goes on with the next passage.
            log.exception("platform: a decision failed")

    # ------------------------------------------------------------------ what it reads
    def _on_output(self, out: Output) -> None:
        if not isinstance(out, SiteEvent):
            return  # unit views, answers, alarms: the library keeps them
        data, p = out.data, out.payload
        if isinstance(p, UnitStatus) and out.unit in self.lanes and p.state == "online" and not out.late:
            self.register(out.unit)
        elif isinstance(p, VehicleIdentified) and out.unit in self.lanes:
            self._spawn(self.on_identified(out.unit, p, data), f"identified-{p.passage_id}")
        elif isinstance(p, PassageDecided) and out.unit in self.lanes:
            if p.decision == "inspect":
                self._order(p.passage_id, out.unit)  # the lane's signed word that it took an inspect
            self.on_decided(out.unit, data)
        elif isinstance(p, ScanEvent) and out.type == "scan.completed":
            self.on_scan(out.unit, p)
        for desk in self.desks:
            if out.type in desk.events and out.unit in self.lanes:
                self._spawn(self.send_all(out.unit, desk.on_event(out.type, data)), f"desk-{out.type}")

    def register(self, lane: str) -> None:
        """A lane says (signed) it is online: it gets the expected vehicles, signed."""
        self._spawn(self._register(lane), f"register-{lane}")

    async def _register(self, lane: str) -> None:
        if await self.command(lane, "expected_vehicles", None, {"vehicles": self.registrations}):
            self.registered.add(lane)
            self._registered_changed.set()

    async def on_identified(self, lane: str, ident: VehicleIdentified, data: Mapping[str, Any]) -> None:
        if decided_by_lane(data):
            self.stats.decided_by_lane += 1  # released by the lane itself on its pre-decisions
            for desk in self.desks:  # ... unless a desk's officer must see it first (an alarm, an e-lock)
                await self.send_all(lane, desk.identified(data)[0], think=False)
            return
        if ident.corrected_by is None:
            self.stats.identified += 1
        await self.think(review=ident.corrected_by is None)  # an officer looks at what the lane sent
        if OFFICER_EXCEPTIONS & set(ident.exceptions) and ident.corrected_by is None:
            await self.correct_identity(lane, ident)
            return  # the lane publishes vehicle.identified again; decided on that one
        for desk in self.desks:  # e.g. radiation alarms and seals (a desk may settle the passage)
            first, go_on = desk.identified(data)
            await self.send_all(lane, first, think=False)
            if not go_on:
                return
        if under_control_order(data):
            await self.decide_under_order(lane, ident.passage_id)
            return
        await self.decide(lane, ident.passage_id)

    async def correct_identity(self, lane: str, ident: VehicleIdentified) -> None:
        """An officer looks at the pictures and corrects the identity (audited at the lane)."""
        truth = next((list(v["plates"]) for v in self.registrations if v.get("tag_id") == ident.tag_id), None)
        self.stats.corrections += 1
        args = {
            "plates": truth or [p.text for p in ident.plates] or ["UNKNOWN"],
            "containers": [c.number for c in ident.containers],
            # The e-card read stands: without it the corrected identification names no vehicle,
            # and a desk waiting for the truck (a radiation alarm's adjudication) never answers.
            **({"tag_id": ident.tag_id} if ident.tag_id else {}),
            "operator": "officer-zh-017",
            "reason": "checked against camera images",
        }
        await self.send(lane, "correct_identity", ident.passage_id, args)

    async def decide(self, lane: str, passage_id: str) -> None:
        """The agencies' verdicts on an identification: an X-ray for a share of the cargo traffic
        at a lane with a scanner (customs orders it), else every agency releases."""
        info = self.lanes[lane]
        if self._x_ray(info) and self.rng.random() < self.inspect_ratio:
            await self.inspect(lane, passage_id)
            return
        for agency in info.agencies:
            await self.send(lane, "decision", passage_id, {"agency": agency, "verdict": "release"})

    async def decide_under_order(self, lane: str, passage_id: str) -> None:
        """A control order (布控) held the vehicle back: an X-ray where the lane has one, else the
        inspection bay (``divert``) — never a plain release."""
        info = self.lanes[lane]
        if self._x_ray(info):
            await self.inspect(lane, passage_id)
            return
        self.stats.diverts += 1
        await self.send(lane, "decision", passage_id, {"agency": info.agencies[0], "verdict": "divert"})

    @staticmethod
    def _x_ray(info: LaneInfo) -> bool:
        return info.scanner is not None and info.kind == "cargo"

    async def inspect(self, lane: str, passage_id: str) -> None:
        """Customs orders an X-ray (the passage is then decided on its scan)."""
        info = self.lanes[lane]
        self.stats.inspections_ordered += 1
        self.stats.inspected_passages.add(passage_id)
        self._order(passage_id, lane)
        agency = "customs" if "customs" in info.agencies else info.agencies[0]
        await self.send(lane, "decision", passage_id, {"agency": agency, "verdict": "inspect"})

    def on_scan(self, scanner: str, scan: ScanEvent) -> None:
        """A verified scan result: decided on only when it is the lane's own scanner's, for a
        passage ordered inspected at that lane, once."""
        if self._ordered.get(scan.passage_id) != scan.lane:
            self._ignore("not_ordered", scanner, scan)
            return
        if self.lanes[scan.lane].scanner != scanner:
            self._ignore("not_its_scanner", scanner, scan)
            return
        del self._ordered[scan.passage_id]
        self._spawn(self.after_scan(scan.lane, scan), f"verdicts-{scan.passage_id}")

    async def after_scan(self, lane: str, scan: ScanEvent) -> None:
        """The verdicts on a scan: RED → customs diverts; else every agency releases."""
        await self.think()
        if scan.result == "RED":
            self.stats.diverts += 1
            await self.send(lane, "decision", scan.passage_id, {"agency": "customs", "verdict": "divert"})
            return
        for agency in self.lanes[lane].agencies:
            await self.send(lane, "decision", scan.passage_id, {"agency": agency, "verdict": "release"})

    def _order(self, passage_id: str, lane: str) -> None:
        self._ordered[passage_id] = lane
        self._ordered.move_to_end(passage_id)
        while len(self._ordered) > ORDERED_REMEMBERED:
            self._ordered.popitem(last=False)

    def _ignore(self, why: str, scanner: str, scan: ScanEvent) -> None:
        n = self.stats.scans_ignored[why] = self.stats.scans_ignored.get(why, 0) + 1
        if n in (1, 10, 100) or n % 1000 == 0:
            log.info("platform: scan result of %s for %s not decided on (%s)", scanner, scan.passage_id, why)

    # ------------------------------------------------------------------ declarations (issue 20)
    def on_decided(self, lane: str, data: Mapping[str, Any]) -> None:
        """A lane's signed ``passage.decided``: what the declarations send on it (a used
        pre-decision revoked at the other lanes, a control order after the match)."""
        if self.declarations is not None:
            for o in self.declarations.on_event(lane, "passage.decided", data, self.clock().timestamp()):
                self._spawn(self.command(o.lane, o.cmd, None, o.args), f"{o.cmd}-{o.lane}")

    async def declare(self, *, in_flight: int = 8) -> int:
        """Send the declarations due before the traffic, ``in_flight`` at a time, each awaited;
        returns how many. Refusals (and no answer) are counted by reason in
        ``stats.declarations_refused``."""
        if self.declarations is None:
            return 0
        gate = asyncio.Semaphore(in_flight)

        async def lodge(o: Outgoing) -> None:
            async with gate:
                why = await self.refusal(o.lane, o.cmd, None, o.args)
            if why is not None:
                self.stats.declarations_refused[why] = self.stats.declarations_refused.get(why, 0) + 1

        ahead = self.declarations.ahead(self.clock().timestamp())
        await asyncio.gather(*(lodge(o) for o in ahead))
        return len(ahead)

    # ------------------------------------------------------------------ what it sends
    async def think(self, *, review: bool = False) -> None:
        """An officer's or engine's time to answer; ``review``: an officer looks at it too."""
        await asyncio.sleep((self.think_s + (self.review_s if review else 0.0)) * (0.5 + self.rng.random()))

    async def send_all(self, lane: str, commands: list[Command], *, think: bool = True) -> None:
        if commands and think:
            await self.think()
        for cmd, pid, args in commands:
            await self.send(lane, cmd, pid, args)

    async def send(self, lane: str, name: str, passage_id: str | None, args: dict[str, Any]) -> None:
        """Sign and send one command; the library sends it again (signed afresh) while nobody
        answers. Returns once it is handed to the broker (the answer is awaited in a task)."""
        self._spawn(self.command(lane, name, passage_id, args), f"{name}-{passage_id}")
        await asyncio.sleep(0)  # let it go out, in order with the next one
        await self._maybe_forge(lane)

    async def command(self, lane: str, name: str, passage_id: str | None, args: dict[str, Any]) -> bool:
        """One command, awaited: True when the lane accepted it."""
        return await self.refusal(lane, name, passage_id, args) is None

    async def refusal(self, lane: str, name: str, passage_id: str | None, args: dict[str, Any]) -> str | None:
        """One command, awaited: None when the lane accepted it, else why not (its reason, or
        ``no answer`` once the library gave up)."""
        try:
            result = await self.client.command(lane, name, args=args, passage_id=passage_id)
        except CommandTimeoutError as exc:
            self.stats.commands_unanswered += 1
            log.warning("platform: %s", exc)
            return "no answer"
        if result.ok:
            self.stats.responses_ok += 1
            return None
        self.stats.responses_rejected += 1
        log.warning("platform: %s %s for %s refused: %s", lane, name, passage_id, result.reason)
        return result.reason or "refused"

    def sent(self, topic: str, payload: bytes) -> None:
        """Every command as it goes out (the library's ``on_sent``): counted, kept for the replay
        forgery. Subclasses note more (bench/scale.py times the releases)."""
        self.stats.commands_sent += 1
        self._last_sent = (topic, payload)

    async def request_replay(
        self, unit: str, from_seq: int, to_seq: int | None = None, *, timeout_s: float = 10.0
    ) -> dict[str, Any]:
        """Ask ``unit`` (lane or scanner) to send its events ``from_seq..to_seq`` again (signed
        ``replay_events``). Returns its answer ``{"ok", "reason"}``, ``reason: "no response"``
        when none came within ``timeout_s``."""
        try:
            r = await self.client.command(
                unit, "replay_events", args={"from_seq": from_seq, "to_seq": to_seq}, resend_s=timeout_s, attempts=1
            )
        except CommandTimeoutError:
            return {"ok": False, "reason": "no response"}
        return {"ok": r.ok, "reason": r.reason}

    # ------------------------------------------------------------------ forgeries
    async def _maybe_forge(self, lane: str) -> None:
        if self.forged_left <= 0 or self.rng.random() > FORGE_SHARE:
            return
        await self._forge(lane)

    async def _forge(self, lane: str) -> None:
        self.forged_left -= 1
        self.stats.forged_sent += 1
        topic, payload = self.forger.forge(lane)
        await self.client.link.publish(topic, payload)

    async def flush_forgeries(self, lane: str) -> None:
        """Send the forgeries not sent yet (so that a run injects exactly K)."""
        while self.forged_left > 0:
            await self._forge(lane)
