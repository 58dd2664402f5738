"""The shared X-ray scanner: its own physics (``ScannerWorld``) and its PLC on Modbus TCP.

Physics, the way a portal scanner's safety PLC behaves:

* power-on or reset → WARMING for ``warmup_s`` → READY (or INTERLOCKED if the exclusion
  zone is open or the e-stop pressed);
* ``cmd=1`` starts a scan only from READY/COMPLETE with the zone clear; otherwise the PLC
  refuses (Modbus exception 04) and, if an interlock is the reason, shows INTERLOCKED;
* SCANNING lasts 10–40 s × ``time_factor`` (seeded RNG), radiation on, progress 0→100 %;
  then COMPLETE with a result GREEN/YELLOW/RED (seeded RNG, or forced by a test);
* a person entering the zone (``open_zone``) or the e-stop cuts radiation *at once* — in
  the same call, not on the next tick — and the scan ends in FAULT 0x21 / 0x22;
* ``cmd=2`` aborts (radiation off immediately, fault code 0x30, back to READY);
  ``cmd=3`` resets a fault (→ WARMING).

Register map: ``firmware_config/devices/scanner_plc.yaml``.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .faults import FaultInjector
from .modbus_slave import (
    DEVICE_FAILURE,
    ILLEGAL_ADDRESS,
    ILLEGAL_VALUE,
    ModbusSimHandle,
    load_register_map,
    start_modbus,
    table_size,
)

__all__ = ["PlcState", "ScannerSim", "ScannerWorld", "start_scanner"]

#: Physics tick: progress is reported in whole percent, a 10 s scan at time_factor 0.01
#: is 0.1 s, so 10 ms ticks still give ~10 progress steps.
TICK_S = 0.01

FAULT_SOURCE = 0x10
FAULT_ZONE_BREACH = 0x21
FAULT_ESTOP = 0x22
FAULT_ABORTED = 0x30


class PlcState(enum.IntEnum):
    IDLE = 0
    READY = 1
    WARMING = 2
    SCANNING = 3
    COMPLETE = 4
    FAULT = 5
    INTERLOCKED = 6


@dataclass
class ScannerWorld:
    """The scanner's physical state, shared by its PLC simulator and by tests."""

    time_factor: float = 1.0
    warmup_s: float = 30.0
    scan_s: tuple[float, float] = (10.0, 40.0)
    seed: int = 0
    state: PlcState = PlcState.WARMING
    zone_clear: bool = True
    estop: bool = False
    doors_closed: bool = True
    lamps_ok: bool = True
    radiation_on: bool = False
    scan_id: int = 0
    result: int = 0
    fault_code: int = 0
    progress: int = 0
    vehicle_ref: str = ""
    lane: int = 0
    seq: int = 0
    image_ref: str = ""
    forced_result: int | None = None  # tests: the next results are this value
    fault_during_next_scan: int = 0  # tests: the next scan dies with this fault code half-way
    scans_started: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _phase_end: float = 0.0
    _phase_len: float = 0.0
    _fault_at: float = 0.0

    def __post_init__(self) -> None:
        self._rng.seed(self.seed)
        self._phase_len = self.warmup_s * self.time_factor
        self._phase_end = time.monotonic() + self._phase_len

    # ---------------------------------------------------------------- notification
    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, predicate: Any, timeout: float | None = None) -> None:  # noqa: ASYNC109 (same API as LaneWorld)
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

    # ---------------------------------------------------------------- interlocks
    @property
    def interlocks_ok(self) -> bool:
        return self.zone_clear and not self.estop and self.doors_closed

    def _cut_beam(self, state: PlcState, fault: int) -> None:
        self.radiation_on = False
        self.state = state
        self.fault_code = fault
        self.notify()

    def open_zone(self) -> None:
        """A person walks into the exclusion zone: radiation off now."""
        self.zone_clear = False
        if self.state == PlcState.SCANNING:
            self._cut_beam(PlcState.FAULT, FAULT_ZONE_BREACH)
        elif self.state in (PlcState.READY, PlcState.COMPLETE, PlcState.IDLE):
            self.state = PlcState.INTERLOCKED
        self.notify()

    def clear_zone(self) -> None:
        self.zone_clear = True
        if self.state == PlcState.INTERLOCKED and self.interlocks_ok:
            self.state = PlcState.READY
        self.notify()

    def press_estop(self, pressed: bool = True) -> None:
        self.estop = pressed
        if pressed and self.state == PlcState.SCANNING:
            self._cut_beam(PlcState.FAULT, FAULT_ESTOP)
        elif pressed and self.state in (PlcState.READY, PlcState.COMPLETE, PlcState.IDLE):
            self.state = PlcState.INTERLOCKED
        elif not pressed and self.state == PlcState.INTERLOCKED and self.interlocks_ok:
            self.state = PlcState.READY
        self.notify()

    def inject_fault(self, code: int = FAULT_SOURCE) -> None:
        """Hardware fault (source, detector): radiation off, FAULT until reset."""
        self._cut_beam(PlcState.FAULT, code)

    # ---------------------------------------------------------------- commands (from the PLC registers)
    def request_scan(self, vehicle_ref: str, lane: int, seq: int) -> bool:
        if self.state not in (PlcState.READY, PlcState.COMPLETE):
            return False
        if not self.interlocks_ok:
            self.state = PlcState.INTERLOCKED
            self.notify()
            return False
        self.scan_id = (self.scan_id + 1) & 0xFFFFFFFF
        self.scans_started += 1
        self.vehicle_ref, self.lane, self.seq = vehicle_ref, lane, seq
        self.result, self.fault_code, self.progress, self.image_ref = 0, 0, 0, ""
        lo, hi = self.scan_s
        self._phase_len = self._rng.uniform(lo, hi) * self.time_factor
        self._phase_end = time.monotonic() + self._phase_len
        self._fault_at = 0.0
        if self.fault_during_next_scan:
            self._fault_at = time.monotonic() + self._phase_len / 2
        self.radiation_on = True
        self.state = PlcState.SCANNING
        self.notify()
        return True

    def abort(self) -> bool:
        if self.state != PlcState.SCANNING:
            return False
        self._cut_beam(PlcState.READY if self.interlocks_ok else PlcState.INTERLOCKED, FAULT_ABORTED)
        return True

    def reset(self) -> bool:
        if self.state not in (PlcState.FAULT, PlcState.INTERLOCKED, PlcState.COMPLETE, PlcState.READY):
            return False
        self.radiation_on = False
        self.fault_code = 0
        self.progress = 0
        self.state = PlcState.WARMING
        self._phase_len = self.warmup_s * self.time_factor
        self._phase_end = time.monotonic() + self._phase_len
        self.notify()
        return True

    # ---------------------------------------------------------------- physics
    def step(self, now: float) -> None:
        if self.state == PlcState.WARMING and now >= self._phase_end:
            self.state = PlcState.READY if self.interlocks_ok else PlcState.INTERLOCKED
            self.notify()
        elif self.state == PlcState.SCANNING:
            if self._fault_at and now >= self._fault_at:
                code, self.fault_during_next_scan = self.fault_during_next_scan, 0
                self._cut_beam(PlcState.FAULT, code)
                return
            left = self._phase_end - now
            pct = 100 if self._phase_len <= 0 else int(100 * (1 - max(left, 0.0) / self._phase_len))
            if left <= 0:
                self.radiation_on = False
                self.progress = 100
                if self.forced_result is not None:
                    self.result = self.forced_result
                else:
                    self.result = self._rng.choices((1, 2, 3), weights=(85, 12, 3))[0]
                self.image_ref = f"XR{self.scan_id:08d}"
                self.state = PlcState.COMPLETE
                self.notify()
            elif pct != self.progress:
                self.progress = pct
                self.notify()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self.step(time.monotonic())


def _ascii_regs(text: str, words: int) -> list[int]:
    raw = text.encode("ascii", "replace")[: words * 2].ljust(words * 2, b"\0")
    return [(raw[i] << 8) | raw[i + 1] for i in range(0, words * 2, 2)]


def _regs_ascii(regs: list[int]) -> str:
    raw = bytes(b for r in regs for b in ((r >> 8) & 0xFF, r & 0xFF))
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


class ScannerSim:
    """The scanner PLC's Modbus face over a ``ScannerWorld`` (a ``RegisterBank``)."""

    def __init__(self, world: ScannerWorld, *, faults: Any = None) -> None:
        self.world = world
        self.faults = faults
        self.map = load_register_map("scanner_plc")
        ix = self.map["index"]
        self.d, self.i, self.h = ix["discrete_inputs"], ix["input_registers"], ix["holding_registers"]
        self.words = {e["name"]: int(e.get("words", 1)) for t in self.map["tables"].values() for e in t}
        self.sizes = {t: table_size(self.map, t) for t in self.map["tables"]}
        self.cmds = self.map["commands"]
        self.bits = self.map["interlock_bits"]
        self.holding = [0] * self.sizes["holding_registers"]
        self.requests = 0

    def _input_regs(self) -> list[int]:
        w, i = self.world, self.i
        regs = [0] * self.sizes["input_registers"]
        regs[i["state"]] = int(w.state)
        flags = {
            "estop": w.estop,
            "zone_clear": w.zone_clear,
            "doors_closed": w.doors_closed,
            "radiation_on": w.radiation_on,
            "lamps_ok": w.lamps_ok,
        }
        regs[i["interlocks"]] = sum(1 << int(self.bits[k]) for k, v in flags.items() if v)
        regs[i["scan_id"]], regs[i["scan_id"] + 1] = (w.scan_id >> 16) & 0xFFFF, w.scan_id & 0xFFFF
        regs[i["result"]] = w.result
        regs[i["fault_code"]] = w.fault_code
        a = i["scanned_ref"]
        regs[a : a + self.words["scanned_ref"]] = _ascii_regs(w.vehicle_ref, self.words["scanned_ref"])
        regs[i["progress_pct"]] = w.progress
        a = i["image_ref"]
        regs[a : a + self.words["image_ref"]] = _ascii_regs(w.image_ref, self.words["image_ref"])
        return regs

    def _inputs(self) -> list[int]:
        w = self.world
        bits = [0] * self.sizes["discrete_inputs"]
        bits[self.d["radiation_on"]] = int(w.radiation_on)
        bits[self.d["ready"]] = int(w.state == PlcState.READY)
        bits[self.d["zone_clear"]] = int(w.zone_clear)
        return bits

    def _write_holding(self, address: int, values: list[int]) -> int:
        cmd_addr = self.h["cmd"]
        for offset, v in enumerate(values):
            if address + offset == cmd_addr and v not in (0, *self.cmds.values()):
                return ILLEGAL_VALUE
        for offset, v in enumerate(values):
            if address + offset != cmd_addr:
                self.holding[address + offset] = v
        if cmd_addr in range(address, address + len(values)):
            cmd = values[cmd_addr - address]
            w, h = self.world, self.h
            ok = True
            if cmd == self.cmds["start"]:
                ref = _regs_ascii(self.holding[h["vehicle_ref"] : h["vehicle_ref"] + self.words["vehicle_ref"]])
                ok = w.request_scan(ref, self.holding[h["lane_id"]], self.holding[h["truck_seq"]])
            elif cmd == self.cmds["abort"]:
                ok = w.abort()
            elif cmd == self.cmds["reset"]:
                ok = w.reset()
            if not ok:
                return DEVICE_FAILURE
        return 0

    # -- RegisterBank
    def read(self, table: str, address: int, count: int) -> list[int] | int:
        self.requests += 1
        if address + count > self.sizes.get(table, 0):
            return ILLEGAL_ADDRESS  # the PLC exposes no coils at all
        tables: dict[str, Callable[[], list[int]]] = {
            "discrete_inputs": self._inputs,
            "input_registers": self._input_regs,
            "holding_registers": lambda: list(self.holding),  # cmd reads back 0: the PLC took it
        }
        return tables[table]()[address : address + count]

    def write(self, table: str, address: int, values: list[int]) -> int:
        self.requests += 1
        if table != "holding_registers" or address + len(values) > self.sizes["holding_registers"]:
            return ILLEGAL_ADDRESS
        return self._write_holding(address, values)


async def start_scanner(
    world: Any = None,
    *,
    faults: FaultInjector | None = None,
    unit: int = 1,
    port: int | None = None,
    scanner_world: ScannerWorld | None = None,
    time_factor: float | None = None,
    seed: int = 0,
    **_opts: Any,
) -> ModbusSimHandle:
    """Start the scanner PLC simulator on loopback Modbus TCP.

    ``world`` may be a ``ScannerWorld`` (used as is) or a lane world / None, in which case a
    new ``ScannerWorld`` is made with that world's ``time_factor``. ``handle.world`` is the
    scanner world tests drive (``open_zone``, ``forced_result``, ...).
    """
    if scanner_world is None:
        if isinstance(world, ScannerWorld):
            scanner_world = world
        else:
            tf = time_factor if time_factor is not None else float(getattr(world, "time_factor", 1.0))
            scanner_world = ScannerWorld(time_factor=tf, seed=seed)
    sim = ScannerSim(scanner_world, faults=faults)
    handle = await start_modbus(
        sim, transport="tcp", faults=faults, unit=unit, port=port, tasks=[(scanner_world.run, "scanner-world")]
    )
    assert isinstance(handle, ModbusSimHandle)
    handle.world = scanner_world  # type: ignore[attr-defined]
    return handle
