"""Signed pre-decisions and control orders for the lane's tests (issue 20): one home for
"the platform declares this vehicle", shared by the matching matrix and the safety machine.

Everything is signed for real (``CommandSigner``, one Ed25519 key per agency, generated per
process): a pre-decision enters a lane's book only as ``Declared.from_command`` of a signed
command, the way ``CommandHandler`` builds it after verification.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

from portlane.edge.contract.commands import ARGS, PredecisionArgs, RevokeArgs, SignedCommand
from portlane.edge.contract.events import ContainerRead, PlateRead
from portlane.edge.contract.times import rfc3339
from portlane.edge.lane.passage import Identity
from portlane.edge.lane.predecision_rules import ControlOrder, Declared
from portlane.edge.trust.commands import CommandSigner
from portlane.edge.trust.keys import generate_keypair
from pydantic import BaseModel

SITE = "t-site"
AGENCIES = ("customs", "border")
#: One key per agency, as a site would list them (``platform.keys[].agencies``).
KEYS: dict[str, tuple[str, str]] = {a: generate_keypair() for a in ("customs", "border", "quarantine")}

HK_TRUCK_PLATES = ("粤Z1234港", "AB1234")
TAG = "E200341201930500001"
BOXES = (("CSQU3054383", "45G1"),)
WEIGHT_KG = 30_000


def signer(agency: str) -> CommandSigner:
    private, _public = KEYS[agency]
    return CommandSigner(f"{agency}-key", private)


def sign(
    cmd: str, args: dict[str, Any], *, lane: str = "c1", key: str = "customs", now: float = 1000.0
) -> SignedCommand:
    issued = dt.datetime.fromtimestamp(now, tz=dt.UTC)
    return signer(key).sign(
        {
            "cmd": cmd,
            "site": SITE,
            "lane": lane,
            "args": args,
            "issued_at": issued,
            "expires_at": issued + dt.timedelta(seconds=60),
        }
    )


A = TypeVar("A", bound=BaseModel)


def parse_args(cmd: SignedCommand, model: type[A]) -> A:
    """The args as the lane's command handler reads them: strict JSON (arrays validate as tuples)."""
    parsed = ARGS[cmd.cmd].model_validate_json(json.dumps(cmd.args))
    assert isinstance(parsed, model)
    return parsed


@dataclass
class Declaration:
    """What the platform declares for one vehicle (each agency signs its own copy)."""

    plates: tuple[str, ...] = HK_TRUCK_PLATES
    tag_id: str = TAG
    containers: tuple[tuple[str, str], ...] = BOXES
    weight_kg: int | None = WEIGHT_KG
    tolerance_kg: int = 500
    seals: tuple[str, ...] | None = None
    lanes: tuple[str, ...] = ("c1",)
    window: tuple[float, float] = (900.0, 4600.0)
    valid_until: float = 8200.0
    verdicts: dict[str, str] = field(default_factory=dict)  # agency -> verdict (default release)
    id_prefix: str = "pd"

    def args(self, agency: str) -> dict[str, Any]:
        a: dict[str, Any] = {
            "predecision_id": f"{self.id_prefix}-{agency}",
            "agency": agency,
            "verdict": self.verdicts.get(agency, "release"),
            "plates": list(self.plates),
            "containers": [{"number": n, "size_type": t} for n, t in self.containers],
            "tag_id": self.tag_id,
            "lanes": list(self.lanes),
            "window_start": rfc3339(self.window[0]),
            "window_end": rfc3339(self.window[1]),
            "valid_until": rfc3339(self.valid_until),
        }
        if self.weight_kg is not None:
            a["gross_weight_kg"], a["weight_tolerance_kg"] = self.weight_kg, self.tolerance_kg
        if self.seals is not None:
            a["seals"] = list(self.seals)
        return a

    def command(self, agency: str, *, key: str | None = None, lane: str = "c1", now: float = 1000.0) -> SignedCommand:
        """The signed ``predecision`` command (``key``: the agency whose key signs it)."""
        return sign("predecision", self.args(agency), lane=lane, key=key or agency, now=now)

    def declared(self, agency: str, *, now: float = 1000.0) -> Declared:
        cmd = self.command(agency, now=now)
        return Declared.from_command(cmd, parse_args(cmd, PredecisionArgs))

    def every(self, agencies: tuple[str, ...] = AGENCIES, *, now: float = 1000.0) -> list[Declared]:
        return [self.declared(a, now=now) for a in agencies]


def control_order(
    *,
    agency: str = "customs",
    predecision_id: str | None = None,
    plates: tuple[str, ...] = (),
    tag_id: str | None = None,
    reason: str = "control order 布控",
    valid_until: float = 90_000.0,
    now: float = 1000.0,
) -> ControlOrder:
    args: dict[str, Any] = {"agency": agency, "reason": reason, "valid_until": rfc3339(valid_until)}
    if predecision_id is not None:
        args["predecision_id"] = predecision_id
    if plates:
        args["plates"] = list(plates)
    if tag_id is not None:
        args["tag_id"] = tag_id
    cmd = sign("revoke", args, key=agency, now=now)
    return ControlOrder.from_command(cmd, parse_args(cmd, RevokeArgs))


def reads(
    plates: tuple[str, ...] = HK_TRUCK_PLATES,
    *,
    confidence: float = 0.97,
    tag_id: str | None = TAG,
    containers: tuple[tuple[str, str | None], ...] = BOXES,
    weight_kg: int | None = WEIGHT_KG,
    exceptions: tuple[str, ...] = (),
    check_digit_ok: bool = True,
) -> Identity:
    """What the lane read of a vehicle (by default: exactly the declaration above)."""
    kinds = {"粤Z1234港": "cn_crossborder", "AB1234": "hk"}
    return Identity(
        plates=tuple(PlateRead(text=t, kind=kinds.get(t, "cn"), confidence=confidence) for t in plates),  # type: ignore[arg-type]
        containers=tuple(
            ContainerRead(number=n, check_digit_ok=check_digit_ok, iso_type=t, confidence=0.99) for n, t in containers
        ),
        tag_id=tag_id,
        weight_kg=weight_kg,
        confidence=confidence,
        exceptions=exceptions,
    )
