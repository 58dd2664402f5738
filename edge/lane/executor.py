"""The one place the lane's actions touch the world.

``apply`` takes the logic's actions in order: events and audit entries are written to disk at
once (so the record of a decision is durable before the barrier moves), an identification is
started, and device actions are queued for ``run``. Consecutive events share one outbox
transaction (a release writes ``passage.decided`` and ``passage.released`` with one fsync);
each is on disk before any action that follows it. ``run`` has one worker per device — gate,
light, board, seal reader — each carrying out its own actions in order: the devices sit on different links,
so an open never waits behind a guidance-board write (several frames at 9600 baud, ~100 ms).
One order across devices is kept: a close waits until every light command queued before it
has been carried out (red before the arm comes down).

The light and the board are kept as told: the I/O module reports the lamp it drives, so a
light command lost on the wire (or a module restarted) is re-sent until the module reports
the wanted colour; a board write that failed is re-sent too (the board cannot be read back).
A driver waits for green, so a lost "green" would otherwise stall the lane for good.

E-lock commands (``SealCommand``, from a verified ``seal_apply`` / ``seal_remove``) are audited
when submitted, before the reader is told; the lock's answer goes back to the logic
(``on_seal_changed`` / ``on_seal_refused``), through ``report`` (the daemon's ``apply``, so
what follows is journalled like any other input).

The executor is the second safety guard. It opens the gate only when the logic's current
passage holds a gate authority (release, divert or audited override) — for a release on
pre-decisions, only while each of them is in the lane's book, used by this passage and not
revoked (``LaneLogic.authorises_open``), so an open a control order overtook is refused —
and it re-reads the controller's own photocell and safety loop right before a close frame;
the controller's own refusal to close onto a vehicle is the third.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from portlane.drivers.base import BoardColour, BoardLine, LightColour
from portlane.drivers.errors import DeviceError, DeviceUnavailableError
from portlane.edge.delivery.events import EventWriter
from portlane.edge.trust.audit import AuditLog

from .actions import Action, Audit, CloseGate, Identify, OpenGate, Publish, SealCommand, SetLight, ShowBoard, StopGate
from .devices import LaneDevices
from .logic import LaneLogic
from .passage import Sensors
from .seals import lock_refusal

__all__ = ["Executor", "ExecutorCounters"]

log = logging.getLogger(__name__)

DeviceAction = OpenGate | CloseGate | StopGate | SetLight | ShowBoard | SealCommand

#: A lamp command reaches the module within one poll; it reports another colour after this
#: long only if the command was lost (or the module restarted).
LIGHT_SETTLE_S = 1.0
#: Between re-sends of a board text that failed to reach the board.
BOARD_RETRY_S = 2.0


@dataclass
class ExecutorCounters:
    gate_opens: int = 0
    gate_closes: int = 0
    gate_opens_unauthorised_refused: int = 0
    closes_refused_occupied: int = 0
    device_failures: dict[str, int] = field(default_factory=dict)
    resent: dict[str, int] = field(default_factory=dict)


class Executor:
    def __init__(
        self,
        *,
        lane: str,
        logic: LaneLogic,
        devices: LaneDevices,
        events: EventWriter,
        audit: AuditLog,
        identify: Callable[[str], None],
        clock: Callable[[], float],
        report: Callable[[Iterable[Action]], None] | None = None,
    ) -> None:
        self.lane = lane
        self.logic = logic
        self.devices = devices
        self.events = events
        self.audit = audit
        self.identify = identify
        self.clock = clock
        self.report = report or self.apply  # where the logic's answers to device feedback go
        self.counters = ExecutorCounters()
        # One queue per device, items (submission number, action); the number orders a drain
        # and lets a close wait for the light commands submitted before it.
        self._queues: dict[str, asyncio.Queue[tuple[int, DeviceAction]]] = {
            "gate": asyncio.Queue(),
            "light": asyncio.Queue(),
            "board": asyncio.Queue(),
            "seals": asyncio.Queue(),
        }
        self._numbers = itertools.count()
        self._lights_open: collections.deque[int] = collections.deque()  # light commands not yet done
        self._light_progress = asyncio.Event()
        self.light_wanted: SetLight | None = None
        self._light_sent_at = 0.0
        self._board_unsent: ShowBoard | None = None
        self._board_sent_at = 0.0

    # ------------------------------------------------------------------ synchronous side
    def apply(self, actions: Iterable[Action]) -> None:
        events: list[Publish] = []  # written together, before the next action of another kind
        for a in actions:
            if isinstance(a, Publish):
                events.append(a)
                continue
            self._write(events)
            events = []
            match a:
                case Audit():
                    self.audit.append(a.kind, actor=a.actor, reason=a.reason, lane=self.lane, data=a.fields())
                case Identify(passage_id=pid):
                    self.identify(pid)
                case SetLight():
                    self.light_wanted, self._light_sent_at = a, self.clock()
                    self._submit(a)
                case ShowBoard():
                    self._board_unsent = None  # superseded
                    self._submit(a)
                case OpenGate() | CloseGate() | StopGate():
                    self._submit(a)
                case SealCommand():
                    # On disk before the lock is told (never the authorisation code).
                    data = {"passage_id": a.passage_id, "seal_id": a.seal_id, "agency": a.agency, "nonce": a.nonce}
                    self.audit.append(f"seal_{a.action}", actor=a.key_id, reason=a.agency, lane=self.lane, data=data)
                    self._submit(a)
        self._write(events)

    def _write(self, events: list[Publish]) -> None:
        if events:
            self.events.put_many([(e.type, e.data, e.subject, None) for e in events])

    def _submit(self, a: DeviceAction) -> None:
        n = next(self._numbers)
        if isinstance(a, SetLight):
            self._lights_open.append(n)
            self._queues["light"].put_nowait((n, a))
        elif isinstance(a, ShowBoard):
            self._queues["board"].put_nowait((n, a))
        elif isinstance(a, SealCommand):
            self._queues["seals"].put_nowait((n, a))
        else:
            self._queues["gate"].put_nowait((n, a))

    def reconcile(self, light_now: str | None, now: float) -> None:
        """Re-send the light when the I/O module reports another colour than the one last told
        (after ``LIGHT_SETTLE_S``), and a board write that failed (after ``BOARD_RETRY_S``)."""
        want = self.light_wanted
        lost = want is not None and light_now is not None and light_now != want.colour
        if want is not None and lost and now - self._light_sent_at > LIGHT_SETTLE_S:
            self._light_sent_at = now
            self.counters.resent["SetLight"] = self.counters.resent.get("SetLight", 0) + 1
            self._submit(want)
        board = self._board_unsent
        if board is not None and now - self._board_sent_at > BOARD_RETRY_S:
            self._board_unsent = None
            self._board_sent_at = now
            self.counters.resent["ShowBoard"] = self.counters.resent.get("ShowBoard", 0) + 1
            self._submit(board)

    @property
    def pending(self) -> int:
        return sum(q.qsize() for q in self._queues.values())

    # ------------------------------------------------------------------ device side
    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for device, queue in self._queues.items():
                tg.create_task(self._worker(queue), name=f"{self.lane}:executor-{device}")

    async def _worker(self, queue: asyncio.Queue[tuple[int, DeviceAction]]) -> None:
        while True:
            n, a = await queue.get()
            if isinstance(a, CloseGate):
                # Red before the arm comes down: the light commands submitted before this close.
                while self._lights_open and self._lights_open[0] < n:
                    self._light_progress.clear()
                    await self._light_progress.wait()
            await self._carry_out(n, a)

    async def _carry_out(self, n: int, a: DeviceAction) -> None:
        try:
            await self.execute(a)
        except DeviceError as exc:
            # Not retried here: the logic re-sends a gate command the controller has not
            # confirmed, and the board and light are re-written on the next change.
            name = type(a).__name__
            self.counters.device_failures[name] = self.counters.device_failures.get(name, 0) + 1
            log.warning("%s: %s failed: %s", self.lane, a, exc)
            if isinstance(a, ShowBoard) and self._board_unsent is None:
                self._board_unsent, self._board_sent_at = a, self.clock()
        finally:
            if isinstance(a, SetLight):
                with contextlib.suppress(ValueError):
                    self._lights_open.remove(n)
                self._light_progress.set()

    async def drain(self) -> None:
        """Carry out every device action queued now, in the order submitted (tests; the daemon
        uses ``run``)."""
        while True:
            items: list[tuple[int, DeviceAction]] = []
            for queue in self._queues.values():
                while not queue.empty():
                    items.append(queue.get_nowait())
            if not items:
                return
            # What these submit (a refused close's actions) comes after them, as in one queue.
            for n, a in sorted(items, key=lambda item: item[0]):
                await self._carry_out(n, a)

    async def execute(self, a: DeviceAction) -> None:
        match a:
            case OpenGate(passage_id=pid, cause=cause):
                if not self.logic.authorises_open(pid, cause):
                    self.counters.gate_opens_unauthorised_refused += 1
                    log.error("%s: refused to open the gate without authority (%s)", self.lane, a)
                    return
                await self.devices.gate.open()
                self.counters.gate_opens += 1
            case CloseGate():
                st = await self.devices.gate.status()
                if not self.logic.may_close(Sensors(photocell=st.photocell_blocked, safety_loop=st.loop_occupied)):
                    self.counters.closes_refused_occupied += 1
                    self.apply(self.logic.on_close_refused(self.clock()))
                    return
                await self.devices.gate.close_arm()
                self.counters.gate_closes += 1
            case StopGate():
                await self.devices.gate.stop()
            case SetLight(colour=colour):
                await self.devices.io.set_light(LightColour(colour))
            case ShowBoard(lines=lines):
                board = self.devices.board
                if board is not None:
                    await board.show([BoardLine(line.text, BoardColour(line.colour)) for line in lines])
            case SealCommand():
                await self._seal(a)

    async def _seal(self, a: SealCommand) -> None:
        """Tell the reader; the lock's answer (its record, or its refusal) goes to the logic."""
        reader = self.devices.seal_reader
        try:
            if reader is None:
                raise DeviceUnavailableError("the lane has no seal reader", device=f"{self.lane}/seal_reader")
            command = reader.apply if a.action == "apply" else reader.remove
            record = await command(a.seal_id, authorisation=a.authorisation)
        except DeviceError as exc:
            log.warning("%s: seal_%s %s not carried out: %s", self.lane, a.action, a.seal_id, exc)
            self.report(self.logic.on_seal_refused(a, lock_refusal(exc), str(exc), self.clock()))
            return
        self.report(self.logic.on_seal_changed(a, record, self.clock()))
