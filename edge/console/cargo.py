"""The console's rules for what the cargo lanes added (issues 20 and 21): radiation alarms and
their adjudication, seal exceptions and e-lock changes, what released a passage, why a lane did
not release a declared vehicle itself, and control orders that took a release back. Pure: a
verified event in, effects out, the lane's counters and the passage under way moved
(``picture.py``). ``live.SiteLive`` calls them.

Alarm rules (``kind``: when raised → when cleared):

* ``radiation``    ``rpm.alarm``: the truck is held for a secondary inspection → an agency's
                   adjudication (``rpm.adjudicated``, shown as a notice with its code and effect),
                   or the passage completed; a portal fault during an occupancy — notice
* ``seal``         ``seal.read`` with seal exceptions (tampered, foreign, missing …) → the
                   passage completed; an e-lock applied or removed (``seal.changed``) — notice
* ``predecision``  ``lane.exception predecision_revoked`` (a control order took back a release
                   on pre-decisions before the arm) and ``revoked_after_release`` (too late: the
                   vehicle is through) — critical notices
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from .effects import Clear, Effect, Raise
from .picture import LaneLive, LiveEvent, PassageLive

__all__ = ["CARGO_EVENTS", "EXCEPTION_TITLES", "apply_cargo", "completed_clears", "count_refusals", "note_basis"]

#: The event types these rules read (``passage.*`` and ``vehicle.identified`` go through live.py).
CARGO_EVENTS = frozenset({"rpm.occupancy", "rpm.alarm", "rpm.adjudicated", "seal.read", "seal.changed"})
#: lane.exception kinds of the pre-decisions, titled and raised critical.
EXCEPTION_TITLES = {
    "predecision_revoked": "control order: the release on pre-decisions was taken back",
    "revoked_after_release": "control order after the vehicle was released on pre-decisions",
}


def _radiation_key(lane: LaneLive, pid: str | None, d: Mapping[str, Any]) -> str:
    return f"radiation:{lane.id}:{pid or d.get('occupancy')}"


def apply_cargo(
    lane: LaneLive, ev: LiveEvent, p: PassageLive | None, pid: str | None, agencies: tuple[str, ...]
) -> list[Effect]:
    """One radiation-portal or seal event of ``lane`` (``p``: its passage under way, if it is)."""
    d, t, ms = ev.data, ev.type, ev.time_ms
    if t == "rpm.alarm":
        if p is not None:
            p.radiation = "alarm"
        cats = ", ".join(str(c) for c in d.get("categories", ())) or "?"
        return [
            Raise(
                _radiation_key(lane, pid, d),
                "radiation",
                "critical",
                lane.id,
                pid,
                agencies,
                f"{lane.id}: radiation alarm ({cats})",
                f"portal {d.get('portal')}, occupancy {d.get('occupancy')}, {_num(d.get('gamma_sigma'))} σ: "
                "secondary inspection, then an agency adjudicates",
                ev.id,
                ms,
            )
        ]
    if t == "rpm.adjudicated":
        effect = str(d.get("effect", ""))
        if p is not None:
            p.radiation = f"adjudicated: {effect}"
        isotopes = ", ".join(str(x) for x in d.get("isotopes", ())) or "none identified"
        return [
            Clear(_radiation_key(lane, pid, d), ms),
            Raise(
                f"adjudicated:{ev.id}",
                "radiation",
                "info" if effect == "release" else "warning",
                lane.id,
                pid,
                agencies,
                f"{lane.id}: radiation alarm adjudicated by {d.get('agency')}: {d.get('code_name')} "
                f"({d.get('code')}) → {effect}",
                f"isotopes: {isotopes}. {d.get('remark') or ''}".strip(),
                ev.id,
                ms,
                notice=True,
            ),
        ]
    if t == "rpm.occupancy" and d.get("verdict") == "fault":
        faults = ", ".join(str(x) for x in d.get("faults", ())) or "fault"
        return [
            Raise(
                f"portal:{ev.id}",
                "radiation",
                "warning",
                lane.id,
                pid,
                agencies,
                f"{lane.id}: radiation portal faulted during an occupancy",
                f"portal {d.get('portal')}: {faults}; its counts cannot clear the vehicle",
                ev.id,
                ms,
                notice=True,
            )
        ]
    if t == "seal.read":
        exceptions = [str(x) for x in d.get("exceptions", ())]
        if not exceptions:
            return []
        if p is not None:
            p.seal_exceptions = exceptions
        seals = ", ".join(f"{s.get('seal_id')} {s.get('state')}" for s in d.get("seals", ()) if isinstance(s, dict))
        return [
            Raise(
                f"seal:{lane.id}:{pid}",
                "seal",
                "warning",
                lane.id,
                pid,
                agencies,
                f"{lane.id}: seal exceptions: {', '.join(exceptions)}",
                f"read: {seals or 'none'}; declared: {', '.join(str(x) for x in d.get('declared', ())) or 'none'}",
                ev.id,
                ms,
            )
        ]
    if t == "seal.changed":
        return [
            Raise(
                f"elock:{ev.id}",
                "seal",
                "info",
                lane.id,
                pid,
                agencies,
                f"{lane.id}: e-lock {d.get('seal_id')} {d.get('action')} by {d.get('agency')} ({d.get('state')})",
                f"signed command {str(d.get('command_nonce', ''))[:12]}…",
                ev.id,
                ms,
                notice=True,
            )
        ]
    return []


def completed_clears(lane: LaneLive, pid: str, ms: int) -> list[Effect]:
    """What a completed passage settles: its seal exceptions, its radiation alarm."""
    return [Clear(f"seal:{lane.id}:{pid}", ms), Clear(f"radiation:{lane.id}:{pid}", ms)]


def note_basis(p: PassageLive | None, d: Mapping[str, Any]) -> None:
    """``passage.decided``: on what each agency's verdict rests (online, or its pre-decision)."""
    if p is not None and isinstance(d.get("basis"), str):
        p.basis[str(d.get("agency"))] = str(d["basis"])


def count_refusals(
    lane: LaneLive, p: PassageLive | None, pid: str, refusals: Sequence[Any], counted: deque[str]
) -> None:
    """``vehicle.identified``: why the lane did not release a declared vehicle itself; counted
    once per passage (``counted``: the passages counted, bounded), shown on the passage."""
    reasons = sorted({str(r.get("reason")) for r in refusals if isinstance(r, dict) and r.get("reason")})
    if p is not None:
        p.predecision_refusals = reasons
    if reasons and pid not in counted:
        counted.append(pid)
        for reason in reasons:
            lane.refusals[reason] = lane.refusals.get(reason, 0) + 1


def _num(x: object) -> str:
    return f"{x:.1f}" if isinstance(x, int | float) else "?"
