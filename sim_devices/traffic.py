"""Traffic generator: realistic mixed vehicles for cargo and passenger lanes.

Cargo lanes carry container trucks (one 40' or two 20' boxes, ISO 6346 numbers with valid
check digits, 15–40 t) with mainland plates, some cross-boundary trucks with a 粤Z…港/澳
plate and their Hong Kong or Macau plate. Passenger lanes carry mostly cross-boundary cars
with dual plates. Every vehicle has an electronic vehicle card (RFID tag) registered with
its plates; a small share of dual-plated vehicles show a home plate that does not match the
registration (a swapped plate — the lane must flag it).

The check digit is computed here on its own (simulators do not import the recogniser).
"""

from __future__ import annotations

import asyncio
import random
import string
from dataclasses import dataclass, field
from typing import Any

from .world import LaneWorld, Vehicle

__all__ = ["TrafficPlan", "iso6346_check_digit", "make_plan", "run_lane"]

PROVINCES = "粤粤粤粤湘桂闽赣川鄂豫皖浙苏沪京"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I, O in mainland serials
HK_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"  # HK marks never use I, O, Q
OWNERS = ("CSQ", "MSK", "MSC", "CMA", "COS", "OOL", "EIS", "TGH", "TRH", "FCI", "GLD", "DFS")
#: ISO 6346 size/type codes: one box on a chassis is a 40' high cube, two are 20' general-purpose boxes.
SIZE_TYPES = {1: "45G1", 2: "22G1"}


def iso6346_check_digit(code10: str) -> int:
    values: dict[str, int] = {}
    v = 10
    for ch in string.ascii_uppercase:
        if v % 11 == 0:
            v += 1
        values[ch] = v
        v += 1
    total = sum((values[c] if c.isalpha() else int(c)) * (1 << i) for i, c in enumerate(code10))
    return total % 11 % 10


def _container(rng: random.Random) -> str:
    code = rng.choice(OWNERS) + "U" + f"{rng.randrange(10**6):06d}"
    return code + str(iso6346_check_digit(code))


def _mainland(rng: random.Random) -> str:
    serial = "".join(rng.choice(LETTERS + "0123456789" * 2) for _ in range(5))
    return rng.choice(PROVINCES) + rng.choice(LETTERS[:12]) + serial


def _crossborder(rng: random.Random, home: str) -> str:
    serial = "".join(rng.choice(LETTERS[:8] + "0123456789") for _ in range(4))
    return f"粤Z{serial}{'港' if home == 'hk' else '澳'}"


def _hk(rng: random.Random) -> str:
    return "".join(rng.choice(HK_LETTERS) for _ in range(2)) + str(rng.randint(1, 9999))


def _macau(rng: random.Random) -> str:
    return "M" + rng.choice("ABCDEFGHKLMNPRSTUVWXYZ") + f"{rng.randrange(10000):04d}"


@dataclass
class TrafficPlan:
    per_lane: dict[str, list[Vehicle]] = field(default_factory=dict)
    registrations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.per_lane.values())


def make_plan(lanes: dict[str, str], vehicles: int, *, seed: int, swapped_ratio: float = 0.0) -> TrafficPlan:
    """Spread ``vehicles`` over ``lanes`` (lane id -> 'cargo' | 'passenger'), round robin."""
    rng = random.Random(seed)
    plan = TrafficPlan(per_lane={lane: [] for lane in lanes})
    order = list(lanes)
    for i in range(vehicles):
        lane = order[i % len(order)]
        kind = lanes[lane]
        tag = f"E280{rng.randrange(16**20):020X}"  # a 96-bit EPC, as the e-card reader reports it
        plates: tuple[str, ...]
        if kind == "cargo":
            if rng.random() < 0.2:
                home = rng.choice(("hk", "macau"))
                plates = (_crossborder(rng, home), _hk(rng) if home == "hk" else _macau(rng))
            else:
                plates = (_mainland(rng),)
            boxes = 1 if rng.random() < 0.6 else 2
            v = Vehicle(
                plates=plates,
                tag_id=tag,
                containers=tuple(_container(rng) for _ in range(boxes)),
                container_types=(SIZE_TYPES[boxes],) * boxes,
                weight_kg=rng.randint(15000, 40000),
                kind="truck",
                vid=f"v{i + 1}",
            )
        else:
            home = rng.choice(("hk", "hk", "macau"))
            plates = (_crossborder(rng, home), _hk(rng) if home == "hk" else _macau(rng))
            v = Vehicle(plates=plates, tag_id=tag, weight_kg=rng.randint(1200, 2500), kind="car", vid=f"v{i + 1}")
        registered = tuple(sorted(v.plates))
        if len(v.plates) == 2 and rng.random() < swapped_ratio:
            # The home plate on the car is not the one registered with this e-card.
            v.plates = (v.plates[0], _hk(rng))
        plan.per_lane[lane].append(v)
        plan.registrations.append({"tag_id": tag, "plates": list(registered)})
    return plan


async def run_lane(
    world: LaneWorld, vehicles: list[Vehicle], *, headway_s: float = 1.0, give_up_s: float | None = None
) -> list[bool]:
    """Drive vehicles through one lane in order; returns per vehicle whether it passed."""
    results = []
    for v in vehicles:
        # The next vehicle pulls up once the previous one has cleared the lane.
        await world.wait_until(lambda: world.vehicle is None)
        await asyncio.sleep(world.scaled(headway_s))
        results.append(await world.drive(v, give_up_s=give_up_s))
    return results
