"""Shared X-ray scanner: the scanner PLC over Modbus TCP (project-defined map).

Status is one FC04 read of input registers 0–20 (state, interlock bits, scan id, result,
fault, echoed vehicle reference, progress, image reference) — one request so that state,
result and scan id are a consistent snapshot. Commands are the PLC handshake: write the
vehicle reference, lane and sequence (FC16 to HR 1–8), then the command word (FC06 HR 0:
1 start, 2 abort, 3 reset). The PLC refuses a command it cannot take with exception 04; the
driver raises ``DeviceFaultError`` for that, with the PLC's fault code.

Safety: the PLC's own interlocks are the first guard (it will not fire with the exclusion
zone open and cuts the beam when the zone opens); ``ScannerDriver.start`` checks the zone
again before asking. Map: ``firmware_config/devices/scanner_plc.yaml``.
"""

from __future__ import annotations

from .config import DeviceConfig
from .errors import DeviceFaultError, ModbusExceptionError
from .modbus import ModbusLink, RegisterMap, ascii_from_registers, ascii_to_registers, u32
from .scanner_device import ScannerDriver, ScannerState, ScannerStatus, ScanResult

__all__ = ["ModbusScanner"]

#: Modbus exception the PLC answers when it refuses a command.
REFUSED = 4
#: Most requests one driver call makes: the start handshake (FC16, FC06) and, when the PLC
#: refuses, the status read saying why.
MAX_REQUESTS_PER_CALL = 3

_MAP: RegisterMap | None = None


def _map() -> RegisterMap:
    global _MAP
    if _MAP is None:
        _MAP = RegisterMap("scanner_plc")
    return _MAP


class ModbusScanner(ScannerDriver):
    def __init__(self, device_id: str, config: DeviceConfig) -> None:
        self.config = config
        self.map = _map()
        self.link = ModbusLink(device_id, config)
        super().__init__(device_id, timeout=self.link.call_deadline(MAX_REQUESTS_PER_CALL))
        self._bits = {k: int(v) for k, v in self.map.data["interlock_bits"].items()}
        self._cmds = {k: int(v) for k, v in self.map.data["commands"].items()}

    async def _connect(self) -> None:
        await self.link.connect()

    async def _close(self) -> None:
        await self.link.close()

    async def _status(self) -> ScannerStatus:
        m = self.map
        ir = await self.link.read_input_registers(0, m.span("input_registers"))

        def reg(name: str) -> int:
            return ir[m.addr("input_registers", name)]

        def text(name: str) -> str:
            a = m.addr("input_registers", name)
            return ascii_from_registers(ir[a : a + m.words("input_registers", name)])

        locks = reg("interlocks")
        try:
            state = ScannerState(reg("state"))
        except ValueError:
            state = ScannerState.FAULT
        try:
            result = ScanResult(reg("result"))
        except ValueError:
            result = ScanResult.NONE
        sid = m.addr("input_registers", "scan_id")
        return ScannerStatus(
            state=state,
            zone_clear=bool(locks >> self._bits["zone_clear"] & 1),
            estop=bool(locks >> self._bits["estop"] & 1),
            radiation_on=bool(locks >> self._bits["radiation_on"] & 1),
            scan_id=u32(ir[sid], ir[sid + 1]),
            result=result,
            fault_code=reg("fault_code"),
            progress_pct=reg("progress_pct"),
            image_ref=text("image_ref"),
        )

    async def _command(self, name: str) -> None:
        try:
            await self.link.write_register(self.map.addr("holding_registers", "cmd"), self._cmds[name])
        except ModbusExceptionError as exc:
            if exc.code != REFUSED:
                raise
            st = await self._status()
            raise DeviceFaultError(
                f"scanner refused {name} (state {st.state.name.lower()}, zone "
                f"{'clear' if st.zone_clear else 'OPEN'}, e-stop {'PRESSED' if st.estop else 'released'})",
                device=self.device_id,
                code=st.fault_code,
            ) from exc

    async def _start(self, *, vehicle_ref: str, lane: int, seq: int) -> None:
        m = self.map
        ref_words = m.words("holding_registers", "vehicle_ref")
        regs = [*ascii_to_registers(vehicle_ref, ref_words), lane & 0xFFFF, seq & 0xFFFF]
        # vehicle_ref, lane_id and truck_seq are contiguous (HR 1..8): one FC16.
        await self.link.write_registers(m.addr("holding_registers", "vehicle_ref"), regs)
        await self._command("start")

    async def _abort(self) -> None:
        await self._command("abort")

    async def _reset(self) -> None:
        await self._command("reset")
