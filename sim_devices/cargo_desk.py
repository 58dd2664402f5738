"""The platform's officers for the cargo lanes' radiation alarms and seals (issue 21), simulated.

A small policy the central-platform simulator calls through one hook (``central.py``: the
events it lists in ``EVENTS``, and ``identified`` before the agencies decide), so that it
moves with the platform to whatever client library runs it. It speaks the contract from the
platform's side with its own code, and knows what the officers would find on each truck from
the traffic plan (``traffic.CargoTruth``):

* **a radiation alarm** (``rpm.alarm``): a secondary inspection with a handheld isotope
  identifier, then the signed ``adjudicate`` with OSCAR's code — NORM 4, medical 3, a real source
  1 (the lane diverts the truck), nothing found 7 (background only: a false alarm);
* **seal exceptions** in ``vehicle.identified`` (tampered, foreign, missing, opened, off route,
  unread): the officer refuses the truck — customs ``divert`` to the inspection bay — instead of
  the agencies' release; counted per reason;
* **an e-lock in order** (``seal.read``): customs removes it at the lane before release (the
  Single E-lock Scheme: applied at departure, removed at arrival), with the code customs holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from .traffic import CargoTruth

__all__ = ["ADJUDICATION", "EVENTS", "CargoDesk", "CargoDeskStats", "Command"]

#: The events the desk reads, besides ``vehicle.identified`` (which the platform reads anyway).
EVENTS = ("rpm.alarm", "seal.read")
#: What the secondary inspection finds -> (OSCAR adjudication code, isotopes identified).
ADJUDICATION: dict[str | None, tuple[int, tuple[str, ...]]] = {
    "norm": (4, ("K-40", "Ra-226")),
    "medical": (3, ("Tc-99m",)),
    "threat": (1, ("Cs-137",)),
    None: (7, ()),  # the handheld sees background only
}
#: Codes that keep the vehicle in secondary inspection (the lane diverts it): no release follows.
DIVERTING = frozenset({1, 2, 10, 11})
SEAL_EXCEPTIONS = frozenset(
    {"seal_missing", "seal_foreign", "seal_opened", "seal_tampered", "elock_off_route", "seal_read_failed"}
)
CUSTOMS = "customs"

#: (command, passage id, args) for the platform to sign and send.
Command = tuple[str, str | None, dict[str, Any]]


@dataclass
class CargoDeskStats:
    adjudications: Counter[int] = field(default_factory=Counter)  # code -> sent
    seal_refusals: Counter[str] = field(default_factory=Counter)  # seal exception -> trucks refused
    elocks_removed: int = 0


@dataclass
class _Passage:
    tag: str | None = None
    alarm_occupancy: int | None = None
    adjudicated: bool = False
    elock_removal: bool = False


class CargoDesk:
    #: The events it reads (an officers' desk the platform consults: ``events``, ``on_event``,
    #: ``identified``).
    events: Collection[str] = EVENTS

    def __init__(self, truth: Mapping[str, CargoTruth]) -> None:
        self.truth = dict(truth)  # e-card tag id -> what the officers would find
        self.stats = CargoDeskStats()
        self._passages: dict[str, _Passage] = {}

    def _passage(self, pid: str) -> _Passage:
        return self._passages.setdefault(pid, _Passage())

    def on_event(self, event_type: str, data: Mapping[str, Any]) -> list[Command]:
        """An ``rpm.alarm`` or a ``seal.read``: what the officers send back."""
        pid = data.get("passage_id")
        if not isinstance(pid, str):
            return []
        p = self._passage(pid)
        if event_type == "rpm.alarm":
            p.alarm_occupancy = int(data["occupancy"])
            return self._adjudicate(pid, p)
        if event_type == "seal.read" and not data.get("exceptions"):
            sealed = [s["seal_id"] for s in data.get("seals", []) if s["kind"] == "elock" and s["state"] == "sealed"]
            p.elock_removal = bool(sealed)
            return self._remove_elocks(pid, p)
        return []

    def identified(self, data: Mapping[str, Any]) -> tuple[list[Command], bool]:
        """On ``vehicle.identified``: the commands to send first, and whether the agencies then
        decide as usual (False: the truck is refused for its seals)."""
        pid = str(data["passage_id"])
        p = self._passage(pid)
        p.tag = data.get("tag_id")
        out = self._adjudicate(pid, p) + self._remove_elocks(pid, p)
        refused = sorted(SEAL_EXCEPTIONS & set(data.get("exceptions", ())))
        if any(cmd == "adjudicate" and args["code"] in DIVERTING for cmd, _pid, args in out):
            return out, False  # a real source: the lane diverts it, nobody releases it
        if not refused:
            return out, True
        for reason in refused:
            self.stats.seal_refusals[reason] += 1
        return [*out, ("divert", pid, {"agency": CUSTOMS})], False

    def _adjudicate(self, pid: str, p: _Passage) -> list[Command]:
        """Once the alarm and the truck are both known (their events may come in either order)."""
        if p.alarm_occupancy is None or p.tag is None or p.adjudicated:
            return []
        p.adjudicated = True
        code, isotopes = ADJUDICATION[self.truth.get(p.tag, CargoTruth()).radiation]
        self.stats.adjudications[code] += 1
        args = {
            "agency": CUSTOMS,
            "occupancy": p.alarm_occupancy,
            "code": code,
            "isotopes": list(isotopes),
            "remark": "secondary inspection with a handheld isotope identifier",
        }
        return [("adjudicate", pid, args)]

    def _remove_elocks(self, pid: str, p: _Passage) -> list[Command]:
        if not p.elock_removal or p.tag is None:
            return []
        p.elock_removal = False
        codes = self.truth.get(p.tag, CargoTruth()).elock_codes
        self.stats.elocks_removed += len(codes)
        return [("seal_remove", pid, {"agency": CUSTOMS, "seal_id": sid, "authorisation": code}) for sid, code in codes]
