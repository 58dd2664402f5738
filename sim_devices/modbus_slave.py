"""The simulators' Modbus slave: one PDU engine, served over Modbus TCP or on an RS-485 line.

Written here rather than taken from pymodbus' server: the drivers speak Modbus through
pymodbus, and a simulator sharing that code could mirror its bugs; the engine is also what
lets a Modbus RTU device sit on a ``SerialLine`` next to devices of other protocols, and
lets the fault injector answer exactly as a misbehaving device would.

* ``RegisterBank``: what a simulated device exposes — ``read(table, address, count)`` and
  ``write(table, address, values)``, returning a Modbus exception code on refusal. Tables
  are ``coils``, ``discrete_inputs``, ``holding_registers``, ``input_registers``; bits are
  0/1. The device logic (``GateSim``, ``IoSim``, ``ScannerSim``) implements it.
* ``serve_pdu``: one request PDU in, one answer PDU out. Function codes 01–06, 15, 16
  (what the drivers use); anything else gets exception 01 (illegal function), malformed
  requests exception 03, addresses outside a table exception 02. Request-level faults:
  ``faults.take_exception()`` answers with that exception instead.
* ``RtuSlave``: a unit on a ``SerialLine``. Frames are what arrives between two silences of
  3.5 character times (Modbus over Serial Line §2.5.1.1) — the slave needs no knowledge of
  request lengths, and bytes of other protocols on the line are a frame with a bad CRC or
  another address, ignored as a real slave ignores them.
* ``ModbusTcpSim``: MBAP over asyncio streams on loopback; ``unplug`` closes the server and
  its connections (the cable is pulled), ``replug`` listens again on the same port.
* ``start_modbus``: a bank on TCP, on a fresh pty line, or on an existing line.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import socket
import struct
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

import yaml

from .faults import FaultInjector
from .line import SerialLine, crc16_wire
from .pty_port import SerialSimHandle

__all__ = [
    "DEVICE_FAILURE",
    "ILLEGAL_ADDRESS",
    "ILLEGAL_FUNCTION",
    "ILLEGAL_VALUE",
    "ModbusSimHandle",
    "ModbusTcpSim",
    "RegisterBank",
    "RtuSlave",
    "free_tcp_port",
    "load_register_map",
    "serve_pdu",
    "start_modbus",
    "table_size",
]

ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE, DEVICE_FAILURE = 0x01, 0x02, 0x03, 0x04

_READS = {1: "coils", 2: "discrete_inputs", 3: "holding_registers", 4: "input_registers"}
_MAX_READ = {1: 2000, 2: 2000, 3: 125, 4: 125}
#: A TCP client that says nothing for this long is dropped (a real device frees the socket).
IDLE_CLIENT_S = 60.0
#: Bound on sending one answer to a TCP client that stopped reading.
WRITE_TIMEOUT_S = 5.0


class RegisterBank(Protocol):
    def read(self, table: str, address: int, count: int) -> list[int] | int: ...

    def write(self, table: str, address: int, values: list[int]) -> int: ...


# --------------------------------------------------------------------------- register map data


def load_register_map(name: str) -> dict[str, Any]:
    """Read ``firmware_config/devices/<name>.yaml`` and index each table by entry name."""
    path = importlib.resources.files("portlane.firmware_config") / "devices" / f"{name}.yaml"
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    index: dict[str, dict[str, int]] = {}
    for table, entries in data["tables"].items():
        index[table] = {e["name"]: int(e["address"]) for e in entries}
    data["index"] = index
    return data


def table_size(regmap: dict[str, Any], table: str) -> int:
    entries = regmap["tables"].get(table, [])
    return max((int(e["address"]) + int(e.get("words", 1)) for e in entries), default=0)


# --------------------------------------------------------------------------- the PDU engine


def serve_pdu(bank: RegisterBank, pdu: bytes, faults: FaultInjector | None = None) -> bytes:
    """Answer one request PDU (function code + data) from ``bank``."""
    if not pdu:
        return bytes([0x80, ILLEGAL_FUNCTION])
    fc = pdu[0]

    def exception(code: int) -> bytes:
        return bytes([fc | 0x80, code])

    if faults is not None and (code := faults.take_exception()):
        return exception(code)
    try:
        if fc in _READS:
            address, count = struct.unpack(">HH", pdu[1:5])
            if not 1 <= count <= _MAX_READ[fc] or len(pdu) != 5:
                return exception(ILLEGAL_VALUE)
            values = bank.read(_READS[fc], address, count)
            if isinstance(values, int):
                return exception(values)
            if fc in (1, 2):
                packed = bytearray((count + 7) // 8)
                for i, v in enumerate(values):
                    if v:
                        packed[i // 8] |= 1 << (i % 8)
                return bytes([fc, len(packed)]) + bytes(packed)
            data = b"".join((v & 0xFFFF).to_bytes(2, "big") for v in values)
            return bytes([fc, len(data)]) + data
        if fc in (5, 6):
            address, value = struct.unpack(">HH", pdu[1:5])
            if fc == 5 and value not in (0xFF00, 0x0000):
                return exception(ILLEGAL_VALUE)
            table, vals = ("coils", [int(value == 0xFF00)]) if fc == 5 else ("holding_registers", [value])
            rc = bank.write(table, address, vals)
            return exception(rc) if rc else pdu[:5]
        if fc in (15, 16):
            address, count, nbytes = struct.unpack(">HHB", pdu[1:6])
            raw = pdu[6:]
            if fc == 15:
                if nbytes != (count + 7) // 8 or len(raw) != nbytes or not 1 <= count <= 1968:
                    return exception(ILLEGAL_VALUE)
                vals = [raw[i // 8] >> (i % 8) & 1 for i in range(count)]
                rc = bank.write("coils", address, vals)
            else:
                if nbytes != 2 * count or len(raw) != nbytes or not 1 <= count <= 123:
                    return exception(ILLEGAL_VALUE)
                vals = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, nbytes, 2)]
                rc = bank.write("holding_registers", address, vals)
            return exception(rc) if rc else pdu[:5]
    except struct.error:
        return exception(ILLEGAL_VALUE)
    return exception(ILLEGAL_FUNCTION)


def malformed(answer: bytes) -> bytes:
    """A well-framed answer with inconsistent content (what a garbled TCP device sends): a
    read answer two bytes short (byte count to match), a write echo naming another address."""
    fc = answer[0]
    if fc in _READS and len(answer) >= 3:
        data = answer[2:-2] if fc in (3, 4) else answer[2:-1]
        return bytes([fc, len(data)]) + data
    if fc in (5, 6, 15, 16) and len(answer) >= 5:
        return answer[:1] + bytes([answer[1] ^ 0x80]) + answer[2:]
    return answer


# --------------------------------------------------------------------------- RTU on a line


class RtuSlave:
    """A Modbus RTU unit on a ``SerialLine`` (a ``LineSlave``)."""

    def __init__(self, line: SerialLine, unit: int, bank: RegisterBank) -> None:
        if not 1 <= unit <= 247:
            raise ValueError(f"Modbus unit {unit} out of range 1..247")
        self.line = line
        self.unit = unit
        self.bank = bank
        self.counters = {"frames": 0, "bad_crc": 0, "requests": 0}
        self._buf = bytearray()
        self._timer: asyncio.TimerHandle | None = None

    def reset(self) -> None:
        self._buf.clear()

    def feed(self, data: bytes) -> None:
        self._buf += data
        if self._timer is not None:
            self._timer.cancel()
        # The frame ends when the line has been silent for 3.5 character times.
        self._timer = asyncio.get_running_loop().call_later(self.line.gap_s, self._frame_end)

    def _frame_end(self) -> None:
        self._timer = None
        raw, self._buf = bytes(self._buf), bytearray()
        if len(raw) < 4:
            return
        self.counters["frames"] += 1
        if crc16_wire(raw[:-2]) != raw[-2:]:
            self.counters["bad_crc"] += 1  # noise, a collision, or another protocol's frame
            return
        unit, pdu = raw[0], raw[1:-2]
        if unit not in (0, self.unit):
            return
        self.counters["requests"] += 1
        if unit == 0:
            serve_pdu(self.bank, pdu)  # broadcast: executed, never answered
            return

        def execute() -> bytes:
            answer = bytes([self.unit]) + serve_pdu(self.bank, pdu, self.line.faults)
            return answer + crc16_wire(answer)

        self.line.submit(self.unit, execute)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


# --------------------------------------------------------------------------- TCP


def free_tcp_port() -> int:
    """A free loopback port (tiny race with other processes; fine on a test host)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ModbusTcpSim:
    """Modbus TCP on loopback for one or more units (MBAP header, then the PDU)."""

    def __init__(self, banks: dict[int, RegisterBank], faults: FaultInjector, *, port: int | None = None) -> None:
        self.banks = banks
        self.faults = faults
        self.port = port or free_tcp_port()
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._clients: set[asyncio.Task[None]] = set()

    @property
    def serving(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Take the device off the network: no more connections, open ones are cut."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for w in list(self._writers):
            w.close()
        if self._clients:
            await asyncio.wait(list(self._clients), timeout=WRITE_TIMEOUT_S)
        await server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        self._writers.add(writer)
        try:
            while True:
                async with asyncio.timeout(IDLE_CLIENT_S):
                    header = await reader.readexactly(7)
                    tid, proto, length, unit = struct.unpack(">HHHB", header)
                    if proto != 0 or not 2 <= length <= 254:
                        return  # not Modbus: a real device drops the connection
                    pdu = await reader.readexactly(length - 1)
                self.requests += 1
                bank = self.banks.get(unit)
                if bank is None:
                    continue  # no such unit behind this address: silence, as a plain device does
                answer = serve_pdu(bank, pdu, self.faults)
                if self.faults.should_garble():
                    answer = malformed(answer)
                out = await self.faults.outgoing(answer, unit=unit, serial=False)
                if out is None:
                    continue
                writer.write(struct.pack(">HHHB", tid, 0, len(out) + 1, unit) + out)
                async with asyncio.timeout(WRITE_TIMEOUT_S):
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            self._writers.discard(writer)
            self._clients.discard(task)
            writer.close()


# --------------------------------------------------------------------------- handles


class ModbusSimHandle:
    """A running Modbus TCP simulator. ``link`` is a site-config link dict pointing at it."""

    def __init__(self, server: ModbusTcpSim, unit: int, sim: Any) -> None:
        self.server = server
        self.faults = server.faults
        self.unit = unit
        self.sim = sim
        self.link: dict[str, Any] = {"kind": "tcp", "host": "127.0.0.1", "port": server.port}
        self._tasks: list[asyncio.Task[Any]] = []
        self._closed = False

    @property
    def serving(self) -> bool:
        return self.server.serving

    async def stop_serving(self) -> None:
        """Take the device off the network (power cut / cable pulled); ``start_serving`` brings it back."""
        await self.server.stop()

    async def start_serving(self) -> None:
        await self.server.start()

    def add_task(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        return task

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.server.stop()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if (current := asyncio.current_task()) is not None and current.cancelling():
            raise asyncio.CancelledError

    async def __aenter__(self) -> ModbusSimHandle:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


SimHandle = ModbusSimHandle | SerialSimHandle


async def start_modbus(
    bank: RegisterBank,
    *,
    transport: str,
    faults: FaultInjector | None,
    unit: int,
    port: int | None = None,
    baudrate: int = 9600,
    line: SerialLine | None = None,
    name: str = "ttyMODBUS",
    tasks: Sequence[tuple[Callable[[], Coroutine[Any, Any, None]], str]] = (),
) -> SimHandle:
    """Serve ``bank`` as ``unit``: on loopback TCP (``transport="tcp"``), or Modbus RTU on a
    fresh pty line or on ``line``, shared with other simulators (``transport="rtu"``).

    ``tasks``: (coroutine factory, name) of the device's own background work, owned by the
    handle. ``faults.unplug()`` takes the device off the wire; ``replug()`` brings it back on
    the same port or path.
    """
    if transport == "tcp":
        faults = faults if faults is not None else FaultInjector()
        server = ModbusTcpSim({unit: bank}, faults, port=port)
        await server.start()
        tcp = ModbusSimHandle(server, unit, bank)

        async def plug(plugged: bool) -> None:
            await (server.start() if plugged else server.stop())

        faults.on_plug(plug)
        for factory, task_name in tasks:
            tcp.add_task(factory(), task_name)
        return tcp
    if transport != "rtu":
        raise ValueError(f"transport must be 'tcp' or 'rtu', not {transport!r}")
    if line is None:
        faults = faults if faults is not None else FaultInjector()
        line = await SerialLine(faults, baudrate=baudrate, name=name).start()
    elif faults is not None and faults is not line.faults:
        raise ValueError("a simulator on a shared line uses the line's fault injector")
    slave = RtuSlave(line, unit, bank)
    line.attach(slave)
    handle = SerialSimHandle(line.port, line.faults, baudrate=line.baudrate, sim=bank, line=line, slaves=(slave,))
    for factory, task_name in tasks:
        handle.add_task(factory(), task_name)
    return handle
