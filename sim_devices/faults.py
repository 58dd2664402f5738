"""Run-time fault injection shared by every simulator (serial, Modbus, camera).

A simulator asks its ``FaultInjector`` what to do with each answer it is about to send:

* ``dead`` (or the answering unit in ``dead_units``): never answer — the device is powered
  off, its RS-485 transceiver is broken, or its address is misconfigured;
* ``drop``: probability that one answer is lost (noise on the line, a collision);
* ``delay``: seconds added before each answer (a slow controller or a busy PLC);
* ``corrupt``: probability that one answer's checksum byte is damaged;
* ``noise``: probability that line noise (1–8 random bytes) precedes an answer;
* ``exception``: Modbus simulators answer every request with this exception code;
* ``unplugged``: the USB-serial adapter is pulled out — hooks registered by the port
  (``on_plug``) make the path disappear and come back on ``replug()``;
* ``stuck``: the barrier motor does not move (``LaneWorld.stuck`` on attached worlds).

Everything random draws from one ``random.Random(seed)``, so a run is repeatable.
``FaultInjector.parse("drop=0.1,delay=0.05,corrupt=0.2,dead,stuck,seed=7")`` builds one
from the command line's ``--fault`` options.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FaultInjector", "FaultSpecError"]

PlugHook = Callable[[bool], Awaitable[None] | None]


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
    exception: int = 0  # Modbus simulators: answer every request with this exception code
    counters: dict[str, int] = field(
        default_factory=lambda: {"sent": 0, "dropped": 0, "corrupted": 0, "dead": 0, "delayed": 0}
    )
    _stuck: bool = False
    _unplugged: bool = False
    _worlds: list[Any] = field(default_factory=list, repr=False)
    _plug_hooks: list[PlugHook] = field(default_factory=list, repr=False)
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("drop", "corrupt", "noise"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise FaultSpecError(f"{name} must be a probability in [0, 1], got {p}")
        if self.delay < 0:
            raise FaultSpecError(f"delay must be >= 0, got {self.delay}")
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
                if key in ("drop", "corrupt", "noise", "delay"):
                    if not sep:
                        raise FaultSpecError(f"{key} needs a value, e.g. {key}=0.1")
                    kw[key] = float(value)
                elif key == "exception":
                    kw["exception"] = int(value, 0)
                elif key == "seed":
                    kw["seed"] = int(value)
                elif key == "dead" and sep:
                    kw["dead_units"] = {int(v) for v in value.split("+") if v}
                elif key in ("dead", "stuck", "unplugged"):
                    flags[key] = True
                else:
                    raise FaultSpecError(
                        f"unknown fault {key!r}; known: drop=P, delay=S, corrupt=P, noise=P, exception=N, "
                        "dead, dead=U+U, "
                        "stuck, unplugged, seed=N"
                    )
            except ValueError as exc:
                if isinstance(exc, FaultSpecError):
                    raise
                raise FaultSpecError(f"bad value in {item!r}: {exc}") from exc
        inj = cls(**kw)
        inj.dead = flags.get("dead", False)
        inj._stuck = flags.get("stuck", False)
        inj._unplugged = flags.get("unplugged", False)
        return inj

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
            return frame[:-1] + bytes([frame[-1] ^ (1 + self._rng.randrange(255))])
        return frame

    async def outgoing(self, frame: bytes, *, unit: int | None = None) -> bytes | None:
        """Apply every answer-level fault to ``frame``: None means "send nothing"."""
        if not self.should_answer(unit):
            return None
        if self.delay:
            self.counters["delayed"] += 1
            await asyncio.sleep(self.delay)
        if self._unplugged:
            return None
        self.counters["sent"] += 1
        frame = self.maybe_corrupt(frame)
        if self.noise and self._rng.random() < self.noise:
            self.counters["noise"] = self.counters.get("noise", 0) + 1
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
