"""The physical lane that simulators share: one vehicle at a time, a barrier arm, loops,
photocell, traffic light, board and scale.

Every wire simulator of a lane reads and changes one ``LaneWorld``; the traffic generator
drives vehicles through it. Times are physical (a barrier arm takes 1–3 s to move) scaled by
``time_factor`` so that a demo or a test can run a lane faster than life.

Safety is modelled the way real controllers do it: a closing arm reverses when the photocell
or the safety loop is occupied, and (``close_after_pass``) the arm comes down by itself once a
vehicle has passed under it. ``arm_strikes`` counts the times an arm nevertheless came
down onto a vehicle — it must stay 0.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import time
from dataclasses import dataclass, field

__all__ = ["ArmMotion", "LaneWorld", "Radiation", "Seal", "Vehicle", "VehiclePosition"]

#: Tick of the arm's motion model. 20 ms resolves a 1 s movement into 50 steps.
TICK_S = 0.02


class VehiclePosition(enum.StrEnum):
    NONE = "none"
    AT_ENTRY = "at_entry"  # on the entry loop, not yet fully in the identification zone
    IN_POSITION = "in_position"  # stopped in front of the arm, entry loop + in-position photocells
    UNDER_ARM = "under_arm"  # photocell and safety loop occupied
    AT_EXIT = "at_exit"  # on the exit loop, clear of the arm


class ArmMotion(enum.StrEnum):
    STILL = "still"
    OPENING = "opening"
    CLOSING = "closing"


@dataclass(frozen=True)
class Radiation:
    """What a vehicle's load adds to the radiation portal's panels as it passes, in counts per
    second over all panels. ``label`` is what the secondary inspection would find (the portal
    cannot tell): ``norm`` (naturally radioactive cargo: ceramics, fertiliser, granite — an
    innocent alarm), ``medical`` (a patient or isotopes), ``threat`` (a real source)."""

    gamma_cps: float = 0.0
    neutron_cps: float = 0.0
    label: str = "norm"


@dataclass
class Seal:
    """An ISO 18185 e-seal, or a cross-boundary e-lock (``elock``), on the vehicle's container.

    ``state`` sealed | opened | tampered; ``route`` for e-locks: on_route | off_route | no_fix;
    ``authorisation`` is the code the lock accepts to be applied or removed (customs' secret).
    """

    manufacturer: int
    tag: int
    elock: bool = False
    state: str = "sealed"
    sealed_at: datetime.datetime | None = None
    opened_at: datetime.datetime | None = None
    battery_pct: int | None = 87
    route: str = "on_route"
    authorisation: str = ""

    @property
    def seal_id(self) -> str:
        return f"{self.manufacturer:04X}-{self.tag:08X}"


@dataclass
class Vehicle:
    plates: tuple[str, ...]  # first is the main plate; cross-boundary vehicles carry two
    tag_id: str = ""
    containers: tuple[str, ...] = ()
    container_types: tuple[str, ...] = ()  # each box's ISO 6346 size/type code, painted under its number
    weight_kg: int = 1500
    kind: str = "car"  # car | truck
    vid: str = ""
    radiation: Radiation | None = None  # a load the radiation portal sees (None: background only)
    seals: tuple[Seal, ...] = ()  # e-seals / e-locks on its containers


@dataclass
class LaneWorld:
    lane_id: str
    time_factor: float = 1.0
    arm_move_s: float = 2.0  # physical time for a full 0..90 degree movement
    arm_angle: float = 0.0  # 0 closed, 90 open
    motion: ArmMotion = ArmMotion.STILL
    locked: bool = False  # locked closed: open commands are refused
    stuck: bool = False  # fault injection: the motor does not move
    # Controller setting "close after pass" (车过落杆), on in lane installations: the arm comes
    # down by itself once a vehicle has gone under it and cleared the photocell, so that one
    # opening lets one vehicle through however late the lane controller reacts. Off models a
    # controller left in "hold open" mode (the lane's own tailgating check is then all there is).
    close_after_pass: bool = True
    fault_code: int = 0
    cycles: int = 0
    arm_strikes: int = 0
    light: str = "red"
    board: list[tuple[str, str]] = field(default_factory=list)
    vehicle: Vehicle | None = None
    position: VehiclePosition = VehiclePosition.NONE
    scale_kg: float = 0.0
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ sensors
    @property
    def entry_loop(self) -> bool:
        return self.position in (VehiclePosition.AT_ENTRY, VehiclePosition.IN_POSITION)

    @property
    def in_portal(self) -> bool:
        """The vehicle is between the radiation portal's pillars: the portal stands on the
        approach, so a vehicle passes through it on its way to the stop line."""
        return self.position == VehiclePosition.AT_ENTRY

    @property
    def in_position(self) -> bool:
        return self.position == VehiclePosition.IN_POSITION

    @property
    def photocell_blocked(self) -> bool:
        return self.position == VehiclePosition.UNDER_ARM

    @property
    def safety_loop(self) -> bool:
        return self.position == VehiclePosition.UNDER_ARM

    @property
    def exit_loop(self) -> bool:
        return self.position == VehiclePosition.AT_EXIT

    @property
    def limit_open(self) -> bool:
        return self.arm_angle >= 90.0

    @property
    def limit_closed(self) -> bool:
        return self.arm_angle <= 0.0

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_factor

    # ------------------------------------------------------------------ change notification
    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, predicate: object, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until ``predicate()`` is true (checked on every change); TimeoutError after
        ``timeout`` s (the traffic generator's drivers give up after a while)."""
        assert callable(predicate)
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

    # ------------------------------------------------------------------ actuators
    def command_open(self) -> bool:
        if self.locked or self.fault_code:
            return False
        if self.arm_angle < 90.0:
            self.motion = ArmMotion.OPENING
        self.notify()
        return True

    def command_close(self) -> bool:
        if self.photocell_blocked or self.safety_loop:
            # A real controller refuses to close onto a vehicle.
            return False
        if self.arm_angle > 0.0:
            self.motion = ArmMotion.CLOSING
        self.notify()
        return True

    def command_stop(self) -> None:
        self.motion = ArmMotion.STILL
        self.notify()

    def set_light(self, colour: str) -> None:
        if colour != self.light:
            self.light = colour
            self.notify()

    def set_board(self, lines: list[tuple[str, str]]) -> None:
        self.board = list(lines)
        self.notify()

    # ------------------------------------------------------------------ physics
    def step(self, dt: float) -> None:
        """Advance the arm by ``dt`` real seconds."""
        if self.motion == ArmMotion.STILL or self.stuck:
            return
        rate = 90.0 / max(self.scaled(self.arm_move_s), 1e-6)
        if self.motion == ArmMotion.OPENING:
            self.arm_angle = min(90.0, self.arm_angle + rate * dt)
            if self.arm_angle >= 90.0:
                self.motion = ArmMotion.STILL
                self.cycles += 1
            self.notify()
        elif self.motion == ArmMotion.CLOSING:
            if self.photocell_blocked or self.safety_loop:
                # Safety reversal, as EN 12453 asks of powered barriers.
                self.motion = ArmMotion.OPENING
                self.notify()
                return
            self.arm_angle = max(0.0, self.arm_angle - rate * dt)
            if self.arm_angle <= 0.0:
                self.motion = ArmMotion.STILL
            self.notify()

    async def run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            self.step(now - last)
            last = now

    # ------------------------------------------------------------------ traffic
    async def drive(
        self,
        vehicle: Vehicle,
        *,
        approach_s: float = 1.5,
        pull_off_s: float = 1.5,
        pass_s: float = 2.0,
        exit_s: float = 1.5,
        give_up_s: float | None = None,
    ) -> bool:
        """Drive one vehicle through the lane. Returns True when it passed the barrier,
        False when it gave up waiting (``give_up_s``) and was taken away (manual handling).

        ``pull_off_s``: from the green light to the arm — the driver at the stop line reacts,
        moves off and rolls up to the arm; a light that turns red or an arm that starts down
        meanwhile stops him there (a release taken back in that time holds the vehicle)."""
        self.vehicle = vehicle
        self.position = VehiclePosition.AT_ENTRY
        self.notify()
        await asyncio.sleep(self.scaled(approach_s))
        self.position = VehiclePosition.IN_POSITION
        self.scale_kg = float(vehicle.weight_kg)
        self.notify()
        deadline = None if give_up_s is None else asyncio.get_running_loop().time() + give_up_s
        try:
            while True:
                # Drivers go on green with the arm up; a red light with an open arm is not an invitation.
                left = None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())
                await self.wait_until(lambda: self.limit_open and self.light == "green", timeout=left)
                await asyncio.sleep(self.scaled(pull_off_s))
                if self.limit_open and self.light == "green":
                    break
        except TimeoutError:
            self._leave()
            return False
        self.position = VehiclePosition.UNDER_ARM
        self.scale_kg = 0.0
        self.notify()
        await asyncio.sleep(self.scaled(pass_s))
        if self.arm_angle < 45.0:
            self.arm_strikes += 1
        self.position = VehiclePosition.AT_EXIT
        self.notify()
        await asyncio.sleep(self.scaled(exit_s))
        self._leave()
        return True

    def _leave(self) -> None:
        self.vehicle = None
        self.position = VehiclePosition.NONE
        self.scale_kg = 0.0
        self.notify()
