"""LED guidance board over a serial line: STX/ETX text frames with an XOR check.

Wire format (9600 bit/s 8N1; RS-485 or RS-232; one address per board)::

    02 | a1 a0 | cmd | payload | 03 | c1 c0

* ``02`` STX, ``03`` ETX; ``a1 a0`` the board address as two ASCII hex digits ("01");
* ``cmd`` one ASCII letter; ``payload`` depends on it (below);
* ``c1 c0``: block check, the XOR of every byte from ``a1`` up to and including ETX, as
  two ASCII hex digits (upper case).

This is the STX–address–command–text–ETX–BCC shape of the serial text protocols Chinese
LED controller cards use; the command letters and fields are project-defined.

Commands (host → board)::

    C                      clear the off-screen buffer
    L n c e text           write line n ('1'..'4') in colour c ('R' red, 'G' green,
                           'Y' amber) with text encoding e ('G' GB2312 byte codes,
                           'U' UTF-8); text is 0..64 bytes, no control characters
    D n                    show the buffer's first n lines ('0'..'4') — double buffering,
                           so a message never appears half-written

Answers (board → host): ``A cmd`` (accepted) or ``N cmd r`` (refused; r = '1' bad line,
'2' bad colour, '3' bad text/encoding, '4' unknown command, '5' text too long).

Chinese text is normal ("请停车 STOP", plate echo "粤Z·AB12港"). GB2312 is what most boards'
fonts are indexed by; Python's ``gb2312`` codec maps the middle dot (A1 A4) to U+30FB rather
than U+00B7, so we encode with the ``gbk`` codec, which produces the same bytes for every
GB2312 character and maps A1 A4 to U+00B7 as plates write it. Text a GB2312 font cannot show
goes out as UTF-8 ('U') — the board decides whether it can render it.

No byte of an encoded text can be STX or ETX (GB2312/GBK and UTF-8 multi-byte sequences
use bytes >= 0x40 resp. >= 0x80; control characters are refused), so ETX ends a frame.

Example (computed, see docs/devices/led-board.md): clearing board 1 is ``02 30 31 43 03 34 31``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .base import BoardColour, BoardDriver, BoardLine
from .bus import BusMember, Rs485Bus
from .config import DeviceConfig, SerialLink
from .errors import DeviceFaultError, DeviceUnavailableError
from .serial_link import FrameError

__all__ = [
    "MAX_LINES",
    "MAX_TEXT_BYTES",
    "BoardFrame",
    "SerialBoard",
    "decode_frame",
    "encode_clear",
    "encode_frame",
    "encode_line",
    "encode_show",
    "encode_text",
]

log = logging.getLogger(__name__)

STX, ETX = 0x02, 0x03
MAX_LINES = 4
MAX_TEXT_BYTES = 64
#: STX + address(2) + cmd + line/colour/encoding(3) + text + ETX + check(2)
MAX_FRAME = 1 + 2 + 1 + 3 + MAX_TEXT_BYTES + 1 + 2
COLOUR_CODES = {BoardColour.RED: "R", BoardColour.GREEN: "G", BoardColour.AMBER: "Y"}
_CODE_COLOURS = {v: k for k, v in COLOUR_CODES.items()}
ENCODINGS = {"G": "gbk", "U": "utf-8"}
NAK_REASONS = {"1": "bad line", "2": "bad colour", "3": "bad text", "4": "unknown command", "5": "text too long"}
_COMMANDS = set("CLDAN")
_HEX = set(b"0123456789ABCDEF")


@dataclass(frozen=True, slots=True)
class BoardFrame:
    address: int
    cmd: str
    line: int = 0  # L: line number; D: number of lines
    colour: BoardColour | None = None
    encoding: str = ""  # 'G' or 'U'
    text: str = ""
    ref: str = ""  # A/N: the command answered
    reason: str = ""  # N: reason digit


def _check(body: bytes) -> bytes:
    x = 0
    for b in body:
        x ^= b
    return f"{x:02X}".encode("ascii")


def encode_frame(address: int, cmd: str, payload: bytes = b"") -> bytes:
    if not 0 <= address <= 0xFF:
        raise ValueError(f"board address {address} out of range 0..255")
    body = f"{address:02X}{cmd}".encode("ascii") + payload + bytes([ETX])
    return bytes([STX]) + body + _check(body)


def encode_text(text: str) -> tuple[str, bytes]:
    """(encoding code, bytes): GB2312 byte codes when the text fits a GB2312 font, else UTF-8.
    Truncated on a character boundary to ``MAX_TEXT_BYTES``; control characters dropped."""
    clean = "".join(ch for ch in text if ch >= " " and ch != "\x7f")
    try:
        raw = clean.encode("gbk")
        code = "G"
        # gbk also covers characters outside GB2312 (rare hanzi): keep to GB2312's rows,
        # i.e. both bytes >= 0xA1, so that a GB2312-only font can show them.
        i = 0
        while i < len(raw):
            if raw[i] < 0x80:
                i += 1
                continue
            if raw[i] < 0xA1 or raw[i + 1] < 0xA1:
                raise UnicodeEncodeError("gb2312", clean, 0, 1, "outside GB2312")
            i += 2
    except UnicodeEncodeError:
        raw, code = clean.encode("utf-8"), "U"
    if len(raw) > MAX_TEXT_BYTES:
        cut = raw[:MAX_TEXT_BYTES]
        while cut:
            try:
                cut.decode(ENCODINGS[code])
                break
            except UnicodeDecodeError:
                cut = cut[:-1]
        log.debug("board text truncated to %d bytes: %r", len(cut), text)
        raw = cut
    return code, raw


def encode_line(address: int, line: int, colour: BoardColour, text: str) -> bytes:
    if not 1 <= line <= MAX_LINES:
        raise ValueError(f"line {line} out of range 1..{MAX_LINES}")
    code, raw = encode_text(text)
    return encode_frame(address, "L", f"{line}{COLOUR_CODES[colour]}{code}".encode("ascii") + raw)


def encode_clear(address: int) -> bytes:
    return encode_frame(address, "C")


def encode_show(address: int, n_lines: int) -> bytes:
    if not 0 <= n_lines <= MAX_LINES:
        raise ValueError(f"{n_lines} lines out of range 0..{MAX_LINES}")
    return encode_frame(address, "D", str(n_lines).encode("ascii"))


def decode_frame(buf: bytes) -> tuple[BoardFrame | None, int]:
    """Decode one frame at the head of ``buf``: ``(frame, consumed)``, ``(None, 0)`` = need
    more, ``(None, n)`` = n bytes of garbage; ``FrameError`` = bad frame."""
    if not buf:
        return None, 0
    if buf[0] != STX:
        i = buf.find(STX)
        return None, len(buf) if i < 0 else i
    end = buf.find(ETX, 1, MAX_FRAME)
    restart = buf.find(STX, 1, end if end > 0 else MAX_FRAME)
    if restart > 0:
        raise FrameError("frame cut short by a new STX", consumed=restart)
    if end < 0:
        if len(buf) >= MAX_FRAME:
            raise FrameError("no ETX within the longest frame")
        return None, 0
    total = end + 3
    if len(buf) < total:
        return None, 0
    body = bytes(buf[1 : end + 1])
    if len(body) < 4:
        raise FrameError("frame too short", consumed=total)
    if bytes(buf[end + 1 : total]) != _check(body):
        raise FrameError(f"check error: got {bytes(buf[end + 1 : total])!r}, expected {_check(body)!r}", consumed=total)
    if body[0] not in _HEX or body[1] not in _HEX:
        raise FrameError(f"bad address {body[:2]!r}", consumed=total)
    address = int(body[:2].decode("ascii"), 16)
    cmd = chr(body[2])
    payload = body[3:-1]
    if cmd not in _COMMANDS:
        raise FrameError(f"unknown command {cmd!r}", consumed=total)
    try:
        return _payload(address, cmd, payload), total
    except (ValueError, KeyError, IndexError) as exc:  # UnicodeDecodeError is a ValueError
        raise FrameError(f"bad {cmd} payload: {exc}", consumed=total) from exc


def _payload(address: int, cmd: str, p: bytes) -> BoardFrame:
    if cmd == "C":
        if p:
            raise ValueError("C takes no payload")
        return BoardFrame(address, cmd)
    if cmd == "D":
        if len(p) != 1 or not 0x30 <= p[0] <= 0x30 + MAX_LINES:
            raise ValueError(f"line count {p!r}")
        return BoardFrame(address, cmd, line=p[0] - 0x30)
    if cmd == "A":
        if len(p) != 1 or chr(p[0]) not in "CLD":
            raise ValueError(f"ack of {p!r}")
        return BoardFrame(address, cmd, ref=chr(p[0]))
    if cmd == "N":
        if len(p) != 2 or not 0x41 <= p[0] <= 0x5A or chr(p[1]) not in NAK_REASONS:
            raise ValueError(f"nak {p!r}")
        return BoardFrame(address, cmd, ref=chr(p[0]), reason=chr(p[1]))
    # L
    if len(p) < 3:
        raise ValueError("L needs line, colour and encoding")
    line = p[0] - 0x30
    if not 1 <= line <= MAX_LINES:
        raise ValueError(f"line {chr(p[0])!r}")
    colour = _CODE_COLOURS[chr(p[1])]
    enc = chr(p[2])
    raw = p[3:]
    if len(raw) > MAX_TEXT_BYTES:
        raise ValueError(f"text of {len(raw)} bytes > {MAX_TEXT_BYTES}")
    text = raw.decode(ENCODINGS[enc])
    if any(ch < " " for ch in text):
        raise ValueError("control character in text")
    return BoardFrame(address, cmd, line=line, colour=colour, encoding=enc, text=text)


class SerialBoard(BusMember, BoardDriver):
    """A guidance board at address ``config.unit``. ``show`` writes every line off-screen,
    then flips them on screen with one ``D`` command."""

    def __init__(self, device_id: str, config: DeviceConfig, **bus_opts: Any) -> None:
        if not isinstance(config.link, SerialLink):
            raise DeviceUnavailableError("the serial board backend needs a serial link", device=device_id)
        self.wire_timeout = config.timeout_s
        super().__init__(device_id, timeout=(2 + MAX_LINES) * config.timeout_s + 0.05)
        self.config = config
        self.link: SerialLink = config.link
        self.address = config.unit
        self._bus_opts = bus_opts
        self._bus: Rs485Bus | None = None

    async def _send(self, request: bytes, cmd: str) -> None:
        if self._bus is None:
            raise DeviceUnavailableError("not connected")
        addr = self.address

        def match(f: BoardFrame) -> bool:
            return f.address == addr and f.cmd in "AN" and f.ref == cmd

        reply = await self._bus.transact(addr, request, decode_frame, reply_timeout_s=self.wire_timeout, match=match)
        assert reply is not None
        if reply.cmd == "N":
            raise DeviceFaultError(f"board refused {cmd}: {NAK_REASONS[reply.reason]}", code=int(reply.reason))

    async def _show(self, lines: list[BoardLine]) -> None:
        if len(lines) > MAX_LINES:
            raise ValueError(f"a board shows at most {MAX_LINES} lines, got {len(lines)}")
        await self._send(encode_clear(self.address), "C")
        for i, line in enumerate(lines, start=1):
            await self._send(encode_line(self.address, i, line.colour, line.text), "L")
        await self._send(encode_show(self.address, len(lines)), "D")
