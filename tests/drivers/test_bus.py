"""RS-485 bus scheduling, dead-slave isolation, unplug/replug recovery, garbage on the line,
and two protocols (the framed gate protocol and Modbus RTU) sharing one line.

Counts, not wall-clock: a "cycle" polls every slave once; the assertions are on how many
transactions each slave got and what the bus log says happened between them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from portlane.drivers.base import GatePosition, LightColour
from portlane.drivers.bus import BreakerState, Rs485Bus, SlaveIsolatedError, Turns, Urgency
from portlane.drivers.config import DeviceConfig
from portlane.drivers.crc import crc16_modbus
from portlane.drivers.errors import DeviceError, DeviceTimeoutError, DeviceUnavailableError
from portlane.drivers.gate_modbus import ModbusGate
from portlane.drivers.gate_rs485 import Rs485Gate
from portlane.drivers.io_modbus import ModbusIo
from portlane.drivers.supervisor import Backoff, DeviceHealth, Supervisor
from portlane.drivers.weighbridge_serial import SerialWeighbridge
from portlane.sim_devices import modbus_gate
from portlane.sim_devices.faults import FaultInjector
from portlane.sim_devices.gate_rs485 import start_gate
from portlane.sim_devices.io_module import start_io
from portlane.sim_devices.line import LineEvent
from portlane.sim_devices.pty_port import SerialSimHandle
from portlane.sim_devices.weighbridge import start_weighbridge
from portlane.sim_devices.world import LaneWorld

GUARD_S = 10.0
WIRE_TIMEOUT_S = 0.1  # short, so that the dead slave's timeouts keep the test fast
#: The slaves that stay alive: a pty simulator on a loaded 2-core machine may answer later than
#: 0.1 s, and a healthy slave's timeout is not what these tests count.
HEALTHY_WIRE_TIMEOUT_S = 2.0
CYCLES = 30


@pytest.fixture
async def three_gates() -> AsyncIterator[tuple[SerialSimHandle, list[Rs485Gate]]]:
    """Three gates on one line; gate 3 (the one the tests kill) with the short wire deadline."""
    worlds = {addr: LaneWorld(f"l{addr}", time_factor=0.1) for addr in (1, 2, 3)}
    faults = FaultInjector(seed=3)
    h = await start_gate(None, worlds=worlds, faults=faults)
    link = {**h.link, "bus": "test-bus"}
    gates = [
        Rs485Gate(
            f"gate-{a}",
            DeviceConfig(
                backend="rs485", link=link, unit=a, timeout_s=WIRE_TIMEOUT_S if a == 3 else HEALTHY_WIRE_TIMEOUT_S
            ),
            breaker_failures=3,
            breaker_cooldown_s=30.0,
        )
        for a in (1, 2, 3)
    ]
    for g in gates:
        await g.connect()
    try:
        yield h, gates
    finally:
        for g in gates:
            await g.close()
        await h.close()


async def _cycle(gates: list[Rs485Gate]) -> list[object]:
    return await asyncio.gather(*(g.status() for g in gates), return_exceptions=True)


async def test_dead_slave_is_isolated_and_does_not_slow_the_others(
    three_gates: tuple[SerialSimHandle, list[Rs485Gate]],
) -> None:
    h, gates = three_gates
    bus = gates[0].bus
    assert all(g.bus is bus for g in gates)  # shared by name
    h.faults.dead_units = {3}
    async with asyncio.timeout(GUARD_S):
        results = [await _cycle(gates) for _ in range(CYCLES)]

    ok = {a: bus.slaves[a].outcomes for a in (1, 2, 3)}
    assert ok[1]["ok"] == CYCLES and ok[2]["ok"] == CYCLES  # healthy slaves: every cycle
    assert ok[3]["timeout"] == 3  # the breaker opened after three timeouts ...
    assert ok[3]["skipped"] == CYCLES - 3  # ... and the dead slave cost no bus time after that
    assert isinstance(results[-1][2], SlaveIsolatedError)
    # a skipped transaction is counted as the device being unavailable, not as a bad frame
    assert gates[2].counters["unavailable"] == CYCLES - 3 and gates[2].counters["protocol"] == 0
    assert isinstance(results[0][2], DeviceTimeoutError)
    assert bus.breaker(3).state == BreakerState.OPEN
    # Between two polls of slave 1 the bus spent at most one timeout on the dead slave.
    between = 0
    for addr, outcome in bus.log:
        if addr == 1:
            assert between <= 1
            between = 0
        elif addr == 3 and outcome == "timeout":
            between += 1

    # The cool-down elapses while the slave is still dead: one probe, one timeout, isolated
    # again with a doubled cool-down.
    br = bus.breaker(3)
    br.opened_at -= br.current_cooldown
    async with asyncio.timeout(GUARD_S):
        await _cycle(gates)
    assert ok[3]["timeout"] == 4 and br.state == BreakerState.OPEN and br.current_cooldown == 60.0

    # The slave comes back: the next probe finds it and it is polled every cycle again.
    h.faults.dead_units.clear()
    br.opened_at -= br.current_cooldown
    async with asyncio.timeout(GUARD_S):
        for _ in range(5):
            res = await _cycle(gates)
            assert all(not isinstance(r, BaseException) for r in res), res
    assert br.state == BreakerState.CLOSED and ok[3]["ok"] == 5


async def test_unplugged_adapter_comes_back_without_a_restart() -> None:
    world = LaneWorld("c1", time_factor=0.1)
    faults = FaultInjector(seed=5)
    h = await start_gate(world, faults=faults)
    gate = Rs485Gate("gate-c1", DeviceConfig(backend="rs485", link=h.link, unit=1, timeout_s=0.2))
    sup = Supervisor(
        gate,
        lambda d: d.status(),
        period=0.01,
        failures_to_offline=2,  # type: ignore[attr-defined]
        backoff=Backoff(initial=0.01, cap=0.05),
    )
    task = asyncio.create_task(sup.run(), name="supervise-gate")
    try:
        async with asyncio.timeout(GUARD_S):
            await sup.wait_health(DeviceHealth.ONLINE)
            await faults.unplug()
            await sup.wait_health(DeviceHealth.OFFLINE)
            assert not h.port.plugged
            with pytest.raises(DeviceError):
                await gate.connect()  # the by-id path is gone
            await faults.replug()
            await sup.wait_health(DeviceHealth.ONLINE)
            assert isinstance(sup.last_value, object)
            await gate.open()
            await world.wait_until(lambda: world.limit_open)
            assert (await gate.status()).position == GatePosition.OPEN
        assert h.port.counters["plugs"] == 2
        assert gate.counters["unavailable"] > 0
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await gate.close()
        await h.close()


async def test_stream_device_unplugged_and_replugged() -> None:
    world = LaneWorld("c1", time_factor=0.1)
    faults = FaultInjector(seed=6)
    h = await start_weighbridge(world, faults=faults, settle_s=1.0)
    scale = SerialWeighbridge("scale-c1", DeviceConfig(backend="serial", link=h.link))
    sup = Supervisor(
        scale,
        lambda d: d.read_weight(),
        period=0.01,
        failures_to_offline=1,  # type: ignore[attr-defined]
        backoff=Backoff(initial=0.01, cap=0.05),
    )
    task = asyncio.create_task(sup.run(), name="supervise-scale")
    try:
        async with asyncio.timeout(GUARD_S):
            await sup.wait_health(DeviceHealth.ONLINE)
            await faults.unplug()
            await sup.wait_health(DeviceHealth.OFFLINE)
            world.scale_kg = 1500.0
            world.notify()
            await faults.replug()
            await sup.wait_health(DeviceHealth.ONLINE)
            assert (await scale.wait_stable(GUARD_S)).kg == 1500
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await scale.close()
        await h.close()


async def test_garbage_on_the_line_is_counted_and_polling_goes_on() -> None:
    world = LaneWorld("c1", time_factor=0.1)
    faults = FaultInjector(seed=11, noise=0.5, corrupt=0.2)
    h = await start_gate(world, faults=faults)
    gate = Rs485Gate("gate-c1", DeviceConfig(backend="rs485", link=h.link, unit=1, timeout_s=0.1))
    outcomes = {"ok": 0, "error": 0}
    try:
        async with gate:
            async with asyncio.timeout(GUARD_S):
                for _ in range(60):
                    try:
                        await gate.status()
                        outcomes["ok"] += 1
                    except DeviceError:
                        outcomes["error"] += 1
                # raw garbage straight onto the line between transactions
                h.port.write(b"\x55\x01\x90\x09garbage\x00\xff\x55")
                assert (await gate.status()).position == GatePosition.CLOSED
            stats, bus_counters = gate.bus.stats, gate.bus.counters
    finally:
        await h.close()
    assert faults.counters["noise"] > 0 and faults.counters["corrupted"] > 0
    assert outcomes["ok"] >= 30  # noise before a good answer is skipped, the answer is used
    assert outcomes["error"] == gate.counters["protocol"] + gate.counters["timeout"]
    assert stats.garbage_bytes + stats.bad_frames > 0
    assert bus_counters["transactions"] == 61


async def test_two_buses_with_the_same_name_on_different_ports_are_refused() -> None:
    w = LaneWorld("c1")
    h1, h2 = await start_gate(w), await start_gate(LaneWorld("c2"))
    try:
        g1 = Rs485Gate("g1", DeviceConfig(backend="rs485", link={**h1.link, "bus": "b"}, unit=1))
        g2 = Rs485Gate("g2", DeviceConfig(backend="rs485", link={**h2.link, "bus": "b"}, unit=2))
        async with g1:
            with pytest.raises(DeviceUnavailableError, match="already open"):
                await g2.connect()
    finally:
        await h1.close()
        await h2.close()


# --------------------------------------------------------------------------- two protocols, one line


def _one_frame(raw: bytes) -> str | None:
    """Which protocol ``raw`` is exactly one frame of: "gate" (framed, 55 … CRC), "rtu"
    (Modbus RTU, CRC over everything before it), or None (two frames, a torn one, noise)."""
    if len(raw) < 4 or crc16_modbus(raw[:-2]).to_bytes(2, "little") != raw[-2:]:
        return None
    if raw[0] == 0x55 and len(raw) == 6 + raw[3]:
        return "gate"
    return "rtu"


def _exchanges(log: list[LineEvent], gap_s: float) -> tuple[list[tuple[str | None, bytes, bytes]], list[str]]:
    """Pair every answer on the line with the request before it; list every violation of
    half-duplex master/slave discipline: more than one frame (or a torn one) before an
    answer, or a request sent sooner than ``gap_s`` after the previous answer."""
    pairs: list[tuple[str | None, bytes, bytes]] = []
    problems: list[str] = []
    request, request_t, answered_t = bytearray(), 0.0, None
    for ev in log:
        if ev.direction == "rx":
            if not request:
                request_t = ev.t
            request += ev.data
            continue
        kind = _one_frame(bytes(request))
        if kind is None:
            problems.append(f"not one frame before an answer: {request.hex(' ')}")
        if answered_t is not None and request_t - answered_t < gap_s:
            problems.append(f"request {1000 * (request_t - answered_t):.2f} ms after the previous answer")
        pairs.append((kind, bytes(request), ev.data))
        request.clear()
        answered_t = ev.t
    return pairs, problems


async def _mixed_line() -> tuple[list[SerialSimHandle], str]:
    """An RS-485 gate (framed protocol, address 1), a Modbus RTU I/O module (unit 2) and a
    Modbus RTU gate (unit 3) on one simulated line."""
    g = await start_gate(LaneWorld("g", time_factor=0.1), address=1)
    io = await start_io(LaneWorld("i"), transport="rtu", unit=2, line=g.line)
    mg = await modbus_gate.start_gate(LaneWorld("m", time_factor=0.1), transport="rtu", unit=3, line=g.line)
    assert isinstance(io, SerialSimHandle) and isinstance(mg, SerialSimHandle)
    return [mg, io, g], g.path


async def _hammer(devices: tuple[Rs485Gate, ModbusIo, ModbusGate], rounds: int) -> list[object]:
    gate, io, mgate = devices
    results: list[object] = []
    for i in range(rounds):
        colour = (LightColour.RED, LightColour.GREEN)[i % 2]
        results += await asyncio.gather(
            gate.status(), io.read_inputs(), mgate.status(), io.set_light(colour), return_exceptions=True
        )
    return results


async def test_two_protocols_on_one_line_never_interleave_and_keep_the_gap() -> None:
    handles, path = await _mixed_line()
    link = {"kind": "serial", "url": path, "bus": "mixed"}
    gate = Rs485Gate("gate", DeviceConfig(backend="rs485", link=link, unit=1, timeout_s=0.3))
    io = ModbusIo("io", DeviceConfig(backend="modbus_rtu", link=link, unit=2, timeout_s=0.3))
    mgate = ModbusGate("mgate", DeviceConfig(backend="modbus_rtu", link=link, unit=3, timeout_s=0.3))
    line = handles[-1].line
    try:
        async with gate, io, mgate, asyncio.timeout(GUARD_S):
            assert gate.bus is io.bus is mgate.bus  # one scheduler for the port, whatever the protocol
            results = await _hammer((gate, io, mgate), rounds=20)
            bus = gate.bus
    finally:
        for h in handles:
            await h.close()
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert line is not None
    pairs, problems = _exchanges(line.log, line.gap_s)
    assert problems == []
    assert len(pairs) == bus.counters["transactions"] == 80
    assert {kind for kind, _, _ in pairs} == {"gate", "rtu"}
    assert all(req[1] == ans[1] for kind, req, ans in pairs if kind == "gate")  # the addressed slave answered
    assert all(req[0] == ans[0] for kind, req, ans in pairs if kind == "rtu")
    assert {a: bus.slaves[a].outcomes["ok"] for a in (1, 2, 3)} == {1: 20, 2: 40, 3: 20}


async def test_the_check_catches_two_schedulers_on_one_port() -> None:
    """The same workload with one scheduler per protocol (two bus names, one port — what a
    pymodbus serial client beside our bus amounted to): frames run into each other."""
    handles, path = await _mixed_line()
    gate = Rs485Gate("gate", DeviceConfig(backend="rs485", link={"kind": "serial", "url": path, "bus": "a"}, unit=1))
    modbus_link = {"kind": "serial", "url": path, "bus": "b"}
    io = ModbusIo("io", DeviceConfig(backend="modbus_rtu", link=modbus_link, unit=2, timeout_s=0.1))
    mgate = ModbusGate("mgate", DeviceConfig(backend="modbus_rtu", link=modbus_link, unit=3, timeout_s=0.1))
    line = handles[-1].line
    try:
        async with gate, io, mgate, asyncio.timeout(GUARD_S):
            assert gate.bus is not io.bus
            await _hammer((gate, io, mgate), rounds=5)
    finally:
        for h in handles:
            await h.close()
    assert line is not None
    _, problems = _exchanges(line.log, line.gap_s)
    assert any("not one frame" in p for p in problems)


# --------------------------------------------------------------------------- who goes first


def _requests(log: list[LineEvent]) -> list[str]:
    """The requests the master put on the line, in order, named: ``"1:open"`` (framed gate at
    address 1), ``"2:fc04"`` (Modbus RTU unit 2, function 4), ``"3:fc05@0"`` (a coil write,
    with its address)."""
    names = {0x01: "open", 0x02: "close", 0x03: "stop", 0x04: "lock", 0x10: "status"}
    out, frame = [], bytearray()
    for ev in [*log, LineEvent(0.0, "tx", b"")]:
        if ev.direction == "rx":
            frame += ev.data
            continue
        if frame:
            raw = bytes(frame)
            if _one_frame(raw) == "gate":
                out.append(f"{raw[1]}:{names[raw[2]]}")
            elif raw[1] in (5, 15):
                out.append(f"{raw[0]}:fc{raw[1]:02d}@{int.from_bytes(raw[2:4], 'big')}")
            else:
                out.append(f"{raw[0]}:fc{raw[1]:02d}")
            frame.clear()
    return out


async def _turn_taken(bus: Rs485Bus, *, waiting: int) -> None:
    """Until a transaction holds the line and ``waiting`` more wait for it."""
    await bus.turns.until(lambda: bus.turns.held and bus.turns.waiting == waiting)


async def test_a_gate_command_goes_before_the_polls_queued_on_its_line() -> None:
    """While a status poll is on the wire, routine work queues behind it (polls of three
    slaves, a light write); then an open for the framed gate and one for the Modbus gate are
    asked for. They are the next two frames after the poll's answer — they cannot cut into
    the poll under way — and the routine work follows in the order it was asked for."""
    handles, path = await _mixed_line()
    line = handles[-1].line
    assert line is not None
    # A poll that keeps the line long enough for the others to queue (six tasks, each seen
    # queued before the next is asked for: 0.05 s was short for that on a loaded machine). Nothing
    # here times out: the deadline, which counts the wait for the line, only bounds a broken run.
    line.turnaround_s = 0.2
    link = {"kind": "serial", "url": path, "bus": "urgent"}
    gate = Rs485Gate("gate", DeviceConfig(backend="rs485", link=link, unit=1, timeout_s=GUARD_S / 2))
    io = ModbusIo("io", DeviceConfig(backend="modbus_rtu", link=link, unit=2, timeout_s=GUARD_S / 2))
    mgate = ModbusGate("mgate", DeviceConfig(backend="modbus_rtu", link=link, unit=3, timeout_s=GUARD_S / 2))
    try:
        async with gate, io, mgate, asyncio.timeout(GUARD_S):
            bus = gate.bus
            line.log.clear()
            asked: list[asyncio.Task[object]] = [asyncio.create_task(gate.status())]
            await _turn_taken(bus, waiting=0)
            routine = (mgate.status, io.read_inputs, lambda: io.set_light(LightColour.GREEN), gate.status)
            for n, call in enumerate(routine, start=1):
                asked.append(asyncio.create_task(call()))
                await _turn_taken(bus, waiting=n)
            asked.append(asyncio.create_task(gate.open()))
            await _turn_taken(bus, waiting=len(routine) + 1)
            asked.append(asyncio.create_task(mgate.open()))
            results = await asyncio.gather(*asked, return_exceptions=True)
    finally:
        for h in handles:
            await h.close()
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert _requests(line.log) == [
        "1:status",  # on the wire when the commands were asked for: finished first
        "1:open",
        "3:fc05@0",  # the Modbus gate's open pulse (coil 0)
        "3:fc04",
        "2:fc04",
        "2:fc15@0",  # the light: its three lamp coils at once
        "1:status",
    ], _requests(line.log)
    _, problems = _exchanges(line.log, line.gap_s)
    assert problems == []  # still whole frames with the inter-frame gap between them


async def test_a_command_asked_for_during_the_inter_frame_gap_still_goes_first() -> None:
    """The next turn is given when the line is quiet again (end of the answer + the gap), not
    when the answer ends: a poll waiting since before the answer does not take the gap for
    itself and make a command that arrives meanwhile wait a whole transaction more."""
    world = LaneWorld("g", time_factor=0.1)
    h = await start_gate(world, worlds={2: LaneWorld("h", time_factor=0.1)})
    link = {**h.link, "bus": "gap"}
    opts = {"gap_s": 0.3}  # a long gap, so that the command surely arrives within it
    gate = Rs485Gate("gate", DeviceConfig(backend="rs485", link=link, unit=1, timeout_s=0.3), **opts)
    other = Rs485Gate("other", DeviceConfig(backend="rs485", link=link, unit=2, timeout_s=0.3), **opts)
    assert h.line is not None
    try:
        async with gate, other, asyncio.timeout(GUARD_S):
            bus = gate.bus
            h.line.log.clear()
            first = asyncio.create_task(other.status())
            await _turn_taken(bus, waiting=0)
            polled = asyncio.create_task(other.status())
            await _turn_taken(bus, waiting=1)
            await first  # its answer is in; the gap runs, the poll waits for the line
            assert not bus.turns.held and bus.turns.waiting == 1
            await asyncio.gather(gate.open(), polled)
    finally:
        await h.close()
    assert _requests(h.line.log) == ["2:status", "1:open", "2:status"]


async def test_a_waiter_cancelled_passes_its_turn_on() -> None:
    """A transaction cancelled while it waits for the line (its device's deadline) neither
    keeps the line nor loses the others their turn."""
    world = LaneWorld("g", time_factor=0.1)
    h = await start_gate(world, worlds={2: LaneWorld("h", time_factor=0.1)}, turnaround_s=0.05)
    link = {**h.link, "bus": "cancel"}
    gate = Rs485Gate("gate", DeviceConfig(backend="rs485", link=link, unit=1, timeout_s=0.3))
    other = Rs485Gate("other", DeviceConfig(backend="rs485", link=link, unit=2, timeout_s=0.3))
    assert h.line is not None
    try:
        async with gate, other, asyncio.timeout(GUARD_S):
            bus = gate.bus
            h.line.log.clear()
            first = asyncio.create_task(other.status())
            await _turn_taken(bus, waiting=0)
            given_up = asyncio.create_task(gate.open())
            await _turn_taken(bus, waiting=1)
            polled = asyncio.create_task(other.status())
            await _turn_taken(bus, waiting=2)
            given_up.cancel()
            await asyncio.gather(first, polled)
            assert given_up.cancelled()
            assert not bus.turns.held and bus.turns.waiting == 0
            await gate.status()  # the line is free for the next one
    finally:
        await h.close()
    assert _requests(h.line.log) == ["2:status", "2:status", "1:status"]


async def test_a_turn_given_as_its_waiter_is_cancelled_is_passed_on() -> None:
    """The turn reaches a waiter in the same loop turn as its cancellation (a deadline): the
    waiter hands the line on instead of keeping it for ever."""
    turns = Turns(lambda: 0.0)  # a line that is always quiet: the hand-over is the next loop turn
    await turns.acquire(Urgency.ROUTINE)
    waiter = asyncio.create_task(turns.acquire(Urgency.COMMAND))
    await turns.until(lambda: turns.waiting == 1)
    turns.release()
    # The hand-over tells ``until`` before it wakes the waiter: this test runs in between.
    await turns.until(lambda: turns.held)
    assert not waiter.done()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not turns.held and turns.waiting == 0
    async with asyncio.timeout(GUARD_S):
        await turns.acquire(Urgency.ROUTINE)  # nobody keeps the line
