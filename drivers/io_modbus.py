"""Lane remote I/O module over Modbus TCP (or RTU): loops and photocells in, traffic light out.

``read_inputs`` is one FC04 read of input registers 0–9 (map version 2): the discrete
inputs as a bitmap (entry loop, in-position photocell pair, exit loop, lamp-current OK), the
relay outputs as a bitmap (which lamp is lit), and the module's per-input edge counters —
one request, one consistent snapshot, and the evidence of a vehicle that came and went
between two polls. The light is one FC15 write of coils 0–2 (red, amber, green) so that the
lamps change together — two single-coil writes would show two colours for a moment.
Map: ``firmware_config/devices/io_module.yaml``.
"""

from __future__ import annotations

from typing import Any

from .base import EdgeCounts, IoDriver, LaneInputs, LightColour
from .bus import Rs485Bus
from .config import DeviceConfig
from .modbus import ModbusLink, RegisterMap

__all__ = ["ModbusIo"]

_LAMPS = (LightColour.RED, LightColour.AMBER, LightColour.GREEN)
_MAP: RegisterMap | None = None


def _map() -> RegisterMap:
    global _MAP
    if _MAP is None:
        _MAP = RegisterMap("io_module")
    return _MAP


class ModbusIo(IoDriver):
    def __init__(self, device_id: str, config: DeviceConfig, **bus_opts: Any) -> None:
        self.config = config
        self.map = _map()
        self.link = ModbusLink(device_id, config, **bus_opts)
        super().__init__(device_id, timeout=self.link.call_deadline(1))
        self.lamp_ok = True  # last lamp-current reading; False = the lit lamp is broken

    @property
    def bus(self) -> Rs485Bus | None:
        return self.link.bus

    async def _connect(self) -> None:
        await self.link.connect()

    async def _close(self) -> None:
        await self.link.close()

    async def _read_inputs(self) -> LaneInputs:
        m = self.map
        ir = await self.link.read_input_registers(0, m.span("input_registers"))

        def reg(name: str) -> int:
            return ir[m.addr("input_registers", name)]

        di, do = reg("di_bitmap"), reg("do_bitmap")

        def di_bit(name: str) -> bool:
            return bool(di >> m.addr("discrete_inputs", name) & 1)

        def edges(name: str) -> EdgeCounts:
            return EdgeCounts(reg(f"{name}_rising"), reg(f"{name}_falling"))

        lit = [c for c in _LAMPS if do >> m.addr("coils", f"light_{c}") & 1]
        self.lamp_ok = di_bit("lamp_ok")
        return LaneInputs(
            entry_loop=di_bit("entry_loop"),
            in_position=di_bit("in_position"),
            exit_loop=di_bit("exit_loop"),
            light=lit[0] if lit else LightColour.OFF,
            entry_loop_edges=edges("entry_loop"),
            in_position_edges=edges("in_position"),
            exit_loop_edges=edges("exit_loop"),
        )

    async def _set_light(self, colour: LightColour) -> None:
        pattern = self.map.data["light_patterns"][str(colour)]
        first = self.map.addr("coils", "light_red")
        await self.link.write_coils(first, [bool(v) for v in pattern])
