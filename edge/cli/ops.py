"""The technician's commands: read, act, diagnose, configure a running lane controller.

The CLI talks to the daemons through their control sockets (``edge/control.py``) — never
to a serial port a daemon holds. Each daemon has its own socket in ``/run/portlane``
(``lane-c1.sock``, ``scanner-xray-1.sock``, …); read commands ask all of them and merge the
answers, acting commands go to the one daemon that serves the lane (``--socket PATH``
picks one explicitly). ``modbus`` and ``serial sniff`` use the device directly and say so.

Read (all take ``--json``)::

    status                         site, broker, lanes: stage, passage, devices, outbox
    devices [--lane L]             per device: health, backend, link, last error, counters
    events tail [--lane L] [--type T] [--broker URL] [--count N]
    passage show ID
    outbox show [--lane L]

Act (confirmation unless ``--yes``; ``--operator NAME --reason TEXT`` required; the daemon
writes the audit log)::

    gate open|close|stop --lane L
    board say --lane L TEXT
    lane close|open L
    scanner abort [--scanner ID]
    outbox replay [--count N] | outbox purge --count N   [--lane L]

Diagnose::

    modbus read|write --host H [--port P] | --url TTY  --unit U --table coil|di|hr|ir --address A ...
    serial sniff PORT [--protocol gate-rs485|board|rfid|weighbridge|modbus-rtu] [--count N] [--force]
    diag bundle [--site FILE] [--log-dir DIR] [-o OUT.tar.gz]

Configure (``config check`` lives in ``cli/config.py``)::

    config diff FILE               exit 0 identical, 1 different (like diff(1))
    config apply FILE              validated here, then by each daemon, which rolls back by itself
                                   when it cannot reach broker or devices with the new file

Exit codes: 0 ok · 1 the operation ran and failed (refused by the daemon, device did not
answer, no message before --timeout, configs differ) · 2 usage (missing --operator/--reason,
not confirmed, invalid file, ambiguous target) · 3 daemon or broker unreachable · 130 ^C.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
TOPIC_ROOT = "portlane/v1"
#: Default inter-frame silence that ends a frame in ``serial sniff`` when the protocol has no
#: decoder: Modbus RTU's 3.5 character times are < 4 ms at 9600 bit/s, but USB serial
#: adapters deliver bytes in bursts every 1–16 ms (FTDI latency timer), so 20 ms it is.
DEFAULT_GAP_MS = 20.0
SNIFF_PROTOCOLS = {
    "gate-rs485": "portlane.drivers.gate_rs485",
    "board": "portlane.drivers.board_serial",
    "rfid": "portlane.drivers.rfid_serial",
    "weighbridge": "portlane.drivers.weighbridge_serial",
    "modbus-rtu": None,  # decoded here: unit, function, CRC
}
KEY_PACKAGES = (
    "portlane",
    "pydantic",
    "PyYAML",
    "pyserial",
    "pymodbus",
    "paho-mqtt",
    "aiomqtt",
    "amqtt",
    "prometheus-client",
    "cryptography",
    "rich",
    "numpy",
    "onnxruntime",
    "opencv-python-headless",
)


class UsageError(Exception):
    """Bad invocation: exit 2 with this message."""


class Unreachable(Exception):
    """Daemon or broker unreachable: exit 3 with this message."""


# =============================================================================== parsers


def register(sub: Any) -> None:
    """Top-level commands: status, devices, events, passage, outbox, gate, board, lane,
    scanner, modbus, serial, diag; and ``diff``/``apply`` under ``config``."""

    def add(name: str, **kw: Any) -> argparse.ArgumentParser | None:
        if name in sub.choices:  # another group owns this name; it wins
            return None
        p: argparse.ArgumentParser = sub.add_parser(name, **kw)
        return p

    if (p := add("status", help="site, lanes, devices, outbox and broker at a glance")) is not None:
        _daemon_opts(p, json_flag=True)
        p.set_defaults(func=run_status)

    if (p := add("devices", help="per device: health, link, last error, counters")) is not None:
        _daemon_opts(p, json_flag=True)
        p.add_argument("--lane", help="only this lane")
        p.set_defaults(func=run_devices)

    if (p := add("events", help="live events from the broker")) is not None:
        es = p.add_subparsers(dest="events_command", metavar="ACTION", required=True)
        t = es.add_parser("tail", help="print events as they are published")
        t.add_argument("--lane", default="+", help="lane id (default: all)")
        t.add_argument("--type", default=None, help="event type, e.g. vehicle.identified (default: all)")
        t.add_argument(
            "--site", dest="site_id", default=None, help="site id (default: from the running daemon, else all)"
        )
        t.add_argument(
            "--broker", default=None, help=f"mqtt://HOST:PORT (default: the daemon's, else {DEFAULT_BROKER})"
        )
        t.add_argument("--username", default=None)
        t.add_argument(
            "--password-env", default="PORTLANE_MQTT_PASSWORD", help="environment variable holding the broker password"
        )
        t.add_argument("--count", type=int, default=None, help="stop after N events")
        t.add_argument("--timeout", type=float, default=None, help="give up (exit 1) after S seconds")
        _daemon_opts(t, json_flag=True)
        t.set_defaults(func=run_events_tail)

    if (p := add("passage", help="one passage, from the daemon that handled it")) is not None:
        ps = p.add_subparsers(dest="passage_command", metavar="ACTION", required=True)
        s = ps.add_parser("show", help="stages, identifiers, decisions of passage ID")
        s.add_argument("id")
        _daemon_opts(s, json_flag=True)
        s.set_defaults(func=run_passage_show)

    if (p := add("outbox", help="the durable outbox of undelivered events")) is not None:
        os_ = p.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)
        s = os_.add_parser("show", help="depth, oldest age, dropped")
        s.add_argument("--lane")
        _daemon_opts(s, json_flag=True)
        s.set_defaults(func=run_outbox, action="show")
        r = os_.add_parser("replay", help="re-send delivered events (the platform de-duplicates by id)")
        r.add_argument("--count", type=int, default=None, help="the last N events (default: all undelivered)")
        r.add_argument("--lane")
        _act_opts(r)
        r.set_defaults(func=run_outbox, action="replay")
        g = os_.add_parser("purge", help="drop the N oldest undelivered events (irreversible)")
        g.add_argument("--count", type=int, required=True, help="how many; required")
        g.add_argument("--lane")
        _act_opts(g)
        g.set_defaults(func=run_outbox, action="purge")

    if (p := add("gate", help="open, close or stop a barrier (audited)")) is not None:
        p.add_argument("action", choices=("open", "close", "stop"))
        p.add_argument("--lane", required=True)
        _act_opts(p)
        p.set_defaults(func=run_gate)

    if (p := add("board", help="show a message on the lane's guidance board (audited)")) is not None:
        bs = p.add_subparsers(dest="board_command", metavar="ACTION", required=True)
        s = bs.add_parser("say", help="display TEXT")
        s.add_argument("text")
        s.add_argument("--lane", required=True)
        _act_opts(s)
        s.set_defaults(func=run_board_say)

    if (p := add("lane", help="take a lane out of service and back (audited)")) is not None:
        p.add_argument("action", choices=("close", "open"))
        p.add_argument("lane")
        _act_opts(p)
        p.set_defaults(func=run_lane_service)

    if (p := add("scanner", help="the shared X-ray scanner")) is not None:
        ss = p.add_subparsers(dest="scanner_command", metavar="ACTION", required=True)
        s = ss.add_parser("abort", help="abort the running scan (audited)")
        s.add_argument("--scanner", default=None, help="scanner id (default: the only one)")
        _act_opts(s)
        s.set_defaults(func=run_scanner_abort)

    if (p := add("modbus", help="read or write a Modbus device directly")) is not None:
        ms = p.add_subparsers(dest="modbus_command", metavar="ACTION", required=True)
        for action in ("read", "write"):
            m = ms.add_parser(action, help=f"{action} coils / discrete inputs / registers")
            target = m.add_mutually_exclusive_group(required=True)
            target.add_argument("--host", help="Modbus TCP host")
            target.add_argument("--url", help="serial port (Modbus RTU), e.g. /dev/serial/by-id/... or a pty")
            m.add_argument("--port", type=int, default=502, help="TCP port (default 502)")
            m.add_argument("--baudrate", type=int, default=9600)
            m.add_argument("--parity", choices=("N", "E", "O"), default="N")
            m.add_argument("--unit", type=int, default=1, help="unit / slave id (default 1)")
            m.add_argument("--table", required=True, choices=("coil", "di", "hr", "ir"))
            m.add_argument("--address", type=int, required=True, help="0-based address")
            m.add_argument("--timeout", type=float, default=1.0, help="seconds per request")
            m.add_argument("--force", action="store_true", help="use a serial port a daemon holds")
            m.add_argument("--socket", default=None, help=argparse.SUPPRESS)
            if action == "read":
                m.add_argument("--count", type=int, default=1)
                m.add_argument("--json", action="store_true")
                m.set_defaults(func=run_modbus_read)
            else:
                m.add_argument("values", nargs="+", type=int, help="values (0/1 for coils)")
                _act_opts(m, daemon=False)
                m.set_defaults(func=run_modbus_write)

    if (p := add("serial", help="watch a serial line")) is not None:
        ss = p.add_subparsers(dest="serial_command", metavar="ACTION", required=True)
        s = ss.add_parser("sniff", help="print frames on PORT with timestamps, decoded when possible")
        s.add_argument("port", help="device path or pyserial URL")
        s.add_argument("--protocol", choices=sorted(SNIFF_PROTOCOLS), default=None)
        s.add_argument("--baudrate", type=int, default=9600)
        s.add_argument("--bytesize", type=int, choices=(7, 8), default=8)
        s.add_argument("--parity", choices=("N", "E", "O"), default="N")
        s.add_argument("--stopbits", type=int, choices=(1, 2), default=1)
        s.add_argument(
            "--gap-ms", type=float, default=DEFAULT_GAP_MS, help="silence that ends a frame when there is no decoder"
        )
        s.add_argument("--count", type=int, default=None, help="stop after N frames")
        s.add_argument("--timeout", type=float, default=None, help="give up (exit 1) after S seconds")
        s.add_argument("--force", action="store_true", help="sniff even though a daemon holds the port")
        s.add_argument("--json", action="store_true")
        s.add_argument("--socket", default=None, help="only consult this daemon about held ports")
        s.set_defaults(func=run_serial_sniff)

    if (p := add("diag", help="support diagnostics")) is not None:
        ds = p.add_subparsers(dest="diag_command", metavar="ACTION", required=True)
        b = ds.add_parser("bundle", help="one archive for a support ticket (secrets redacted)")
        b.add_argument("--site", default=None, help="site file (default: the running daemon's)")
        b.add_argument("--log-dir", default=None, help="also take the newest files of this directory")
        b.add_argument("--since", default="-24h", help="journal window (journalctl --since)")
        b.add_argument("-o", "--output", default=None, help="OUT.tar.gz (default: portlane-diag-<time>.tar.gz)")
        b.add_argument("--no-journal", action="store_true", help="do not run journalctl")
        _daemon_opts(b, json_flag=True)
        b.set_defaults(func=run_diag_bundle)

    _register_config(sub)


def _register_config(sub: Any) -> None:
    """Add ``diff`` and ``apply`` to the ``config`` group of cli/config.py (or create it)."""
    parent = sub.choices.get("config")
    if parent is None:
        parent = sub.add_parser("config", help="site configuration")
        parent.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    csub = next(a for a in parent._actions if isinstance(a, argparse._SubParsersAction))
    if "diff" not in csub.choices:
        d = csub.add_parser("diff", help="FILE against the running configuration (exit 1 if they differ)")
        d.add_argument("file")
        d.add_argument("--show-secrets", action="store_true", help="do not redact passwords and keys")
        _daemon_opts(d, json_flag=True)
        d.set_defaults(func=run_config_diff)
    if "apply" not in csub.choices:
        a = csub.add_parser("apply", help="make FILE the running configuration (rolled back on failure)")
        a.add_argument("file")
        a.add_argument(
            "--allow-key-change", action="store_true", help="FILE adds or changes trusted keys, and that is intended"
        )
        _act_opts(a)
        a.set_defaults(func=run_config_apply)


def _daemon_opts(p: argparse.ArgumentParser, *, json_flag: bool) -> None:
    p.add_argument(
        "--socket", default=None, help="control socket of one daemon (default: every *.sock in /run/portlane)"
    )
    p.add_argument("--request-timeout", type=float, default=None, help=argparse.SUPPRESS)
    if json_flag:
        p.add_argument("--json", action="store_true", help="machine-readable output")


def _act_opts(p: argparse.ArgumentParser, *, daemon: bool = True) -> None:
    p.add_argument("--operator", default=None, help="who you are (e.g. tech:li.wei); required")
    p.add_argument("--reason", default=None, help="why; required, recorded in the audit log")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    if daemon:
        _daemon_opts(p, json_flag=True)


# =============================================================================== plumbing


def _guard(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Map our exceptions to exit codes in one place."""

    def wrapper(args: argparse.Namespace) -> int:
        from portlane.edge.ops.control import ControlError, DaemonUnreachableError

        try:
            return fn(args)
        except UsageError as exc:
            _err(str(exc))
            return EXIT_USAGE
        except (Unreachable, DaemonUnreachableError) as exc:
            _err(str(exc))
            return EXIT_UNREACHABLE
        except ControlError as exc:
            _err(str(exc))
            return EXIT_FAILED

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def _err(msg: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False).print(f"[red]portlane:[/red] {msg}", markup=True, soft_wrap=True)


def _console() -> Any:
    from rich.console import Console

    # Piped into less or a ticket, a table should not be squeezed into rich's default 80 columns.
    wide = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
    return Console(highlight=False, width=wide)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


def _sockets(args: argparse.Namespace) -> list[str]:
    from portlane.edge.ops.control import discover

    if getattr(args, "socket", None):
        return [args.socket]
    found = discover()
    if not found:
        raise Unreachable(
            "no daemon control socket found in /run/portlane (is portlane.target running? "
            "pass --socket PATH or set PORTLANE_CONTROL)"
        )
    return found


def _ask(path: str, op: str, args: argparse.Namespace | None = None, **fields: Any) -> dict[str, Any]:
    from portlane.edge.ops.control import REQUEST_TIMEOUT_S, request_sync

    timeout = getattr(args, "request_timeout", None) or REQUEST_TIMEOUT_S
    return request_sync(path, op, timeout_s=timeout, **fields)


def _ask_all(args: argparse.Namespace, op: str, **fields: Any) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """Ask every daemon; return ``([(socket, answer)], [unreachable messages])``."""
    from portlane.edge.ops.control import DaemonUnreachableError

    answers, down = [], []
    for path in _sockets(args):
        try:
            answers.append((path, _ask(path, op, args, **fields)))
        except DaemonUnreachableError as exc:
            down.append(str(exc))
    if not answers and down:
        raise Unreachable("; ".join(down))
    return answers, down


def _route(args: argparse.Namespace, op: str, *, lane: str | None = None, what: str = "") -> str:
    """The one daemon that should receive ``op`` (for ``lane``, if given)."""
    from portlane.edge.ops.control import DaemonUnreachableError

    paths = _sockets(args)
    if len(paths) == 1:
        return paths[0]
    able = []
    for path in paths:
        try:
            ping = _ask(path, "ping", args)
        except DaemonUnreachableError:
            continue
        if op in ping.get("ops", ()):
            able.append(path)
    if lane is not None:
        for path in able:
            try:
                st = _ask(path, "status", args)
            except DaemonUnreachableError:
                continue
            if any(item.get("lane") == lane for item in st.get("lanes", ())):
                return path
        raise Unreachable(f"no running daemon serves lane {lane!r} (asked: {', '.join(paths)})")
    if len(able) == 1:
        return able[0]
    if not able:
        raise Unreachable(f"no running daemon implements {op!r} (asked: {', '.join(paths)})")
    raise UsageError(f"several daemons can {what or op}: {', '.join(able)}; choose one with --socket")


def _operator(args: argparse.Namespace) -> tuple[str, str]:
    """--operator and --reason, both required and validated as the audit log will."""
    if not args.operator or not args.reason:
        raise UsageError("acting commands need --operator NAME and --reason TEXT (they go to the audit log)")
    try:
        from portlane.edge.trust.audit import OperatorError, require_operator
    except ImportError:  # an install without the audit module: the daemon checks again anyway
        return args.operator.strip(), " ".join(args.reason.split())
    try:
        return require_operator(args.operator, args.reason)
    except OperatorError as exc:
        raise UsageError(str(exc)) from exc


def _confirm(args: argparse.Namespace, question: str) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{question} — no terminal to confirm on; add --yes to proceed")
    from rich.prompt import Confirm

    if not Confirm.ask(f"{question} Proceed?", default=False):
        raise UsageError("not confirmed; nothing was done")


def _act(args: argparse.Namespace, op: str, question: str, *, route_lane: str | None, **fields: Any) -> int:
    """Validate operator and reason, find the daemon, confirm, send, report."""
    operator, reason = _operator(args)
    path = _route(args, op, lane=route_lane)
    _confirm(args, question)
    resp = _ask(path, op, args, operator=operator, reason=reason, **fields)
    if args.json:
        _print_json(resp)
    elif resp.get("ok"):
        _console().print(f"[green]done[/green]: {question.rstrip('?')} ({operator}: {reason})")
    else:
        _err(f"refused by the daemon: {resp.get('error', 'no reason given')}")
    return EXIT_OK if resp.get("ok") else EXIT_FAILED


_HEALTH_STYLE = {"online": "green", "degraded": "yellow", "offline": "red"}


def _health(h: Any) -> str:
    return f"[{_HEALTH_STYLE.get(str(h), 'magenta')}]{h}[/]"


# =============================================================================== read


@_guard
def run_status(args: argparse.Namespace) -> int:
    answers, down = _ask_all(args, "status")
    ok = [(p, a) for p, a in answers if a.get("ok")]
    failed = [f"{p}: {a.get('error')}" for p, a in answers if not a.get("ok")]
    lanes = [lane for _p, a in ok for lane in a.get("lanes", [])]
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
        _print_json(merged)
    else:
        from rich.table import Table

        con = _console()
        broker = first.get("broker") or {}
        conn = "[green]connected[/]" if broker.get("connected") else "[red]disconnected[/]"
        con.print(f"site [bold]{merged['site']}[/]  broker {broker.get('url', '?')} {conn}")
        t = Table("lane", "service", "stage", "passage", "devices", "outbox", "oldest", "dropped")
        for lane in lanes:
            ob = lane.get("outbox") or {}
            devs = " ".join(f"{n}:{_health(d.get('health'))}" for n, d in (lane.get("devices") or {}).items())
            svc = "[green]in service[/]" if lane.get("in_service") else "[red]CLOSED[/]"
            depth = ob.get("depth", 0)
            t.add_row(
                str(lane.get("lane")),
                svc,
                str(lane.get("stage")),
                str(lane.get("passage_id") or "—"),
                devs,
                f"[yellow]{depth}[/]" if depth else "0",
                f"{ob.get('oldest_age_s', 0):.0f} s",
                str(ob.get("dropped", 0)),
            )
        con.print(t)
        for e in merged["errors"]:
            _err(e)
    if down:
        return EXIT_UNREACHABLE
    return EXIT_FAILED if failed else EXIT_OK


@_guard
def run_devices(args: argparse.Namespace) -> int:
    answers, down = _ask_all(args, "devices")
    rows = []
    failed = []
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
        _print_json({"ok": not failed and not down, "devices": rows, "errors": failed + down})
    else:
        from rich.table import Table

        t = Table("lane", "device", "health", "backend", "link", "last error", "counters")
        for r in rows:
            counters = " ".join(f"{k}={v}" for k, v in (r.get("counters") or {}).items())
            t.add_row(
                str(r["lane"]),
                r["device"],
                _health(r.get("health")),
                str(r.get("backend", "")),
                str(r.get("link", "")),
                str(r.get("last_error") or "—"),
                counters,
            )
        _console().print(t)
        for e in failed + down:
            _err(e)
    if down:
        return EXIT_UNREACHABLE
    return EXIT_FAILED if failed else EXIT_OK


@_guard
def run_passage_show(args: argparse.Namespace) -> int:
    answers, down = _ask_all(args, "passage", id=args.id)
    for _path, a in answers:
        if a.get("ok"):
            if args.json:
                _print_json(a)
            else:
                _print_mapping(a, title=f"passage {args.id}")
            return EXIT_OK
    errors = [str(a.get("error")) for _p, a in answers] + down
    _err(f"passage {args.id} not found: {'; '.join(errors)}")
    return EXIT_UNREACHABLE if down and not answers else EXIT_FAILED


def _print_mapping(obj: dict[str, Any], *, title: str) -> None:
    from rich.table import Table

    t = Table("field", "value", title=title)
    for k, v in obj.items():
        if k == "ok":
            continue
        t.add_row(k, v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str))
    _console().print(t)


@_guard
def run_outbox(args: argparse.Namespace) -> int:
    action = args.action
    if action == "show":
        if args.lane:
            path = _route(args, "outbox", lane=args.lane)
            answers = [(path, _ask(path, "outbox", args, action="show", count=None))]
            down: list[str] = []
        else:
            answers, down = _ask_all(args, "outbox", action="show", count=None)
        if args.json:
            _print_json(
                {
                    "ok": all(a.get("ok") for _p, a in answers) and not down,
                    "daemons": [{"socket": p, **a} for p, a in answers],
                    "errors": down,
                }
            )
        else:
            for p, a in answers:
                _print_mapping(a, title=f"outbox ({Path(p).stem})")
        if down:
            return EXIT_UNREACHABLE
        return EXIT_OK if all(a.get("ok") for _p, a in answers) else EXIT_FAILED
    if args.count is not None and args.count <= 0:
        raise UsageError("--count must be positive")
    what = f"{action} {'all' if args.count is None else args.count} outbox events"
    if args.lane:
        what += f" of lane {args.lane}"
    return _act(args, "outbox", f"{what}?", route_lane=args.lane, action=action, count=args.count)


# =============================================================================== act


@_guard
def run_gate(args: argparse.Namespace) -> int:
    return _act(
        args,
        "gate",
        f"{args.action} the barrier of lane {args.lane}?",
        route_lane=args.lane,
        lane=args.lane,
        action=args.action,
    )


@_guard
def run_board_say(args: argparse.Namespace) -> int:
    return _act(
        args,
        "board",
        f"show {args.text!r} on the board of lane {args.lane}?",
        route_lane=args.lane,
        lane=args.lane,
        text=args.text,
    )


@_guard
def run_lane_service(args: argparse.Namespace) -> int:
    in_service = args.action == "open"
    q = f"put lane {args.lane} back in service?" if in_service else f"take lane {args.lane} out of service?"
    return _act(args, "lane_service", q, route_lane=args.lane, lane=args.lane, in_service=in_service)


@_guard
def run_scanner_abort(args: argparse.Namespace) -> int:
    name = args.scanner or "the scanner"
    return _act(args, "scanner_abort", f"abort the running scan on {name}?", route_lane=None, scanner=args.scanner)


# =============================================================================== events


def _daemon_status_quiet(args: argparse.Namespace) -> dict[str, Any] | None:
    """The first daemon's status, or None — for defaults (broker, site), never fatal."""
    from portlane.edge.ops.control import ControlError, discover

    paths = [args.socket] if getattr(args, "socket", None) else discover()
    for path in paths:
        try:
            st = _ask(path, "status", args)
        except ControlError:
            continue
        if st.get("ok"):
            return st
    return None


def _parse_broker(url: str) -> tuple[str, int, bool]:
    from urllib.parse import urlsplit

    u = urlsplit(url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise UsageError(f"--broker must look like mqtt://HOST:PORT, not {url!r}")
    tls = u.scheme == "mqtts"
    return u.hostname, u.port or (8883 if tls else 1883), tls


@_guard
def run_events_tail(args: argparse.Namespace) -> int:
    import threading

    import paho.mqtt.client as mqtt

    st = None if (args.broker and args.site_id) else _daemon_status_quiet(args)
    broker = args.broker or ((st or {}).get("broker") or {}).get("url") or DEFAULT_BROKER
    site = args.site_id or (st or {}).get("site") or "+"
    host, port, tls = _parse_broker(broker)
    topic = f"{TOPIC_ROOT}/{site}/{args.lane}/event/{args.type or '#'}"
    if args.count is not None and args.count <= 0:
        raise UsageError("--count must be positive")

    seen = 0
    done = threading.Event()
    failure: list[str] = []
    con = None if args.json else _console()

    def on_connect(client: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            failure.append(f"broker {broker} refused the connection: {reason}")
            done.set()
            return
        client.subscribe(topic, qos=1)

    def on_subscribe(_client: Any, _u: Any, _mid: Any, reasons: Any, _props: Any) -> None:
        if any(r.is_failure for r in reasons):
            failure.append(f"broker {broker} refused the subscription to {topic}")
            done.set()
            return
        # On stderr in every mode: once this line is out, no matching event is missed.
        from rich.console import Console

        Console(stderr=True, highlight=False).print(f"[dim]listening on {broker} for {topic}[/dim]", soft_wrap=True)

    def on_message(_client: Any, _u: Any, msg: Any) -> None:
        nonlocal seen
        if done.is_set():
            return
        try:
            payload: Any = json.loads(msg.payload)
        except ValueError:
            payload = msg.payload.decode("utf-8", "replace")
        parts = msg.topic.split("/")
        lane = parts[3] if len(parts) > 3 else "?"
        etype = "/".join(parts[5:]) if len(parts) > 5 else "?"
        if con is None:
            print(
                json.dumps({"topic": msg.topic, "lane": lane, "type": etype, "payload": payload}, ensure_ascii=False),
                flush=True,
            )
        else:
            ts = payload.get("time") if isinstance(payload, dict) else None
            ts = ts or dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
            summary = _event_summary(payload)
            con.print(f"{ts}  [cyan]{lane}[/]  [bold]{etype}[/]  {summary}", soft_wrap=True)
        seen += 1
        if args.count is not None and seen >= args.count:
            done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    client.on_connect = on_connect
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    if args.username:
        client.username_pw_set(args.username, os.environ.get(args.password_env))
    if tls:
        client.tls_set()
    try:
        client.connect(host, port, keepalive=30)
    except OSError as exc:
        raise Unreachable(f"cannot reach broker {broker}: {exc}") from exc
    client.loop_start()
    try:
        finished = done.wait(args.timeout) if args.timeout is not None else _wait_forever(done)
    finally:
        client.disconnect()
        client.loop_stop()
    if failure:
        raise Unreachable(failure[0])
    if not finished:
        _err(f"{seen} event(s) before the {args.timeout:g} s timeout")
        return EXIT_FAILED
    return EXIT_OK


def _wait_forever(done: Any) -> bool:
    while not done.wait(1.0):  # a timed wait so that ^C is seen promptly
        pass
    return True


def _event_summary(payload: Any) -> str:
    if not isinstance(payload, dict):
        return str(payload)[:200]
    data = payload.get("data")
    bits = [f"seq={payload['seq']}"] if "seq" in payload else []
    if payload.get("subject"):
        bits.append(f"subject={payload['subject']}")
    if isinstance(data, dict):
        bits += [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in list(data.items())[:6]]
    return " ".join(bits)


# =============================================================================== ports held by daemons


def _held_serial_ports(args: argparse.Namespace) -> dict[str, str]:
    """Serial ports the running daemons use: real path → who (socket or pid)."""
    from portlane.edge.ops.control import ControlError, discover

    held: dict[str, str] = {}
    paths = [args.socket] if getattr(args, "socket", None) else discover()
    for path in paths:
        try:
            resp = _ask(path, "config", args)
        except ControlError:
            continue
        if resp.get("ok") and isinstance(resp.get("yaml"), str):
            for url in _serial_urls(resp["yaml"]):
                held[os.path.realpath(url)] = f"daemon at {path}"
    # Any process with the tty open (works for our own user and for root).
    proc = Path("/proc")
    for pid_dir in proc.iterdir() if proc.is_dir() else ():
        if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
            continue
        try:
            fds = list((pid_dir / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("/dev/"):
                held.setdefault(target, f"pid {pid_dir.name}")
    return held


def _serial_urls(text: str) -> list[str]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return []
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("kind") == "serial" and isinstance(node.get("url"), str):
                out.append(node["url"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(data)
    return out


def _check_port_free(args: argparse.Namespace, port: str) -> None:
    if "://" in port:  # pyserial URL (socket://, rfc2217://): not a local tty
        return
    held = _held_serial_ports(args)
    who = held.get(os.path.realpath(port))
    if who is None:
        return
    if args.force:
        _err(f"warning: {port} is in use by {who}; --force given, reading anyway (frames may be split)")
        return
    raise UsageError(
        f"{port} is in use by {who}; stop it first or pass --force "
        "(to watch a live bus, prefer a second adapter on the same RS-485 pair)"
    )


# =============================================================================== modbus


def _modbus_client(args: argparse.Namespace) -> Any:
    from pymodbus.client import ModbusSerialClient, ModbusTcpClient

    if args.url:
        _check_port_free(args, args.url)
        return ModbusSerialClient(args.url, baudrate=args.baudrate, parity=args.parity, timeout=args.timeout, retries=0)
    return ModbusTcpClient(args.host, port=args.port, timeout=args.timeout, retries=0)


def _modbus_target(args: argparse.Namespace) -> str:
    return args.url if args.url else f"{args.host}:{args.port}"


def _daemons_running_note(args: argparse.Namespace) -> None:
    from portlane.edge.ops.control import discover

    running = discover()
    if running and not getattr(args, "json", False):
        _err(
            f"note: {len(running)} daemon(s) running ({', '.join(Path(p).stem for p in running)}); "
            "this command talks to the device directly, alongside them"
        )


@_guard
def run_modbus_read(args: argparse.Namespace) -> int:
    if not 1 <= args.count <= 2000:
        raise UsageError("--count must be 1..2000")
    _daemons_running_note(args)
    client = _modbus_client(args)
    try:
        if not client.connect():
            raise Unreachable(f"cannot connect to Modbus device at {_modbus_target(args)}")
        fn = {
            "coil": client.read_coils,
            "di": client.read_discrete_inputs,
            "hr": client.read_holding_registers,
            "ir": client.read_input_registers,
        }[args.table]
        try:
            rr = fn(args.address, count=args.count, device_id=args.unit)
        except Exception as exc:  # pymodbus raises ModbusException subclasses and OSErrors
            _err(f"{_modbus_target(args)} unit {args.unit}: {type(exc).__name__}: {exc}")
            return EXIT_FAILED
    finally:
        client.close()
    if rr.isError():
        _err(f"{_modbus_target(args)} unit {args.unit}: device answered with an exception: {rr}")
        return EXIT_FAILED
    values = [int(b) for b in rr.bits[: args.count]] if args.table in ("coil", "di") else list(rr.registers)
    if args.json:
        print(
            json.dumps(
                {
                    "target": _modbus_target(args),
                    "unit": args.unit,
                    "table": args.table,
                    "address": args.address,
                    "values": values,
                }
            )
        )
    else:
        from rich.table import Table

        t = Table("address", "value", "hex", title=f"{_modbus_target(args)} unit {args.unit} {args.table}")
        for i, v in enumerate(values):
            t.add_row(str(args.address + i), str(v), f"0x{v:04X}" if args.table in ("hr", "ir") else "")
        _console().print(t)
    return EXIT_OK


@_guard
def run_modbus_write(args: argparse.Namespace) -> int:
    if args.table not in ("coil", "hr"):
        raise UsageError("only coils (coil) and holding registers (hr) can be written")
    if args.table == "coil" and any(v not in (0, 1) for v in args.values):
        raise UsageError("coil values are 0 or 1")
    if args.table == "hr" and any(not 0 <= v <= 0xFFFF for v in args.values):
        raise UsageError("register values are 0..65535")
    operator, reason = _operator(args)
    _daemons_running_note(args)
    _confirm(
        args,
        f"write {args.values} to {args.table} {args.address} of unit {args.unit} at "
        f"{_modbus_target(args)} (directly, bypassing the daemon)?",
    )
    client = _modbus_client(args)
    try:
        if not client.connect():
            raise Unreachable(f"cannot connect to Modbus device at {_modbus_target(args)}")
        try:
            if args.table == "coil":
                rr = client.write_coils(args.address, [bool(v) for v in args.values], device_id=args.unit)
            else:
                rr = client.write_registers(args.address, list(args.values), device_id=args.unit)
        except Exception as exc:
            _err(f"{_modbus_target(args)} unit {args.unit}: {type(exc).__name__}: {exc}")
            return EXIT_FAILED
    finally:
        client.close()
    if rr.isError():
        _err(f"{_modbus_target(args)} unit {args.unit}: device answered with an exception: {rr}")
        return EXIT_FAILED
    import logging

    # Direct writes bypass the daemon and its audit log; at least leave a trace in the journal.
    logging.getLogger("portlane.edge.cli.ops").warning(
        "direct modbus write",
        extra={
            "operator": operator,
            "reason": reason,
            "target": _modbus_target(args),
            "unit": args.unit,
            "table": args.table,
            "address": args.address,
        },
    )
    _console().print(f"[green]written[/green]: {args.table} {args.address}.. = {args.values}")
    return EXIT_OK


# =============================================================================== serial sniff


def _crc16_modbus(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def _decode_modbus_rtu(frame: bytes) -> str:
    if len(frame) < 4:
        return "short frame"
    crc = _crc16_modbus(frame[:-2])
    ok = frame[-2] == crc & 0xFF and frame[-1] == crc >> 8
    fc = frame[1]
    kind = f"exception {frame[2]:02X} to fc {fc & 0x7F:02X}" if fc & 0x80 else f"fc {fc:02X}"
    return f"unit {frame[0]} {kind} crc {'ok' if ok else 'BAD'}"


class _Framer:
    """Splits a byte stream into frames: with the protocol's ``decode_frame`` when the driver
    module has one (contract in drivers/gate_rs485.py), otherwise by inter-frame silence."""

    def __init__(self, protocol: str | None) -> None:
        self.protocol = protocol
        self.decode: Callable[[bytes], tuple[Any, int]] | None = None
        self.frame_error: type[Exception] | None = None
        modname = SNIFF_PROTOCOLS.get(protocol or "")
        if modname:
            import importlib

            try:
                mod = importlib.import_module(modname)
                self.decode = getattr(mod, "decode_frame", None)
                self.frame_error = getattr(importlib.import_module("portlane.drivers.serial_link"), "FrameError", None)
            except ImportError:
                self.decode = None
        self.buf = b""

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Frames completed by ``data`` (decoder present) — each {raw, decoded|error}."""
        self.buf += data
        out: list[dict[str, Any]] = []
        if self.decode is None:
            return out
        while self.buf:
            try:
                frame, n = self.decode(self.buf)
            except Exception as exc:
                if self.frame_error is not None and not isinstance(exc, self.frame_error):
                    raise
                n = getattr(exc, "consumed", 1)
                out.append({"raw": self.buf[:n], "error": str(exc)})
                self.buf = self.buf[n:]
                continue
            if frame is None and n == 0:
                break
            raw, self.buf = self.buf[:n], self.buf[n:]
            out.append(
                {"raw": raw, "decoded": _describe(frame)}
                if frame is not None
                else {"raw": raw, "error": "garbage before sync"}
            )
        return out

    def flush(self) -> list[dict[str, Any]]:
        """On silence: without a decoder the buffered bytes are one frame."""
        if self.decode is not None or not self.buf:
            return []
        raw, self.buf = self.buf, b""
        item: dict[str, Any] = {"raw": raw}
        if self.protocol == "modbus-rtu":
            item["decoded"] = _decode_modbus_rtu(raw)
        return [item]


def _describe(frame: Any) -> Any:
    import dataclasses
    import enum

    if dataclasses.is_dataclass(frame) and not isinstance(frame, type):
        out = {}
        for f in dataclasses.fields(frame):
            v = getattr(frame, f.name)
            out[f.name] = v.name if isinstance(v, enum.Enum) else v.hex(" ") if isinstance(v, bytes) else v
        return out
    return str(frame)


@_guard
def run_serial_sniff(args: argparse.Namespace) -> int:
    import time

    import serial

    if args.count is not None and args.count <= 0:
        raise UsageError("--count must be positive")
    _check_port_free(args, args.port)
    framer = _Framer(args.protocol)
    if args.protocol and SNIFF_PROTOCOLS.get(args.protocol) and framer.decode is None:
        _err(f"no decoder for {args.protocol} in this install yet; showing raw frames split by silence")
    try:
        port = serial.serial_for_url(
            args.port,
            baudrate=args.baudrate,
            bytesize=args.bytesize,
            parity=args.parity,
            stopbits=args.stopbits,
            timeout=args.gap_ms / 1000.0,
        )
    except (serial.SerialException, OSError, ValueError) as exc:
        raise Unreachable(f"cannot open {args.port}: {exc}") from exc
    con = None if args.json else _console()
    from rich.console import Console

    # On stderr in every mode: the line says the port is open (tests and scripts wait for it).
    Console(stderr=True, highlight=False).print(
        f"[dim]sniffing {args.port} {args.baudrate} {args.bytesize}{args.parity}{args.stopbits}"
        f" ({args.protocol or 'raw'}); ^C to stop[/dim]",
        soft_wrap=True,
    )
    seen = 0
    t_end = time.monotonic() + args.timeout if args.timeout is not None else None
    last_rx = time.monotonic()
    try:
        while args.count is None or seen < args.count:
            if t_end is not None and time.monotonic() >= t_end:
                _err(f"{seen} frame(s) before the {args.timeout:g} s timeout")
                return EXIT_FAILED
            data = port.read(max(1, port.in_waiting))
            now = time.time()
            if data:
                last_rx = time.monotonic()
                frames = framer.feed(data)
            else:
                frames = framer.flush() if time.monotonic() - last_rx >= args.gap_ms / 1000.0 else []
            for fr in frames:
                seen += 1
                _print_frame(con, now, fr)
                if args.count is not None and seen >= args.count:
                    break
    finally:
        port.close()
    return EXIT_OK


def _print_frame(con: Any, ts: float, fr: dict[str, Any]) -> None:
    stamp = dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")
    raw: bytes = fr["raw"]
    if con is None:
        print(
            json.dumps(
                {"ts": stamp, "len": len(raw), "hex": raw.hex(" "), **{k: v for k, v in fr.items() if k != "raw"}},
                ensure_ascii=False,
                default=str,
            ),
            flush=True,
        )
        return
    text = f"{stamp}  {len(raw):3d}  {raw.hex(' ')}"
    if "decoded" in fr:
        text += f"  [green]{fr['decoded']}[/]"
    if "error" in fr:
        text += f"  [red]{fr['error']}[/]"
    con.print(text, soft_wrap=True)


# =============================================================================== redaction, diag bundle

_SECRET_WORDS = r"pass(?:word|wd)?|secret|token|private[_-]?key|api[_-]?key|credential"
_SECRET_KEY = re.compile(rf"(?i)({_SECRET_WORDS})")
_SECRET_LINE = re.compile(rf"(?im)^(\s*[\w.-]*(?:{_SECRET_WORDS})[\w.-]*\s*[:=]\s*)(?!\s*$)(?!<redacted>).+$")
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S)
_URL_CRED = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@")
REDACTED = "<redacted>"


def redact(obj: Any) -> Any:
    """A copy of parsed configuration with secret values replaced (keys named like a password,
    token, private key; credentials inside URLs; PEM private keys anywhere)."""
    if isinstance(obj, dict):
        return {
            k: (
                REDACTED
                if isinstance(k, str) and _SECRET_KEY.search(k) and v is not None and not isinstance(v, (dict, list))
                else redact(v)
            )
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


def redact_text(text: str) -> str:
    """Redact free text (logs, unparseable YAML): PEM private keys, URL credentials, and
    ``password: xxx`` / ``token=xxx`` style assignments."""
    text = _PEM.sub("-----BEGIN PRIVATE KEY-----" + REDACTED + "-----END PRIVATE KEY-----", text)
    text = _URL_CRED.sub(r"\1" + REDACTED + "@", text)
    return _SECRET_LINE.sub(r"\1" + REDACTED, text)


def redact_yaml(text: str) -> str:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return redact_text(text)
    return yaml.safe_dump(redact(data), sort_keys=False, allow_unicode=True)


def _versions() -> dict[str, Any]:
    import importlib.metadata
    import platform

    pkgs = {}
    for name in KEY_PACKAGES:
        try:
            pkgs[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pkgs[name] = None
    return {
        "python": sys.version,
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": pkgs,
    }


@_guard
def run_diag_bundle(args: argparse.Namespace) -> int:
    import io
    import shutil
    import subprocess
    import tarfile
    import time

    from portlane.edge.ops.control import ControlError, discover

    stamp = time.strftime("%Y%m%dT%H%M%S")
    out = Path(args.output or f"portlane-diag-{stamp}.tar.gz")
    prefix = f"portlane-diag-{stamp}"
    members: dict[str, bytes] = {}
    notes: list[str] = []

    members["versions.json"] = json.dumps(_versions(), indent=2).encode()
    if args.site:
        try:
            members["config/site.yaml"] = redact_yaml(Path(args.site).read_text(encoding="utf-8")).encode()
        except OSError as exc:
            raise UsageError(f"cannot read {args.site}: {exc}") from exc

    sockets = [args.socket] if args.socket else discover()
    if not sockets:
        notes.append("no daemon running: no live status, device counters or outbox stats")
    for path in sockets:
        name = Path(path).stem
        for op, fields in (
            ("status", {}),
            ("devices", {}),
            ("outbox", {"action": "show", "count": None}),
            ("config", {}),
        ):
            try:
                resp = _ask(path, op, args, **fields)
            except ControlError as exc:
                notes.append(f"{name} {op}: {exc}")
                continue
            if op == "config":
                if resp.get("ok") and isinstance(resp.get("yaml"), str):
                    members.setdefault("config/site.yaml", redact_yaml(resp["yaml"]).encode())
                    members[f"daemons/{name}/config.yaml"] = redact_yaml(resp["yaml"]).encode()
                continue
            dump = json.dumps(redact(resp), indent=2, ensure_ascii=False)
            members[f"daemons/{name}/{op}.json"] = dump.encode()

    if not args.no_journal and shutil.which("journalctl"):
        cmd = [
            "journalctl",
            "--no-pager",
            "-o",
            "short-iso-precise",
            "--since",
            args.since,
            "-u",
            "portlane*",
            "-u",
            "portlane-*",
        ]
        try:
            res = subprocess.run(cmd, capture_output=True, timeout=30, check=False)
            members["logs/journal.txt"] = redact_text(res.stdout.decode("utf-8", "replace")).encode()
            if res.returncode:
                why = res.stderr.decode(errors="replace").strip()
                notes.append(f"journalctl exit {res.returncode}: {why}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            notes.append(f"journalctl failed: {exc}")
    if args.log_dir:
        files = sorted(
            (p for p in Path(args.log_dir).glob("*") if p.is_file()), key=lambda p: p.stat().st_mtime, reverse=True
        )[:20]
        for p in files:
            data = p.read_bytes()[-5 * 1024 * 1024 :]  # the newest 5 MB of each
            members[f"logs/{p.name}"] = redact_text(data.decode("utf-8", "replace")).encode()
    members["MANIFEST.txt"] = (
        "\n".join(["portlane diagnostic bundle " + stamp, "", *sorted(members), "", "notes:", *notes]) + "\n"
    ).encode()

    tmp = out.with_name(out.name + ".part")
    with tarfile.open(tmp, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{prefix}/{name}")
            info.size = len(data)
            info.mtime = int(time.time())
            info.mode = 0o640
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, out)
    if args.json:
        _print_json({"ok": True, "output": str(out), "files": sorted(members), "notes": notes})
    else:
        _console().print(f"[green]wrote[/green] {out} ({out.stat().st_size} bytes, {len(members)} files)")
        for n in notes:
            _err(f"note: {n}")
    return EXIT_OK


# =============================================================================== config diff / apply


def _load_checked(file: str) -> str:
    from portlane.edge.config import load_site
    from portlane.edge.errors import ConfigError

    try:
        load_site(file)
    except ConfigError as exc:
        raise UsageError(f"invalid configuration, nothing sent:\n{exc}") from exc
    return Path(file).read_text(encoding="utf-8")


def _normalised(text: str, *, secrets: bool) -> list[str]:
    import yaml

    data = yaml.safe_load(text)
    if not secrets:
        data = redact(data)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).splitlines(keepends=True)


@_guard
def run_config_diff(args: argparse.Namespace) -> int:
    import difflib

    new_text = _load_checked(args.file)
    path = _route(args, "config", what="serve their configuration")
    resp = _ask(path, "config", args)
    if not resp.get("ok"):
        _err(f"daemon did not give its configuration: {resp.get('error')}")
        return EXIT_FAILED
    diff = list(
        difflib.unified_diff(
            _normalised(resp["yaml"], secrets=args.show_secrets),
            _normalised(new_text, secrets=args.show_secrets),
            fromfile=f"running ({Path(path).stem})",
            tofile=args.file,
        )
    )
    if args.json:
        _print_json({"ok": True, "same": not diff, "diff": "".join(diff)})
    elif not diff:
        _console().print(f"{args.file}: same as the running configuration")
    else:
        con = _console()
        for line in diff:
            style = (
                "green"
                if line.startswith("+")
                else "red"
                if line.startswith("-")
                else "cyan"
                if line.startswith("@@")
                else None
            )
            con.print(line.rstrip("\n"), style=style, markup=False, soft_wrap=True)
    return EXIT_OK if not diff else EXIT_FAILED


@_guard
def run_config_apply(args: argparse.Namespace) -> int:
    from portlane.edge.ops.control import DaemonUnreachableError

    operator, reason = _operator(args)
    text = _load_checked(args.file)
    if args.socket:
        targets = [args.socket]
    else:
        targets = []
        for path in _sockets(args):
            try:
                if "config_apply" in _ask(path, "ping", args).get("ops", ()):
                    targets.append(path)
            except DaemonUnreachableError as exc:
                raise Unreachable(f"{exc}; not applying to only some of the daemons") from exc
        if not targets:
            raise Unreachable("no running daemon accepts config_apply")
    _confirm(args, f"apply {args.file} to {', '.join(Path(t).stem for t in targets)}?")
    results = []
    rc = EXIT_OK
    for path in targets:
        resp = _ask(
            path,
            "config_apply",
            args,
            yaml=text,
            operator=operator,
            reason=reason,
            allow_key_change=bool(getattr(args, "allow_key_change", False)),
        )
        results.append({"socket": path, **resp})
        if not resp.get("ok"):
            rc = EXIT_FAILED
            break  # the rest keep the old configuration; this one rolled itself back
    if args.json:
        _print_json({"ok": rc == EXIT_OK, "results": results})
    else:
        con = _console()
        for r in results:
            name = Path(r["socket"]).stem
            if r.get("ok"):
                con.print(f"[green]applied[/green] to {name}")
            else:
                _err(f"{name} refused and kept its configuration: {r.get('error')}")
        skipped = [Path(t).stem for t in targets[len(results) :]]
        if skipped:
            _err(f"not sent to: {', '.join(skipped)} (they keep the old configuration)")
    return rc


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``python -m portlane.edge.cli.ops``: same as ``portlane``."""
    from . import main as cli_main

    return cli_main(argv)
