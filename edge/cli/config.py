"""``portlane config check FILE``: validate a site configuration."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import EXIT_OK, EXIT_USAGE


def register(sub: Any) -> None:
    p = sub.add_parser("config", help="check site configuration files")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = csub.add_parser("check", help="validate FILE; exit 2 naming file, key path and reason if it is bad")
    check.add_argument("file")
    check.add_argument("--json", action="store_true", help="machine-readable result")
    check.set_defaults(func=run_check)


def report_config_error(exc: Any, *, as_json: bool) -> int:
    """Print a ConfigError the way every command does (file, key path, reason); return exit 2."""
    if as_json:
        print(
            json.dumps({"file": exc.file, "ok": False, "problems": [{"key": k, "reason": r} for k, r in exc.problems]})
        )
    else:
        print(str(exc), file=sys.stderr)
    return EXIT_USAGE


def run_check(args: argparse.Namespace) -> int:
    from portlane.edge.config import load_site
    from portlane.edge.errors import ConfigError

    try:
        site = load_site(args.file)
    except ConfigError as exc:
        return report_config_error(exc, as_json=args.json)
    if args.json:
        print(json.dumps({"file": args.file, "ok": True, "site": site.site.id, "lanes": len(site.lanes)}))
    else:
        print(f"{args.file}: ok — site {site.site.id}, {len(site.lanes)} lanes, {len(site.scanners)} scanners")
    return EXIT_OK
