"""The shared X-ray scanner: simulator physics and the Modbus TCP driver, over the wire."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from portlane.drivers.config import DeviceConfig
from portlane.drivers.errors import DeviceFaultError
from portlane.drivers.registry import create
from portlane.drivers.scanner_device import ScannerDriver, ScannerState, ScanResult
from portlane.sim_devices.scanner import PlcState, ScannerWorld, start_scanner

#: Physics at 1/1000 of real time: warm-up 30 ms, a 10–40 s scan takes 10–40 ms.
TIME_FACTOR = 0.001
WAIT_S = 3.0


@pytest.fixture
async def rig() -> AsyncIterator[tuple[ScannerWorld, Any, ScannerDriver]]:
    world = ScannerWorld(time_factor=TIME_FACTOR, seed=7)
    sim = await start_scanner(world)
    cfg = DeviceConfig.model_validate({"backend": "modbus_tcp", "link": sim.link, "timeout_s": 0.5})
    dev = create("scanner", "xray-t", cfg)
    assert isinstance(dev, ScannerDriver)
    await dev.connect()
    await world.wait_until(lambda: world.state == PlcState.READY, timeout=WAIT_S)
    try:
        yield world, sim, dev
    finally:
        await dev.close()
        await sim.close()


async def test_warms_up_then_ready() -> None:
    world = ScannerWorld(time_factor=TIME_FACTOR)
    assert world.state == PlcState.WARMING
    sim = await start_scanner(world)
    try:
        await world.wait_until(lambda: world.state == PlcState.READY, timeout=WAIT_S)
    finally:
        await sim.close()


async def test_status_over_the_wire(rig: tuple[ScannerWorld, Any, ScannerDriver]) -> None:
    _, _, dev = rig
    st = await dev.status()
    assert st.state == ScannerState.READY and st.zone_clear and not st.estop and not st.radiation_on


async def test_start_refused_with_zone_open(rig: tuple[ScannerWorld, Any, ScannerDriver]) -> None:
    world, _, dev = rig
    world.open_zone()
    st = await dev.status()
    assert st.state == ScannerState.INTERLOCKED and not st.zone_clear
    with pytest.raises(DeviceFaultError, match="exclusion zone"):
        await dev.start(vehicle_ref="CSQU3054383", lane=1, seq=1)  # the driver's own guard
    with pytest.raises(DeviceFaultError, match="refused start"):
        await dev._call(dev._start(vehicle_ref="CSQU3054383", lane=1, seq=1))  # the PLC's guard
    assert world.scans_started == 0 and not world.radiation_on
    world.clear_zone()
    assert (await dev.status()).state == ScannerState.READY


async def test_scan_reports_result_and_scan_id_increments(rig: tuple[ScannerWorld, Any, ScannerDriver]) -> None:
    world, _, dev = rig
    ids = []
    for n, forced in enumerate((ScanResult.GREEN, ScanResult.RED), start=1):
        world.forced_result = int(forced)
        await dev.start(vehicle_ref="CSQU3054383", lane=2, seq=n)
        assert world.radiation_on and world.vehicle_ref == "CSQU3054383" and world.lane == 2 and world.seq == n
        await world.wait_until(lambda: world.state == PlcState.COMPLETE, timeout=WAIT_S)
        st = await dev.status()
        assert st.state == ScannerState.COMPLETE and st.result == forced and st.progress_pct == 100
        assert not st.radiation_on and st.image_ref == f"XR{st.scan_id:08d}"
        ids.append(st.scan_id)
    assert ids[1] == ids[0] + 1


async def test_seeded_results_are_reproducible() -> None:
    def run(seed: int) -> list[int]:
        w = ScannerWorld(time_factor=0.0, warmup_s=0.0, seed=seed)
        out = []
        for _ in range(20):
            w.step(w._phase_end)
            assert w.request_scan("X", 1, 1)
            w.step(w._phase_end)
            out.append(w.result)
        return out

    assert run(3) == run(3)
    assert set(run(3)) <= {1, 2, 3}


async def test_abort_stops_radiation(rig: tuple[ScannerWorld, Any, ScannerDriver]) -> None:
    world, _, dev = rig
    world.scan_s = (1000.0, 1000.0)  # 1 s at this time factor: long enough to abort mid-scan
    await dev.start(vehicle_ref="MSKU0539301", lane=1, seq=9)
    assert (await dev.status()).radiation_on
    await dev.abort()
    assert not world.radiation_on  # cut inside the command, not on a later tick
    st = await dev.status()
    assert st.state == ScannerState.READY and not st.radiation_on and st.result == ScanResult.NONE
    with pytest.raises(DeviceFaultError, match="refused abort"):
        await dev.abort()  # nothing to abort


async def test_person_in_zone_cuts_radiation_at_once(rig: tuple[ScannerWorld, Any, ScannerDriver]) -> None:
    world, _, dev = rig
    world.scan_s = (1000.0, 1000.0)
    await dev.start(vehicle_ref="MSKU0539301", lane=1, seq=1)
    world.open_zone()
    assert not world.radiation_on
    st = await dev.status()
    assert st.state == ScannerState.FAULT and st.fault_code == 0x21 and not st.radiation_on
    world.clear_zone()
    await dev.reset()
    await world.wait_until(lambda: world.state == PlcState.READY, timeout=WAIT_S)


async def test_fault_during_scan(rig: tuple[ScannerWorld, Any, ScannerDriver]) -> None:
    world, _, dev = rig
    world.fault_during_next_scan = 0x10
    await dev.start(vehicle_ref="TGHU1234567", lane=3, seq=1)
    await world.wait_until(lambda: world.state == PlcState.FAULT, timeout=WAIT_S)
    st = await dev.status()
    assert st.state == ScannerState.FAULT and st.fault_code == 0x10 and not st.radiation_on
    with pytest.raises(DeviceFaultError) as ei:
        await dev._call(dev._start(vehicle_ref="TGHU1234567", lane=3, seq=2))
    assert ei.value.code == 0x10
    await dev.reset()
    await world.wait_until(lambda: world.state == PlcState.READY, timeout=WAIT_S)
