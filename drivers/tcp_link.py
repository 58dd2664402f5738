"""TCP stream transport for devices that push a byte stream over a socket (not Modbus).

The counterpart of ``serial_link.SerialPort`` for a device reached through Ethernet — a
radiation portal's TCP output, or a serial device behind a serial-to-Ethernet converter:
bytes in ``rx``, ``wait_data`` for new ones, ``write``; nothing is interpreted here. Every
socket error is translated here, and only here, into the driver exception tree::

    connection refused / reset / host unreachable, EOF     -> DeviceUnavailableError
    no connection within CONNECT_TIMEOUT_S                  -> DeviceUnavailableError

``read_stream`` (``serial_link``) decodes what arrives with a sans-I/O decoder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .config import TcpLink
from .errors import DeviceUnavailableError

__all__ = ["CONNECT_TIMEOUT_S", "TcpStream"]

log = logging.getLogger(__name__)

#: A TCP handshake on a lane LAN takes < 10 ms; a switch port still negotiating, up to ~1 s.
CONNECT_TIMEOUT_S = 2.0
#: Largest read per wake-up; a portal sends ~5 lines of < 64 bytes a second.
READ_CHUNK = 4096


class TcpStream:
    """One TCP connection to ``link``; bytes in, bytes out, no interpretation."""

    def __init__(self, link: TcpLink, *, name: str = "") -> None:
        self.link = link
        self.name = name or f"{link.host}:{link.port}"
        self.rx = bytearray()
        self.counters = {"opens": 0, "lost": 0, "rx_bytes": 0, "tx_bytes": 0}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lost_reason: str | None = None

    @property
    def where(self) -> str:
        return f"{self.link.host}:{self.link.port}"

    @property
    def is_open(self) -> bool:
        return self._writer is not None and self._lost_reason is None

    async def open(self) -> None:
        if self.is_open:
            return
        await self.close()
        self.rx.clear()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                self._reader, self._writer = await asyncio.open_connection(self.link.host, self.link.port)
        except TimeoutError as exc:
            raise DeviceUnavailableError(f"connect to {self.where} took longer than {CONNECT_TIMEOUT_S} s") from exc
        except OSError as exc:
            raise DeviceUnavailableError(f"cannot connect to {self.where}: {exc.strerror or exc}") from exc
        self._lost_reason = None
        self.counters["opens"] += 1

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def check(self) -> None:
        if self._writer is None:
            raise DeviceUnavailableError(f"{self.where} is not connected")
        if self._lost_reason is not None:
            raise DeviceUnavailableError(f"connection to {self.where} lost: {self._lost_reason}")

    def write(self, data: bytes) -> None:
        self.check()
        assert self._writer is not None
        self._writer.write(data)
        self.counters["tx_bytes"] += len(data)

    async def wait_data(self) -> None:
        """Wait until new bytes arrive; raises ``DeviceUnavailableError`` when the peer closed
        or the connection broke. No deadline of its own (the caller's stream has one)."""
        self.check()
        assert self._reader is not None
        try:
            data = await self._reader.read(READ_CHUNK)
        except OSError as exc:
            data, self._lost_reason = b"", exc.strerror or str(exc)
        if not data:
            self._lost_reason = self._lost_reason or "closed by the device"
            self.counters["lost"] += 1
            log.debug("lost %s: %s", self.where, self._lost_reason)
            self.check()
        self.rx += data
        self.counters["rx_bytes"] += len(data)
