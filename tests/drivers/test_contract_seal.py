"""The e-seal / e-lock reader contract, written once and run over every backend.

``serial`` runs against the wire-level simulator on a real pty (the simulator's own frame
codec, locks that want their authorisation code, seals read from the vehicle in position in
the ``LaneWorld``), ``virtual`` against its in-process world. The test bodies use only
``SealReaderDriver``'s public API and the exception tree.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from portlane.drivers.cargo_devices import RouteStatus, SealKind, SealReaderDriver, SealRecord, SealState
from portlane.drivers.config import DeviceConfig
from portlane.drivers.errors import DeviceFaultError, DeviceProtocolError, DeviceTimeoutError, DeviceUnavailableError
from portlane.drivers.registry import create
from portlane.drivers.virtual_world import VirtualWorld, virtual_world
from portlane.sim_devices.faults import FaultInjector
from portlane.sim_devices.seal_reader import start_seal_reader
from portlane.sim_devices.world import LaneWorld, Seal, Vehicle, VehiclePosition

BACKENDS = ["serial", "virtual"]
TIME_FACTOR = 0.02
#: Deadline of one transaction: a pty answers in ms, but on a loaded machine the simulator (this
#: process's event loop) can take longer than 0.3 s (healthy gate answers timed out at load 19).
TX_TIMEOUT_S = 1.0
GUARD_S = 10.0
SEALED_AT = datetime.datetime(2026, 12, 6, 7, 30, tzinfo=datetime.UTC)
CODE = "K3Y-0001"

#: The seals on the test truck: a cross-boundary e-lock, an ISO 18185 e-seal, and a lock
#: that left its corridor and a tampered seal for the reading test.
LOCK = Seal(0x0A1B, 0x00C0FFEE, elock=True, sealed_at=SEALED_AT, authorisation=CODE)
ESEAL = Seal(0x0011, 0x00000005, sealed_at=SEALED_AT, battery_pct=None)
OFF_ROUTE = Seal(0x0A1B, 0x00000777, elock=True, sealed_at=SEALED_AT, route="off_route", authorisation="K3Y-0777")
TAMPERED = Seal(0x0022, 0x00000042, state="tampered", sealed_at=SEALED_AT, battery_pct=9)


def _record(s: Seal) -> SealRecord:
    return SealRecord(
        s.manufacturer,
        s.tag,
        SealKind.ELOCK if s.elock else SealKind.ESEAL,
        SealState(s.state),
        sealed_at=s.sealed_at,
        opened_at=s.opened_at,
        battery_pct=s.battery_pct,
        battery_low=s.battery_pct is not None and s.battery_pct < 15,
        route=RouteStatus(s.route) if s.elock else None,
        rssi_dbm=-55,
    )


@dataclass
class Rig:
    backend: str
    device: SealReaderDriver
    world: LaneWorld | None = None
    vworld: VirtualWorld | None = None
    faults: FaultInjector | None = None
    closers: list[Callable[[], Any]] = field(default_factory=list)

    def truck(self, *seals: Seal) -> None:
        """A truck carrying ``seals`` stops in front of the reader."""
        fresh = [Seal(**{k: getattr(s, k) for k in s.__dataclass_fields__}) for s in seals]
        if self.world is not None:
            self.world.vehicle = Vehicle(plates=("粤Z·AB12港",), kind="truck", seals=tuple(fresh))
            self.world.position = VehiclePosition.IN_POSITION
            self.world.notify()
        else:
            assert self.vworld is not None
            self.vworld.seals.clear()
            for s in fresh:
                self.vworld.seals.place(_record(s), authorisation=s.authorisation)

    def garble_next_answer(self) -> None:
        if self.faults is not None:
            self.faults.noise_storm(answers=1)
        else:
            assert self.vworld is not None
            self.vworld.faults("seal_reader").garbled = 1

    def dead(self, on: bool) -> None:
        if self.faults is not None:
            self.faults.dead = on
        else:
            assert self.vworld is not None
            self.vworld.faults("seal_reader").timeouts = 1 if on else 0

    async def unplug(self, on: bool) -> None:
        if self.faults is not None:
            await (self.faults.unplug() if on else self.faults.replug())
        else:
            assert self.vworld is not None
            self.vworld.faults("seal_reader").unplugged = on


@pytest.fixture(params=BACKENDS)
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    backend: str = request.param
    if backend == "virtual":
        cfg = DeviceConfig.model_validate({"backend": "virtual", "link": {"kind": "virtual", "world": "s1"}})
        device = create("seal_reader", "s1/seals", cfg)
        assert isinstance(device, SealReaderDriver)
        r = Rig(backend, device, vworld=virtual_world("s1"))
    else:
        world = LaneWorld("s1", time_factor=TIME_FACTOR)
        faults = FaultInjector(seed=2)
        h = await start_seal_reader(world, faults=faults)
        cfg = DeviceConfig.model_validate({"backend": "serial", "link": h.link, "timeout_s": TX_TIMEOUT_S})
        device = create("seal_reader", "s1/seals", cfg)
        assert isinstance(device, SealReaderDriver)
        r = Rig(backend, device, world=world, faults=faults, closers=[h.close])
    try:
        async with asyncio.timeout(GUARD_S):
            await device.connect()
        yield r
    finally:
        await device.close()
        for close in r.closers:
            await close()


async def test_an_empty_field_reads_no_seals(rig: Rig) -> None:
    async with asyncio.timeout(GUARD_S):
        assert await rig.device.read_seals() == ()


async def test_seals_of_the_vehicle_in_position_are_read_with_their_iso_18185_data(rig: Rig) -> None:
    rig.truck(LOCK, ESEAL, OFF_ROUTE, TAMPERED)
    async with asyncio.timeout(GUARD_S):
        seals = {s.seal_id: s for s in await rig.device.read_seals()}
    assert set(seals) == {"0A1B-00C0FFEE", "0011-00000005", "0A1B-00000777", "0022-00000042"}
    lock = seals["0A1B-00C0FFEE"]
    assert lock == _record(LOCK)
    assert lock.kind is SealKind.ELOCK and lock.state is SealState.SEALED and lock.route is RouteStatus.ON_ROUTE
    assert lock.sealed_at == SEALED_AT and lock.opened_at is None and lock.battery_pct == 87
    assert seals["0011-00000005"].route is None and seals["0011-00000005"].battery_pct is None
    assert seals["0A1B-00000777"].route is RouteStatus.OFF_ROUTE
    assert seals["0022-00000042"].state is SealState.TAMPERED and seals["0022-00000042"].battery_low


async def test_remove_then_apply_with_the_authorisation_code(rig: Rig) -> None:
    rig.truck(LOCK)
    async with asyncio.timeout(GUARD_S):
        opened = await rig.device.remove("0A1B-00C0FFEE", authorisation=CODE)
        assert opened.state is SealState.OPENED and opened.opened_at is not None
        assert (await rig.device.read_seals())[0].state is SealState.OPENED
        sealed = await rig.device.apply("0A1B-00C0FFEE", authorisation=CODE)
    assert sealed.state is SealState.SEALED and sealed.sealed_at is not None and sealed.opened_at is None
    assert sealed.sealed_at >= SEALED_AT


async def test_the_lock_refuses_a_wrong_code_a_wrong_state_and_a_seal_out_of_the_field(rig: Rig) -> None:
    rig.truck(LOCK, ESEAL)
    async with asyncio.timeout(GUARD_S):
        with pytest.raises(DeviceFaultError, match="authorisation refused") as err:
            await rig.device.remove("0A1B-00C0FFEE", authorisation="WRONG-01")
        assert err.value.code == 1
        with pytest.raises(DeviceFaultError, match="authorisation refused"):
            await rig.device.remove("0011-00000005", authorisation=CODE)  # a plain e-seal has no lock
        with pytest.raises(DeviceFaultError, match="wrong state") as err:
            await rig.device.apply("0A1B-00C0FFEE", authorisation=CODE)  # already sealed
        assert err.value.code == 3
        with pytest.raises(DeviceFaultError, match="not in the field") as err:
            await rig.device.remove("0A1B-0000BEEF", authorisation=CODE)
        assert err.value.code == 2
        assert (await rig.device.read_seals())[0].state is SealState.SEALED  # nothing moved
    assert rig.device.counters["fault"] == 4


async def test_bad_arguments_are_refused_before_anything_is_sent(rig: Rig) -> None:
    ok_before = dict(rig.device.counters)
    for seal, code in (
        ("0a1b-00c0ffee", CODE),
        ("0A1B00C0FFEE", CODE),
        ("0A1B-00C0FFEE", "short"),
        ("0A1B-00C0FFEE", "K3Y 0001"),
    ):
        with pytest.raises(ValueError):
            await rig.device.remove(seal, authorisation=code)
    assert rig.device.counters == ok_before


async def test_a_garbled_answer_is_a_protocol_error_and_the_next_read_works(rig: Rig) -> None:
    rig.truck(LOCK)
    async with asyncio.timeout(GUARD_S):
        rig.garble_next_answer()
        with pytest.raises(DeviceProtocolError):
            await rig.device.read_seals()
        assert [s.seal_id for s in await rig.device.read_seals()] == ["0A1B-00C0FFEE"]
    assert rig.device.counters["protocol"] == 1


async def test_a_dead_reader_times_out_and_is_used_again_when_it_answers(rig: Rig) -> None:
    rig.truck(ESEAL)
    async with asyncio.timeout(GUARD_S):
        rig.dead(True)
        with pytest.raises(DeviceTimeoutError):
            await rig.device.read_seals()
        rig.dead(False)
        assert len(await rig.device.read_seals()) == 1
    assert rig.device.counters["timeout"] == 1


async def test_an_unplugged_adapter_is_unavailable_until_it_is_back(rig: Rig) -> None:
    rig.truck(ESEAL)
    async with asyncio.timeout(GUARD_S):
        await rig.unplug(True)
        with pytest.raises(DeviceUnavailableError):
            await rig.device.read_seals()
        await rig.unplug(False)
        assert len(await rig.device.read_seals()) == 1  # the port is reopened by its path
