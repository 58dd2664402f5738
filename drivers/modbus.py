"""The one place pymodbus is wrapped: a Modbus link (TCP or RTU) with typed errors.

Wire format, for a reader of captures:

* **Modbus TCP** (port 502): MBAP header ``<tid:2> <proto=0000:2> <len:2> <unit:1>`` then
  the PDU ``<fc:1> <data>``. No CRC; TCP guarantees integrity.
* **Modbus RTU** (RS-485): ``<unit:1> <fc:1> <data> <crc16 lo> <crc16 hi>``, frames
  separated by 3.5 character times of silence; CRC-16/MODBUS (poly 0xA001, init 0xFFFF).
* An exception answer sets the top bit of the function code and carries one byte of
  exception code: ``01 83 02 C0 F1`` = unit 1, exception to FC03, code 02 (illegal
  data address).

Error translation (all of it here, always ``raise ... from exc``)::

    DeviceError
     ├── DeviceUnavailableError   connect refused / port missing / link dropped
     ├── DeviceTimeoutError       no answer within the per-call deadline
     └── DeviceProtocolError      garbled answer
          └── ModbusExceptionError  the slave answered with exception ``code``

pymodbus' own retry and auto-reconnect are switched off (``retries=0``,
``reconnect_delay=0``): the per-device supervisor owns retrying and reconnecting, so there
is exactly one retry policy in the system. ``asyncio.CancelledError`` is never caught.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse, ModbusPDU

from .base import reraise_lost_cancel
from .config import DeviceConfig, SerialLink, TcpLink
from .errors import DeviceProtocolError, DeviceTimeoutError, DeviceUnavailableError

__all__ = [
    "EXCEPTION_NAMES",
    "ModbusExceptionError",
    "ModbusLink",
    "RegisterMap",
    "ascii_from_registers",
    "ascii_to_registers",
    "u32",
]

T = TypeVar("T")

#: Standard Modbus exception codes (Modbus Application Protocol v1.1b3, §7).
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}

#: Deadline for opening the link: a TCP handshake on a lane LAN is < 10 ms; a serial
#: port opens locally. Two seconds covers a switch port that is still negotiating.
CONNECT_TIMEOUT_S = 2.0


class ModbusExceptionError(DeviceProtocolError):
    """The slave answered with a Modbus exception response; ``code`` is its exception code."""

    def __init__(self, message: str, *, device: str = "", code: int = 0, function_code: int = 0) -> None:
        super().__init__(message, device=device)
        self.code = code
        self.function_code = function_code


class ModbusLink:
    """One Modbus connection (TCP socket or RTU serial port) addressing one unit id.

    ``timeout`` is the per-request deadline handed to pymodbus *and* enforced around each
    call here, so that a late RTU answer cannot be mistaken for the next request's.
    """

    def __init__(self, device_id: str, config: DeviceConfig, *, timeout: float | None = None) -> None:
        self.device_id = device_id
        self.config = config
        self.unit = config.unit
        self.timeout = config.timeout_s if timeout is None else timeout
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        link = config.link
        if not isinstance(link, TcpLink | SerialLink):
            raise DeviceUnavailableError(
                f"a Modbus device needs a tcp or serial link, not {link.kind}", device=device_id
            )

    # ------------------------------------------------------------------ lifecycle
    def _make_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        link = self.config.link
        if isinstance(link, TcpLink):
            return AsyncModbusTcpClient(
                link.host, port=link.port, timeout=self.timeout, retries=0, reconnect_delay=0, name=self.device_id
            )
        assert isinstance(link, SerialLink)
        return AsyncModbusSerialClient(
            link.url,
            framer=FramerType.RTU,
            baudrate=link.baudrate,
            bytesize=link.bytesize,
            parity=link.parity,
            stopbits=link.stopbits,
            timeout=self.timeout,
            retries=0,
            reconnect_delay=0,
            name=self.device_id,
        )

    async def connect(self) -> None:
        await self.close()
        client = self._make_client()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                ok = await client.connect()
        except TimeoutError as exc:
            client.close()
            raise DeviceUnavailableError(f"connect to {self._where()} timed out", device=self.device_id) from exc
        except (OSError, ModbusException) as exc:
            client.close()
            raise DeviceUnavailableError(f"cannot open {self._where()}: {exc}", device=self.device_id) from exc
        if not ok:
            client.close()
            raise DeviceUnavailableError(f"cannot connect to {self._where()}", device=self.device_id)
        self._client = client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    def _where(self) -> str:
        link = self.config.link
        if isinstance(link, TcpLink):
            return f"{link.host}:{link.port}"
        assert isinstance(link, SerialLink)
        return link.url

    # ------------------------------------------------------------------ transactions
    async def _do(self, what: str, call: Callable[[Any], Awaitable[ModbusPDU]]) -> ModbusPDU:
        client = self._client
        if client is None or not client.connected:
            raise DeviceUnavailableError(f"{self._where()} is not connected", device=self.device_id)
        try:
            # Outer guard slightly beyond pymodbus' own deadline: pymodbus should answer
            # first (so its transaction state is clean); this catches anything it misses.
            async with asyncio.timeout(self.timeout * 1.5 + 0.05):
                pdu = await call(client)
            reraise_lost_cancel()  # pymodbus' wait_for can lose a cancellation on 3.11
        except TimeoutError as exc:
            raise DeviceTimeoutError(
                f"{what}: no answer from unit {self.unit} in {self.timeout:g} s", device=self.device_id
            ) from exc
        except ConnectionException as exc:
            raise DeviceUnavailableError(f"{what}: link to {self._where()} lost: {exc}", device=self.device_id) from exc
        except ModbusIOException as exc:
            if not client.connected:
                raise DeviceUnavailableError(f"{what}: link to {self._where()} lost", device=self.device_id) from exc
            raise DeviceTimeoutError(
                f"{what}: no answer from unit {self.unit} in {self.timeout:g} s", device=self.device_id
            ) from exc
        except ModbusException as exc:
            raise DeviceProtocolError(f"{what}: {exc}", device=self.device_id) from exc
        except OSError as exc:
            raise DeviceUnavailableError(f"{what}: {exc}", device=self.device_id) from exc
        if isinstance(pdu, ExceptionResponse) or pdu.isError():
            code = int(getattr(pdu, "exception_code", 0))
            name = EXCEPTION_NAMES.get(code, "unknown")
            raise ModbusExceptionError(
                f"{what}: exception {code:02X} ({name}) from unit {self.unit}",
                device=self.device_id,
                code=code,
                function_code=int(getattr(pdu, "function_code", 0)),
            )
        return pdu

    async def read_coils(self, address: int, count: int = 1) -> list[bool]:
        pdu = await self._do(
            f"read coils {address}+{count}", lambda c: c.read_coils(address, count=count, device_id=self.unit)
        )
        return list(pdu.bits[:count])

    async def read_discrete_inputs(self, address: int, count: int = 1) -> list[bool]:
        pdu = await self._do(
            f"read discrete inputs {address}+{count}",
            lambda c: c.read_discrete_inputs(address, count=count, device_id=self.unit),
        )
        return list(pdu.bits[:count])

    async def read_holding_registers(self, address: int, count: int = 1) -> list[int]:
        pdu = await self._do(
            f"read holding registers {address}+{count}",
            lambda c: c.read_holding_registers(address, count=count, device_id=self.unit),
        )
        return list(pdu.registers[:count])

    async def read_input_registers(self, address: int, count: int = 1) -> list[int]:
        pdu = await self._do(
            f"read input registers {address}+{count}",
            lambda c: c.read_input_registers(address, count=count, device_id=self.unit),
        )
        return list(pdu.registers[:count])

    async def write_coil(self, address: int, value: bool) -> None:
        await self._do(
            f"write coil {address}={int(value)}", lambda c: c.write_coil(address, value, device_id=self.unit)
        )

    async def write_coils(self, address: int, values: list[bool]) -> None:
        await self._do(
            f"write coils {address}+{len(values)}", lambda c: c.write_coils(address, values, device_id=self.unit)
        )

    async def write_register(self, address: int, value: int) -> None:
        await self._do(
            f"write register {address}={value}", lambda c: c.write_register(address, value, device_id=self.unit)
        )

    async def write_registers(self, address: int, values: list[int]) -> None:
        await self._do(
            f"write registers {address}+{len(values)}",
            lambda c: c.write_registers(address, values, device_id=self.unit),
        )


def u32(hi: int, lo: int) -> int:
    """Two registers, high word first (the project maps are big-endian word order)."""
    return (hi << 16) | lo


def ascii_from_registers(regs: list[int]) -> str:
    """Two ASCII characters per register, high byte first, NUL padded."""
    raw = b"".join(r.to_bytes(2, "big") for r in regs)
    return raw.split(b"\0", 1)[0].decode("ascii", errors="replace")


def ascii_to_registers(text: str, count: int) -> list[int]:
    raw = text.encode("ascii", errors="replace")[: count * 2].ljust(count * 2, b"\0")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, count * 2, 2)]


class RegisterMap:
    """Addresses by (table, name) from ``firmware_config/devices/<name>.yaml``.

    The map is data shared with the simulators; this reader is the driver's own.
    """

    def __init__(self, name: str) -> None:
        from pathlib import Path

        import portlane.firmware_config as fc
        import yaml

        # A namespace package under an editable install: take the first real directory.
        paths = [Path(p) / "devices" / f"{name}.yaml" for p in fc.__path__]
        path = next((p for p in paths if p.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"firmware_config/devices/{name}.yaml")
        self.data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        self.name = name
        self._addr: dict[tuple[str, str], tuple[int, int]] = {}
        for table, entries in self.data["tables"].items():
            for e in entries:
                self._addr[(table, e["name"])] = (int(e["address"]), int(e.get("words", 1)))

    def addr(self, table: str, name: str) -> int:
        return self._addr[(table, name)][0]

    def words(self, table: str, name: str) -> int:
        return self._addr[(table, name)][1]

    def span(self, table: str) -> int:
        """Number of addresses from 0 to the end of the table's last entry (one read covers it)."""
        return max(a + n for (t, _), (a, n) in self._addr.items() if t == table)
