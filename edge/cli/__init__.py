"""``portlane`` command line: one module per command group.

Each module ``portlane.edge.cli.<module>`` defines ``register(subparsers)`` — which only
builds the parsers and must not import heavy libraries — and sets ``func`` on each parser to
a ``run_*(args) -> int`` function. Parsing is separate from running. Helpers the technician's
commands share (daemon routing, operator and reason, confirmation, output) are in ``_common``.

==========  ==================================================================
module      commands
==========  ==================================================================
demo        demo
config      config check | diff | apply
sim         sim
selftest    selftest
ocr         ocr plate | container | eval
audit       audit verify | show, keys generate
status      status, devices, passage show
events      events tail
outbox      outbox show | replay | purge
lane        gate, board say, lane close | open, scanner abort
modbus      modbus read | write
serial      serial sniff
diag        diag bundle
daemon      daemon lane | scanner | recognition
==========  ==================================================================

Exit codes (shared by every command):
  0  success
  1  the operation ran and failed (a check failed, a device did not answer, ...)
  2  usage error or invalid input file
  3  the daemon or broker could not be reached
  130 interrupted
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from portlane.edge.errors import EXIT_USAGE

__all__ = ["build_parser", "main"]

#: Command-group modules, in help order (tests/cli/test_cli_layout.py pins the commands they add).
GROUPS = (
    "demo",
    "config",
    "sim",
    "selftest",
    "ocr",
    "audit",
    "status",
    "events",
    "outbox",
    "lane",
    "modbus",
    "serial",
    "diag",
    "pki",
    "daemon",
    "console",
    "report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="portlane", description="Edge software for port vehicle and cargo lanes.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in GROUPS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        rc: int = func(args)
    except KeyboardInterrupt:
        return 130
    return rc
