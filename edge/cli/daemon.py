"""``portlane daemon lane|scanner``: the services systemd runs (see ``systemd/``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from portlane.edge.errors import EXIT_USAGE


def register(sub: Any) -> None:
    p = sub.add_parser("daemon", help="run a lane or scanner daemon (what the systemd units start)")
    dsub = p.add_subparsers(dest="daemon_kind", metavar="KIND", required=True)
    lane = dsub.add_parser("lane", help="one lane's daemon")
    lane.add_argument("--site", type=Path, required=True)
    lane.add_argument("--lane", required=True)
    lane.add_argument("--broker", help="override the site's broker URL")
    lane.set_defaults(func=run)
    sc = dsub.add_parser("scanner", help="the shared X-ray scanner daemon")
    sc.add_argument("--site", type=Path, required=True)
    sc.add_argument("--scanner", required=True)
    sc.add_argument("--broker", help="override the site's broker URL")
    sc.set_defaults(func=run)
    rec = dsub.add_parser("recognition", help="the site's shared plate/container recognition worker")
    rec.add_argument("--site", type=Path, help="accepted for symmetry with the other units; not needed")
    rec.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    rec.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from portlane.edge.errors import ConfigError
    from portlane.edge.ops.daemons import main_lane, main_recognition, main_scanner

    try:
        if args.daemon_kind == "recognition":
            return main_recognition(args.threads)
        if args.daemon_kind == "lane":
            return main_lane(args.site, args.lane, args.broker)
        return main_scanner(args.site, args.scanner, args.broker)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except KeyError as exc:
        print(f"{args.site}: no such lane or scanner: {exc}", file=sys.stderr)
        return EXIT_USAGE
