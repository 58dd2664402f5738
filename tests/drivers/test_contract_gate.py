"""The barrier gate contract, written once and run over every backend.

``rs485`` (framed protocol), ``modbus_rtu`` and ``modbus_tcp`` run against the wire-level
simulators — a real pty or TCP port, the simulator's own codec, the shared ``LaneWorld`` —
and ``virtual`` against its in-process world. Each backend is a ``Rig`` that knows how to
play the world's part (a vehicle under the arm, a dead controller, a noise burst …); the
test bodies only use ``GateDriver``'s public API and the exception tree.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from portlane.drivers.base import EdgeCounts, GateDriver, GatePosition, GateStatus, counter_delta
from portlane.drivers.config import DeviceConfig
from portlane.drivers.errors import (
    DeviceFaultError,
    DeviceProtocolError,
    DeviceTimeoutError,
    DeviceUnavailableError,
    ModbusExceptionError,
)
from portlane.drivers.registry import create
from portlane.drivers.supervisor import Backoff, DeviceHealth, Supervisor
from portlane.drivers.virtual_world import VirtualWorld, virtual_world
from portlane.sim_devices import gate_rs485, modbus_gate
from portlane.sim_devices.faults import FaultInjector
from portlane.sim_devices.world import ArmMotion, LaneWorld, Vehicle, VehiclePosition

BACKENDS = ["rs485", "modbus_rtu", "modbus_tcp", "virtual"]
#: Arm physics at 1/50 of real time: a 2 s movement takes 40 ms.
TIME_FACTOR = 0.02
#: Deadline of one transaction on the wire. A pty or loopback answers in a few ms, but the
#: simulator shares this process's event loop: 0.2 s timed out healthy answers at load 19.
TX_TIMEOUT_S = 1.0
#: Guard around every test body: never reached when things work.
GUARD_S = 10.0
BUSY = 6


@dataclass
class Rig:
    """One backend under test and the handles to play the world's part."""

    backend: str
    device: GateDriver
    world: LaneWorld | None = None  # the simulators' world
    vworld: VirtualWorld | None = None  # the virtual backend's world
    faults: FaultInjector | None = None
    closers: list[Callable[[], Any]] = field(default_factory=list)

    # -- the world
    async def settle(self) -> None:
        """Let the arm finish its movement."""
        if self.world is not None:
            w = self.world
            await w.wait_until(lambda: w.motion == ArmMotion.STILL)
        else:
            assert self.vworld is not None
            self.vworld.gate.finish_motion()

    def slow_arm(self) -> None:
        """Make a movement last long enough to be stopped part-way."""
        if self.world is not None:
            self.world.arm_move_s = 50.0  # 1 s at this time factor
        else:
            assert self.vworld is not None
            self.vworld.gate.motion_polls = 100

    def under_arm(self, present: bool) -> None:
        if self.world is not None:
            w = self.world
            w.vehicle = Vehicle(plates=("粤Z·AB12港",)) if present else None
            w.position = VehiclePosition.UNDER_ARM if present else VehiclePosition.NONE
            w.notify()
        else:
            assert self.vworld is not None
            self.vworld.set_inputs(photocell=present, safety_loop=present)

    async def drive_through(self) -> None:
        """A vehicle passes under the open arm and leaves, while nobody polls the gate."""
        if self.world is not None:
            w = self.world
            w.set_light("green")
            await w.drive(Vehicle(plates=("粤Z·AB12港",)), approach_s=0.0, pass_s=0.0, exit_s=0.0)
        else:
            assert self.vworld is not None
            self.vworld.set_inputs(photocell=True, safety_loop=True)
            self.vworld.set_inputs(photocell=False, safety_loop=False)

    def close_after_pass(self, on: bool) -> None:
        if self.world is not None:
            self.world.close_after_pass = on
        else:
            assert self.vworld is not None
            self.vworld.gate.close_after_pass = on

    def moving_up(self, st: GateStatus) -> bool:
        """The arm is on its way up and has left the closed limit."""
        if self.world is not None:
            return st.position == GatePosition.OPENING and self.world.arm_angle > 1.0
        return st.position == GatePosition.OPENING

    def arm_open(self) -> bool:
        if self.world is not None:
            return self.world.limit_open
        assert self.vworld is not None
        return self.vworld.gate.position == GatePosition.OPEN

    # -- faults
    def dead(self, on: bool) -> None:
        if self.faults is not None:
            self.faults.dead = on
        else:
            assert self.vworld is not None
            self.vworld.faults("gate").timeouts = 1 if on else 0

    def garble_next_answer(self) -> None:
        if self.faults is not None:
            self.faults.noise_storm(answers=1)
        else:
            assert self.vworld is not None
            self.vworld.faults("gate").garbled = 1

    def busy_next_request(self) -> None:
        if self.faults is not None:
            self.faults.exception_replies(BUSY, count=1)
        else:
            assert self.vworld is not None
            self.vworld.faults("gate").exceptions = 1

    def ignore_next_command(self) -> None:
        if self.faults is not None:
            self.faults.ignore_commands(1)
        else:
            assert self.vworld is not None
            self.vworld.faults("gate").ignore_commands = 1

    async def unplug(self) -> None:
        if self.faults is not None:
            await self.faults.unplug()
        else:
            assert self.vworld is not None
            self.vworld.faults("gate").unplugged = True

    async def replug(self) -> None:
        if self.faults is not None:
            await self.faults.replug()
        else:
            assert self.vworld is not None
            self.vworld.faults("gate").unplugged = False


def _config(backend: str, link: dict[str, Any]) -> DeviceConfig:
    return DeviceConfig.model_validate({"backend": backend, "link": link, "unit": 1, "timeout_s": TX_TIMEOUT_S})


@pytest.fixture(params=BACKENDS)
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    backend: str = request.param
    if backend == "virtual":
        vworld = virtual_world("t1")
        device = create("gate", "gate-t1", _config("virtual", {"kind": "virtual", "world": "t1"}))
        assert isinstance(device, GateDriver)
        r = Rig(backend, device, vworld=vworld)
    else:
        world = LaneWorld("t1", time_factor=TIME_FACTOR)
        faults = FaultInjector(seed=1)
        if backend == "rs485":
            sim: Any = await gate_rs485.start_gate(world, faults=faults)
        else:
            sim = await modbus_gate.start_gate(world, faults=faults, transport=backend.removeprefix("modbus_"))
        device = create("gate", "gate-t1", _config(backend, sim.link))
        assert isinstance(device, GateDriver)
        r = Rig(backend, device, world=world, faults=faults, closers=[sim.close])
    try:
        async with asyncio.timeout(GUARD_S):
            await device.connect()
        yield r
    finally:
        await device.close()
        for close in r.closers:
            await close()


# --------------------------------------------------------------------------- commands and status


async def test_status_at_rest_carries_the_latched_counters(rig: Rig) -> None:
    async with asyncio.timeout(GUARD_S):
        st = await rig.device.status()
    assert st.position == GatePosition.CLOSED and st.limit_closed and not st.limit_open
    assert not st.something_under_arm and not st.locked and st.fault_code == 0 and st.cycles == 0
    assert st.photocell_edges == EdgeCounts(0, 0) and st.loop_edges == EdgeCounts(0, 0)
    assert st.vehicles_passed == 0


async def test_open_then_close(rig: Rig) -> None:
    async with asyncio.timeout(GUARD_S):
        await rig.device.open()
        await rig.settle()
        st = await rig.device.status()
        assert st.position == GatePosition.OPEN and st.limit_open and not st.limit_closed
        assert st.cycles == 1
        await rig.device.close_arm()
        await rig.settle()
        st = await rig.device.status()
    assert st.position == GatePosition.CLOSED and st.limit_closed
    assert rig.device.counters["ok"] == 5 and rig.device.counters["protocol"] == 0  # connect + 4 calls


async def test_close_is_refused_with_something_under_the_arm(rig: Rig) -> None:
    async with asyncio.timeout(GUARD_S):
        await rig.device.open()
        await rig.settle()
        rig.under_arm(True)
        st = await rig.device.status()
        assert st.photocell_blocked and st.loop_occupied and st.something_under_arm
        with pytest.raises(DeviceFaultError, match=r"vehicle under the arm|obstacle"):
            await rig.device.close_arm()
        assert rig.arm_open()
        rig.under_arm(False)
        await rig.device.close_arm()  # clear again: the same controller closes
        await rig.settle()
        assert (await rig.device.status()).position == GatePosition.CLOSED
    if rig.world is not None:
        assert rig.world.arm_strikes == 0


async def test_stop_part_way(rig: Rig) -> None:
    rig.slow_arm()
    async with asyncio.timeout(GUARD_S):
        await rig.device.open()
        while not rig.moving_up(await rig.device.status()):
            pass
        await rig.device.stop()
        st = await rig.device.status()
    assert st.position == GatePosition.STOPPED
    assert not st.limit_open and not st.limit_closed


async def test_lock_refuses_open_until_unlocked(rig: Rig) -> None:
    async with asyncio.timeout(GUARD_S):
        await rig.device.lock(True)
        assert (await rig.device.status()).locked
        with pytest.raises(DeviceFaultError, match="locked"):
            await rig.device.open()
        assert not rig.arm_open()
        await rig.device.lock(False)
        assert not (await rig.device.status()).locked
        await rig.device.open()
        await rig.settle()
    assert rig.arm_open()


async def test_stuck_motor_is_reported_as_a_fault(rig: Rig) -> None:
    if rig.faults is not None:
        rig.faults.stuck = True
    else:
        assert rig.vworld is not None
        rig.vworld.gate.fault_code = 0x21  # no motor model in the virtual world: set the fault
    async with asyncio.timeout(GUARD_S):
        if rig.faults is not None:
            await rig.device.open()
        st = await rig.device.status()
    assert st.position == GatePosition.FAULT and st.fault_code == 0x21
    assert not rig.arm_open()


async def test_a_controller_fault_is_reported_and_refuses_open(rig: Rig) -> None:
    if rig.world is not None:
        rig.world.fault_code = 1  # motor overcurrent
    else:
        assert rig.vworld is not None
        rig.vworld.gate.fault_code = 1
    async with asyncio.timeout(GUARD_S):
        st = await rig.device.status()
        assert st.position == GatePosition.FAULT and st.fault_code == 1
        with pytest.raises(DeviceFaultError, match="fault") as ei:
            await rig.device.open()
    assert ei.value.code != 0 and not rig.arm_open()


# --------------------------------------------------------------------------- latched evidence (issue 11)


async def test_a_vehicle_that_passed_between_two_polls_is_counted(rig: Rig) -> None:
    async with asyncio.timeout(GUARD_S):
        await rig.device.open()
        await rig.settle()
        before = await rig.device.status()
        await rig.drive_through()  # under the arm and gone: no poll sees it
        after = await rig.device.status()
    assert not before.something_under_arm and not after.something_under_arm  # the levels missed it
    assert before.photocell_edges is not None and after.photocell_edges is not None
    assert before.loop_edges is not None and after.loop_edges is not None
    assert after.photocell_edges.since(before.photocell_edges) == EdgeCounts(1, 1)
    assert after.loop_edges.since(before.loop_edges) == EdgeCounts(1, 1)
    assert before.vehicles_passed is not None and after.vehicles_passed is not None
    assert counter_delta(after.vehicles_passed, before.vehicles_passed) == 1


async def test_the_controller_closes_after_one_vehicle_whatever_the_lane_does(rig: Rig) -> None:
    """'Close after pass': a lane controller that reacts late (a starved CPU) must not leave the
    arm up for the next vehicle. Nobody sends CLOSE here; the controller closes by itself once
    the vehicle it counted is clear of the arm, and with the setting off it does not."""
    async with asyncio.timeout(GUARD_S):
        await rig.device.open()
        await rig.settle()
        await rig.drive_through()
        while (st := await rig.device.status()).position != GatePosition.CLOSED:
            await rig.settle()  # the simulators' controller notices the pass on its own task
        assert st.vehicles_passed == 1
        assert rig.world is None or rig.world.arm_strikes == 0
        rig.close_after_pass(False)  # "hold open" mode
        await rig.device.open()
        await rig.settle()
        await rig.drive_through()
        await rig.settle()
        st = await rig.device.status()
    assert st.position == GatePosition.OPEN and st.vehicles_passed == 2


async def test_something_under_the_closed_arm_is_no_passage(rig: Rig) -> None:
    async with asyncio.timeout(GUARD_S):
        before = await rig.device.status()
        rig.under_arm(True)  # a pedestrian at the closed arm: beam broken ...
        st = await rig.device.status()
        rig.under_arm(False)  # ... and clear again
        after = await rig.device.status()
    assert st.photocell_blocked
    assert after.photocell_edges == EdgeCounts(1, 1) and after.vehicles_passed == before.vehicles_passed == 0


# --------------------------------------------------------------------------- faults


async def test_a_silent_controller_times_out_and_is_used_again(rig: Rig) -> None:
    rig.dead(True)
    async with asyncio.timeout(GUARD_S):
        with pytest.raises(DeviceTimeoutError):
            await rig.device.status()
        assert rig.device.counters["timeout"] == 1
        rig.dead(False)
        assert (await rig.device.status()).position == GatePosition.CLOSED


async def test_a_garbled_answer_is_a_protocol_error(rig: Rig) -> None:
    rig.garble_next_answer()
    async with asyncio.timeout(GUARD_S):
        with pytest.raises(DeviceProtocolError):
            await rig.device.status()
        assert rig.device.counters["protocol"] == 1
        assert (await rig.device.status()).position == GatePosition.CLOSED  # the next answer is fine


async def test_a_busy_reply_is_the_named_exception(rig: Rig) -> None:
    rig.busy_next_request()
    async with asyncio.timeout(GUARD_S):
        with pytest.raises((ModbusExceptionError, DeviceFaultError)) as ei:
            await rig.device.open()
        if rig.backend == "rs485":  # the framed protocol refuses with NAK 06 (busy)
            assert isinstance(ei.value, DeviceFaultError) and ei.value.code == BUSY
            assert "busy" in str(ei.value)
        else:  # Modbus: exception 06, named as in the Modbus specification
            assert isinstance(ei.value, ModbusExceptionError) and isinstance(ei.value, DeviceProtocolError)
            assert (ei.value.code, ei.value.name) == (BUSY, "server device busy")
        assert not rig.arm_open()
        await rig.device.open()  # the controller is free again
        await rig.settle()
    assert rig.arm_open()


async def test_an_ignored_command_shows_in_the_status(rig: Rig) -> None:
    """The controller acknowledges an open and the arm does not move: only the status tells
    (the lane must confirm movement and retry)."""
    rig.ignore_next_command()
    async with asyncio.timeout(GUARD_S):
        await rig.device.open()  # accepted ...
        await rig.settle()
        st = await rig.device.status()
        assert st.position == GatePosition.CLOSED and st.cycles == 0  # ... and nothing happened
        await rig.device.open()  # the retry works
        await rig.settle()
        st = await rig.device.status()
    assert st.position == GatePosition.OPEN and st.cycles == 1


async def test_unplugged_then_back_without_a_restart(rig: Rig) -> None:
    sup = Supervisor(
        rig.device, lambda d: d.status(), period=0.01, failures_to_offline=1, backoff=Backoff(initial=0.01, cap=0.05)
    )
    async with asyncio.timeout(GUARD_S), asyncio.TaskGroup() as tg:
        task = tg.create_task(sup.run(), name="supervise-gate")
        await sup.wait_health(DeviceHealth.ONLINE)
        await rig.unplug()
        with pytest.raises(DeviceUnavailableError):
            await rig.device.status()
        await sup.wait_health(DeviceHealth.OFFLINE)
        await rig.replug()
        await sup.wait_health(DeviceHealth.ONLINE)
        await rig.device.open()  # the same driver object works again
        await rig.settle()
        assert isinstance(sup.last_value, GateStatus)
        task.cancel()
    assert rig.arm_open() and rig.device.counters["unavailable"] >= 1
