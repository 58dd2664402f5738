"""Contract tests of the serial backends, run over real ptys against the simulators.

(The gate's contract, RS-485 included, is in ``test_contract_gate.py``.)

No mocks on the wire: each driver opens the simulator's pty path like a real port. Waits
are on world conditions and driver results, bounded by generous ``asyncio.timeout`` guards.
"""

from __future__ import annotations

import asyncio

import pytest
from portlane.drivers import registry
from portlane.drivers.base import BoardColour, BoardLine, GatePosition, LightColour, Weight
from portlane.drivers.board_serial import SerialBoard
from portlane.drivers.config import DeviceConfig
from portlane.drivers.gate_rs485 import Rs485Gate
from portlane.drivers.io_modbus import ModbusIo
from portlane.drivers.rfid_serial import SerialRfid
from portlane.drivers.weighbridge_serial import SerialWeighbridge
from portlane.sim_devices.board import start_board
from portlane.sim_devices.rfid import start_rfid
from portlane.sim_devices.weighbridge import start_weighbridge
from portlane.sim_devices.world import LaneWorld, Vehicle, VehiclePosition

GUARD_S = 10.0  # generous: a loaded CI machine, never reached when things work


@pytest.fixture
def world() -> LaneWorld:
    # arm moves 0..90 in 0.2 s: fast, yet slow enough to see OPENING on a 10 ms poll
    return LaneWorld("c1", time_factor=0.1)


# --------------------------------------------------------------------------- board


async def test_board_write_is_shown_in_the_world(world: LaneWorld) -> None:
    h = await start_board(world)
    try:
        cfg = DeviceConfig(backend="serial", link=h.link, unit=1)
        board = registry.create("board", "board-c1", cfg)
        assert isinstance(board, SerialBoard)
        async with board:
            async with asyncio.timeout(GUARD_S):
                await board.show(
                    [BoardLine("请停车 STOP", BoardColour.RED), BoardLine("粤Z·AB12港", BoardColour.AMBER)]
                )
                assert world.board == [("请停车 STOP", "red"), ("粤Z·AB12港", "amber")]
                await board.show([BoardLine("Proceed to scanner 前往查验", BoardColour.GREEN)])
                assert world.board == [("Proceed to scanner 前往查验", "green")]
                await board.show([])
                assert world.board == []
    finally:
        await h.close()


# --------------------------------------------------------------------------- rfid


async def test_tag_read_is_pushed_when_the_vehicle_is_in_position(world: LaneWorld) -> None:
    h = await start_rfid(world, heartbeat_s=0.05)
    try:
        cfg = DeviceConfig(backend="serial", link=h.link)
        rfid = registry.create("rfid", "rfid-c1", cfg)
        assert isinstance(rfid, SerialRfid)
        async with rfid:
            assert await rfid.next_read(0.2) is None  # nothing in the field: no read, no error
            world.vehicle = Vehicle(plates=("粤Z·AB12港", "AB1234"), tag_id="E2801160600002054C8B1234")
            world.position = VehiclePosition.IN_POSITION
            world.notify()
            read = await rfid.next_read(GUARD_S)
            assert read is not None and read.tag_id == "E2801160600002054C8B1234"
            assert read.antenna == 1 and -98 <= read.rssi <= -2
            assert await rfid.next_read(0.2) is None  # reported once per arrival
            assert rfid.counters["heartbeats"] > 0 and rfid.stats.bad_frames == 0
    finally:
        await h.close()


# --------------------------------------------------------------------------- weighbridge


async def test_weight_settles_to_stable(world: LaneWorld) -> None:
    h = await start_weighbridge(world, settle_s=3.0)  # 0.3 s at time factor 0.1
    try:
        cfg = DeviceConfig(backend="serial", link=h.link)
        scale = registry.create("weighbridge", "scale-c1", cfg)
        assert isinstance(scale, SerialWeighbridge)
        async with scale:
            async with asyncio.timeout(GUARD_S):
                assert await scale.wait_stable(GUARD_S) == Weight(0, True)
                world.scale_kg = 31240.0
                world.notify()
                first = await scale.read_weight()
                assert not first.stable  # the platform rocks after the truck drives on
                stable = await scale.wait_stable(GUARD_S)
                assert stable.kg == 31240 and stable.stable
        assert scale.stats.bad_frames == 0 and scale.counters["frames"] > 3
    finally:
        await h.close()


# --------------------------------------------------------------------------- a site of simulators


def _serial_site() -> dict[str, object]:
    def lane(lane_id: str, unit: int) -> dict[str, object]:
        return {
            "id": lane_id,
            "devices": {
                "gate": {
                    "backend": "rs485",
                    "unit": unit,
                    "link": {"kind": "serial", "url": "/dev/serial/by-id/GATE", "bus": "shared-485"},
                },
                "board": {"backend": "serial", "link": {"kind": "serial", "url": f"/dev/serial/by-id/B-{lane_id}"}},
                "rfid": {
                    "backend": "serial",
                    "link": {"kind": "serial", "url": f"/dev/serial/by-id/R-{lane_id}", "baudrate": 115200},
                },
                "weighbridge": {
                    "backend": "serial",
                    "link": {
                        "kind": "serial",
                        "url": f"/dev/serial/by-id/W-{lane_id}",
                        "baudrate": 9600,
                        "bytesize": 7,
                        "parity": "E",
                    },
                },
            },
        }

    site = {"site": {"id": "t"}, "lanes": [lane("c1", 1), lane("c2", 2)]}
    # lane c1's I/O module is a Modbus RTU slave on the gates' line
    site["lanes"][0]["devices"]["io"] = {  # type: ignore[index]
        "backend": "modbus_rtu",
        "unit": 3,
        "link": {"kind": "serial", "url": "/dev/serial/by-id/GATE", "bus": "shared-485"},
    }
    return site


async def test_start_site_serves_every_serial_device_and_shares_the_rs485_bus() -> None:
    """Two RS-485 gates and a Modbus RTU I/O module on one simulated line; boards, readers
    and scales on their own ports."""
    from portlane.sim_devices.catalog import SimulatorUnavailableError, load_simulator, start_site

    worlds = {"c1": LaneWorld("c1", time_factor=0.1)}
    sims = await start_site(_serial_site(), worlds, time_factor=0.1)
    try:
        lanes = sims.links["lanes"]
        assert set(worlds) == {"c1", "c2"}
        assert lanes["c1"]["gate"]["url"] == lanes["c2"]["gate"]["url"]  # one line, two addresses
        assert lanes["c1"]["gate"]["bus"] == "shared-485"
        assert lanes["c1"]["weighbridge"]["bytesize"] == 8  # ptys carry bytes, not line settings
        gates = [
            Rs485Gate(f"gate-{lane_id}", DeviceConfig(backend="rs485", link=lanes[lane_id]["gate"], unit=unit))
            for lane_id, unit in (("c1", 1), ("c2", 2))
        ]
        board = SerialBoard("board-c2", DeviceConfig(backend="serial", link=lanes["c2"]["board"]))
        assert lanes["c1"]["io"]["url"] == lanes["c1"]["gate"]["url"]
        io = ModbusIo("io-c1", DeviceConfig(backend="modbus_rtu", link=lanes["c1"]["io"], unit=3))
        async with gates[0], gates[1], board, io, asyncio.timeout(GUARD_S):
            assert gates[0].bus is gates[1].bus is io.bus
            await io.set_light(LightColour.GREEN)
            assert worlds["c1"].light == "green" and (await io.read_inputs()).light == LightColour.GREEN
            await gates[1].open()
            await worlds["c2"].wait_until(lambda: worlds["c2"].limit_open)
            assert worlds["c1"].limit_closed
            assert (await gates[0].status()).position == GatePosition.CLOSED
            await board.show([BoardLine("请停车 STOP", BoardColour.RED)])
            assert worlds["c2"].board == [("请停车 STOP", "red")] and worlds["c1"].board == []
    finally:
        await sims.close()
    with pytest.raises(SimulatorUnavailableError, match="no simulator"):
        load_simulator("teleporter")


async def test_two_devices_with_one_address_on_a_line_are_refused() -> None:
    from portlane.sim_devices.catalog import start_site

    site = _serial_site()
    site["lanes"][0]["devices"]["io"]["unit"] = 2  # type: ignore[index]  # lane c2's gate is at 2
    with pytest.raises(ValueError, match="share the RS-485 address 2 on bus 'shared-485'"):
        await start_site(site, {}, time_factor=0.1)
