"""The seals in the lane's passages — part of ``LaneLogic`` (through ``CargoRules``), pure.

Seals are read at identification (``Identity.seals``): ``seal.read`` is published, and the seal
blockers (``cargo_checks.seal_blockers``) are identification exceptions in ``vehicle.identified``.
Cross-boundary e-locks are applied and removed only on a signed ``seal_apply`` / ``seal_remove``
from customs, checked here against the seals read (``check_seal_command``); the executor audits
the command and carries it out (``SealCommand``), and reports the lock's answer back
(``on_seal_changed`` / ``on_seal_refused``). While a command is at the lock the passage's
release waits (``CargoPassage.seal_busy``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Literal

from portlane.drivers.cargo_devices import LockRefusal, SealRecord
from portlane.drivers.errors import DeviceError, DeviceFaultError
from portlane.edge.contract.events import CommandRejected, LaneException, SealChanged, SealRead

from .actions import Action, Audit, Publish, SealCommand
from .cargo_checks import Blocker, check_seal_command, seal_info, seal_seen
from .passage import CargoLane, Identity, Passage

__all__ = ["SEAL_AGENCY", "SealRules", "lock_refusal"]

#: Cross-boundary e-locks are applied and removed by customs alone (Single E-lock Scheme).
SEAL_AGENCY = "customs"
_SEAL_KINDS = frozenset(
    {"seal_missing", "seal_foreign", "seal_opened", "seal_tampered", "elock_off_route", "seal_read_failed"}
)


def lock_refusal(exc: DeviceError) -> str:
    """The named rejection of a lock command the reader did not carry out: ``lock_`` and the
    lock's refusal (``lock_authorisation_refused`` …), or ``seal_reader_unavailable``."""
    if isinstance(exc, DeviceFaultError):
        try:
            return "lock_" + LockRefusal(exc.code).name.lower()
        except ValueError:
            return "lock_refused"
    return "seal_reader_unavailable"


class SealRules:
    """Mixed into ``LaneLogic`` through ``CargoRules``: the attributes and helpers below are theirs."""

    if TYPE_CHECKING:
        cargo: CargoLane
        agencies: tuple[str, ...]
        passage: Passage | None

        def cargo_blockers_of(self, p: Passage) -> tuple[Blocker, ...]: ...
        def _cargo_retry(self, now: float) -> list[Action]: ...

    def _seal_exceptions(self, p: Passage) -> tuple[str, ...]:
        return tuple(dict.fromkeys(b.kind for b in self.cargo_blockers_of(p) if b.kind in _SEAL_KINDS))

    def _cargo_identified(self, p: Passage, identity: Identity) -> tuple[Identity, list[Action]]:
        """The seals read at identification go to the passage; ``seal.read`` is published and
        the seal blockers join the identity's exceptions (an officer's)."""
        if self.cargo.reader is None:
            return identity, []
        cp = p.cargo
        cp.seals = tuple(seal_seen(r) for r in identity.seals) if identity.seals is not None else None
        cp.seal_error = None if identity.seals is not None else (identity.seal_error or "not read")
        cp.declared = identity.declared_seals
        kinds = self._seal_exceptions(p)
        out: list[Action] = []
        if identity.seals is not None:
            read = SealRead(
                passage_id=p.id,
                reader=self.cargo.reader,
                seals=tuple(seal_info(r) for r in identity.seals),
                declared=cp.declared or (),
                exceptions=kinds,
            )
            out.append(Publish("seal.read", read))
        return self._with_seal_exceptions(p, identity), out

    def _with_seal_exceptions(self, p: Passage, identity: Identity) -> Identity:
        """``identity`` (a read, or an officer's correction) with the passage's seal exceptions:
        a correction of the plates does not make a tampered seal go away."""
        if self.cargo.reader is None:
            return identity
        return replace(identity, exceptions=tuple(dict.fromkeys(identity.exceptions + self._seal_exceptions(p))))

    def on_seal_command(
        self,
        passage_id: str | None,
        *,
        action: Literal["apply", "remove"],
        seal_id: str,
        authorisation: str,
        agency: str,
        key_id: str,
        nonce: str,
    ) -> tuple[bool, str | None, list[Action]]:
        """A verified ``seal_apply`` / ``seal_remove``: forwarded to the reader (``SealCommand``)
        only for customs, for the vehicle in position, and for an e-lock read on it in the state
        the command needs."""
        if self.cargo.reader is None:
            return False, "no_seal_reader", []
        if agency not in self.agencies:
            return False, "unknown_agency", []
        if agency != SEAL_AGENCY:
            return False, "not_customs", []
        p = self.passage
        if p is None or p.id != passage_id:
            return False, "stale_passage", []
        why = check_seal_command(action, seal_id, p.cargo.seals or ())
        if why is not None:
            return False, why, []
        p.cargo.seal_busy += 1  # no release while customs is at the lock
        cmd = SealCommand(action, seal_id, authorisation, p.id, agency, key_id, nonce)
        return True, None, [cmd]

    def on_seal_changed(self, cmd: SealCommand, record: SealRecord, now: float) -> list[Action]:
        """The executor's report: the lock carried out ``cmd`` and answered with its record."""
        changed = SealChanged(
            passage_id=cmd.passage_id,
            reader=self.cargo.reader or "",
            seal_id=cmd.seal_id,
            action=cmd.action,
            state=record.state.value,
            agency=cmd.agency,
            command_nonce=cmd.nonce,
        )
        out: list[Action] = [Publish("seal.changed", changed)]
        p = self.passage
        if p is not None and p.id == cmd.passage_id:
            p.cargo.seal_busy = max(0, p.cargo.seal_busy - 1)
        if p is not None and p.id == cmd.passage_id and p.cargo.seals is not None:
            seen = seal_seen(record)
            p.cargo.seals = tuple(seen if s.seal_id == seen.seal_id else s for s in p.cargo.seals)
            if cmd.action == "remove":
                p.cargo.opened_by_command.add(cmd.seal_id)
            else:
                p.cargo.opened_by_command.discard(cmd.seal_id)
            out += self._cargo_retry(now)
        return out

    def on_seal_refused(self, cmd: SealCommand, reason: str, detail: str, now: float) -> list[Action]:
        """The executor's report: the lock (or the reader) did not carry out ``cmd``."""
        name = f"seal_{cmd.action}"
        data = (("seal_id", cmd.seal_id), ("nonce", cmd.nonce), ("refusal", reason))
        p = self.passage
        retry: list[Action] = []
        if p is not None and p.id == cmd.passage_id:
            p.cargo.seal_busy = max(0, p.cargo.seal_busy - 1)
            retry = self._cargo_retry(now)
        return [
            Audit(f"{name}_refused", cmd.key_id, detail[:300], cmd.passage_id, data),
            Publish(
                "command.rejected", CommandRejected(command=name, reason=reason, nonce=cmd.nonce, key_id=cmd.key_id)
            ),
            Publish("lane.exception", LaneException(passage_id=cmd.passage_id, kind=reason, detail=detail[:300])),
            *retry,
        ]
