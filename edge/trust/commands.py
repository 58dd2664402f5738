"""Signed commands from the central platform: signing and verification, replay protection.

The wire format is ``portlane.edge.contract.commands.SignedCommand``.

:meth:`CommandVerifier.verify` checks, in this order, and stops at the first failure:

1. **parse** — bytes are UTF-8 JSON of at most :data:`MAX_COMMAND_BYTES`, an object;
   no ``sig`` → ``unsigned``; anything not matching :class:`SignedCommand` → ``malformed``
2. **key** — ``key_id`` names a trusted key → else ``unknown_key``
3. **signature** — Ed25519 over the canonical bytes → else ``bad_signature``;
   then the ``args`` against the command's model (``contract.commands.ARGS``), read from the
   bytes that arrived → else ``malformed`` (an authenticated but unusable command)
4. **time** — ``expires_at - issued_at <= max_validity`` → else ``validity_too_long``;
   ``issued_at - skew <= now`` → else ``not_yet_valid``;
   ``now < expires_at + skew`` → else ``expired``
5. **target** — ``site`` → else ``wrong_site``; ``lane`` → else ``wrong_lane``
6. **authority** — the key may sign this command, to this lane, for ``args.agency``
   (:class:`~portlane.edge.trust.authority.Authority`) → else ``not_authorised``
7. **store** — ``issued_at >= `` the nonce store's creation time → else ``issued_before_store``
   (a deleted or recreated store cannot make captured commands valid again)
8. **nonce** — unseen → else ``replayed``. The nonce is recorded (durably) only here,
   after every other check passed, so a rejected command never burns a nonce.

A failed check raises :class:`portlane.edge.errors.CommandRejectedError` with its
:class:`RejectReason`.
"""

from __future__ import annotations

import base64
import enum
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from portlane.edge.contract.canonical import b64decode_strict, canonical_json, strict_loads
from portlane.edge.contract.commands import (
    ID_PATTERN,
    NONCE_MIN_BYTES,
    CommandArgs,
    CommandName,
    SignedCommand,
    parse_args,
)
from portlane.edge.contract.times import format_rfc3339
from portlane.edge.errors import CanonicalJSONError, CommandRejectedError, TrustError
from portlane.edge.trust.authority import Authority
from portlane.edge.trust.keys import load_private_key, load_public_key, public_key_b64
from portlane.edge.trust.nonces import Clock, NonceStore, now_checked
from pydantic import ValidationError

__all__ = [
    "MAX_COMMAND_BYTES",
    "CommandSigner",
    "CommandVerifier",
    "RejectReason",
    "VerifiedCommand",
    "new_nonce",
]

#: Largest command accepted on the wire. A board message or an expected-vehicle list fits easily.
MAX_COMMAND_BYTES = 64 * 1024


def new_nonce() -> str:
    """16 random bytes, unpadded base64url (22 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(NONCE_MIN_BYTES)).rstrip(b"=").decode("ascii")


# --------------------------------------------------------------------------------------------
# The command model


class CommandSigner:
    """Signs commands: used by the central-platform simulator and tests."""

    def __init__(self, key_id: str, private_key_b64: str) -> None:
        if not re.fullmatch(ID_PATTERN, key_id):
            raise ValueError(f"key id {key_id!r} must match {ID_PATTERN}")
        self.key_id = key_id
        self._key = load_private_key(private_key_b64)

    @property
    def public_key_b64(self) -> str:
        return public_key_b64(self._key)

    def sign(self, cmd_fields: Mapping[str, Any]) -> SignedCommand:
        """Sign ``cmd_fields`` (``cmd``, ``site``, ``lane``, ``issued_at``, ``expires_at``;
        optional ``passage_id`` (None), ``args`` ({}), ``nonce`` (fresh), ``v`` (1)).
        Timestamps may be aware datetimes or RFC 3339 strings. ``key_id`` is the signer's.
        Raises ``ValueError`` if the result would not be a valid command."""
        fields = dict(cmd_fields)
        if "sig" in fields or "key_id" in fields:
            raise ValueError("cmd_fields must not contain 'sig' or 'key_id'; the signer sets them")
        for ts in ("issued_at", "expires_at"):
            if isinstance(fields.get(ts), datetime):
                fields[ts] = format_rfc3339(fields[ts])
        if isinstance(fields.get("cmd"), CommandName):
            fields["cmd"] = fields["cmd"].value
        fields.setdefault("v", 1)
        fields.setdefault("passage_id", None)
        fields.setdefault("args", {})
        fields.setdefault("nonce", new_nonce())
        fields["key_id"] = self.key_id
        payload = canonical_json(fields, allow_floats=False)
        sig = base64.b64encode(self._key.sign(payload)).decode("ascii")
        try:
            return SignedCommand.model_validate({**fields, "sig": sig})
        except ValidationError as exc:
            raise ValueError(f"not a valid command: {exc}") from None


# --------------------------------------------------------------------------------------------
# Rejection


class RejectReason(enum.StrEnum):
    """Why a command was rejected. Closed set; the order is the order of the checks."""

    MALFORMED = "malformed"
    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    VALIDITY_TOO_LONG = "validity_too_long"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    WRONG_SITE = "wrong_site"
    WRONG_LANE = "wrong_lane"
    NOT_AUTHORISED = "not_authorised"
    ISSUED_BEFORE_STORE = "issued_before_store"
    REPLAYED = "replayed"


_ECHO_FIELDS = ("cmd", "site", "lane", "passage_id", "nonce", "key_id")


def _echo(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Short, string-only copies of identifying fields from an untrusted object."""
    out: dict[str, Any] = {}
    for k in _ECHO_FIELDS:
        v = obj.get(k)
        if isinstance(v, str):
            out[k] = v[:128]
    return out


# --------------------------------------------------------------------------------------------
# The verifier


@dataclass(frozen=True, slots=True)
class VerifiedCommand:
    """A command that passed every check: the signed wire form and its ``args`` as their model
    (read from the bytes that arrived, once)."""

    command: SignedCommand
    args: CommandArgs

    @property
    def name(self) -> str:
        return self.command.cmd

    @property
    def nonce(self) -> str:
        return self.command.nonce

    @property
    def key_id(self) -> str:
        return self.command.key_id

    @property
    def passage_id(self) -> str | None:
        return self.command.passage_id


class CommandVerifier:
    """Verifies commands for one lane. ``trusted_keys`` maps key id → public key (base64);
    list several to rotate keys (add the new one, switch the platform over, then remove
    the old one). ``clock`` returns an aware datetime; ``max_skew_s`` widens the validity
    window on both sides. Bad keys fail here, at start-up, with ``ValueError``."""

    def __init__(
        self,
        trusted_keys: Mapping[str, str],
        *,
        site: str,
        lane: str,
        clock: Clock,
        max_skew_s: float,
        nonce_store: NonceStore,
        max_validity_s: float | None = None,
        authority: Authority | None = None,
    ) -> None:
        if max_skew_s < 0:
            raise ValueError("max_skew_s must be >= 0")
        if max_validity_s is not None and max_validity_s <= 0:
            raise ValueError("max_validity_s must be > 0")
        keys: dict[str, Ed25519PublicKey] = {}
        for kid, pub in trusted_keys.items():
            try:
                keys[kid] = load_public_key(pub)
            except ValueError as exc:
                raise ValueError(f"trusted key {kid!r}: {exc}") from None
        self._keys = keys
        self.site = site
        self.lane = lane
        self._clock = clock
        self._skew = timedelta(seconds=max_skew_s)
        self._nonces = nonce_store
        self._max_validity = None if max_validity_s is None else timedelta(seconds=max_validity_s)
        self._authority = authority

    @classmethod
    def from_site(cls, site: Any, lane: str, *, clock: Clock, nonce_store: NonceStore) -> CommandVerifier:
        """Build from a parsed :class:`portlane.edge.config.Site`: every key that may sign a
        command (``platform.keys``, ``clients[].key``) with its authority,
        ``platform.max_clock_skew_s`` and ``platform.max_validity_s``."""
        from portlane.edge.trust.authority import Authority

        authority = Authority.from_site(site)
        keys = {
            kid: base64.b64encode(pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode(
                "ascii"
            )
            for kid, pub in authority.command_keys().items()
        }
        return cls(
            keys,
            site=site.site.id,
            lane=lane,
            clock=clock,
            max_skew_s=site.platform.max_clock_skew_s,
            nonce_store=nonce_store,
            max_validity_s=site.platform.max_validity_s,
            authority=authority,
        )

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._keys))

    def verify(self, raw: bytes | str | Mapping[str, Any]) -> VerifiedCommand:
        """Return the verified command or raise :class:`CommandRejectedError` (see the module
        docstring for the order of the checks)."""
        data, obj = self._parse(raw)
        if obj.get("sig") in (None, ""):
            raise CommandRejectedError(RejectReason.UNSIGNED, "command carries no signature", _echo(obj))
        try:
            cmd = SignedCommand.model_validate(obj)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "<root>"
            raise CommandRejectedError(RejectReason.MALFORMED, f"{where}: {err['msg']}", _echo(obj)) from None
        echo = _echo(obj)

        key = self._keys.get(cmd.key_id)
        if key is None:
            raise CommandRejectedError(RejectReason.UNKNOWN_KEY, f"key id {cmd.key_id!r} is not trusted", echo)

        signed = {k: v for k, v in obj.items() if k != "sig"}
        try:
            key.verify(b64decode_strict(cmd.sig), canonical_json(signed, allow_floats=False))
        except InvalidSignature:
            raise CommandRejectedError(RejectReason.BAD_SIGNATURE, "signature does not verify", echo) from None
        try:
            args = parse_args(cmd.cmd, data)
        except ValidationError as exc:
            detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
            raise CommandRejectedError(RejectReason.MALFORMED, detail, echo) from None

        if self._max_validity is not None and cmd.expires_at_dt - cmd.issued_at_dt > self._max_validity:
            raise CommandRejectedError(
                RejectReason.VALIDITY_TOO_LONG,
                f"valid from {cmd.issued_at} to {cmd.expires_at}; at most "
                f"{self._max_validity.total_seconds():g} s is accepted",
                echo,
            )
        now = now_checked(self._clock)
        if now < cmd.issued_at_dt - self._skew:
            raise CommandRejectedError(
                RejectReason.NOT_YET_VALID,
                f"issued_at {cmd.issued_at} is in the future (now {format_rfc3339(now)})",
                echo,
            )
        if now >= cmd.expires_at_dt + self._skew:
            raise CommandRejectedError(
                RejectReason.EXPIRED, f"expired at {cmd.expires_at} (now {format_rfc3339(now)})", echo
            )

        if cmd.site != self.site:
            raise CommandRejectedError(RejectReason.WRONG_SITE, f"for site {cmd.site!r}, this is {self.site!r}", echo)
        if cmd.lane != self.lane:
            raise CommandRejectedError(RejectReason.WRONG_LANE, f"for lane {cmd.lane!r}, this is {self.lane!r}", echo)

        if self._authority is not None:
            agency = getattr(args, "agency", None)
            try:
                self._authority.check(
                    cmd.key_id, command=cmd.cmd, unit=cmd.lane, agency=agency if isinstance(agency, str) else None
                )
            except TrustError as exc:
                raise CommandRejectedError(RejectReason.NOT_AUTHORISED, exc.detail, echo) from None

        created = self._nonces.created_at
        if created is not None and cmd.issued_at_dt < created:
            raise CommandRejectedError(
                RejectReason.ISSUED_BEFORE_STORE,
                f"issued at {cmd.issued_at}, before this lane's nonce store was created "
                f"({format_rfc3339(created)}); the platform must sign it again",
                echo,
            )

        if not self._nonces.check_and_record(cmd.nonce, keep_until=cmd.expires_at_dt + self._skew, now=now):
            raise CommandRejectedError(RejectReason.REPLAYED, f"nonce {cmd.nonce} was already used", echo)
        return VerifiedCommand(cmd, args)

    @staticmethod
    def _parse(raw: bytes | str | Mapping[str, Any]) -> tuple[bytes, dict[str, Any]]:
        """The command's bytes and the JSON object they hold. A mapping goes through the same
        strict path as bytes: canonicalised, then parsed."""
        try:
            if isinstance(raw, Mapping):
                raw = canonical_json(raw, allow_floats=False)
            elif isinstance(raw, str):
                raw = raw.encode("utf-8")
            if len(raw) > MAX_COMMAND_BYTES:
                raise CanonicalJSONError(f"longer than {MAX_COMMAND_BYTES} bytes")
            obj = strict_loads(raw)
        except (ValueError, RecursionError) as exc:  # CanonicalJSONError, JSONDecodeError, UnicodeError
            raise CommandRejectedError(RejectReason.MALFORMED, f"not a JSON command: {exc}") from None
        if not isinstance(obj, dict):
            raise CommandRejectedError(RejectReason.MALFORMED, "a command is a JSON object")
        return raw, obj
