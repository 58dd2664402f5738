"""RFID reader for the electronic vehicle card (电子车卡): tag reads pushed as binary frames.

Wire format (115200 bit/s 8N1 by default)::

    A0 | len | addr | cmd | data[len-3] | check

* ``A0`` head; ``len`` counts the bytes after itself (addr + cmd + data + check), 3..64;
* ``check`` = two's complement of the 8-bit sum of every byte from the head to the end
  of ``data``, so that the sum of the whole frame is 0 mod 256.

This is the frame of the widely cloned UHF reader modules built around the Impinj R2000
chip (head, length, address, command, data, two's-complement checksum), whose real-time
inventory command ``89`` reports each tag as below. That readers *push* those reports
continuously (auto-read mode) and the heartbeat are project-defined settings of that family;
check a real reader's manual before trusting the command numbers.

Frames (reader → host)::

    89 TAG        freq_ant | pc_hi pc_lo | epc[2*words] | rssi
                  freq_ant: bits 7..2 frequency channel, bits 1..0 antenna (0..3 = ant 1..4)
                  pc: EPC Gen2 protocol-control word, bits 15..11 = EPC length in 16-bit words
                  rssi: R2000 scale, dBm = rssi - 129 (valid 0x1F..0x7F: -98..-2 dBm)
    7F HEARTBEAT  seq                       once a second while idle (optional)

Any other command with a valid checksum is a reader answer we did not ask for: counted and
ignored. The tag id reported to the lane is the EPC as upper-case hex.

Example (computed, see docs/devices/rfid.md): tag E2801160600002054C8B1234 on antenna 1 at
-60 dBm from reader 1 is ``A0 13 01 89 00 30 00 E2 80 11 60 60 00 02 05 4C 8B 12 34 45 F7``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from .base import RfidDriver, TagRead
from .config import DeviceConfig, SerialLink
from .errors import DeviceError, DeviceUnavailableError
from .serial_link import DecodeStats, FrameError, SerialPort, read_stream

__all__ = [
    "HEAD",
    "RfidFrame",
    "SerialRfid",
    "decode_frame",
    "encode_frame",
    "encode_heartbeat",
    "encode_tag",
]

HEAD = 0xA0
CMD_TAG = 0x89
CMD_HEARTBEAT = 0x7F
MIN_LEN, MAX_LEN = 3, 64
RSSI_MIN, RSSI_MAX = 0x1F, 0x7F
RSSI_OFFSET = 129

#: Inside one frame bytes follow each other back to back; at 9600 bit/s (the slowest
#: setting these readers offer) 20 ms is ~19 character times of silence — the frame is lost.
FRAME_GAP_S = 0.02
#: Heartbeats come once a second; three missing mean the reader is off or unplugged.
SILENCE_S = 3.0
#: Tag reads waiting for the lane; readers report a tag several times per second, so a lane
#: that is not listening must not make the queue grow without bound.
QUEUE_MAX = 64


@dataclass(frozen=True, slots=True)
class RfidFrame:
    address: int
    cmd: int
    data: bytes = b""
    tag_id: str = ""
    antenna: int = 0
    rssi_dbm: int = 0


def _check(body: bytes) -> int:
    return (-sum(body)) & 0xFF


def encode_frame(address: int, cmd: int, data: bytes = b"") -> bytes:
    n = len(data) + 3
    if n > MAX_LEN:
        raise ValueError(f"frame of {n} bytes after len > {MAX_LEN}")
    body = bytes([HEAD, n, address & 0xFF, cmd & 0xFF]) + data
    return body + bytes([_check(body)])


def encode_tag(address: int, epc_hex: str, *, antenna: int = 1, rssi_dbm: int = -60, channel: int = 0) -> bytes:
    epc = bytes.fromhex(epc_hex)
    if len(epc) % 2 or not 2 <= len(epc) <= 2 * 26:
        raise ValueError(f"EPC must be 1..26 16-bit words, got {len(epc)} bytes")
    if not 1 <= antenna <= 4:
        raise ValueError(f"antenna {antenna} out of range 1..4")
    rssi = rssi_dbm + RSSI_OFFSET
    if not RSSI_MIN <= rssi <= RSSI_MAX:
        raise ValueError(f"RSSI {rssi_dbm} dBm out of range")
    pc = (len(epc) // 2) << 11
    data = bytes([(channel & 0x3F) << 2 | (antenna - 1)]) + pc.to_bytes(2, "big") + epc + bytes([rssi])
    return encode_frame(address, CMD_TAG, data)


def encode_heartbeat(address: int, seq: int) -> bytes:
    return encode_frame(address, CMD_HEARTBEAT, bytes([seq & 0xFF]))


def decode_frame(buf: bytes) -> tuple[RfidFrame | None, int]:
    """``(frame, consumed)``; ``(None, 0)`` need more; ``(None, n)`` garbage; ``FrameError`` bad."""
    if not buf:
        return None, 0
    if buf[0] != HEAD:
        i = buf.find(HEAD)
        return None, len(buf) if i < 0 else i
    if len(buf) < 2:
        return None, 0
    n = buf[1]
    if not MIN_LEN <= n <= MAX_LEN:
        raise FrameError(f"bad length {n}")
    total = 2 + n
    if len(buf) < total:
        return None, 0
    frame = bytes(buf[:total])
    if sum(frame) & 0xFF:
        raise FrameError(f"checksum error (got {frame[-1]:02X}, expected {_check(frame[:-1]):02X})")
    addr, cmd, data = frame[2], frame[3], frame[4:-1]
    if cmd == CMD_TAG:
        return _tag(addr, data, total), total
    if cmd == CMD_HEARTBEAT and len(data) != 1:
        raise FrameError(f"heartbeat with {len(data)} data bytes", consumed=total)
    return RfidFrame(addr, cmd, data), total


def _tag(addr: int, data: bytes, total: int) -> RfidFrame:
    if len(data) < 4:
        raise FrameError("tag report too short", consumed=total)
    words = data[1] >> 3
    epc = data[3:-1]
    if len(epc) != 2 * words or words == 0:
        raise FrameError(f"EPC of {len(epc)} bytes but PC says {words} words", consumed=total)
    rssi = data[-1]
    if not RSSI_MIN <= rssi <= RSSI_MAX:
        raise FrameError(f"RSSI byte 0x{rssi:02X} out of range", consumed=total)
    return RfidFrame(
        addr, CMD_TAG, data, tag_id=epc.hex().upper(), antenna=(data[0] & 0x03) + 1, rssi_dbm=rssi - RSSI_OFFSET
    )


class SerialRfid(RfidDriver):
    """A reader that pushes tag reads. A reader task decodes the stream into a queue;
    ``next_read`` takes from it. ``last_heartbeat`` is the loop time of the last frame of
    any kind (a supervisor's liveness probe)."""

    def __init__(self, device_id: str, config: DeviceConfig, **_opts: Any) -> None:
        if not isinstance(config.link, SerialLink):
            raise DeviceUnavailableError("the serial rfid backend needs a serial link", device=device_id)
        super().__init__(device_id, timeout=config.timeout_s)
        self.config = config
        self.port = SerialPort(config.link, name=device_id)
        self.stats = DecodeStats()
        self.counters.update({"tags": 0, "heartbeats": 0, "ignored": 0, "silences": 0, "dropped": 0})
        self.last_heartbeat = 0.0
        self._queue: asyncio.Queue[TagRead | DeviceError] = asyncio.Queue(QUEUE_MAX)
        self._reader: asyncio.Task[None] | None = None

    async def _connect(self) -> None:
        await self.port.open()
        self._queue = asyncio.Queue(QUEUE_MAX)
        self._reader = asyncio.create_task(self._read_loop(), name=f"rfid-reader-{self.device_id}")

    async def _close(self) -> None:
        task, self._reader = self._reader, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.port.close()

    def _push(self, item: TagRead | DeviceError) -> None:
        if self._queue.full():
            self._queue.get_nowait()  # the oldest read is the least useful one
            self.counters["dropped"] += 1
        self._queue.put_nowait(item)

    def _on_frame(self, f: RfidFrame) -> None:
        self.last_heartbeat = asyncio.get_running_loop().time()
        if f.cmd == CMD_TAG:
            self.counters["tags"] += 1
            self._push(TagRead(tag_id=f.tag_id, rssi=f.rssi_dbm, ts=time.time(), antenna=f.antenna))
        elif f.cmd == CMD_HEARTBEAT:
            self.counters["heartbeats"] += 1
        else:
            self.counters["ignored"] += 1

    def _on_silence(self) -> None:
        self.counters["silences"] += 1

    async def _read_loop(self) -> None:
        try:
            await read_stream(
                self.port,
                decode_frame,
                self.stats,
                self._on_frame,
                frame_gap_s=FRAME_GAP_S,
                silence_s=SILENCE_S,
                on_silence=self._on_silence,
            )
        except DeviceUnavailableError as exc:
            self._push(exc)

    async def _next_read(self) -> TagRead:
        if self._reader is None:
            raise DeviceUnavailableError("not connected")
        item = await self._queue.get()
        if isinstance(item, DeviceError):
            self._push(item)  # stays failed until reconnected
            raise item
        return item
