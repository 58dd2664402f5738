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
    for kind, unit, doing in (
        ("lane", "LANE", "one lane's devices and passages"),
        ("scanner", "ID", "the shared X-ray scanner and its queue"),
    ):
        d = dsub.add_parser(
            kind,
            help=f"the daemon of {doing}",
            description=f"Drive {doing} (what portlane-{kind}@{unit}.service runs). "
            + _ENVIRONMENT.format(name=f"{kind}-{unit}"),
        )
        d.add_argument("--site", type=Path, required=True, help="the site file (e.g. /etc/portlane/site.yaml)")
        example = "c1" if kind == "lane" else "xray-1"
        d.add_argument(f"--{kind}", required=True, help=f"the id of the {kind} in the site file (e.g. {example})")
        d.add_argument("--broker", metavar="URL", help="use this broker instead of the site file's broker.url")
        d.set_defaults(func=run)
    rec = dsub.add_parser("recognition", help="the site's shared plate/container recognition worker")
    rec.add_argument("--site", type=Path, help="accepted for symmetry with the other units; not needed")
    rec.add_argument(
        "--threads",
        type=int,
        default=None,
        help="onnxruntime intra-op threads per frame (default 1 with several workers; "
        "workers x threads should not exceed the cores)",
    )
    rec.add_argument(
        "--workers", type=int, default=None, help="frames read at once (default: 2 with two cores or more, else 1)"
    )
    rec.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from portlane.edge.errors import ConfigError
    from portlane.edge.ops.daemons import main_lane, main_recognition, main_scanner

    try:
        if args.daemon_kind == "recognition":
            return main_recognition(args.threads, args.workers)
        if args.daemon_kind == "lane":
            return main_lane(args.site, args.lane, args.broker)
        return main_scanner(args.site, args.scanner, args.broker)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except KeyError as exc:
        print(f"{args.site}: no such lane or scanner: {exc}", file=sys.stderr)
        return EXIT_USAGE
