"""Clearance-time analytics (通关时效): per-stage percentiles, one function for every view.

:func:`clearance` computes the figures that the console's analytics page and printable daily
report draw and that ``portlane report clearance`` prints, from the ``passages`` table
(one row per ``passage.completed``).

For each group (all passages; per lane; per day and hour of arrival in the site's time zone;
per vehicle kind; per release basis — ``predecision`` when the lane released on signed
pre-decisions by itself, ``online`` on the platform's decisions, ``override``, ``none`` when the
gate was not opened for it, ``unknown`` for passages recorded before the console kept it) and
each stage of ``STAGES`` that happened:

* ``from_arrival`` — milliseconds from arrival to the stage (the passage's ``stage_ms``):
  ``n``, ``p50``, ``p90``, ``p95``, ``max``;
* ``step`` — milliseconds from the previous stage that happened to this one (the time the
  stage itself took): ``p50``, ``p95``.

Percentiles are nearest-rank on the sorted values, index ``round(q·(n−1))`` — the definition
``portlane demo`` uses for its summary, so the two agree to the millisecond.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from portlane.edge.contract.events import STAGES

from .store import PassageRow, Store

__all__ = ["QUANTILES", "ClearanceReport", "clearance", "parse_bound", "percentile"]

QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95}
DIMENSIONS = ("all", "lane", "day", "hour", "kind", "basis")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank: ``sorted(values)[round(q·(n−1))]``, rounded to 0.1; 0.0 when empty."""
    if not values:
        return 0.0
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return round(s[k], 1)


def _stage_figures(rows: Sequence[PassageRow]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    steps: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        prev = 0
        for st in STAGES:
            if st in r.stage_ms:
                steps[st].append(float(r.stage_ms[st] - prev))
                prev = r.stage_ms[st]
    for st in STAGES:
        vals = [float(r.stage_ms[st]) for r in rows if st in r.stage_ms]
        if not vals:
            continue
        fig: dict[str, Any] = {"n": len(vals)}
        for name, q in QUANTILES.items():
            fig[name] = percentile(vals, q)
        fig["max"] = round(max(vals), 1)
        fig["step_p50"] = percentile(steps[st], 0.5)
        fig["step_p95"] = percentile(steps[st], 0.95)
        out[st] = fig
    return out


def _group(rows: Sequence[PassageRow]) -> dict[str, Any]:
    return {
        "passages": len(rows),
        "released": sum(1 for r in rows if r.outcome == "released"),
        "diverted": sum(1 for r in rows if r.outcome == "diverted"),
        "inspected": sum(1 for r in rows if r.inspected),
        "stages": _stage_figures(rows),
    }


@dataclass(frozen=True, slots=True)
class ClearanceReport:
    site: str
    timezone: str
    start: str | None
    end: str | None
    groups: dict[str, dict[str, dict[str, Any]]]  # dimension -> group key -> figures

    def as_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "timezone": self.timezone,
            "from": self.start,
            "to": self.end,
            "stages": list(STAGES),
            "percentiles": "nearest rank, sorted[round(q*(n-1))], milliseconds",
            "groups": self.groups,
        }

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(
            ["dimension", "group", "stage", "n", "p50_ms", "p90_ms", "p95_ms", "max_ms", "step_p50_ms", "step_p95_ms"]
        )
        for dim in DIMENSIONS:
            for key, g in self.groups.get(dim, {}).items():
                for st, f in g["stages"].items():
                    w.writerow(
                        [dim, key, st, f["n"], f["p50"], f["p90"], f["p95"], f["max"], f["step_p50"], f["step_p95"]]
                    )
        return buf.getvalue()


def clearance(
    store: Store,
    *,
    site: str,
    tz: ZoneInfo,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    lanes: Sequence[str] = (),
    kinds: Sequence[str] = (),
) -> ClearanceReport:
    """The figures for passages that *arrived* in ``[start, end)`` (aware datetimes; None =
    unbounded), optionally only on ``lanes`` and of vehicle ``kinds``."""
    rows = store.passages(
        start_ms=int(start.timestamp() * 1000) if start else None,
        end_ms=int(end.timestamp() * 1000) if end else None,
        lanes=lanes,
    )
    if kinds:
        rows = [r for r in rows if r.vehicle_kind in kinds]
    return ClearanceReport(
        site=site,
        timezone=str(tz),
        start=start.isoformat() if start else None,
        end=end.isoformat() if end else None,
        groups=group_figures(rows),
    )


def group_figures(rows: Iterable[PassageRow]) -> dict[str, dict[str, dict[str, Any]]]:
    rows = list(rows)
    by: dict[str, dict[str, list[PassageRow]]] = {d: defaultdict(list) for d in DIMENSIONS[1:]}
    for r in rows:
        by["lane"][r.lane].append(r)
        by["day"][r.local_day].append(r)
        by["hour"][f"{r.local_hour:02d}"].append(r)
        by["kind"][r.vehicle_kind].append(r)
        by["basis"][_basis(r)].append(r)
    out: dict[str, dict[str, dict[str, Any]]] = {"all": {"all": _group(rows)}}
    for dim, groups in by.items():
        out[dim] = {k: _group(v) for k, v in sorted(groups.items())}
    return out


def _basis(r: PassageRow) -> str:
    if r.release_basis is not None:
        return r.release_basis
    # Not opened (diverted, abandoned), or a row written before the console kept the basis.
    return "none" if r.outcome not in ("released", "override") else "unknown"


def parse_bound(text: str, tz: ZoneInfo, *, end: bool) -> dt.datetime:
    """``YYYY-MM-DD`` (a whole local day: an ``end`` bound means the end of that day) or an ISO
    8601 date-time (local to the site unless it carries an offset). Raises ValueError."""
    text = text.strip()
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        pass
    else:
        if len(text) == 10:
            start = dt.datetime.combine(day, dt.time(0, 0), tzinfo=tz)
            return start + dt.timedelta(days=1) if end else start
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither YYYY-MM-DD nor an ISO 8601 date-time") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=tz)
