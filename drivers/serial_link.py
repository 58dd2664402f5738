"""Serial transport: the one place where pyserial meets asyncio, plus codec helpers.

``SerialPort`` opens a port by stable path (``/dev/serial/by-id/…``, a pty path or
symlink, or any pyserial URL) with pyserial-asyncio-fast, which bridges the blocking
library once: the open runs in the default executor, reads and writes go through
``add_reader``/``add_writer`` on the file descriptor. Every pyserial / OS exception is
translated here, and only here, into the driver exception tree (``raise … from exc``):

    ENOENT, EIO, ENXIO, ENODEV, "device disconnected" -> DeviceUnavailableError
    bad parameters (ValueError), termios.error        -> DeviceUnavailableError (the port cannot be used
                                                         with these line settings)

An adapter that vanishes while open (USB unplugged) closes the transport; the next read
or write raises ``DeviceUnavailableError`` and ``open()`` again reopens the path once it is
back. Bytes are never interpreted here.

Codec support shared by the serial protocols: ``FrameError`` (a ``DeviceProtocolError``
saying how many bytes to skip to resynchronise) and ``drain``, which runs a sans-I/O
decoder over a buffer, counting garbage and bad frames instead of raising. (The CRC lives
in ``drivers.crc``.)
"""

from __future__ import annotations

import asyncio
import errno
import logging
import termios
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import serial
import serial_asyncio_fast

from .config import SerialLink
from .errors import DeviceProtocolError, DeviceUnavailableError

__all__ = [
    "ByteStream",
    "DecodeStats",
    "Decoder",
    "FrameError",
    "SerialPort",
    "char_time_s",
    "drain",
    "open_ports",
    "read_stream",
]

log = logging.getLogger(__name__)

F = TypeVar("F")

#: Opening a port: pyserial's open plus termios set-up run in an executor thread. A local
#: UART or pty takes < 10 ms; a USB adapter that is still enumerating can take a second.
OPEN_TIMEOUT_S = 2.0
#: Closing flushes the transmit buffer: at 9600 bit/s a full 4 KiB buffer drains in ~4.3 s,
#: but our frames are < 300 bytes (< 0.35 s); past this the port is abandoned.
CLOSE_TIMEOUT_S = 1.0

_GONE_ERRNOS = {errno.ENOENT, errno.EIO, errno.ENXIO, errno.ENODEV, errno.EBADF, errno.EACCES, errno.EBUSY}


def char_time_s(link: SerialLink) -> float:
    """Time on the wire of one character: start bit + data + parity + stop bits."""
    bits = 1 + link.bytesize + (0 if link.parity == "N" else 1) + link.stopbits
    return bits / link.baudrate


# --------------------------------------------------------------------------- codec support


class FrameError(DeviceProtocolError):
    """A frame that cannot be accepted. ``consumed`` bytes must be skipped to resync."""

    def __init__(self, message: str, *, consumed: int = 1, device: str = "") -> None:
        super().__init__(message, device=device)
        self.consumed = max(1, consumed)


@dataclass
class DecodeStats:
    """What a stream decoder has seen: good frames, skipped garbage bytes, bad frames."""

    frames: int = 0
    garbage_bytes: int = 0
    bad_frames: int = 0
    last_error: str | None = None
    errors: dict[str, int] = field(default_factory=dict)

    def count_error(self, exc: FrameError) -> None:
        self.bad_frames += 1
        self.last_error = str(exc)
        key = type(exc).__name__ if type(exc) is not FrameError else str(exc).split(":")[0][:40]
        self.errors[key] = self.errors.get(key, 0) + 1


Decoder = Callable[[bytes], tuple[F | None, int]]


def drain(buf: bytearray, decode: Decoder[F], stats: DecodeStats) -> list[F]:
    """Decode every complete frame at the head of ``buf`` (consumed bytes are removed).

    Garbage before a start byte and frames that fail validation are counted in ``stats``
    and skipped; an incomplete frame stays in ``buf`` for the next call. Never raises.
    """
    out: list[F] = []
    while buf:
        try:
            frame, consumed = decode(bytes(buf))
        except FrameError as exc:
            stats.count_error(exc)
            del buf[: exc.consumed]
            continue
        if frame is None:
            if consumed:
                stats.garbage_bytes += consumed
                del buf[:consumed]
                continue
            break
        stats.frames += 1
        del buf[:consumed]
        out.append(frame)
    return out


# --------------------------------------------------------------------------- transport


class _Protocol(asyncio.Protocol, Generic[F]):
    def __init__(self, port: SerialPort) -> None:
        self.port = port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        self.port._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.port._lost(exc, self)


#: Every ``SerialPort`` of this process (held weakly), for :func:`open_ports`.
_PORTS: weakref.WeakSet[SerialPort] = weakref.WeakSet()


def open_ports() -> list[str]:
    """The serial ports this process holds open now, by the path or URL they were opened with.

    A daemon is one process: this is what it reports on its control socket, so that
    ``portlane serial sniff`` refuses exactly the ports a running daemon holds (a port that is
    configured but gone, or whose device is not in use, is not held)."""
    return sorted({p.link.url for p in list(_PORTS) if p.is_open})


class SerialPort:
    """One open serial port; bytes in, bytes out, no interpretation.

    Received bytes accumulate in ``rx`` (a bytearray the owner consumes); ``wait_data``
    wakes when new bytes arrive or the port is lost.
    """

    def __init__(self, link: SerialLink, *, name: str = "") -> None:
        _PORTS.add(self)
        self.link = link
        self.name = name or link.url
        self.rx = bytearray()
        self.counters = {"opens": 0, "lost": 0, "rx_bytes": 0, "tx_bytes": 0}
        self._transport: asyncio.Transport | None = None
        self._data = asyncio.Event()
        self._lost_reason: str | None = None
        self._gone = asyncio.Event()  # set when the transport has really closed
        self._protocol: asyncio.Protocol | None = None  # the current transport's protocol
        self.last_rx = 0.0  # loop time of the last received byte (for inter-frame gaps)

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    async def open(self) -> None:
        if self.is_open:
            return
        loop = asyncio.get_running_loop()
        self.rx.clear()
        self._lost_reason = None
        self._gone = asyncio.Event()
        kw: dict[str, Any] = {
            "baudrate": self.link.baudrate,
            "bytesize": self.link.bytesize,
            "parity": self.link.parity,
            "stopbits": self.link.stopbits,
        }
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_S):
                transport, protocol = await serial_asyncio_fast.create_serial_connection(
                    loop, lambda: _Protocol(self), self.link.url, **kw
                )
        except TimeoutError as exc:
            raise DeviceUnavailableError(f"opening {self.link.url} took longer than {OPEN_TIMEOUT_S} s") from exc
        except (serial.SerialException, OSError, ValueError, termios.error) as exc:
            raise self._translate(exc, "cannot open") from exc
        self._transport = transport
        self._protocol = protocol
        self.counters["opens"] += 1
        log.debug("opened %s", self.link.url)

    def _translate(self, exc: BaseException, what: str) -> DeviceUnavailableError:
        err = getattr(exc, "errno", None)
        if isinstance(exc, termios.error) and exc.args:
            err = exc.args[0]
        reason = errno.errorcode.get(err, str(err)) if err in _GONE_ERRNOS else (str(exc) or type(exc).__name__)
        return DeviceUnavailableError(f"{what} {self.link.url}: {reason}")

    async def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is None:
            return
        transport.close()
        # The transport flushes and closes the port in an executor, then calls connection_lost.
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._gone.wait()
        except TimeoutError:
            log.debug("close of %s did not finish in %s s", self.link.url, CLOSE_TIMEOUT_S)

    def _received(self, data: bytes) -> None:
        self.rx += data
        self.counters["rx_bytes"] += len(data)
        self.last_rx = asyncio.get_running_loop().time()
        self._data.set()

    def _lost(self, exc: Exception | None, protocol: asyncio.Protocol | None = None) -> None:
        if protocol is not None and protocol is not self._protocol:
            # A transport the port already replaced (an adapter pulled and put back while the
            # old one was still closing): its end is not the new one's.
            return
        if self._transport is not None:
            self.counters["lost"] += 1
            self._lost_reason = str(exc) if exc else "closed"
            log.debug("lost %s: %s", self.link.url, self._lost_reason)
        self._transport = None
        self._data.set()
        self._gone.set()

    def check(self) -> None:
        """Raise ``DeviceUnavailableError`` if the port is not usable."""
        if not self.is_open:
            reason = self._lost_reason or "not open"
            raise DeviceUnavailableError(f"port {self.link.url} is gone: {reason}")

    def write(self, data: bytes) -> None:
        self.check()
        assert self._transport is not None
        try:
            self._transport.write(data)
        except (serial.SerialException, OSError) as exc:
            raise self._translate(exc, "write failed on") from exc
        self.counters["tx_bytes"] += len(data)

    def discard_input(self) -> int:
        n = len(self.rx)
        self.rx.clear()
        return n

    async def wait_data(self) -> None:
        """Wait until *new* bytes arrive (or the port is lost, which then raises). No deadline of its
        own: every caller wraps it in the deadline of its transaction or stream."""
        self.check()
        self._data.clear()
        await self._data.wait()
        self.check()


# --------------------------------------------------------------------------- push streams


class ByteStream(Protocol):
    """What ``read_stream`` needs of a transport: a receive buffer it consumes and a wait for
    new bytes (``SerialPort``; ``tcp_link.TcpStream`` for devices that push over TCP)."""

    rx: bytearray

    async def wait_data(self) -> None: ...


async def read_stream(
    port: ByteStream,
    decode: Decoder[F],
    stats: DecodeStats,
    on_frame: Callable[[F], None],
    *,
    frame_gap_s: float,
    silence_s: float,
    on_silence: Callable[[], None] | None = None,
) -> None:
    """Decode frames a device pushes, forever (until cancelled or the port is lost).

    ``frame_gap_s``: a started frame whose rest does not arrive within this time is
    abandoned (its start byte counted as garbage, the decoder resyncs after it) — without
    it a sync byte in line noise followed by a plausible length could hold back the frames
    behind it. ``silence_s``: the longest quiet spell the device's own output rate allows;
    each one is reported through ``on_silence``. Raises ``DeviceUnavailableError`` when the
    port goes away.
    """
    loop = asyncio.get_running_loop()
    while True:
        for frame in drain(port.rx, decode, stats):
            on_frame(frame)
        deadline = loop.time() + (frame_gap_s if port.rx else silence_s)
        try:
            async with asyncio.timeout_at(deadline):
                await port.wait_data()
        except TimeoutError:
            if port.rx:
                stats.bad_frames += 1
                stats.last_error = "truncated frame (inter-byte timeout)"
                stats.errors["truncated"] = stats.errors.get("truncated", 0) + 1
                del port.rx[:1]
            elif on_silence is not None:
                on_silence()
