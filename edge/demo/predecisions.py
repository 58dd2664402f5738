"""Pre-decisions in a simulated run (issue 20): the platform's declarations made from the
traffic plan, and what the run reports about them.

``declarations_for`` turns the traffic generator's plan and the site into the platform's
:class:`~portlane.edge.platform.declarations.Declarations` (the plan is the simulation's truth;
the platform declares the registered plates, not what a swapped plate shows).

``predecision_report`` reads what the broker saw and says, per passage (found by its e-card):

* ``automatic_releases`` — passages the lane released on every agency's pre-decision, and their
  share of all passages;
* ``refusals`` — one set of reasons per vehicle (the union over its identifications), counted;
* ``deliberate`` — per planted mismatch, the vehicles and whether the lane named it under its
  name (``predecision_revoked``: the lane's ``lane.exception`` after the control order, and
  ``arm_down``: the arm came down on it, ``gate.moved`` cause ``revoke``); ``deliberate_missed``
  says what the lane said instead;
* ``clearance_ms`` — arrival → gate open, p50/p95 by release basis (``predecision``, ``online``,
  ``override``), and ``clearance_p50_ratio`` = online p50 / predecision p50.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from portlane.edge.config import Site
from portlane.edge.console.analytics import percentile
from portlane.edge.platform.declarations import Declarations, Policy, Trip
from portlane.edge.platform.lanes import lane_infos
from portlane.sim_devices.traffic import TrafficPlan

__all__ = ["declarations_for", "predecision_report", "trips"]


def trips(plan: TrafficPlan) -> list[Trip]:
    """The plan's vehicles as the platform knows them: registered plates, e-card, boxes, weight."""
    registered = {r["tag_id"]: tuple(r["plates"]) for r in plan.registrations}
    out: list[Trip] = []
    for lane, vehicles in plan.per_lane.items():
        for i, v in enumerate(vehicles):
            out.append(
                Trip(
                    vid=v.vid,
                    lane=lane,
                    order=i,
                    kind=v.kind,
                    plates=registered.get(v.tag_id, tuple(v.plates)),
                    tag_id=v.tag_id,
                    containers=tuple(zip(v.containers, v.container_types, strict=True)),
                    weight_kg=v.weight_kg,
                )
            )
    return out


def declarations_for(plan: TrafficPlan, site: Site, policy: Policy) -> Declarations:
    return Declarations.plan(trips(plan), lane_infos(site), policy)


def _unique(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Each event once (a replay or redelivery repeats an id), in each unit's order."""
    seen: dict[str, Mapping[str, Any]] = {}
    for e in events:
        seen.setdefault(str(e.get("id")), e)
    return sorted(seen.values(), key=lambda e: (str(e.get("source")), int(e.get("seq") or 0)))


def _figures(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": percentile(values, 0.5), "p95": percentile(values, 0.95)}


def predecision_report(events: Iterable[Mapping[str, Any]], declarations: Declarations) -> dict[str, Any]:
    """The run's pre-decision figures (see the module docstring)."""
    by_tag = declarations.by_tag()
    reasons: dict[str, set[str]] = defaultdict(set)  # passage -> refusal reasons
    exceptions: dict[str, set[str]] = defaultdict(set)  # passage -> lane.exception kinds
    vehicle: dict[str, str] = {}  # passage -> vid
    completed: dict[str, Mapping[str, Any]] = {}
    for e in _unique(events):
        t, d = str(e["type"]).removeprefix("portlane."), e["data"]
        pid = d.get("passage_id")
        if not isinstance(pid, str):
            continue
        if t == "vehicle.identified":
            reasons[pid] |= {str(r["reason"]) for r in d.get("predecision_refusals", ())}
            trip = by_tag.get(d.get("tag_id") or "")
            if trip is not None:
                vehicle.setdefault(pid, trip.trip.vid)
        elif t == "lane.exception":
            exceptions[pid].add(str(d.get("kind")))
        elif t == "gate.moved" and d.get("action") == "close" and d.get("cause") == "revoke":
            exceptions[pid].add("arm_down_on_revoke")
        elif t == "passage.completed":
            completed.setdefault(pid, d)
    refusals: dict[str, int] = defaultdict(int)
    for pid in completed:
        for r in reasons.get(pid, ()):
            refusals[r] += 1
    clearance: dict[str, list[float]] = defaultdict(list)
    for d in completed.values():
        basis, opened = d.get("release_basis"), (d.get("stage_ms") or {}).get("gate_opened")
        if basis is not None and opened is not None:
            clearance[str(basis)].append(float(opened))
    automatic = sum(1 for d in completed.values() if d.get("release_basis") == "predecision")
    passage_of = {vid: pid for pid, vid in vehicle.items()}
    deliberate: dict[str, dict[str, Any]] = {}
    missed: list[str] = []
    for p in declarations.plans.values():
        if p.mismatch is None:
            continue
        entry = deliberate.setdefault(p.mismatch, {"planted": 0, "named": 0, "vehicles": []})
        entry["planted"] += 1
        entry["vehicles"].append(p.trip.vid)
        pid = passage_of.get(p.trip.vid)
        seen = (exceptions if p.mismatch == "predecision_revoked" else reasons).get(pid or "", set())
        if p.mismatch == "predecision_revoked":
            entry["arm_down"] = entry.get("arm_down", 0) + ("arm_down_on_revoke" in seen)
        if pid is not None and p.mismatch in seen:
            entry["named"] += 1
        else:
            what = ", ".join(sorted(reasons.get(pid or "", set()) | exceptions.get(pid or "", set()))) or "nothing"
            missed.append(f"{p.trip.vid} ({p.mismatch}): {'no passage' if pid is None else what}")
    by_basis = {b: _figures(v) for b, v in sorted(clearance.items())}
    online, auto = by_basis.get("online", {}).get("p50"), by_basis.get("predecision", {}).get("p50")
    return {
        **declarations.summary(),
        "automatic_releases": automatic,
        "automatic_share": round(automatic / len(completed), 4) if completed else 0.0,
        "refusals": dict(sorted(refusals.items())),
        "deliberate": deliberate,
        "deliberate_missed": missed,
        "clearance_ms": by_basis,
        "clearance_p50_ratio": round(online / auto, 2) if online and auto else None,
    }
