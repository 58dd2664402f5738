"""Simulated LED guidance board on a serial line: STX/ETX text frames, shown in ``LaneWorld.board``.

Protocol: ``firmware_config/devices/board_serial.yaml`` / ``docs/devices/led-board.md``
(``02 addr(2 hex) cmd payload 03 bcc(2 hex)``). The simulator has its own parser; it keeps an
off-screen buffer of lines and copies it to ``world.set_board([(text, colour), ...])`` on a
``D`` command, like a double-buffered controller card. The board's font is GB2312; frames
with encoding 'U' are decoded as UTF-8 (a font with wider coverage, configurable).

The board is a slave on a ``SerialLine`` (a fresh pty, or an RS-485 line it shares with
other devices); its answer goes out after the card's render time (``render_s``).
"""

from __future__ import annotations

from typing import Any

from .faults import FaultInjector
from .line import SerialLine
from .pty_port import SerialSimHandle
from .world import LaneWorld

__all__ = ["BoardSim", "start_board"]

#: A controller card re-renders its bitmap before it answers: ~10 ms for a 2-line board.
RENDER_S = 0.01
_COLOURS = {"R": "red", "G": "green", "Y": "amber"}
_TEXT_CODECS = {"G": "gbk", "U": "utf-8"}  # GB2312 byte codes (gbk maps A1A4 to U+00B7)
_LONGEST = 80


def _bcc(body: bytes) -> bytes:
    v = 0
    for b in body:
        v ^= b
    return b"%02X" % v


class BoardSim:
    """The board's controller card (a ``LineSlave``)."""

    def __init__(self, world: LaneWorld, line: SerialLine, *, address: int = 1, lines: int = 4) -> None:
        self.world = world
        self.line = line
        self.faults = line.faults
        self.address = address
        self.max_lines = lines
        self.buffer: dict[int, tuple[str, str]] = {}
        self._rx = bytearray()
        self.counters = {"frames": 0, "bad_frames": 0, "shown": 0}

    def reset(self) -> None:
        self._rx.clear()

    def feed(self, data: bytes) -> None:
        rx = self._rx
        rx += data
        while True:
            s = rx.find(b"\x02")
            if s < 0:
                rx.clear()
                return
            del rx[:s]
            e = rx.find(b"\x03")
            if e < 0:
                if len(rx) > _LONGEST:
                    del rx[:1]
                    self.counters["bad_frames"] += 1
                    continue
                return
            if len(rx) < e + 3:
                return
            body, check = bytes(rx[1 : e + 1]), bytes(rx[e + 1 : e + 3])
            if b"\x02" in body or len(body) < 4 or _bcc(body) != check:
                self.counters["bad_frames"] += 1
                del rx[:1]
                continue
            del rx[: e + 3]
            try:
                addr = int(body[:2], 16)
            except ValueError:
                self.counters["bad_frames"] += 1
                continue
            self.counters["frames"] += 1
            self._heard(addr, body[2:-1])

    def _answer(self, cmd: bytes, reason: str | None) -> bytes:
        body = b"%02X" % self.address + (b"A" + cmd if reason is None else b"N" + cmd + reason.encode()) + b"\x03"
        return b"\x02" + body + _bcc(body)

    def _execute(self, msg: bytes) -> tuple[bytes, str | None]:
        cmd, arg = msg[:1], msg[1:]
        if cmd == b"C":
            self.buffer.clear()
        elif cmd == b"L":
            if len(arg) < 3 or not b"1" <= arg[:1] <= str(self.max_lines).encode():
                return cmd, "1"
            colour = _COLOURS.get(arg[1:2].decode("latin-1"))
            if colour is None:
                return cmd, "2"
            codec = _TEXT_CODECS.get(arg[2:3].decode("latin-1"))
            if len(arg) - 3 > 64:
                return cmd, "5"
            try:
                text = arg[3:].decode(codec) if codec else None
            except UnicodeDecodeError:
                text = None
            if text is None:
                return cmd, "3"
            self.buffer[int(arg[:1])] = (text, colour)
        elif cmd == b"D":
            if len(arg) != 1 or not b"0" <= arg <= str(self.max_lines).encode():
                return cmd, "1"
            n = int(arg)
            self.world.set_board([self.buffer.get(i, ("", "green")) for i in range(1, n + 1)])
            self.counters["shown"] += 1
        else:
            return (cmd or b"?"), "4"
        return cmd, None

    def _heard(self, addr: int, msg: bytes) -> None:
        if addr != self.address:
            return

        def execute() -> bytes | None:
            cmd, reason = self._execute(msg)
            if cmd not in (b"C", b"L", b"D"):
                return None  # a board cannot name an unknown command in its answer; stay silent
            return self._answer(cmd, reason)

        self.line.submit(addr, execute)


async def start_board(
    world: LaneWorld,
    *,
    faults: FaultInjector | None = None,
    address: int = 1,
    baudrate: int = 9600,
    lines: int = 4,
    name: str = "ttyBOARD",
    directory: str | None = None,
    render_s: float = RENDER_S,
    line: SerialLine | None = None,
    **_opts: Any,
) -> SerialSimHandle:
    """Serve an LED board at ``address`` on a fresh pty (or on ``line``, shared with other
    devices); what it shows goes to ``world.board``."""
    if line is None:
        faults = faults if faults is not None else FaultInjector()
        line = SerialLine(faults, baudrate=baudrate, turnaround_s=render_s, name=name, directory=directory)
        await line.start()
    elif faults is not None and faults is not line.faults:
        raise ValueError("a simulator on a shared line uses the line's fault injector")
    sim = BoardSim(world, line, address=address, lines=lines)
    line.attach(sim)
    return SerialSimHandle(line.port, line.faults, baudrate=line.baudrate, sim=sim, line=line, slaves=(sim,))
