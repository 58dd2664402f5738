"""One demo run's state (``DemoRun``) and what it reports at the end: the invariants checked
from the broker's side and the simulated physics, the per-stage figures, and what each lane
that did not finish was doing.

Invariants:
  * every gate opening follows a release/divert of that passage, or an override;
  * no barrier arm came down on a vehicle (the simulated controller counts strikes);
  * exactly one ``passage.completed`` per passage, at most one scan per passage;
  * every vehicle that passed the barrier had a passage of its own;
  * ``seq`` strictly increasing per unit, no gaps (``events_lost``), duplicates counted;
  * no radiation alarm released before an adjudication that lets it go, no automatic release
    with a seal exception (``cargo_report.py``, which also counts the cargo lanes' figures).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from portlane.edge.config import Site
from portlane.edge.console.analytics import percentile
from portlane.edge.contract.events import STAGES
from portlane.edge.demo.automation import Truth, per_passage
from portlane.edge.demo.cargo_report import cargo_summary, cargo_violations
from portlane.edge.demo.observer import DemoObserver
from portlane.edge.demo.options import DemoOptions
from portlane.edge.demo.predecisions import predecision_report
from portlane.edge.lane.daemon import LaneDaemon
from portlane.edge.platform import CentralPlatform
from portlane.edge.platform.declarations import Declarations
from portlane.edge.scanner.daemon import ScannerDaemon
from portlane.sim_devices.scanner import ScannerWorld
from portlane.sim_devices.traffic import TrafficPlan
from portlane.sim_devices.world import LaneWorld

__all__ = ["DemoRun", "check_invariants", "count_events", "stuck_lanes", "summarise"]

log = logging.getLogger(__name__)


@dataclass
class DemoRun:
    opts: DemoOptions
    site: Site
    plan: TrafficPlan
    worlds: dict[str, LaneWorld]
    scanner_world: ScannerWorld
    lanes: dict[str, LaneDaemon] = field(default_factory=dict)
    scanner: ScannerDaemon | None = None
    central: CentralPlatform | None = None
    observer: DemoObserver | None = None
    vehicles_passed: int = 0
    passed_by_lane: dict[str, int] = field(default_factory=dict)
    recogniser: Any = None
    started: float = field(default_factory=time.monotonic)
    timed_out: bool = False
    stuck: dict[str, dict[str, Any]] = field(default_factory=dict)
    broker_url: str = ""
    declarations: Declarations | None = None


def check_invariants(
    events: list[dict[str, Any]], worlds: dict[str, LaneWorld], scanner_world: ScannerWorld | None
) -> list[str]:
    """Invariants over what the broker saw. Returns human-readable violations."""
    violations: list[str] = []
    authorised: set[str] = set()
    completed: dict[str, int] = defaultdict(int)
    scans: dict[str, int] = defaultdict(int)
    for ev in sorted(events, key=lambda e: (e["source"], e["seq"])):
        t, d = ev["type"].removeprefix("portlane."), ev["data"]
        pid = d.get("passage_id")
        if t in ("passage.released", "passage.diverted") or (t == "override.applied" and d["action"] == "gate_open"):
            authorised.add(pid or f"override@{ev['source']}")
        elif t == "gate.moved" and d["action"] == "open":
            key = pid if d["cause"] != "override" else (pid or f"override@{ev['source']}")
            if key not in authorised:
                violations.append(f"{ev['source']}: gate opened for {pid} without release/override")
        elif t == "passage.completed":
            completed[pid] += 1
        elif t == "scan.started":
            scans[pid] += 1
    violations += [f"passage {p} completed {n} times" for p, n in completed.items() if n != 1]
    violations += [f"passage {p} scanned {n} times" for p, n in scans.items() if n > 1]
    for lane, w in worlds.items():
        if w.arm_strikes:
            violations.append(f"{lane}: barrier arm came down on a vehicle {w.arm_strikes} times")
    return violations


def stuck_lanes(run: DemoRun) -> dict[str, dict[str, Any]]:
    """What each lane that has not finished is doing: what a technician would look at."""
    out: dict[str, dict[str, Any]] = {}
    done: Counter[str] = Counter()
    assert run.observer is not None
    for e in run.observer.events:
        if e["type"] == "portlane.passage.completed":
            done[e["source"].rsplit("/", 1)[-1]] += 1
    for lid, d in run.lanes.items():
        w = run.worlds[lid]
        stage = d.logic.stage.value
        if done[lid] >= len(run.plan.per_lane.get(lid, [])) and not w.vehicle and stage == "idle":
            continue
        sensors = d.logic.sensors
        gate = d.devices.slots.get("gate")
        out[lid] = {
            "stage": stage,
            "in_service": d.logic.in_service,
            "passage_id": d.logic.passage.id if d.logic.passage else None,
            "vehicle": w.vehicle.vid if w.vehicle else None,
            "vehicle_position": w.position.value,
            "sensors": dataclasses.asdict(sensors) if dataclasses.is_dataclass(sensors) else str(sensors),
            "gate": {
                "health": gate.supervisor.health.value if gate else None,
                "arm_angle": round(w.arm_angle, 1),
                "motion": w.motion.value,
            },
            "light": w.light,
            "passages": f"{done[lid]}/{len(run.plan.per_lane.get(lid, []))}",
        }
    return out


def count_events(run: DemoRun, type_: str) -> int:
    assert run.observer is not None
    return sum(1 for e in run.observer.events if e["type"] == f"portlane.{type_}")


def _recognition_summary(run: DemoRun, completed: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How many passages the cameras identified exactly (against the traffic generator's truth)."""
    if run.recogniser is None:
        return None
    truth = {tuple(sorted(v.plates)) for vs in run.plan.per_lane.values() for v in vs}
    boxes = {c for vs in run.plan.per_lane.values() for v in vs for c in v.containers}
    identified = [
        e["data"]
        for e in run.observer.events  # type: ignore[union-attr]
        if e["type"] == "portlane.vehicle.identified" and not e["data"].get("corrected_by")
    ]
    plates_ok = sum(1 for d in identified if tuple(sorted(p["text"] for p in d["plates"])) in truth)
    cont = [c["number"] for d in identified for c in d["containers"]]
    lat = sorted(run.recogniser.latencies)
    return {
        "per_passage": _automation(run),
        "identifications": len(identified),
        "plates_exact": plates_ok,
        "containers_read": len(cont),
        "containers_exact": sum(1 for c in cont if c in boxes),
        "exceptions": dict(Counter(x for d in identified for x in d.get("exceptions", []))),
        "batch_latency_ms": {
            "p50": percentile([x * 1000 for x in lat], 0.5),
            "p95": percentile([x * 1000 for x in lat], 0.95),
        },
    }


def _automation(run: DemoRun) -> dict[str, Any]:
    """Per passage, what the lane settled on its own, right or wrong (``automation.py``)."""
    registered = {r["tag_id"]: r["plates"] for r in run.plan.registrations}
    vehicles = {
        v.tag_id: Truth.of(
            v.plates,
            v.containers,
            registered.get(v.tag_id, v.plates),
            seal_fault=(c := run.plan.cargo.get(v.tag_id)) is not None and c.seal_fault is not None,
        )
        for vs in run.plan.per_lane.values()
        for v in vs
    }
    declared = run.declarations.identities() if run.declarations is not None else {}
    out = per_passage(run.observer.events if run.observer else (), vehicles, declared)
    if out["automated_wrong"]:
        log.error("demo: %d passages identified alone and WRONG: %s", out["automated_wrong"], out["wrong"])
    return out


def _predecisions(run: DemoRun) -> dict[str, Any] | None:
    if run.declarations is None or run.observer is None:
        return None
    out = predecision_report(run.observer.events, run.declarations)
    if run.central is not None:
        out["declarations_refused"] = dict(run.central.stats.declarations_refused)
        out["online_review_s"] = run.central.review_s / run.opts.time_factor
    return out


def summarise(run: DemoRun, expected: dict[str, int]) -> dict[str, Any]:
    obs = run.observer
    assert obs is not None
    completed = [e["data"] for e in obs.events if e["type"] == "portlane.passage.completed"]
    stage_ms: dict[str, dict[str, float]] = {}
    for st in STAGES:
        vals = [float(c["stage_ms"][st]) for c in completed if st in c.get("stage_ms", {})]
        if vals:
            stage_ms[st] = {"p50": percentile(vals, 0.5), "p95": percentile(vals, 0.95)}
    published = sum(expected.values())
    scanner = run.scanner
    waits = [float(x) for x in (scanner.queue_waits_ms if scanner else [])]
    violations = check_invariants(obs.events, run.worlds, run.scanner_world) + cargo_violations(obs.events)
    done_by_lane: Counter[str] = Counter(
        e["source"].rsplit("/", 1)[-1] for e in obs.events if e["type"] == "portlane.passage.completed"
    )
    for lane, passed in sorted(run.passed_by_lane.items()):
        if done_by_lane[lane] < passed:
            violations.append(f"{lane}: {passed - done_by_lane[lane]} vehicles passed the barrier without a passage")
    rejected_reasons: dict[str, int] = defaultdict(int)
    for e in obs.events:
        if e["type"] == "portlane.command.rejected":
            rejected_reasons[e["data"]["reason"]] += 1
    return {
        "passages": len(completed),
        "released": sum(1 for c in completed if c["outcome"] == "released"),
        "inspected": sum(1 for c in completed if c["inspected"]),
        "diverted": sum(1 for c in completed if c["outcome"] == "diverted"),
        "overrides": count_events(run, "override.applied"),
        "events_published": published,
        "events_received": obs.received,
        "events_lost": obs.lost(expected),
        "events_lost_by_unit": obs.lost_by_unit(expected),  # where, when any: given up, missing, never came
        "duplicates": obs.duplicates,
        "out_of_order": obs.out_of_order,  # came after newer ones: a replay or a late redelivery
        "replays_requested": obs.client.stats.replays_requested,
        "refused": obs.client.stats.refused_total,  # what the observer did not believe (unsigned, forged)
        "invariant_violations": len(violations),
        "violations": violations[:20],
        "scans": count_events(run, "scan.completed"),
        "scans_ordered": len(run.central.stats.inspected_passages) if run.central else 0,
        "scanner_utilisation": scanner.utilisation() if scanner else 0.0,
        "scan_queue_wait_ms": {"p50": percentile(waits, 0.5), "p95": percentile(waits, 0.95)},
        "rejected_commands": sum(rejected_reasons.values()),
        "rejected_by_reason": dict(rejected_reasons),
        "identity_corrections": count_events(run, "identity.corrected"),
        "cargo": cargo_summary(obs.events),
        "stage_ms": stage_ms,
        "recognition": _recognition_summary(run, completed),
        "predecisions": _predecisions(run),
        "timed_out": run.timed_out,
        "stuck_lanes": run.stuck,
        "stream_restarts": obs.restarts,
        "time_factor": run.opts.time_factor,
        "wall_s": round(time.monotonic() - run.started, 1),
        # What the run was on: --secure is TLS with a client certificate per unit and the site's ACL.
        "broker": {
            "url": run.broker_url,
            "tls": run.broker_url.startswith("mqtts://"),
            "client_certificates": run.opts.secure,
            "acl": run.opts.secure,
        },
    }
