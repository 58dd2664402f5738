"""Fault injection for the chaos suite: the knobs, their windows and counts, and what a driver
sees through them on the wire (noise storms, exception replies, ignored commands)."""

from __future__ import annotations

import asyncio

import pytest
from portlane.drivers.base import GatePosition
from portlane.drivers.config import DeviceConfig
from portlane.drivers.errors import DeviceFaultError, DeviceProtocolError, ModbusExceptionError
from portlane.drivers.gate_rs485 import Rs485Gate
from portlane.drivers.io_modbus import ModbusIo
from portlane.drivers.weighbridge_serial import SerialWeighbridge
from portlane.sim_devices.faults import FaultInjector, FaultSpecError
from portlane.sim_devices.gate_rs485 import start_gate
from portlane.sim_devices.io_module import start_io
from portlane.sim_devices.weighbridge import start_weighbridge
from portlane.sim_devices.world import LaneWorld

GUARD_S = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_parse_knows_every_knob() -> None:
    f = FaultInjector.parse(
        ["storm=2,storm_every=20", "exception=6,exception_count=3", "ignore=2,dead=3+4,seed=9", "delay=0.01"]
    )
    assert (f.storm, f.storm_every, f.exception, f.exception_count, f.ignore) == (2.0, 20.0, 6, 3, 2)
    assert f.dead_units == {3, 4} and f.seed == 9 and f.delay == 0.01
    assert FaultInjector.parse("exception=0x04,exception_s=1.5").exception_s == 1.5
    for bad, why in [
        ("storm", "needs a value"),
        ("storm=3,storm_every=2", "never ends"),
        ("ignore=-1", "counts"),
        ("thunder=1", "unknown fault 'thunder'"),
        ("drop=2", "probability"),
        ("exception=six", "bad value"),
    ]:
        with pytest.raises(FaultSpecError, match=why):
            FaultInjector.parse(bad)


def test_storms_come_and_go_on_the_clock() -> None:
    clock = Clock()
    f = FaultInjector(storm=2.0, storm_every=10.0, clock=clock)
    seen = []
    for t in (0.0, 1.9, 2.0, 9.9, 10.0, 11.5, 12.5):
        clock.now = 100.0 + t
        seen.append(f.storming())
    assert seen == [True, True, False, False, True, True, False]
    f = FaultInjector(clock=clock)
    f.noise_storm(answers=2)
    assert [f.should_garble() for _ in range(3)] == [True, True, False]
    f.noise_storm(seconds=1.0)
    assert f.storming()
    clock.now += 1.0
    assert not f.storming()


def test_exception_replies_by_count_and_by_time() -> None:
    clock = Clock()
    f = FaultInjector(clock=clock)
    f.exception_replies(6, count=2)
    assert [f.take_exception() for _ in range(3)] == [6, 6, 0]
    f.exception_replies(4, seconds=5.0)
    assert f.take_exception() == 4
    clock.now += 5.0
    assert f.take_exception() == 0
    f.exception_replies(11)  # no limit
    assert all(f.take_exception() == 11 for _ in range(10))
    assert f.counters["exceptions"] == 13


async def test_a_noise_storm_garbles_every_answer_then_the_line_is_clean() -> None:
    world = LaneWorld("c1", time_factor=0.1)
    faults = FaultInjector(seed=4)
    h = await start_gate(world, faults=faults)
    gate = Rs485Gate("gate-c1", DeviceConfig(backend="rs485", link=h.link, unit=1, timeout_s=0.2))
    try:
        async with gate, asyncio.timeout(GUARD_S):
            faults.noise_storm(answers=3)
            for _ in range(3):
                with pytest.raises(DeviceProtocolError):
                    await gate.status()
            assert (await gate.status()).position == GatePosition.CLOSED
            assert gate.bus.breaker(1).state == "closed"  # garbled answers are answers: no isolation
    finally:
        await h.close()
    assert faults.counters["storm"] == 3 and gate.counters["protocol"] == 3 and gate.counters["timeout"] == 0


async def test_a_noise_storm_reaches_streaming_devices_too() -> None:
    world = LaneWorld("c1", time_factor=0.1)
    faults = FaultInjector(seed=5)
    h = await start_weighbridge(world, faults=faults, rate_hz=50.0)
    scale = SerialWeighbridge("scale-c1", DeviceConfig(backend="serial", link=h.link))
    try:
        async with scale, asyncio.timeout(GUARD_S):
            await scale.read_weight()
            faults.noise_storm(answers=5)
            while faults.counters["storm"] < 5:  # only good frames wake a reader: none in the storm
                await scale.read_weight()
            assert (await scale.read_weight()).kg == 0  # the stream is usable again at once
    finally:
        await h.close()
    assert scale.stats.bad_frames >= 5 and scale.stats.garbage_bytes > 0


async def test_exception_replies_for_n_requests_then_normal() -> None:
    world = LaneWorld("c1")
    faults = FaultInjector(seed=6)
    h = await start_io(world, faults=faults, transport="rtu")
    io = ModbusIo("io-c1", DeviceConfig(backend="modbus_rtu", link=h.link, unit=1, timeout_s=0.2))
    try:
        async with io, asyncio.timeout(GUARD_S):
            faults.exception_replies(6, count=2)
            for _ in range(2):
                with pytest.raises(ModbusExceptionError, match="server device busy"):
                    await io.read_inputs()
            await io.read_inputs()
    finally:
        await h.close()
    assert faults.counters["exceptions"] == 2 and io.counters["protocol"] == 2 and io.counters["ok"] == 2


async def test_ignored_commands_and_busy_naks_on_the_rs485_gate() -> None:
    world = LaneWorld("c1", time_factor=0.1)
    faults = FaultInjector.parse("ignore=2")
    h = await start_gate(world, faults=faults)
    gate = Rs485Gate("gate-c1", DeviceConfig(backend="rs485", link=h.link, unit=1, timeout_s=0.2))
    try:
        async with gate, asyncio.timeout(GUARD_S):
            await gate.open()
            await gate.open()
            assert world.limit_closed and world.cycles == 0  # two acknowledged opens, no movement
            faults.exception_replies(6, count=1)
            with pytest.raises(DeviceFaultError, match="busy") as ei:
                await gate.open()
            assert ei.value.code == 6
            await gate.open()
            await world.wait_until(lambda: world.limit_open)
    finally:
        await h.close()
    assert faults.counters["ignored"] == 2
