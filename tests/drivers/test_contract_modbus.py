"""The lane I/O module contract over every backend, and what only Modbus devices have.

I/O module: Modbus TCP, Modbus RTU (on a simulated RS-485 line) and the virtual backend,
the same test bodies. Gate extras that only the Modbus map has (holding registers, the
controller's auto-close) and errors of the link itself (nobody listening, no such port).
The gate contract proper is in ``test_contract_gate.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from portlane.drivers.base import EdgeCounts, GateDriver, GatePosition, IoDriver, LightColour
from portlane.drivers.config import DeviceConfig
from portlane.drivers.errors import DeviceProtocolError, DeviceTimeoutError, DeviceUnavailableError
from portlane.drivers.gate_modbus import ModbusGate
from portlane.drivers.modbus import ModbusExceptionError
from portlane.drivers.registry import create
from portlane.drivers.virtual_world import VirtualWorld, virtual_world
from portlane.sim_devices.faults import FaultInjector
from portlane.sim_devices.io_module import start_io
from portlane.sim_devices.modbus_gate import free_tcp_port, start_gate
from portlane.sim_devices.world import LaneWorld, Vehicle, VehiclePosition

#: Arm physics at 1/50 of real time: a 2 s movement takes 40 ms.
TIME_FACTOR = 0.02
#: Deadline of one driver transaction in these tests (loopback answers in ~1 ms; the simulator
#: shares this process's event loop, and 0.2 s timed out healthy gate answers at load 19).
TX_TIMEOUT_S = 1.0
#: Guard around every wait.
GUARD_S = 5.0

#: Where a vehicle is, as (entry loop, in position, exit loop).
JOURNEY = [
    (VehiclePosition.AT_ENTRY, (True, False, False)),
    (VehiclePosition.IN_POSITION, (True, True, False)),
    (VehiclePosition.UNDER_ARM, (False, False, False)),
    (VehiclePosition.AT_EXIT, (False, False, True)),
    (VehiclePosition.NONE, (False, False, False)),
]


def _config(backend: str, link: dict[str, Any], **kw: Any) -> DeviceConfig:
    return DeviceConfig.model_validate({"backend": backend, "link": link, "unit": 1, "timeout_s": TX_TIMEOUT_S, **kw})


def _truck() -> Vehicle:
    return Vehicle(plates=("粤Z1234港", "AB1234"), containers=("CSQU3054383",), kind="truck")


# --------------------------------------------------------------------------- I/O module contract


@dataclass
class IoRig:
    backend: str
    device: IoDriver
    world: LaneWorld | None = None
    vworld: VirtualWorld | None = None
    faults: FaultInjector | None = None

    def place(self, position: VehiclePosition) -> None:
        """Put the vehicle at ``position`` (every input follows)."""
        levels = dict(JOURNEY)[position]
        if self.world is not None:
            w = self.world
            w.vehicle = _truck() if position != VehiclePosition.NONE else None
            w.position = position
            w.notify()
        else:
            assert self.vworld is not None
            self.vworld.set_inputs(entry_loop=levels[0], in_position=levels[1], exit_loop=levels[2])

    async def drive_through(self) -> None:
        """A vehicle arrives, passes and leaves while nobody polls the module.

        Each position lasts one turn of the event loop — the module's input scan (a task
        of its own, as the scan is a cycle of its own on a real module) sees every one; no
        poll of the driver does."""
        for position, _ in JOURNEY:
            self.place(position)
            if self.world is not None:
                await asyncio.sleep(0)  # one loop turn: the shortest pulse, not a wall-clock wait

    def light(self) -> str:
        if self.world is not None:
            return self.world.light
        assert self.vworld is not None
        return str(self.vworld.light)

    def dead(self, on: bool) -> None:
        if self.faults is not None:
            self.faults.dead = on
        else:
            assert self.vworld is not None
            self.vworld.faults("io").timeouts = 1 if on else 0


@pytest.fixture(params=["modbus_tcp", "modbus_rtu", "virtual"])
async def io(request: pytest.FixtureRequest) -> AsyncIterator[IoRig]:
    backend: str = request.param
    sim: Any = None
    if backend == "virtual":
        vworld = virtual_world("t1")
        vworld.light = LightColour.RED
        dev = create("io", "io-t1", _config("virtual", {"kind": "virtual", "world": "t1"}))
        assert isinstance(dev, IoDriver)
        rig = IoRig(backend, dev, vworld=vworld)
    else:
        world = LaneWorld("t1", time_factor=TIME_FACTOR)
        faults = FaultInjector(seed=2)
        sim = await start_io(world, faults=faults, transport=backend.removeprefix("modbus_"))
        dev = create("io", "io-t1", _config(backend, sim.link))
        assert isinstance(dev, IoDriver)
        rig = IoRig(backend, dev, world=world, faults=faults)
    try:
        await dev.connect()
        yield rig
    finally:
        await dev.close()
        if sim is not None:
            await sim.close()


async def test_io_inputs_follow_the_vehicle(io: IoRig) -> None:
    async with asyncio.timeout(GUARD_S):
        first = await io.device.read_inputs()
        assert (first.entry_loop, first.in_position, first.exit_loop, first.light) == (False, False, False, "red")
        for position, expect in JOURNEY:
            io.place(position)
            got = await io.device.read_inputs()
            assert (got.entry_loop, got.in_position, got.exit_loop) == expect, position


@pytest.mark.parametrize("colour", list(LightColour))
async def test_io_traffic_light(io: IoRig, colour: LightColour) -> None:
    async with asyncio.timeout(GUARD_S):
        await io.device.set_light(colour)
        assert io.light() == str(colour)
        assert (await io.device.read_inputs()).light == colour


async def test_io_edge_counters_see_a_vehicle_between_two_polls(io: IoRig) -> None:
    async with asyncio.timeout(GUARD_S):
        before = await io.device.read_inputs()
        await io.drive_through()
        after = await io.device.read_inputs()
    levels = (after.entry_loop, after.in_position, after.exit_loop)
    assert levels == (before.entry_loop, before.in_position, before.exit_loop) == (False, False, False)

    def delta(now: EdgeCounts | None, then: EdgeCounts | None) -> EdgeCounts:
        assert now is not None and then is not None
        return now.since(then)

    assert delta(after.entry_loop_edges, before.entry_loop_edges) == EdgeCounts(1, 1)
    assert delta(after.in_position_edges, before.in_position_edges) == EdgeCounts(1, 1)
    assert delta(after.exit_loop_edges, before.exit_loop_edges) == EdgeCounts(1, 1)


async def test_io_dead_module_times_out_and_recovers(io: IoRig) -> None:
    io.dead(True)
    async with asyncio.timeout(GUARD_S):
        with pytest.raises(DeviceTimeoutError):
            await io.device.read_inputs()
        io.dead(False)
        assert (await io.device.read_inputs()).light == LightColour.RED
    assert io.device.counters["timeout"] == 1


# --------------------------------------------------------------------------- Modbus gate extras


@pytest.fixture(params=["modbus_tcp", "modbus_rtu"])
async def mgate(request: pytest.FixtureRequest) -> AsyncIterator[tuple[LaneWorld, ModbusGate]]:
    world = LaneWorld("t1", time_factor=TIME_FACTOR)
    sim = await start_gate(world, transport=request.param.removeprefix("modbus_"))
    dev = create("gate", "gate-t1", _config(request.param, sim.link))
    assert isinstance(dev, ModbusGate)
    await dev.connect()
    try:
        yield world, dev
    finally:
        await dev.close()
        await sim.close()


async def test_exception_responses_become_typed_errors(mgate: tuple[LaneWorld, ModbusGate]) -> None:
    _, dev = mgate
    async with asyncio.timeout(GUARD_S):
        with pytest.raises(ModbusExceptionError) as ei:
            await dev.set_auto_close(9999)  # out of range -> exception 03
        assert (ei.value.code, ei.value.name) == (3, "illegal data value")
        assert isinstance(ei.value, DeviceProtocolError)
        with pytest.raises(ModbusExceptionError) as ei:
            await dev._call(dev.link.read_input_registers(40, 2))  # not mapped -> 02
        assert (ei.value.code, ei.value.name, ei.value.function_code) == (2, "illegal data address", 4)
        assert dev.counters["protocol"] == 2
        await dev.set_auto_close(30)  # the link is still good afterwards
        assert (await dev.status()).position == GatePosition.CLOSED


async def test_motion_time_is_a_controller_setting(mgate: tuple[LaneWorld, ModbusGate]) -> None:
    w, dev = mgate
    async with asyncio.timeout(GUARD_S):
        await dev.set_open_time(3500)
        assert w.arm_move_s == 3.5
        with pytest.raises(ModbusExceptionError) as ei:
            await dev.set_open_time(100)  # below the map's 200 ms
    assert ei.value.code == 3 and w.arm_move_s == 3.5


async def test_auto_close_by_the_controller(mgate: tuple[LaneWorld, ModbusGate]) -> None:
    w, dev = mgate
    async with asyncio.timeout(GUARD_S):
        await dev.set_auto_close(1)
        await dev.open()
        await w.wait_until(lambda: w.limit_open)
        await w.wait_until(lambda: w.limit_closed)


async def test_rtu_goes_through_the_bus_scheduler_tcp_does_not(mgate: tuple[LaneWorld, ModbusGate]) -> None:
    _, dev = mgate
    async with asyncio.timeout(GUARD_S):
        await dev.status()
    if dev.config.link.kind == "tcp":
        assert dev.bus is None
    else:
        assert dev.bus is not None and dev.bus.slaves[1].outcomes["ok"] == 1
        assert dev.bus.counters["transactions"] == 1


# --------------------------------------------------------------------------- no device at all


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
    assert isinstance(dev, GateDriver)
    with pytest.raises(DeviceUnavailableError):
        await dev.connect()
    await dev.close()
