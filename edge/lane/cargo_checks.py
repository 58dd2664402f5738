"""Lane rules for the radiation portal and e-seals / e-locks — pure, synchronous, no I/O.

The lane logic calls these for the passage in progress (issue 21, phase 2 wires them in). Each
rule returns the named *blockers* of automatic release; no blocker, no objection. A blocker
says who can lift it and whether the vehicle goes to secondary inspection:

Radiation portal (``rpm_blockers``):

* ``rpm_occupancy_without_verdict`` — the portal has not reported the occupancy of this
  vehicle yet (it is still in the portal, or the portal missed it): release waits for it;
* ``radiation_alarm`` — the portal alarmed (gamma and/or neutron): the passage is held and
  diverted to secondary inspection, and needs an adjudication (the signed ``adjudicate``
  command) from an authorised agency before any release. The code decides
  (``adjudication_effect``): innocent, false and test alarms allow release; a real alarm,
  unauthorised activity or "other" keep the vehicle diverted;
* ``rpm_fault`` / ``rpm_tamper`` — the portal is faulted (background out of limits, occupancy
  sensor stuck, offline) or tampered with: its verdicts cannot clear anybody, so the lane
  releases nothing automatically — but stays in service (officers release by hand, audited).
  Lane-wide: they hold every passage until the portal is healthy again.

Seals (``seal_blockers``), against the seal ids the declaration names: ``seal_missing`` (a
declared seal not read), ``seal_foreign`` (a seal read that the declaration does not name),
``seal_opened``, ``seal_tampered``, ``elock_off_route`` (an e-lock that left its corridor, or
has no GPS track to show it did not), ``seal_read_failed`` (the lane has a reader but it did not
answer: nothing was checked). Each is an identification exception for an officer.

``check_seal_command`` is the lane's own check before it forwards a signed ``seal_apply`` /
``seal_remove`` to the reader (the lock checks the authorisation code itself).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from portlane.drivers.cargo_devices import RpmOccupancy, RpmStatus, SealRecord
from portlane.edge.contract.commands import ADJUDICATION_CODES, AdjudicationCode
from portlane.edge.contract.events import RpmOccupancyEvent, RpmVerdict, SealInfo
from portlane.edge.contract.times import format_rfc3339, rfc3339

__all__ = [
    "ADJUDICATION_EFFECT",
    "Blocker",
    "BlockerKind",
    "Effect",
    "RpmPassage",
    "SealSeen",
    "adjudication_effect",
    "cargo_blockers",
    "check_seal_command",
    "occupancy_event",
    "portal_health",
    "release_allowed",
    "rpm_blockers",
    "seal_blockers",
    "seal_info",
    "seal_seen",
]

BlockerKind = Literal[
    "rpm_occupancy_without_verdict",
    "radiation_alarm",
    "rpm_fault",
    "rpm_tamper",
    "seal_missing",
    "seal_foreign",
    "seal_opened",
    "seal_tampered",
    "elock_off_route",
    "seal_read_failed",
]
BLOCKER_KINDS: tuple[BlockerKind, ...] = get_args(BlockerKind)
Effect = Literal["release", "divert"]
ResolvedBy = Literal["portal", "adjudication", "technician", "officer"]

#: What an adjudication code does to the passage. Release only when the alarm was innocent
#: (medical, NORM, a declared shipment), false, or an authorised test; a real alarm,
#: unauthorised activity or "other" keep the vehicle in secondary inspection.
ADJUDICATION_EFFECT: dict[AdjudicationCode, Effect] = {
    AdjudicationCode.REAL_CONTRABAND: "divert",
    AdjudicationCode.REAL_OTHER: "divert",
    AdjudicationCode.INNOCENT_MEDICAL: "release",
    AdjudicationCode.INNOCENT_NORM: "release",
    AdjudicationCode.INNOCENT_DECLARED: "release",
    AdjudicationCode.FALSE_INSPECTION_NEGATIVE: "release",
    AdjudicationCode.FALSE_BACKGROUND_ONLY: "release",
    AdjudicationCode.FALSE_OTHER: "release",
    AdjudicationCode.TEST_MAINTENANCE: "release",
    AdjudicationCode.TAMPER_UNAUTHORISED: "divert",
    AdjudicationCode.OTHER: "divert",
}
assert set(ADJUDICATION_EFFECT) == set(AdjudicationCode) == set(map(AdjudicationCode, ADJUDICATION_CODES))


def adjudication_effect(code: int) -> Effect:
    """``release`` or ``divert`` for an adjudication code; ``ValueError`` for a code outside 1–11."""
    return ADJUDICATION_EFFECT[AdjudicationCode(code)]


@dataclass(frozen=True, slots=True)
class Blocker:
    """One reason automatic release is not allowed now."""

    kind: BlockerKind
    detail: str
    resolved_by: ResolvedBy
    divert: bool = False  # the vehicle goes to secondary inspection
    lane_wide: bool = False  # holds every passage until the device is healthy (not only this one)


@dataclass(frozen=True, slots=True)
class RpmPassage:
    """What the lane knows of the radiation portal for the passage in progress.

    ``occupancy`` is the portal's report of *this* vehicle's pass (None until it came);
    ``adjudication`` the code of the signed ``adjudicate`` command for that occupancy.
    """

    online: bool = True
    occupied: bool = False
    occupancy: RpmOccupancyEvent | None = None
    faults: tuple[str, ...] = ()
    tamper: bool = False
    adjudication: int | None = None


@dataclass(frozen=True, slots=True)
class SealSeen:
    """One seal as the reader read it (the lane's view of ``drivers.cargo_devices.SealRecord``)."""

    seal_id: str
    state: Literal["sealed", "opened", "tampered"] = "sealed"
    elock: bool = False
    route: Literal["on_route", "off_route", "no_fix"] | None = None


# --------------------------------------------------------------------------- radiation portal


def portal_health(rpm: RpmPassage) -> tuple[Blocker, ...]:
    """The lane-wide blockers: the portal offline, faulted or tampered with."""
    out: list[Blocker] = []
    if not rpm.online:
        out.append(Blocker("rpm_fault", "radiation portal offline", "technician", lane_wide=True))
    if rpm.faults:
        out.append(
            Blocker("rpm_fault", "radiation portal fault: " + ", ".join(rpm.faults), "technician", lane_wide=True)
        )
    if rpm.tamper:
        out.append(Blocker("rpm_tamper", "radiation portal reports tamper", "technician", lane_wide=True))
    return tuple(out)


def _verdict(rpm: RpmPassage) -> tuple[Blocker, ...]:
    occ = rpm.occupancy
    if occ is None:
        where = "the vehicle is still in the portal" if rpm.occupied else "no occupancy reported for this vehicle"
        return (Blocker("rpm_occupancy_without_verdict", where, "portal"),)
    if occ.verdict == "fault":
        why = ", ".join(occ.faults) or "portal faulted"
        return (Blocker("rpm_fault", f"occupancy {occ.occupancy} counted while {why}", "technician"),)
    return ()


def _alarm(rpm: RpmPassage) -> tuple[Blocker, ...]:
    occ = rpm.occupancy
    if occ is None or not (occ.verdict == "alarm" or occ.gamma_alarm or occ.neutron_alarm):
        return ()
    what = " and ".join(c for c, on in (("gamma", occ.gamma_alarm), ("neutron", occ.neutron_alarm)) if on) or "portal"
    if rpm.adjudication is None:
        return (
            Blocker(
                "radiation_alarm",
                f"{what} alarm, occupancy {occ.occupancy}: awaiting adjudication",
                "adjudication",
                divert=True,
            ),
        )
    if adjudication_effect(rpm.adjudication) == "divert":
        group, label = ADJUDICATION_CODES[rpm.adjudication]
        return (
            Blocker(
                "radiation_alarm",
                f"{what} alarm adjudicated {rpm.adjudication} ({group}: {label})",
                "officer",
                divert=True,
            ),
        )
    return ()


def rpm_blockers(rpm: RpmPassage | None) -> tuple[Blocker, ...]:
    """Blockers from the radiation portal (None: the lane has no portal)."""
    if rpm is None:
        return ()
    return portal_health(rpm) + _verdict(rpm) + _alarm(rpm)


# --------------------------------------------------------------------------- seals


def _declared_read(declared: Collection[str] | None, read: Sequence[SealSeen]) -> tuple[Blocker, ...]:
    if declared is None:
        return ()
    seen = {s.seal_id for s in read}
    out = [Blocker("seal_missing", f"declared seal {sid} not read", "officer") for sid in sorted(set(declared) - seen)]
    out += [
        Blocker("seal_foreign", f"seal {sid} is not in the declaration", "officer")
        for sid in sorted(seen - set(declared))
    ]
    return tuple(out)


def _seal_states(read: Sequence[SealSeen]) -> tuple[Blocker, ...]:
    # Every read counts: a seal read twice with two states (two antennas, a flaky tag) is
    # judged on the worse one; duplicate blockers are folded.
    out: dict[tuple[str, str], Blocker] = {}
    for s in sorted(read, key=lambda s: s.seal_id):
        found: list[Blocker] = []
        if s.state == "opened":
            found.append(Blocker("seal_opened", f"seal {s.seal_id} is open", "officer"))
        elif s.state == "tampered":
            found.append(Blocker("seal_tampered", f"seal {s.seal_id} reports tampering", "officer"))
        if s.elock and s.route != "on_route":
            why = "left the declared corridor" if s.route == "off_route" else "has no GPS track to vouch for its route"
            found.append(Blocker("elock_off_route", f"e-lock {s.seal_id} {why}", "officer"))
        for b in found:
            out.setdefault((b.kind, b.detail), b)
    return tuple(out.values())


def seal_blockers(
    declared: Collection[str] | None, read: Sequence[SealSeen], *, opened_by_command: Collection[str] = ()
) -> tuple[Blocker, ...]:
    """Blockers from the seals read on the vehicle in position, against the declared seal ids
    (``None``: the vehicle has no declaration to compare with — only the seals' own states
    count; an empty collection: the declaration names no seal, so any seal read is foreign).
    E-locks in ``opened_by_command`` were opened at the lane on a signed ``seal_remove``: their
    state is what customs asked for, not an exception."""
    judged = [s for s in read if s.seal_id not in opened_by_command]
    return _declared_read(declared, read) + _seal_states(judged)


def check_seal_command(action: Literal["apply", "remove"], seal_id: str, read: Sequence[SealSeen]) -> str | None:
    """Why the lane refuses to forward a signed ``seal_apply`` / ``seal_remove`` (None: forward it)."""
    seal = next((s for s in read if s.seal_id == seal_id), None)
    if seal is None:
        return "seal_not_in_field"
    if not seal.elock:
        return "not_an_elock"
    if action == "apply" and seal.state != "opened":
        return "elock_not_open"
    if action == "remove" and seal.state != "sealed":
        return "elock_not_sealed"
    return None


# --------------------------------------------------------------------------- together


def cargo_blockers(
    rpm: RpmPassage | None,
    declared: Collection[str] | None,
    read: Sequence[SealSeen] | None,
    *,
    read_failed: str | None = None,
    opened_by_command: Collection[str] = (),
) -> tuple[Blocker, ...]:
    """Every blocker of the passage from its portal and its seals (``read`` None: no reader).
    ``read_failed``: the lane has a reader but its read of this vehicle failed (why) — the
    seals are unchecked, which is a blocker of its own (their states and the declaration cannot
    be compared with anything)."""
    if read_failed is not None:
        failed = Blocker("seal_read_failed", f"seal reader did not read the vehicle: {read_failed}", "officer")
        return (*rpm_blockers(rpm), failed)
    seals = seal_blockers(declared, read, opened_by_command=opened_by_command) if read is not None else ()
    return rpm_blockers(rpm) + seals


def release_allowed(blockers: Sequence[Blocker]) -> bool:
    """Automatic release is allowed only with no blocker at all."""
    return not blockers


# --------------------------------------------------------------------------- from the drivers


def occupancy_event(
    occ: RpmOccupancy, status: RpmStatus | None, *, portal: str, passage_id: str | None
) -> RpmOccupancyEvent:
    """The contract's ``rpm.occupancy`` for one occupancy the portal reported, with its verdict:
    ``alarm`` when the portal alarmed (whatever else), ``fault`` when the portal was faulted or
    tampered with as the occupancy ended (``status``, read then), else ``clear``."""
    faults: tuple[str, ...] = ()
    if status is not None:
        faults = tuple(sorted(str(f) for f in status.faults)) + (("tamper",) if status.tamper else ())
    verdict: RpmVerdict = "alarm" if occ.alarm else "fault" if faults else "clear"
    return RpmOccupancyEvent(
        passage_id=passage_id,
        portal=portal,
        occupancy=occ.number,
        started=rfc3339(occ.started_at),
        ended=rfc3339(occ.ended_at),
        live_s=round(occ.live_s, 3),
        gamma_counts=occ.gamma_counts,
        neutron_counts=occ.neutron_counts,
        gamma_background_cps=occ.gamma_background_cps,
        neutron_background_cps=occ.neutron_background_cps,
        gamma_alarm=occ.gamma_alarm,
        neutron_alarm=occ.neutron_alarm,
        gamma_sigma=round(occ.gamma_sigma, 2),
        nsigma=occ.nsigma,
        speed_kph=occ.speed_kph,
        verdict=verdict,
        faults=faults,
    )


def seal_seen(r: SealRecord) -> SealSeen:
    """The rules' view of a seal the reader read."""
    return SealSeen(r.seal_id, r.state.value, r.kind.value == "elock", r.route.value if r.route else None)


def seal_info(r: SealRecord) -> SealInfo:
    """The contract's view of a seal the reader read (for ``seal.read``)."""
    return SealInfo(
        seal_id=r.seal_id,
        kind=r.kind.value,
        state=r.state.value,
        sealed_at=format_rfc3339(r.sealed_at) if r.sealed_at else None,
        opened_at=format_rfc3339(r.opened_at) if r.opened_at else None,
        battery_pct=r.battery_pct,
        battery_low=r.battery_low,
        route=r.route.value if r.route else None,
    )
