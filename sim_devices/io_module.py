"""Wire-level simulator of the lane's remote I/O module (Modbus TCP, or RTU on an RS-485 line).

Inputs (entry loop, in-position photocell pair, exit loop, lamp current) are read from the
shared ``LaneWorld`` on every request; the traffic-light coils drive ``world.set_light``.
Map version 2 adds the module's own evidence in input registers: the relay states as a
bitmap (IR 1) and rising/falling edge counters per input (IR 2–9, 16-bit, wrapping — the
counter mode of ADAM-6050 / ioLogik class modules), counted on every change of the world.
Map: ``firmware_config/devices/io_module.yaml`` (data shared with the driver, code not).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .evidence import EdgeCounter
from .faults import FaultInjector
from .line import SerialLine
from .modbus_slave import ILLEGAL_ADDRESS, ILLEGAL_VALUE, SimHandle, load_register_map, start_modbus, table_size
from .world import LaneWorld

__all__ = ["INPUTS", "IoSim", "start_io"]

LAMPS = ("red", "amber", "green")
#: Discrete inputs, in map order, with edge counters.
INPUTS = ("entry_loop", "in_position", "exit_loop", "lamp_ok")


class IoSim:
    """The module's tables over a ``LaneWorld`` (a ``RegisterBank``)."""

    def __init__(self, world: LaneWorld, *, faults: Any = None) -> None:
        self.world = world
        self.faults = faults
        self.map = load_register_map("io_module")
        ix = self.map["index"]
        self.c, self.d, self.i, self.h = (
            ix["coils"],
            ix["discrete_inputs"],
            ix["input_registers"],
            ix["holding_registers"],
        )
        self.sizes = {t: table_size(self.map, t) for t in self.map["tables"]}
        self.outputs = [0] * self.sizes["coils"]
        for name in LAMPS:
            self.outputs[self.c[f"light_{name}"]] = int(world.light == name)
        self.holding = [0] * self.sizes["holding_registers"]
        self.ranges = {int(e["address"]): e.get("range", [0, 0xFFFF]) for e in self.map["tables"]["holding_registers"]}
        self.lamp_broken = False  # fault: the lit lamp draws no current
        self.evidence = EdgeCounter(
            world,
            {
                "entry_loop": lambda: world.entry_loop,
                "in_position": lambda: world.in_position,
                "exit_loop": lambda: world.exit_loop,
                "lamp_ok": lambda: not self.lamp_broken,
            },
        )
        self.requests = 0

    def _inputs(self) -> list[int]:
        levels = {name: read() for name, read in self.evidence.signals.items()}
        bits = [0] * self.sizes["discrete_inputs"]
        for name in INPUTS:
            bits[self.d[name]] = int(levels[name])
        return bits

    def _input_regs(self) -> list[int]:
        ev, i = self.evidence, self.i
        ev.sample()  # the counters are current in every answer
        regs = [0] * self.sizes["input_registers"]
        regs[i["di_bitmap"]] = sum(b << n for n, b in enumerate(self._inputs()))
        regs[i["do_bitmap"]] = sum(b << n for n, b in enumerate(self.outputs))
        for name in INPUTS:
            regs[i[f"{name}_rising"]] = ev.rising[name]
            regs[i[f"{name}_falling"]] = ev.falling[name]
        return regs

    def _apply_light(self) -> None:
        lit = [name for name in LAMPS if self.outputs[self.c[f"light_{name}"]]]
        # Several lamps at once is a wiring/driver error; the world shows the most restrictive.
        self.world.set_light(lit[0] if lit else "off")

    # -- RegisterBank
    def read(self, table: str, address: int, count: int) -> list[int] | int:
        self.requests += 1
        if address + count > self.sizes.get(table, 0):
            return ILLEGAL_ADDRESS
        tables: dict[str, Callable[[], list[int]]] = {
            "coils": lambda: list(self.outputs),
            "discrete_inputs": self._inputs,
            "input_registers": self._input_regs,
            "holding_registers": lambda: list(self.holding),
        }
        return tables[table]()[address : address + count]

    def write(self, table: str, address: int, values: list[int]) -> int:
        self.requests += 1
        if address + len(values) > self.sizes.get(table, 0):
            return ILLEGAL_ADDRESS
        if table == "coils":
            for offset, v in enumerate(values):
                self.outputs[address + offset] = int(bool(v))
            self._apply_light()
            return 0
        for offset, v in enumerate(values):
            lo, hi = self.ranges.get(address + offset, [0, 0xFFFF])
            if not lo <= v <= hi:
                return ILLEGAL_VALUE
        for offset, v in enumerate(values):
            self.holding[address + offset] = v
        return 0


async def start_io(
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
    """Start a simulated remote I/O module on ``world`` (loopback TCP by default; ``"rtu"`` on
    a fresh pty line or on ``line``, shared with other simulators)."""
    if line is not None:
        faults = line.faults
    faults = faults if faults is not None else FaultInjector()
    sim = IoSim(world, faults=faults)
    return await start_modbus(
        sim,
        transport=transport,
        faults=faults,
        unit=unit,
        port=port,
        baudrate=baudrate,
        line=line,
        name="ttyIO",
        tasks=[(sim.evidence.run, f"io-sim-evidence-{world.lane_id}")],
    )
