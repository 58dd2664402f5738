"""Wire-level simulator of the lane's remote I/O module (Modbus TCP, or RTU on a pty).

Inputs (entry loop, in-position photocell pair, exit loop, lamp current) are read from the
shared ``LaneWorld`` on every request; the traffic-light coils drive ``world.set_light``.
Map: ``firmware_config/devices/io_module.yaml`` (data shared with the driver, code not).
"""

from __future__ import annotations

from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.simulator import SimDevice

from .modbus_gate import (
    FC_TABLE,
    ModbusSimHandle,
    bits_table,
    load_register_map,
    make_faults,
    regs_table,
    request_fault,
    serve_modbus,
    set_bit_block,
    set_reg_block,
    table_size,
)
from .world import LaneWorld

__all__ = ["IoSim", "start_io"]

LAMPS = ("red", "amber", "green")


class IoSim:
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
        self.outputs = [False] * table_size(self.map, "coils")
        self.outputs[self.c["light_red"]] = world.light == "red"
        self.outputs[self.c["light_amber"]] = world.light == "amber"
        self.outputs[self.c["light_green"]] = world.light == "green"
        self.holding = [0] * table_size(self.map, "holding_registers")
        self.lamp_broken = False  # fault: the lit lamp draws no current
        self.requests = 0

    def device(self, unit: int) -> SimDevice:
        m = self.map
        return SimDevice(
            id=unit,
            simdata=(
                bits_table(16),
                bits_table(16),
                regs_table(table_size(m, "holding_registers")),
                regs_table(table_size(m, "input_registers")),
            ),
            action=self.action,
        )

    def _inputs(self) -> list[bool]:
        w = self.world
        bits = [False] * table_size(self.map, "discrete_inputs")
        bits[self.d["entry_loop"]] = w.entry_loop
        bits[self.d["in_position"]] = w.in_position
        bits[self.d["exit_loop"]] = w.exit_loop
        bits[self.d["lamp_ok"]] = not self.lamp_broken
        return bits

    def _apply_light(self) -> None:
        lit = [name for name in LAMPS if self.outputs[self.c[f"light_{name}"]]]
        # Several lamps at once is a wiring/driver error; the world shows the most restrictive.
        colour = lit[0] if lit else "off"
        self.world.set_light(colour)

    async def action(
        self, fc: int, start: int, address: int, count: int, regs: list[int], values: list[int] | list[bool] | None
    ) -> ExcCodes | None:
        if (exc := await request_fault(self, fc, values)) is not None:
            return exc
        table = FC_TABLE.get(fc)
        if table == "coils":
            if values is not None:
                for offset, v in enumerate(values):
                    if address + offset < len(self.outputs):
                        self.outputs[address + offset] = bool(v)
                self._apply_light()
                return None
            set_bit_block(regs, start, self.outputs)
        elif table == "discrete_inputs":
            set_bit_block(regs, start, self._inputs())
        elif table == "input_registers":
            bitmap = sum(1 << n for n, b in enumerate(self._inputs()) if b)
            set_reg_block(regs, start, [bitmap])
        elif table == "holding_registers":
            if values is not None:
                ranges = {
                    int(e["address"]): e.get("range", [0, 0xFFFF]) for e in self.map["tables"]["holding_registers"]
                }
                for offset, v in enumerate(values):
                    lo, hi = ranges.get(address + offset, [0, 0xFFFF])
                    if not lo <= int(v) <= hi:
                        return ExcCodes.ILLEGAL_VALUE
                for offset, v in enumerate(values):
                    self.holding[address + offset] = int(v)
                return None
            set_reg_block(regs, start, self.holding)
        return None


async def start_io(
    world: LaneWorld,
    *,
    faults: Any = None,
    transport: str = "tcp",
    unit: int = 1,
    port: int | None = None,
    **_opts: Any,
) -> ModbusSimHandle:
    """Start a simulated remote I/O module on ``world`` (loopback TCP by default)."""
    faults = make_faults(faults)
    sim = IoSim(world, faults=faults)
    handle = await serve_modbus([sim.device(unit)], transport=transport, faults=faults, unit=unit, port=port)
    handle.sim = sim  # type: ignore[attr-defined]
    return handle
