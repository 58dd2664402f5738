"""``portlane daemon lane|scanner``: the services systemd runs (see ``systemd/``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from portlane.edge.errors import EXIT_USAGE

#: What every daemon's --help says about where it listens and keeps its state.
_ENVIRONMENT = (
    "Its control socket is $PORTLANE_CONTROL, else {name}.sock in $PORTLANE_RUN_DIR (default /run/portlane), "
    "where the portlane CLI finds it; its state (outbox, journal, audit log) is in the site file's state_dir "
    "($STATE_DIRECTORY under systemd). SIGINT/SIGTERM stop it cleanly (exit 130/143); its last log line says why "
    "it stopped. See docs/operations.md."
)


def register(sub: Any) -> None:
    p = sub.add_parser("daemon", help="run a lane or scanner daemon (what the systemd units start)")
    dsub = p.add_subparsers(dest="daemon_kind", metavar="KIND", required=True)
    lane = dsub.add_parser(
        "lane",
        help="one lane's daemon",
        description="Drive one lane's devices and passages (what portlane-lane@LANE.service runs). "
        + _ENVIRONMENT.format(name="lane-LANE"),
    )
    lane.add_argument("--site", type=Path, required=True, help="the site file (e.g. /etc/portlane/site.yaml)")
    lane.add_argument("--lane", required=True, help="the id of the lane in the site file to drive (e.g. c1)")
    lane.add_argument("--broker", metavar="URL", help="use this broker instead of the site file's broker.url")
    lane.set_defaults(func=run)
    sc = dsub.add_parser(
        "scanner",
        help="the shared X-ray scanner daemon",
        description="Drive the shared X-ray scanner and its queue (what portlane-scanner@ID.service runs). "
        + _ENVIRONMENT.format(name="scanner-ID"),
    )
    sc.add_argument("--site", type=Path, required=True, help="the site file (e.g. /etc/portlane/site.yaml)")
    sc.add_argument("--scanner", required=True, help="the id of the scanner in the site file (e.g. xray-1)")
    sc.add_argument("--broker", metavar="URL", help="use this broker instead of the site file's broker.url")
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
