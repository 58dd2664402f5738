"""The lane's devices: built from the site file through the driver registry, each watched by a
supervisor, and the gate and I/O polls turned into ``Sensors`` samples for the logic."""

from __future__ import annotations

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
from portlane.drivers.config import DeviceConfig
from portlane.drivers.supervisor import DeviceHealth, Supervisor
from portlane.edge.config import CameraRole, LaneConfig

from .passage import Sensors

__all__ = ["DeviceSlot", "LaneDevices"]

log = logging.getLogger(__name__)

#: How often devices without a status poll (board, RFID, scale, cameras) are probed for health.
HEALTH_PERIOD_S = 1.0

OnHealth = Callable[[str, DeviceHealth, str | None], Awaitable[None] | None]


@dataclass
class DeviceSlot:
    name: str
    device: Device
    supervisor: Supervisor
    backend: str
    link: str

    def status(self) -> dict[str, Any]:
        return {
            "health": self.supervisor.health.value,
            "backend": self.backend,
            "link": self.link,
            "last_error": self.device.last_error,
            "counters": dict(self.device.counters),
        }


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

    def __init__(self, lane: LaneConfig, *, on_sample: Callable[[Sensors], None], on_health: OnHealth) -> None:
        self.lane = lane
        self.on_sample = on_sample
        self.gate_status: GateStatus | None = None
        self.inputs: LaneInputs | None = None
        self.slots: dict[str, DeviceSlot] = {}
        d = lane.devices
        specs: list[tuple[str, str, DeviceConfig]] = [("gate", "gate", d.gate), ("io", "io", d.io)]
        for name in ("board", "rfid", "weighbridge"):
            cfg = getattr(d, name)
            if cfg is not None:
                specs.append((name, name, cfg))
        specs += [(f"camera:{cam_id}", "camera", cam) for cam_id, cam in d.cameras.items()]
        probes: dict[str, Callable[[Any], Awaitable[object]]] = {"gate": self._probe_gate, "io": self._probe_io}
        for name, kind, cfg in specs:
            dev = registry.create(kind, f"{lane.id}/{name}", cfg)
            period = getattr(cfg, "poll_s", HEALTH_PERIOD_S) if kind in ("gate", "io") else HEALTH_PERIOD_S
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
