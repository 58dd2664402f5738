"""Lane remote I/O module over Modbus TCP (or RTU): loops and photocells in, traffic light out.

Inputs are one FC02 read of DI 0–3 (entry loop, in-position photocell pair, exit loop,
lamp-current OK); the light is one FC15 write of coils 0–2 (red, amber, green) so that the
lamps change together — two single-coil writes would show two colours for a moment.
Map: ``firmware_config/devices/io_module.yaml``.
"""

from __future__ import annotations

from .base import IoDriver, LaneInputs, LightColour
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
    def __init__(self, device_id: str, config: DeviceConfig) -> None:
        super().__init__(device_id, timeout=config.timeout_s)
        self.config = config
        self.map = _map()
        self.link = ModbusLink(device_id, config)
        self.lamp_ok = True  # last lamp-current reading; False = the lit lamp is broken

    async def _connect(self) -> None:
        await self.link.connect()

    async def _close(self) -> None:
        await self.link.close()

    async def _read_inputs(self) -> LaneInputs:
        m = self.map
        di = await self.link.read_discrete_inputs(0, m.span("discrete_inputs"))
        coils = await self.link.read_coils(0, 3)
        lit = [c for c, on in zip(_LAMPS, coils, strict=True) if on]
        self.lamp_ok = di[m.addr("discrete_inputs", "lamp_ok")]
        return LaneInputs(
            entry_loop=di[m.addr("discrete_inputs", "entry_loop")],
            in_position=di[m.addr("discrete_inputs", "in_position")],
            exit_loop=di[m.addr("discrete_inputs", "exit_loop")],
            light=lit[0] if lit else LightColour.OFF,
        )

    async def _set_light(self, colour: LightColour) -> None:
        pattern = self.map.data["light_patterns"][str(colour)]
        first = self.map.addr("coils", "light_red")
        await self.link.write_coils(first, [bool(v) for v in pattern])
