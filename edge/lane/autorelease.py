"""The lane's own decisions on pre-decisions (计算机自动核放) — part of ``LaneLogic``, pure.

``LaneLogic`` inherits these rules; they act on its passage through its own helpers. The book
and the matching rules are ``predecisions.py``; this module says what the passage does with the
answer:

* **on identification** a :class:`~.predecision_rules.FullMatch` with verdict ``release`` releases
  the vehicle at once (no round trip: the platform may be unreachable), ``inspect`` queues the
  one scan at once; the pre-decisions are marked used first, the audit entry (ids, signing keys,
  digests of the signed commands) is written before the gate moves, and one ``passage.decided``
  per agency says ``basis: predecision``. Otherwise ``vehicle.identified`` carries the named
  reasons and the passage waits for the platform as without pre-decisions.
* **a control order** (``revoke``) wins at every stage before the vehicle has moved: a release
  on pre-decisions whose vehicle has not reached the arm is withdrawn (the gate authority is
  taken back, so the executor refuses an open still queued; the arm comes down; the passage
  waits for an officer with reason ``revoked``). Once the vehicle is under or past the arm it
  is too late: ``lane.exception revoked_after_release``, as for a passage completed before.
* **the second guard**: :meth:`predecisions_hold` — checked by ``authorises_open`` right before
  an open frame — requires every pre-decision of the passage to be in the book, used by this
  passage and not revoked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from portlane.edge.contract.events import LaneException, PassageDecided, PredecisionRefusal

from .actions import Action, Audit, BoardColour, Publish, ShowBoard
from .passage import DECIDING, Identity, Passage, Sensors, Stage
from .predecision_rules import ControlOrder, Declared, FullMatch, NoMatch, Observed
from .predecisions import PredecisionBook

if TYPE_CHECKING:
    from portlane.edge.contract.events import ReleaseBasis

    from .actions import GateCause
    from .gate import GateTracker

__all__ = ["AUTO_ACTOR", "PredecisionRules"]

#: The audit log's actor for what the lane decided itself.
AUTO_ACTOR = "portlane:auto"
_WAIT: tuple[str, BoardColour] = ("请等待 PLEASE WAIT", "amber")
_STOP: tuple[str, BoardColour] = ("请停车 STOP", "red")


class PredecisionRules:
    """Mixed into ``LaneLogic``: the attributes and helpers below are the logic's."""

    predecisions: PredecisionBook

    if TYPE_CHECKING:
        lane: str
        agencies: tuple[str, ...]
        has_scanner: bool
        passage: Passage | None
        sensors: Sensors
        gate: GateTracker

        def _release(self, now: float, basis: ReleaseBasis = ...) -> list[Action]: ...
        def _queue_inspection(self, now: float) -> list[Action]: ...
        def _close(self, cause: GateCause, now: float) -> list[Action]: ...
        def _track_exit(self, t: Passage, s: Sensors, now: float) -> None: ...
        def _exception(self, p: Passage | None, kind: str, detail: str) -> Publish: ...
        def _alert_once(self, p: Passage, kind: str, detail: str, *, key: str | None = None) -> list[Action]: ...

    # ------------------------------------------------------------------ commands
    def on_predecision(self, d: Declared, now: float) -> tuple[bool, str | None, list[Action]]:
        """A verified ``predecision``: into the book (refused: expired, validity_too_long,
        conflicting_id, book_full, unknown_agency)."""
        if d.agency not in self.agencies:
            return False, "unknown_agency", []
        added = self.predecisions.add(d, now)
        return added.accepted, None if added.accepted else added.reason, []

    def on_revoke(self, order: ControlOrder, now: float) -> tuple[bool, str | None, list[Action]]:
        """A verified ``revoke``: never refused; wins over every pre-decision it covers."""
        changed = self.predecisions.revoke(order, now)
        p = self.passage
        revoked = tuple(e.declared.id for e in changed.revoked)
        data = (("agency", order.agency), ("target", order.target()), ("revoked", revoked))
        out: list[Action] = [Audit("control_order", order.key_id, order.reason, p.id if p else None, data)]
        detail = f"control order on {order.target()} ({order.agency}): {order.reason}"
        touched = {e.declared.id for e in (*changed.revoked, *changed.already_used)}
        for e in changed.already_used:
            if p is None or e.used_by != p.id:
                gone = f"{detail}; pre-decision {e.declared.id} already released this vehicle"
                late = LaneException(passage_id=e.used_by, kind="revoked_after_release", detail=gone[:300])
                out.append(Publish("lane.exception", late))
        if p is not None and touched & set(p.predecision_ids):
            out += self._withdraw(p, order, detail[:300], now)
        return True, None, out

    # ------------------------------------------------------------------ identification
    def _decide_on_predecisions(self, p: Passage, identity: Identity, now: float) -> list[Action]:
        """Right after identification: release or queue the scan on a full match; otherwise
        publish the identification with the reasons and wait for the platform."""
        result = self.predecisions.match(
            Observed.from_identity(identity), lane=self.lane, agencies=self.agencies, now=now
        )
        if isinstance(result, FullMatch) and result.verdict == "inspect" and not self.has_scanner:
            refusal = PredecisionRefusal(reason="wrong_lane", detail="an inspection declared at a lane without scanner")
            result = NoMatch((refusal,))
        plate = identity.plates[0].text if identity.plates else "????"
        if isinstance(result, NoMatch):
            event = identity.event(p.id, refusals=result.refusals)
            return [Publish("vehicle.identified", event), ShowBoard.of((plate, "green"), _WAIT)]
        self.predecisions.use(result.ids, p.id, now)
        p.predecision_ids = result.ids
        used = result.used
        kind = "automatic_release" if result.verdict == "release" else "automatic_inspection"
        evidence = (
            ("predecisions", result.ids),
            ("agencies", tuple(d.agency for d in used)),
            ("keys", tuple(d.key_id for d in used)),
            ("digests", tuple(d.digest for d in used)),
            ("vehicle", identity.vehicle_ref),
        )
        out: list[Action] = [
            Publish("vehicle.identified", identity.event(p.id, predecision_ids=result.ids)),
            Audit(kind, AUTO_ACTOR, "every agency's pre-decision matched at the lane", p.id, evidence),
        ]
        for d in used:
            p.decisions[d.agency] = d.verdict
            decided = PassageDecided(
                passage_id=p.id,
                agency=d.agency,
                decision=d.verdict,
                phase=p.phase,
                command_nonce=d.nonce,
                basis="predecision",
                predecision_id=d.id,
            )
            out.append(Publish("passage.decided", decided))
        p.stamps.setdefault("decided", now)
        if result.verdict == "release":
            return out + self._release(now, basis="predecision")
        return out + self._queue_inspection(now)

    # ------------------------------------------------------------------ the second guard
    def predecisions_hold(self, p: Passage) -> bool:
        """A release on pre-decisions still rests on them: each is in the book, used by this
        passage, and not revoked (checked again right before an open frame)."""
        if p.basis != "predecision":
            return True
        entries = [self.predecisions.entries.get(i) for i in p.predecision_ids]
        return bool(entries) and all(e is not None and e.used_by == p.id and e.revoked_by is None for e in entries)

    # ------------------------------------------------------------------ revocation of the current passage
    def _withdraw(self, p: Passage, order: ControlOrder, detail: str, now: float) -> list[Action]:
        moved = p.passed_arm or p.under_seen or self.sensors.under_arm
        # (a release on them the portal or the seals hold, cargo.py, has not opened the arm yet)
        held = p.cargo.release_waiting and p.cargo.basis == "predecision"
        if (p.basis == "predecision" and p.stage == Stage.RELEASED and not moved) or held:
            # Taken back before the vehicle moved: the executor refuses an open still queued
            # (no gate authority), the arm comes down, an officer decides.
            p.stage, p.phase, p.decisions = Stage.AWAITING_DECISION, "initial", {}
            p.cargo.release_waiting = False
            p.gate_authority = p.outcome = p.basis = None
            p.withdrawn = True
            for stamp in ("decided", "released", "gate_opened"):
                p.stamps.pop(stamp, None)
            refusal = PredecisionRefusal(reason="revoked", agency=order.agency, detail=detail)
            out: list[Action] = [
                self._exception(p, "predecision_revoked", f"release withdrawn: {detail}"[:300]),
                Publish("vehicle.identified", (p.identity or Identity()).event(p.id, refusals=(refusal,))),
                ShowBoard.of(_STOP, _WAIT),
            ]
            return out + self._close("revoke", now)
        if p.stage in (*DECIDING, Stage.INSPECTION_QUEUED, Stage.SCANNING):
            # Not released on them (an inspection queued at arrival): the platform decides after
            # the scan as always; the officer is told.
            return [self._exception(p, "predecision_revoked", detail)]
        return [self._exception(p, "revoked_after_release", detail)]

    def _withdrawn_on_sensors(self, p: Passage, s: Sensors, now: float) -> list[Action]:
        """A withdrawn release while the arm is still up (its close refused, or not yet sent):
        down as soon as nothing is under it; a vehicle that drove through anyway is on record."""
        if not p.withdrawn or p.stage not in DECIDING or self.gate.commanded != "open":
            return []
        self._track_exit(p, s, now)
        if p.passed_arm:
            p.stage, p.outcome, p.basis = Stage.EXITING, "released", "predecision"
            p.reason = "drove through before the revoked release was taken back"
            return self._alert_once(p, "revoked_after_release", p.reason)
        return [] if s.under_arm else self._close("revoke", now)

    def _recover_predecisions(self, p: Passage, now: float) -> None:
        """At start: a passage the journal holds used its pre-decisions even if the book's last
        write was lost."""
        ids = [i for i in p.predecision_ids if i in self.predecisions.entries]
        fresh = [i for i in ids if self.predecisions.entries[i].used_by is None]
        if fresh:
            self.predecisions.use(fresh, p.id, now)
