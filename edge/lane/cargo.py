"""The radiation portal and the seals in the lane's passages — part of ``LaneLogic``, pure.

``LaneLogic`` inherits these rules; they act on its passage through its own helpers. The named
blockers and what an adjudication code does are ``cargo_checks.py``; this module says when a
passage asks them and what the lane does with the answer.

* **Occupancies.** The portal stands on the approach: a vehicle passes through it on its way to
  the stop line, and the portal reports the occupancy when the vehicle has left it. Each
  passage takes the occupancy that follows the previous passage's: one reported while the
  passage in progress has none is its own, unless it began more than ``AFTER_STOP_S`` after
  that vehicle stopped at the stop line (then a vehicle behind it passed the portal); any other
  waits, in order, for the next passage (``CargoLane.pending``, bounded, ``PENDING_S``) — unless
  the gate controller counts more vehicles through the arm than passages whose vehicle went
  under it: the one that was no passage's takes the oldest. Each
  is published once it has its passage (``rpm.occupancy``, with its N42.42 document); one no
  passage took is published without one, with ``lane.exception rpm_occupancy_unmatched``. The
  portal identifies no vehicle: the order is all there is, so a vehicle that turns back after
  the portal, or an occupancy sensor tripped by something else, shifts it — the bounds limit
  how far, and the officer sees ``rpm_occupancy_unmatched``.
* **Alarms.** An occupancy that alarmed publishes ``rpm.alarm`` and ``lane.exception
  radiation_alarm`` at once and sends the driver to the radiation check (the board); the
  vehicle waits there for the secondary inspection's adjudication (the signed ``adjudicate``).
  A code whose effect is ``release`` lifts the blocker (the passage is released once every
  agency has released it); ``divert`` diverts it to the inspection bay, with the code as reason.
* **Portal health.** Offline, faulted or tampered with: every automatic release of the lane
  waits (each passage says so once), the lane stays in service, and the lane says it once per
  episode (``lane.exception rpm_fault`` / ``rpm_tamper``, ``device.state``).
* **Seals** (``seals.py``, mixed in here). Read at identification: ``seal.read`` is published,
  and the seal blockers are identification exceptions in ``vehicle.identified``. E-locks are
  applied and removed only on a signed ``seal_apply`` / ``seal_remove`` from customs, checked
  against the seals read, audited and carried out by the executor.
* **The choke point.** :meth:`CargoRules._cargo_hold` is asked by ``LaneLogic._release`` before
  every automatic release — online decisions and signed pre-decisions alike: the release goes
  ahead only when ``release_allowed``; otherwise each blocker is raised once for the passage as
  a named ``lane.exception`` and the release waits (``CargoPassage.release_waiting``) until
  what held it changes. The second guard, :meth:`CargoRules.cargo_allows_open`, is asked by
  ``authorises_open`` right before an open frame: the passage's own blockers (occupancy, alarm,
  seals) must still be clear — the lane-wide ones are the decision's, as a portal fault after a
  release does not take back a vehicle the portal cleared.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from portlane.drivers.cargo_devices import RpmStatus
from portlane.edge.contract.commands import ADJUDICATION_CODES
from portlane.edge.contract.events import (
    DeviceState,
    LaneException,
    RadiationCategory,
    ReleaseBasis,
    RpmAdjudicated,
    RpmAlarm,
    RpmOccupancyEvent,
)
from portlane.edge.contract.times import parse_rfc3339

from .actions import Action, BoardColour, Publish, ShowBoard
from .cargo_checks import (
    Blocker,
    RpmPassage,
    SealSeen,
    adjudication_effect,
    cargo_blockers,
    portal_health,
    release_allowed,
)
from .passage import DECIDING, GATE_MAY_BE_OPEN, CargoLane, Passage, Sensors, Stage, counted_since
from .seals import SealRules

__all__ = [
    "AFTER_STOP_S",
    "PENDING_MAX",
    "PENDING_S",
    "CargoRules",
]

#: An occupancy no passage took waits for the next vehicle at most this long: trucks queue on
#: the approach for minutes, not for longer (as the e-card reads, ``TAG_BEFORE_ARRIVAL_S``).
PENDING_S = 300.0
#: ... and at most this many wait: more occupancies than vehicles in the queue is a portal
#: counting something else (a pedestrian, a stuck sensor), not vehicles to come.
PENDING_MAX = 4
#: A vehicle's own occupancy began before it reached the stop line (the portal is on the
#: approach). One that began this long after the passage's vehicle stopped there is a vehicle's
#: behind it. The margin covers the lane's sampling and the portal's line delay on a starved
#: host: the driver stamps a line when it reads it, and at load 9 on the 2-core reference box the
#: demo's lanes read their portal's lines seconds late.
AFTER_STOP_S = 10.0
#: More vehicles than this through the arm between two samples is the controller's counter
#: starting again (a replaced or reset controller), not traffic: a lane samples several times a second.
PASS_JUMP = 8
RADIATION_CHECK: tuple[str, BoardColour] = ("辐射复检 RADIATION CHECK", "amber")
_WAIT: tuple[str, BoardColour] = ("请等待 PLEASE WAIT", "amber")


def _alarmed(occ: RpmOccupancyEvent) -> bool:
    return occ.verdict == "alarm" or occ.gamma_alarm or occ.neutron_alarm


def _key(b: Blocker) -> str:
    """A blocker is raised once per passage: a portal's by kind, a seal's by seal."""
    return b.kind if not b.kind.startswith("seal_") and b.kind != "elock_off_route" else f"{b.kind}:{b.detail}"


class CargoRules(SealRules):
    """Mixed into ``LaneLogic``: the attributes and helpers below are the logic's (the seals'
    rules are ``seals.py``)."""

    cargo: CargoLane

    if TYPE_CHECKING:
        agencies: tuple[str, ...]
        passage: Passage | None
        history: deque[Passage]
        sensors: Sensors

        def _release(self, now: float, basis: ReleaseBasis = ...) -> list[Action]: ...
        def _divert(self, now: float) -> list[Action]: ...
        def _alert_once(self, p: Passage, kind: str, detail: str, *, key: str | None = None) -> list[Action]: ...

    # ------------------------------------------------------------------ what the rules see
    def _portal(self, p: Passage | None) -> RpmPassage | None:
        c = self.cargo
        if c.portal is None:
            return None
        st = c.status
        return RpmPassage(
            online=c.online,
            occupied=bool(st and st.occupied),
            occupancy=p.cargo.occupancy if p is not None else None,
            faults=tuple(sorted(f.value for f in st.faults)) if st is not None else (),
            tamper=bool(st and st.tamper),
            adjudication=p.cargo.adjudication if p is not None else None,
        )

    def cargo_blockers_of(self, p: Passage) -> tuple[Blocker, ...]:
        """Every reason the portal and the seals give not to release ``p`` automatically now."""
        cp = p.cargo
        read: tuple[SealSeen, ...] | None = None  # None: the lane has no reader
        failed: str | None = None
        if self.cargo.reader is not None:
            read = cp.seals if cp.seals is not None else ()
            failed = None if cp.seals is not None else (cp.seal_error or "not read")
        return cargo_blockers(
            self._portal(p), cp.declared, read, read_failed=failed, opened_by_command=cp.opened_by_command
        )

    def cargo_allows_open(self, p: Passage) -> bool:
        """Second guard (``authorises_open``): a release still has none of the passage's own
        blockers (occupancy, alarm, seals). Divert and override are not releases."""
        return p.gate_authority != "release" or not [b for b in self.cargo_blockers_of(p) if not b.lane_wide]

    def _radiation_pending(self, p: Passage) -> bool:
        occ = p.cargo.occupancy
        return occ is not None and _alarmed(occ) and p.cargo.adjudication is None

    def _wait_line(self, p: Passage) -> tuple[str, BoardColour]:
        """What the board says to a driver the lane holds: the radiation check, or wait."""
        return RADIATION_CHECK if self._radiation_pending(p) else _WAIT

    # ------------------------------------------------------------------ the choke point
    def _cargo_hold(self, p: Passage, now: float, basis: ReleaseBasis) -> list[Action] | None:
        """Asked before every automatic release of ``p`` (``basis``: on the agencies' online
        decisions or their pre-decisions): None when it may go ahead; else what holding it means —
        each blocker once as a named exception, or the divert an adjudicated real alarm calls for."""
        blockers = self.cargo_blockers_of(p)
        if release_allowed(blockers) and not p.cargo.seal_busy:
            p.cargo.release_waiting = False
            return None
        if any(b.kind == "radiation_alarm" and b.divert and b.resolved_by == "officer" for b in blockers):
            # Adjudicated: a real alarm, unauthorised activity or "other" keep it in secondary inspection.
            p.cargo.release_waiting = False
            p.reason = next(b.detail for b in blockers if b.kind == "radiation_alarm")
            return self._divert(now)
        p.cargo.release_waiting = True  # (an e-lock being applied or removed: until the lock answers)
        p.cargo.basis = basis  # what the release rests on when it goes ahead
        out: list[Action] = []
        for b in blockers:
            out += self._alert_once(p, b.kind, b.detail, key=_key(b))
        return [*out, ShowBoard.of(self._wait_line(p))] if out else out

    def _cargo_retry(self, now: float) -> list[Action]:
        """What held a release changed: release now if every agency still releases."""
        p = self.passage
        if p is None or not p.cargo.release_waiting or p.stage not in DECIDING:
            return []
        if not all(p.decisions.get(a) == "release" for a in self.agencies):
            p.cargo.release_waiting = False  # a later hold or divert took it back
            return []
        return self._release(now, p.cargo.basis)

    def _cargo_board(self, p: Passage) -> list[Action]:
        """After identification: a driver whose alarm waits for its adjudication is sent to the
        radiation check (the board's last word), whatever the pre-decisions said."""
        if p.stage not in DECIDING or not self._radiation_pending(p):
            return []
        plate = p.identity.plates[0].text if p.identity is not None and p.identity.plates else "????"
        return [ShowBoard.of((plate, "green"), RADIATION_CHECK)]

    # ------------------------------------------------------------------ the portal
    def on_rpm_status(self, status: RpmStatus | None, now: float) -> list[Action]:
        """The portal's state (None: it does not answer). Says each lane-wide blocker once per
        episode; when the last clears, held releases go ahead."""
        c = self.cargo
        if c.portal is None:
            return []
        c.online, c.status = status is not None, status
        health = portal_health(self._portal(None) or RpmPassage())
        said = frozenset((b.kind, b.detail) for b in health)
        if said == c.said:
            return []
        out: list[Action] = [
            Publish("lane.exception", LaneException(passage_id=None, kind=kind, detail=detail))
            for kind, detail in sorted(said - c.said)
        ]
        if c.online and said:
            detail = "; ".join(d for _k, d in sorted(said)) + ": automatic release held"
            out.append(Publish("device.state", DeviceState(device="rpm", health="degraded", reason=detail[:300])))
        elif c.online and c.said:
            why = "radiation portal healthy again: automatic release resumes"
            out.append(Publish("device.state", DeviceState(device="rpm", health="online", reason=why)))
        c.said = said
        return out if said else out + self._cargo_retry(now)

    def on_occupancy(self, occ: RpmOccupancyEvent, now: float) -> list[Action]:
        """An occupancy the portal reported (``passage_id`` None): to its passage, or waiting."""
        p = self.passage
        if p is not None and self._is_its(p, occ):
            return self._attach(p, occ, now)
        pending = self.cargo.pending
        pending.append((now, occ))
        out: list[Action] = []
        while len(pending) > PENDING_MAX:
            out += self._unmatched(pending.popleft()[1], f"more than {PENDING_MAX} occupancies waiting for vehicles")
        return out

    @staticmethod
    def _is_its(p: Passage, occ: RpmOccupancyEvent) -> bool:
        if p.cargo.occupancy is not None or p.stage == Stage.COMPLETED:
            return False
        stopped = p.stamps.get("identifying")
        return stopped is None or parse_rfc3339(occ.started).timestamp() <= stopped + AFTER_STOP_S

    def _cargo_arrived(self, p: Passage, now: float) -> list[Action]:
        """A new passage takes the oldest occupancy waiting (a stale one is published unmatched)."""
        out: list[Action] = []
        pending = self.cargo.pending
        while pending:
            at, occ = pending.popleft()
            if now - at > PENDING_S:
                out += self._unmatched(occ, f"no vehicle arrived within {PENDING_S:.0f} s")
                continue
            return out + self._attach(p, occ, now)
        return out

    def _cargo_restarted(self, p: Passage, now: float) -> None:
        """At start, a passage an earlier run left unfinished: if its vehicle had not gone under
        the arm it is still in the lane (released or not: a restart closes the arm), and its
        occupancy waits again — for the vehicle's new passage, or for its pass through the arm
        (``_cargo_passes``) if the arm stayed open for it. One the controller counted through the
        arm while the lane was down (its count at start past the passage's at the open) has gone."""
        occ = p.cargo.occupancy
        gone = bool(counted_since(self.sensors.arm_passes, p.base_arm_passes))
        if occ is not None and not p.passed_arm and not p.cargo.passed and not gone:
            self.cargo.pending.appendleft((now, occ.model_copy(update={"passage_id": None})))
        p.cargo.passed = True  # counted by the run that saw it, or never: not by this one

    def _cargo_passes(self, s: Sensors, idle: Passage | None) -> list[Action]:
        """After each sample: more vehicles through the arm (the controller's latched count) than
        passages whose vehicle went under it (the lane's own evidence, ``passed_arm``) means one
        went through that was no passage's — through an arm an override or a refused close left
        open, or behind the passage's vehicle. Its occupancy is the oldest waiting, not the next
        passage's. Both counts are compared, not their moments: a count read late (a noisy bus)
        is matched with a passage that already completed on the exit loop's evidence. A vehicle
        the lane itself saw go under an arm left open without a passage (``idle``, the logic's
        ``_idle_open``) is one too, counted or not: a controller counts no vehicle under an arm
        whose photocell was already blocked when it rose (a pedestrian under it)."""
        c = self.cargo
        delta = counted_since(s.arm_passes, c.passes_seen)
        c.passes_seen = s.arm_passes
        if c.portal is None:
            return []
        if delta is not None and delta <= PASS_JUMP:  # (more at once: a controller reset, not vehicles)
            c.passes += delta
        for q in (self.passage, self.history[-1] if self.history else None):
            if q is not None and q.passed_arm and not q.cargo.passed:
                q.cargo.passed = True
                # Ahead of the count by one at most: the count of a passage before it that never
                # came (a count the controller missed) is not owed by later vehicles.
                c.through = min(c.through, c.passes) + 1
        out: list[Action] = []
        if idle is not None and idle.passed_arm and not idle.cargo.passed:
            idle.cargo.passed = True
            c.through = min(c.through, c.passes) + 1
            if c.pending:
                out += self._unmatched(c.pending.popleft()[1], "a vehicle went through the arm without a passage")
        while c.passes > c.through and c.pending:
            c.through += 1
            out += self._unmatched(c.pending.popleft()[1], "a vehicle went through the arm without a passage")
        c.through = max(c.through, c.passes)  # a vehicle the portal never counted owes nothing later
        return out

    @staticmethod
    def _unmatched(occ: RpmOccupancyEvent, why: str) -> list[Action]:
        detail = f"occupancy {occ.occupancy}{' (alarm)' if _alarmed(occ) else ''}: {why}"
        return [
            Publish("rpm.occupancy", occ),
            Publish("lane.exception", LaneException(passage_id=None, kind="rpm_occupancy_unmatched", detail=detail)),
        ]

    def _attach(self, p: Passage, occ: RpmOccupancyEvent, now: float) -> list[Action]:
        occ = occ.model_copy(update={"passage_id": p.id})
        p.cargo.occupancy = occ
        out: list[Action] = [Publish("rpm.occupancy", occ)]
        if _alarmed(occ):
            both: tuple[tuple[RadiationCategory, bool], ...] = (
                ("gamma", occ.gamma_alarm),
                ("neutron", occ.neutron_alarm),
            )
            categories = tuple(c for c, on in both if on)
            alarm = RpmAlarm(
                passage_id=p.id,
                portal=occ.portal,
                occupancy=occ.occupancy,
                categories=categories or ("gamma",),
                gamma_sigma=occ.gamma_sigma,
            )
            out.append(Publish("rpm.alarm", alarm))
            for b in self.cargo_blockers_of(p):
                if b.kind == "radiation_alarm":
                    gone = " (the vehicle was already let through)" if p.stage in GATE_MAY_BE_OPEN else ""
                    out += self._alert_once(p, b.kind, b.detail + gone, key=b.kind)
            if p.stage not in GATE_MAY_BE_OPEN:
                out.append(ShowBoard.of(RADIATION_CHECK, _WAIT))
        elif occ.verdict == "fault":
            why = ", ".join(occ.faults) or "portal faulted"
            out += self._alert_once(p, "rpm_fault", f"occupancy {occ.occupancy} counted while {why}", key="rpm_fault")
        return out + self._cargo_retry(now)

    def on_adjudicate(
        self,
        passage_id: str | None,
        *,
        agency: str,
        occupancy: int,
        code: int,
        isotopes: tuple[str, ...],
        remark: str,
        nonce: str,
        now: float,
    ) -> tuple[bool, str | None, list[Action]]:
        """An agency's (verified) adjudication of the alarm of ``passage_id``'s occupancy: the
        passage in progress, or one completed lately (then it is recorded only)."""
        if agency not in self.agencies:
            return False, "unknown_agency", []
        p = self.passage if self.passage is not None and self.passage.id == passage_id else None
        p = p or next((h for h in reversed(self.history) if h.id == passage_id), None)
        if p is None:
            return False, "stale_passage", []
        occ = p.cargo.occupancy
        if occ is None or occ.occupancy != occupancy:
            return False, "wrong_occupancy", []
        if not _alarmed(occ):
            return False, "no_alarm", []
        if p.cargo.adjudication is not None:
            return False, "already_adjudicated", []
        p.cargo.adjudication = code
        effect = adjudication_effect(code)
        group, label = ADJUDICATION_CODES[code]
        done = RpmAdjudicated(
            passage_id=p.id,
            occupancy=occupancy,
            agency=agency,
            code=code,
            code_name=f"{group}: {label}",
            effect=effect,
            isotopes=isotopes,
            remark=remark,
            command_nonce=nonce,
        )
        out: list[Action] = [Publish("rpm.adjudicated", done)]
        if p is not self.passage:
            return True, None, out
        if effect == "divert" and p.stage in DECIDING:
            p.cargo.release_waiting = False
            p.reason = f"radiation alarm adjudicated {code} ({group}: {label})"
            return True, None, out + self._divert(now)
        # release: a waiting release goes ahead; divert before the decision stage: at its release
        return True, None, out + self._cargo_retry(now)
