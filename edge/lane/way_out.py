"""The vehicle's way out of the lane — part of ``LaneLogic``, pure.

A starved control loop may sample seconds apart; a truck can cross the exit loop between two
samples. So the way out is judged on the devices' latched counters (``Sensors.arm_passes``,
``under_clears``, ``exit_clears``) counted from the moment the arm was told to open, on levels
only where a device has no counters; and it has deadlines (``vehicle_not_moving``, nobody drove
through, ``exit_not_seen``) so that a released vehicle never wedges the lane.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .actions import Action
from .passage import LaneTimeouts, Passage, Sensors, counted_since

if TYPE_CHECKING:
    from .actions import GateCause, Publish
    from .gate import GateTracker

__all__ = ["WayOut"]


class WayOut:
    """Mixed into ``LaneLogic``: the attributes and helpers below are the logic's."""

    if TYPE_CHECKING:
        timeouts: LaneTimeouts
        sensors: Sensors
        gate: GateTracker

        def _close(self, cause: GateCause, now: float) -> list[Action]: ...
        def _complete(self, now: float) -> list[Action]: ...
        def _exception(self, p: Passage | None, kind: str, detail: str) -> Publish: ...
        def _alert_once(self, p: Passage, kind: str, detail: str, *, key: str | None = None) -> list[Action]: ...

    def _track_exit(self, t: Passage, s: Sensors, now: float) -> None:
        """Update the evidence that the vehicle passed the arm and left the exit loop."""
        if s.under_arm:
            t.under_seen = True
        passes = counted_since(s.arm_passes, t.base_arm_passes)
        clears = counted_since(s.under_clears, t.base_under_clears)
        passed = bool(passes) or bool(clears) or (t.under_seen and not s.under_arm)
        if self._exited(t, s):
            passed = True  # on the exit loop after the arm opened: it went under the arm
        if passed and not t.passed_arm:
            t.passed_arm = True
            t.stamps.setdefault("arm_passed", now)
        if s.exit_loop and not t.exit_busy_at_open:
            t.exit_seen = True
        if not s.exit_loop:
            t.exit_busy_at_open = False  # whatever was there when the arm opened has gone

    @staticmethod
    def _exited(t: Passage, s: Sensors) -> bool:
        clears = counted_since(s.exit_clears, t.base_exit_clears)
        if clears is not None:
            # A vehicle still on the exit loop when the arm opened clears it once more first.
            return clears >= (2 if t.base_exit_clears is not None and t.exit_busy_at_open else 1) and not s.exit_loop
        return t.exit_seen and not s.exit_loop

    def _exit_deadline(self, p: Passage, now: float) -> list[Action]:
        t, s = self.timeouts, self.sensors
        opened = p.stamps.get("gate_opened", p.stamps.get("released", now))
        if not p.passed_arm and now - opened > t.exit_s:
            if s.under_arm or s.entry_loop or s.in_position:
                return self._alert_once(p, "vehicle_not_moving", f"arm open {now - opened:.0f} s, vehicle still there")
            # Nobody drove through: the vehicle was taken away by hand.
            out = self._close("exit", now)
            if out:
                p.reason = "did not drive through the open gate"
                p.outcome = "abandoned" if p.outcome is None else p.outcome
                out += self._complete(now)
            return out
        passed = p.stamps.get("arm_passed")
        if passed is not None and now - passed > t.exit_s and not s.exit_loop:
            # Past the arm, but the exit loop never reported it: do not hold the next vehicle.
            out = [self._exception(p, "exit_not_seen", f"passed the arm {now - passed:.0f} s ago, exit loop silent")]
            if self.gate.commanded == "open":
                out += self._close("exit", now)
            p.reason = "exit loop did not report the vehicle"
            return out + self._complete(now)
        return []
