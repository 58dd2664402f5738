"""Traffic generator: realistic mixed vehicles for cargo and passenger lanes.

Cargo lanes carry container trucks (one 40' or two 20' boxes, ISO 6346 numbers with valid
check digits, 15–40 t) with mainland plates, some cross-boundary trucks with a 粤Z…港/澳
plate and their Hong Kong or Macau plate. Passenger lanes carry mostly cross-boundary cars
with dual plates. Every vehicle has an electronic vehicle card (RFID tag) registered with
its plates; a small share of dual-plated vehicles show a home plate that does not match the
registration (a swapped plate — the lane must flag it).

Cargo (issue 21): every container truck is sealed — one ISO 18185 e-seal per box, or, on a
cross-boundary truck, the one e-lock of the Single E-lock Scheme (on its corridor, with the
authorisation code customs holds) — and its declaration names those seals (the registration's
``seals``). A share (``seal_fault_ratio``) arrive with a seal tampered with or a foreign one in
place of the declared; a share (``radiation_ratio``) carry a load the radiation portal sees:
in turn naturally radioactive cargo (NORM: tiles, fertiliser), medical isotopes, and a real
source. ``CargoTruth`` is what the platform's officers would find (sim_devices/cargo_desk.py).

The check digit is computed here on its own (simulators do not import the recogniser).
"""

from __future__ import annotations

import asyncio
import random
import string
from dataclasses import dataclass, field, replace
from typing import Any

from .world import LaneWorld, Radiation, Seal, Vehicle

__all__ = [
    "RADIATION_LOADS",
    "TRUCK_APPROACH_S",
    "CargoTruth",
    "TrafficPlan",
    "iso6346_check_digit",
    "make_plan",
    "run_lane",
]

PROVINCES = "粤粤粤粤湘桂闽赣川鄂豫皖浙苏沪京"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I, O in mainland serials
HK_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"  # HK marks never use I, O, Q
OWNERS = ("CSQ", "MSK", "MSC", "CMA", "COS", "OOL", "EIS", "TGH", "TRH", "FCI", "GLD", "DFS")
#: ISO 6346 size/type codes: one box on a chassis is a 40' high cube, two are 20' general-purpose boxes.
SIZE_TYPES = {1: "45G1", 2: "22G1"}
#: A truck through a radiation portal at walking pace (5-10 km/h): ~20 m of truck and portal
#: take 4 s or more; the portal counts 200 ms samples all the while (cars: 1.5 s to the stop line).
TRUCK_APPROACH_S = 4.0
#: What a radioactive load adds to the portal's four gamma panels / neutron tubes (counts per
#: second, all panels): the portal's background is ~9,600 cps gamma, ~6 cps neutron, and it
#: alarms at 4 sigma (~400 cps over a second). Loads take turns in this order.
RADIATION_LOADS = (
    Radiation(gamma_cps=2500.0, label="norm"),  # granite, ceramic tiles, potash fertiliser (K-40, Ra-226)
    Radiation(gamma_cps=1800.0, label="medical"),  # a consignment of Tc-99m generators
    Radiation(gamma_cps=25_000.0, neutron_cps=40.0, label="threat"),  # a shielded source, with neutrons
)
#: Seal manufacturers (ISO 18185 manufacturer ids, 16 bits) on the demo's trucks.
SEAL_MAKERS = (0x0A1B, 0x0C02, 0x1D40)


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


def _auth(rng: random.Random) -> str:
    """A one-time authorisation code customs issues for an e-lock (8 printable ASCII)."""
    return "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(8))


def _seals(rng: random.Random, v: Vehicle) -> tuple[Seal, ...]:
    """The seals a truck leaves with: the cross-boundary e-lock, or one e-seal per box."""
    maker = rng.choice(SEAL_MAKERS)
    if any("粤Z" in p for p in v.plates):
        return (Seal(maker, rng.randrange(1 << 32), elock=True, authorisation=_auth(rng)),)
    return tuple(Seal(maker, rng.randrange(1 << 32)) for _ in v.containers)


def _seal_fault(rng: random.Random, seals: tuple[Seal, ...], k: int) -> tuple[Seal, ...]:
    """The seals as they arrive at the lane: the first tampered with, or replaced (a foreign seal)."""
    first, rest = seals[0], seals[1:]
    if k % 2 == 0:
        return (replace(first, state="tampered"), *rest)
    return (replace(first, tag=rng.randrange(1 << 32)), *rest)


@dataclass(frozen=True)
class CargoTruth:
    """What the officers would find on a truck: its load, and the e-lock codes customs holds."""

    radiation: str | None = None  # norm | medical | threat
    elock_codes: tuple[tuple[str, str], ...] = ()  # (seal id, authorisation) of its e-locks
    seal_fault: str | None = None  # tampered | foreign


@dataclass
class TrafficPlan:
    per_lane: dict[str, list[Vehicle]] = field(default_factory=dict)
    registrations: list[dict[str, Any]] = field(default_factory=list)
    cargo: dict[str, CargoTruth] = field(default_factory=dict)  # tag id -> truth (trucks only)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.per_lane.values())


def make_plan(
    lanes: dict[str, str],
    vehicles: int,
    *,
    seed: int,
    swapped_ratio: float = 0.0,
    radiation_ratio: float = 0.0,
    seal_fault_ratio: float = 0.0,
) -> TrafficPlan:
    """Spread ``vehicles`` over ``lanes`` (lane id -> 'cargo' | 'passenger'), round robin."""
    rng = random.Random(seed)
    cargo_rng = random.Random(seed * 7919 + 21)  # its own stream: the rest of the plan is as before
    radioactive = seal_faults = 0
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
        registration: dict[str, Any] = {"tag_id": tag, "plates": list(registered)}
        if v.kind == "truck":
            declared = _seals(cargo_rng, v)
            registration["seals"] = [s.seal_id for s in declared]
            fault = None
            v.seals = declared
            if cargo_rng.random() < seal_fault_ratio:
                v.seals, fault = _seal_fault(cargo_rng, declared, seal_faults), ("tampered", "foreign")[seal_faults % 2]
                seal_faults += 1
            if cargo_rng.random() < radiation_ratio:
                v.radiation = RADIATION_LOADS[radioactive % len(RADIATION_LOADS)]
                radioactive += 1
            plan.cargo[tag] = CargoTruth(
                radiation=v.radiation.label if v.radiation else None,
                elock_codes=tuple((s.seal_id, s.authorisation) for s in declared if s.elock),
                seal_fault=fault,
            )
        plan.per_lane[lane].append(v)
        plan.registrations.append(registration)
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
        approach_s = TRUCK_APPROACH_S if v.kind == "truck" else 1.5
        results.append(await world.drive(v, approach_s=approach_s, give_up_s=give_up_s))
    return results
