"""Weighbridge indicator: the Mettler-Toledo "continuous output" ASCII stream.

The indicator sends, unasked, ~10–20 times a second (7 data bits, even parity, 9600 bit/s
is the usual setting; the site configuration says so)::

    STX | SWA | SWB | SWC | weight[6] | tare[6] | CR | CKS

* ``STX`` 02, ``CR`` 0D; 18 bytes with the optional checksum (17 without — a setting of
  the indicator; ``checksum=False`` on the driver for those).
* ``weight`` / ``tare``: six ASCII digits, no sign, no decimal point (leading zeros may be
  sent as spaces).
* ``SWA`` (status word A): bits 0–2 decimal point code (000 ``XXXX00``, 001 ``XXXXX0``,
  010 ``XXXXXX``, 011 ``XXXXX.X``, 100 ``XXXX.XX``, 101 ``XXX.XXX``, 110 ``XX.XXXX``,
  111 ``X.XXXXX``); bits 3–4 increment code (01 ×1, 10 ×2, 11 ×5); bit 5 always 1.
* ``SWB``: bit 0 net (1) / gross (0); bit 1 sign negative; bit 2 out of range (over/under
  capacity); bit 3 **motion** (1 = in motion, i.e. not stable); bit 4 kg (1) / lb (0);
  bit 5 always 1; bit 6 power-up, zero not yet captured.
* ``SWC``: bits 0–2 extended unit (000 kg/lb as SWB says, 010 metric tonnes — other codes
  are grams, ounces, …, refused here); bit 3 print request; bit 4 expanded ×10; bit 5
  always 1.
* ``CKS``: two's complement of the 7 low-order bits of the sum of every byte from STX to CR
  (so the 7-bit sum of the whole frame is 0).

This is the layout Toledo indicators and their many compatible clones (Chinese XK3190
family "Toledo protocol" setting) emit. Bit 6 of each byte is 0 (7-bit data).

Robust parsing: the decoder resyncs on STX, skips garbage, rejects frames whose fixed bits,
digits, CR or checksum are wrong (``FrameError``), and a frame cut off mid-way is abandoned
after ``FRAME_GAP_S`` of silence.

Example (computed, see docs/devices/weighbridge.md): 31 240 kg gross, stable, whole kg
(decimal point code 010), increment code ×2 (a 20 kg division), tare 0, is
``02 32 30 20 30 33 31 32 34 30 30 30 30 30 30 30 0D 25`` (``<STX>20 031240000000<CR>%``).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from .base import WeighbridgeDriver, Weight
from .config import DeviceConfig, SerialLink
from .errors import DeviceError, DeviceFaultError, DeviceProtocolError, DeviceUnavailableError
from .serial_link import DecodeStats, FrameError, SerialPort, read_stream

__all__ = ["ScaleFrame", "SerialWeighbridge", "decode_frame", "encode_frame"]

STX, CR = 0x02, 0x0D
FRAME_LEN = 18  # with checksum
#: Decimal point code -> power of ten to apply to the six digits.
_DP_EXP = {0: 2, 1: 1, 2: 0, 3: -1, 4: -2, 5: -3, 6: -4, 7: -5}
_INCREMENTS = {1: 1, 2: 2, 3: 5}
UNIT_KG, UNIT_T = 0, 2

#: At 9600 bit/s 7E1 a frame's 18 bytes take 19 ms; 40 ms of silence inside one means the
#: rest is lost.
FRAME_GAP_S = 0.04
#: Indicators stream 10–20 frames a second; a second without one means it is off or unplugged.
SILENCE_S = 1.0


@dataclass(frozen=True, slots=True)
class ScaleFrame:
    kg: float
    tare_kg: float
    motion: bool
    net: bool = False
    over_range: bool = False
    power_up: bool = False
    print_request: bool = False


def _cks(body: bytes) -> int:
    return (-sum(body)) & 0x7F


def _digits(v: float, exp: int, what: str) -> bytes:
    raw = round(abs(v) / 10**exp)
    if raw > 999_999:
        raise ValueError(f"{what} {v} does not fit six digits")
    return f"{raw:06d}".encode("ascii")


def encode_frame(
    kg: float,
    *,
    motion: bool = False,
    tare_kg: float = 0.0,
    dp: int = 2,
    increment: int = 1,
    over_range: bool = False,
    checksum: bool = True,
    net: bool = False,
) -> bytes:
    """One frame in kg. ``dp`` is the decimal point code (2 = whole kg)."""
    exp = _DP_EXP[dp]
    inc = {v: k for k, v in _INCREMENTS.items()}[increment]
    swa = 0x20 | dp | inc << 3
    swb = 0x20 | 0x10 | (1 if net else 0) | (2 if kg < 0 else 0) | (4 if over_range else 0) | (8 if motion else 0)
    swc = 0x20 | UNIT_KG
    body = bytes([STX, swa, swb, swc]) + _digits(kg, exp, "weight") + _digits(tare_kg, exp, "tare") + bytes([CR])
    return body + bytes([_cks(body)]) if checksum else body


def _field(raw: bytes, what: str) -> int:
    s = raw.decode("ascii").replace(" ", "0")
    if not s.isdigit() or len(s) != 6:
        raise FrameError(f"{what} field {raw!r} is not six digits")
    return int(s)


def decode_frame(buf: bytes, *, checksum: bool = True) -> tuple[ScaleFrame | None, int]:
    """``(frame, consumed)``; ``(None, 0)`` need more; ``(None, n)`` garbage; ``FrameError`` bad."""
    if not buf:
        return None, 0
    if buf[0] != STX:
        i = buf.find(STX)
        return None, len(buf) if i < 0 else i
    n = FRAME_LEN if checksum else FRAME_LEN - 1
    # Check what has arrived so far, so that an STX in noise is rejected early.
    for i, b in enumerate(buf[1 : min(len(buf), 4)], start=1):
        if b & 0xE0 != 0x20:
            raise FrameError(f"status word {'ABC'[i - 1]} 0x{b:02X}: fixed bits wrong")
    if len(buf) < n:
        return None, 0
    frame = bytes(buf[:n])
    if frame[16] != CR:
        raise FrameError("no CR at the end of the frame")
    if checksum and (sum(frame) & 0x7F):
        raise FrameError(f"checksum error (got 0x{frame[17]:02X}, expected 0x{_cks(frame[:17]):02X})")
    swa, swb, swc = frame[1], frame[2], frame[3]
    try:
        weight, tare = _field(frame[4:10], "weight"), _field(frame[10:16], "tare")
    except UnicodeDecodeError as exc:
        raise FrameError("non-ASCII digits") from exc
    inc_code = (swa >> 3) & 3
    if inc_code not in _INCREMENTS:
        raise FrameError(f"bad increment code in SWA 0x{swa:02X}")
    unit = swc & 0x07
    if unit not in (UNIT_KG, UNIT_T):
        raise FrameError(f"unit code {unit} in SWC: only kg and t are accepted")
    if unit == UNIT_KG and not swb & 0x10:
        raise FrameError("indicator is set to lb, not kg")
    scale = 10.0 ** _DP_EXP[swa & 0x07] * (1000 if unit == UNIT_T else 1) * (10 if swc & 0x10 else 1)
    sign = -1 if swb & 0x02 else 1
    return (
        ScaleFrame(
            kg=sign * weight * scale,
            tare_kg=tare * scale,
            motion=bool(swb & 0x08),
            net=bool(swb & 0x01),
            over_range=bool(swb & 0x04),
            power_up=bool(swb & 0x40),
            print_request=bool(swc & 0x08),
        ),
        n,
    )


class SerialWeighbridge(WeighbridgeDriver):
    """Listens to the indicator's stream. ``read_weight`` returns the next fresh reading."""

    def __init__(self, device_id: str, config: DeviceConfig, *, checksum: bool = True, **_opts: Any) -> None:
        if not isinstance(config.link, SerialLink):
            raise DeviceUnavailableError("the serial weighbridge backend needs a serial link", device=device_id)
        super().__init__(device_id, timeout=max(config.timeout_s, 2 * SILENCE_S))
        self.config = config
        self.checksum = checksum
        self.port = SerialPort(config.link, name=device_id)
        self.stats = DecodeStats()
        self.latest: ScaleFrame | None = None
        self._fresh = asyncio.Event()
        self._error: DeviceError | None = None
        self._reader: asyncio.Task[None] | None = None
        self.counters.update({"frames": 0, "silences": 0})

    def _decode(self, buf: bytes) -> tuple[ScaleFrame | None, int]:
        return decode_frame(buf, checksum=self.checksum)

    async def _connect(self) -> None:
        await self.port.open()
        self._error = None
        self.latest = None
        self._reader = asyncio.create_task(self._read_loop(), name=f"weighbridge-reader-{self.device_id}")

    async def _close(self) -> None:
        task, self._reader = self._reader, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.port.close()

    def _on_frame(self, f: ScaleFrame) -> None:
        self.latest = f
        self.counters["frames"] += 1
        self._fresh.set()

    def _on_silence(self) -> None:
        self.counters["silences"] += 1

    async def _read_loop(self) -> None:
        try:
            await read_stream(
                self.port,
                self._decode,
                self.stats,
                self._on_frame,
                frame_gap_s=FRAME_GAP_S,
                silence_s=SILENCE_S,
                on_silence=self._on_silence,
            )
        except DeviceUnavailableError as exc:
            self._error = exc
            self._fresh.set()

    async def _read_weight(self) -> Weight:
        if self._reader is None:
            raise DeviceUnavailableError("not connected")
        if self._error is None:
            self._fresh.clear()
            await self._fresh.wait()  # deadline: Device._call (>= two silence periods)
        if self._error is not None:
            raise DeviceUnavailableError(str(self._error)) from self._error
        f = self.latest
        assert f is not None
        if f.over_range:
            raise DeviceFaultError("scale over or under range", code=1)
        if f.net and f.tare_kg:
            raise DeviceProtocolError("indicator sends net weight; gross is expected (tare is set)")
        return Weight(kg=round(f.kg), stable=not f.motion and not f.power_up)
