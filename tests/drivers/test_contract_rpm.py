"""The radiation portal contract, written once and run over every backend.

``rapiscan`` runs against the wire-level simulator (a real TCP socket, the simulator's own
line encoder, Poisson counts, the portal's own alarm decision, occupancy from the vehicle's
position in the ``LaneWorld``), ``virtual`` against its in-process world. Each backend is a
``Rig`` that plays the world's part (a vehicle through the portal, a stuck sensor, a pulled
cable, a noise burst); the test bodies use only ``RpmDriver``'s public API and the
exception tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from portlane.drivers.cargo_devices import RadiationFault, RpmDriver, RpmOccupancy, RpmStatus
from portlane.drivers.config import DeviceConfig
from portlane.drivers.errors import DeviceError, DeviceProtocolError, DeviceTimeoutError, DeviceUnavailableError
from portlane.drivers.registry import create
from portlane.drivers.rpm_rapiscan import RapiscanRpm
from portlane.drivers.virtual_world import VirtualWorld, virtual_world
from portlane.sim_devices.faults import FaultInjector
from portlane.sim_devices.rpm import RpmSim, start_rpm
from portlane.sim_devices.world import LaneWorld, Radiation, Vehicle, VehiclePosition

BACKENDS = ["rapiscan", "virtual"]
#: Portal samples at 1/20 of real time: a 200 ms sample every 10 ms.
TIME_FACTOR = 0.05
GUARD_S = 10.0
#: Samples a vehicle spends in the portal (2 s at a walking pace).
DWELL_SAMPLES = 10
#: Shorter than any real bound, so that the tests see these states without waiting.
MAX_OCCUPANCY_S = 4.0
SILENCE_S = 0.6
#: Loads: a clean truck, naturally radioactive cargo (an innocent alarm), a real source.
CLEAN = None
NORM = Radiation(gamma_cps=1200.0, neutron_cps=0.0, label="norm")
THREAT = Radiation(gamma_cps=4000.0, neutron_cps=40.0, label="threat")


@dataclass
class Rig:
    backend: str
    device: RpmDriver
    world: LaneWorld | None = None
    sim: RpmSim | None = None
    vworld: VirtualWorld | None = None
    faults: FaultInjector | None = None
    closers: list[Callable[[], Any]] = field(default_factory=list)

    async def enter(self, load: Radiation | None) -> None:
        """A vehicle drives into the portal and stays there for a while."""
        if self.world is not None:
            assert self.sim is not None
            w, sim = self.world, self.sim
            w.vehicle = Vehicle(plates=("粤Z·AB12港",), kind="truck", radiation=load, vid="t")
            w.position = VehiclePosition.AT_ENTRY
            w.notify()
            start = sim.samples
            await w.wait_until(lambda: sim.samples >= start + DWELL_SAMPLES)
        else:
            assert self.vworld is not None
            self.vworld.rpm.enter()

    async def leave(self, load: Radiation | None) -> None:
        if self.world is not None:
            self.world.position = VehiclePosition.IN_POSITION
            self.world.notify()
        else:
            assert self.vworld is not None
            # The virtual portal has no physics: it reports what the real one would conclude.
            self.vworld.rpm.leave(
                gamma_cps=load.gamma_cps if load else 0.0,
                neutron_cps=load.neutron_cps if load else 0.0,
                gamma_alarm=load is not None,
                neutron_alarm=load is not None and load.neutron_cps > 0,
            )

    async def pass_vehicle(self, load: Radiation | None) -> RpmOccupancy:
        await self.enter(load)
        await self.leave(load)
        occ = await self.device.next_occupancy(GUARD_S)
        assert occ is not None
        return occ

    # -- faults
    async def stick(self) -> None:
        """The occupancy sensor sticks: occupied, and it never ends."""
        if self.faults is not None:
            self.faults.stuck = True
        else:
            assert self.vworld is not None
            self.vworld.rpm.enter()
            self.vworld.rpm.occupied_for_s = MAX_OCCUPANCY_S + 1
            self.vworld.rpm.faults.add(RadiationFault.OCCUPANCY_STUCK)

    def background_fault(self, fault: RadiationFault | None) -> None:
        if self.sim is not None:
            self.sim.background_fault = fault.value if fault else ""
        else:
            assert self.vworld is not None
            self.vworld.rpm.faults = {fault} if fault else set()

    def tamper(self, on: bool) -> None:
        if self.sim is not None:
            self.sim.tamper = on
        else:
            assert self.vworld is not None
            self.vworld.rpm.tamper = on

    def garble(self) -> None:
        if self.faults is not None:
            self.faults.noise_storm(answers=6)
        else:
            assert self.vworld is not None
            self.vworld.faults("rpm").garbled = 1

    def silence(self, on: bool) -> None:
        if self.faults is not None:
            self.faults.dead = on
        else:
            assert self.vworld is not None
            self.vworld.faults("rpm").timeouts = 1 if on else 0

    async def unplug(self) -> None:
        if self.faults is not None:
            await self.faults.unplug()
        else:
            assert self.vworld is not None
            self.vworld.faults("rpm").unplugged = True

    async def replug(self) -> None:
        if self.faults is not None:
            await self.faults.replug()
        else:
            assert self.vworld is not None
            self.vworld.faults("rpm").unplugged = False


async def _until(
    rig: Rig, pred: Callable[[RpmStatus], bool], *, tolerate: tuple[type[DeviceError], ...] = (DeviceTimeoutError,)
) -> RpmStatus:
    """Poll the portal until its status satisfies ``pred``, waiting on the world between polls
    (the simulator notifies it on every sample and background line). A timeout is tolerated by
    default: the simulator shares the test's event loop, so a loop held up past ``SILENCE_S`` on a
    loaded machine silences the portal too (the silence tests call ``status`` themselves)."""
    while True:
        try:
            st = await rig.device.status()
        except tolerate:
            pass
        else:
            if pred(st):
                return st
        if rig.world is not None:
            w = rig.world
            changed = w._changed
            await changed.wait()
        else:
            await asyncio.sleep(0)


@pytest.fixture(params=BACKENDS)
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    backend: str = request.param
    if backend == "virtual":
        cfg = DeviceConfig.model_validate({"backend": "virtual", "link": {"kind": "virtual", "world": "r1"}})
        device = create("rpm", "r1/rpm", cfg)
        assert isinstance(device, RpmDriver)
        r = Rig(backend, device, vworld=virtual_world("r1"))
    else:
        world = LaneWorld("r1", time_factor=TIME_FACTOR)
        faults = FaultInjector(seed=3)
        h = await start_rpm(world, faults=faults, seed=5)
        cfg = DeviceConfig.model_validate({"backend": "rapiscan", "link": h.link, "timeout_s": 0.5})
        device = create("rpm", "r1/rpm", cfg, max_occupancy_s=MAX_OCCUPANCY_S, silence_s=SILENCE_S)
        assert isinstance(device, RapiscanRpm)
        r = Rig(backend, device, world=world, sim=h.sim, faults=faults, closers=[h.close])
    try:
        async with asyncio.timeout(GUARD_S):
            await device.connect()
            if r.world is not None:  # the first background lines have arrived
                await _until(r, lambda st: len(st.gamma_background_cps) == 4 and len(st.neutron_background_cps) == 4)
        yield r
    finally:
        await device.close()
        for close in r.closers:
            await close()


# --------------------------------------------------------------------------- occupancies


async def test_idle_portal_reports_its_backgrounds(rig: Rig) -> None:
    async with asyncio.timeout(GUARD_S):
        st = await rig.device.status()
    assert not st.occupied and st.trustworthy and st.occupancy_count == 0
    assert len(st.gamma_background_cps) == 4 and all(1000 < b < 4000 for b in st.gamma_background_cps)
    assert len(st.neutron_background_cps) == 4 and all(0 <= b < 20 for b in st.neutron_background_cps)
    assert st.nsigma == 4.0


async def test_a_clean_truck_gives_one_occupancy_without_alarm(rig: Rig) -> None:
    async with asyncio.timeout(GUARD_S):
        occ = await rig.pass_vehicle(CLEAN)
        assert await rig.device.next_occupancy(0.05) is None  # one vehicle, one occupancy
        st = await rig.device.status()
    assert not occ.alarm and occ.number == st.occupancy_count == 1 and not st.occupied
    assert len(occ.gamma_counts) == 4 and len(occ.neutron_counts) == 4 and occ.samples >= 1
    live = occ.live_s
    # background only: each panel counted about its background rate over the live time
    for counts, bg in zip(occ.gamma_counts, occ.gamma_background_cps, strict=True):
        assert abs(counts - bg * live) < 6 * (bg * live) ** 0.5 + 0.1 * bg * live
    assert occ.gamma_sigma < 4.0


async def test_a_norm_load_raises_the_gamma_alarm_only(rig: Rig) -> None:
    async with asyncio.timeout(GUARD_S):
        occ = await rig.pass_vehicle(NORM)
    assert occ.gamma_alarm and not occ.neutron_alarm and occ.alarm
    assert occ.nsigma is not None and occ.gamma_sigma > occ.nsigma


async def test_a_real_source_raises_gamma_and_neutron_alarms(rig: Rig) -> None:
    async with asyncio.timeout(GUARD_S):
        clean = await rig.pass_vehicle(CLEAN)
        occ = await rig.pass_vehicle(THREAT)
    assert occ.gamma_alarm and occ.neutron_alarm and occ.number == clean.number + 1
    assert sum(occ.neutron_counts) > sum(clean.neutron_counts)


async def test_occupancy_in_progress_is_visible_and_has_no_verdict_yet(rig: Rig) -> None:
    async with asyncio.timeout(GUARD_S):
        await rig.enter(CLEAN)
        st = await _until(rig, lambda s: s.occupied)
        assert st.occupied_for_s >= 0 and RadiationFault.OCCUPANCY_STUCK not in st.faults
        assert await rig.device.next_occupancy(0.05) is None  # no verdict while occupied
        await rig.leave(CLEAN)
        occ = await rig.device.next_occupancy(GUARD_S)
    assert occ is not None and not occ.alarm


# --------------------------------------------------------------------------- faults


async def test_a_stuck_occupancy_sensor_is_a_fault_and_never_a_verdict(rig: Rig) -> None:
    async with asyncio.timeout(GUARD_S):
        await rig.stick()
        st = await _until(rig, lambda s: RadiationFault.OCCUPANCY_STUCK in s.faults)
        assert st.occupied and not st.trustworthy and st.occupied_for_s > MAX_OCCUPANCY_S
        assert await rig.device.next_occupancy(0.05) is None


@pytest.mark.parametrize("fault", [RadiationFault.GAMMA_HIGH, RadiationFault.GAMMA_LOW, RadiationFault.NEUTRON_HIGH])
async def test_background_faults_and_tamper_are_reported_and_clear(rig: Rig, fault: RadiationFault) -> None:
    async with asyncio.timeout(GUARD_S):
        rig.background_fault(fault)
        st = await _until(rig, lambda s: fault in s.faults)
        assert not st.trustworthy
        rig.background_fault(None)
        await _until(rig, lambda s: not s.faults)
        rig.tamper(True)
        st = await _until(rig, lambda s: s.tamper)
        assert not st.trustworthy
        rig.tamper(False)
        st = await _until(rig, lambda s: not s.tamper)
    assert st.trustworthy


async def test_garbled_data_is_a_protocol_error_at_most_and_the_next_vehicle_is_reported(rig: Rig) -> None:
    async with asyncio.timeout(GUARD_S):
        rig.garble()
        if isinstance(rig.device, RapiscanRpm):
            dev = rig.device
            assert rig.world is not None
            await rig.world.wait_until(lambda: dev.stats.bad_frames >= 1)  # the burst reached the driver
        with contextlib.suppress(DeviceProtocolError):
            await rig.device.status()
        occ = await rig.pass_vehicle(CLEAN)
    assert not occ.alarm and occ.samples >= 1


async def test_a_silent_portal_times_out_and_recovers(rig: Rig) -> None:
    async with asyncio.timeout(GUARD_S):
        rig.silence(True)
        while True:
            try:
                await rig.device.status()
            except DeviceTimeoutError:
                break
            if rig.world is not None:
                await asyncio.sleep(SILENCE_S / 3)  # the portal's silence is measured in time
        rig.silence(False)
        st = await _until(rig, lambda s: not s.occupied)
    assert st.trustworthy and rig.device.counters["timeout"] >= 1


async def test_a_stalled_event_loop_is_not_a_silent_portal() -> None:
    """A lane's loop held up longer than the silence bound (a loaded 2-core machine) has not read
    the portal's records yet; they wait in the socket, so the portal is not silent. The portal
    runs in its own thread here, as a real one runs on its own, and keeps sending through the
    stall."""
    ready, stop = threading.Event(), threading.Event()
    links: list[dict[str, object]] = []

    async def portal() -> None:
        h = await start_rpm(LaneWorld("r1", time_factor=TIME_FACTOR), faults=FaultInjector(seed=3), seed=5)
        links.append(h.link)
        ready.set()
        await asyncio.to_thread(stop.wait)
        await h.close()

    thread = threading.Thread(target=asyncio.run, args=(portal(),), daemon=True)
    thread.start()
    try:
        assert await asyncio.to_thread(ready.wait, GUARD_S)
        cfg = DeviceConfig.model_validate({"backend": "rapiscan", "link": links[0], "timeout_s": 0.5})
        device = create("rpm", "r1/rpm", cfg, max_occupancy_s=MAX_OCCUPANCY_S, silence_s=SILENCE_S)
        await device.connect()
        try:
            time.sleep(SILENCE_S * 1.5)  # noqa: ASYNC251 (the stall under test, not a wait for something)
            st = await device.status()
        finally:
            await device.close()
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, GUARD_S)
    assert st.trustworthy and len(st.gamma_background_cps) == 4 and device.counters["timeout"] == 0


async def test_a_pulled_cable_makes_the_portal_unavailable_until_it_is_back(rig: Rig) -> None:
    async with asyncio.timeout(GUARD_S):
        await rig.unplug()
        with pytest.raises(DeviceUnavailableError):
            while True:  # the driver learns of the cut from the socket
                await rig.device.status()
                await asyncio.sleep(0.01)
        await rig.device.disconnect()
        with pytest.raises(DeviceUnavailableError):
            await rig.device.connect()
        await rig.replug()
        await rig.device.connect()
        if rig.world is not None:
            await _until(rig, lambda s: len(s.gamma_background_cps) == 4)
        occ = await rig.pass_vehicle(CLEAN)
    assert not occ.alarm
    assert rig.device.counters["unavailable"] >= 2


async def test_only_device_errors_escape(rig: Rig) -> None:
    """Whatever the portal does, a caller sees results or DeviceErrors (the contract of every driver)."""
    async with asyncio.timeout(GUARD_S):
        rig.garble()
        for _ in range(5):
            with contextlib.suppress(DeviceError):
                await rig.device.status()
