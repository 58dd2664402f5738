"""Barrier gate controller over Modbus RTU (RS-485) or Modbus TCP.

One class for both: the link kind in the configuration (``serial`` or ``tcp``) picks the
transport; the register map (``firmware_config/devices/gate_modbus.yaml``) is the same.

Commands are pulses on coils 0/1/2 (open/close/stop, FC05 ``FF00``); coil 3 latches
"locked closed". A controller that refuses a command (locked, faulted, vehicle under the
arm) answers exception 04; this driver turns that into ``DeviceFaultError`` carrying the
controller's fault code, so the lane sees *why* rather than a bare protocol error.

Status is three reads per poll (FC01 coils 0–3, FC02 inputs 0–6, FC04 registers 0–4),
about 2 ms over TCP on a lane LAN and ~60 ms at 9600 bit/s on RS-485.
"""

from __future__ import annotations

from .base import GateDriver, GatePosition, GateStatus
from .config import DeviceConfig
from .errors import DeviceFaultError
from .modbus import ModbusExceptionError, ModbusLink, RegisterMap, u32

__all__ = ["ModbusGate"]

#: Modbus exception code a controller answers when it refuses a command.
REFUSED = 4

_MAP: RegisterMap | None = None


def _map() -> RegisterMap:
    global _MAP
    if _MAP is None:
        _MAP = RegisterMap("gate_modbus")
    return _MAP


class ModbusGate(GateDriver):
    def __init__(self, device_id: str, config: DeviceConfig) -> None:
        super().__init__(device_id, timeout=config.timeout_s)
        self.config = config
        self.map = _map()
        self.link = ModbusLink(device_id, config)

    async def _connect(self) -> None:
        await self.link.connect()

    async def _close(self) -> None:
        await self.link.close()

    async def _pulse(self, name: str) -> None:
        try:
            await self.link.write_coil(self.map.addr("coils", name), True)
        except ModbusExceptionError as exc:
            if exc.code != REFUSED:
                raise
            why, code = await self._refusal_reason()
            raise DeviceFaultError(
                f"gate refused {name.removeprefix('cmd_')}: {why}", device=self.device_id, code=code
            ) from exc

    async def _refusal_reason(self) -> tuple[str, int]:
        st = await self._status()
        if st.fault_code:
            return f"controller fault {st.fault_code}", st.fault_code
        if st.locked:
            return "locked closed", 0
        if st.something_under_arm:
            return "vehicle under the arm", 0
        return "refused by the controller", 0

    async def _open(self) -> None:
        await self._pulse("cmd_open")

    async def _close_arm(self) -> None:
        await self._pulse("cmd_close")

    async def _stop(self) -> None:
        await self._pulse("cmd_stop")

    async def _lock(self, locked: bool) -> None:
        await self.link.write_coil(self.map.addr("coils", "lock"), locked)

    async def _status(self) -> GateStatus:
        m = self.map
        coils = await self.link.read_coils(0, m.span("coils"))
        di = await self.link.read_discrete_inputs(0, m.span("discrete_inputs"))
        ir = await self.link.read_input_registers(0, m.span("input_registers"))

        def bit(name: str) -> bool:
            return di[m.addr("discrete_inputs", name)]

        raw_state = ir[m.addr("input_registers", "state")]
        try:
            position = GatePosition(raw_state)
        except ValueError:
            position = GatePosition.FAULT
        cyc = m.addr("input_registers", "cycle_counter")
        return GateStatus(
            position=position,
            limit_open=bit("limit_open"),
            limit_closed=bit("limit_closed"),
            photocell_blocked=bit("photocell_blocked"),
            loop_occupied=bit("loop_safety"),
            locked=coils[m.addr("coils", "lock")],
            fault_code=ir[m.addr("input_registers", "fault_code")],
            cycles=u32(ir[cyc], ir[cyc + 1]),
        )

    async def set_auto_close(self, seconds: int) -> None:
        """Controller's own auto-close after fully open (0 = off). Out of range -> exception 03."""
        await self._call(self.link.write_register(self.map.addr("holding_registers", "auto_close_s"), seconds))

    async def set_open_time(self, ms: int) -> None:
        await self._call(self.link.write_register(self.map.addr("holding_registers", "open_time_ms"), ms))
