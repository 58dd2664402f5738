"""Run-time fault injection shared by every simulator (serial, Modbus, camera).

One ``FaultInjector`` per simulated device (or per simulated RS-485 line). A simulator asks
it what to do with each request and each answer; a test (or the chaos suite) changes it
while the simulator runs; ``portlane sim --fault SPEC`` builds one from the command line.
Everything random draws from one ``random.Random(seed)``, so a run is repeatable.

Knobs — attribute / method for tests, ``--fault`` spelling in brackets:

* ``dead`` [``dead``] or ``dead_units`` [``dead=U+U``]: never answer (the device or that
  address is powered off, its RS-485 transceiver is broken, its address misconfigured).
* ``unplug()`` / ``replug()`` [``unplugged``: start unplugged]: the USB-serial adapter (or
  the TCP device's cable) is pulled out. Serial: the pty and its stable path vanish, open
  handles get EIO, ``replug`` serves a fresh pty behind the same path. Modbus TCP: the
  server stops and refuses connections until ``replug``.
* ``drop`` [``drop=P``]: probability that one answer is lost (a collision, a noise burst).
* ``delay`` [``delay=S``]: seconds before each answer (a slow controller, a busy PLC).
* ``corrupt`` [``corrupt=P``]: probability that one answer's last byte (the checksum of
  every framed protocol here) is damaged. Modbus TCP: the answer is well framed but its
  content inconsistent (too few registers, a wrong echo) — see ``should_garble``.
* ``noise`` [``noise=P``]: probability that 1–8 random bytes precede an answer. Serial only.
* ``noise_storm(seconds=S | answers=N)`` [``storm=S``, repeating with ``storm_every=P``]:
  a burst of line noise — for S seconds (or the next N answers) every answer is garbled
  and preceded by random bytes, streamed frames (scale, RFID) included. Modbus TCP answers
  come out malformed as with ``corrupt``.
* ``exception_replies(code, count=N | seconds=S)`` [``exception=CODE``, limited with
  ``exception_count=N`` or ``exception_s=S``]: Modbus devices answer the next N requests
  (or every request for S seconds, or every request) with that exception code — 06
  "server device busy" is the usual one. The RS-485 gate controllers answer commands with
  NAK of that reason (06 busy) instead.
* ``ignore_commands(n)`` [``ignore=N``]: a gate controller acknowledges the next N
  open/close commands and does not move — the arm stays where it is and the status says
  so, as with a slipping clutch or a contactor that did not pull in. The lane must notice
  from the status that the gate did not move, and retry.
* ``stuck`` [``stuck``]: the barrier motor does not move at all; the controller reports a
  motor stall (``LaneWorld.stuck`` on the attached worlds). A radiation portal's occupancy
  sensor stays occupied (``sim_devices.rpm``: the occupancy never ends).
* ``seed`` [``seed=N``].

``FaultInjector.parse("drop=0.1,delay=0.05,storm=2,storm_every=20,ignore=1,seed=7")``.
Time windows (``storm``, ``exception_s``) run on the monotonic clock from the injector's
first use (``--fault`` at start-up) or from the method call (tests); tests prefer the
counted forms (``answers=``, ``count=``), which need no clock.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FaultInjector", "FaultSpecError"]

PlugHook = Callable[[bool], Awaitable[None] | None]

_KNOWN = (
    "drop=P, delay=S, corrupt=P, noise=P, storm=S, storm_every=S, exception=N, exception_count=N, "
    "exception_s=S, ignore=N, dead, dead=U+U, stuck, unplugged, seed=N"
)


class FaultSpecError(ValueError):
    """A ``--fault`` specification that cannot be understood."""


@dataclass
class FaultInjector:
    seed: int = 0
    drop: float = 0.0
    delay: float = 0.0
    corrupt: float = 0.0
    noise: float = 0.0
    dead: bool = False
    dead_units: set[int] = field(default_factory=set)
    exception: int = 0  # Modbus: answer with this exception code (see exception_replies)
    exception_count: int | None = None  # ... for this many requests (None: no limit)
    exception_s: float | None = None  # ... for this many seconds (None: no limit)
    storm: float = 0.0  # noise storm length (s) ...
    storm_every: float = 0.0  # ... repeating with this period (0: once)
    ignore: int = 0  # gate open/close commands to acknowledge and not execute
    counters: dict[str, int] = field(
        default_factory=lambda: {
            "sent": 0,
            "dropped": 0,
            "corrupted": 0,
            "dead": 0,
            "delayed": 0,
            "noise": 0,
            "storm": 0,
            "exceptions": 0,
            "ignored": 0,
        }
    )
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    _stuck: bool = False
    _unplugged: bool = False
    _origin: float | None = field(default=None, repr=False)  # start of the time windows
    _storm_answers: int = field(default=0, repr=False)
    _worlds: list[Any] = field(default_factory=list, repr=False)
    _plug_hooks: list[PlugHook] = field(default_factory=list, repr=False)
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("drop", "corrupt", "noise"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise FaultSpecError(f"{name} must be a probability in [0, 1], got {p}")
        for name in ("delay", "storm", "storm_every"):
            if getattr(self, name) < 0:
                raise FaultSpecError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.storm_every and self.storm >= self.storm_every:
            raise FaultSpecError(f"a storm of {self.storm} s every {self.storm_every} s never ends")
        if self.ignore < 0 or (self.exception_count is not None and self.exception_count < 0):
            raise FaultSpecError("counts must be >= 0")
        self._rng = random.Random(self.seed)

    # ------------------------------------------------------------------ construction
    @classmethod
    def parse(cls, specs: str | Iterable[str] | None, *, seed: int = 0) -> FaultInjector:
        """Build from ``"drop=0.1,delay=0.05"`` or a list of such strings."""
        if specs is None:
            return cls(seed=seed)
        items: list[str] = []
        for spec in [specs] if isinstance(specs, str) else specs:
            items += [s.strip() for s in spec.split(",") if s.strip()]
        kw: dict[str, Any] = {"seed": seed}
        flags: dict[str, bool] = {}
        for item in items:
            key, sep, value = item.partition("=")
            key = key.strip().lower()
            try:
                if key in ("drop", "corrupt", "noise", "delay", "storm", "storm_every", "exception_s"):
                    if not sep:
                        raise FaultSpecError(f"{key} needs a value, e.g. {key}=0.1")
                    kw[key] = float(value)
                elif key in ("exception", "exception_count", "ignore", "seed"):
                    if not sep:
                        raise FaultSpecError(f"{key} needs a value, e.g. {key}=6")
                    kw[key] = int(value, 0)
                elif key == "dead" and sep:
                    kw["dead_units"] = {int(v) for v in value.split("+") if v}
                elif key in ("dead", "stuck", "unplugged"):
                    flags[key] = True
                else:
                    raise FaultSpecError(f"unknown fault {key!r}; known: {_KNOWN}")
            except ValueError as exc:
                if isinstance(exc, FaultSpecError):
                    raise
                raise FaultSpecError(f"bad value in {item!r}: {exc}") from exc
        inj = cls(**kw)
        inj.dead = flags.get("dead", False)
        inj._stuck = flags.get("stuck", False)
        inj._unplugged = flags.get("unplugged", False)
        return inj

    # ------------------------------------------------------------------ time windows
    def _elapsed(self) -> float:
        now = self.clock()
        if self._origin is None:
            self._origin = now
        return now - self._origin

    def noise_storm(self, *, seconds: float | None = None, answers: int | None = None) -> None:
        """Start a noise storm now: for ``seconds`` (clock) or for the next ``answers`` answers."""
        if answers is not None:
            self._storm_answers = answers
        if seconds is not None:
            self.storm, self.storm_every = seconds, 0.0
            self._origin = self.clock()

    def storming(self) -> bool:
        """Is the line in a noise storm now? (Does not use up a counted storm answer.)"""
        if self._storm_answers > 0:
            return True
        if not self.storm:
            return False
        t = self._elapsed()
        return (t % self.storm_every if self.storm_every else t) < self.storm

    def exception_replies(self, code: int = 6, *, count: int | None = None, seconds: float | None = None) -> None:
        """Answer Modbus requests with exception ``code``: the next ``count`` requests, or for
        ``seconds``, or (neither) until ``exception`` is set back to 0."""
        self.exception, self.exception_count, self.exception_s = code, count, seconds
        if seconds is not None:
            self._origin = self.clock()

    def take_exception(self) -> int:
        """The exception code to answer this request with (0: answer normally). Counts it."""
        if not self.exception:
            return 0
        if self.exception_s is not None and self._elapsed() >= self.exception_s:
            return 0
        if self.exception_count is not None:
            if self.exception_count <= 0:
                return 0
            self.exception_count -= 1
        self.counters["exceptions"] += 1
        return self.exception

    def ignore_commands(self, n: int) -> None:
        """The gate acknowledges the next ``n`` open/close commands and does not move."""
        self.ignore = n

    def take_ignore(self) -> bool:
        """Should the gate ignore this open/close command? Counts it."""
        if self.ignore > 0:
            self.ignore -= 1
            self.counters["ignored"] += 1
            return True
        return False

    # ------------------------------------------------------------------ answers
    def is_dead(self, unit: int | None = None) -> bool:
        return self.dead or (unit is not None and unit in self.dead_units)

    def should_answer(self, unit: int | None = None) -> bool:
        """Decide (and count) whether one answer goes out at all."""
        if self._unplugged:
            return False
        if self.is_dead(unit):
            self.counters["dead"] += 1
            return False
        if self.drop and self._rng.random() < self.drop:
            self.counters["dropped"] += 1
            return False
        return True

    def maybe_corrupt(self, frame: bytes) -> bytes:
        """Damage the last byte (the checksum in every framed protocol here) with probability ``corrupt``."""
        if frame and self.corrupt and self._rng.random() < self.corrupt:
            self.counters["corrupted"] += 1
            return self._damage_last(frame)
        return frame

    def _damage_last(self, frame: bytes) -> bytes:
        return frame[:-1] + bytes([frame[-1] ^ (1 + self._rng.randrange(255))])

    def _garble(self, frame: bytes) -> bytes:
        """A storm's damage: random bytes before, one flipped byte inside, a bad checksum."""
        out = bytearray(frame)
        if len(out) > 2:
            i = self._rng.randrange(len(out) - 1)
            out[i] ^= 1 << self._rng.randrange(8)
        out = bytearray(self._damage_last(bytes(out))) if out else out
        return self._rng.randbytes(1 + self._rng.randrange(8)) + bytes(out)

    def should_garble(self) -> bool:
        """For transports without a noisy line (Modbus TCP): is this answer to come out
        malformed (a storm or ``corrupt``)? Counts it. The transport decides what malformed
        means — TCP's own checksum would drop a damaged segment, so a TCP device garbles by
        sending a well-framed answer whose content is inconsistent."""
        if self._unplugged:
            return False
        if self.storming():
            if self._storm_answers > 0:
                self._storm_answers -= 1
            self.counters["storm"] += 1
            return True
        if self.corrupt and self._rng.random() < self.corrupt:
            self.counters["corrupted"] += 1
            return True
        return False

    async def outgoing(self, frame: bytes, *, unit: int | None = None, serial: bool = True) -> bytes | None:
        """Apply every answer-level fault to ``frame``: None means "send nothing".

        ``serial=False`` (Modbus TCP) skips the faults of a noisy line (corrupt, noise, storm;
        see ``should_garble``).
        """
        if not self.should_answer(unit):
            return None
        if self.delay:
            self.counters["delayed"] += 1
            await asyncio.sleep(self.delay)
        if self._unplugged:
            return None
        self.counters["sent"] += 1
        if not serial:
            return frame
        if self.storming():
            if self._storm_answers > 0:
                self._storm_answers -= 1
            self.counters["storm"] += 1
            return self._garble(frame)
        frame = self.maybe_corrupt(frame)
        if self.noise and self._rng.random() < self.noise:
            self.counters["noise"] += 1
            frame = self._rng.randbytes(1 + self._rng.randrange(8)) + frame
        return frame

    @property
    def delay_s(self) -> float:
        """Alias read by the Modbus simulators' fault hook."""
        return self.delay

    def random(self) -> float:
        """A draw from the injector's seeded generator (for simulators' own randomness)."""
        return self._rng.random()

    # ------------------------------------------------------------------ stuck motor
    def attach_world(self, world: Any) -> None:
        """Worlds whose ``stuck`` flag follows this injector (gate simulators attach theirs)."""
        if world not in self._worlds:
            self._worlds.append(world)
        if self._stuck:
            self._apply_stuck()

    @property
    def stuck(self) -> bool:
        return self._stuck

    @stuck.setter
    def stuck(self, value: bool) -> None:
        self._stuck = value
        self._apply_stuck()

    def _apply_stuck(self) -> None:
        for w in self._worlds:
            w.stuck = self._stuck
            w.notify()

    # ------------------------------------------------------------------ unplugged adapter
    def on_plug(self, hook: PlugHook) -> None:
        """Register ``hook(plugged: bool)``; ports make their path vanish / reappear in it."""
        self._plug_hooks.append(hook)

    @property
    def unplugged(self) -> bool:
        return self._unplugged

    async def unplug(self) -> None:
        await self._set_plugged(False)

    async def replug(self) -> None:
        await self._set_plugged(True)

    async def _set_plugged(self, plugged: bool) -> None:
        self._unplugged = not plugged
        for hook in self._plug_hooks:
            res = hook(plugged)
            if res is not None:
                await res
