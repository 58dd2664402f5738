"""Simulated radiation portal monitor pushing Rapiscan-style CSV lines over TCP.

Protocol: ``firmware_config/devices/rpm_rapiscan.yaml`` / ``docs/devices/radiation-portal.md``
(``GB``/``NB`` backgrounds while idle, ``GS``/``GA`` and ``NS``/``NA`` samples while
occupied, ``GX`` at the end of each occupancy, ``SP`` speed, ``TT``/``TC`` tamper,
``GH``/``GL``/``NH`` background faults, ``SG1``–``SG3`` set-up at each connection), written
with this module's own encoder.

Physics, per panel (four PVT gamma panels, four He-3 neutron tubes, two either side):

* background counts are Poisson with the panel's rate (``gamma_bg_cps``, ``neutron_bg_cps``);
  the portal's background estimate is a running mean of what it counted while idle;
* occupancy follows the lane world: the portal stands on the approach, so it is occupied
  while the vehicle is ``at_entry`` (``LaneWorld.in_portal``);
* a vehicle's ``radiation`` (``Radiation.gamma_cps`` / ``neutron_cps``, all panels together,
  spread over the panels by ``SOURCE_SPREAD``) adds to the rates while it is in the portal;
* gamma alarm when the sum of the last second's samples (five 200 ms samples, all panels)
  exceeds ``B + n·√B`` with ``B`` the estimated background in counts per second; neutron
  alarm when the occupancy's neutron counts exceed the same test against the background
  expected over the occupancy's live time. ``nsigma`` (gamma) and ``neutron_nsigma``.

Samples are physical time (200 ms of counting each); the world's ``time_factor`` only makes
them come faster. Faults (``FaultInjector``): ``dead`` — the portal sends nothing (silence);
``unplug()``/``replug()`` — the network cable (server closed, connections cut, then listening
again on the same port); ``corrupt``/``noise``/``noise_storm`` — damaged lines (the output is
an RS-232 stream bridged to TCP, so line noise reaches the socket); ``stuck`` — the
occupancy sensor stays occupied. Portal-specific knobs on ``RpmSim``: ``background_fault``
(``gamma_high``, ``gamma_low``, ``neutron_high``) and ``tamper``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from typing import Any

from .faults import FaultInjector
from .modbus_slave import free_tcp_port
from .world import LaneWorld, Vehicle

__all__ = ["PANELS", "RpmSim", "RpmSimHandle", "poisson", "start_rpm"]

PANELS = 4
#: One gamma sample counts for 200 ms (five lines a second while occupied).
SAMPLE_S = 0.2
WINDOW = 5  # samples in the one-second alarm window
NEUTRON_EVERY = 5  # one neutron line per second of samples
#: Natural background at a cargo portal: ~2,000–3,000 cps per large PVT panel, ~1–2 cps per
#: He-3 tube. Varies with the site's geology and the weather (rain washes radon down).
GAMMA_BG_CPS = 2400.0
NEUTRON_BG_CPS = 1.5
#: Set-up of a typical cargo portal: 4σ gamma (false alarms ~1 in 30,000 seconds), 6σ neutron.
NSIGMA = 4.0
NEUTRON_NSIGMA = 6.0
#: Background lines while idle: one GB and one NB a second.
BACKGROUND_PERIOD_S = 1.0
#: Background limits the portal checks (counts/s per panel): beyond them it sends GH/GL/NH.
GAMMA_HIGH_CPS, GAMMA_LOW_CPS, NEUTRON_HIGH_CPS = 6000, 300, 20
#: How a source on a truck spreads over the four panels (the near side sees more).
SOURCE_SPREAD = (0.35, 0.35, 0.15, 0.15)
#: Trucks pass a cargo portal at a walking pace: 5–10 km/h.
SPEED_KPH = (5.0, 10.0)


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw: Knuth's method for small means, the normal approximation above 30."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _line(code: str, *fields: int | str) -> bytes:
    parts = [code, *(f"{f:06d}" if isinstance(f, int) else f for f in fields)]
    return (",".join(parts) + "\r\n").encode("ascii")


class RpmSim:
    """The portal's electronics: counting, alarm decision, record stream."""

    def __init__(
        self,
        world: LaneWorld,
        faults: FaultInjector,
        *,
        seed: int = 0,
        gamma_bg_cps: float = GAMMA_BG_CPS,
        neutron_bg_cps: float = NEUTRON_BG_CPS,
        nsigma: float = NSIGMA,
        neutron_nsigma: float = NEUTRON_NSIGMA,
    ) -> None:
        self.world = world
        self.faults = faults
        self.rng = random.Random(seed)
        self.gamma_bg = [gamma_bg_cps] * PANELS
        self.neutron_bg = [neutron_bg_cps] * PANELS
        self.nsigma = nsigma
        self.neutron_nsigma = neutron_nsigma
        self.background_fault = ""  # "", "gamma_high", "gamma_low", "neutron_high"
        self.tamper = False
        self.occupancy_count = 0
        self.occupancies: list[dict[str, Any]] = []  # what the portal concluded, for tests
        self.lines_sent = 0
        self.samples = 0  # gamma samples counted in occupancies, ever (tests wait on it)
        self._est_gamma = list(self.gamma_bg)  # the portal's background estimate
        self._est_neutron = list(self.neutron_bg)
        self._sent_tamper = False
        self._writers: set[asyncio.StreamWriter] = set()

    # ------------------------------------------------------------------ output
    def hello(self) -> list[bytes]:
        """Set-up lines sent to every new connection (SG1: high bg, low bg, intervals,
        occupancy hold-in, n-sigma; SG2: detectors, discriminators, relay, algorithm, version)."""
        return [
            _line("SG1", GAMMA_HIGH_CPS, GAMMA_LOW_CPS, WINDOW, 2, f"{self.nsigma:.1f}"),
            _line("SG2", "4", "0060", "3000", 1, "SUM", "SIM-1.0"),
            _line("SG3", "0060", "3000", 20, f"{self.neutron_nsigma:.1f}", "FW-SIM"),
        ]

    async def send(self, line: bytes) -> None:
        out = await self.faults.outgoing(line)
        if out is None:
            return
        self.lines_sent += 1
        for w in list(self._writers):
            if w.is_closing():
                self._writers.discard(w)
                continue
            w.write(out)

    # ------------------------------------------------------------------ physics
    def _rates(self, vehicle: Vehicle | None) -> tuple[list[float], list[float]]:
        g, n = list(self.gamma_bg), list(self.neutron_bg)
        rad = vehicle.radiation if vehicle is not None else None
        if rad is not None:
            g = [b + rad.gamma_cps * w for b, w in zip(g, SOURCE_SPREAD, strict=True)]
            n = [b + rad.neutron_cps * w for b, w in zip(n, SOURCE_SPREAD, strict=True)]
        return g, n

    def _background_lines(self) -> list[bytes]:
        g = [poisson(self.rng, r * BACKGROUND_PERIOD_S) for r in self.gamma_bg]
        n = [poisson(self.rng, r * BACKGROUND_PERIOD_S) for r in self.neutron_bg]
        # The estimate follows the counts slowly (a 10 s running mean).
        self._est_gamma = [0.9 * e + 0.1 * c / BACKGROUND_PERIOD_S for e, c in zip(self._est_gamma, g, strict=True)]
        self._est_neutron = [0.9 * e + 0.1 * c / BACKGROUND_PERIOD_S for e, c in zip(self._est_neutron, n, strict=True)]
        gcode = {"gamma_high": "GH", "gamma_low": "GL"}.get(self.background_fault, "GB")
        ncode = "NH" if self.background_fault == "neutron_high" else "NB"
        if gcode == "GH":
            g = [max(c, GAMMA_HIGH_CPS + 1) for c in g]
        elif gcode == "GL":
            g = [min(c, GAMMA_LOW_CPS - 1) for c in g]
        if ncode == "NH":
            n = [max(c, NEUTRON_HIGH_CPS + 1) for c in n]
        return [_line(gcode, *g), _line(ncode, *n)]

    @property
    def occupied(self) -> bool:
        return self.world.in_portal or self.faults.stuck

    async def _occupancy(self, period: float) -> None:
        """Count one occupancy until the vehicle has left the portal, then send GX."""
        vehicle = self.world.vehicle
        bg_g = sum(self._est_gamma)
        threshold = bg_g + self.nsigma * math.sqrt(bg_g)
        window: list[int] = []
        gamma_alarm = neutron_alarm = False
        neutron_total, neutron_live, samples, max_cps = 0, 0.0, 0, 0
        lo, hi = SPEED_KPH
        kph = lo + (hi - lo) * self.rng.random()
        await self.send(_line("SP", f"{1 / (kph / 3.6 / 0.3048):.4f}", f"{kph / 1.609344:06.3f}", f"{kph:06.3f}"))
        loop = asyncio.get_running_loop()
        start = loop.time()
        while self.occupied or samples < self._due(start, period):
            if samples >= self._due(start, period):
                await asyncio.sleep(period)
                continue
            g_rates, n_rates = self._rates(vehicle)
            counts = [poisson(self.rng, r * SAMPLE_S) for r in g_rates]
            samples += 1
            window = [*window[-(WINDOW - 1) :], sum(counts)]
            if len(window) == WINDOW:
                max_cps = max(max_cps, sum(window))
                gamma_alarm |= sum(window) > threshold
            await self.send(_line("GA" if gamma_alarm else "GS", *counts))
            self.samples += 1
            self.world.notify()
            if samples % NEUTRON_EVERY == 1:
                n_counts = [poisson(self.rng, r * SAMPLE_S * NEUTRON_EVERY) for r in n_rates]
                neutron_total += sum(n_counts)
                neutron_live += SAMPLE_S * NEUTRON_EVERY
                expected = sum(self._est_neutron) * neutron_live
                neutron_alarm |= neutron_total > expected + self.neutron_nsigma * math.sqrt(max(expected, 1.0))
                await self.send(_line("NA" if neutron_alarm else "NS", *n_counts))
        self.occupancy_count = (self.occupancy_count + 1) % 1_000_000
        self.occupancies.append(
            {
                "number": self.occupancy_count,
                "vid": vehicle.vid if vehicle is not None else "",
                "gamma_alarm": gamma_alarm,
                "neutron_alarm": neutron_alarm,
                "samples": samples,
                "max_gamma_cps": max_cps,
                "threshold_cps": threshold,
            }
        )
        self.world.notify()
        await self.send(_line("GX", self.occupancy_count, round(sum(self._est_neutron) * 1000)))

    @staticmethod
    def _due(start: float, period: float) -> int:
        """Samples the portal has counted since ``start``: one per ``period`` of (scaled) time,
        however late this loop runs — a starved host sends them in a burst, as a portal's
        buffered serial output does, and a vehicle's count never depends on the host's load."""
        return 1 + int((asyncio.get_running_loop().time() - start) / period)

    async def run(self) -> None:
        """The portal's main loop: backgrounds while idle, an occupancy when occupied."""
        w = self.world
        period = max(SAMPLE_S * w.time_factor, 0.002)
        idle_lines = 0
        while True:
            if self.tamper != self._sent_tamper:
                self._sent_tamper = self.tamper
                await self.send(_line("TT" if self.tamper else "TC"))
                w.notify()
            if self.occupied:
                await self._occupancy(period)
                idle_lines = 0
                continue
            if idle_lines % round(BACKGROUND_PERIOD_S / SAMPLE_S) == 0:
                for line in self._background_lines():
                    await self.send(line)
                w.notify()
            idle_lines += 1
            with contextlib.suppress(TimeoutError):
                await w.wait_until(lambda: self.occupied, timeout=period)

    # ------------------------------------------------------------------ connections
    async def client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A connection: the set-up lines, then the stream, until the peer goes."""
        for line in self.hello():
            writer.write(line)
        self._writers.add(writer)
        try:
            while await reader.read(1024):
                pass  # the portal ignores what it is sent
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def cut(self) -> None:
        for w in list(self._writers):
            w.close()
        self._writers.clear()


class RpmSimHandle:
    """A running portal simulator: ``link`` (a site-config link dict), ``faults``, ``sim``."""

    def __init__(self, sim: RpmSim, faults: FaultInjector, port: int) -> None:
        self.sim = sim
        self.faults = faults
        self.port = port
        self.link: dict[str, object] = {"kind": "tcp", "host": "127.0.0.1", "port": port}
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        faults.on_plug(self._plug)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            await self.sim.client(reader, writer)
        finally:
            self._clients.discard(task)

    async def listen(self) -> None:
        if self._server is None and not self._closed:
            self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def _unlisten(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.sim.cut()
        if self._clients:
            await asyncio.wait(list(self._clients))
        if server is not None:
            await server.wait_closed()

    async def _plug(self, plugged: bool) -> None:
        if plugged:
            await self.listen()
        else:
            await self._unlisten()

    async def start(self) -> RpmSimHandle:
        if not self.faults.unplugged:  # ``--fault unplugged``: the cable is out from the start
            await self.listen()
        self._task = asyncio.create_task(self.sim.run(), name=f"rpm-sim-{self.port}")
        return self

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if (current := asyncio.current_task()) is not None and current.cancelling():
                    raise
        await self._unlisten()

    async def __aenter__(self) -> RpmSimHandle:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def start_rpm(
    world: LaneWorld,
    *,
    faults: FaultInjector | None = None,
    port: int | None = None,
    seed: int = 0,
    nsigma: float = NSIGMA,
    **_opts: Any,
) -> RpmSimHandle:
    """Serve a portal on a loopback TCP port; it watches ``world`` for vehicles."""
    faults = faults if faults is not None else FaultInjector()
    sim = RpmSim(world, faults, seed=seed, nsigma=nsigma)
    return await RpmSimHandle(sim, faults, port or free_tcp_port()).start()
