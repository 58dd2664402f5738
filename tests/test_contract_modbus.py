"""Contract tests for the Modbus devices, written once per interface and run over every
backend against the wire-level simulators (no mocks standing in for the wire).

Gate: Modbus TCP and Modbus RTU on an in-process pty pair, the same test bodies.
I/O module: Modbus TCP. Error translation: exception codes, dead slave, dead server,
server that goes away and comes back (used again by the supervisor without a restart).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from portlane.drivers.base import GateDriver, GatePosition, IoDriver, LightColour
from portlane.drivers.config import DeviceConfig
from portlane.drivers.errors import (
    DeviceFaultError,
    DeviceProtocolError,
    DeviceTimeoutError,
    DeviceUnavailableError,
)
from portlane.drivers.modbus import ModbusExceptionError
from portlane.drivers.registry import create
from portlane.drivers.supervisor import Backoff, DeviceHealth, Supervisor
from portlane.sim_devices.io_module import start_io
from portlane.sim_devices.modbus_gate import free_tcp_port, start_gate
from portlane.sim_devices.world import LaneWorld, Vehicle, VehiclePosition

#: Arm physics at 1/50 of real time: a 2 s movement takes 40 ms.
TIME_FACTOR = 0.02
#: Deadline of one driver transaction in these tests (loopback answers in ~1 ms).
TX_TIMEOUT_S = 0.3
#: Guard around every wait on the simulated world.
WAIT_S = 3.0

GATE_BACKENDS = ["modbus_tcp", "modbus_rtu"]


@dataclass
class Rig:
    world: LaneWorld
    sim: Any
    device: Any


def _config(backend: str, link: dict[str, Any], **kw: Any) -> DeviceConfig:
    return DeviceConfig.model_validate({"backend": backend, "link": link, "unit": 1, "timeout_s": TX_TIMEOUT_S, **kw})


@pytest.fixture(params=GATE_BACKENDS)
async def gate(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    world = LaneWorld("t1", time_factor=TIME_FACTOR)
    sim = await start_gate(world, transport="tcp" if request.param == "modbus_tcp" else "rtu")
    dev = create("gate", "gate-t1", _config(request.param, sim.link))
    assert isinstance(dev, GateDriver)
    await dev.connect()
    try:
        yield Rig(world, sim, dev)
    finally:
        await dev.close()
        await sim.close()


@pytest.fixture
async def io() -> AsyncIterator[Rig]:
    world = LaneWorld("t1", time_factor=TIME_FACTOR)
    sim = await start_io(world)
    dev = create("io", "io-t1", _config("modbus_tcp", sim.link))
    assert isinstance(dev, IoDriver)
    await dev.connect()
    try:
        yield Rig(world, sim, dev)
    finally:
        await dev.close()
        await sim.close()


def _truck() -> Vehicle:
    return Vehicle(plates=("粤Z1234港", "AB1234"), containers=("CSQU3054383",), kind="truck")


# --------------------------------------------------------------------------- gate contract


async def test_gate_reports_closed_at_rest(gate: Rig) -> None:
    st = await gate.device.status()
    assert st.position == GatePosition.CLOSED
    assert st.limit_closed and not st.limit_open
    assert not st.something_under_arm and not st.locked and st.fault_code == 0


async def test_gate_open_close_cycle(gate: Rig) -> None:
    w = gate.world
    await gate.device.open()
    await w.wait_until(lambda: w.limit_open, timeout=WAIT_S)
    st = await gate.device.status()
    assert st.position == GatePosition.OPEN and st.limit_open
    assert st.cycles == 1
    await gate.device.close_arm()
    await w.wait_until(lambda: w.limit_closed, timeout=WAIT_S)
    assert (await gate.device.status()).position == GatePosition.CLOSED


async def test_gate_stop_part_way(gate: Rig) -> None:
    w = gate.world
    w.arm_move_s = 50.0  # slow enough to stop part-way: 1 s at this time factor
    await gate.device.open()
    await w.wait_until(lambda: w.arm_angle > 5.0, timeout=WAIT_S)
    assert (await gate.device.status()).position == GatePosition.OPENING
    await gate.device.stop()
    st = await gate.device.status()
    assert st.position == GatePosition.STOPPED
    assert not st.limit_open and not st.limit_closed


async def test_gate_refuses_to_close_onto_a_vehicle(gate: Rig) -> None:
    w = gate.world
    await gate.device.open()
    await w.wait_until(lambda: w.limit_open, timeout=WAIT_S)
    w.vehicle, w.position = _truck(), VehiclePosition.UNDER_ARM
    w.notify()
    st = await gate.device.status()
    assert st.photocell_blocked and st.loop_occupied and st.something_under_arm
    with pytest.raises(DeviceFaultError, match="vehicle under the arm"):
        await gate.device.close_arm()
    assert w.limit_open and w.arm_strikes == 0


async def test_gate_lock_refuses_open(gate: Rig) -> None:
    await gate.device.lock(True)
    assert (await gate.device.status()).locked
    with pytest.raises(DeviceFaultError, match="locked"):
        await gate.device.open()
    await gate.device.lock(False)
    await gate.device.open()
    await gate.world.wait_until(lambda: gate.world.limit_open, timeout=WAIT_S)


async def test_gate_fault_code_is_reported(gate: Rig) -> None:
    gate.world.fault_code = 1
    st = await gate.device.status()
    assert st.position == GatePosition.FAULT and st.fault_code == 1
    with pytest.raises(DeviceFaultError) as ei:
        await gate.device.open()
    assert ei.value.code == 1


async def test_exception_response_becomes_typed_error(gate: Rig) -> None:
    with pytest.raises(ModbusExceptionError) as ei:
        await gate.device.set_auto_close(9999)  # out of range -> exception 03
    assert ei.value.code == 3 and isinstance(ei.value, DeviceProtocolError)
    with pytest.raises(ModbusExceptionError) as ei:
        await gate.device._call(gate.device.link.read_input_registers(40, 2))  # not mapped -> 02
    assert ei.value.code == 2
    assert gate.device.counters["protocol"] == 2
    await gate.device.set_auto_close(30)  # the link is still good afterwards
    assert (await gate.device.status()).position == GatePosition.CLOSED


async def test_auto_close_by_the_controller(gate: Rig) -> None:
    w = gate.world
    await gate.device.set_auto_close(1)
    await gate.device.open()
    await w.wait_until(lambda: w.limit_open, timeout=WAIT_S)
    await w.wait_until(lambda: w.limit_closed, timeout=WAIT_S)


async def test_dead_slave_times_out(gate: Rig) -> None:
    gate.sim.faults.dead = True
    with pytest.raises(DeviceTimeoutError):
        await gate.device.status()
    assert gate.device.counters["timeout"] == 1
    gate.sim.faults.dead = False


async def test_server_goes_away_and_comes_back(gate: Rig) -> None:
    sup = Supervisor(
        gate.device, lambda d: d.status(), period=0.01, failures_to_offline=1, backoff=Backoff(initial=0.01, cap=0.05)
    )
    async with asyncio.timeout(10), asyncio.TaskGroup() as tg:
        task = tg.create_task(sup.run(), name="supervisor")
        await sup.wait_health(DeviceHealth.ONLINE)
        await gate.sim.faults.unplug()  # the shared injector takes the server off the wire
        await sup.wait_health(DeviceHealth.OFFLINE)
        await gate.sim.faults.replug()
        await sup.wait_health(DeviceHealth.ONLINE)
        await gate.device.open()  # the same driver object works again
        await gate.world.wait_until(lambda: gate.world.limit_open, timeout=WAIT_S)
        task.cancel()


# --------------------------------------------------------------------------- I/O module contract


async def test_io_inputs_follow_the_vehicle(io: Rig) -> None:
    w = io.world
    first = await io.device.read_inputs()
    assert (first.entry_loop, first.in_position, first.exit_loop, first.light) == (False, False, False, LightColour.RED)
    w.vehicle = _truck()
    for pos, expect in [
        (VehiclePosition.AT_ENTRY, (True, False, False)),
        (VehiclePosition.IN_POSITION, (True, True, False)),
        (VehiclePosition.UNDER_ARM, (False, False, False)),
        (VehiclePosition.AT_EXIT, (False, False, True)),
    ]:
        w.position = pos
        got = await io.device.read_inputs()
        assert (got.entry_loop, got.in_position, got.exit_loop) == expect, pos


@pytest.mark.parametrize("colour", list(LightColour))
async def test_io_traffic_light(io: Rig, colour: LightColour) -> None:
    await io.device.set_light(colour)
    assert io.world.light == str(colour)
    assert (await io.device.read_inputs()).light == colour


async def test_io_dead_module_times_out_and_recovers(io: Rig) -> None:
    io.sim.faults.dead = True
    with pytest.raises(DeviceTimeoutError):
        await io.device.read_inputs()
    io.sim.faults.dead = False
    await io.device.disconnect()
    await io.device.connect()
    assert (await io.device.read_inputs()).light == LightColour.RED


# --------------------------------------------------------------------------- no server at all


@pytest.mark.parametrize("kind", ["gate", "io"])
async def test_nobody_listening_is_unavailable(kind: str) -> None:
    dev = create(
        kind, f"{kind}-x", _config("modbus_tcp", {"kind": "tcp", "host": "127.0.0.1", "port": free_tcp_port()})
    )
    with pytest.raises(DeviceUnavailableError):
        await dev.connect()
    assert dev.counters["unavailable"] == 1
    await dev.close()


async def test_missing_serial_port_is_unavailable() -> None:
    dev = create("gate", "gate-x", _config("modbus_rtu", {"kind": "serial", "url": "/dev/nonexistent-rtu"}))
    with pytest.raises(DeviceUnavailableError):
        await dev.connect()
    await dev.close()
