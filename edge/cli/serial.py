"""``serial sniff PORT``: watch a serial line, frames decoded with the drivers' own codecs::

    serial sniff PORT [--protocol gate-rs485|board|rfid|weighbridge|modbus-rtu]
                      [--baudrate B --bytesize 7|8 --parity N|E|O --stopbits 1|2]
                      [--count N] [--timeout S] [--force] [--json]

Without a decoder for the protocol, frames are split by inter-frame silence and shown in hex
(Modbus RTU: unit, function and CRC checked). A port a daemon holds is refused unless
``--force`` — two readers on one tty each get part of the bytes; a second adapter on the same
RS-485 pair is better. :func:`check_port_free` is shared with ``modbus --url``.

Exit codes: 0 ``--count`` frames seen (or ^C) · 1 fewer before ``--timeout`` · 2 usage, port
held by a daemon · 3 the port cannot be opened.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import enum
import importlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from portlane.edge.errors import EXIT_FAILED, EXIT_OK, UnreachableError, UsageError

from ._common import ask_quiet, console, err, guard, note

if TYPE_CHECKING:
    from rich.console import Console

#: Default inter-frame silence that ends a frame in ``serial sniff`` when the protocol has no
#: decoder: Modbus RTU's 3.5 character times are < 4 ms at 9600 bit/s, but USB serial
#: adapters deliver bytes in bursts every 1–16 ms (FTDI latency timer), so 20 ms it is.
DEFAULT_GAP_MS = 20.0
#: Protocol → driver module whose ``decode_frame(buf) -> (frame | None, consumed)`` splits the
#: stream (contract in drivers/gate_rs485.py); None: split by silence, decoded here.
SNIFF_PROTOCOLS: dict[str, str | None] = {
    "gate-rs485": "portlane.drivers.gate_rs485",
    "board": "portlane.drivers.board_serial",
    "rfid": "portlane.drivers.rfid_serial",
    "weighbridge": "portlane.drivers.weighbridge_serial",
    "modbus-rtu": None,
}

Frame = dict[str, Any]  # {"raw": bytes, "decoded": ... | "error": str}


def register(sub: Any) -> None:
    p = sub.add_parser("serial", help="watch a serial line")
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
    s.add_argument("--json", action="store_true", help="one JSON object per frame")
    s.add_argument("--socket", default=None, help="only consult this daemon about held ports")
    s.set_defaults(func=run_sniff)


# =============================================================================== ports held by daemons


def held_serial_ports(args: argparse.Namespace) -> dict[str, str]:
    """Serial ports in use: real path → who holds it (a running daemon, or another process).

    A daemon says which ports it holds open now (``serial_ports`` of its status); a port that
    is only configured — another lane's, whose daemon is stopped — is not held. Any other
    process with the tty open is found in ``/proc``, except the process at the other end of a
    pseudo-terminal (the device simulator that owns its master): that is the device, not a
    reader."""
    held: dict[str, str] = {}
    for path, resp in ask_quiet(args, "status"):
        for url in resp.get("serial_ports") or ():
            if isinstance(url, str):
                held[os.path.realpath(url)] = f"daemon at {path}"
    for pid, target in _ttys_open_by_others():
        held.setdefault(target, f"pid {pid}")
    return held


def _ttys_open_by_others() -> list[tuple[str, str]]:
    """(pid, /dev path) of every tty another process has open (our own user's, or all as root),
    leaving out each pty slave held by the process that also holds its master."""
    out: list[tuple[str, str]] = []
    proc = Path("/proc")
    for pid_dir in proc.iterdir() if proc.is_dir() else ():
        if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
            continue
        try:
            fds = list((pid_dir / "fd").iterdir())
        except OSError:
            continue
        ttys: list[str] = []
        masters: set[str] = set()  # /dev/pts/N whose master (/dev/ptmx, tty-index N) it holds
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target == "/dev/ptmx":
                index = _pty_index(pid_dir / "fdinfo" / fd.name)
                if index is not None:
                    masters.add(f"/dev/pts/{index}")
            elif target.startswith("/dev/"):
                ttys.append(target)
        out += [(pid_dir.name, t) for t in ttys if t not in masters]
    return out


def _pty_index(fdinfo: Path) -> str | None:
    """The pty number of a ``/dev/ptmx`` descriptor (``tty-index:`` in its fdinfo, Linux >= 4.16)."""
    try:
        text = fdinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "tty-index":
            return value.strip()
    return None


def check_port_free(args: argparse.Namespace, port: str) -> None:
    """Refuse (UsageError) a local tty somebody holds, unless ``args.force``: then warn."""
    if "://" in port:  # pyserial URL (socket://, rfc2217://): not a local tty
        return
    who = held_serial_ports(args).get(os.path.realpath(port))
    if who is None:
        return
    if args.force:
        err(f"warning: {port} is in use by {who}; --force given, reading anyway (frames may be split)")
        return
    raise UsageError(
        f"{port} is in use by {who}; stop it first or pass --force "
        "(to watch a live bus, prefer a second adapter on the same RS-485 pair)"
    )


# =============================================================================== framing


def decode_modbus_rtu(frame: bytes) -> str:
    """Unit, function (or exception) and CRC verdict of one Modbus RTU frame."""
    from portlane.drivers.crc import crc16_modbus

    if len(frame) < 4:
        return "short frame"
    crc = crc16_modbus(frame[:-2])
    ok = frame[-2] == crc & 0xFF and frame[-1] == crc >> 8
    fc = frame[1]
    kind = f"exception {frame[2]:02X} to fc {fc & 0x7F:02X}" if fc & 0x80 else f"fc {fc:02X}"
    return f"unit {frame[0]} {kind} crc {'ok' if ok else 'BAD'}"


class Framer:
    """Splits a byte stream into frames: with the protocol's ``decode_frame`` when the driver
    module has one, otherwise by inter-frame silence (:meth:`flush`)."""

    def __init__(self, protocol: str | None) -> None:
        self.protocol = protocol
        self.decode: Callable[[bytes], tuple[object | None, int]] | None = None
        self.buf = b""
        modname = SNIFF_PROTOCOLS.get(protocol or "")
        if modname:
            try:
                self.decode = getattr(importlib.import_module(modname), "decode_frame", None)
            except ImportError:
                self.decode = None

    def feed(self, data: bytes) -> list[Frame]:
        """Frames completed by ``data`` (decoder present) — each {raw, decoded|error}."""
        from portlane.drivers.serial_link import FrameError

        self.buf += data
        out: list[Frame] = []
        if self.decode is None:
            return out
        while self.buf:
            try:
                frame, n = self.decode(self.buf)
            except FrameError as exc:
                out.append({"raw": self.buf[: exc.consumed], "error": str(exc)})
                self.buf = self.buf[exc.consumed :]
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

    def flush(self) -> list[Frame]:
        """On silence: without a decoder the buffered bytes are one frame."""
        if self.decode is not None or not self.buf:
            return []
        raw, self.buf = self.buf, b""
        item: Frame = {"raw": raw}
        if self.protocol == "modbus-rtu":
            item["decoded"] = decode_modbus_rtu(raw)
        return [item]


def _describe(frame: object) -> object:
    if dataclasses.is_dataclass(frame) and not isinstance(frame, type):
        out: dict[str, object] = {}
        for f in dataclasses.fields(frame):
            v = getattr(frame, f.name)
            out[f.name] = v.name if isinstance(v, enum.Enum) else v.hex(" ") if isinstance(v, bytes) else v
        return out
    return str(frame)


# =============================================================================== the command


@guard
def run_sniff(args: argparse.Namespace) -> int:
    import serial

    if args.count is not None and args.count <= 0:
        raise UsageError("--count must be positive")
    check_port_free(args, args.port)
    framer = Framer(args.protocol)
    if args.protocol and SNIFF_PROTOCOLS.get(args.protocol) and framer.decode is None:
        err(f"no decoder for {args.protocol} in this install yet; showing raw frames split by silence")
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
        raise UnreachableError(f"cannot open {args.port}: {exc}") from exc
    con = None if args.json else console()
    # The port is open: from here on no byte is missed (tests and scripts wait for this line).
    note(
        f"sniffing {args.port} {args.baudrate} {args.bytesize}{args.parity}{args.stopbits}"
        f" ({args.protocol or 'raw'}); ^C to stop"
    )
    seen = 0
    t_end = time.monotonic() + args.timeout if args.timeout is not None else None
    last_rx = time.monotonic()
    try:
        while args.count is None or seen < args.count:
            if t_end is not None and time.monotonic() >= t_end:
                err(f"{seen} frame(s) before the {args.timeout:g} s timeout")
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


def _print_frame(con: Console | None, ts: float, fr: Frame) -> None:
    stamp = dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")
    raw: bytes = fr["raw"]
    if con is None:
        rest = {k: v for k, v in fr.items() if k != "raw"}
        line = {"ts": stamp, "len": len(raw), "hex": raw.hex(" "), **rest}
        print(json.dumps(line, ensure_ascii=False, default=str), flush=True)
        return
    text = f"{stamp}  {len(raw):3d}  {raw.hex(' ')}"
    if "decoded" in fr:
        text += f"  [green]{fr['decoded']}[/]"
    if "error" in fr:
        text += f"  [red]{fr['error']}[/]"
    con.print(text, soft_wrap=True)
