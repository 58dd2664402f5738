"""What a lane does with each signed command from the central platform.

Commands arrive through the unit's one command path (``portlane.edge.trust.command_path``):
verified (signature, key, time, target, authority, nonce), their ``args`` already the
command's model. Here each is turned into the logic's inputs; the actions it returns are
carried out after the acceptance is audited (``Outcome.effect``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from portlane.edge.contract.commands import (
    COMMAND_NAMES,
    AdjudicateArgs,
    AgencyArgs,
    BoardArgs,
    CommandName,
    CorrectIdentityArgs,
    DecisionArgs,
    ExpectedVehiclesArgs,
    LaneServiceArgs,
    PredecisionArgs,
    RevokeArgs,
    SealCommandArgs,
)
from portlane.edge.contract.events import ContainerRead
from portlane.edge.trust.command_path import Outcome
from portlane.edge.trust.commands import VerifiedCommand
from portlane.models.iso6346 import is_valid

from .actions import Action, ShowBoard
from .identification import Identifier, plate_read
from .logic import LaneLogic
from .passage import Identity
from .predecision_rules import ControlOrder, Declared

__all__ = ["LANE_COMMANDS", "LaneCommands"]

log = logging.getLogger(__name__)

#: The commands a lane takes: every command of the contract (``contract.commands.CommandName``)
#: but ``replay_events``, which every unit takes.
LANE_COMMANDS: tuple[str, ...] = tuple(n for n in COMMAND_NAMES if n != CommandName.REPLAY_EVENTS)


class LaneCommands:
    def __init__(
        self,
        *,
        logic: LaneLogic,
        apply: Callable[[Iterable[Action]], None],
        identifier: Identifier,
        clock: Callable[[], float],
    ) -> None:
        self.logic = logic
        self.apply = apply  # the daemon's: executor, journal, status
        self.identifier = identifier
        self.clock = clock

    def handle(self, cmd: VerifiedCommand) -> Outcome:
        now = self.clock()
        args = cmd.args
        match args:
            case DecisionArgs(agency=agency, verdict=verdict):
                return self._acts(*self.logic.on_decision(cmd.passage_id, agency, verdict, nonce=cmd.nonce, now=now))
            case AgencyArgs(agency=agency):
                return self._acts(*self.logic.on_decision(cmd.passage_id, agency, cmd.name, nonce=cmd.nonce, now=now))
            case CorrectIdentityArgs():
                ident = Identity(
                    plates=tuple(plate_read(t, 1.0) for t in args.plates),
                    containers=tuple(_container(n) for n in args.containers),
                    tag_id=args.tag_id,
                    confidence=1.0,
                    corrected_by=args.operator,
                )
                return self._acts(
                    *self.logic.correct_identity(
                        cmd.passage_id or "", ident, operator=args.operator, reason=args.reason, now=now
                    )
                )
            case BoardArgs(lines=lines):
                return self._acts(True, None, [ShowBoard.of(*((x.text, x.colour) for x in lines))])
            case ExpectedVehiclesArgs(vehicles=vehicles):
                seals = {v.tag_id: v.seals for v in vehicles if v.seals is not None}
                self.identifier.register({v.tag_id: v.plates for v in vehicles}, seals=seals)
                return Outcome(True)
            case AdjudicateArgs():
                ok, reason, actions = self.logic.on_adjudicate(
                    cmd.passage_id,
                    agency=args.agency,
                    occupancy=args.occupancy,
                    code=args.code,
                    isotopes=args.isotopes,
                    remark=args.remark,
                    nonce=cmd.nonce,
                    now=now,
                )
                record = {"agency": args.agency, "occupancy": args.occupancy, "code": args.code}
                return self._acts(ok, reason, actions, audit=record)
            case SealCommandArgs():
                action: Literal["apply", "remove"] = "apply" if cmd.name == "seal_apply" else "remove"
                ok, reason, actions = self.logic.on_seal_command(
                    cmd.passage_id,
                    action=action,
                    seal_id=args.seal_id,
                    authorisation=args.authorisation,
                    agency=args.agency,
                    key_id=cmd.key_id,
                    nonce=cmd.nonce,
                )
                # the authorisation code is customs' secret: it is neither audited nor published
                return self._acts(ok, reason, actions, audit={"agency": args.agency, "seal_id": args.seal_id})
            case LaneServiceArgs(reason=reason):
                actions = self.logic.set_in_service(
                    cmd.name == "open_lane", operator=f"platform:{cmd.key_id}", reason=reason
                )
                return self._acts(True, None, actions)
            case PredecisionArgs():
                return self._acts(*self.logic.on_predecision(Declared.from_command(cmd.command, args), now))
            case RevokeArgs():
                return self._acts(*self.logic.on_revoke(ControlOrder.from_command(cmd.command, args), now))
        return Outcome(False, "unknown_command")

    def _acts(
        self, ok: bool, reason: str | None, actions: Iterable[Action], *, audit: Mapping[str, Any] | None = None
    ) -> Outcome:
        todo = tuple(actions)
        return Outcome(ok, reason, audit=audit or {}, effect=(lambda: self.apply(todo)) if ok and todo else None)


def _container(number: str) -> ContainerRead:
    return ContainerRead(number=number, check_digit_ok=is_valid(number), confidence=1.0)
