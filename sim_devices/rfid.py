"""Simulated UHF reader for the electronic vehicle card, on a pty.

Pushes ``A0 len addr 89 freq_ant pc epc rssi check`` frames (R2000-family layout, see
``firmware_config/devices/rfid_serial.yaml`` / ``docs/devices/rfid.md``) with its own encoder:

* when a vehicle carrying a card reaches the identification position
  (``world.in_position`` becomes true) the reader reports its tag once (``repeats`` times,
  ``repeat_gap_s`` apart — real readers report a tag several times while it is in the field);
* a heartbeat frame (cmd 7F) every ``heartbeat_s`` seconds (0 = off);
* the card's id is its EPC in hex; an id that is not whole 16-bit words of hex is sent as
  its ASCII bytes (padded with NUL to a whole word), as a card written in text would be.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .faults import FaultInjector
from .pty_port import PtyPort, SerialSimHandle
from .world import LaneWorld

__all__ = ["RfidSim", "epc_bytes", "start_rfid"]

#: A card at 7–10 m is read within 0.5 s of entering the field (design target); we answer
#: after 50 ms of "inventory" time.
READ_LATENCY_S = 0.05
HEARTBEAT_S = 1.0


def epc_bytes(tag_id: str) -> bytes:
    t = tag_id.strip().replace(" ", "")
    try:
        raw = bytes.fromhex(t)
    except ValueError:
        raw = b""
    if not raw or len(raw) % 2:
        raw = t.encode("utf-8")
        if len(raw) % 2:
            raw += b"\x00"
    return raw[:52]


def _sum_check(body: bytes) -> int:
    return (256 - sum(body) % 256) % 256


class RfidSim:
    def __init__(
        self,
        world: LaneWorld,
        faults: FaultInjector,
        *,
        address: int = 1,
        antenna: int = 1,
        rssi_dbm: int = -58,
        repeats: int = 1,
        repeat_gap_s: float = 0.1,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.world = world
        self.faults = faults
        self.address = address
        self.antenna = antenna
        self.rssi_dbm = rssi_dbm
        self.repeats = repeats
        self.repeat_gap_s = repeat_gap_s
        self.heartbeat_s = heartbeat_s
        self.port: PtyPort | None = None
        self.sent_tags: list[str] = []
        self._hb_seq = 0

    def _frame(self, cmd: int, data: bytes) -> bytes:
        body = bytes((0xA0, len(data) + 3, self.address, cmd)) + data
        return body + bytes((_sum_check(body),))

    def tag_frame(self, tag_id: str) -> bytes:
        epc = epc_bytes(tag_id)
        ant = ((self._hb_seq % 50) << 2) | ((self.antenna - 1) & 3)  # hop over 50 channels
        pc = (len(epc) // 2) << 11
        rssi = self.rssi_dbm + 129 + int(self.faults.random() * 4) - 2
        return self._frame(0x89, bytes((ant,)) + pc.to_bytes(2, "big") + epc + bytes((max(0x1F, min(0x7F, rssi)),)))

    async def _send(self, frame: bytes) -> None:
        out = await self.faults.outgoing(frame, unit=self.address)
        if out is not None and self.port is not None:
            self.port.write(out)

    async def watch(self) -> None:
        w = self.world
        while True:
            await w.wait_until(lambda: w.in_position and w.vehicle is not None)
            vehicle = w.vehicle
            if vehicle is not None and vehicle.tag_id:
                await asyncio.sleep(w.scaled(READ_LATENCY_S))
                for i in range(self.repeats):
                    if i:
                        await asyncio.sleep(self.repeat_gap_s)
                    await self._send(self.tag_frame(vehicle.tag_id))
                self.sent_tags.append(vehicle.tag_id)
            await w.wait_until(lambda v=vehicle: not w.in_position or w.vehicle is not v)

    async def heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            self._hb_seq = (self._hb_seq + 1) & 0xFF
            await self._send(self._frame(0x7F, bytes((self._hb_seq,))))

    async def push(self, tag_id: str) -> None:
        """Report a tag now (a test or the CLI waving a card at the antenna)."""
        await self._send(self.tag_frame(tag_id))
        self.sent_tags.append(tag_id)


async def start_rfid(
    world: LaneWorld,
    *,
    faults: FaultInjector | None = None,
    address: int = 1,
    baudrate: int = 115200,
    heartbeat_s: float = HEARTBEAT_S,
    repeats: int = 1,
    name: str = "ttyRFID",
    directory: str | None = None,
    **_opts: Any,
) -> SerialSimHandle:
    """Serve an e-card reader on a fresh pty; it reports ``world.vehicle.tag_id`` on arrival."""
    faults = faults if faults is not None else FaultInjector()
    sim = RfidSim(world, faults, address=address, heartbeat_s=heartbeat_s, repeats=repeats)
    port = await PtyPort(lambda _data: None, name=name, directory=directory, faults=faults).start()
    sim.port = port
    handle = SerialSimHandle(port, faults, baudrate=baudrate, sim=sim)
    handle.add_task(sim.watch(), name=f"rfid-sim-watch-{port.path}")
    if heartbeat_s > 0:
        handle.add_task(sim.heartbeat(), name=f"rfid-sim-heartbeat-{port.path}")
    return handle
