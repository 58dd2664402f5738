"""What the lanes are doing now, from the running daemons (read only, all take ``--json``)::

    status                 site, broker, lanes: service, stage, passage, devices, outbox
    devices [--lane L]     per device: health, backend, link, last error, counters
    passage show ID        stages, identifiers, decisions of one passage

Every daemon is asked and the answers merged. Exit codes: 0 ok · 1 a daemon answered with an
error, or no daemon knows the passage · 3 a daemon (or all of them) could not be reached.
"""

from __future__ import annotations

import argparse
from typing import Any

from portlane.edge.errors import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE

from ._common import ask_all, console, daemon_opts, err, guard, health, print_json, print_mapping


def register(sub: Any) -> None:
    p = sub.add_parser("status", help="site, lanes, devices, outbox and broker at a glance")
    daemon_opts(p)
    p.add_argument(
        "--wait",
        type=float,
        default=None,
        metavar="S",
        help="wait up to S seconds for the daemons to answer (with --site: one for each lane and scanner of FILE)",
    )
    p.add_argument("--site", default=None, metavar="FILE", help="with --wait: the site file whose units to wait for")
    p.set_defaults(func=run_status)

    p = sub.add_parser("devices", help="per device: health, link, last error, counters")
    daemon_opts(p)
    p.add_argument("--lane", help="only this lane")
    p.set_defaults(func=run_devices)

    p = sub.add_parser("passage", help="one passage, from the daemon that handled it")
    ps = p.add_subparsers(dest="passage_command", metavar="ACTION", required=True)
    s = ps.add_parser("show", help="stages, identifiers, decisions of passage ID")
    s.add_argument("id")
    daemon_opts(s)
    s.set_defaults(func=run_passage_show)


def _exit(failed: list[str], down: list[str]) -> int:
    if down:
        return EXIT_UNREACHABLE
    return EXIT_FAILED if failed else EXIT_OK


def _units(answers: list[tuple[str, Any]]) -> set[str]:
    """The lanes and scanners the answering daemons serve."""
    out: set[str] = set()
    for _p, a in answers:
        if a.get("ok"):
            out |= {str(lane.get("lane")) for lane in a.get("lanes", [])}
            if a.get("scanner"):
                out.add(str(a["scanner"]))
    return out


def _wait_for_daemons(args: argparse.Namespace) -> tuple[list[tuple[str, Any]], list[str]]:
    """``status --wait S``: ask until every daemon answers (with ``--site``: until each lane and
    scanner of the file is served), for at most S seconds — after ``systemctl start`` or after
    starting daemons by hand, before the next command talks to them."""
    import time

    from portlane.edge.errors import UnreachableError

    want: set[str] = set()
    if args.site:
        from portlane.edge.config import load_site

        site = load_site(args.site)
        want = {lane.id for lane in site.lanes} | {s.id for s in site.scanners}
    deadline = time.monotonic() + args.wait
    while True:
        try:
            answers, down = ask_all(args, "status")
        except UnreachableError:
            answers, down = [], ["no daemon answers yet"]
        missing = want - _units(answers)
        if (answers and not down and not missing) or time.monotonic() >= deadline:
            if missing:
                down = [*down, f"not served after {args.wait:g} s: {', '.join(sorted(missing))}"]
            if not answers and not down:
                down = ["no daemon answered"]
            return answers, down
        time.sleep(STATUS_POLL_S)


#: ``status --wait`` asks again this often: a daemon creates its socket within a second or two
#: of starting (Python's imports), and answers as soon as it exists.
STATUS_POLL_S = 0.2


@guard
def run_status(args: argparse.Namespace) -> int:
    answers, down = _wait_for_daemons(args) if args.wait is not None else ask_all(args, "status")
    ok = [(p, a) for p, a in answers if a.get("ok")]
    failed = [f"{p}: {a.get('error')}" for p, a in answers if not a.get("ok")]
    lanes: list[dict[str, Any]] = [lane for _p, a in ok for lane in a.get("lanes", [])]
    first = ok[0][1] if ok else {}
    merged = {
        "ok": not failed and not down,
        "site": first.get("site"),
        "broker": first.get("broker"),
        "lanes": lanes,
        "daemons": [p for p, _a in ok],
        "errors": failed + down,
    }
    if args.json:
        print_json(merged)
        return _exit(failed, down)
    from rich.table import Table

    con = console()
    broker = first.get("broker") or {}
    conn = "[green]connected[/]" if broker.get("connected") else "[red]disconnected[/]"
    con.print(f"site [bold]{merged['site']}[/]  broker {broker.get('url', '?')} {conn}")
    t = Table("lane", "service", "stage", "passage", "devices", "outbox", "oldest", "dropped")
    for lane in lanes:
        ob = lane.get("outbox") or {}
        devs = " ".join(f"{n}:{health(d.get('health'))}" for n, d in (lane.get("devices") or {}).items())
        depth = ob.get("depth", 0)
        t.add_row(
            str(lane.get("lane")),
            ("[yellow]in service, auto release held[/]" if lane.get("auto_release_held") else "[green]in service[/]")
            if lane.get("in_service")
            else "[red]CLOSED[/]",
            str(lane.get("stage")),
            str(lane.get("passage_id") or "—"),
            devs,
            f"[yellow]{depth}[/]" if depth else "0",
            f"{ob.get('oldest_age_s', 0):.0f} s",
            str(ob.get("dropped", 0)),
        )
    con.print(t)
    for lane in lanes:  # a portal's fault holds automatic release lane-wide (officers release by hand)
        for why in lane.get("auto_release_held") or ():
            con.print(f"[yellow]{lane.get('lane')}: automatic release held[/] — {why}")
    for _p, a in ok:
        if a.get("scanner"):
            current = a.get("current") or "—"
            con.print(
                f"scanner [bold]{a['scanner']}[/]  {a.get('state')}  queue {a.get('queue')}  scanning {current}  "
                f"scans {a.get('scans')}  outbox {(a.get('outbox') or {}).get('depth', 0)}"
            )
    for e in failed + down:
        err(e)
    return _exit(failed, down)


@guard
def run_devices(args: argparse.Namespace) -> int:
    answers, down = ask_all(args, "devices", implementing=True)
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    for path, a in answers:
        if not a.get("ok"):
            failed.append(f"{path}: {a.get('error')}")
            continue
        for lane in a.get("lanes", []):
            if args.lane and lane.get("lane") != args.lane:
                continue
            for name, d in (lane.get("devices") or {}).items():
                rows.append({"lane": lane.get("lane"), "device": name, **d})
    if args.json:
        print_json({"ok": not failed and not down, "devices": rows, "errors": failed + down})
        return _exit(failed, down)
    from rich.table import Table

    t = Table("lane", "device", "health", "backend", "link", "last error", "counters")
    for r in rows:
        t.add_row(
            str(r["lane"]),
            r["device"],
            health(r.get("health")),
            str(r.get("backend", "")),
            str(r.get("link", "")),
            str(r.get("last_error") or "—"),
            " ".join(f"{k}={v}" for k, v in (r.get("counters") or {}).items()),
        )
    console().print(t)
    for r in rows:  # a radiation portal's own state: what to check before blaming the lane
        p = r.get("portal")
        if p:
            faults = ", ".join(p["faults"]) or "none"
            bg = "/".join(f"{x:.0f}" for x in p["gamma_background_cps"])
            console().print(
                f"{r['lane']} rpm: occupied {'yes' if p['occupied'] else 'no'}, occupancies {p['occupancies']}, "
                f"faults {faults}, tamper {'YES' if p['tamper'] else 'no'}, gamma background {bg} cps, "
                f"n-sigma {p['nsigma']}"
            )
    for e in failed + down:
        err(e)
    return _exit(failed, down)


@guard
def run_passage_show(args: argparse.Namespace) -> int:
    answers, down = ask_all(args, "passage", id=args.id)
    for _path, a in answers:
        if a.get("ok"):
            if args.json:
                print_json(a)
            else:
                print_mapping(a, title=f"passage {args.id}")
            return EXIT_OK
    errors = [str(a.get("error")) for _p, a in answers] + down
    err(f"passage {args.id} not found: {'; '.join(errors)}")
    return EXIT_UNREACHABLE if down and not answers else EXIT_FAILED
