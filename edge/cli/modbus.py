"""``modbus read|write``: a Modbus device directly, beside (not through) the daemons::

    modbus read  (--host H [--port P] | --url TTY) --unit U --table coil|di|hr|ir --address A [--count N] [--json]
    modbus write (--host H [--port P] | --url TTY) --unit U --table coil|hr --address A VALUE...
                 --operator NAME --reason TEXT [--yes] [--json]

A write bypasses the daemon and its audit log: it needs an operator and a reason all the same,
asks for confirmation, and leaves a warning in the journal. A serial port a daemon holds is
refused unless ``--force`` (see ``serial.check_port_free``).

Exit codes: 0 ok · 1 the device answered with an exception or not at all · 2 usage ·
3 cannot connect.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from portlane.edge.errors import EXIT_FAILED, EXIT_OK, UnreachableError, UsageError

from ._common import act_opts, confirm, console, err, guard, operator

if TYPE_CHECKING:
    from pymodbus.client import ModbusSerialClient, ModbusTcpClient
    from pymodbus.pdu import ModbusPDU

log = logging.getLogger(__name__)

TABLES = ("coil", "di", "hr", "ir")


def register(sub: Any) -> None:
    p = sub.add_parser("modbus", help="read or write a Modbus device directly")
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
        m.add_argument("--table", required=True, choices=TABLES)
        m.add_argument("--address", type=int, required=True, help="0-based address")
        m.add_argument("--timeout", type=float, default=1.0, help="seconds per request")
        m.add_argument("--force", action="store_true", help="use a serial port a daemon holds")
        m.add_argument("--socket", default=None, help=argparse.SUPPRESS)
        m.add_argument("--json", action="store_true", help="machine-readable output")
        if action == "read":
            m.add_argument("--count", type=int, default=1)
            m.set_defaults(func=run_read)
        else:
            m.add_argument("values", nargs="+", type=int, help="values (0/1 for coils)")
            act_opts(m, daemon=False)
            m.set_defaults(func=run_write)


def _client(args: argparse.Namespace) -> ModbusSerialClient | ModbusTcpClient:
    from pymodbus.client import ModbusSerialClient, ModbusTcpClient

    if args.url:
        from .serial import check_port_free

        check_port_free(args, args.url)
        return ModbusSerialClient(args.url, baudrate=args.baudrate, parity=args.parity, timeout=args.timeout, retries=0)
    return ModbusTcpClient(args.host, port=args.port, timeout=args.timeout, retries=0)


def _target(args: argparse.Namespace) -> str:
    return str(args.url) if args.url else f"{args.host}:{args.port}"


def _daemons_running_note(args: argparse.Namespace) -> None:
    from portlane.edge.ops.control import discover

    running = discover()
    if running and not args.json:
        err(
            f"note: {len(running)} daemon(s) running ({', '.join(Path(p).stem for p in running)}); "
            "this command talks to the device directly, alongside them"
        )


def _transact(args: argparse.Namespace, request: str) -> ModbusPDU | None:
    """Connect, run ``request`` (``read`` or ``write``), close. None: the error is reported."""
    client = _client(args)
    try:
        if not client.connect():
            raise UnreachableError(f"cannot connect to Modbus device at {_target(args)}")
        try:
            if request == "write" and args.table == "coil":
                rr = client.write_coils(args.address, [bool(v) for v in args.values], device_id=args.unit)
            elif request == "write":
                rr = client.write_registers(args.address, list(args.values), device_id=args.unit)
            else:
                read = {
                    "coil": client.read_coils,
                    "di": client.read_discrete_inputs,
                    "hr": client.read_holding_registers,
                    "ir": client.read_input_registers,
                }[args.table]
                rr = read(args.address, count=args.count, device_id=args.unit)
        except Exception as exc:  # pymodbus raises ModbusException subclasses and OSErrors
            err(f"{_target(args)} unit {args.unit}: {type(exc).__name__}: {exc}")
            return None
    finally:
        client.close()  # type: ignore[no-untyped-call]  # pymodbus leaves close() unannotated
    if rr.isError():
        from portlane.drivers.errors import MODBUS_EXCEPTION_NAMES

        code = int(getattr(rr, "exception_code", 0))
        name = MODBUS_EXCEPTION_NAMES.get(code, "unknown")
        hint = ""
        if code == 2 and request == "read":  # the usual one: asking past the device's map
            last = args.address + args.count - 1
            hint = f": the device has no {args.table} {args.address}..{last}; see its register map"
        err(f"{_target(args)} unit {args.unit}: the device answered exception {code:02X} ({name}){hint}")
        return None
    return rr


@guard
def run_read(args: argparse.Namespace) -> int:
    if not 1 <= args.count <= 2000:
        raise UsageError("--count must be 1..2000")
    _daemons_running_note(args)
    rr = _transact(args, "read")
    if rr is None:
        return EXIT_FAILED
    values = [int(b) for b in rr.bits[: args.count]] if args.table in ("coil", "di") else list(rr.registers)
    if args.json:
        out = {"target": _target(args), "unit": args.unit, "table": args.table, "address": args.address}
        print(json.dumps({**out, "values": values}))
        return EXIT_OK
    from rich.table import Table

    t = Table("address", "value", "hex", title=f"{_target(args)} unit {args.unit} {args.table}")
    for i, v in enumerate(values):
        t.add_row(str(args.address + i), str(v), f"0x{v:04X}" if args.table in ("hr", "ir") else "")
    console().print(t)
    return EXIT_OK


@guard
def run_write(args: argparse.Namespace) -> int:
    if args.table not in ("coil", "hr"):
        raise UsageError("only coils (coil) and holding registers (hr) can be written")
    if args.table == "coil" and any(v not in (0, 1) for v in args.values):
        raise UsageError("coil values are 0 or 1")
    if args.table == "hr" and any(not 0 <= v <= 0xFFFF for v in args.values):
        raise UsageError("register values are 0..65535")
    who, why = operator(args)
    _daemons_running_note(args)
    confirm(
        args,
        f"write {args.values} to {args.table} {args.address} of unit {args.unit} at "
        f"{_target(args)} (directly, bypassing the daemon)?",
    )
    if _transact(args, "write") is None:
        return EXIT_FAILED
    # Direct writes bypass the daemon and its audit log; at least leave a trace in the journal.
    where = {"target": _target(args), "unit": args.unit, "table": args.table, "address": args.address}
    log.warning("direct modbus write", extra={"operator": who, "reason": why, **where})
    if args.json:
        print(json.dumps({"ok": True, **where, "values": args.values}))
    else:
        console().print(f"[green]written[/green]: {args.table} {args.address}.. = {args.values}")
    return EXIT_OK
