"""Latched evidence, as real controllers and I/O modules keep it: edge and passage counters.

A lane that polls its devices seconds apart can miss a loop that went on and off between
two polls; the devices themselves do not, because they count edges in hardware. These
counters do the same for the simulators: a watcher task evaluates the inputs on *every*
change of the ``LaneWorld`` (``wait_until`` runs its predicate on each notification) and
counts each transition, however slowly the drivers read the registers.

Counters are 16-bit and wrap, as on the devices (ADAM-6050 / ioLogik counter mode).

* ``EdgeCounter``: rising/falling counts of named boolean signals (the I/O module's inputs).
* ``GateEvidence``: the gate controller's photocell and safety-loop edges and its
  vehicles-passed counter: +1 when the photocell clears after being blocked, with the arm
  off its closed limit at both edges (a vehicle went under the raised arm); with the world's
  ``close_after_pass`` set, the controller then brings the arm down by itself.

This is the simulators' own code, independent of the drivers' ``EdgeCounts``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .world import LaneWorld

__all__ = ["EdgeCounter", "GateEvidence"]

MODULO = 0x10000


class EdgeCounter:
    """Counts the edges of ``signals`` (name -> level) whenever ``world`` changes."""

    def __init__(self, world: LaneWorld, signals: Mapping[str, Callable[[], bool]]) -> None:
        self.world = world
        self.signals = dict(signals)
        self.levels = {name: read() for name, read in self.signals.items()}
        self.rising = dict.fromkeys(self.signals, 0)
        self.falling = dict.fromkeys(self.signals, 0)

    def _changed(self) -> bool:
        return any(read() != self.levels[name] for name, read in self.signals.items())

    def sample(self) -> None:
        """Count the transitions since the last sample (also callable from a request)."""
        for name, read in self.signals.items():
            level = read()
            if level != self.levels[name]:
                self.levels[name] = level
                if level:
                    self.rising[name] = (self.rising[name] + 1) % MODULO
                else:
                    self.falling[name] = (self.falling[name] + 1) % MODULO
                self.on_edge(name, level)

    def on_edge(self, name: str, level: bool) -> None:
        """Hook for subclasses: one input changed to ``level``."""

    async def run(self) -> None:
        while True:
            await self.world.wait_until(self._changed)
            self.sample()


class GateEvidence(EdgeCounter):
    """The gate controller's latched counters over one ``LaneWorld``."""

    def __init__(self, world: LaneWorld) -> None:
        super().__init__(
            world, {"photocell": lambda: world.photocell_blocked, "safety_loop": lambda: world.safety_loop}
        )
        self.vehicles_passed = 0
        self._blocked_with_arm_up = False

    def on_edge(self, name: str, level: bool) -> None:
        if name != "photocell":
            return
        arm_up = not self.world.limit_closed
        if level:
            self._blocked_with_arm_up = arm_up
        elif self._blocked_with_arm_up and arm_up:
            self.vehicles_passed = (self.vehicles_passed + 1) % MODULO
            self._blocked_with_arm_up = False
            if self.world.close_after_pass:
                # The controller's own "close after pass": down as soon as the vehicle is
                # through, whatever the lane controller does (the next one finds it closing).
                self.world.command_close()
