"""Per passage, what the lane settled on its own (issue 22) — pure, over what the broker saw.

Each passage is judged once, on the lane's own identification (its first ``vehicle.identified``
without ``corrected_by``), against the vehicle that really drove through (found by its e-card):

* **automated right, by reads** — the identification carried no exception, and its plates and
  container numbers are the vehicle's;
* **automated right, by declaration** — the reads left an exception (a read in doubt,
  ``low_confidence``) and every agency's pre-decision matched in full (``predecision_ids``: the
  lane decided on them itself, releasing the vehicle or queueing its declared scan, with no
  officer and no round trip). The identity the lane acted on is the declared one — a plate read
  in doubt may differ from it in the province Hanzi (``predecision_rules.plate_consistent``) —
  so that identity is what is judged: the declared plates and container numbers must be the
  vehicle's;
* **automated wrong** — either of the above with an identity that is not the vehicle's. It must
  stay 0: a non-zero count is a bug in recognition or in the matching rules;
* **needs an officer** — anything else: an exception no pre-decision settled (not declared, or
  refused: ``needs_officer_refusals`` says why), or no e-card to find the vehicle by; each is
  listed in ``needs_officer_passages`` with what the lane read (text, the confidence it sent
  and the recogniser's named doubt, if any) and the vehicle that drove through;
* **swapped plate caught**, **seal fault caught** — the traffic's planted faults flagged as they
  must be: a swapped plate ``dual_plate_mismatch``, a tampered or foreign seal a seal exception
  (issue 21). An officer must see these whatever the cameras read: counted apart, and left out
  of the share.

A control order that takes an automatic release back later (``predecision_revoked``) is an
officer's act on the vehicle, not on its identity: the passage keeps its category and is
counted in ``withdrawn_by_control_order``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from portlane.edge.demo.cargo_report import SEAL_EXCEPTIONS
from portlane.models.grammar import normalise

__all__ = ["Truth", "per_passage"]


@dataclass(frozen=True, slots=True)
class Truth:
    """The vehicle that drove through: the plates on it and its boxes."""

    plates: frozenset[str]  # normalised (a Macau plate is MX-12-34 or MX1234)
    containers: frozenset[str]
    registered: frozenset[str]  # the plates registered with its e-card, normalised
    seal_fault: bool = False  # a seal tampered with or foreign (the traffic's, on purpose)

    @classmethod
    def of(
        cls, plates: Iterable[str], containers: Iterable[str], registered: Iterable[str], *, seal_fault: bool = False
    ) -> Truth:
        return cls(
            frozenset(normalise(p) for p in plates),
            frozenset(containers),
            frozenset(normalise(p) for p in registered),
            seal_fault,
        )

    @property
    def swapped(self) -> bool:
        """A plate on the vehicle is not the one registered with its e-card (the traffic's swap)."""
        return self.plates != self.registered

    @property
    def identity(self) -> frozenset[str]:
        return self.plates | self.containers


def _unique(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Each event once (a replay repeats an id), in each unit's order."""
    seen: dict[str, Mapping[str, Any]] = {}
    for e in events:
        seen.setdefault(str(e.get("id")), e)
    return sorted(seen.values(), key=lambda e: (str(e.get("source")), int(e.get("seq") or 0)))


def _read(text: object, r: Mapping[str, Any]) -> str:
    """One read as ``needs_officer_passages`` lists it: text, confidence sent, named doubt."""
    doubt = r.get("doubt")
    return f"{text} {r.get('confidence')}" + (f" ({doubt})" if doubt else "")


def per_passage(
    events: Iterable[Mapping[str, Any]],
    vehicles: Mapping[str, Truth],
    declared: Mapping[str, tuple[Iterable[str], Iterable[str]]],
) -> dict[str, Any]:
    """The run's per-passage automation (see the module docstring).

    ``vehicles``: e-card tag id -> :class:`Truth`; ``declared``: pre-decision id -> (plates,
    container numbers) it declares."""
    first: dict[str, Mapping[str, Any]] = {}
    withdrawn: set[str] = set()
    for e in _unique(events):
        if str(e.get("type")).removeprefix("portlane.") != "vehicle.identified":
            continue
        d = e["data"]
        pid = d.get("passage_id")
        if not isinstance(pid, str) or d.get("corrected_by"):
            continue
        if pid in first and any(r.get("reason") == "revoked" for r in d.get("predecision_refusals", ())):
            withdrawn.add(pid)
        first.setdefault(pid, d)
    out: dict[str, Any] = {
        "passages": len(first),
        "automated_right": 0,
        "automated_right_by_reads": 0,
        "automated_right_by_declaration": 0,
        "needs_officer": 0,
        "automated_wrong": 0,
        "swapped_plate_caught": 0,
        "seal_fault_caught": 0,
        "withdrawn_by_control_order": 0,
    }
    officer_exceptions: Counter[str] = Counter()
    officer_refusals: Counter[str] = Counter()
    wrong: list[dict[str, Any]] = []
    officer: list[dict[str, Any]] = []
    for pid, d in first.items():
        v = vehicles.get(d.get("tag_id") or "")
        exceptions = tuple(d.get("exceptions") or ())
        if v is not None and v.swapped and "dual_plate_mismatch" in exceptions:
            out["swapped_plate_caught"] += 1
            continue
        if v is not None and v.seal_fault and SEAL_EXCEPTIONS.intersection(exceptions):
            out["seal_fault_caught"] += 1
            continue
        ids = tuple(d.get("predecision_ids") or ())
        if v is None or (exceptions and not ids):
            out["needs_officer"] += 1
            officer_exceptions.update(exceptions or ("no_ecard",))
            refusals = sorted({str(r.get("reason")) for r in d.get("predecision_refusals", ())})
            officer_refusals.update(refusals)
            officer.append(
                {
                    "passage": pid,
                    "exceptions": list(exceptions or ("no_ecard",)),
                    "refusals": refusals,
                    # what the lane read, with the confidence it sent (low: in doubt) and why
                    "reads": [_read(p.get("text"), p) for p in d.get("plates", ())]
                    + [_read(c.get("number"), c) for c in d.get("containers", ())],
                    "vehicle": sorted(v.identity) if v is not None else None,
                }
            )
            continue
        out["withdrawn_by_control_order"] += pid in withdrawn
        if not exceptions:
            how = "reads"
            identity = {normalise(p["text"]) for p in d.get("plates", ())} | {
                c["number"] for c in d.get("containers", ())
            }
        else:
            how = "declaration"
            identity = set()
            for i in ids:
                if i not in declared:
                    identity.add(f"unknown pre-decision {i}")  # the run did not declare it: not the truth
                    continue
                plates, boxes = declared[i]
                identity |= {normalise(p) for p in plates} | set(boxes)
        if identity == v.identity:
            out["automated_right"] += 1
            out[f"automated_right_by_{how}"] += 1
        else:
            out["automated_wrong"] += 1
            wrong.append({"passage": pid, "by": how, "identified": sorted(identity), "vehicle": sorted(v.identity)})
    n = out["passages"] - out["swapped_plate_caught"] - out["seal_fault_caught"]
    return out | {
        "automated_right_share": round(out["automated_right"] / n, 4) if n else 0.0,
        "needs_officer_exceptions": dict(sorted(officer_exceptions.items())),
        "needs_officer_refusals": dict(sorted(officer_refusals.items())),
        "needs_officer_passages": officer,
        "wrong": wrong,
    }
