"""``portlane report clearance``: clearance-time percentiles (通关时效) from the console database.

    portlane report clearance [--from DAY|TIME] [--to DAY|TIME] [--lane ID]... [--kind KIND]...
                              [--json | --csv] [--db PATH] [--site SITE.yaml]

The figures are those of the console's analytics page and daily report — one function,
``portlane.edge.console.analytics.clearance``, computes both. Days and hours are the site's
local ones: the time zone the console stored in the database (``--timezone`` overrides).
Exit codes: 0 figures printed, 2 bad arguments or not a console database.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from portlane.edge.errors import EXIT_OK, EXIT_USAGE

DEFAULT_DB = Path("/var/lib/portlane/console.db")


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="reports from the console's database (clearance time per stage)")
    rsub = p.add_subparsers(dest="report_kind", metavar="REPORT", required=True)
    c = rsub.add_parser(
        "clearance", help="per-stage clearance-time percentiles per lane, day, hour, vehicle kind and release basis"
    )
    c.add_argument(
        "--from", dest="start", metavar="WHEN", help="first day (YYYY-MM-DD) or time (ISO 8601); default: all"
    )
    c.add_argument("--to", dest="end", metavar="WHEN", help="last day (inclusive) or time (exclusive); default: all")
    c.add_argument("--lane", action="append", default=[], help="only this lane (repeatable)")
    c.add_argument("--kind", action="append", default=[], choices=("container_truck", "truck", "car"))
    c.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"console database (default {DEFAULT_DB})")
    c.add_argument("--timezone", help="time zone for days and hours (default: the site's, stored in the database)")
    fmt = c.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON object on stdout")
    fmt.add_argument("--csv", action="store_true", help="CSV: dimension, group, stage, n, p50 … on stdout")
    c.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from portlane.edge.console.analytics import clearance, parse_bound
    from portlane.edge.console.store import Store
    from portlane.edge.errors import ConsoleStoreError

    try:
        store = Store(args.db, readonly=True)
    except ConsoleStoreError as exc:
        print(f"{exc}; pass --db PATH of a console database", file=sys.stderr)
        return EXIT_USAGE
    try:
        meta = store.meta()
        tzname = args.timezone or meta.get("timezone") or "Asia/Shanghai"
        try:
            tz = ZoneInfo(tzname)
        except (ZoneInfoNotFoundError, ValueError):
            print(f"--timezone {tzname!r}: unknown time zone (e.g. Asia/Shanghai)", file=sys.stderr)
            return EXIT_USAGE
        try:
            start = parse_bound(args.start, tz, end=False) if args.start else None
            end = parse_bound(args.end, tz, end=True) if args.end else None
        except ValueError as exc:
            print(f"--from/--to: {exc}", file=sys.stderr)
            return EXIT_USAGE
        rep = clearance(
            store, site=meta.get("site", "?"), tz=tz, start=start, end=end, lanes=args.lane, kinds=args.kind
        )
    finally:
        store.close()
    site_name = meta.get("site_name", "")
    if args.json:
        print(json.dumps(rep.as_dict(), ensure_ascii=False))
    elif args.csv:
        sys.stdout.write(rep.to_csv())
    else:
        _print(rep.as_dict(), site_name)
    return EXIT_OK


def _fmt(ms: float) -> str:
    return f"{ms / 1000:.2f} s" if ms < 60_000 else f"{ms / 60_000:.1f} min"


def _print(rep: dict[str, Any], site_name: str) -> None:
    from rich.console import Console
    from rich.table import Table

    c = Console(width=None if sys.stdout.isatty() else 120)  # piped: wide enough for the tables
    all_ = rep["groups"]["all"]["all"]
    span = f"{rep['from'] or 'beginning'} → {rep['to'] or 'now'}"
    c.print(
        f"[bold]Clearance time[/] {site_name} ({rep['timezone']}) {span}: {all_['passages']} passages, "
        f"{all_['released']} released, {all_['inspected']} inspected, {all_['diverted']} diverted"
    )
    t = Table(title="time from arrival to each stage (nearest-rank percentiles)")
    for col in ("stage", "n", "p50", "p90", "p95", "max", "step p50", "step p95"):
        t.add_column(col, justify="left" if col == "stage" else "right")
    for st, f in all_["stages"].items():
        t.add_row(st, str(f["n"]), *(_fmt(f[k]) for k in ("p50", "p90", "p95", "max", "step_p50", "step_p95")))
    c.print(t)
    for dim in ("basis", "lane", "kind", "day", "hour"):  # basis: what released it (pre-decision, online …)
        g = rep["groups"].get(dim) or {}
        if not g:
            continue
        t = Table(title=f"by {dim}: arrival → exit")
        for col in (dim, "passages", "p50", "p95", "max"):
            t.add_column(col, justify="left" if col == dim else "right")
        for key, fig in g.items():
            ex = fig["stages"].get("exited")
            t.add_row(key, str(fig["passages"]), *((_fmt(ex[k]) for k in ("p50", "p95", "max")) if ex else ("–",) * 3))
        c.print(t)
