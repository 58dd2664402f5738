"""The lane daemon: devices, the passage state machine, commands, and the durable outbox.

    sensors (gate + remote I/O polls) ─┐
    identification (RFID, scale, cameras → recognition worker) ─┤
    signed commands (MQTT) ─ verify ─┤→ LaneLogic (pure) → actions → executor → devices / outbox
    scanner events (MQTT) ─┤
    ticks (timeouts) ─┘

Every action runs through one executor task, in order. The executor is the second safety
guard: it opens the gate only when the logic's current passage holds a gate authority
(release, divert or audited override) and it re-reads the gate controller's own photocell and
safety-loop inputs right before sending a close frame.

This module must not import ``cv2`` or ``onnxruntime`` (the gate path stays light); plate
and container recognition arrive through ``Recogniser``, a worker off the control loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from portlane.drivers import registry
from portlane.drivers.base import (
    BoardColour,
    BoardDriver,
    CameraDriver,
    Device,
    Frame,
    GateDriver,
    GatePosition,
    IoDriver,
    LightColour,
    RfidDriver,
    TagRead,
    WeighbridgeDriver,
)
from portlane.drivers.errors import DeviceError
from portlane.drivers.supervisor import DeviceHealth, Supervisor
from portlane.edge import __version__
from portlane.edge.config import LaneConfig, Site
from portlane.edge.contract.envelope import rfc3339
from portlane.edge.contract.events import EVENTS
from portlane.edge.contract.topics import Topics
from portlane.edge.delivery.mqtt import Message, MqttLink
from portlane.edge.delivery.outbox import Outbox
from portlane.edge.delivery.sender import OutboxSender
from portlane.edge.errors import OutboxError
from portlane.edge.lane.logic import Action, Identity, LaneLogic, LaneTimeouts, Sensors
from portlane.edge.trust.audit import AuditLog
from portlane.edge.trust.keys import broker_credentials
from portlane.edge.trust.security import CommandRejected, CommandVerifier, SqliteNonceStore
from pydantic import ValidationError

__all__ = ["LaneDaemon", "Recogniser", "identity_exceptions"]

log = logging.getLogger(__name__)

#: Below this confidence an identity is flagged for an officer (low_confidence).
LOW_CONFIDENCE = 0.80
#: Physical waits during identification: an RFID read at 7–10 m takes < 0.5 s; a loaded
#: weighbridge settles within 2–3 s of the truck stopping.
RFID_WAIT_S = 1.5
WEIGH_WAIT_S = 4.0
TICK_S = 0.5


class Recogniser(Protocol):
    async def recognise(self, frames: list[Frame], *, kind: str) -> list[dict[str, Any]]: ...


def identity_exceptions(
    identity: Identity, *, lane_kind: str, registrations: dict[str, tuple[str, ...]]
) -> tuple[str, ...]:
    """Exceptions an officer must look at (ordinary operations, not errors)."""
    exc: list[str] = []
    if not identity.plates:
        exc.append("unreadable_plate")
    elif identity.confidence < LOW_CONFIDENCE:
        exc.append("low_confidence")
    kinds = {k for _t, k, _c in identity.plates}
    if "cn_crossborder" in kinds and kinds & {"hk", "macau"}:
        plates = tuple(sorted(t for t, _k, _c in identity.plates))
        if registrations and plates not in registrations.values():
            exc.append("dual_plate_mismatch")
    if any(not ok for _n, ok, _c in identity.containers):
        exc.append("check_digit_failed")
    return tuple(exc)


@dataclass
class _DeviceSlot:
    name: str
    device: Device
    supervisor: Supervisor
    backend: str
    link: str


@dataclass
class LaneCounters:
    commands_accepted: int = 0
    commands_rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    overrides: int = 0
    gate_opens: int = 0
    gate_opens_unauthorised_refused: int = 0
    closes_refused_occupied: int = 0


class LaneDaemon:
    def __init__(
        self,
        site: Site,
        lane: LaneConfig,
        *,
        state_dir: Path,
        broker_url: str | None = None,
        broker_protocol: str | None = None,
        recogniser: Recogniser | None = None,
        clock: Callable[[], float] = time.time,
        timeouts: LaneTimeouts | None = None,
        metrics: Any = None,
    ) -> None:
        self.site = site
        self.cfg = lane
        self.clock = clock
        self.topics = Topics(site.site.id, lane.id)
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.recogniser = recogniser
        self.metrics = metrics  # edge.metrics.DaemonMetrics, when the daemon exports metrics
        self.logic = LaneLogic(
            lane.id,
            agencies=tuple(a.value for a in lane.agencies),
            has_scanner=lane.scanner is not None,
            kind=lane.kind,
            timeouts=timeouts or LaneTimeouts(decision_s=site.platform.decision_timeout_s),
        )
        self.outbox = Outbox(self.state_dir / f"outbox-{lane.id}.db", site=site.site.id, unit=lane.id, clock=clock)
        self.audit = AuditLog(self.state_dir / "audit.jsonl")
        self.verifier = CommandVerifier.from_site(
            site,
            lane.id,
            clock=lambda: dt.datetime.fromtimestamp(self.clock(), tz=dt.UTC),
            nonce_store=SqliteNonceStore(self.state_dir / f"nonces-{lane.id}.db"),
        )
        b = site.broker
        url = broker_url or b.url
        self.link = MqttLink(
            url,
            client_id=f"portlane-{site.site.id}-{lane.id}",
            protocol=(broker_protocol or b.protocol),  # type: ignore[arg-type]
            **broker_credentials(b, unit=lane.id, url=url).link_kwargs(),  # TLS files, password file
            keepalive=b.keepalive_s,
            will=(self.topics.status, self._status_payload("offline")),
            subscriptions=[self.topics.cmd_filter, Topics.expected(site.site.id)]
            + ([f"portlane/v1/{site.site.id}/{lane.scanner}/event/#"] if lane.scanner else []),
            on_message=self._on_message,
            on_connect=self._on_connect,
        )
        self.sender = OutboxSender(self.outbox, self.link)
        self.counters = LaneCounters()
        self.registrations: dict[str, tuple[str, ...]] = {}  # tag id -> registered plates (sorted)
        self.devices: dict[str, _DeviceSlot] = {}
        self._actions: asyncio.Queue[Action] = asyncio.Queue()
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._gate_status: Any = None
        self._inputs: Any = None
        self._last_tag: TagRead | None = None
        self.heartbeat = 0
        self._retry_close = False  # a close frame failed: retry once the lane is idle
        self._auto_closed = False  # the lane took itself out of service (gate offline)
        self.ready = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._build_devices()

    # ------------------------------------------------------------------ devices
    def _build_devices(self) -> None:
        d = self.cfg.devices
        specs: list[tuple[str, str, Any]] = [("gate", "gate", d.gate), ("io", "io", d.io)]
        if d.board:
            specs.append(("board", "board", d.board))
        if d.rfid:
            specs.append(("rfid", "rfid", d.rfid))
        if d.weighbridge:
            specs.append(("weighbridge", "weighbridge", d.weighbridge))
        for cam_id, cam in d.cameras.items():
            specs.append((f"camera:{cam_id}", "camera", cam))
        probes: dict[str, Callable[[Any], Awaitable[object]]] = {
            "gate": self._probe_gate,
            "io": self._probe_io,
        }
        for name, kind, cfg in specs:
            dev = registry.create(kind, f"{self.cfg.id}/{name}", cfg)
            probe = probes.get(kind, _probe_nothing)
            period = cfg.poll_s if kind in ("gate", "io") else 1.0
            sup = Supervisor(dev, probe, period=period, on_change=self._on_health)
            link = cfg.link
            link_s = getattr(link, "url", None) or getattr(link, "source", None) or f"{link.host}:{link.port}"
            self.devices[name] = _DeviceSlot(name, dev, sup, cfg.backend, str(link_s))

    def _dev(self, name: str) -> Any:
        slot = self.devices.get(name)
        return slot.device if slot else None

    async def _probe_gate(self, dev: GateDriver) -> object:
        self._gate_status = await dev.status()
        self._feed_sensors()
        return self._gate_status

    async def _probe_io(self, dev: IoDriver) -> object:
        self._inputs = await dev.read_inputs()
        self._feed_sensors()
        return self._inputs

    def _sensors(self) -> Sensors:
        g, i = self._gate_status, self._inputs
        return Sensors(
            entry_loop=bool(i and i.entry_loop),
            in_position=bool(i and i.in_position),
            exit_loop=bool(i and i.exit_loop),
            photocell=bool(g and g.photocell_blocked),
            safety_loop=bool(g and g.loop_occupied),
            gate_open=bool(g and g.position == GatePosition.OPEN),
            gate_closed=bool(g is None or g.position == GatePosition.CLOSED),
        )

    def _feed_sensors(self) -> None:
        if self._gate_status is None or self._inputs is None:
            return
        self._apply(self.logic.on_sensors(self._sensors(), self.clock()))

    async def _on_health(self, device_id: str, health: DeviceHealth, reason: str | None) -> None:
        name = device_id.split("/", 1)[1]
        self._put_event("device.state", {"device": name, "health": health.value, "reason": reason})
        if name == "gate" and health == DeviceHealth.OFFLINE and self.logic.in_service:
            # A lane whose barrier does not answer takes itself out of service and says so.
            self._apply(self.logic.set_in_service(False, operator="portlane", reason=f"gate offline: {reason}"))
            self._put_event(
                "lane.exception", {"passage_id": None, "kind": "device_fault", "detail": f"gate offline: {reason}"}
            )
            self._auto_closed = True
        elif name == "gate" and health == DeviceHealth.ONLINE and self._auto_closed:
            self._auto_closed = False
            self._apply(self.logic.set_in_service(True, operator="portlane", reason="gate back online"))

    # ------------------------------------------------------------------ events
    def _status_payload(self, state: str) -> bytes:
        return json.dumps(
            {
                "state": state,
                "unit": self.cfg.id,
                "kind": "lane",
                "version": __version__,
                "in_service": self.logic.in_service if hasattr(self, "logic") else True,
                "stage": self.logic.stage.value if hasattr(self, "logic") else None,
                "last_seq": self.outbox.last_seq if hasattr(self, "outbox") else 0,
                "since": rfc3339(self.clock()),
            }
        ).encode()

    def _put_event(self, type_: str, data: dict[str, Any]) -> None:
        model = EVENTS[type_]
        try:
            payload = model.model_validate(data).model_dump(mode="json")
        except ValidationError as exc:
            # A bug of ours must not lose the record that something happened: say what failed.
            log.error("%s: %s does not match the contract: %s", self.cfg.id, type_, exc)
            type_, payload = (
                "lane.exception",
                {"passage_id": data.get("passage_id"), "kind": "invalid_event", "detail": f"{type_}: {exc}"[:500]},
            )
        if self.metrics is not None:
            if type_ == "passage.completed":
                self.metrics.passage_completed(payload["outcome"], payload["stage_ms"])
            elif type_ == "command.rejected":
                self.metrics.command_rejected(payload["reason"])
        try:
            self.outbox.put(type_, payload, topic=self.topics.event(type_), subject=data.get("passage_id"))
        except OutboxError as exc:
            log.error("%s: %s", self.cfg.id, exc)
            if self.logic.in_service:
                self.logic.in_service = False
                self._actions.put_nowait(Action("board", {"lines": [("车道关闭 LANE CLOSED", "red")]}))

    def _apply(self, actions: list[Action]) -> None:
        for a in actions:
            if a.kind == "publish":
                # Events are written to disk at once, in the order the logic produced them.
                self._put_event(a.args["type"], a.args["data"])
            elif a.kind == "audit":
                self.audit.append(
                    a.args["kind"],
                    actor=a.args["actor"],
                    reason=a.args["reason"],
                    lane=self.cfg.id,
                    data={"passage_id": a.args.get("passage_id"), **a.args.get("data", {})},
                )
            else:
                self._actions.put_nowait(a)

    async def _on_connect(self) -> None:
        await self.link.publish(self.topics.status, self._status_payload("online"), retain=True)

    # ------------------------------------------------------------------ executor
    async def _executor(self) -> None:
        while True:
            a = await self._actions.get()
            try:
                await self._execute(a)
            except DeviceError as exc:
                log.warning("%s: %s %s failed: %s", self.cfg.id, a.kind, a.args, exc)
                if a.kind == "gate" and a.args["action"] == "close":
                    self._retry_close = True

    async def _execute(self, a: Action) -> None:
        if a.kind == "gate":
            gate: GateDriver = self._dev("gate")
            action = a.args["action"]
            if action == "open":
                if not self.logic.authorises_open(a.args["passage_id"], a.args["cause"]):
                    self.counters.gate_opens_unauthorised_refused += 1
                    log.error("%s: refused to open the gate without authority (%s)", self.cfg.id, a.args)
                    return
                await gate.open()
                self.counters.gate_opens += 1
            elif action == "close":
                st = await gate.status()
                fresh = Sensors(photocell=st.photocell_blocked, safety_loop=st.loop_occupied)
                if not self.logic.may_close(fresh):
                    self.counters.closes_refused_occupied += 1
                    self.logic.gate_commanded = "open"  # the logic retries when the arm is clear
                    return
                await gate.close_arm()
            else:
                await gate.stop()
        elif a.kind == "light":
            io: IoDriver = self._dev("io")
            await io.set_light(LightColour(a.args["colour"]))
        elif a.kind == "board":
            board: BoardDriver | None = self._dev("board")
            if board is not None:
                from portlane.drivers.base import BoardLine

                await board.show([BoardLine(t, BoardColour(c)) for t, c in a.args["lines"]])
        elif a.kind == "identify":
            self._spawn(self._identify(a.args["passage_id"]), f"identify-{a.args['passage_id']}")
        elif a.kind == "request_scan":
            p = self.logic.passage
            self._put_event(
                "inspection.requested",
                {
                    "passage_id": a.args["passage_id"],
                    "lane": self.cfg.id,
                    "method": "xray",
                    "priority": 0,
                    "vehicle_ref": a.args["vehicle_ref"] or (p.id if p else ""),
                },
            )
        elif a.kind == "cancel_scan":
            pass  # the scanner daemon drops queue entries of completed passages

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ identification
    async def _rfid_reader(self) -> None:
        while True:
            rfid: RfidDriver | None = self._dev("rfid")
            if rfid is None:
                return
            if not rfid.connected:
                await asyncio.sleep(0.2)
                continue
            try:
                read = await rfid.next_read(timeout=5.0)
            except DeviceError:
                await asyncio.sleep(0.2)
                continue
            if read is not None:
                self._last_tag = read

    async def _identify(self, passage_id: str) -> None:
        """Collect what identifies the vehicle; whatever fails, the passage moves on (an officer
        then sees an identification exception instead of a lane stuck in IDENTIFYING)."""
        try:
            await self._collect_identity(passage_id)
        except Exception as exc:
            log.exception("%s: identification of %s failed", self.cfg.id, passage_id)
            ident = Identity(exceptions=("identification_failed", "unreadable_plate"))
            self._apply(self.logic.on_identified(passage_id, ident, self.clock()))
            self._put_event(
                "lane.exception",
                {
                    "passage_id": passage_id,
                    "kind": "identification_failed",
                    "detail": f"{type(exc).__name__}: {exc}"[:300],
                },
            )

    async def _collect_identity(self, passage_id: str) -> None:
        p = self.logic.passage
        arrived = p.stamps.get("arrived", 0.0) if p else 0.0
        tag: str | None = None
        weight: int | None = None
        plates: list[tuple[str, str, float]] = []
        containers: list[tuple[str, bool, float]] = []

        async def get_tag() -> None:
            nonlocal tag
            deadline = self.clock() + RFID_WAIT_S
            while self.clock() < deadline:
                if self._last_tag and self._last_tag.ts >= arrived - 1.0:
                    tag = self._last_tag.tag_id
                    return
                await asyncio.sleep(0.05)

        async def get_weight() -> None:
            nonlocal weight
            wb: WeighbridgeDriver | None = self._dev("weighbridge")
            if wb is None or not wb.connected:
                return
            with contextlib.suppress(DeviceError):
                weight = (await wb.wait_stable(WEIGH_WAIT_S)).kg

        async def get_reads() -> None:
            if self.recogniser is None:
                return
            frames: dict[str, list[Frame]] = {"plate": [], "container": []}
            for name, slot in self.devices.items():
                if not name.startswith("camera:") or not slot.device.connected:
                    continue
                cam: CameraDriver = slot.device  # type: ignore[assignment]
                with contextlib.suppress(DeviceError):
                    frames["container" if "container" in name else "plate"].append(await cam.snapshot())
            for kind, fl in frames.items():
                if not fl:
                    continue
                for r in await self.recogniser.recognise(fl, kind=kind):
                    if kind == "plate":
                        plates.append((r["text"], r["kind"], float(r["confidence"])))
                    else:
                        containers.append((r["number"], bool(r["check_digit_ok"]), float(r["confidence"])))

        try:
            async with asyncio.timeout(self.logic.timeouts.identify_s):
                await asyncio.gather(get_tag(), get_weight(), get_reads())
        except TimeoutError:
            log.warning("%s: identification of %s timed out; deciding on what was read", self.cfg.id, passage_id)
        if not plates and tag and tag in self.registrations:
            # No camera read: the e-card's registration names the plates (confidence of the tag).
            plates = [(t, _plate_kind(t), 0.9) for t in self.registrations[tag]]
        # The identity's confidence is its weakest plate read: containers are vouched for by
        # their check digit (a failing one is an exception of its own, check_digit_failed).
        conf = min([c for _t, _k, c in plates], default=0.0)
        ident = Identity(
            plates=tuple(plates), containers=tuple(containers), tag_id=tag, weight_kg=weight, confidence=conf
        )
        ident = dataclasses.replace(
            ident, exceptions=identity_exceptions(ident, lane_kind=self.cfg.kind, registrations=self.registrations)
        )
        self._apply(self.logic.on_identified(passage_id, ident, self.clock()))

    # ------------------------------------------------------------------ messages
    def _on_message(self, msg: Message) -> None:
        self._inbox.put_nowait(msg)

    async def _dispatcher(self) -> None:
        while True:
            msg = await self._inbox.get()
            try:
                _site, unit, kind, rest = Topics.parse(msg.topic)
            except ValueError:
                continue
            if kind == "cmd" and unit == self.cfg.id:
                await self._on_command(msg, rest)
            elif kind == "expected":
                self._on_expected(msg.payload)
            elif kind == "event" and unit == self.cfg.scanner:
                self._on_scanner_event(rest, msg.payload)

    def _on_expected(self, payload: bytes) -> None:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            body = json.loads(payload)
            self.registrations = {v["tag_id"]: tuple(sorted(v["plates"])) for v in body.get("vehicles", [])}

    def _on_scanner_event(self, type_: str, payload: bytes) -> None:
        try:
            env = json.loads(payload)
            data = env["data"]
        except (ValueError, KeyError, TypeError):
            return
        if data.get("lane") != self.cfg.id:
            return
        kind = type_.removeprefix("scan.")
        self._apply(
            self.logic.on_scan(
                data["passage_id"],
                kind,
                self.clock(),
                scan_id=data.get("scan_id"),
                result=data.get("result"),
                reason=data.get("reason"),
            )
        )

    async def _respond(self, msg: Message, name: str, correlation: str | None, ok: bool, reason: str | None) -> None:
        body = json.dumps({"correlation_id": correlation, "command": name, "ok": ok, "reason": reason}).encode()
        topic = msg.properties.get("ResponseTopic") or self.topics.response
        with contextlib.suppress(ConnectionError):
            await self.link.publish(topic, body, qos=1)

    def _reject(self, name: str, reason: str, nonce: str | None, key_id: str | None, detail: str) -> None:
        self.counters.commands_rejected += 1
        self.counters.rejected_by_reason[reason] = self.counters.rejected_by_reason.get(reason, 0) + 1
        self.audit.append(
            "command_rejected",
            actor=key_id or "unknown",
            reason=reason,
            lane=self.cfg.id,
            data={"command": name, "nonce": nonce, "detail": detail[:200]},
        )
        self._put_event("command.rejected", {"command": name, "reason": reason, "nonce": nonce, "key_id": key_id})

    async def _on_command(self, msg: Message, name: str) -> None:
        try:
            cmd = self.verifier.verify(msg.payload)
        except CommandRejected as exc:
            f = exc.fields
            self._reject(name, exc.reason.value, f.get("nonce"), f.get("key_id"), exc.detail)
            await self._respond(msg, name, f.get("nonce"), False, exc.reason.value)
            return
        if cmd.cmd != name:
            self._reject(name, "malformed", cmd.nonce, cmd.key_id, f"topic says {name}, command says {cmd.cmd}")
            await self._respond(msg, name, cmd.nonce, False, "malformed")
            return
        now = self.clock()
        args = dict(cmd.args)
        ok, reason, actions = True, None, []
        if cmd.cmd in ("decision", "release", "hold", "divert"):
            verdict = {"release": "release", "hold": "hold", "divert": "divert"}.get(
                cmd.cmd, str(args.get("verdict") or args.get("decision") or "")
            )
            ok, reason, actions = self.logic.on_decision(
                cmd.passage_id, str(args.get("agency", "")), verdict, nonce=cmd.nonce, now=now
            )
        elif cmd.cmd == "correct_identity":
            ident = Identity(
                plates=tuple((str(t), _plate_kind(str(t)), 1.0) for t in args.get("plates", [])),
                containers=tuple((str(n), True, 1.0) for n in args.get("containers", [])),
                tag_id=args.get("tag_id"),
                confidence=1.0,
                corrected_by=str(args.get("operator", "")),
            )
            try:
                ok, reason, actions = self.logic.correct_identity(
                    str(cmd.passage_id),
                    ident,
                    operator=str(args.get("operator", "")),
                    reason=str(args.get("reason", "")),
                    now=now,
                )
            except Exception as exc:  # audit refuses a correction without operator and reason
                ok, reason, actions = False, f"malformed: {exc}", []
        elif cmd.cmd == "board_message":
            lines = [(str(x.get("text", "")), str(x.get("colour", "green"))) for x in args.get("lines", [])]
            actions = [Action("board", {"lines": lines})]
        elif cmd.cmd == "expected_vehicles":
            self._on_expected(json.dumps(args).encode())
        elif cmd.cmd in ("close_lane", "open_lane"):
            actions = self.logic.set_in_service(
                cmd.cmd == "open_lane",
                operator=f"platform:{cmd.key_id}",
                reason=str(args.get("reason", "platform command")),
            )
        if ok:
            self.counters.commands_accepted += 1
            self.audit.append(
                "command_accepted",
                actor=cmd.key_id,
                reason=cmd.cmd,
                lane=self.cfg.id,
                data={"nonce": cmd.nonce, "passage_id": cmd.passage_id},
            )
            self._apply(actions)
        else:
            self._reject(name, reason or "refused", cmd.nonce, cmd.key_id, reason or "")
        await self._respond(msg, name, cmd.nonce, ok, reason)

    # ------------------------------------------------------------------ technician actions
    def override(self, action: str, *, operator: str, reason: str) -> dict[str, Any]:
        from portlane.edge.trust.audit import require_operator

        operator, reason = require_operator(operator, reason)
        self.counters.overrides += 1
        if action == "open":
            self._apply(self.logic.override_open(operator=operator, reason=reason, now=self.clock()))
        elif action == "close":
            self._apply(self.logic.override_close(operator=operator, reason=reason))
        else:
            self.audit.append("override", actor=operator, reason=reason, lane=self.cfg.id, data={"action": "stop"})
            self._actions.put_nowait(Action("gate", {"action": "stop", "cause": "override", "passage_id": None}))
        return {"ok": True}

    def status(self) -> dict[str, Any]:
        p = self.logic.passage
        return {
            "lane": self.cfg.id,
            "kind": self.cfg.kind,
            "in_service": self.logic.in_service,
            "stage": self.logic.stage.value,
            "passage_id": p.id if p else None,
            "devices": {
                n: {
                    "health": s.supervisor.health.value,
                    "backend": s.backend,
                    "link": s.link,
                    "last_error": s.device.last_error,
                    "counters": dict(s.device.counters),
                }
                for n, s in self.devices.items()
            },
            "outbox": self.outbox.stats().as_dict(),
            "broker": {"url": self.link.url, "connected": self.link.connected, "protocol": self.link.negotiated},
        }

    # ------------------------------------------------------------------ lifecycle
    async def _ticker(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.heartbeat += 1
            self._apply(self.logic.on_tick(self.clock()))
            if self._retry_close and self.logic.passage is None:
                self._retry_close = False
                self.logic.gate_commanded = "open"
                self._feed_sensors()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_S):
                    await stop.wait()

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then flush what can be flushed and publish offline."""
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(self.link.run(), name=f"{self.cfg.id}:mqtt"),
                tg.create_task(self.sender.run(), name=f"{self.cfg.id}:outbox"),
                tg.create_task(self._executor(), name=f"{self.cfg.id}:executor"),
                tg.create_task(self._dispatcher(), name=f"{self.cfg.id}:dispatcher"),
                tg.create_task(self._rfid_reader(), name=f"{self.cfg.id}:rfid"),
            ]
            for name, slot in self.devices.items():
                tasks.append(tg.create_task(slot.supervisor.run(), name=f"{self.cfg.id}:{name}"))
            self._put_event("device.state", {"device": "lane", "health": "online", "reason": "daemon started"})
            self.ready.set()
            await self._ticker(stop)
            # Shutdown: give the sender a moment to drain (events stay on disk regardless).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3.0):
                    await self.sender.wait_drained()
            with contextlib.suppress(ConnectionError, TimeoutError):
                async with asyncio.timeout(2.0):
                    await self.link.publish(self.topics.status, self._status_payload("offline"), retain=True)
            await self.link.close()
            for t in [*tasks, *self._tasks]:
                t.cancel()
        for slot in self.devices.values():
            with contextlib.suppress(Exception):
                await slot.device.close()
        self.outbox.close()


async def _probe_nothing(dev: Device) -> object:
    return None


def _plate_kind(text: str) -> str:
    if text.startswith("粤Z") and text[-1:] in ("港", "澳"):
        return "cn_crossborder"
    if text[:1].isascii() and text.startswith("M") and len(text) in (5, 6) and text[-4:].isdigit():
        return "macau"
    if text[:1].isascii():
        return "hk"
    return "cn"
