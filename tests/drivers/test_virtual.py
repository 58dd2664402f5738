"""The virtual backend: selectable from the configuration, one world per name, every kind.

The gate and the I/O module also run the shared contracts (``test_contract_gate.py``,
``test_contract_modbus.py``); this file covers what those do not: the configuration, the
other device kinds, the world handle a lane test drives, and the faults.
"""

from __future__ import annotations

import asyncio

import pytest
from portlane.drivers import registry
from portlane.drivers.base import (
    BoardColour,
    BoardDriver,
    BoardLine,
    CameraDriver,
    EdgeCounts,
    GateDriver,
    GatePosition,
    IoDriver,
    LightColour,
    RfidDriver,
    WeighbridgeDriver,
    Weight,
)
from portlane.drivers.config import DeviceConfig, VirtualLink
from portlane.drivers.errors import DeviceFaultError, DeviceTimeoutError, DeviceUnavailableError
from portlane.drivers.scanner_device import ScannerDriver, ScannerState, ScanResult
from portlane.drivers.virtual_world import EMPTY_LANE_JPEG, Command, virtual_world

GUARD_S = 5.0


def _cfg(world: str = "c1") -> DeviceConfig:
    return DeviceConfig.model_validate({"backend": "virtual", "link": {"kind": "virtual", "world": world}})


@pytest.mark.parametrize(
    ("kind", "interface"),
    [
        ("gate", GateDriver),
        ("io", IoDriver),
        ("board", BoardDriver),
        ("rfid", RfidDriver),
        ("weighbridge", WeighbridgeDriver),
        ("camera", CameraDriver),
        ("scanner", ScannerDriver),
    ],
)
def test_every_kind_has_a_virtual_backend_selected_by_the_configuration(kind: str, interface: type) -> None:
    cfg = _cfg()
    assert isinstance(cfg.link, VirtualLink) and cfg.link.url == "virtual://c1"
    assert isinstance(registry.create(kind, f"c1/{kind}", cfg), interface)


def test_a_virtual_link_is_only_for_the_virtual_backend() -> None:
    with pytest.raises(DeviceUnavailableError, match="virtual link"):
        registry.create(
            "gate", "g", DeviceConfig.model_validate({"backend": "virtual", "link": {"kind": "tcp", "host": "h"}})
        )
    with pytest.raises(ValueError, match="wrold"):  # unknown keys are refused
        DeviceConfig.model_validate({"backend": "virtual", "link": {"kind": "virtual", "wrold": "c1"}})


async def test_devices_of_one_world_share_it_and_worlds_are_separate() -> None:
    gate = registry.create("gate", "c1/gate", _cfg("c1"))
    other = registry.create("gate", "c2/gate", _cfg("c2"))
    assert isinstance(gate, GateDriver) and isinstance(other, GateDriver)
    async with gate, other:
        await gate.open()
    assert virtual_world("c1").gate.position == GatePosition.OPEN
    assert virtual_world("c2").gate.position == GatePosition.CLOSED
    assert virtual_world("c1") is virtual_world("c1")
    assert virtual_world("c1").commands == [Command("gate", "open")]


async def test_io_inputs_edges_and_light() -> None:
    world = virtual_world("c1")
    io = registry.create("io", "c1/io", _cfg())
    assert isinstance(io, IoDriver)
    async with io:
        world.set_inputs(entry_loop=True, in_position=True)
        world.set_inputs(in_position=False)
        world.set_inputs(in_position=False)  # no change: no edge
        got = await io.read_inputs()
        assert (got.entry_loop, got.in_position, got.exit_loop) == (True, False, False)
        assert got.entry_loop_edges == EdgeCounts(1, 0) and got.in_position_edges == EdgeCounts(1, 1)
        await io.set_light(LightColour.GREEN)
    assert world.light == LightColour.GREEN and world.commands[-1] == Command("io", "light", "green")
    with pytest.raises(ValueError, match="unknown inputs"):
        world.set_inputs(entry_lop=True)


async def test_board_shows_what_the_lane_wrote() -> None:
    world = virtual_world("c1")
    board = registry.create("board", "c1/board", _cfg())
    assert isinstance(board, BoardDriver)
    lines = [BoardLine("请停车 STOP", BoardColour.RED), BoardLine("粤Z·AB12港", BoardColour.AMBER)]
    async with board:
        await board.show(lines)
        await board.show([])
    assert world.boards == [lines, []] and world.board == []


async def test_rfid_reads_what_the_test_presents() -> None:
    world = virtual_world("c1")
    rfid = registry.create("rfid", "c1/rfid", _cfg())
    assert isinstance(rfid, RfidDriver)
    async with rfid:
        assert await rfid.next_read(0.01) is None  # nothing in the field
        world.present_tag("E2801160600002054C8B1234", rssi=-55, antenna=2)
        read = await rfid.next_read(GUARD_S)
    assert read is not None and (read.tag_id, read.rssi, read.antenna) == ("E2801160600002054C8B1234", -55, 2)


async def test_weighbridge_waits_for_the_scale_to_settle() -> None:
    world = virtual_world("c1")
    scale = registry.create("weighbridge", "c1/scale", _cfg())
    assert isinstance(scale, WeighbridgeDriver)
    async with scale, asyncio.timeout(GUARD_S):
        world.set_weight(31260, stable=False)
        assert await scale.read_weight() == Weight(31260, False)
        waiting = asyncio.create_task(scale.wait_stable(GUARD_S), name="wait-stable")
        await asyncio.sleep(0)  # one loop turn: the task reads the rocking scale and waits for a change
        assert not waiting.done()
        world.set_weight(31240, stable=True)
        assert await waiting == Weight(31240, True)
        with pytest.raises(DeviceTimeoutError):
            world.set_weight(31240, stable=False)
            await scale.read_weight()
            await scale.wait_stable(0.01)  # the platform never settles


async def test_camera_returns_the_picture_of_its_id() -> None:
    world = virtual_world("c1")
    front = registry.create("camera", "c1/camera:plate_front", _cfg())
    rear = registry.create("camera", "c1/camera:plate_rear", _cfg())
    assert isinstance(front, CameraDriver) and isinstance(rear, CameraDriver)
    world.pictures["c1/camera:plate_front"] = b"\xff\xd8front\xff\xd9"
    async with front, rear:
        assert (await front.snapshot()).jpeg == b"\xff\xd8front\xff\xd9"
        frame = await rear.snapshot()
    assert (
        frame.jpeg == EMPTY_LANE_JPEG and frame.jpeg.startswith(b"\xff\xd8") and frame.camera == "c1/camera:plate_rear"
    )


async def test_scanner_runs_a_scan_the_test_completes() -> None:
    world = virtual_world("xray1")
    scanner = registry.create("scanner", "xray1", _cfg("xray1"))
    assert isinstance(scanner, ScannerDriver)
    async with scanner:
        await scanner.start(vehicle_ref="CSQU3054383", lane=1, seq=7)
        st = await scanner.status()
        assert st.state == ScannerState.SCANNING and st.radiation_on and st.scan_id == 1
        world.scanner.complete(ScanResult.YELLOW)
        st = await scanner.status()
        assert st.state == ScannerState.COMPLETE and st.result == ScanResult.YELLOW and not st.radiation_on
        world.scanner.zone_clear = False
        with pytest.raises(DeviceFaultError, match="exclusion zone"):
            await scanner.start(vehicle_ref="MSKU0539301", lane=1, seq=8)
    assert world.commands == [Command("scanner", "start", ("CSQU3054383", 1, 7))]


async def test_gate_motion_takes_the_polls_the_test_asks_for() -> None:
    world = virtual_world("c1")
    world.gate.motion_polls = 2
    gate = registry.create("gate", "c1/gate", _cfg())
    assert isinstance(gate, GateDriver)
    async with gate:
        await gate.open()
        positions = [(await gate.status()).position for _ in range(3)]
        world.set_inputs(photocell=True)
        with pytest.raises(DeviceFaultError, match="obstacle"):
            await gate.close_arm()
    assert positions == [GatePosition.OPENING, GatePosition.OPEN, GatePosition.OPEN]


async def test_faults_are_counted_like_real_ones() -> None:
    world = virtual_world("c1")
    gate = registry.create("gate", "c1/gate", _cfg())
    assert isinstance(gate, GateDriver)
    world.faults("gate").unplugged = True
    with pytest.raises(DeviceUnavailableError):
        await gate.connect()
    world.faults("gate").unplugged = False
    async with gate:
        world.faults("gate").timeouts = 2
        for _ in range(2):
            with pytest.raises(DeviceTimeoutError):
                await gate.status()
        await gate.status()
    assert (gate.counters["unavailable"], gate.counters["timeout"], gate.counters["ok"]) == (1, 2, 2)
