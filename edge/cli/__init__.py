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
systemd     systemd install
console     console serve | user
pki         pki init | issue | acl
report      report clearance
_common     (no commands) exit codes, output, the way to a daemon
_cargo_selftest  (no commands) selftest's exercise of the radiation portal and seal reader
==========  ==================================================================

Exit codes: the table in ``portlane.edge.errors`` (docs/operations.md "Exit codes"). A
``PortlaneError`` that reaches :func:`main` is printed as it is — one line, no traceback — and
the command exits with its ``exit_code``; so is a missing optional package (the extra to
install is named), and ^C is exit 130 without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from portlane.edge.errors import EXIT_INTERRUPTED, EXIT_USAGE, MissingExtraError, PortlaneError

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
    "systemd",
    "console",
    "report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="portlane", description="Edge software for port vehicle and cargo lanes.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in GROUPS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    _mark_parsers(parser)
    return parser


def _mark_parsers(parser: argparse.ArgumentParser) -> None:
    """Each sub-command remembers its parser (``args._parser``; the deepest one parsed wins), so
    an argument it does not know is reported with *its* usage, not the top level's."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                child.set_defaults(_parser=child)
                _mark_parsers(child)


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parse_args``, but ``portlane demo --lnaes 3`` says so with demo's usage and the option
    it probably meant."""
    import difflib

    args, extra = parser.parse_known_args(argv)
    if extra:
        owner: argparse.ArgumentParser = getattr(args, "_parser", parser)
        known = [o for a in owner._actions for o in a.option_strings]
        guess = [m for x in extra if x.startswith("-") for m in difflib.get_close_matches(x.split("=")[0], known, 1)]
        hint = f" (did you mean {guess[0]}?)" if guess else ""
        owner.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = _parse(parser, argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.verbose:
        # pymodbus logs, in its own words, what the drivers and `modbus` report in one line
        # (an exception answer, a late reply at shutdown): shown with -v only.
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        rc: int = func(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except ModuleNotFoundError as exc:
        missing = MissingExtraError.of(exc)
        if missing is None:
            raise  # not an optional package: a bug, and its traceback helps
        return _fail(args, missing)
    except PortlaneError as exc:
        return _fail(args, exc)
    return rc


def _fail(args: argparse.Namespace, exc: PortlaneError) -> int:
    """``portlane <command>: <message>`` on stderr (each line of a multi-line ConfigError)."""
    for line in str(exc).splitlines() or [type(exc).__name__]:
        print(f"portlane {args.command}: {line}", file=sys.stderr)
    return exc.exit_code
