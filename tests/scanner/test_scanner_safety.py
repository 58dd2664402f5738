"""The shared scanner's safety and fairness, over random interleavings (hypothesis).

* The scanner never fires while its exclusion zone is open or the e-stop is pressed: the
  driver checks the PLC's interlock inputs before it writes the start command. The fake PLC
  here has no interlock of its own, so the driver's guard is the only one under test.
* The queue serves each passage once, highest priority first, and among equal priorities
  the lane served longest ago (no lane starves); one vehicle at a time is structural in
  ``ScannerDaemon`` (a single scan loop holding the lease).

Each property has a mutant test showing it fails when its guard is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from portlane.drivers.errors import DeviceFaultError
from portlane.drivers.scanner_device import ScannerDriver, ScannerState, ScannerStatus
from portlane.edge.scanner.queue import ScanQueue

SETTINGS = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class InterlockFreePlc(ScannerDriver):
    """An in-process PLC that would fire whenever asked (the driver must not ask)."""

    def __init__(self) -> None:
        super().__init__("fake-xray", timeout=1.0)
        self.zone_clear = True
        self.estop = False
        self.fired = 0
        self.fired_unsafe = 0
        self.scanning = False

    async def _connect(self) -> None:
        pass

    async def _close(self) -> None:
        pass

    async def _status(self) -> ScannerStatus:
        state = ScannerState.SCANNING if self.scanning else ScannerState.READY
        return ScannerStatus(state=state, zone_clear=self.zone_clear, estop=self.estop)

    async def _start(self, *, vehicle_ref: str, lane: int, seq: int) -> None:
        self.fired += 1
        if not self.zone_clear or self.estop:
            self.fired_unsafe += 1
        self.scanning = True

    async def _abort(self) -> None:
        self.scanning = False

    async def _reset(self) -> None:
        self.scanning = False


class ScannerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.plc = InterlockFreePlc()
        self.loop.run_until_complete(self.plc.connect())

    def teardown(self) -> None:
        self.loop.close()

    @rule(clear=st.booleans())
    def person_in_zone(self, clear: bool) -> None:
        self.plc.zone_clear = clear

    @rule(pressed=st.booleans())
    def estop(self, pressed: bool) -> None:
        self.plc.estop = pressed

    @rule()
    def start_requested(self) -> None:
        with contextlib.suppress(DeviceFaultError):
            self.loop.run_until_complete(self.plc.start(vehicle_ref="CSQU3054383", lane=1, seq=1))

    @rule()
    def scan_ends(self) -> None:
        self.plc.scanning = False

    @invariant()
    def never_fires_with_zone_open(self) -> None:
        assert self.plc.fired_unsafe == 0


def test_scanner_never_fires_with_the_zone_open() -> None:
    run_state_machine_as_test(ScannerMachine, settings=SETTINGS)


def test_removing_the_interlock_check_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    async def unguarded(self: ScannerDriver, *, vehicle_ref: str, lane: int, seq: int) -> None:
        await self._call(self._start(vehicle_ref=vehicle_ref, lane=lane, seq=seq))

    monkeypatch.setattr(ScannerDriver, "start", unguarded)
    with pytest.raises(AssertionError):
        run_state_machine_as_test(ScannerMachine, settings=SETTINGS)


LANES = ("c1", "c2", "c3", "c4")


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.q = ScanQueue()
        self.now = 0.0
        self.n = 0
        self.queued: dict[str, tuple[str, int]] = {}
        self.served: set[str] = set()
        self.last_served: dict[str, float] = {}
        self.errors: list[str] = []

    @rule(lane=st.sampled_from(LANES), priority=st.integers(0, 2), repeat=st.booleans())
    def request(self, lane: str, priority: int, repeat: bool) -> None:
        if repeat and self.queued:
            pid = next(iter(self.queued))  # a re-delivered request (QoS 1 may duplicate)
            lane, priority = self.queued[pid]
        else:
            self.n += 1
            pid = f"{lane}-{self.n}"
            self.queued[pid] = (lane, priority)
        self.q.push(lane, pid, "REF", priority, self.now)

    @rule()
    def serve(self) -> None:
        self.now += 1.0
        e = self.q.pop(self.now)
        if e is None:
            if self.queued:
                self.errors.append("queue empty while requests wait")
            return
        if e.passage_id in self.served:
            self.errors.append(f"{e.passage_id} served twice")
        top = max(p for _l, p in self.queued.values())
        if e.priority != top:
            self.errors.append(f"served priority {e.priority} while {top} waits")
        rivals = {lane for lane, p in self.queued.values() if p == top}
        oldest = min(self.last_served.get(lane, 0.0) for lane in rivals)
        if self.last_served.get(e.lane, 0.0) != oldest:
            self.errors.append(f"lane {e.lane} served before a lane waiting longer")
        self.served.add(e.passage_id)
        self.queued.pop(e.passage_id, None)
        self.last_served[e.lane] = self.now

    @invariant()
    def fair_and_once(self) -> None:
        assert not self.errors, self.errors


def test_scan_queue_is_fair_and_serves_each_passage_once() -> None:
    run_state_machine_as_test(QueueMachine, settings=SETTINGS)


def test_removing_fairness_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def fifo_pop(self: ScanQueue, now: float) -> Any:
        if not self._entries:
            return None
        return self._entries.pop(0)  # plain FIFO: ignores priority and lane fairness

    monkeypatch.setattr(ScanQueue, "pop", fifo_pop)
    with pytest.raises(AssertionError):
        run_state_machine_as_test(QueueMachine, settings=SETTINGS)
