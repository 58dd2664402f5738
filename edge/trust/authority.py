"""Who may sign what: every trusted key of a site, the unit it belongs to and its authority.

A site file names one Ed25519 key per unit and says what each key may sign:

* ``platform.keys`` — the platform's keys, typically one per agency. Each may sign the
  ``commands`` listed, to the ``lanes`` listed, and verdicts (``decision``, ``release``,
  ``hold``, ``divert``), pre-decisions (``predecision``) and control orders (``revoke``),
  adjudications and e-lock commands of the ``agencies`` listed; an omitted list means *any*
  (the behaviour before authorities existed). So a customs key cannot sign border's
  pre-decision: the lane refuses it (``not_authorised``) before it reaches the lane's book. They
  also sign what the platform publishes itself
  (registrations, unit ``platform``).
* ``lanes[].key`` — a lane's events, and among them ``inspection.requested`` for that lane only.
* ``scanners[].key`` — a scanner's events; ``scan.*`` only for that scanner and its lanes.
* ``clients[].key`` — the console's or a technician tool's events, and the ``commands`` listed.

Lane and scanner keys never sign commands. :meth:`Authority.check` answers for commands,
:meth:`Authority.check_event` for events; both raise :class:`NotAuthorisedError` (reason
``not_authorised``) or :class:`UnknownKeyError` (``unknown_key``).

The ``TrustError`` tree is in ``portlane.edge.errors``.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from portlane.edge.contract.commands import CARGO_ARGS, PREDECISION_COMMANDS
from portlane.edge.errors import NotAuthorisedError, UnknownKeyError

if TYPE_CHECKING:
    from portlane.edge.config import Site

__all__ = [
    "AGENCY_COMMANDS",
    "PLATFORM_UNIT",
    "Authority",
    "KeyGrant",
    "Role",
]

#: Commands that carry one agency's verdict in ``args.agency`` (pre-decisions and control
#: orders too: each agency signs only its own; and the adjudication of a radiation alarm and
#: the e-lock commands, issue 21) — a key limited to some agencies signs them only for those.
AGENCY_COMMANDS = frozenset({"decision", "release", "hold", "divert"}) | PREDECISION_COMMANDS | frozenset(CARGO_ARGS)
#: Source unit of what the platform publishes itself (``portlane/v1/{site}/platform/...``).
PLATFORM_UNIT = "platform"
#: Events a platform key signs as unit ``platform``, and the command authority each needs.
PLATFORM_EVENT_COMMANDS = {"expected_vehicles": "expected_vehicles"}


class Role(enum.StrEnum):
    PLATFORM = "platform"
    LANE = "lane"
    SCANNER = "scanner"
    CONSOLE = "console"
    TECHNICIAN = "technician"


@dataclass(frozen=True, slots=True)
class KeyGrant:
    """One trusted key. ``None`` in ``agencies``/``units``/``commands`` means any."""

    key_id: str
    public_key: Ed25519PublicKey
    role: Role
    unit: str
    agencies: frozenset[str] | None = None
    units: frozenset[str] | None = None
    commands: frozenset[str] | None = frozenset()

    def may_command(self) -> bool:
        return self.role not in (Role.LANE, Role.SCANNER) and self.commands != frozenset()


def _public_key(key_id: str, b64: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(b64.strip().encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError(f"key {key_id!r}: public key is not base64") from None
    if len(raw) != 32:
        raise ValueError(f"key {key_id!r}: an Ed25519 public key is 32 bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def _opt(values: Iterable[Any] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(str(v) for v in values)


class Authority:
    """The trusted keys of one site and what each may sign. Immutable; build it once at
    start-up with :meth:`from_site` (a bad key fails there, with ``ValueError``)."""

    def __init__(self, grants: Iterable[KeyGrant], *, site: str, scanner_lanes: Mapping[str, Iterable[str]]) -> None:
        self.site = site
        self._grants: dict[str, KeyGrant] = {}
        for g in grants:
            if g.key_id in self._grants:
                raise ValueError(f"key id {g.key_id!r} listed twice")
            self._grants[g.key_id] = g
        self._scanner_lanes = {s: frozenset(lanes) for s, lanes in scanner_lanes.items()}

    @classmethod
    def from_site(cls, site: Site) -> Authority:
        grants: list[KeyGrant] = []
        for k in site.platform.keys:
            grants.append(
                KeyGrant(
                    k.id,
                    _public_key(k.id, k.public_key),
                    Role.PLATFORM,
                    PLATFORM_UNIT,
                    agencies=_opt(k.agencies),
                    units=_opt(k.lanes),
                    commands=_opt(k.commands),
                )
            )
        for lane in site.lanes:
            if lane.key is not None:
                grants.append(KeyGrant(lane.key.id, _public_key(lane.key.id, lane.key.public_key), Role.LANE, lane.id))
        for s in site.scanners:
            if s.key is not None:
                grants.append(KeyGrant(s.key.id, _public_key(s.key.id, s.key.public_key), Role.SCANNER, s.id))
        for c in site.clients:
            if c.key is not None:
                grants.append(
                    KeyGrant(
                        c.key.id,
                        _public_key(c.key.id, c.key.public_key),
                        Role(c.role),
                        c.id,
                        units=_opt(c.lanes),
                        commands=frozenset(c.commands),
                    )
                )
        return cls(grants, site=site.site.id, scanner_lanes={s.id: s.lanes for s in site.scanners})

    # -- lookups -------------------------------------------------------------------------------

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._grants))

    def grant(self, key_id: str) -> KeyGrant:
        """The grant of ``key_id``; :class:`UnknownKeyError` if the site does not trust it."""
        g = self._grants.get(key_id)
        if g is None:
            raise UnknownKeyError(f"key id {key_id[:64]!r} is not trusted by site {self.site}", key_id=key_id)
        return g

    def command_keys(self) -> dict[str, Ed25519PublicKey]:
        """Keys that may sign some command (platform keys, and clients' keys with commands)."""
        return {k: g.public_key for k, g in self._grants.items() if g.may_command()}

    def unit_key_ids(self, unit: str) -> tuple[str, ...]:
        """Key ids that sign for ``unit`` (several during a key rotation)."""
        return tuple(sorted(k for k, g in self._grants.items() if g.unit == unit))

    # -- checks --------------------------------------------------------------------------------

    def check(
        self,
        key_id: str,
        *,
        command: str,
        unit: str | None = None,
        agency: str | None = None,
    ) -> KeyGrant:
        """May ``key_id`` sign ``command`` to ``unit`` (a lane or scanner id) for ``agency``?

        Pass ``agency`` whenever the command carries one (``args.agency``); a verdict command
        (:data:`AGENCY_COMMANDS`) without an agency is allowed only to a key not limited to
        agencies. Returns the grant; raises :class:`UnknownKeyError` / :class:`NotAuthorisedError`.
        """
        g = self.grant(key_id)

        def deny(why: str) -> NotAuthorisedError:
            return NotAuthorisedError(f"key {key_id} ({g.role.value} {g.unit}) {why}", key_id=key_id)

        if not g.may_command():
            raise deny("may not sign commands")
        if g.commands is not None and command not in g.commands:
            raise deny(f"may not sign {command!r} (only {', '.join(sorted(g.commands))})")
        if unit is not None and g.units is not None and unit not in g.units:
            raise deny(f"may not command {unit!r} (only {', '.join(sorted(g.units))})")
        if g.agencies is not None:
            if agency is not None and agency not in g.agencies:
                raise deny(f"may not sign for agency {agency!r} (only {', '.join(sorted(g.agencies))})")
            if agency is None and command in AGENCY_COMMANDS:
                raise deny(f"may sign {command!r} only with an agency of {', '.join(sorted(g.agencies))}")
        return g

    def check_event(self, key_id: str, *, unit: str, event_type: str, data: Mapping[str, Any]) -> KeyGrant:
        """May ``key_id`` sign an event of ``event_type`` published by ``unit`` with ``data``?

        A key signs only for its own unit. Beyond that: ``inspection.requested`` must name the
        signing lane in ``data.lane``; ``scan.*`` must name the signing scanner in
        ``data.scanner`` and one of its lanes in ``data.lane``; a platform key signs as unit
        ``platform`` only, and ``expected_vehicles`` only with that command's authority.
        """
        g = self.grant(key_id)

        def deny(why: str) -> NotAuthorisedError:
            return NotAuthorisedError(f"key {key_id} ({g.role.value} {g.unit}) {why}", key_id=key_id)

        if g.unit != unit:
            raise deny(f"may not sign for unit {unit[:64]!r}")
        if g.role is Role.LANE and event_type == "inspection.requested" and data.get("lane") != g.unit:
            raise deny("may request inspections only for its own lane")
        if g.role is not Role.SCANNER and event_type.startswith("scan."):
            raise deny("is not a scanner's key")
        if g.role is Role.SCANNER and event_type.startswith("scan."):
            if data.get("scanner") != g.unit:
                raise deny(f"may sign scan events only for scanner {g.unit}")
            lanes = self._scanner_lanes.get(g.unit, frozenset())
            if data.get("lane") not in lanes:
                raise deny(f"scanner {g.unit} does not serve lane {str(data.get('lane'))[:64]!r}")
        if g.role is Role.PLATFORM:
            needed = PLATFORM_EVENT_COMMANDS.get(event_type)
            if needed is not None and g.commands is not None and needed not in g.commands:
                raise deny(f"may not publish {event_type!r} (needs authority for {needed!r})")
        return g
