"""A technician's actions on the lane — part of ``LaneLogic``, pure.

Overrides open or close the gate for whatever is in the lane; the caller has validated the
operator and the reason, and the audit entry comes before the gate moves. Closing or opening
the lane for service is audited too. A lane is closed while any cause holds (``closures``): an
operator's, withdrawn only by an operator (and journalled by the daemon), or one the lane found
itself (``gate``, ``outbox``, ``journal``), withdrawn when it is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from portlane.edge.contract.events import OverrideApplied

from .actions import Action, Audit, Publish, SetLight, ShowBoard
from .passage import GATE_MAY_BE_OPEN, Passage, Sensors, Stage

if TYPE_CHECKING:
    from .actions import GateCause
    from .gate import GateTracker

__all__ = ["CLOSED", "OPERATOR", "WELCOME", "Closure", "TechnicianActions"]


@dataclass(frozen=True, slots=True)
class Closure:
    """Why the lane is closed for one cause, and who said so."""

    operator: str
    reason: str


#: The closure only an operator withdraws (``set_in_service``'s default cause).
OPERATOR = "operator"
WELCOME = ShowBoard.of(("欢迎 WELCOME", "green"))
CLOSED = ShowBoard.of(("车道关闭 LANE CLOSED", "red"))


class TechnicianActions:
    """Mixed into ``LaneLogic``: the attributes and helpers below are the logic's."""

    if TYPE_CHECKING:
        passage: Passage | None
        sensors: Sensors
        gate: GateTracker
        holding: str | None
        closures: dict[str, Closure]
        _idle_open: Passage | None

        @staticmethod
        def may_close(sensors: Sensors) -> bool: ...
        def _open(self, p: Passage | None, cause: GateCause, now: float) -> list[Action]: ...

    def override_open(self, *, operator: str, reason: str, now: float) -> list[Action]:
        """Manual override: opens the gate for whatever is in the lane. The caller has already
        validated operator and reason; the audit entry comes first."""
        p = self.passage
        pid = p.id if p else None
        out: list[Action] = [
            Audit("override", operator, reason, pid, (("action", "gate_open"),)),
            Publish(
                "override.applied",
                OverrideApplied(passage_id=pid, operator=operator, reason=reason, action="gate_open"),
            ),
        ]
        if p is not None and p.stage not in GATE_MAY_BE_OPEN:
            p.stage = Stage.RELEASED
            p.outcome = "override"
            p.gate_authority = "override"
            p.basis = "override"
            p.stamps.setdefault("released", now)
        if p is None:
            self._idle_open = Passage(id="idle-open", stage=Stage.RELEASED, stamps={"opened": now})
        self.holding = None
        return out + self._open(p, "override", now)

    def override_close(self, *, operator: str, reason: str, now: float) -> list[Action]:
        pid = self.passage.id if self.passage else None
        out: list[Action] = [Audit("override", operator, reason, pid, (("action", "gate_close"),))]
        if not self.may_close(self.sensors):
            return [*out, Audit("override_refused", operator, "something under the arm", pid)]
        self._idle_open = None
        # Published like an override open: the platform and the console see who closed the arm, and why.
        applied = OverrideApplied(passage_id=pid, operator=operator, reason=reason, action="gate_close")
        return [*out, Publish("override.applied", applied), *self.gate.close("override", pid, now)]

    @property
    def in_service(self) -> bool:
        return not self.closures

    def set_in_service(self, in_service: bool, *, operator: str, reason: str, cause: str = OPERATOR) -> list[Action]:
        """Close the lane for ``cause``, or withdraw that cause; the lane takes vehicles again only
        when no cause is left — an operator's closure is withdrawn by an operator alone, and a
        fault the lane closed for never reopens what an operator closed."""
        was = self.in_service
        if in_service:
            if cause not in self.closures:
                return []
            del self.closures[cause]
        else:
            if cause in self.closures:
                return []
            self.closures[cause] = Closure(operator, reason)
        out: list[Action] = [
            Audit("lane_opened" if in_service else "lane_closed", operator, reason, data=(("cause", cause),))
        ]
        if self.in_service != was:
            out += [WELCOME] if self.in_service else [CLOSED, SetLight("red")]
        return out

    def restore_closure(self, operator: str, reason: str) -> None:
        """At start, before any vehicle: an operator's closure the journal kept."""
        self.closures[OPERATOR] = Closure(operator, reason)
