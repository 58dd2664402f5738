"""The one place Modbus is spoken: a link to one slave, over TCP or over a shared RS-485 line.

Wire format, for a reader of captures:

* **Modbus TCP** (port 502): MBAP header ``<tid:2> <proto=0000:2> <len:2> <unit:1>`` then
  the PDU ``<fc:1> <data>``. No CRC; TCP guarantees integrity.
* **Modbus RTU** (RS-485): ``<unit:1> <fc:1> <data> <crc16 lo> <crc16 hi>``, frames
  separated by 3.5 character times of silence (``drivers.modbus_rtu``).
* An exception answer sets the top bit of the function code and carries one byte of
  exception code: ``01 83 02 C0 F1`` = unit 1, exception to FC03, code 02 (illegal
  data address).

Both transports take the same request PDUs (pymodbus' classes build and parse them):

* **TCP**: pymodbus' ``AsyncModbusTcpClient`` (one socket per slave; nothing is shared).
* **RTU**: the request is framed here (``modbus_rtu``) and goes through the RS-485 bus
  scheduler (``drivers.bus``) that every protocol on that serial port shares: one lock per
  physical port, the 3.5-character inter-frame gap before every request, stale input
  discarded, a circuit breaker per slave address. A Modbus I/O module and a framed-protocol
  gate controller on one line therefore never talk over each other. pymodbus' own serial
  client is not used: it owns its port and knows nothing of the other protocols on it.

Error translation (all of it here, always ``raise ... from exc``)::

    DeviceError
     ├── DeviceUnavailableError   connect refused / port missing / link dropped / slave isolated
     ├── DeviceTimeoutError       no answer within the per-request deadline
     └── DeviceProtocolError      garbled answer (bad CRC, undecodable)
          └── ModbusExceptionError  the slave answered with exception ``code`` (``name``)

pymodbus' own retry and auto-reconnect are switched off (``retries=0``,
``reconnect_delay=0``): the per-device supervisor owns retrying and reconnecting, so there
is exactly one retry policy in the system. ``asyncio.CancelledError`` is never caught.
"""

from __future__ import annotations

import asyncio
import importlib.resources
from typing import Any, Protocol

import yaml
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.pdu.bit_message import (
    ReadCoilsRequest,
    ReadDiscreteInputsRequest,
    WriteMultipleCoilsRequest,
    WriteSingleCoilRequest,
)
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
    WriteMultipleRegistersRequest,
    WriteSingleRegisterRequest,
)

from .base import reraise_lost_cancel
from .bus import Rs485Bus, Urgency, bus_for
from .config import DeviceConfig, SerialLink, TcpLink
from .errors import (
    MODBUS_EXCEPTION_NAMES,
    DeviceProtocolError,
    DeviceTimeoutError,
    DeviceUnavailableError,
    ModbusExceptionError,
)
from .modbus_rtu import encode_request, reply_decoder

__all__ = [
    "EXCEPTION_NAMES",
    "ModbusExceptionError",
    "ModbusLink",
    "RegisterMap",
    "ascii_from_registers",
    "ascii_to_registers",
    "u32",
]

#: Kept for readers of older code: the names now live with the exception in ``drivers.errors``.
EXCEPTION_NAMES = MODBUS_EXCEPTION_NAMES

#: Deadline for opening the link: a TCP handshake on a lane LAN is < 10 ms; a serial
#: port opens locally. Two seconds covers a switch port that is still negotiating.
CONNECT_TIMEOUT_S = 2.0


class _Transport(Protocol):
    @property
    def connected(self) -> bool: ...

    def where(self) -> str: ...

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def transact(self, what: str, request: ModbusPDU, urgency: Urgency) -> ModbusPDU: ...


class _TcpTransport:
    """pymodbus' TCP client; its exceptions are translated here."""

    def __init__(self, device_id: str, link: TcpLink, timeout: float) -> None:
        self.device_id = device_id
        self.link = link
        self.timeout = timeout
        self._client: AsyncModbusTcpClient | None = None

    def where(self) -> str:
        return f"{self.link.host}:{self.link.port}"

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def connect(self) -> None:
        await self.close()
        client = AsyncModbusTcpClient(
            self.link.host,
            port=self.link.port,
            timeout=self.timeout,
            retries=0,
            reconnect_delay=0,
            name=self.device_id,
        )
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                ok = await client.connect()
        except TimeoutError as exc:
            client.close()
            raise DeviceUnavailableError(f"connect to {self.where()} timed out", device=self.device_id) from exc
        except (OSError, ModbusException) as exc:
            client.close()
            raise DeviceUnavailableError(f"cannot open {self.where()}: {exc}", device=self.device_id) from exc
        if not ok:
            client.close()
            raise DeviceUnavailableError(f"cannot connect to {self.where()}", device=self.device_id)
        self._client = client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def transact(self, what: str, request: ModbusPDU, urgency: Urgency) -> ModbusPDU:
        # ``urgency`` has nothing to order here: one socket per slave, one request at a time.
        client = self._client
        if client is None or not client.connected:
            raise DeviceUnavailableError(f"{self.where()} is not connected", device=self.device_id)
        try:
            # Outer guard slightly beyond pymodbus' own deadline: pymodbus should answer
            # first (so its transaction state is clean); this catches anything it misses.
            async with asyncio.timeout(self.timeout * 1.5 + 0.05):
                reply: ModbusPDU = await client.execute(False, request)
            reraise_lost_cancel()  # pymodbus' wait_for can lose a cancellation on 3.11
        except TimeoutError as exc:
            raise DeviceTimeoutError(
                f"{what}: no answer from unit {request.dev_id} in {self.timeout:g} s", device=self.device_id
            ) from exc
        except ConnectionException as exc:
            raise DeviceUnavailableError(f"{what}: link to {self.where()} lost: {exc}", device=self.device_id) from exc
        except ModbusIOException as exc:
            if not client.connected:
                raise DeviceUnavailableError(f"{what}: link to {self.where()} lost", device=self.device_id) from exc
            raise DeviceTimeoutError(
                f"{what}: no answer from unit {request.dev_id} in {self.timeout:g} s", device=self.device_id
            ) from exc
        except ModbusException as exc:
            raise DeviceProtocolError(f"{what}: {exc}", device=self.device_id) from exc
        except OSError as exc:
            raise DeviceUnavailableError(f"{what}: {exc}", device=self.device_id) from exc
        return reply


class _RtuTransport:
    """Modbus RTU frames through the RS-485 bus scheduler shared with every other protocol
    on the same serial port (see the module docstring)."""

    def __init__(self, device_id: str, link: SerialLink, timeout: float, bus_opts: dict[str, Any]) -> None:
        self.device_id = device_id
        self.link = link
        self.timeout = timeout
        self._bus_opts = bus_opts
        self.bus: Rs485Bus | None = None

    def where(self) -> str:
        return self.link.url

    @property
    def connected(self) -> bool:
        return self.bus is not None

    async def connect(self) -> None:
        if self.bus is not None:
            return
        bus = bus_for(self.link, **self._bus_opts)
        await bus.acquire(self.device_id)
        self.bus = bus

    async def close(self) -> None:
        bus, self.bus = self.bus, None
        if bus is not None:
            await bus.release(self.device_id)

    async def transact(self, what: str, request: ModbusPDU, urgency: Urgency) -> ModbusPDU:
        bus = self.bus
        if bus is None:
            raise DeviceUnavailableError(f"{self.where()} is not connected", device=self.device_id)
        unit = request.dev_id
        try:
            reply = await bus.transact(
                unit,
                encode_request(unit, request),
                reply_decoder(unit, request),
                reply_timeout_s=self.timeout,
                urgency=urgency,
            )
        except TimeoutError as exc:
            if isinstance(exc, DeviceTimeoutError):
                raise
            raise DeviceTimeoutError(
                f"{what}: no answer from unit {unit} on {bus.name} in {self.timeout:g} s", device=self.device_id
            ) from exc
        assert reply is not None
        return reply.pdu


class ModbusLink:
    """One Modbus slave (``config.unit``) over TCP or RTU, chosen by the link kind.

    ``timeout`` is the deadline of one request/answer on the wire. Over RTU it starts when
    the request is sent, after the wait for the shared line, which the owning device's
    deadline covers (``call_deadline``).
    """

    def __init__(self, device_id: str, config: DeviceConfig, *, timeout: float | None = None, **bus_opts: Any) -> None:
        self.device_id = device_id
        self.config = config
        self.unit = config.unit
        self.timeout = config.timeout_s if timeout is None else timeout
        link = config.link
        self.transport: _Transport
        if isinstance(link, TcpLink):
            self.transport = _TcpTransport(device_id, link, self.timeout)
        elif isinstance(link, SerialLink):
            self.transport = _RtuTransport(device_id, link, self.timeout, bus_opts)
        else:
            raise DeviceUnavailableError(
                f"a Modbus device needs a tcp or serial link, not {link.kind}", device=device_id
            )

    def call_deadline(self, transactions: int) -> float:
        """Deadline of a device call made of ``transactions`` requests: each may also wait
        behind one other slave's timeout on a shared line."""
        return (transactions + 1) * self.timeout + 0.05

    # ------------------------------------------------------------------ lifecycle
    async def connect(self) -> None:
        await self.transport.connect()

    async def close(self) -> None:
        await self.transport.close()

    @property
    def connected(self) -> bool:
        return self.transport.connected

    @property
    def bus(self) -> Rs485Bus | None:
        """The shared RS-485 bus of an RTU link (None over TCP or before ``connect``)."""
        return self.transport.bus if isinstance(self.transport, _RtuTransport) else None

    # ------------------------------------------------------------------ transactions
    async def execute(self, what: str, request: ModbusPDU, *, urgency: Urgency = Urgency.ROUTINE) -> ModbusPDU:
        """Send ``request`` to this link's unit; an exception answer raises ``ModbusExceptionError``.
        ``urgency`` orders it on a shared RS-485 line (``drivers.bus.Turns``)."""
        request.dev_id = self.unit
        reply = await self.transport.transact(what, request, urgency)
        if isinstance(reply, ExceptionResponse) or reply.isError():
            code = int(reply.exception_code)
            name = MODBUS_EXCEPTION_NAMES.get(code, "unknown")
            raise ModbusExceptionError(
                f"{what}: exception {code:02X} ({name}) from unit {self.unit}",
                device=self.device_id,
                code=code,
                function_code=request.function_code,
            )
        return reply

    def _bad(self, what: str, why: str) -> DeviceProtocolError:
        return DeviceProtocolError(f"{what}: malformed answer from unit {self.unit}: {why}", device=self.device_id)

    async def _read_bits(self, what: str, request: ModbusPDU, count: int) -> list[bool]:
        pdu = await self.execute(what, request)
        # Bits come packed 8 to a byte: a short answer decodes to fewer than ``count``.
        if len(pdu.bits) < count:
            raise self._bad(what, f"{len(pdu.bits)} bits for {count}")
        return [bool(b) for b in pdu.bits[:count]]

    async def _read_registers(self, what: str, request: ModbusPDU, count: int) -> list[int]:
        pdu = await self.execute(what, request)
        # pymodbus decodes whatever byte count the answer states; a well-framed answer with
        # the wrong number of registers (a buggy or garbled device) is caught here.
        if len(pdu.registers) != count:
            raise self._bad(what, f"{len(pdu.registers)} registers for {count}")
        return list(pdu.registers)

    async def _write(self, what: str, request: ModbusPDU, urgency: Urgency = Urgency.ROUTINE) -> None:
        pdu = await self.execute(what, request, urgency=urgency)
        if pdu.address != request.address:
            raise self._bad(what, f"the echo names address {pdu.address}")

    async def read_coils(self, address: int, count: int = 1) -> list[bool]:
        what = f"read coils {address}+{count}"
        return await self._read_bits(what, ReadCoilsRequest(address=address, count=count), count)

    async def read_discrete_inputs(self, address: int, count: int = 1) -> list[bool]:
        what = f"read discrete inputs {address}+{count}"
        return await self._read_bits(what, ReadDiscreteInputsRequest(address=address, count=count), count)

    async def read_holding_registers(self, address: int, count: int = 1) -> list[int]:
        what = f"read holding registers {address}+{count}"
        return await self._read_registers(what, ReadHoldingRegistersRequest(address=address, count=count), count)

    async def read_input_registers(self, address: int, count: int = 1) -> list[int]:
        what = f"read input registers {address}+{count}"
        return await self._read_registers(what, ReadInputRegistersRequest(address=address, count=count), count)

    async def write_coil(self, address: int, value: bool, *, urgency: Urgency = Urgency.ROUTINE) -> None:
        what = f"write coil {address}={int(value)}"
        await self._write(what, WriteSingleCoilRequest(address=address, bits=[value]), urgency)

    async def write_coils(self, address: int, values: list[bool]) -> None:
        what = f"write coils {address}+{len(values)}"
        await self._write(what, WriteMultipleCoilsRequest(address=address, bits=values))

    async def write_register(self, address: int, value: int) -> None:
        what = f"write register {address}={value}"
        await self._write(what, WriteSingleRegisterRequest(address=address, registers=[value]))

    async def write_registers(self, address: int, values: list[int]) -> None:
        what = f"write registers {address}+{len(values)}"
        await self._write(what, WriteMultipleRegistersRequest(address=address, registers=values))


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
        path = importlib.resources.files("portlane.firmware_config") / "devices" / f"{name}.yaml"
        if not path.is_file():
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
