"""The scanner's logic and executor over random interleavings (hypothesis), on a fake PLC.

The real ``ScannerLogic`` decides, the real ``ScannerExecutor`` carries the actions out on an
in-process PLC that would fire whenever told (its interlock and the driver's check are not
under test here: ``test_scanner_safety.py`` covers the driver). The machine interleaves PLC
polls, executor steps, requests (new, re-delivered, re-checks), the zone and the e-stop, scan
ends, faults, passages completed elsewhere, ticks and restarts (the logic rebuilt from its
journal) — in particular the zone opening *between* the logic's decision and the executor's
start command. Invariants:

* the PLC is never started with the zone open or the e-stop pressed, nor while it scans;
* the logic never decides to fire on a status that says the zone is open, nor while another
  firing is decided and not reported on (its own guards, checked on the actions it returns,
  before the executor);
* a passage is fired at most once, plus once per zone breach that re-queued it;
* whatever happened, once the PLC is ready and the zone clear, every request is settled.

Each guard has a mutant test showing the machine fails without it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from portlane.drivers.scanner_device import ScannerDriver, ScannerState, ScannerStatus, ScanResult
from portlane.edge.contract.events import InspectionRequested
from portlane.edge.contract.topics import Topics
from portlane.edge.scanner.executor import ScannerExecutor
from portlane.edge.scanner.logic import Fire, Phase, Resend, ScannerAction, ScannerLogic
from portlane.edge.unit.actions import Publish

LANES = ("c1", "c2", "c3")
SETTINGS = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class FakePlc(ScannerDriver):
    """Fires whenever told (no interlock): what it was told is what is checked."""

    def __init__(self) -> None:
        super().__init__("fake-xray", timeout=1.0)
        self.state = ScannerState.READY
        self.zone_clear = True
        self.estop = False
        self.scan_id = 0
        self.result = ScanResult.NONE
        self.fired: list[str] = []
        self.unsafe: list[str] = []

    async def _connect(self) -> None:
        pass

    async def _close(self) -> None:
        pass

    async def _status(self) -> ScannerStatus:
        return ScannerStatus(
            state=self.state, zone_clear=self.zone_clear, estop=self.estop, scan_id=self.scan_id, result=self.result
        )

    async def start(self, *, vehicle_ref: str, lane: int, seq: int) -> None:
        # The driver's own interlock check is skipped: the logic and the executor are under test.
        await self._start(vehicle_ref=vehicle_ref, lane=lane, seq=seq)

    async def _start(self, *, vehicle_ref: str, lane: int, seq: int) -> None:
        if not self.zone_clear or self.estop:
            self.unsafe.append(f"fired with zone_clear={self.zone_clear} estop={self.estop}")
        if self.state == ScannerState.SCANNING:
            self.unsafe.append("fired while scanning")
        if self.state in (ScannerState.READY, ScannerState.COMPLETE):
            self.state = ScannerState.SCANNING
            self.scan_id += 1
            self.result = ScanResult.NONE
            self.fired.append(vehicle_ref)

    async def _abort(self) -> None:
        if self.state == ScannerState.SCANNING:
            self.state = ScannerState.READY

    async def _reset(self) -> None:
        if self.state == ScannerState.FAULT:
            self.state = ScannerState.READY


class ScannerLogicMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.plc = FakePlc()
        self.loop.run_until_complete(self.plc.connect())
        self.now = 0.0
        self.n = 0
        self.violations: list[str] = []
        self.requested: dict[str, str] = {}  # passage -> lane
        self.breaches: dict[str, int] = {}
        self.settled: set[str] = set()
        self.completed_elsewhere: set[str] = set()
        self.journal: dict[str, Any] = {}
        self._new_logic()

    def _new_logic(self) -> None:
        self.outstanding: set[str] = set()  # Fire decided, not reported on (the executor's queue is lost at a restart)
        self.logic = ScannerLogic("xray-1", LANES, fault_policy="divert", scan_timeout_s=30.0)
        self.logic.restore(self.journal, sorted(self.settled))
        self.executor = ScannerExecutor(
            scanner="xray-1",
            device=self.plc,
            events=_Events(self),
            report=self._report,
            resend=lambda pid: None,
        )

    def teardown(self) -> None:
        self.loop.close()

    # ---------------------------------------------------------------- plumbing
    def apply(self, actions: list[ScannerAction]) -> None:
        st_ = self.logic.status
        for a in actions:
            if isinstance(a, Fire):
                # The logic's own guard, judged on what it knew when it decided.
                if st_ is None or not st_.zone_clear or st_.estop:
                    self.violations.append(f"logic fired {a.entry.passage_id} on {st_}")
                # One lease: no Fire while another is decided and not yet reported on.
                if self.outstanding:
                    self.violations.append(f"logic fired {a.entry.passage_id} while {self.outstanding} is firing")
                self.outstanding.add(a.entry.passage_id)
        self.executor.apply(actions)
        self.journal = self.logic.journal()

    def _report(self, pid: str, status: ScannerStatus | None, zone_refused: bool, error: str | None) -> None:
        self.outstanding.discard(pid)
        self.apply(self.logic.on_fired(pid, self.now, status=status, zone_refused=zone_refused, error=error))

    def settle_event(self, event: Publish) -> None:
        if event.type in ("scan.completed", "scan.failed") and event.subject is not None:
            self.settled.add(event.subject)

    # ---------------------------------------------------------------- rules
    @rule(lane=st.sampled_from(LANES), again=st.booleans(), recheck=st.booleans())
    def request(self, lane: str, again: bool, recheck: bool) -> None:
        if again and self.requested:
            pid = sorted(self.requested)[self.n % len(self.requested)]
            lane = self.requested[pid]
        else:
            self.n += 1
            pid = f"p{self.n}"
            self.requested[pid] = lane
        # The vehicle ref written to the PLC is the passage id here: the PLC's log says who was fired.
        r = InspectionRequested(passage_id=pid, lane=lane, vehicle_ref=pid, recheck=recheck)
        self.apply(self.logic.on_request(r, self.now))

    @rule()
    def poll(self) -> None:
        st_ = self.loop.run_until_complete(self.plc.status())
        self.apply(self.logic.on_status(st_, self.now))

    @rule()
    def executor_step(self) -> None:
        """Carry out one decided PLC action (a Fire re-reads the PLC first)."""
        self.loop.run_until_complete(self.executor.step())

    @rule(clear=st.booleans())
    def zone(self, clear: bool) -> None:
        if not clear and self.plc.state == ScannerState.SCANNING:
            # The PLC's interlock cuts the beam: the scan ends without a result.
            self.plc.state = ScannerState.READY
            current = self.logic.current
            if current is not None:
                self.breaches[current.passage_id] = self.breaches.get(current.passage_id, 0) + 1
        self.plc.zone_clear = clear

    @rule(pressed=st.booleans())
    def estop(self, pressed: bool) -> None:
        self.plc.estop = pressed

    @rule(result=st.sampled_from([ScanResult.GREEN, ScanResult.YELLOW, ScanResult.RED]))
    def scan_ends(self, result: ScanResult) -> None:
        if self.plc.state == ScannerState.SCANNING:
            self.plc.state = ScannerState.COMPLETE
            self.plc.result = result

    @rule()
    def fault(self) -> None:
        self.plc.state = ScannerState.FAULT

    @rule(dt=st.sampled_from([0.5, 5.0, 40.0]))
    def tick(self, dt: float) -> None:
        self.now += dt
        self.apply(self.logic.on_tick(self.now))

    @precondition(lambda self: bool(self.requested))
    @rule(data=st.data())
    def completed_elsewhere(self, data: st.DataObject) -> None:
        pid = data.draw(st.sampled_from(sorted(self.requested)))
        self.completed_elsewhere.add(pid)
        self.apply(self.logic.on_passage_completed(pid))

    @rule()
    def restart(self) -> None:
        """The daemon dies and starts again: the logic comes back from its journal and the
        settled passages its outbox holds; executor actions not run are lost."""
        self._new_logic()

    @rule()
    def the_scanner_settles(self) -> None:
        """A quiet spell: PLC ready, zone clear, e-stop released; polls, executor steps and scan
        ends until nothing is left. Every request must then be settled."""
        self.plc.zone_clear, self.plc.estop = True, False
        if self.plc.state == ScannerState.FAULT:
            self.plc.state = ScannerState.READY
        for _ in range(200):
            self.poll()
            while self.executor.pending:
                self.executor_step()
            self.poll()
            self.scan_ends(ScanResult.GREEN)
            self.now += 1.0
            self.apply(self.logic.on_tick(self.now))
            if not len(self.logic.queue) and self.logic.phase is Phase.IDLE and not self.executor.pending:
                break
        waiting = set(self.requested) - self.settled - self.completed_elsewhere
        if waiting:
            self.violations.append(f"never settled: {sorted(waiting)}")

    # ---------------------------------------------------------------- invariants
    @invariant()
    def never_unsafe(self) -> None:
        assert not self.plc.unsafe, self.plc.unsafe
        assert not self.violations, self.violations

    @invariant()
    def fired_once_per_passage(self) -> None:
        counts: dict[str, int] = {}
        for pid in self.plc.fired:
            counts[pid] = counts.get(pid, 0) + 1
        over = {p: n for p, n in counts.items() if n > 1 + self.breaches.get(p, 0)}
        assert not over, over


class _Events:
    """The executor's event writer: records settlement (what the outbox would keep)."""

    topics = Topics("s", "xray-1")

    def __init__(self, machine: ScannerLogicMachine) -> None:
        self.machine = machine

    def put(self, type_: Any, data: Any, *, subject: str | None = None, topic: str | None = None) -> None:
        self.machine.settle_event(Publish(type_, data))


def _run() -> None:
    run_state_machine_as_test(ScannerLogicMachine, settings=SETTINGS)


def _zone_opens_after_the_decision() -> None:
    """One interleaving, spelled out: the logic decides to fire on a clear zone, a person steps
    in, then the executor's turn comes. Only the executor's fresh read can stop this one."""
    m = ScannerLogicMachine()
    try:
        m.request("c1", again=False, recheck=False)
        m.poll()  # the logic decides: Fire
        m.zone(clear=False)  # someone walks in before the start command
        m.executor_step()
        m.never_unsafe()
        m.the_scanner_settles()
        m.never_unsafe()
        m.fired_once_per_passage()
    finally:
        m.teardown()


def test_the_zone_opening_between_decision_and_start_is_refused() -> None:
    _zone_opens_after_the_decision()


def test_scanner_logic_and_executor_keep_the_safety_invariants() -> None:
    _run()


ORIGINAL_MAY_FIRE = ScannerLogic.may_fire


@pytest.mark.slow
@pytest.mark.parametrize("guard", ["logic_zone", "executor_zone", "lease", "single_scan"])
def test_removing_a_scanner_guard_is_caught(guard: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if guard == "logic_zone":
        # The logic fires on a ready PLC whatever its zone and e-stop say.
        monkeypatch.setattr(
            ScannerLogic,
            "may_fire",
            lambda self, st_: (
                self.phase is Phase.IDLE
                and self.current is None
                and st_ is not None
                and st_.state in (ScannerState.READY, ScannerState.COMPLETE)
            ),
        )
    elif guard == "executor_zone":
        # The executor starts the PLC without reading it again (the zone may have opened since).
        monkeypatch.setattr(ScannerExecutor, "may_start", staticmethod(lambda st_: True))
    elif guard == "lease":
        # The logic forgets the lease: it fires whenever the PLC looks ready.
        monkeypatch.setattr(
            ScannerLogic,
            "may_fire",
            lambda self, st_: (
                st_ is not None
                and st_.state in (ScannerState.READY, ScannerState.COMPLETE)
                and st_.zone_clear
                and not st_.estop
            ),
        )
    elif guard == "single_scan":
        # The logic forgets which passages it settled: a re-delivered request is scanned again.
        monkeypatch.setattr(ScannerLogic, "_settle", lambda self, pid: None)
    with pytest.raises(AssertionError):
        if guard == "executor_zone":
            _zone_opens_after_the_decision()  # the directed case first, then the search
        _run()


def _status(state: ScannerState = ScannerState.READY, **kw: Any) -> ScannerStatus:
    return ScannerStatus(state=state, zone_clear=kw.pop("zone_clear", True), **kw)


def _req(pid: str, *, recheck: bool = False) -> InspectionRequested:
    return InspectionRequested(passage_id=pid, lane="c1", vehicle_ref=pid, recheck=recheck)


def test_a_recheck_gets_the_settled_result_again_and_queues_a_request_never_received() -> None:
    logic = ScannerLogic("xray-1", LANES)
    logic.on_status(_status(), 0)
    [fire] = [a for a in logic.on_request(_req("p1"), 0) if isinstance(a, Fire)]
    logic.on_fired("p1", 1, status=_status(ScannerState.SCANNING, scan_id=1))
    done = logic.on_status(_status(ScannerState.COMPLETE, scan_id=1, result=ScanResult.GREEN), 20)
    assert [a.type for a in done if isinstance(a, Publish)] == ["scan.completed"]
    assert logic.on_request(_req("p1"), 21) == []  # re-delivered: one inspection per passage
    assert logic.on_request(_req("p1", recheck=True), 22) == [Resend("p1")]  # asked again: the result again
    queued = logic.on_request(_req("p2", recheck=True), 23)  # a request the scanner never got
    assert [a.type for a in queued if isinstance(a, Publish)] == ["scan.queued"]
    assert fire.entry.passage_id == "p1" and logic.settled_requests == 2


def test_a_restart_settles_the_journalled_scan_from_the_plc_before_firing_again() -> None:
    logic = ScannerLogic("xray-1", LANES)
    logic.on_status(_status(scan_id=4), 0)
    logic.on_request(_req("p1"), 0)
    logic.on_request(_req("p2"), 0)
    journal = logic.journal()
    assert journal.keys() == {"current", "queued:p2"} and journal["current"]["scan_id_before"] == 4
    after = ScannerLogic("xray-1", LANES)
    after.restore(journal, [])
    assert after.phase is Phase.RECOVERING
    # The PLC fired and finished while the daemon was down: its result is published, p2 goes next.
    out = after.on_status(_status(ScannerState.COMPLETE, scan_id=5, result=ScanResult.RED), 10)
    assert [(a.type, a.subject) for a in out if isinstance(a, Publish)] == [("scan.completed", "p1")]
    assert [a.entry.passage_id for a in out if isinstance(a, Fire)] == ["p2"]
