"""Signed commands from the central platform: verify, act through the logic, answer.

Every command is verified (signature, key, time, target, nonce) before anything acts on it,
its ``args`` are checked against the command's model (``portlane.edge.contract.commands``),
and the answer goes to the unit's own response topic, never to a topic the sender names.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from portlane.edge.contract.commands import (
    ARGS,
    AgencyArgs,
    BoardArgs,
    CorrectIdentityArgs,
    DecisionArgs,
    ExpectedVehiclesArgs,
    LaneServiceArgs,
    PredecisionArgs,
    ReplayEventsArgs,
    RevokeArgs,
    SignedCommand,
)
from portlane.edge.contract.events import CommandRejected as CommandRejectedEvent
from portlane.edge.contract.events import CommandResponse, ContainerRead
from portlane.edge.contract.topics import Topics
from portlane.edge.delivery.mqtt import Message
from portlane.edge.trust.audit import AuditLog
from portlane.edge.trust.commands import CommandRejected, CommandVerifier
from portlane.edge.trust.rejections import RejectionAggregator
from portlane.models.iso6346 import is_valid
from pydantic import BaseModel, ValidationError

from .actions import Action, Publish, ShowBoard
from .identification import Identifier, plate_read
from .logic import LaneLogic
from .passage import Identity
from .predecisions import ControlOrder, Declared

__all__ = ["CommandCounters", "CommandHandler"]

log = logging.getLogger(__name__)


@dataclass
class CommandCounters:
    accepted: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    reason: str | None = None
    actions: tuple[Action, ...] = ()


Respond = Callable[[str, bytes], Awaitable[None]]
Replay = Callable[[int, int | None], int]


class CommandHandler:
    def __init__(
        self,
        *,
        lane: str,
        topics: Topics,
        verifier: CommandVerifier,
        logic: LaneLogic,
        apply: Callable[[Iterable[Action]], None],
        identifier: Identifier,
        audit: AuditLog,
        respond: Respond,
        replay: Replay,
        clock: Callable[[], float],
    ) -> None:
        self.lane = lane
        self.topics = topics
        self.verifier = verifier
        self.logic = logic
        self.apply = apply  # the daemon's: executor, journal, status
        self.identifier = identifier
        self.audit = audit
        self.respond = respond
        self.replay = replay
        self.clock = clock
        self.counters = CommandCounters()
        self.rejections = RejectionAggregator(audit, lane=lane, clock=clock)

    async def handle(self, msg: Message, name: str) -> None:
        """One message on ``cmd/{name}``: never raises for anything the sender controls."""
        try:
            cmd = self.verifier.verify(msg.payload)
        except CommandRejected as exc:
            f = exc.fields
            nonce = f.get("nonce") if isinstance(f.get("nonce"), str) else None
            key_id = f.get("key_id") if isinstance(f.get("key_id"), str) else None
            if self._reject(name, exc.reason.value, nonce, key_id, exc.detail):
                await self._answer(name, nonce, False, exc.reason.value)
            return
        if cmd.cmd != name:
            if self._reject(name, "malformed", cmd.nonce, cmd.key_id, f"topic says {name}, command says {cmd.cmd}"):
                await self._answer(name, cmd.nonce, False, "malformed")
            return
        try:
            # JSON mode: strict types as they arrive on the wire (arrays validate as tuples).
            args = ARGS[cmd.cmd].model_validate_json(json.dumps(cmd.args))
        except ValidationError as exc:
            detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
            if self._reject(name, "malformed", cmd.nonce, cmd.key_id, detail):
                await self._answer(name, cmd.nonce, False, "malformed")
            return
        outcome = self._act(cmd, args)
        if outcome.ok:
            self.counters.accepted += 1
            self.audit.append(
                "command_accepted",
                actor=cmd.key_id,
                reason=cmd.cmd,
                lane=self.lane,
                data={"nonce": cmd.nonce, "passage_id": cmd.passage_id},
            )
            self.apply(outcome.actions)
        elif not self._reject(name, outcome.reason or "refused", cmd.nonce, cmd.key_id, outcome.reason or ""):
            return
        await self._answer(name, cmd.nonce, outcome.ok, outcome.reason)

    def _act(self, cmd: SignedCommand, args: BaseModel) -> Outcome:
        now = self.clock()
        match args:
            case DecisionArgs(agency=agency, verdict=verdict):
                return self._decide(cmd, agency, verdict, now)
            case AgencyArgs(agency=agency):
                return self._decide(cmd, agency, cmd.cmd, now)
            case CorrectIdentityArgs():
                ident = Identity(
                    plates=tuple(plate_read(t, 1.0) for t in args.plates),
                    containers=tuple(_container(n) for n in args.containers),
                    tag_id=args.tag_id,
                    confidence=1.0,
                    corrected_by=args.operator,
                )
                ok, reason, actions = self.logic.correct_identity(
                    cmd.passage_id or "", ident, operator=args.operator, reason=args.reason, now=now
                )
                return Outcome(ok, reason, tuple(actions))
            case BoardArgs(lines=lines):
                return Outcome(True, None, (ShowBoard.of(*((x.text, x.colour) for x in lines)),))
            case ExpectedVehiclesArgs(vehicles=vehicles):
                self.identifier.register({v.tag_id: v.plates for v in vehicles})
                return Outcome(True)
            case LaneServiceArgs(reason=reason):
                actions = self.logic.set_in_service(
                    cmd.cmd == "open_lane", operator=f"platform:{cmd.key_id}", reason=reason
                )
                return Outcome(True, None, tuple(actions))
            case ReplayEventsArgs(from_seq=start, to_seq=end):
                n = self.replay(start, end)
                log.info("%s: replaying %d events from seq %d for %s", self.lane, n, start, cmd.key_id)
                return Outcome(True)
            case PredecisionArgs():
                ok, reason, actions = self.logic.on_predecision(Declared.from_command(cmd, args), now)
                return Outcome(ok, reason, tuple(actions))
            case RevokeArgs():
                ok, reason, actions = self.logic.on_revoke(ControlOrder.from_command(cmd, args), now)
                return Outcome(ok, reason, tuple(actions))
        return Outcome(False, "unknown_command")

    def _decide(self, cmd: SignedCommand, agency: str, verdict: str, now: float) -> Outcome:
        ok, reason, actions = self.logic.on_decision(cmd.passage_id, agency, verdict, nonce=cmd.nonce, now=now)
        return Outcome(ok, reason, tuple(actions))

    def _reject(self, name: str, reason: str, nonce: str | None, key_id: str | None, detail: str) -> bool:
        """Count a rejection; audit, publish and answer it only while under the aggregator's
        thresholds (a flood costs counters, not fsyncs). Returns whether to answer."""
        c = self.counters
        c.rejected += 1
        c.rejected_by_reason[reason] = c.rejected_by_reason.get(reason, 0) + 1
        if not self.rejections.record(reason, key_id=key_id, command=name, nonce=nonce, detail=detail):
            return False
        event = CommandRejectedEvent(command=name[:64], reason=reason, nonce=nonce, key_id=key_id)
        self.apply([Publish("command.rejected", event)])
        return True

    async def _answer(self, name: str, nonce: str | None, ok: bool, reason: str | None) -> None:
        body = CommandResponse(correlation_id=nonce, command=name[:64], ok=ok, reason=reason)
        try:
            await self.respond(self.topics.response, body.model_dump_json().encode())
        except ConnectionError as exc:
            log.info(
                "%s: response to %s not sent (%s); the platform sees command.rejected/accepted events",
                self.lane,
                name,
                exc,
            )


def _container(number: str) -> ContainerRead:
    return ContainerRead(number=number, check_digit_ok=is_valid(number), confidence=1.0)
