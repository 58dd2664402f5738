"""The X-ray scanner's interface: the PLC's states and results, and ``ScannerDriver``.

Same pattern as every device kind (``drivers.base.Device``): each public method does the shared
work and calls one protected hook a backend implements (``scanner_modbus``, ``virtual``).
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass

from .base import Device
from .errors import DeviceFaultError

__all__ = ["ScanResult", "ScannerDriver", "ScannerState", "ScannerStatus"]


class ScannerState(enum.IntEnum):
    IDLE = 0
    READY = 1
    WARMING = 2
    SCANNING = 3
    COMPLETE = 4
    FAULT = 5
    INTERLOCKED = 6


class ScanResult(enum.IntEnum):
    NONE = 0
    GREEN = 1
    YELLOW = 2
    RED = 3


@dataclass(frozen=True, slots=True)
class ScannerStatus:
    state: ScannerState
    zone_clear: bool  # exclusion zone clear of people
    estop: bool = False
    radiation_on: bool = False
    scan_id: int = 0
    result: ScanResult = ScanResult.NONE
    fault_code: int = 0
    progress_pct: int = 0
    image_ref: str = ""


class ScannerDriver(Device):
    """The scanner's PLC. ``start`` refuses to fire while the exclusion zone is open — the
    PLC's own interlock is the first guard, this check is the second."""

    kind = "scanner"

    async def status(self) -> ScannerStatus:
        return await self._call(self._status())

    async def start(self, *, vehicle_ref: str, lane: int, seq: int) -> None:
        st = await self.status()
        if not st.zone_clear or st.estop:
            raise DeviceFaultError("exclusion zone not clear: refusing to start scan", device=self.device_id)
        await self._call(self._start(vehicle_ref=vehicle_ref, lane=lane, seq=seq))

    async def abort(self) -> None:
        await self._call(self._abort())

    async def reset(self) -> None:
        await self._call(self._reset())

    @abc.abstractmethod
    async def _status(self) -> ScannerStatus: ...

    @abc.abstractmethod
    async def _start(self, *, vehicle_ref: str, lane: int, seq: int) -> None: ...

    @abc.abstractmethod
    async def _abort(self) -> None: ...

    @abc.abstractmethod
    async def _reset(self) -> None: ...
