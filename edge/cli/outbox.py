"""The durable outbox of undelivered events, per daemon::

    outbox show [--lane L] [--json]                  depth, oldest age, dropped
    outbox replay [--count N] [--lane L]             re-send (the platform de-duplicates by id)
    outbox purge --count N [--lane L]                drop the N oldest undelivered — irreversible

``replay`` and ``purge`` act: ``--operator NAME --reason TEXT`` and confirmation (``--yes``)
are required, and the daemon writes the audit log. Exit codes: 0 ok · 1 refused by the daemon
· 2 usage · 3 daemon unreachable.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from portlane.edge.errors import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, UsageError

from ._common import Answer, act, act_opts, ask, ask_all, daemon_opts, guard, print_json, print_mapping, route


def register(sub: Any) -> None:
    p = sub.add_parser("outbox", help="the durable outbox of undelivered events")
    os_ = p.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)
    s = os_.add_parser("show", help="depth, oldest age, dropped")
    s.add_argument("--lane")
    daemon_opts(s)
    s.set_defaults(func=run_show)
    r = os_.add_parser("replay", help="re-send delivered events (the platform de-duplicates by id)")
    r.add_argument(
        "--count", type=int, default=None, help="the last N events (default: every event the outbox still keeps)"
    )
    r.add_argument("--lane")
    act_opts(r)
    r.set_defaults(func=run_act, action="replay")
    g = os_.add_parser("purge", help="drop the N oldest undelivered events (irreversible)")
    g.add_argument("--count", type=int, required=True, help="how many; required")
    g.add_argument("--lane")
    act_opts(g)
    g.set_defaults(func=run_act, action="purge")


@guard
def run_show(args: argparse.Namespace) -> int:
    answers: list[tuple[str, Answer]]
    down: list[str] = []
    if args.lane:
        path = route(args, "outbox", lane=args.lane)
        answers = [(path, ask(path, "outbox", args, action="show", count=None))]
    else:
        answers, down = ask_all(args, "outbox", implementing=True, action="show", count=None)
    all_ok = all(a.get("ok") for _p, a in answers)
    if args.json:
        print_json({"ok": all_ok and not down, "daemons": [{"socket": p, **a} for p, a in answers], "errors": down})
    else:
        for p, a in answers:
            print_mapping(a, title=f"outbox ({Path(p).stem})")
    if down:
        return EXIT_UNREACHABLE
    return EXIT_OK if all_ok else EXIT_FAILED


@guard
def run_act(args: argparse.Namespace) -> int:
    if args.count is not None and args.count <= 0:
        raise UsageError("--count must be positive")
    what = f"{args.action} {'all' if args.count is None else args.count} outbox events"
    if args.lane:
        what += f" of lane {args.lane}"

    def replay_range(path: str) -> dict[str, object]:
        """``--count N``: the last N events of that daemon's outbox (the daemon replays by seq)."""
        if args.action != "replay" or args.count is None:
            return {}
        last = int((ask(path, "outbox", args, action="show").get("outbox") or {}).get("last_seq") or 0)
        return {"from_seq": max(1, last - args.count + 1)}

    def done(resp: Answer) -> str:
        if args.action == "purge":
            n = int(resp.get("purged", 0))
            short = f" of the {args.count} asked for: the outbox held no more" if n < args.count else ""
            return f"purged {n} undelivered events{short}"
        return f"queued {int(resp.get('replayed', 0))} events to be sent again"

    return act(
        args,
        "outbox",
        f"{what}?",
        route_lane=args.lane,
        fields_for=replay_range,
        done=done,
        action=args.action,
        count=args.count,
    )
