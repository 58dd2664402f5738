"""Wire-level simulator of a Modbus barrier gate controller (TCP, or RTU on an RS-485 line).

The register map is read from ``firmware_config/devices/gate_modbus.yaml`` — the same data
the driver reads — but the code that interprets it here is the simulator's own, and so is
the Modbus engine it is served by (``modbus_slave``), so a driver bug cannot be mirrored by
the simulator it is tested against.

The controller is backed by a shared ``LaneWorld``: command coils move the world's arm
(``command_open`` / ``command_close`` / ``command_stop``), inputs are read from the world's
sensors on every request (so the answer is always the current physical state; no polling
task can lag behind). Its latched evidence (map version 2, IR 5–10: input bitmap,
photocell and safety-loop edge counters, vehicles passed) is counted on every change of the
world by ``evidence.GateEvidence``.

Faults beyond the shared ones: ``faults.ignore_commands(n)`` — the next n open/close pulses
are accepted (no exception) and do nothing; ``faults.exception_replies(code)`` — requests
are answered with that Modbus exception.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from .evidence import GateEvidence
from .faults import FaultInjector
from .line import SerialLine
from .modbus_slave import (
    DEVICE_FAILURE,
    ILLEGAL_ADDRESS,
    ILLEGAL_VALUE,
    ModbusSimHandle,
    SimHandle,
    free_tcp_port,
    load_register_map,
    start_modbus,
    table_size,
)
from .world import ArmMotion, LaneWorld

__all__ = ["STALL_FAULT", "GateSim", "ModbusSimHandle", "free_tcp_port", "load_register_map", "start_gate"]

#: Fault code of a motor that does not move while commanded (as the RS-485 controllers report it).
STALL_FAULT = 0x0021


class GateSim:
    """Controller logic between the Modbus tables and a ``LaneWorld`` (a ``RegisterBank``)."""

    def __init__(self, world: LaneWorld, *, faults: FaultInjector) -> None:
        self.world = world
        self.faults = faults
        self.map = load_register_map("gate_modbus")
        ix = self.map["index"]
        self.c, self.d, self.i, self.h = (
            ix["coils"],
            ix["discrete_inputs"],
            ix["input_registers"],
            ix["holding_registers"],
        )
        self.sizes = {t: table_size(self.map, t) for t in self.map["tables"]}
        self.ranges = {
            int(e["address"]): tuple(e["range"]) for e in self.map["tables"]["holding_registers"] if "range" in e
        }
        self.holding = {self.h["auto_close_s"]: 0, self.h["open_time_ms"]: int(world.arm_move_s * 1000)}
        self.evidence = GateEvidence(world)
        self.requests = 0
        self._auto_close_wake = asyncio.Event()
        # Optional timing hook (bench/latency_bench.py): called for every open/close/stop pulse
        # written, with the world, the command name and time.monotonic_ns() when it was served.
        self.on_command: Callable[[LaneWorld, str, int], None] | None = None

    # -- physical state as the controller's tables see it
    def fault_code(self) -> int:
        """The world's fault, or a motor stall while a movement is commanded and the arm is stuck."""
        w = self.world
        if not w.fault_code and w.stuck and w.motion != ArmMotion.STILL:
            return STALL_FAULT
        return w.fault_code

    def state_code(self) -> int:
        w = self.world
        if self.fault_code():
            return 0x01
        if w.motion == ArmMotion.OPENING:
            return 0xFE
        if w.motion == ArmMotion.CLOSING:
            return 0xFC
        if w.limit_open:
            return 0xFF
        if w.limit_closed:
            return 0x00
        return 0xFD

    def _coils(self) -> list[int]:
        bits = [0] * self.sizes["coils"]  # pulses read back 0 once taken
        bits[self.c["lock"]] = int(self.world.locked)
        return bits

    def _inputs(self) -> list[int]:
        w = self.world
        vals = {
            "limit_open": w.limit_open,
            "limit_closed": w.limit_closed,
            "loop_entry": w.entry_loop,
            "loop_safety": w.safety_loop,
            "photocell_blocked": w.photocell_blocked,
            "fault": bool(self.fault_code()),
            "locked": w.locked,
        }
        bits = [0] * self.sizes["discrete_inputs"]
        for name, addr in self.d.items():
            bits[addr] = int(vals[name])
        return bits

    def _input_regs(self) -> list[int]:
        w, i, ev = self.world, self.i, self.evidence
        ev.sample()  # the counters are current in every answer
        regs = [0] * self.sizes["input_registers"]
        regs[i["state"]] = self.state_code()
        regs[i["boom_angle_deg"]] = round(w.arm_angle)
        cyc = i["cycle_counter"]
        regs[cyc], regs[cyc + 1] = (w.cycles >> 16) & 0xFFFF, w.cycles & 0xFFFF
        regs[i["fault_code"]] = self.fault_code()
        regs[i["di_bitmap"]] = sum(b << n for n, b in enumerate(self._inputs()))
        regs[i["photocell_rising"]] = ev.rising["photocell"]
        regs[i["photocell_falling"]] = ev.falling["photocell"]
        regs[i["loop_safety_rising"]] = ev.rising["safety_loop"]
        regs[i["loop_safety_falling"]] = ev.falling["safety_loop"]
        regs[i["vehicles_passed"]] = ev.vehicles_passed
        return regs

    # -- RegisterBank
    def read(self, table: str, address: int, count: int) -> list[int] | int:
        self.requests += 1
        if address + count > self.sizes.get(table, 0):
            return ILLEGAL_ADDRESS
        tables: dict[str, Callable[[], list[int]]] = {
            "coils": self._coils,
            "discrete_inputs": self._inputs,
            "input_registers": self._input_regs,
            "holding_registers": lambda: [self.holding.get(a, 0) for a in range(self.sizes["holding_registers"])],
        }
        return tables[table]()[address : address + count]

    def write(self, table: str, address: int, values: list[int]) -> int:
        self.requests += 1
        if address + len(values) > self.sizes.get(table, 0):
            return ILLEGAL_ADDRESS
        if table == "coils":
            return self._write_coils(address, [bool(v) for v in values])
        return self._write_holding(address, values)

    def _write_coils(self, address: int, bits: list[bool]) -> int:
        w = self.world
        for offset, bit in enumerate(bits):
            addr = address + offset
            if addr == self.c["lock"]:
                if w.locked != bit:
                    w.locked = bit
                    w.notify()
            elif not bit:
                continue
            elif addr in (self.c["cmd_open"], self.c["cmd_close"]):
                opening = addr == self.c["cmd_open"]
                if self.on_command is not None:
                    self.on_command(w, "open" if opening else "close", time.monotonic_ns())
                # Refused (exception 04) when locked or faulted / with something under the arm.
                refused = (w.locked or bool(w.fault_code)) if opening else (w.photocell_blocked or w.safety_loop)
                if refused:
                    return DEVICE_FAILURE
                if self.faults.take_ignore():
                    continue  # accepted, and the arm does not move
                if not (w.command_open() if opening else w.command_close()):
                    return DEVICE_FAILURE
            elif addr == self.c["cmd_stop"]:
                w.command_stop()
        return 0

    def _write_holding(self, address: int, values: list[int]) -> int:
        for offset, v in enumerate(values):
            lo, hi = self.ranges.get(address + offset, (0, 0xFFFF))
            if not lo <= v <= hi:
                return ILLEGAL_VALUE
        for offset, v in enumerate(values):
            addr = address + offset
            self.holding[addr] = v
            if addr == self.h["open_time_ms"]:
                self.world.arm_move_s = v / 1000.0
        self._auto_close_wake.set()
        return 0

    async def auto_close(self) -> None:
        """The controller's own auto-close timer (HR auto_close_s; 0 = off)."""
        w = self.world
        while True:
            delay = self.holding.get(self.h["auto_close_s"], 0)
            if not delay:
                self._auto_close_wake.clear()
                await self._auto_close_wake.wait()
                continue
            await w.wait_until(lambda: w.limit_open and not w.photocell_blocked and not w.safety_loop)
            await asyncio.sleep(w.scaled(delay))  # the controller's timer, in world time
            if w.limit_open and not w.photocell_blocked and not w.safety_loop:
                w.command_close()
            await w.wait_until(lambda: not w.limit_open)


async def start_gate(
    world: LaneWorld,
    *,
    faults: FaultInjector | None = None,
    transport: str = "tcp",
    unit: int = 1,
    port: int | None = None,
    baudrate: int = 9600,
    line: SerialLine | None = None,
    **_opts: Any,
) -> SimHandle:
    """Start a simulated Modbus gate controller on ``world``.

    ``transport``: ``"tcp"`` (loopback, free port) or ``"rtu"`` (on a fresh pty line, or on
    ``line``, an RS-485 line shared with other simulators; ``handle.link["url"]`` is the
    driver's end). Also starts the world's arm physics if nobody runs them yet (and stops
    them on close).
    """
    if line is not None:
        faults = line.faults
    faults = faults if faults is not None else FaultInjector()
    faults.attach_world(world)
    sim = GateSim(world, faults=faults)
    tasks = [
        (sim.auto_close, f"gate-sim-autoclose-{world.lane_id}"),
        (sim.evidence.run, f"gate-sim-evidence-{world.lane_id}"),
    ]
    if world._task is None or world._task.done():
        tasks.append((world.run, f"lane-world-{world.lane_id}"))
    handle = await start_modbus(
        sim, transport=transport, faults=faults, unit=unit, port=port, baudrate=baudrate, line=line, tasks=tasks
    )
    for task in getattr(handle, "_tasks", []):
        if task.get_name() == f"lane-world-{world.lane_id}":
            world._task = task
    return handle
