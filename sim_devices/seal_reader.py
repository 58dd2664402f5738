"""Simulated e-seal / e-lock reader on a serial line, polled by the lane.

Protocol: ``firmware_config/devices/seal_serial.yaml`` / ``docs/devices/eseal.md``
(``02 len addr cmd data crc16 03``; ``31`` inventory, ``32`` apply, ``33`` remove; answers
``cmd | 0x80``, ``15`` NAK), parsed and built here with this module's own code.

The reader's antenna covers the stop line: it sees the seals of the vehicle ``in_position``
(``LaneWorld.vehicle.seals``, ``world.Seal``). An e-lock accepts apply / remove only with its
own authorisation code (``Seal.authorisation``), only in the right state, and records the
time (to the minute, UTC, as ISO 18185 does). Line faults come from the ``SerialLine``'s
injector: ``dead`` (a dead reader), ``unplug()`` (the USB adapter pulled out), ``corrupt`` /
``noise`` / ``noise_storm`` (garbled frames).
"""

from __future__ import annotations

import datetime
from typing import Any

from .faults import FaultInjector
from .line import SerialLine, crc16_wire
from .pty_port import SerialSimHandle
from .world import LaneWorld, Seal

__all__ = ["SealReaderSim", "start_seal_reader"]

#: Time the reader takes to answer: an inventory over ISO/IEC 18000-7 takes a few hundred ms
#: for a handful of tags; driving a lock's bolt ~1 s. Scaled by the world's time factor.
INVENTORY_S = 0.3
ACTUATE_S = 1.0
_KIND = {False: 0, True: 1}
_STATE = {"sealed": 0, "opened": 1, "tampered": 2}
_ROUTE = {"on_route": 1, "off_route": 2, "no_fix": 3}
_LONGEST = 1 + 1 + 255 + 2 + 1


def _frame(address: int, cmd: int, data: bytes = b"") -> bytes:
    body = bytes([2 + len(data), address, cmd]) + data
    return b"\x02" + body + crc16_wire(body) + b"\x03"


def _minute(t: datetime.datetime | None) -> bytes:
    return b"000000000000" if t is None else t.astimezone(datetime.UTC).strftime("%Y%m%d%H%M").encode()


def record_bytes(s: Seal, rssi_dbm: int = -55) -> bytes:
    route = _ROUTE.get(s.route, 3) if s.elock else 0
    return (
        s.manufacturer.to_bytes(2, "big")
        + s.tag.to_bytes(4, "big")
        + bytes([_KIND[s.elock], _STATE[s.state]])
        + _minute(s.sealed_at)
        + _minute(s.opened_at)
        + bytes([0xFF if s.battery_pct is None else s.battery_pct])
        + bytes([1 if s.battery_pct is not None and s.battery_pct < 15 else 0, route])
        + rssi_dbm.to_bytes(1, "big", signed=True)
    )


class SealReaderSim:
    """The reader's controller (a ``LineSlave`` on the line)."""

    def __init__(self, world: LaneWorld, line: SerialLine, *, address: int = 1) -> None:
        self.world = world
        self.line = line
        self.address = address
        self._rx = bytearray()
        self.counters = {"frames": 0, "bad_frames": 0, "inventories": 0, "applied": 0, "removed": 0, "refused": 0}

    def reset(self) -> None:
        self._rx.clear()

    def seals(self) -> tuple[Seal, ...]:
        v = self.world.vehicle
        return v.seals if v is not None and self.world.in_position else ()

    def feed(self, data: bytes) -> None:
        rx = self._rx
        rx += data
        while rx:
            start = rx.find(b"\x02")
            if start < 0:
                rx.clear()
                return
            del rx[:start]
            if len(rx) < 2:
                return
            total = rx[1] + 5
            if len(rx) < total:
                if len(rx) > _LONGEST:
                    rx.clear()
                return
            frame = bytes(rx[:total])
            body = frame[1 : total - 3]
            if frame[-1] != 3 or frame[total - 3 : total - 1] != crc16_wire(body) or rx[1] < 2:
                self.counters["bad_frames"] += 1
                del rx[:1]
                continue
            del rx[:total]
            self.counters["frames"] += 1
            if body[1] == self.address:
                self._heard(body[2], body[3:])

    def _execute(self, cmd: int, data: bytes) -> bytes:
        if cmd == 0x31:
            if data:
                return _frame(self.address, 0x15, bytes([cmd, 2]))
            self.counters["inventories"] += 1
            seals = self.seals()[:6]
            return _frame(self.address, 0xB1, bytes([len(seals)]) + b"".join(record_bytes(s) for s in seals))
        if cmd in (0x32, 0x33):
            if len(data) != 14:
                return _frame(self.address, 0x15, bytes([cmd, 2]))
            result, record = self._actuate(cmd == 0x32, data)
            return _frame(self.address, cmd | 0x80, bytes([result]) + record)
        return _frame(self.address, 0x15, bytes([cmd, 1]))

    def _actuate(self, apply: bool, data: bytes) -> tuple[int, bytes]:
        manufacturer, tag, auth = int.from_bytes(data[:2], "big"), int.from_bytes(data[2:6], "big"), data[6:]
        seal = next((s for s in self.seals() if (s.manufacturer, s.tag) == (manufacturer, tag)), None)
        if seal is None:
            self.counters["refused"] += 1
            return 2, record_bytes(Seal(manufacturer, tag, state="opened", battery_pct=None), rssi_dbm=-128)
        result = 0
        if not seal.elock or auth != seal.authorisation.encode("ascii", "replace"):
            result = 1
        elif seal.state != ("opened" if apply else "sealed"):
            result = 3
        elif seal.battery_pct is not None and seal.battery_pct < 5:
            result = 4
        if result:
            self.counters["refused"] += 1
            return result, record_bytes(seal)
        now = datetime.datetime.now(datetime.UTC).replace(second=0, microsecond=0)
        if apply:
            seal.state, seal.sealed_at, seal.opened_at = "sealed", now, None
            seal.route = "on_route"
            self.counters["applied"] += 1
        else:
            seal.state, seal.opened_at = "opened", now
            self.counters["removed"] += 1
        self.world.notify()
        return 0, record_bytes(seal)

    def _heard(self, cmd: int, data: bytes) -> None:
        self.line.submit(self.address, lambda: self._execute(cmd, data))


async def start_seal_reader(
    world: LaneWorld,
    *,
    faults: FaultInjector | None = None,
    address: int = 1,
    baudrate: int = 19200,
    name: str = "ttySEAL",
    directory: str | None = None,
    line: SerialLine | None = None,
    **_opts: Any,
) -> SerialSimHandle:
    """Serve a seal reader at ``address`` on a fresh pty (or on ``line``, shared with others)."""
    if line is None:
        faults = faults if faults is not None else FaultInjector()
        turnaround = world.scaled(INVENTORY_S)
        line = SerialLine(faults, baudrate=baudrate, turnaround_s=turnaround, name=name, directory=directory)
        await line.start()
    elif faults is not None and faults is not line.faults:
        raise ValueError("a simulator on a shared line uses the line's fault injector")
    sim = SealReaderSim(world, line, address=address)
    line.attach(sim)
    return SerialSimHandle(line.port, line.faults, baudrate=line.baudrate, sim=sim, line=line, slaves=(sim,))
