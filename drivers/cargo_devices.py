"""The cargo lane's release devices: radiation portal monitor and e-seal/e-lock reader interfaces.

Same pattern as every device kind (``drivers.base.Device``): each public method does the shared
work and calls one protected hook a backend implements (``rpm_rapiscan``, ``seal_serial``,
``virtual_cargo``). The value types are the lane's vocabulary; they carry no wire detail.
"""

from __future__ import annotations

import abc
import datetime
import enum
import re
from dataclasses import dataclass

from .base import Device
from .errors import DeviceTimeoutError

__all__ = [
    "AUTH_LEN",
    "SEAL_ID_PATTERN",
    "LockRefusal",
    "RadiationFault",
    "RouteStatus",
    "RpmDriver",
    "RpmOccupancy",
    "RpmStatus",
    "SealKind",
    "SealReaderDriver",
    "SealRecord",
    "SealState",
    "seal_id",
]


# --------------------------------------------------------------------------- radiation portal monitor


class RadiationFault(enum.StrEnum):
    """Conditions a radiation portal reports (or its driver infers) that make its verdicts
    unreliable. None of them is an alarm: the lane takes itself out of automatic release."""

    GAMMA_HIGH = "gamma_high"  # gamma background above the portal's limit (GH)
    GAMMA_LOW = "gamma_low"  # gamma background below it: a dead or disconnected detector (GL)
    NEUTRON_HIGH = "neutron_high"  # neutron background above the limit (NH)
    OCCUPANCY_STUCK = "occupancy_stuck"  # occupied far longer than any vehicle takes to pass


@dataclass(frozen=True, slots=True)
class RpmOccupancy:
    """One vehicle's pass through the portal, as the portal reported it at the end of occupancy.

    Counts are per detector panel, summed over the occupancy; backgrounds are the portal's
    last background estimates before the occupancy, in counts per second per panel. The
    alarm flags are the portal's own decision (its ``n``-sigma threshold), never recomputed
    here: the lane acts on what the instrument said.
    """

    number: int  # the portal's occupancy counter (wraps at the portal's width)
    started_at: float  # wall clock (time.time()) of the first sample
    ended_at: float
    samples: int  # gamma samples in the occupancy
    sample_s: float  # length of one sample, seconds
    gamma_counts: tuple[int, ...]
    neutron_counts: tuple[int, ...]
    gamma_background_cps: tuple[float, ...]
    neutron_background_cps: tuple[float, ...]
    gamma_alarm: bool
    neutron_alarm: bool
    nsigma: float | None = None  # the portal's alarm threshold in sigmas, when it told us
    max_gamma_cps: int = 0  # highest one-second sum over all panels during the occupancy
    speed_kph: float | None = None

    @property
    def alarm(self) -> bool:
        return self.gamma_alarm or self.neutron_alarm

    @property
    def live_s(self) -> float:
        return self.samples * self.sample_s

    @property
    def gamma_sigma(self) -> float:
        """(foreground − background) / √background of the busiest second, all panels summed
        (the figure OSCAR shows beside each occupancy)."""
        bg = sum(self.gamma_background_cps)
        return 0.0 if bg <= 0 else (self.max_gamma_cps - bg) / bg**0.5


@dataclass(frozen=True, slots=True)
class RpmStatus:
    """The portal now: is something in it, what does it see, is it healthy."""

    occupied: bool
    occupancy_count: int  # last completed occupancy's number (0 before the first)
    gamma_background_cps: tuple[float, ...] = ()
    neutron_background_cps: tuple[float, ...] = ()
    gamma_alarm: bool = False  # alarm in the occupancy in progress
    neutron_alarm: bool = False
    faults: frozenset[RadiationFault] = frozenset()
    tamper: bool = False
    occupied_for_s: float = 0.0
    nsigma: float | None = None

    @property
    def trustworthy(self) -> bool:
        """False while a fault or tamper makes the portal's verdicts unreliable."""
        return not self.faults and not self.tamper


class RpmDriver(Device):
    """A radiation portal monitor: gamma and neutron panels either side of the lane and an
    occupancy sensor. The portal decides alarms itself; the driver reports occupancies (one
    per vehicle, with counts, backgrounds and the portal's alarm flags) and its state.

    ``next_occupancy`` waits for the next completed occupancy (None when none completed in the
    window, like ``RfidDriver.next_read``); ``status`` is the portal's state now.
    """

    kind = "rpm"

    async def status(self) -> RpmStatus:
        return await self._call(self._status())

    async def next_occupancy(self, timeout: float) -> RpmOccupancy | None:  # noqa: ASYNC109
        """The next completed occupancy, or None when none completed within ``timeout`` s.

        ``timeout`` is a listening window (a vehicle may not come), not a transport deadline.
        """
        try:
            return await self._call(self._next_occupancy(), timeout=timeout)
        except DeviceTimeoutError:
            return None

    @abc.abstractmethod
    async def _status(self) -> RpmStatus: ...

    @abc.abstractmethod
    async def _next_occupancy(self) -> RpmOccupancy: ...


# --------------------------------------------------------------------------- e-seals and e-locks


class SealState(enum.StrEnum):
    SEALED = "sealed"
    OPENED = "opened"
    TAMPERED = "tampered"


class SealKind(enum.StrEnum):
    ESEAL = "eseal"  # ISO 18185 electronic seal: id, state, times, battery
    ELOCK = "elock"  # cross-boundary e-lock (跨境一锁): an e-seal with GPS and a route check


class RouteStatus(enum.StrEnum):
    ON_ROUTE = "on_route"  # every GPS fix since sealing lay on the declared corridor
    OFF_ROUTE = "off_route"  # at least one fix left it
    NO_FIX = "no_fix"  # the lock has no usable GPS history (cannot vouch for the route)


#: ISO 18185-1: a seal is identified by its manufacturer's id (16 bits, registered) and a tag
#: id unique for that manufacturer (32 bits). We write it ``MMMM-TTTTTTTT`` in hex.
SEAL_ID_PATTERN = r"^[0-9A-F]{4}-[0-9A-F]{8}$"


def seal_id(manufacturer: int, tag: int) -> str:
    """The text form of an ISO 18185 seal id: ``seal_id(0x0A1B, 0xC0FFEE) == "0A1B-00C0FFEE"``."""
    if not 0 <= manufacturer <= 0xFFFF or not 0 <= tag <= 0xFFFFFFFF:
        raise ValueError(f"seal id out of range: manufacturer {manufacturer}, tag {tag}")
    return f"{manufacturer:04X}-{tag:08X}"


@dataclass(frozen=True, slots=True)
class SealRecord:
    """One e-seal or e-lock as the reader reads it (ISO 18185 data; route for e-locks).

    Times are the seal's own clock (ISO 18185 allows ±5 s a day of drift), UTC, to the minute.
    """

    manufacturer: int
    tag: int
    kind: SealKind
    state: SealState
    sealed_at: datetime.datetime | None = None
    opened_at: datetime.datetime | None = None
    battery_pct: int | None = None  # None: the seal does not report a level
    battery_low: bool = False
    route: RouteStatus | None = None  # e-locks only
    rssi_dbm: int = 0

    @property
    def seal_id(self) -> str:
        return seal_id(self.manufacturer, self.tag)


class LockRefusal(enum.IntEnum):
    """Why an e-lock refused an apply / remove: the result code the lock answers with, carried
    by the ``DeviceFaultError`` the driver raises (``.code``). The lane names its rejection
    after it (``lock_`` + the name in lower case)."""

    AUTHORISATION_REFUSED = 1  # not the code customs issued for this lock
    NOT_IN_FIELD = 2  # the seal is not in the reader's field
    WRONG_STATE = 3  # applying a sealed lock, removing an open one
    BATTERY_LOW = 4  # too little charge to drive the bolt
    MECHANISM_FAULT = 5  # the bolt did not move


class SealReaderDriver(Device):
    """A fixed e-seal / e-lock reader at the lane. ``read_seals`` inventories the seals in
    its field (the vehicle in position); ``apply`` / ``remove`` lock or unlock an e-lock, which
    the lock itself accepts only with the authorisation code customs issued for it — the lane
    sends them only on a signed command."""

    kind = "seal_reader"

    async def read_seals(self) -> tuple[SealRecord, ...]:
        return await self._call(self._read_seals())

    async def apply(self, seal: str, *, authorisation: str) -> SealRecord:
        return await self._call(self._command("apply", *_seal_args(seal, authorisation)))

    async def remove(self, seal: str, *, authorisation: str) -> SealRecord:
        return await self._call(self._command("remove", *_seal_args(seal, authorisation)))

    @abc.abstractmethod
    async def _read_seals(self) -> tuple[SealRecord, ...]: ...

    @abc.abstractmethod
    async def _command(self, action: str, manufacturer: int, tag: int, authorisation: bytes) -> SealRecord: ...


#: An authorisation code is 8 printable ASCII characters (a one-time code customs issues).
AUTH_LEN = 8


def _seal_args(seal: str, authorisation: str) -> tuple[int, int, bytes]:
    """Argument checks shared by ``apply`` and ``remove`` (before anything is sent)."""
    if not re.fullmatch(SEAL_ID_PATTERN, seal):
        raise ValueError(f"seal id {seal!r} is not MMMM-TTTTTTTT (hex manufacturer and tag id)")
    auth = authorisation.encode("ascii", errors="replace")
    if len(auth) != AUTH_LEN or not all(0x21 <= b <= 0x7E for b in auth):
        raise ValueError(f"an authorisation code is {AUTH_LEN} printable ASCII characters")
    manufacturer, tag = seal.split("-")
    return int(manufacturer, 16), int(tag, 16), auth
