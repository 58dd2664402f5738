"""Radiation portal monitor, Rapiscan-style CSV line protocol over TCP.

The portal pushes one ASCII line per record, unasked, over a TCP socket (its Ethernet port,
or an RS-232 output behind a serial-to-Ethernet converter). Each line is comma-separated,
the first field is the record code, and it ends with CR LF::

    GB,002410,002380,002450,002395     gamma background, counts/s per panel (idle, ~every second)
    NB,000002,000001,000002,000001     neutron background, counts/s per panel
    GS,000489,000476,000501,000470     gamma counts per panel in one 200 ms sample (occupied)
    GA,000612,000655,000598,000607     the same, while the gamma alarm is on
    NS,000001,000000,000002,000001     neutron counts per panel in one neutron sample (occupied)
    NA,000009,000012,000007,000010     the same, while the neutron alarm is on
    GH,… / GL,… / NH,…                 background out of limits (gamma high / low, neutron high):
                                       sent instead of GB / NB, same fields
    GX,000123,006500                   end of occupancy: occupancy count, neutron background
                                       (all panels, counts/s) × 1000
    SP,0.0852,08.000,12.875            speed: s to cover 1 ft, mph, km/h
    TT / TC                            tamper (door open, cable cut) / tamper cleared
    SG1,SG2,SG3 / SN1,SN2              set-up (SG1: high bg, low bg, intervals, occupancy
                                       hold-in, n-sigma)

Where this comes from: the record codes, which fields OSCAR reads (four panel counts in
fields 1–4; ``GX`` occupancy count and neutron background ×1000; ``SP`` fields 1–3; SG1's
n-sigma in field 5), the 200 ms sample (five lines a second while occupied), gamma ``GB``
in counts per second compared against one-second foreground sums, the alarm threshold
``background + n·√background`` and σ = (foreground − background)/√background are those of
OSCAR's Rapiscan driver (Oak Ridge / Botts Innovative Research, osh-oakridge-modules,
MPL-2.0). Zero-padded six-digit fields, one neutron sample per five gamma samples, the
background period and the TCP port (1601, as OSCAR's tests) are project-defined; the
decoder accepts any number of digits and extra trailing fields, as OSCAR's does.

The driver assembles occupancies from the lines (``OccupancyAssembler``, sans-I/O): the
first ``GS``/``GA``/``NS``/``NA`` after idle opens one, every sample adds its panel counts,
``GA``/``NA`` set the portal's alarm flags, ``GX`` closes it with the portal's count. It
keeps the portal's state (backgrounds, faults, tamper, speed, n-sigma); an occupancy whose
samples add up to more than ``max_occupancy_s`` is reported as ``occupancy_stuck``; a portal
that sends nothing for ``SILENCE_S`` makes ``status`` raise ``DeviceTimeoutError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .cargo_devices import RadiationFault, RpmDriver, RpmOccupancy, RpmStatus
from .config import DeviceConfig, TcpLink
from .errors import DeviceError, DeviceTimeoutError, DeviceUnavailableError
from .serial_link import DecodeStats, FrameError, read_stream
from .tcp_link import TcpStream

__all__ = [
    "COUNT_CODES",
    "DEFAULT_PORT",
    "OccupancyAssembler",
    "RapiscanRpm",
    "RpmRecord",
    "decode_line",
    "encode_line",
]

#: OSCAR's tests reach portals on 1601 (and 1600 + lane for several).
DEFAULT_PORT = 1601
#: One gamma sample: the portal integrates 200 ms, five samples a second.
SAMPLE_S = 0.2
#: Seconds of samples in the running window the portal (and OSCAR) compares with the
#: threshold: one second.
WINDOW_SAMPLES = 5
#: Records that carry one count per detector panel.
COUNT_CODES = frozenset({"GB", "NB", "GS", "GA", "NS", "NA", "GH", "GL", "NH"})
SETUP_CODES = frozenset({"SG1", "SG2", "SG3", "SN1", "SN2"})
CODES = COUNT_CODES | SETUP_CODES | {"GX", "SP", "TT", "TC"}
#: Longest line we accept; the longest record (SG2 with its version strings) is < 100 bytes.
MAX_LINE = 256
MAX_PANELS = 8
#: A vehicle takes a few seconds through a portal; one stopped in it for two minutes is a
#: stuck occupancy sensor (or a vehicle that will be handled by hand anyway).
MAX_OCCUPANCY_S = 120.0
#: The portal sends its backgrounds about every second when idle and five lines a second
#: when occupied; three seconds of nothing means it is off, hung or disconnected.
SILENCE_S = 3.0
#: A line whose end does not come within this time after its start is abandoned.
LINE_GAP_S = 0.5
#: How long a status call waits for a record before a quiet spell counts as silence: records
#: waiting in the socket after the lane's own loop was held up are read within a few loop turns.
STALL_GRACE_S = 0.1
#: Completed occupancies waiting for the lane.
QUEUE_MAX = 32


@dataclass(frozen=True, slots=True)
class RpmRecord:
    """One decoded line. ``counts`` for the count records, ``number`` and ``neutron_bg`` for
    ``GX``, ``speed_kph`` / ``speed_mph`` for ``SP``, ``fields`` (raw text) for set-up lines."""

    code: str
    counts: tuple[int, ...] = ()
    number: int = 0
    neutron_bg: float = 0.0  # GX: counts/s, all panels
    speed_mph: float = 0.0
    speed_kph: float = 0.0
    fields: tuple[str, ...] = ()


def _int(field: str, what: str) -> int:
    if not field.isdigit():
        raise ValueError(f"{what} {field!r} is not a count")
    return int(field)


def _float(field: str, what: str) -> float:
    try:
        v = float(field)
    except ValueError:
        raise ValueError(f"{what} {field!r} is not a number") from None
    if v != v or v in (float("inf"), float("-inf")) or v < 0:
        raise ValueError(f"{what} {field!r} is not a finite non-negative number")
    return v


def _record(line: str) -> RpmRecord:
    fields = [f.strip() for f in line.split(",")]
    code = fields[0]
    if code not in CODES:
        raise ValueError(f"unknown record {code[:8]!r}")
    rest = fields[1:]
    if code in COUNT_CODES:
        if not 1 <= len(rest) <= MAX_PANELS:
            raise ValueError(f"{code} with {len(rest)} panel counts")
        return RpmRecord(code, counts=tuple(_int(f, f"{code} count") for f in rest))
    if code == "GX":
        if len(rest) < 2:
            raise ValueError("GX needs the occupancy count and the neutron background")
        return RpmRecord(code, number=_int(rest[0], "occupancy count"), neutron_bg=_int(rest[1], "GX bg") / 1000)
    if code == "SP":
        if len(rest) < 3:
            raise ValueError("SP needs three speed fields")
        return RpmRecord(code, speed_mph=_float(rest[1], "mph"), speed_kph=_float(rest[2], "km/h"))
    return RpmRecord(code, fields=tuple(rest))


def decode_line(buf: bytes) -> tuple[RpmRecord | None, int]:
    """``(record, consumed)``; ``(None, 0)`` need more; ``FrameError`` for a bad line (skip it).

    A line is everything up to LF (a CR before it is dropped; an empty line is skipped as
    garbage). Bytes that are not printable ASCII make the line bad.
    """
    end = buf.find(b"\n")
    if end < 0:
        if len(buf) > MAX_LINE:
            raise FrameError(f"no end of line within {MAX_LINE} bytes", consumed=len(buf))
        return None, 0
    consumed = end + 1
    raw = bytes(buf[:end]).rstrip(b"\r")
    if not raw:
        return None, consumed
    if len(raw) > MAX_LINE:
        raise FrameError(f"line of {len(raw)} bytes", consumed=consumed)
    if any(b < 0x20 or b > 0x7E for b in raw):
        raise FrameError("non-printable bytes in the line", consumed=consumed)
    try:
        return _record(raw.decode("ascii")), consumed
    except ValueError as exc:
        raise FrameError(f"bad record: {exc}", consumed=consumed) from exc


def encode_line(code: str, *fields: int | float | str) -> bytes:
    """The wire form: counts zero-padded to six digits, floats as given, CR LF."""
    if code not in CODES:
        raise ValueError(f"unknown record {code!r}")
    out = [code]
    for f in fields:
        if isinstance(f, bool):
            raise TypeError("a record field is a count, a number or text")
        if isinstance(f, int):
            if f < 0:
                raise ValueError("counts are never negative")
            out.append(f"{f:06d}")
        elif isinstance(f, float):
            out.append(f"{f:.3f}")
        else:
            if "," in f or not f.isprintable():
                raise ValueError(f"text field {f!r} cannot go on the wire")
            out.append(f)
    return (",".join(out) + "\r\n").encode("ascii")


# --------------------------------------------------------------------------- occupancy assembly


@dataclass
class OccupancyAssembler:
    """The portal's state and the occupancy in progress, built from records (no I/O).

    ``feed(record, now)`` returns the occupancy a ``GX`` completed (else None). ``now`` is
    wall-clock time, used only to stamp the occupancy (the lines carry no time).
    """

    max_occupancy_s: float = MAX_OCCUPANCY_S
    gamma_bg: tuple[float, ...] = ()
    neutron_bg: tuple[float, ...] = ()
    gamma_faults: frozenset[RadiationFault] = frozenset()
    neutron_fault: bool = False
    tamper: bool = False
    nsigma: float | None = None
    speed_kph: float | None = None
    occupancy_count: int = 0
    occupied: bool = False
    counters: dict[str, int] = field(default_factory=lambda: {"occupancies": 0, "records": 0, "orphan_gx": 0})
    # the occupancy in progress
    _started: float = 0.0
    _gamma: list[int] = field(default_factory=list)
    _neutron: list[int] = field(default_factory=list)
    _samples: int = 0
    _gamma_alarm: bool = False
    _neutron_alarm: bool = False
    _window: deque[int] = field(default_factory=lambda: deque(maxlen=WINDOW_SAMPLES))
    _max_cps: int = 0
    _bg_at_start: tuple[tuple[float, ...], tuple[float, ...]] = ((), ())
    _speed: float | None = None  # SP of the vehicle in (or entering) the portal

    @property
    def occupied_for_s(self) -> float:
        """How long the occupancy in progress has lasted, in the portal's own sample time."""
        return self._samples * SAMPLE_S if self.occupied else 0.0

    def status(self) -> RpmStatus:
        faults = set(self.gamma_faults)
        if self.neutron_fault:
            faults.add(RadiationFault.NEUTRON_HIGH)
        if self.occupied and self.occupied_for_s > self.max_occupancy_s:
            faults.add(RadiationFault.OCCUPANCY_STUCK)
        return RpmStatus(
            occupied=self.occupied,
            occupancy_count=self.occupancy_count,
            gamma_background_cps=self.gamma_bg,
            neutron_background_cps=self.neutron_bg,
            gamma_alarm=self.occupied and self._gamma_alarm,
            neutron_alarm=self.occupied and self._neutron_alarm,
            faults=frozenset(faults),
            tamper=self.tamper,
            occupied_for_s=self.occupied_for_s,
            nsigma=self.nsigma,
        )

    def _open(self, now: float) -> None:
        self.occupied = True
        self._started = now
        self._gamma, self._neutron = [], []
        self._samples = 0
        self._gamma_alarm = self._neutron_alarm = False
        self._window.clear()
        self._max_cps = 0
        self._bg_at_start = (self.gamma_bg, self.neutron_bg)

    @staticmethod
    def _add(acc: list[int], counts: tuple[int, ...]) -> None:
        if len(acc) < len(counts):
            acc.extend([0] * (len(counts) - len(acc)))
        for i, c in enumerate(counts):
            acc[i] += c

    def feed(self, r: RpmRecord, now: float) -> RpmOccupancy | None:
        self.counters["records"] += 1
        code = r.code
        if code == "GB":
            self.gamma_bg, self.gamma_faults = tuple(float(c) for c in r.counts), frozenset()
        elif code == "NB":
            self.neutron_bg, self.neutron_fault = tuple(float(c) for c in r.counts), False
        elif code == "GH":
            self.gamma_faults = frozenset({RadiationFault.GAMMA_HIGH})
        elif code == "GL":
            self.gamma_faults = frozenset({RadiationFault.GAMMA_LOW})
        elif code == "NH":
            self.neutron_fault = True
        elif code == "TT":
            self.tamper = True
        elif code == "TC":
            self.tamper = False
        elif code == "SP":
            self.speed_kph = self._speed = r.speed_kph
        elif code == "SG1" and len(r.fields) >= 5:
            with contextlib.suppress(ValueError):
                self.nsigma = _float(r.fields[4], "n-sigma")
        elif code in ("GS", "GA", "NS", "NA"):
            if not self.occupied:
                self._open(now)
            if code in ("GS", "GA"):
                self._samples += 1
                self._add(self._gamma, r.counts)
                self._window.append(sum(r.counts))
                if len(self._window) == WINDOW_SAMPLES:
                    self._max_cps = max(self._max_cps, sum(self._window))
                self._gamma_alarm |= code == "GA"
            else:
                self._add(self._neutron, r.counts)
                self._neutron_alarm |= code == "NA"
        elif code == "GX":
            return self._close(r, now)
        return None

    def _close(self, r: RpmRecord, now: float) -> RpmOccupancy | None:
        self.occupancy_count = r.number
        if not self.occupied:
            self.counters["orphan_gx"] += 1  # an occupancy whose samples we did not see
            return None
        self.occupied = False
        self.counters["occupancies"] += 1
        speed, self._speed = self._speed, None
        gamma_bg, neutron_bg = self._bg_at_start
        if not self._max_cps and self._window:  # shorter than a second: scale what there is
            self._max_cps = round(sum(self._window) * WINDOW_SAMPLES / len(self._window))
        return RpmOccupancy(
            number=r.number,
            started_at=self._started,
            ended_at=now,
            samples=self._samples,
            sample_s=SAMPLE_S,
            gamma_counts=tuple(self._gamma),
            neutron_counts=tuple(self._neutron),
            gamma_background_cps=gamma_bg or self.gamma_bg,
            neutron_background_cps=neutron_bg or self.neutron_bg,
            gamma_alarm=self._gamma_alarm,
            neutron_alarm=self._neutron_alarm,
            nsigma=self.nsigma,
            max_gamma_cps=self._max_cps,
            speed_kph=speed,
        )


# --------------------------------------------------------------------------- driver


class RapiscanRpm(RpmDriver):
    """Listens to a portal's line stream over TCP (``link: {kind: tcp, host, port}``)."""

    def __init__(
        self,
        device_id: str,
        config: DeviceConfig,
        *,
        max_occupancy_s: float = MAX_OCCUPANCY_S,
        silence_s: float = SILENCE_S,
        **_opts: Any,
    ) -> None:
        if not isinstance(config.link, TcpLink):
            raise DeviceUnavailableError("the rapiscan rpm backend needs a tcp link", device=device_id)
        super().__init__(device_id, timeout=config.timeout_s)
        self.config = config
        self.stream = TcpStream(config.link, name=device_id)
        self.stats = DecodeStats()
        self.max_occupancy_s = max_occupancy_s
        self.silence_s = silence_s
        self.state = OccupancyAssembler(max_occupancy_s)
        self.counters.update({"silences": 0, "dropped": 0})
        self.last_record = 0.0  # loop time of the last good record
        self._queue: asyncio.Queue[RpmOccupancy | DeviceError] = asyncio.Queue(QUEUE_MAX)
        self._error: DeviceError | None = None
        self._reader: asyncio.Task[None] | None = None
        self._heard = asyncio.Event()  # set on every good record

    async def _connect(self) -> None:
        await self.stream.open()
        # A new connection is a new stream of records: what the portal says now is the truth.
        self.state = OccupancyAssembler(self.max_occupancy_s)
        self._error = None
        self._queue = asyncio.Queue(QUEUE_MAX)
        self.last_record = asyncio.get_running_loop().time()
        self._reader = asyncio.create_task(self._read_loop(), name=f"rpm-reader-{self.device_id}")

    async def _close(self) -> None:
        task, self._reader = self._reader, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.stream.close()

    def _push(self, item: RpmOccupancy | DeviceError) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.counters["dropped"] += 1
        self._queue.put_nowait(item)

    def _on_record(self, r: RpmRecord) -> None:
        self.last_record = asyncio.get_running_loop().time()
        self._heard.set()
        done = self.state.feed(r, time.time())
        if done is not None:
            self._push(done)

    def _on_silence(self) -> None:
        self.counters["silences"] += 1

    async def _read_loop(self) -> None:
        try:
            await read_stream(
                self.stream,
                decode_line,
                self.stats,
                self._on_record,
                frame_gap_s=LINE_GAP_S,
                silence_s=self.silence_s,
                on_silence=self._on_silence,
            )
        except DeviceUnavailableError as exc:
            self._error = exc
            self._push(exc)

    def _check(self) -> None:
        if self._reader is None:
            raise DeviceUnavailableError("not connected")
        if self._error is not None:
            raise DeviceUnavailableError(str(self._error)) from self._error

    async def _status(self) -> RpmStatus:
        self._check()
        loop = asyncio.get_running_loop()
        if loop.time() - self.last_record > self.silence_s:
            # A stalled event loop is not a silent portal: let the reader take the records
            # already waiting in the socket (bounded) before calling the portal silent.
            self._heard.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STALL_GRACE_S):
                    await self._heard.wait()
            self._check()
        quiet = loop.time() - self.last_record
        if quiet > self.silence_s:
            raise DeviceTimeoutError(f"portal silent for {quiet:.1f} s (it sends a record at least every second)")
        return self.state.status()

    async def _next_occupancy(self) -> RpmOccupancy:
        self._check()
        item = await self._queue.get()
        if isinstance(item, DeviceError):
            self._push(item)  # stays failed until reconnected
            raise item
        return item
