"""Acting on a lane's equipment through the daemon that drives it (audited)::

    gate open|close|stop --lane L        move the barrier (the daemon still refuses to close on a vehicle)
    board say --lane L TEXT              show TEXT on the guidance board
    lane close|open L                    take the lane out of service (no new passages) and back
    scanner abort [--scanner ID]         abort the running X-ray scan

Each needs ``--operator NAME --reason TEXT`` and confirmation (``--yes`` without a terminal);
the daemon writes the audit log with both and the Unix user. Exit codes: 0 done · 1 refused by
the daemon · 2 usage (no operator/reason, not confirmed, several daemons could take it) ·
3 no running daemon serves the lane.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._common import act, act_opts, guard


def register(sub: Any) -> None:
    p = sub.add_parser("gate", help="open, close or stop a barrier (audited)")
    p.add_argument("action", choices=("open", "close", "stop"))
    p.add_argument("--lane", required=True)
    act_opts(p)
    p.set_defaults(func=run_gate)

    p = sub.add_parser("board", help="show a message on the lane's guidance board (audited)")
    bs = p.add_subparsers(dest="board_command", metavar="ACTION", required=True)
    s = bs.add_parser("say", help="display TEXT")
    s.add_argument("text")
    s.add_argument("--lane", required=True)
    act_opts(s)
    s.set_defaults(func=run_board_say)

    p = sub.add_parser("lane", help="take a lane out of service and back (audited)")
    p.add_argument("action", choices=("close", "open"))
    p.add_argument("lane")
    act_opts(p)
    p.set_defaults(func=run_lane_service)

    p = sub.add_parser("scanner", help="the shared X-ray scanner")
    ss = p.add_subparsers(dest="scanner_command", metavar="ACTION", required=True)
    s = ss.add_parser("abort", help="abort the running scan (audited)")
    s.add_argument("--scanner", default=None, help="scanner id (default: the only one)")
    act_opts(s)
    s.set_defaults(func=run_scanner_abort)


@guard
def run_gate(args: argparse.Namespace) -> int:
    question = f"{args.action} the barrier of lane {args.lane}?"
    return act(args, "gate", question, route_lane=args.lane, lane=args.lane, action=args.action)


@guard
def run_board_say(args: argparse.Namespace) -> int:
    question = f"show {args.text!r} on the board of lane {args.lane}?"
    return act(args, "board", question, route_lane=args.lane, lane=args.lane, text=args.text)


@guard
def run_lane_service(args: argparse.Namespace) -> int:
    in_service = args.action == "open"
    q = f"put lane {args.lane} back in service?" if in_service else f"take lane {args.lane} out of service?"
    return act(args, "lane_service", q, route_lane=args.lane, lane=args.lane, in_service=in_service)


@guard
def run_scanner_abort(args: argparse.Namespace) -> int:
    name = args.scanner or "the scanner"
    return act(
        args,
        "scanner_abort",
        f"abort the running scan on {name}?",
        route_lane=None,
        route_scanner=args.scanner,
        what="abort a scan (is the scanner daemon running?)",
        done=lambda resp: str(resp.get("detail") or f"aborted the running scan on {name}"),
        scanner=args.scanner,
    )
