"""Virtual devices: deterministic in-process fakes, registered like the real backends.

As python-can's ``virtual`` bus, this is a backend like any other — chosen by name from the
configuration and built by ``registry.create`` — so the code under test runs the same path it
runs against hardware (``Device._call``: deadlines, counters, error translation), without a
pty, a socket or a simulator process::

    gate: {backend: virtual, link: {kind: virtual, world: c1}}

Every device whose link names the same ``world`` shares one ``VirtualWorld``: the lane's
physical state as the devices see it. A test holds the same handle and plays the world's
part — sets inputs, reads what was commanded, injects faults::

    world = virtual_world("c1")                       # the world of link.world == "c1"
    gate = registry.create("gate", "c1/gate", cfg)    # cfg: backend virtual, link world c1
    await gate.open()
    assert world.gate.position is GatePosition.OPEN   # what the controller was told to do
    world.set_inputs(photocell=True)                  # a vehicle under the arm ...
    world.set_inputs(photocell=False)                 # ... and through
    assert (await gate.status()).vehicles_passed == 1
    world.faults("gate").timeouts = 2                 # the next two calls time out

Modules: the world a test plays (``VirtualWorld``, ``virtual_world``, the state of each device
in it) is ``drivers.virtual_world``; the lane's device backends are here; the radiation portal
and e-seal reader backends (``VirtualRpm``, ``VirtualSealReader``) are ``drivers.virtual_cargo``.

World API (``VirtualWorld``, ``drivers.virtual_world``):

* ``set_inputs(entry_loop=, in_position=, exit_loop=, photocell=, safety_loop=, lamp_ok=)``:
  change input levels; every change counts an edge (``edges(name)``), exactly — the
  counters the real I/O module and gate controller latch. ``inputs`` holds the levels.
* ``gate``: the controller (``GateController``): ``position``, ``locked``, ``fault_code``,
  ``cycles``, ``vehicles_passed``, ``motion_polls`` (status reads a movement lasts; 0 = the
  arm arrives at once), ``close_after_pass`` (on: the arm comes down by itself once a counted
  vehicle has cleared the photocell and the safety loop, as lane controllers are set up),
  ``finish_motion()``.
* ``light`` (``LightColour``), ``board`` (the ``BoardLine`` list on screen), ``boards``
  (every list ever shown).
* ``present_tag(tag_id, rssi=, antenna=)``: a card read by the reader.
* ``set_weight(kg, stable=)``: what the weighbridge indicator shows.
* ``pictures[device_id]`` / ``picture``: JPEG bytes a camera returns (default: an 8×8 grey
  picture of an empty lane).
* ``scanner``: the X-ray PLC (``ScannerPlc``): ``state``, ``zone_clear``, ``estop``,
  ``complete(result)``, ``fail(code)``.
* ``rpm``: the radiation portal (``RadiationPortal``): ``enter()`` (occupancy starts),
  ``leave(gamma_alarm=, neutron_alarm=, gamma_cps=, neutron_cps=)`` (it ends: an occupancy is
  reported), ``pass_vehicle(...)`` (both), ``faults`` (``RadiationFault`` set), ``tamper``,
  ``occupied_for_s`` (how long the occupancy in progress has lasted, for a stuck sensor).
* ``seals``: the e-seals and e-locks in the reader's field (``SealField``): ``place(record,
  authorisation=)`` (a seal on the vehicle in position, and the code its lock accepts),
  ``clear()``, ``records``; apply / remove change a lock's state as a real lock does (refused
  without the right code, out of the field, or in the wrong state).
* ``commands``: every command a device accepted, in order (``Command(device, action, arg)``).
* ``faults(kind)``: ``VirtualFaults`` of one device kind (``"gate"``, ``"io"``, ...).
* ``await wait_until(predicate)``: wait for a change that makes ``predicate()`` true (wrap
  it in ``asyncio.timeout``).

Faults (``VirtualFaults``, set by a test, counted down as they are used): ``unplugged``
(``DeviceUnavailableError`` on connect and on every call), ``timeouts`` /
``garbled`` / ``exceptions`` (the next N calls raise ``DeviceTimeoutError`` /
``DeviceProtocolError`` / ``ModbusExceptionError(exception_code)``), ``ignore_commands``
(the gate acknowledges the next N open/close commands and does not move).

Limits — what this backend does *not* model, by design:

* no time: nothing moves by itself. The arm moves when the test says (``motion_polls``,
  ``finish_motion``); a timeout fault raises at once instead of waiting for the deadline;
* no wire: no frames, CRCs, bus scheduling or inter-frame gaps (the wire-level simulators
  in ``sim_devices`` and the contract tests cover those);
* no physics: the arm never reverses by itself and nothing drives vehicles — a closing arm
  only stops for something under it when the test sets the photocell or safety loop;
* one gate, one I/O module, one board, one reader, one scale, one scanner per world (any
  number of cameras); worlds are per event loop, so every test starts from fresh ones;
* ``read_weight`` answers at once with the current reading; after an unstable reading it
  waits for the test to change the scale (so ``wait_stable`` does not spin).
"""

from __future__ import annotations

import time
from typing import Any

from .base import (
    BoardDriver,
    BoardLine,
    CameraDriver,
    Frame,
    GateDriver,
    GatePosition,
    GateStatus,
    IoDriver,
    LaneInputs,
    LightColour,
    RfidDriver,
    TagRead,
    WeighbridgeDriver,
    Weight,
)
from .config import DeviceConfig, VirtualLink
from .errors import DeviceError, DeviceFaultError, DeviceUnavailableError
from .scanner_device import ScannerDriver, ScannerState, ScannerStatus, ScanResult
from .virtual_world import VirtualFaults, VirtualWorld, virtual_world

__all__ = [
    "VirtualBoard",
    "VirtualCamera",
    "VirtualGate",
    "VirtualIo",
    "VirtualRfid",
    "VirtualScanner",
    "VirtualWeighbridge",
]

#: Refusal codes, the same numbers the RS-485 controllers answer in a NAK.
REFUSED_LOCKED, REFUSED_FAULT, REFUSED_OBSTACLE = 0x01, 0x02, 0x03


# --------------------------------------------------------------------------- devices


class _Virtual:
    """What every virtual device shares: its world, its faults, connect/close."""

    kind: str
    device_id: str

    def _setup(self, config: DeviceConfig) -> None:
        link = config.link
        if not isinstance(link, VirtualLink):
            raise DeviceUnavailableError(
                f"a virtual device needs a virtual link, not {link.kind}", device=self.device_id
            )
        self.link = link
        self._world: VirtualWorld | None = None

    @property
    def world(self) -> VirtualWorld:
        if self._world is None:
            raise DeviceUnavailableError("not connected", device=self.device_id)
        return self._world

    @property
    def faults(self) -> VirtualFaults:
        return self.world.faults(self.kind)

    async def _connect(self) -> None:
        world = virtual_world(self.link.world)
        if world.faults(self.kind).unplugged:
            raise DeviceUnavailableError("virtual adapter unplugged", device=self.device_id)
        self._world = world

    async def _close(self) -> None:
        self._world = None

    def _check(self) -> VirtualWorld:
        world = self.world
        world.faults(self.kind).check()
        return world


class VirtualGate(_Virtual, GateDriver):
    """A barrier controller in a ``VirtualWorld``: refuses as the real ones do (open while
    locked or faulted, close with something under the arm), counts edges and passages."""

    def __init__(self, device_id: str, config: DeviceConfig, **_opts: Any) -> None:
        GateDriver.__init__(self, device_id, timeout=config.timeout_s)
        self._setup(config)

    def _command(self, action: str, target: GatePosition | None) -> None:
        w = self._check()
        g = w.gate
        if action == "open" and g.locked:
            raise DeviceFaultError("OPEN refused by the controller: locked", code=REFUSED_LOCKED)
        if action == "open" and g.fault_code:
            raise DeviceFaultError("OPEN refused by the controller: fault", code=REFUSED_FAULT)
        if action == "close" and (w.inputs["photocell"] or w.inputs["safety_loop"]):
            raise DeviceFaultError("CLOSE refused by the controller: obstacle", code=REFUSED_OBSTACLE)
        if target is not None and w.faults(self.kind).take_ignore():
            w._record(self.kind, f"{action} (ignored)")
            return
        if target is not None:
            g._move(target)
        elif g.moving:  # stop
            g.position = GatePosition.STOPPED
        w._record(self.kind, action)

    async def _open(self) -> None:
        self._command("open", GatePosition.OPEN)

    async def _close_arm(self) -> None:
        self._command("close", GatePosition.CLOSED)

    async def _stop(self) -> None:
        self._command("stop", None)

    async def _lock(self, locked: bool) -> None:
        w = self._check()
        w.gate.locked = locked
        w._record(self.kind, "lock", locked)

    async def _status(self) -> GateStatus:
        w = self._check()
        g = w.gate
        g._poll()
        return GateStatus(
            position=GatePosition.FAULT if g.fault_code else g.position,
            limit_open=g.position == GatePosition.OPEN,
            limit_closed=g.position == GatePosition.CLOSED,
            photocell_blocked=w.inputs["photocell"],
            loop_occupied=w.inputs["safety_loop"],
            locked=g.locked,
            fault_code=g.fault_code,
            cycles=g.cycles,
            photocell_edges=w.edges("photocell"),
            loop_edges=w.edges("safety_loop"),
            vehicles_passed=g.vehicles_passed,
        )


class VirtualIo(_Virtual, IoDriver):
    """The lane's I/O module in a ``VirtualWorld``: inputs with edge counters, the light."""

    def __init__(self, device_id: str, config: DeviceConfig, **_opts: Any) -> None:
        IoDriver.__init__(self, device_id, timeout=config.timeout_s)
        self._setup(config)

    async def _read_inputs(self) -> LaneInputs:
        w = self._check()
        return LaneInputs(
            entry_loop=w.inputs["entry_loop"],
            in_position=w.inputs["in_position"],
            exit_loop=w.inputs["exit_loop"],
            light=w.light,
            entry_loop_edges=w.edges("entry_loop"),
            in_position_edges=w.edges("in_position"),
            exit_loop_edges=w.edges("exit_loop"),
        )

    async def _set_light(self, colour: LightColour) -> None:
        w = self._check()
        w.light = colour
        w._record(self.kind, "light", str(colour))


class VirtualBoard(_Virtual, BoardDriver):
    def __init__(self, device_id: str, config: DeviceConfig, **_opts: Any) -> None:
        BoardDriver.__init__(self, device_id, timeout=config.timeout_s)
        self._setup(config)

    async def _show(self, lines: list[BoardLine]) -> None:
        w = self._check()
        w.board = list(lines)
        w.boards.append(list(lines))
        w._record(self.kind, "show", tuple(line.text for line in lines))


class VirtualRfid(_Virtual, RfidDriver):
    def __init__(self, device_id: str, config: DeviceConfig, **_opts: Any) -> None:
        RfidDriver.__init__(self, device_id, timeout=config.timeout_s)
        self._setup(config)

    async def _next_read(self) -> TagRead:
        w = self._check()
        return await w._tags.get()  # deadline: RfidDriver.next_read's listening window


class VirtualWeighbridge(_Virtual, WeighbridgeDriver):
    def __init__(self, device_id: str, config: DeviceConfig, **_opts: Any) -> None:
        WeighbridgeDriver.__init__(self, device_id, timeout=config.timeout_s)
        self._setup(config)
        self._seen: tuple[int, bool] | None = None  # (scale version, stable) last returned

    async def _read_weight(self) -> Weight:
        w = self._check()
        if self._seen is not None and not self._seen[1]:
            seen = self._seen[0]
            await w.wait_until(lambda: w._scale_version != seen)  # deadline: Device._call
        self._seen = (w._scale_version, w.weight_stable)
        return Weight(kg=w.weight_kg, stable=w.weight_stable)


class VirtualCamera(_Virtual, CameraDriver):
    def __init__(self, device_id: str, config: DeviceConfig, **_opts: Any) -> None:
        CameraDriver.__init__(self, device_id, timeout=config.timeout_s)
        self._setup(config)

    async def _snapshot(self) -> Frame:
        w = self._check()
        return Frame(camera=self.device_id, jpeg=w.pictures.get(self.device_id, w.picture), ts=time.time())


class VirtualScanner(_Virtual, ScannerDriver):
    """The X-ray PLC in a ``VirtualWorld``: refuses to start unless ready with the zone clear."""

    def __init__(self, device_id: str, config: DeviceConfig, **_opts: Any) -> None:
        ScannerDriver.__init__(self, device_id, timeout=config.timeout_s)
        self._setup(config)

    async def _status(self) -> ScannerStatus:
        s = self._check().scanner
        return ScannerStatus(
            state=s.state,
            zone_clear=s.zone_clear,
            estop=s.estop,
            radiation_on=s.radiation_on,
            scan_id=s.scan_id,
            result=s.result,
            fault_code=s.fault_code,
            progress_pct=100 if s.state == ScannerState.COMPLETE else 0,
            image_ref=s.image_ref,
        )

    def _refuse(self, what: str) -> DeviceError:
        s = self.world.scanner
        return DeviceFaultError(f"scanner refused {what} (state {s.state.name.lower()})", code=s.fault_code)

    async def _start(self, *, vehicle_ref: str, lane: int, seq: int) -> None:
        w = self._check()
        s = w.scanner
        if s.state not in (ScannerState.READY, ScannerState.COMPLETE) or not s.zone_clear or s.estop:
            raise self._refuse("start")
        s.scan_id += 1
        s.state, s.result, s.fault_code, s.vehicle_ref, s.image_ref = (
            ScannerState.SCANNING,
            ScanResult.NONE,
            0,
            vehicle_ref,
            "",
        )
        w._record(self.kind, "start", (vehicle_ref, lane, seq))

    async def _abort(self) -> None:
        w = self._check()
        if w.scanner.state != ScannerState.SCANNING:
            raise self._refuse("abort")
        w.scanner.state, w.scanner.fault_code = ScannerState.READY, 0x30
        w._record(self.kind, "abort")

    async def _reset(self) -> None:
        w = self._check()
        w.scanner.state, w.scanner.fault_code = ScannerState.READY, 0
        w._record(self.kind, "reset")
