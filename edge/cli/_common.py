"""What the technician's commands share: exit codes, output, and the way to a daemon.

The CLI talks to the daemons through their control sockets (``edge/ops/control.py``) — never
to a serial port a daemon holds. Each daemon has its own socket in ``/run/portlane``
(``lane-c1.sock``, ``scanner-xray-1.sock``, …): read commands ask all of them and merge the
answers (:func:`ask_all`), acting commands go to the one daemon that serves the lane
(:func:`route`; ``--socket PATH`` picks one explicitly) after :func:`operator` and
:func:`confirm` — :func:`act` does the four steps.

Errors become exit codes in one place, :func:`guard`: :class:`UsageError` → 2,
:class:`UnreachableError` (and an unreachable daemon) → 3, any other control-socket error → 1.

Nothing heavy is imported at module level: the command modules import this one while the
parser is being built.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from portlane.edge.errors import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, UnreachableError, UsageError

if TYPE_CHECKING:
    from rich.console import Console

#: A daemon's answer over the control socket: a JSON object with ``ok`` (and ``error``).
Answer = dict[str, Any]
Command = Callable[[argparse.Namespace], int]


# =============================================================================== parser options


def daemon_opts(p: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    """``--socket`` (and ``--json``) for a command that talks to the daemons."""
    p.add_argument(
        "--socket", default=None, help="control socket of one daemon (default: every *.sock in /run/portlane)"
    )
    p.add_argument("--request-timeout", type=float, default=None, help=argparse.SUPPRESS)
    if json_flag:
        p.add_argument("--json", action="store_true", help="machine-readable output")


def act_opts(p: argparse.ArgumentParser, *, daemon: bool = True) -> None:
    """``--operator``, ``--reason``, ``--yes`` for an acting (audited) command."""
    p.add_argument("--operator", default=None, help="who you are (e.g. tech:li.wei); required")
    p.add_argument("--reason", default=None, help="why; required, recorded in the audit log")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    if daemon:
        daemon_opts(p, json_flag=True)


# =============================================================================== errors and output


def guard(fn: Command) -> Command:
    """Map the CLI's exceptions to exit codes in one place; never a traceback for them."""

    @functools.wraps(fn)
    def wrapper(args: argparse.Namespace) -> int:
        from portlane.edge.errors import ControlError, DaemonUnreachableError

        try:
            return fn(args)
        except UsageError as exc:
            err(str(exc))
            return EXIT_USAGE
        except (UnreachableError, DaemonUnreachableError) as exc:
            err(str(exc))
            return EXIT_UNREACHABLE
        except ControlError as exc:
            err(str(exc))
            return EXIT_FAILED

    return wrapper


def err(msg: str) -> None:
    """One line for the technician on stderr."""
    from rich.console import Console

    Console(stderr=True, highlight=False).print(f"[red]portlane:[/red] {msg}", markup=True, soft_wrap=True)


def note(msg: str) -> None:
    """A progress line on stderr in every output mode (tests and scripts wait for some of them)."""
    from rich.console import Console

    Console(stderr=True, highlight=False).print(f"[dim]{msg}[/dim]", soft_wrap=True)


def console() -> Console:
    """The console for human output on stdout."""
    from rich.console import Console

    # Piped into less or a ticket, a table should not be squeezed into rich's default 80 columns.
    wide = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
    return Console(highlight=False, width=wide)


def print_json(obj: object) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


def _cell(v: object) -> str:
    if isinstance(v, dict):
        return "  ".join(f"{k}={_cell(x)}" for k, x in v.items())
    if isinstance(v, list):
        return ", ".join(_cell(x) for x in v) or "—"
    return "—" if v is None else str(v)


def _rows(prefix: str, v: object) -> list[tuple[str, str]]:
    """Nested answers as rows a technician reads: ``outbox.depth``, one row per list item."""
    if isinstance(v, dict) and v:
        return [row for k, x in v.items() for row in _rows(f"{prefix}.{k}" if prefix else str(k), x)]
    if isinstance(v, list) and any(isinstance(x, dict) for x in v):
        return [(f"{prefix}[{i}]", _cell(x)) for i, x in enumerate(v)] or [(prefix, "—")]
    return [(prefix, _cell(v))]


def print_mapping(obj: Answer, *, title: str) -> None:
    """A daemon's answer as a two-column table: nested objects as dotted rows, lists of objects
    one row per item (never a raw dict in a cell)."""
    from rich.table import Table

    t = Table("field", "value", title=title)
    for k, v in obj.items():
        if k == "ok":
            continue
        for key, text in _rows(k, v):
            t.add_row(key, text)
    console().print(t)


_HEALTH_STYLE = {"online": "green", "degraded": "yellow", "offline": "red"}


def health(h: object) -> str:
    """A device health word in its colour (rich markup)."""
    return f"[{_HEALTH_STYLE.get(str(h), 'magenta')}]{h}[/]"


# =============================================================================== the way to a daemon


def running_sockets(args: argparse.Namespace) -> list[str]:
    """``--socket`` if given, else every daemon socket found (possibly none)."""
    from portlane.edge.ops.control import discover

    sock: str | None = getattr(args, "socket", None)
    return [sock] if sock else discover()


def sockets(args: argparse.Namespace) -> list[str]:
    """Like :func:`running_sockets`, but no daemon at all is :class:`UnreachableError`."""
    found = running_sockets(args)
    if not found:
        raise UnreachableError(
            "no daemon control socket found in /run/portlane (is portlane.target running? "
            "pass --socket PATH or set PORTLANE_CONTROL)"
        )
    return found


def ask(path: str, op: str, args: argparse.Namespace | None = None, **fields: object) -> Answer:
    """One request to one daemon; raises ``DaemonUnreachableError`` / ``ControlError``."""
    from portlane.edge.ops.control import REQUEST_TIMEOUT_S, request_sync

    timeout: float = getattr(args, "request_timeout", None) or REQUEST_TIMEOUT_S
    return request_sync(path, op, timeout_s=timeout, **fields)


def ask_all(
    args: argparse.Namespace, op: str, *, implementing: bool = False, **fields: object
) -> tuple[list[tuple[str, Answer]], list[str]]:
    """Ask every daemon — with ``implementing``, only those whose ``ping`` lists ``op`` (a
    scanner daemon has no lane devices or lane outbox to show); return
    ``([(socket, answer)], [unreachable messages])``."""
    from portlane.edge.errors import DaemonUnreachableError

    answers: list[tuple[str, Answer]] = []
    down: list[str] = []
    for path in sockets(args):
        try:
            if not implementing or op in _ops_of(ask(path, "ping", args)):
                answers.append((path, ask(path, op, args, **fields)))
        except DaemonUnreachableError as exc:
            down.append(str(exc))
    if not answers and down:
        raise UnreachableError("; ".join(down))
    return answers, down


def ask_quiet(args: argparse.Namespace, op: str) -> list[tuple[str, Answer]]:
    """The successful answers of the running daemons, if any — for defaults, never fatal."""
    from portlane.edge.errors import ControlError

    out: list[tuple[str, Answer]] = []
    for path in running_sockets(args):
        try:
            resp = ask(path, op, args)
        except ControlError:
            continue
        if resp.get("ok"):
            out.append((path, resp))
    return out


def _ops_of(ping: Answer) -> list[str]:
    ops = ping.get("ops")
    return [str(o) for o in ops] if isinstance(ops, list) else []


def route(
    args: argparse.Namespace, op: str, *, lane: str | None = None, scanner: str | None = None, what: str = ""
) -> str:
    """The one daemon that should receive ``op`` (for ``lane`` or ``scanner``, if given).

    ``--socket`` is taken as it is. Otherwise only daemons that implement ``op`` are candidates
    (a lane daemon does not abort scans), and with ``lane`` the one that serves it — also when
    only one daemon runs: ``gate open --lane c9`` on c1's controller is "no daemon serves c9"
    (exit 3), not a refusal from c1's daemon."""
    from portlane.edge.errors import DaemonUnreachableError

    paths = sockets(args)
    if getattr(args, "socket", None):
        return paths[0]
    able = []
    for path in paths:
        try:
            ping = ask(path, "ping", args)
        except DaemonUnreachableError:
            continue
        if op in _ops_of(ping):
            able.append(path)
    asked = ", ".join(paths)
    if lane is not None or scanner is not None:
        for path in able:
            try:
                st = ask(path, "status", args)
            except DaemonUnreachableError:
                continue
            if lane is not None and any(item.get("lane") == lane for item in st.get("lanes", ())):
                return path
            if scanner is not None and st.get("scanner") == scanner:
                return path
        unit = f"lane {lane!r}" if lane is not None else f"scanner {scanner!r}"
        raise UnreachableError(f"no running daemon serves {unit} (asked: {asked})")
    if len(able) == 1:
        return able[0]
    if not able:
        raise UnreachableError(f"no running daemon can {what or op} (asked: {asked})")
    raise UsageError(f"several daemons can {what or op}: {', '.join(able)}; choose one with --socket")


def accepting(args: argparse.Namespace, op: str) -> list[str]:
    """Every running daemon that implements ``op`` (``--socket``: that one); all must answer."""
    from portlane.edge.errors import DaemonUnreachableError

    if getattr(args, "socket", None):
        return [str(args.socket)]
    targets = []
    for path in sockets(args):
        try:
            if op in _ops_of(ask(path, "ping", args)):
                targets.append(path)
        except DaemonUnreachableError as exc:
            raise UnreachableError(f"{exc}; not sending {op!r} to only some of the daemons") from exc
    if not targets:
        raise UnreachableError(f"no running daemon accepts {op!r}")
    return targets


# =============================================================================== acting commands


def operator(args: argparse.Namespace) -> tuple[str, str]:
    """--operator and --reason, both required and validated as the audit log will."""
    from portlane.edge.errors import OperatorError
    from portlane.edge.trust.audit import require_operator

    if not args.operator or not args.reason:
        raise UsageError("acting commands need --operator NAME and --reason TEXT (they go to the audit log)")
    try:
        return require_operator(args.operator, args.reason)
    except OperatorError as exc:
        raise UsageError(str(exc)) from exc


def confirm(args: argparse.Namespace, question: str) -> None:
    """Ask on the terminal unless ``--yes``; no terminal and no ``--yes`` is a usage error."""
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{question} — no terminal to confirm on; add --yes to proceed")
    from rich.prompt import Confirm

    if not Confirm.ask(f"{question} Proceed?", default=False):
        raise UsageError("not confirmed; nothing was done")


def act(
    args: argparse.Namespace,
    op: str,
    question: str,
    *,
    route_lane: str | None,
    route_scanner: str | None = None,
    what: str = "",
    fields_for: Callable[[str], dict[str, object]] | None = None,
    done: Callable[[Answer], str] | None = None,
    **fields: object,
) -> int:
    """Validate operator and reason, find the daemon, confirm, send, report.

    ``fields_for(socket)`` adds request fields that depend on the daemon found (read from it
    before the confirmation); ``done(answer)`` says what was done, from the daemon's answer
    (default: the question, as a statement)."""
    who, why = operator(args)
    path = route(args, op, lane=route_lane, scanner=route_scanner, what=what)
    if fields_for is not None:
        fields = {**fields, **fields_for(path)}
    confirm(args, question)
    resp = ask(path, op, args, operator=who, reason=why, **fields)
    if args.json:
        print_json(resp)
    elif resp.get("ok"):
        said = done(resp) if done is not None else question.rstrip("?")
        console().print(f"[green]done[/green]: {said} ({who}: {why})")
    else:
        err(f"refused by the daemon: {resp.get('error', 'no reason given')}")
    return EXIT_OK if resp.get("ok") else EXIT_FAILED
