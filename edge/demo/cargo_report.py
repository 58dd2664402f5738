"""The cargo lanes' part of the demo's summary (issue 21), from what reached the broker.

``cargo_summary`` counts the radiation portals' occupancies and alarms — innocent (adjudicated
NORM, medical, declared, false or test: released) and real (adjudicated real: diverted) — the
adjudications, the seals read, the trucks refused for their seals (by reason) and the e-lock
commands. ``cargo_violations`` checks, per lane's stream, that no passage with a radiation alarm
was released before an adjudication that lets it go (diverting it is always allowed) and that
no passage whose identification named a seal exception was released automatically.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["SEAL_EXCEPTIONS", "cargo_summary", "cargo_violations"]

SEAL_EXCEPTIONS = frozenset(
    {"seal_missing", "seal_foreign", "seal_opened", "seal_tampered", "elock_off_route", "seal_read_failed"}
)


def _typed(events: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    """(lane, type, data) in each lane's own order (seq)."""
    ordered = sorted(events, key=lambda e: (e["source"], e["seq"]))
    return [(e["source"].rsplit("/", 1)[-1], e["type"].removeprefix("portlane."), e["data"]) for e in ordered]


def cargo_summary(events: list[dict[str, Any]]) -> dict[str, Any]:
    occupancies = alarms = reads = removed = faults = 0
    adjudicated: dict[str, str] = {}  # passage -> group of its adjudication
    codes: Counter[str] = Counter()
    alarmed: set[str] = set()
    seal_kinds: dict[str, list[str]] = {}
    refused: Counter[str] = Counter()
    commands_refused: Counter[str] = Counter()
    outcome: dict[str, str] = {}
    for _lane, t, d in _typed(events):
        pid = d.get("passage_id")
        if t == "rpm.occupancy":
            occupancies += 1
        elif t == "rpm.alarm":
            alarms += 1
            alarmed.add(str(pid))
        elif t == "rpm.adjudicated":
            adjudicated[d["passage_id"]] = str(d["code_name"]).split(":", 1)[0]
            codes[f"{d['code']} {d['code_name']}"] += 1
        elif t == "seal.read":
            reads += 1
        elif t == "seal.changed" and d["action"] == "remove":
            removed += 1
        elif t == "vehicle.identified":
            seal_kinds[d["passage_id"]] = sorted(SEAL_EXCEPTIONS & set(d.get("exceptions", ())))
        elif t == "command.rejected" and str(d.get("command", "")).startswith("seal_"):
            commands_refused[d["reason"]] += 1
        elif t == "lane.exception" and pid is None and d["kind"] in ("rpm_fault", "rpm_tamper"):
            faults += 1
        elif t == "passage.completed":
            outcome[d["passage_id"]] = d["outcome"]
    for pid, kinds in seal_kinds.items():
        if kinds and outcome.get(pid) == "diverted":
            refused.update(kinds)
    groups = Counter(adjudicated.get(pid) for pid in alarmed)
    return {
        "occupancies": occupancies,
        "alarms": alarms,
        "innocent_alarms": sum(n for g, n in groups.items() if g in ("innocent", "false", "test")),
        "real_alarms": groups.get("real", 0),
        "alarms_not_adjudicated": groups.get(None, 0),
        "adjudications": dict(sorted(codes.items())),
        "alarms_released": sum(1 for pid in alarmed if outcome.get(pid) == "released"),
        "alarms_diverted": sum(1 for pid in alarmed if outcome.get(pid) == "diverted"),
        "portal_faults": faults,
        "seal_reads": reads,
        "seal_refusals": dict(sorted(refused.items())),
        "elocks_removed": removed,
        "seal_commands_refused": dict(sorted(commands_refused.items())),
    }


def cargo_violations(events: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    alarmed: set[str] = set()
    cleared: set[str] = set()  # an adjudication that lets it go came first
    seal_blocked: set[str] = set()
    for lane, t, d in _typed(events):
        pid = d.get("passage_id")
        if t == "rpm.alarm" and pid:
            alarmed.add(pid)
        elif t == "rpm.adjudicated" and d["effect"] == "release":
            cleared.add(d["passage_id"])
        elif t == "vehicle.identified":
            if SEAL_EXCEPTIONS & set(d.get("exceptions", ())):
                seal_blocked.add(d["passage_id"])
            else:
                seal_blocked.discard(d["passage_id"])
        elif t == "passage.released":
            if pid in alarmed and pid not in cleared:
                out.append(f"{lane}: {pid} released with a radiation alarm not adjudicated to release")
            if pid in seal_blocked:
                out.append(f"{lane}: {pid} released automatically with a seal exception")
    return out
