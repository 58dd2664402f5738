"""The one place the scanner's actions touch the PLC, the outbox and the broker.

Events (``Publish``) are written at once, in the order the logic produced them — a ``scan.*``
on the topic of the lane whose passage it is about (``Topics.lane_event``); PLC actions
(``Fire``, ``Abort``, ``Reset``) run one after the other on the executor's task. The executor
is the second guard: right before the start command it reads the PLC again and refuses to
fire when the exclusion zone is open, the e-stop is pressed or the PLC is already scanning —
the zone may have opened between the logic's decision and now. What happened goes back to the
logic (``ScannerLogic.on_fired``) through ``report``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from portlane.drivers.errors import DeviceError
from portlane.drivers.scanner_device import ScannerDriver, ScannerState, ScannerStatus
from portlane.edge.contract.events import ScanEvent
from portlane.edge.contract.topics import LANE_SCOPED_EVENTS
from portlane.edge.delivery.events import EventWriter
from portlane.edge.unit.actions import Publish

from .logic import Abort, Fire, Resend, Reset, ScannerAction

__all__ = ["FiredReport", "ScannerExecutor"]

log = logging.getLogger(__name__)

#: What the executor tells the logic after a Fire: (passage id, status after the start command or
#: None, the zone was open when it looked, the device error).
FiredReport = Callable[[str, ScannerStatus | None, bool, str | None], None]


class ScannerExecutor:
    def __init__(
        self,
        *,
        scanner: str,
        device: ScannerDriver,
        events: EventWriter,
        report: FiredReport,
        resend: Callable[[str], None],
        on_published: Callable[[Publish, int | None], None] | None = None,
    ) -> None:
        self.scanner = scanner
        self.device = device
        self.events = events
        self.report = report
        self.resend = resend
        self.on_published = on_published
        self.fired = 0
        self.fired_with_zone_open = 0  # must stay 0 (counted from the status read right before)
        self.refused_unsafe = 0  # Fire actions this guard refused
        self._queue: asyncio.Queue[Fire | Abort | Reset] = asyncio.Queue()

    def apply(self, actions: Iterable[ScannerAction]) -> None:
        for a in actions:
            match a:
                case Publish(type=type_, data=data):
                    # A lane may read only its own passages' scan results: per-lane scan topics.
                    topic = (
                        self.events.topics.lane_event(type_, data.lane)
                        if type_ in LANE_SCOPED_EVENTS and isinstance(data, ScanEvent)
                        else None
                    )
                    env = self.events.put(type_, data, subject=a.subject, topic=topic)
                    if self.on_published is not None:
                        self.on_published(a, env.seq if env is not None else None)
                case Resend(passage_id=pid):
                    self.resend(pid)
                case Fire() | Abort() | Reset():
                    self._queue.put_nowait(a)

    async def run(self) -> None:
        while True:
            await self._do(await self._queue.get())

    @property
    def pending(self) -> int:
        """PLC actions decided and not carried out yet."""
        return self._queue.qsize()

    async def step(self) -> bool:
        """Carry out the oldest pending PLC action, if any (for tests that interleave by hand)."""
        if self._queue.empty():
            return False
        await self._do(self._queue.get_nowait())
        return True

    async def _do(self, a: Fire | Abort | Reset) -> None:
        match a:
            case Fire():
                await self._fire(a)
            case Abort():
                with contextlib.suppress(DeviceError):
                    await self.device.abort()
            case Reset():
                with contextlib.suppress(DeviceError):
                    await self.device.reset()  # the PLC warms up again

    @staticmethod
    def may_start(st: ScannerStatus) -> bool:
        """The executor's guard: the PLC, read right now, is ready and its zone is clear."""
        return st.zone_clear and not st.estop and st.state != ScannerState.SCANNING

    async def _fire(self, a: Fire) -> None:
        pid = a.entry.passage_id
        try:
            st = await self.device.status()
            if not self.may_start(st):
                self.refused_unsafe += 1
                log.warning("%s: not firing for %s: zone open, e-stop or already scanning", self.scanner, pid)
                self.report(pid, st, True, None)
                return
            self.fired += 1
            if not st.zone_clear or st.estop:
                self.fired_with_zone_open += 1
            await self.device.start(vehicle_ref=a.entry.vehicle_ref[:12], lane=a.lane_number, seq=a.seq)
            # A fresh read: the poller's last status may predate the start command.
            after = await self.device.status()
        except DeviceError as exc:
            self.report(pid, None, False, str(exc))
            return
        self.report(pid, after, False, None)
