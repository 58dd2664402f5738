"""Virtual backends of the cargo lane's release devices: the radiation portal monitor and the
e-seal / e-lock reader, in a ``VirtualWorld`` (their state: ``RadiationPortal``, ``SealField``
in ``drivers.virtual_world``; how a test drives them: ``drivers.virtual``).
"""

from __future__ import annotations

import datetime
from dataclasses import replace
from typing import Any

from .cargo_devices import LockRefusal, RpmDriver, RpmOccupancy, RpmStatus, SealReaderDriver, SealRecord, SealState
from .config import DeviceConfig
from .errors import DeviceFaultError
from .virtual import _Virtual

__all__ = ["VirtualRpm", "VirtualSealReader"]


class VirtualRpm(_Virtual, RpmDriver):
    """The world's radiation portal (``RadiationPortal``)."""

    def __init__(self, device_id: str, config: DeviceConfig, **_opts: Any) -> None:
        RpmDriver.__init__(self, device_id, timeout=config.timeout_s)
        self._setup(config)

    async def _status(self) -> RpmStatus:
        p = self._check().rpm
        return RpmStatus(
            occupied=p.occupied,
            occupancy_count=p.occupancy_count,
            gamma_background_cps=p.gamma_bg,
            neutron_background_cps=p.neutron_bg,
            faults=frozenset(p.faults),
            tamper=p.tamper,
            occupied_for_s=p.occupied_for_s,
            nsigma=p.nsigma,
        )

    async def _next_occupancy(self) -> RpmOccupancy:
        w = self._check()
        return await w.rpm._done.get()  # deadline: RpmDriver.next_occupancy's listening window


class VirtualSealReader(_Virtual, SealReaderDriver):
    """The world's e-seal reader (``SealField``): its locks refuse as the real ones do."""

    def __init__(self, device_id: str, config: DeviceConfig, **_opts: Any) -> None:
        SealReaderDriver.__init__(self, device_id, timeout=config.timeout_s)
        self._setup(config)

    async def _read_seals(self) -> tuple[SealRecord, ...]:
        return tuple(self._check().seals.records.values())

    async def _command(self, action: str, manufacturer: int, tag: int, authorisation: bytes) -> SealRecord:
        w = self._check()
        sid = f"{manufacturer:04X}-{tag:08X}"
        record = w.seals.records.get(sid)
        if record is None:
            raise DeviceFaultError(
                f"{action} {sid} refused by the lock: seal not in the field", code=LockRefusal.NOT_IN_FIELD
            )
        if w.seals.authorisations.get(sid, "").encode("ascii") != authorisation:
            raise DeviceFaultError(
                f"{action} {sid} refused by the lock: authorisation refused", code=LockRefusal.AUTHORISATION_REFUSED
            )
        want = SealState.OPENED if action == "apply" else SealState.SEALED
        if record.state is not want:
            raise DeviceFaultError(f"{action} {sid} refused by the lock: wrong state", code=LockRefusal.WRONG_STATE)
        now = datetime.datetime.now(datetime.UTC).replace(second=0, microsecond=0)
        if action == "apply":
            record = replace(record, state=SealState.SEALED, sealed_at=now, opened_at=None)
        else:
            record = replace(record, state=SealState.OPENED, opened_at=now)
        w.seals.records[sid] = record
        w._record(self.kind, action, sid)
        return record
