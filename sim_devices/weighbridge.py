"""Simulated weighbridge indicator streaming Toledo continuous output on a pty.

``STX SWA SWB SWC weight(6) tare(6) CR CKS`` ten times a second (7E1, see
``firmware_config/devices/weighbridge_serial.yaml`` / ``docs/devices/weighbridge.md``), with its
own encoder. The displayed weight follows ``world.scale_kg`` through a settling model: when
the load changes the platform rocks — a damped oscillation around the new value plus a
little noise, the motion bit set — for ``settle_s`` (scaled by the world's time factor),
then the reading is rounded to the division and reported stable. Loads beyond
``capacity_kg`` set the out-of-range bit.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from .faults import FaultInjector
from .pty_port import PtyPort, SerialSimHandle
from .world import LaneWorld

__all__ = ["WeighbridgeSim", "start_weighbridge"]

RATE_HZ = 10.0
SETTLE_S = 1.5  # a loaded truck stops rocking on the platform within 1–2 s
DIVISION_KG = 20  # 60–80 t road weighbridges are verified in 20 kg divisions
CAPACITY_KG = 80_000


class WeighbridgeSim:
    def __init__(
        self,
        world: LaneWorld,
        faults: FaultInjector,
        *,
        rate_hz: float = RATE_HZ,
        settle_s: float = SETTLE_S,
        division_kg: int = DIVISION_KG,
        capacity_kg: int = CAPACITY_KG,
        checksum: bool = True,
    ) -> None:
        self.world = world
        self.faults = faults
        self.period = 1.0 / rate_hz
        self.settle_s = settle_s
        self.division = division_kg
        self.capacity = capacity_kg
        self.checksum = checksum
        self.port: PtyPort | None = None
        self._target = float(world.scale_kg)
        self._from = self._target
        self._changed_at = -1e9
        self.frames_sent = 0

    def _reading(self, now: float) -> tuple[float, bool]:
        target = float(self.world.scale_kg)
        if target != self._target:
            self._from, _ = self._reading_at(now)
            self._target, self._changed_at = target, now
        return self._reading_at(now)

    def _reading_at(self, now: float) -> tuple[float, bool]:
        settle = self.world.scaled(self.settle_s)
        t = now - self._changed_at
        if t >= settle:
            return self._target, False
        # Damped oscillation around the new load: starts at the old reading, two swings.
        frac = t / settle if settle > 0 else 1.0
        swing = (self._from - self._target) * math.exp(-4 * frac) * math.cos(4 * math.pi * frac)
        noise = (self.faults.random() - 0.5) * 2 * self.division
        return self._target + swing + noise, True

    def frame(self, kg: float, motion: bool) -> bytes:
        shown = round(kg / self.division) * self.division
        over = abs(shown) > self.capacity
        digits = min(abs(int(shown)), 999_999)
        swa = (
            0b0100000
            | 0b010
            | (
                0b10 << 3
                if self.division in (2, 20, 200)
                else 0b11 << 3
                if self.division in (5, 50, 500)
                else 0b01 << 3
            )
        )
        swb = 0b0110000 | (0b10 if shown < 0 else 0) | (0b100 if over else 0) | (0b1000 if motion else 0)
        swc = 0b0100000
        out = b"\x02" + bytes((swa, swb, swc)) + b"%06d" % digits + b"000000" + b"\r"
        if self.checksum:
            out += bytes(((128 - sum(out) % 128) % 128,))
        return out

    async def stream(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            kg, motion = self._reading(loop.time())
            out = await self.faults.outgoing(self.frame(kg, motion))
            if out is not None and self.port is not None:
                self.port.write(out)
                self.frames_sent += 1
            await asyncio.sleep(self.period)


async def start_weighbridge(
    world: LaneWorld,
    *,
    faults: FaultInjector | None = None,
    baudrate: int = 9600,
    rate_hz: float = RATE_HZ,
    settle_s: float = SETTLE_S,
    division_kg: int = DIVISION_KG,
    checksum: bool = True,
    name: str = "ttySCALE",
    directory: str | None = None,
    **_opts: Any,
) -> SerialSimHandle:
    """Stream the world's scale on a fresh pty (7E1 like a Toledo indicator)."""
    faults = faults if faults is not None else FaultInjector()
    sim = WeighbridgeSim(world, faults, rate_hz=rate_hz, settle_s=settle_s, division_kg=division_kg, checksum=checksum)
    port = await PtyPort(lambda _data: None, name=name, directory=directory, faults=faults).start()
    sim.port = port
    handle = SerialSimHandle(port, faults, baudrate=baudrate, bytesize=7, parity="E", sim=sim)
    handle.add_task(sim.stream(), name=f"weighbridge-sim-{port.path}")
    return handle
