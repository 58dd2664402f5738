"""The lane's devices: built from the site file through the driver registry, each watched by a
supervisor, and the gate and I/O polls turned into ``Sensors`` samples for the logic.

Cargo lanes may have a radiation portal (``rpm``: its state polled every ``RPM_POLL_S`` and
kept, its occupancies listened for by ``occupancies``) and a seal reader (``seal_reader``: read
on demand, when a vehicle is in position, by the identification)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from portlane.drivers import registry
from portlane.drivers.base import (
    BoardDriver,
    CameraDriver,
    Device,
    GateDriver,
    GatePosition,
    GateStatus,
    IoDriver,
    LaneInputs,
    RfidDriver,
    WeighbridgeDriver,
)
from portlane.drivers.cargo_devices import RpmDriver, RpmOccupancy, RpmStatus, SealReaderDriver
from portlane.drivers.config import DeviceConfig
from portlane.drivers.errors import DeviceError
from portlane.drivers.supervisor import DeviceHealth, Supervisor
from portlane.edge.config import CameraRole, LaneConfig

from .passage import Sensors

__all__ = ["DeviceSlot", "LaneDevices"]

log = logging.getLogger(__name__)

#: How often devices without a status poll (board, RFID, scale, cameras) are probed for health.
HEALTH_PERIOD_S = 1.0
#: The portal's state is read this often: it sends a sample every 200 ms while occupied, so the
#: lane's view of it (occupied, faults, tamper) is at most one sample old.
RPM_POLL_S = 0.2
#: One wait for the portal's next occupancy: a listening window (no vehicle may come), repeated.
OCCUPANCY_WINDOW_S = 5.0
#: Between tries while the portal is not connected (its supervisor reconnects it).
RPM_RETRY_S = 0.2

OnHealth = Callable[[str, DeviceHealth, str | None], Awaitable[None] | None]


@dataclass
class DeviceSlot:
    name: str
    device: Device
    supervisor: Supervisor
    backend: str
    link: str

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "health": self.supervisor.health.value,
            "backend": self.backend,
            "link": self.link,
            "last_error": self.device.last_error,
            "counters": dict(self.device.counters),
        }
        st = self.supervisor.last_value
        if isinstance(st, RpmStatus):  # what a technician checks at a portal
            out["portal"] = {
                "occupied": st.occupied,
                "occupancies": st.occupancy_count,
                "faults": sorted(f.value for f in st.faults),
                "tamper": st.tamper,
                "gamma_background_cps": [round(x, 1) for x in st.gamma_background_cps],
                "neutron_background_cps": [round(x, 2) for x in st.neutron_background_cps],
                "nsigma": st.nsigma,
            }
        return out


def _link_text(cfg: DeviceConfig) -> str:
    link = cfg.link
    for attr in ("url", "source"):
        value = getattr(link, attr, None)
        if value:
            return str(value)
    return f"{getattr(link, 'host', '?')}:{getattr(link, 'port', '?')}"


async def _probe_nothing(dev: Device) -> object:
    return None


class LaneDevices:
    """Every device of one lane. ``on_sample`` is called with a fresh ``Sensors`` each time the
    gate or the I/O module has been polled (once both have answered at least once)."""

    def __init__(
        self,
        lane: LaneConfig,
        *,
        on_sample: Callable[[Sensors], None],
        on_health: OnHealth,
        on_rpm: Callable[[RpmStatus], None] | None = None,
    ) -> None:
        self.lane = lane
        self.on_sample = on_sample
        self.on_rpm = on_rpm  # each read of the radiation portal's state
        self.gate_status: GateStatus | None = None
        self.inputs: LaneInputs | None = None
        self.rpm_status: RpmStatus | None = None  # the portal's last state read
        self.slots: dict[str, DeviceSlot] = {}
        d = lane.devices
        specs: list[tuple[str, str, DeviceConfig]] = [("gate", "gate", d.gate), ("io", "io", d.io)]
        for name in ("board", "rfid", "weighbridge", "rpm", "seal_reader"):
            cfg = getattr(d, name)
            if cfg is not None:
                specs.append((name, name, cfg))
        specs += [(f"camera:{cam_id}", "camera", cam) for cam_id, cam in d.cameras.items()]
        probes: dict[str, Callable[[Any], Awaitable[object]]] = {
            "gate": self._probe_gate,
            "io": self._probe_io,
            "rpm": self._probe_rpm,
        }
        for name, kind, cfg in specs:
            dev = registry.create(kind, f"{lane.id}/{name}", cfg)
            period = getattr(cfg, "poll_s", HEALTH_PERIOD_S) if kind in ("gate", "io") else HEALTH_PERIOD_S
            period = RPM_POLL_S if kind == "rpm" else period
            sup = Supervisor(dev, probes.get(kind, _probe_nothing), period=period, on_change=on_health)
            self.slots[name] = DeviceSlot(name, dev, sup, cfg.backend, _link_text(cfg))

    # ------------------------------------------------------------------ typed access
    @property
    def gate(self) -> GateDriver:
        dev = self.slots["gate"].device
        assert isinstance(dev, GateDriver)
        return dev

    @property
    def io(self) -> IoDriver:
        dev = self.slots["io"].device
        assert isinstance(dev, IoDriver)
        return dev

    @property
    def board(self) -> BoardDriver | None:
        slot = self.slots.get("board")
        return slot.device if slot and isinstance(slot.device, BoardDriver) else None

    @property
    def rfid(self) -> RfidDriver | None:
        slot = self.slots.get("rfid")
        return slot.device if slot and isinstance(slot.device, RfidDriver) else None

    @property
    def weighbridge(self) -> WeighbridgeDriver | None:
        slot = self.slots.get("weighbridge")
        return slot.device if slot and isinstance(slot.device, WeighbridgeDriver) else None

    @property
    def rpm(self) -> RpmDriver | None:
        slot = self.slots.get("rpm")
        return slot.device if slot and isinstance(slot.device, RpmDriver) else None

    @property
    def seal_reader(self) -> SealReaderDriver | None:
        slot = self.slots.get("seal_reader")
        return slot.device if slot and isinstance(slot.device, SealReaderDriver) else None

    def device_id(self, name: str) -> str | None:
        """The device id of ``name`` (``c1/rpm``), None when the lane has no such device."""
        slot = self.slots.get(name)
        return slot.device.device_id if slot is not None else None

    def cameras(self) -> list[tuple[str, CameraDriver]]:
        return [(n, s.device) for n, s in self.slots.items() if isinstance(s.device, CameraDriver)]

    def camera_role(self, name: str) -> CameraRole:
        """What the camera in slot ``name`` (``camera:<id>``, as ``cameras()`` names it) looks at:
        its ``role`` in the site file."""
        return self.lane.devices.cameras[name.removeprefix("camera:")].role

    # ------------------------------------------------------------------ sensors
    async def _probe_gate(self, dev: GateDriver) -> object:
        self.gate_status = await dev.status()
        self._sample()
        return self.gate_status

    async def _probe_io(self, dev: IoDriver) -> object:
        self.inputs = await dev.read_inputs()
        self._sample()
        return self.inputs

    async def _probe_rpm(self, dev: RpmDriver) -> object:
        self.rpm_status = await dev.status()
        if self.on_rpm is not None:
            self.on_rpm(self.rpm_status)
        return self.rpm_status

    async def occupancies(self, on_occupancy: Callable[[RpmOccupancy], None]) -> None:
        """Hand every occupancy the portal reports to ``on_occupancy``, for ever (a task of the
        daemon; returns at once when the lane has no portal)."""
        rpm = self.rpm
        if rpm is None:
            return
        while True:
            if not rpm.connected:
                await asyncio.sleep(RPM_RETRY_S)
                continue
            try:
                occ = await rpm.next_occupancy(timeout=OCCUPANCY_WINDOW_S)
            except DeviceError:
                await asyncio.sleep(RPM_RETRY_S)  # its supervisor sees the fault and reconnects
                continue
            if occ is not None:
                on_occupancy(occ)

    @property
    def complete(self) -> bool:
        """Both the gate and the I/O module have answered at least once."""
        return self.gate_status is not None and self.inputs is not None

    def sensors(self) -> Sensors:
        g, i = self.gate_status, self.inputs
        return Sensors(
            entry_loop=bool(i and i.entry_loop),
            in_position=bool(i and i.in_position),
            exit_loop=bool(i and i.exit_loop),
            photocell=bool(g and g.photocell_blocked),
            safety_loop=bool(g and g.loop_occupied),
            gate_open=bool(g and g.position == GatePosition.OPEN),
            gate_closed=bool(g is None or g.position == GatePosition.CLOSED),
            # Latched by the devices: evidence that survives a starved control loop.
            arm_passes=g.vehicles_passed if g else None,
            under_clears=g.photocell_edges.falling if g and g.photocell_edges else None,
            exit_clears=i.exit_loop_edges.falling if i and i.exit_loop_edges else None,
        )

    def _sample(self) -> None:
        if self.complete:
            self.on_sample(self.sensors())

    async def sample(self) -> Sensors:
        """Read the gate and the I/O module now (outside their polls) and return the sample."""
        self.gate_status = await self.gate.status()
        self.inputs = await self.io.read_inputs()
        return self.sensors()

    # ------------------------------------------------------------------ lifecycle
    async def close(self) -> None:
        for slot in self.slots.values():
            try:
                await slot.device.close()
            except Exception as exc:  # one device failing to close must not keep the others open
                log.warning("%s: closing %s failed: %s", self.lane.id, slot.name, exc)
