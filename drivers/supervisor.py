"""Per-device supervisor: keeps a device connected forever and reports its health.

States: ``online`` (last transaction ok), ``degraded`` (some recent failures, still
answering), ``offline`` (link down or N consecutive failures). The supervisor reconnects
with capped, jittered exponential backoff and no retry cap — a device that comes back is
used again without a restart. It logs on change of state only (warn once, debug while
still failing, info on recovery).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .base import Device
from .errors import DeviceError

__all__ = ["Backoff", "DeviceHealth", "Supervisor"]

log = logging.getLogger(__name__)


class DeviceHealth(enum.StrEnum):
    ONLINE = "online"
    DEGRADED = "degraded"
    OFFLINE = "offline"


@dataclass
class Backoff:
    """Capped, jittered exponential backoff ("full jitter")."""

    initial: float = 0.05
    cap: float = 5.0
    factor: float = 2.0
    attempt: int = 0

    def next_delay(self, rng: random.Random | None = None) -> float:
        r = rng or random
        ceiling = min(self.cap, self.initial * self.factor**self.attempt)
        self.attempt += 1
        return ceiling / 2 + r.random() * ceiling / 2

    def reset(self) -> None:
        self.attempt = 0


Probe = Callable[[Device], Awaitable[object]]
OnChange = Callable[[str, DeviceHealth, str | None], Awaitable[None] | None]


class Supervisor:
    """Connects, polls ``probe`` every ``period`` seconds, tracks health.

    ``failures_to_offline`` consecutive failures take the device offline (and the link is
    dropped and reopened); any single failure makes it degraded.
    """

    def __init__(
        self,
        device: Device,
        probe: Probe,
        *,
        period: float,
        on_change: OnChange | None = None,
        failures_to_offline: int = 3,
        backoff: Backoff | None = None,
    ) -> None:
        self.device = device
        self.probe = probe
        self.period = period
        self.on_change = on_change
        self.failures_to_offline = failures_to_offline
        self.backoff = backoff or Backoff()
        self.health = DeviceHealth.OFFLINE
        self.consecutive_failures = 0
        self.last_value: object = None
        self.heartbeat = 0  # incremented every loop turn; the watchdog reads it
        self._changed = asyncio.Event()

    async def _set(self, health: DeviceHealth, reason: str | None) -> None:
        if health == self.health:
            return
        old, self.health = self.health, health
        if health == DeviceHealth.ONLINE:
            log.info("%s %s -> online", self.device.device_id, old)
        else:
            log.warning("%s %s -> %s: %s", self.device.device_id, old, health, reason)
        if self.on_change is not None:
            res = self.on_change(self.device.device_id, health, reason)
            if res is not None:
                await res
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_health(self, health: DeviceHealth) -> None:
        while self.health != health:
            await self._changed.wait()

    async def run(self) -> None:
        """Run until cancelled. Never raises a DeviceError."""
        try:
            while True:
                self.heartbeat += 1
                if not self.device.connected:
                    try:
                        await self.device.connect()
                    except DeviceError as exc:
                        await self._set(DeviceHealth.OFFLINE, str(exc))
                        log.debug("%s still offline: %s", self.device.device_id, exc)
                        await asyncio.sleep(self.backoff.next_delay())
                        continue
                try:
                    self.last_value = await self.probe(self.device)
                except DeviceError as exc:
                    self.consecutive_failures += 1
                    if self.consecutive_failures >= self.failures_to_offline:
                        await self._set(DeviceHealth.OFFLINE, str(exc))
                        await self.device.disconnect()
                        await asyncio.sleep(self.backoff.next_delay())
                        continue
                    await self._set(DeviceHealth.DEGRADED, str(exc))
                else:
                    self.consecutive_failures = 0
                    self.backoff.reset()
                    await self._set(DeviceHealth.ONLINE, None)
                await asyncio.sleep(self.period)
        finally:
            await self.device.disconnect()
