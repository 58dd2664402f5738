"""Wire-level simulator of a Modbus barrier gate controller (TCP, or RTU on a pty).

The register map is read from ``firmware_config/devices/gate_modbus.yaml`` — the same data
the driver reads — but the code that interprets it here is the simulator's own, so a
driver bug cannot be mirrored by the simulator it is tested against.

The controller is backed by a shared ``LaneWorld``: command coils move the world's arm
(``command_open`` / ``command_close`` / ``command_stop``), inputs are read from the world's
sensors on every request (so the answer is always the current physical state; no polling
task can lag behind).

This module also holds the small pieces every Modbus simulator of ours shares: the map
loader, the fault hook, the in-process pty pair for RTU and the server handle.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import pty
import socket
import termios
import tty
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from .faults import FaultInjector
from .world import ArmMotion, LaneWorld

__all__ = [
    "GateSim",
    "ModbusSimHandle",
    "PtyPair",
    "free_tcp_port",
    "load_register_map",
    "make_faults",
    "start_gate",
]


FC_TABLE = {
    1: "coils",
    5: "coils",
    15: "coils",
    2: "discrete_inputs",
    3: "holding_registers",
    6: "holding_registers",
    16: "holding_registers",
    4: "input_registers",
}
READ_FCS = (1, 2, 3, 4)


# --------------------------------------------------------------------------- register map data


def _config_file(*parts: str) -> Path:
    # portlane.firmware_config may be a namespace package under an editable install
    # (no __file__, odd __path__ entries): take the first real directory that has the file.
    import portlane.firmware_config as fc

    for entry in fc.__path__:
        candidate = Path(entry).joinpath(*parts)
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("firmware_config/" + "/".join(parts))


def load_register_map(name: str) -> dict[str, Any]:
    """Read ``firmware_config/devices/<name>.yaml`` and index each table by entry name."""
    text = _config_file("devices", f"{name}.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    index: dict[str, dict[str, int]] = {}
    for table, entries in data["tables"].items():
        index[table] = {e["name"]: int(e["address"]) for e in entries}
    data["index"] = index
    return data


def table_size(regmap: dict[str, Any], table: str) -> int:
    entries = regmap["tables"].get(table, [])
    return max((int(e["address"]) + int(e.get("words", 1)) for e in entries), default=1)


# --------------------------------------------------------------------------- faults
#
# The shared ``FaultInjector`` (sim_devices.faults) is honoured at two points:
#  * answer level, in pymodbus' server ``trace_packet`` hook on the outgoing frame:
#    dead / dead_units / drop / unplugged suppress the answer, corrupt damages its last byte
#    (the RTU CRC; on TCP the PDU's last data byte);
#  * request level, in the datastore ``action`` hook: ``delay`` (a slow PLC) and
#    ``exception`` (answer every request with that Modbus exception code).


def make_faults(faults: Any, world: Any = None) -> FaultInjector:
    inj = FaultInjector() if faults is None else faults
    if world is not None and hasattr(inj, "attach_world"):
        inj.attach_world(world)
    return inj


async def fault_hook(faults: Any) -> ExcCodes | None:
    """Request-level faults; returns an exception code to answer with, or None."""
    if faults is None:
        return None
    delay = float(getattr(faults, "delay", 0.0) or 0.0)
    if delay > 0:
        await asyncio.sleep(delay)
    code = int(getattr(faults, "exception", 0) or 0)
    return ExcCodes(code) if code else None


async def request_fault(sim: Any, fc: int, values: Any) -> ExcCodes | None:
    """The common start of every simulator's pymodbus ``action`` hook: count the request and
    apply request-level faults. A write runs the hook twice (with the values, then a read-back
    with None); only the first pass is a request."""
    if values is not None or fc in READ_FCS:
        sim.requests += 1
        return await fault_hook(sim.faults)
    return None


def answer_filter(faults: Any, unit: int) -> Callable[[bool, bytes], bytes]:
    """pymodbus ``trace_packet`` hook: returning b"" sends nothing."""

    def trace(sending: bool, data: bytes) -> bytes:
        if not sending or faults is None:
            return data
        if not faults.should_answer(unit):
            return b""
        out: bytes = faults.maybe_corrupt(data)
        return out

    return trace


# --------------------------------------------------------------------------- bit packing


def pack_bits(bits: list[bool], words: int) -> list[int]:
    """Bit n of a table -> word n // 16, bit n % 16 (pymodbus' SimData layout)."""
    out = [0] * words
    for i, b in enumerate(bits):
        if b:
            out[i // 16] |= 1 << (i % 16)
    return out


def set_bit_block(regs: list[int], start_word: int, bits: list[bool]) -> None:
    """Overwrite the first ``len(bits)`` bits of a bit table stored from ``start_word``."""
    for i, b in enumerate(bits):
        w = i // 16 - start_word
        if 0 <= w < len(regs):
            mask = 1 << (i % 16)
            regs[w] = (regs[w] | mask) if b else (regs[w] & ~mask)


def set_reg_block(regs: list[int], start: int, values: list[int]) -> None:
    for i, v in enumerate(values):
        j = i - start
        if 0 <= j < len(regs):
            regs[j] = v & 0xFFFF


def bits_table(size: int) -> list[SimData]:
    return [SimData(0, count=size, values=False, datatype=DataType.BITS)]


def regs_table(size: int) -> list[SimData]:
    return [SimData(0, count=size, values=0, datatype=DataType.REGISTERS)]


# --------------------------------------------------------------------------- transports


def free_tcp_port() -> int:
    """A free loopback port (tiny race with other processes; fine on a test host)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PtyPair:
    """Two pseudo-terminals joined back to back in-process (a socat ``pty pty`` pair).

    ``server_path`` is opened by the simulated slave (pymodbus' serial server), ``client_path``
    by the driver. Bytes are relayed between the two master ends on the event loop, which is
    also where byte-level faults could be injected. Ptys do not emulate the baud rate.
    """

    def __init__(self) -> None:
        self._fds: list[int] = []
        self.paths: list[str] = []
        for _ in range(2):
            master, slave = pty.openpty()
            tty.setraw(slave)  # no echo, no CR/LF rewriting: RTU is binary
            os.set_blocking(master, False)
            self._fds += [master, slave]
            self.paths.append(os.ttyname(slave))
        self.server_path, self.client_path = self.paths
        self.cut = False  # "unplugged": bytes are swallowed in both directions
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        a, b = self._fds[0], self._fds[2]
        self._loop.add_reader(a, self._relay, a, b)
        self._loop.add_reader(b, self._relay, b, a)

    def _relay(self, src: int, dst: int) -> None:
        try:
            data = os.read(src, 4096)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EIO):  # EIO: nobody has the slave open
                return
            raise
        if data and not self.cut:
            with contextlib.suppress(BlockingIOError):
                os.write(dst, data)

    def flush_server_side(self) -> None:
        """Discard bytes queued for the slave while it was off the wire (a powered-off
        device never sees them; replaying them would answer requests long timed out)."""
        termios.tcflush(self._fds[1], termios.TCIOFLUSH)

    def close(self) -> None:
        if self._loop is not None:
            for fd in (self._fds[0], self._fds[2]):
                self._loop.remove_reader(fd)
            self._loop = None
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []


@dataclass
class ModbusSimHandle:
    """A running Modbus simulator. ``link`` is a site-config link dict pointing at it."""

    link: dict[str, Any]
    faults: Any
    unit: int
    _start: Callable[[], Awaitable[Any]] = field(repr=False)
    _server: Any = field(default=None, repr=False)
    _pty: PtyPair | None = field(default=None, repr=False)
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list, repr=False)
    _closed: bool = False

    @property
    def serving(self) -> bool:
        return self._server is not None

    async def stop_serving(self) -> None:
        """Take the device off the network (power cut / cable pulled); ``start_serving`` brings it back."""
        server, self._server = self._server, None
        if self._pty is not None:
            self._pty.cut = True
        if server is not None:
            await server.shutdown()

    async def start_serving(self) -> None:
        if self._server is None:
            if self._pty is not None:
                self._pty.flush_server_side()
                self._pty.cut = False
            self._server = await self._start()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.stop_serving()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self._pty is not None:
            self._pty.close()

    async def __aenter__(self) -> ModbusSimHandle:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def serve_modbus(
    devices: list[SimDevice],
    *,
    transport: str,
    faults: Any,
    unit: int,
    port: int | None = None,
    baudrate: int = 9600,
) -> ModbusSimHandle:
    """Start a pymodbus server for ``devices`` on loopback TCP or on a fresh pty pair.

    ``faults.unplug()`` takes the device off the wire (server shut down) and ``replug()``
    brings it back on the same port / path.
    """
    trace = answer_filter(faults, unit)
    if transport == "tcp":
        tcp_port = port or free_tcp_port()

        async def start() -> Any:
            server = ModbusTcpServer(devices, address=("127.0.0.1", tcp_port), trace_packet=trace)
            await server.serve_forever(background=True)
            return server

        handle = ModbusSimHandle(
            link={"kind": "tcp", "host": "127.0.0.1", "port": tcp_port}, faults=faults, unit=unit, _start=start
        )
    elif transport == "rtu":
        pair = PtyPair()
        pair.start()

        async def start() -> Any:
            server = ModbusSerialServer(
                devices, framer=FramerType.RTU, port=pair.server_path, baudrate=baudrate, trace_packet=trace
            )
            await server.serve_forever(background=True)
            return server

        handle = ModbusSimHandle(
            link={"kind": "serial", "url": pair.client_path, "baudrate": baudrate},
            faults=faults,
            unit=unit,
            _start=start,
            _pty=pair,
        )
    else:
        raise ValueError(f"transport must be 'tcp' or 'rtu', not {transport!r}")
    if hasattr(faults, "on_plug"):

        async def plug(plugged: bool) -> None:
            if plugged:
                await handle.start_serving()
            else:
                await handle.stop_serving()

        faults.on_plug(plug)
    await handle.start_serving()
    return handle


# --------------------------------------------------------------------------- the gate


class GateSim:
    """Controller logic between the Modbus tables and a ``LaneWorld``."""

    def __init__(self, world: LaneWorld, *, faults: Any = None) -> None:
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
        self.ranges = {
            int(e["address"]): tuple(e["range"]) for e in self.map["tables"]["holding_registers"] if "range" in e
        }
        self.holding = {self.h["auto_close_s"]: 0, self.h["open_time_ms"]: int(world.arm_move_s * 1000)}
        self.requests = 0
        self._auto_close_wake = asyncio.Event()

    def device(self, unit: int) -> SimDevice:
        m = self.map
        return SimDevice(
            id=unit,
            simdata=(
                bits_table(max(16, table_size(m, "coils"))),
                bits_table(max(16, table_size(m, "discrete_inputs"))),
                regs_table(table_size(m, "holding_registers")),
                regs_table(table_size(m, "input_registers")),
            ),
            action=self.action,
        )

    # -- physical state as the controller's tables see it
    def state_code(self) -> int:
        w = self.world
        if w.fault_code:
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

    def _coils(self) -> list[bool]:
        bits = [False] * (max(self.c.values()) + 1)  # pulses read back 0 once taken
        bits[self.c["lock"]] = self.world.locked
        return bits

    def _inputs(self) -> list[bool]:
        w = self.world
        vals = {
            "limit_open": w.limit_open,
            "limit_closed": w.limit_closed,
            "loop_entry": w.entry_loop,
            "loop_safety": w.safety_loop,
            "photocell_blocked": w.photocell_blocked,
            "fault": bool(w.fault_code),
            "locked": w.locked,
        }
        bits = [False] * (max(self.d.values()) + 1)
        for name, addr in self.d.items():
            bits[addr] = vals[name]
        return bits

    def _input_regs(self) -> list[int]:
        w = self.world
        regs = [0] * table_size(self.map, "input_registers")
        regs[self.i["state"]] = self.state_code()
        regs[self.i["boom_angle_deg"]] = round(w.arm_angle)
        cyc = self.i["cycle_counter"]
        regs[cyc], regs[cyc + 1] = (w.cycles >> 16) & 0xFFFF, w.cycles & 0xFFFF
        regs[self.i["fault_code"]] = w.fault_code
        return regs

    # -- pymodbus hook: called on every request, before the tables are read or written
    async def action(
        self, fc: int, start: int, address: int, count: int, regs: list[int], values: list[int] | list[bool] | None
    ) -> ExcCodes | None:
        if (exc := await request_fault(self, fc, values)) is not None:
            return exc
        table = FC_TABLE.get(fc)
        if table == "coils":
            if values is not None:
                return self._write_coils(address, [bool(v) for v in values])
            if fc == 1:  # not on the read-back that builds a write's echo: FC05/15 echo the request
                set_bit_block(regs, start, self._coils())
        elif table == "discrete_inputs":
            set_bit_block(regs, start, self._inputs())
        elif table == "input_registers":
            set_reg_block(regs, start, self._input_regs())
        elif table == "holding_registers":
            if values is not None:
                return self._write_holding(address, [int(v) for v in values])
            if fc == 3:
                set_reg_block(regs, start, [self.holding.get(a, 0) for a in range(table_size(self.map, table))])
        return None

    def _write_coils(self, address: int, bits: list[bool]) -> ExcCodes | None:
        w = self.world
        for offset, bit in enumerate(bits):
            addr = address + offset
            if addr == self.c["lock"]:
                if w.locked != bit:
                    w.locked = bit
                    w.notify()
            elif not bit:
                continue
            elif addr == self.c["cmd_open"]:
                if not w.command_open():
                    return ExcCodes.DEVICE_FAILURE
            elif addr == self.c["cmd_close"]:
                if not w.command_close():
                    return ExcCodes.DEVICE_FAILURE
            elif addr == self.c["cmd_stop"]:
                w.command_stop()
        return None

    def _write_holding(self, address: int, values: list[int]) -> ExcCodes | None:
        for offset, v in enumerate(values):
            lo, hi = self.ranges.get(address + offset, (0, 0xFFFF))
            if not lo <= v <= hi:
                return ExcCodes.ILLEGAL_VALUE
        for offset, v in enumerate(values):
            addr = address + offset
            self.holding[addr] = v
            if addr == self.h["open_time_ms"]:
                self.world.arm_move_s = v / 1000.0
        self._auto_close_wake.set()
        return None

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
            await asyncio.sleep(w.scaled(delay))
            if w.limit_open and not w.photocell_blocked and not w.safety_loop:
                w.command_close()
            await w.wait_until(lambda: not w.limit_open)


async def start_gate(
    world: LaneWorld,
    *,
    faults: Any = None,
    transport: str = "tcp",
    unit: int = 1,
    port: int | None = None,
    baudrate: int = 9600,
    **_opts: Any,
) -> ModbusSimHandle:
    """Start a simulated Modbus gate controller on ``world``.

    ``transport``: ``"tcp"`` (loopback, free port) or ``"rtu"`` (pymodbus serial server on
    an in-process pty pair; ``handle.link["url"]`` is the driver's end). Also starts the
    world's arm physics if nobody runs them yet (and stops them on close).
    """
    faults = make_faults(faults, world)
    sim = GateSim(world, faults=faults)
    handle = await serve_modbus(
        [sim.device(unit)], transport=transport, faults=faults, unit=unit, port=port, baudrate=baudrate
    )
    handle.sim = sim  # type: ignore[attr-defined]
    handle._tasks.append(asyncio.create_task(sim.auto_close(), name=f"gate-sim-autoclose-{world.lane_id}"))
    if world._task is None or world._task.done():
        world._task = asyncio.create_task(world.run(), name=f"lane-world-{world.lane_id}")
        handle._tasks.append(world._task)
    return handle
