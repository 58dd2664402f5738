"""Event signatures, as the contract defines them (``portlane.edge.trust.events``, ``docs/security.md``).

An envelope may carry two CloudEvents extension attributes: ``sigkeyid`` (the signing unit's
key id) and ``sig`` — the standard-base64 Ed25519 signature over the RFC 8785 canonical JSON
(``rfc8785`` package) of the whole envelope *without* ``sig`` (``sigkeyid`` included).

:class:`EventVerifier` checks, in order: both attributes present and strings → else
``malformed``; the key id is known → ``unknown_key``; the key may sign for the event's unit
→ ``not_authorised``; the signature verifies → ``bad_signature``. Unsigned events pass
as ``unsigned`` unless ``require_signed`` (then ``unsigned`` is a rejection).

The trust layer owns event signing (``portlane.edge.trust.events``: ``EventSigner``,
``verify_event`` against ``trust.authority.Authority.from_site`` — the key, the signature,
the key's own unit, and what that key may sign). :meth:`EventVerifier.for_site` checks every
key of the site file through it; keys listed only in the console's configuration
(``event_keys``: e.g. a neighbouring site's units) are checked here by the same contract.
Reasons are the trust layer's (``unknown_key``, ``bad_signature``, ``not_authorised``,
``malformed``, ``unsigned``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from portlane.edge.config import Site
from portlane.edge.contract.canonical import b64decode_strict
from portlane.edge.errors import EventRejectedError, TrustError
from portlane.edge.trust.authority import Authority
from portlane.edge.trust.events import verify_event
from portlane.edge.trust.keys import load_public_key

__all__ = ["EventKey", "EventVerifier"]


@dataclass(frozen=True, slots=True)
class EventKey:
    id: str
    public_key: str  # Ed25519, 32 bytes, standard base64
    units: tuple[str, ...] = ()  # units whose events it may sign; () = any unit of the site


@dataclass(frozen=True, slots=True)
class _Key:
    public: Ed25519PublicKey
    units: tuple[str, ...]


TrustCheck = Callable[[Mapping[str, Any]], str]


def _trust_check(site: Site) -> TrustCheck:
    """``trust.events.verify_event`` against the site's authority (keys, units, what each may sign)."""
    auth = Authority.from_site(site)

    def check(envelope: Mapping[str, Any]) -> str:
        try:
            verified = verify_event(envelope, auth)
        except TrustError as exc:
            raise EventRejectedError(exc.reason, str(exc)) from None
        return verified.key_id

    return check


class EventVerifier:
    def __init__(
        self, keys: Iterable[EventKey] = (), *, require_signed: bool = False, trust: TrustCheck | None = None
    ) -> None:
        self._trust = trust
        self._keys: dict[str, _Key] = {}
        for k in keys:
            if k.id in self._keys:
                raise ValueError(f"event key id {k.id!r} listed twice")
            try:
                self._keys[k.id] = _Key(load_public_key(k.public_key), tuple(k.units))
            except ValueError as exc:
                raise ValueError(f"event key {k.id!r}: {exc}") from None
        self.require_signed = require_signed

    @classmethod
    def for_site(cls, site: Site, extra: Iterable[EventKey] = (), *, require_signed: bool = False) -> EventVerifier:
        """Every key of the site file, checked by the trust layer, plus ``extra`` (checked here)."""
        return cls(extra, require_signed=require_signed, trust=_trust_check(site))

    @property
    def key_ids(self) -> Sequence[str]:
        return sorted(self._keys)

    def verify(self, envelope: Mapping[str, Any], unit: str) -> str:
        """``"unsigned"`` or ``"verified:<key id>"``; raises :class:`EventRejectedError`."""
        if "sig" not in envelope and "sigkeyid" not in envelope:
            if self.require_signed:
                raise EventRejectedError("unsigned", f"event {envelope.get('id')} carries no signature")
            return "unsigned"
        kid, sig = envelope.get("sigkeyid"), envelope.get("sig")
        if not isinstance(kid, str) or not isinstance(sig, str):
            raise EventRejectedError("malformed", "sig and sigkeyid must both be strings")
        key = self._keys.get(kid)
        if key is None and self._trust is not None:
            return f"verified:{self._trust(envelope)}"
        if key is None:
            raise EventRejectedError("unknown_key", f"key id {kid!r} is not known")
        if key.units and unit not in key.units:
            raise EventRejectedError("not_authorised", f"key {kid!r} does not sign for {unit}")
        import rfc8785  # the contract's canonical form; only needed once events are signed

        try:
            raw_sig = b64decode_strict(sig)
            body = rfc8785.dumps({k: v for k, v in envelope.items() if k != "sig"})
        except (ValueError, rfc8785.CanonicalizationError) as exc:
            raise EventRejectedError("malformed", f"cannot check the signature: {exc}") from None
        try:
            key.public.verify(raw_sig, body)
        except InvalidSignature:
            raise EventRejectedError("bad_signature", f"signature of {envelope.get('id')} does not verify") from None
        return f"verified:{kid}"
