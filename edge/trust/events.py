"""Signed events: which unit said what, provably.

An event envelope (CloudEvents 1.0 structured JSON, ``portlane.edge.contract.envelope``) may
carry two extension attributes:

``sigkeyid``
    the id of the signing unit's key, as named in the site file;
``sig``
    standard base64 of the Ed25519 signature over the RFC 8785 canonical JSON (the ``rfc8785``
    package) of the whole envelope object *without* ``sig`` — ``sigkeyid`` included, so the
    key id cannot be swapped.

:class:`EventSigner` adds both; :func:`verify_event` checks them against an
:class:`~portlane.edge.trust.authority.Authority`: the key is trusted, the signature verifies,
the envelope's ``source`` (``portlane://{site}/{unit}``) is the key's own unit and site, and the
key may sign that event type with that data (a lane's key signs ``inspection.requested`` only
for its own lane; a scanner's key ``scan.*`` only for itself and its lanes). Errors are the
:class:`~portlane.edge.trust.authority.TrustError` tree; ``reason`` is what a consumer counts.

:func:`verify_message` is the whole path from a received MQTT message to a verified event —
size, strict JSON (:func:`parse_envelope`), signature and authority, then the topic it came in
on (``topic_mismatch``: a genuine event re-published elsewhere). Every consumer goes through it:
:class:`PeerEvents` (a lane reading its scanner, the scanner its lanes) and the consumer library
``portlane.edge.client``.

Signing costs about 60 µs and verifying about 150 µs per event on the lane controller.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from portlane.edge.contract.canonical import no_duplicate_keys
from portlane.edge.contract.envelope import MAX_EVENT_BYTES
from portlane.edge.errors import (
    BadSignatureError,
    MalformedEventError,
    NotAuthorisedError,
    TopicMismatchError,
    TrustError,
    UnsignedEventError,
)
from portlane.edge.trust.authority import Authority, KeyGrant, Role
from portlane.edge.trust.rejections import RejectionAggregator

__all__ = [
    "MAX_EVENT_BYTES",
    "MAX_EVENT_DEPTH",
    "EventSigner",
    "PeerEvents",
    "VerifiedEvent",
    "canonical_envelope",
    "parse_envelope",
    "verify_event",
    "verify_message",
]

log = logging.getLogger(__name__)

#: Deeper envelopes are refused before canonicalisation (rfc8785 recurses).
MAX_EVENT_DEPTH = 32
_SOURCE_PREFIX = "portlane://"
_TYPE_PREFIX = "portlane."


def _depth_ok(value: Any, depth: int = 0) -> bool:
    if depth > MAX_EVENT_DEPTH:
        return False
    if isinstance(value, Mapping):
        return all(_depth_ok(v, depth + 1) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_depth_ok(v, depth + 1) for v in value)
    return True


def parse_envelope(payload: bytes) -> dict[str, Any]:
    """The JSON object of one received envelope: at most :data:`MAX_EVENT_BYTES`, UTF-8,
    no duplicate keys, nested at most :data:`MAX_EVENT_DEPTH` deep. Raises
    :class:`MalformedEventError` for anything else — never another exception."""
    if len(payload) > MAX_EVENT_BYTES:
        raise MalformedEventError(f"{len(payload)} bytes, more than {MAX_EVENT_BYTES}")
    try:
        obj = json.loads(payload.decode("utf-8"), object_pairs_hook=no_duplicate_keys)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, duplicate keys; nesting
        raise MalformedEventError(f"not JSON: {str(exc)[:120]}") from None
    if not isinstance(obj, dict):
        raise MalformedEventError(f"an event is a JSON object, not {type(obj).__name__}")
    if not _depth_ok(obj):
        raise MalformedEventError(f"nested deeper than {MAX_EVENT_DEPTH}")
    return obj


def canonical_envelope(envelope: Mapping[str, Any]) -> bytes:
    """The bytes an event signature covers: RFC 8785 JSON of ``envelope`` without ``sig``.
    Raises :class:`MalformedEventError` when the envelope has no canonical form."""
    if not _depth_ok(envelope):
        raise MalformedEventError(f"nested deeper than {MAX_EVENT_DEPTH}")
    body = {k: v for k, v in envelope.items() if k != "sig"}
    try:
        return rfc8785.dumps(body)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
        raise MalformedEventError(f"envelope has no canonical JSON form: {exc}") from None


class EventSigner:
    """Signs envelopes with one unit's key: ``EventSigner(key_id, key).sign(envelope)``.

    ``private_key`` is the key itself or its 32-byte seed in standard base64. The signer is
    stateless and thread-safe; use it as the outbox's ``signer`` hook (``dict -> dict``)."""

    def __init__(self, key_id: str, private_key: Ed25519PrivateKey | str) -> None:
        if isinstance(private_key, str):
            try:
                seed = base64.b64decode(private_key.strip().encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError):
                raise ValueError("private key is not base64") from None
            if len(seed) != 32:
                raise ValueError(f"an Ed25519 private key (seed) is 32 bytes, got {len(seed)}")
            private_key = Ed25519PrivateKey.from_private_bytes(seed)
        self.key_id = key_id
        self._key = private_key

    def sign(self, envelope: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``envelope`` with ``sigkeyid`` and ``sig`` set (an old ``sig`` is replaced)."""
        out = {k: v for k, v in envelope.items() if k != "sig"}
        out["sigkeyid"] = self.key_id
        out["sig"] = base64.b64encode(self._key.sign(canonical_envelope(out))).decode("ascii")
        return out

    __call__ = sign


@dataclass(frozen=True, slots=True)
class VerifiedEvent:
    """An envelope whose signature and authority checked out."""

    key_id: str
    role: Role
    site: str
    unit: str
    type: str  # without the "portlane." prefix, e.g. "scan.completed"
    envelope: Mapping[str, Any]

    @property
    def data(self) -> Mapping[str, Any]:
        d = self.envelope.get("data")
        return d if isinstance(d, Mapping) else {}


def _source(envelope: Mapping[str, Any]) -> tuple[str, str]:
    src = envelope.get("source")
    if not isinstance(src, str) or not src.startswith(_SOURCE_PREFIX):
        raise MalformedEventError(f"source {str(src)[:80]!r} is not portlane://{{site}}/{{unit}}")
    site, sep, unit = src.removeprefix(_SOURCE_PREFIX).partition("/")
    if not sep or not site or not unit or "/" in unit:
        raise MalformedEventError(f"source {src[:80]!r} is not portlane://{{site}}/{{unit}}")
    return site, unit


def verify_event(envelope: Any, keys: Authority, *, site: str | None = None) -> VerifiedEvent:
    """Check the signature and the authority of one received envelope (a parsed JSON object).

    ``site`` defaults to the authority's site. Raises, in this order: :class:`MalformedEventError`
    (not an object, no usable ``source``/``type``/``data``), :class:`UnsignedEventError`,
    :class:`~portlane.edge.trust.authority.UnknownKeyError`, :class:`BadSignatureError`,
    :class:`~portlane.edge.trust.authority.NotAuthorisedError` (another site, another unit, or
    an event that key may not sign). Nothing about the content is looked at before the
    signature verified, except what is needed to find the key.
    """
    if not isinstance(envelope, Mapping):
        raise MalformedEventError(f"an event is a JSON object, not {type(envelope).__name__}")
    kid, sig = envelope.get("sigkeyid"), envelope.get("sig")
    if sig in (None, "") or kid in (None, ""):
        raise UnsignedEventError("event carries no signature")
    if not isinstance(kid, str) or not isinstance(sig, str):
        raise MalformedEventError("sigkeyid and sig must be strings")
    grant: KeyGrant = keys.grant(kid)
    try:
        raw_sig = base64.b64decode(sig.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise BadSignatureError("sig is not base64", key_id=kid) from None
    if len(raw_sig) != 64 or base64.b64encode(raw_sig).decode("ascii") != sig:
        raise BadSignatureError("sig is not a canonical base64 Ed25519 signature", key_id=kid)
    try:
        grant.public_key.verify(raw_sig, canonical_envelope(envelope))
    except InvalidSignature:
        raise BadSignatureError("signature does not verify", key_id=kid) from None

    src_site, unit = _source(envelope)
    want_site = site if site is not None else keys.site
    if src_site != want_site:
        raise NotAuthorisedError(f"event from site {src_site[:64]!r}, this is {want_site!r}", key_id=kid)
    etype = envelope.get("type")
    if not isinstance(etype, str) or not etype.startswith(_TYPE_PREFIX):
        raise MalformedEventError(f"type {str(etype)[:80]!r} is not portlane.<event>", key_id=kid)
    data = envelope.get("data", {})
    if not isinstance(data, Mapping):
        raise MalformedEventError("data must be an object", key_id=kid)
    event_type = etype.removeprefix(_TYPE_PREFIX)
    keys.check_event(kid, unit=unit, event_type=event_type, data=data)
    return VerifiedEvent(kid, grant.role, src_site, unit, event_type, envelope)


def verify_message(
    payload: bytes,
    keys: Authority,
    *,
    unit: str,
    event_type: str,
    lane: str | None = None,
) -> VerifiedEvent:
    """The verified event of one message received on ``unit``'s topic for ``event_type``
    (``lane``: the lane level of a per-lane scan topic, ``contract.topics``).

    Parses (:func:`parse_envelope`), verifies (:func:`verify_event`), then checks that the event
    is the topic's: its unit and type, and for a per-lane topic its ``data.lane``. Raises the
    :class:`~portlane.edge.trust.authority.TrustError` tree only — :class:`TopicMismatchError`
    for a genuine event re-published on another topic."""
    verified = verify_event(parse_envelope(payload), keys)
    if verified.unit != unit or verified.type != event_type:
        raise TopicMismatchError(
            f"{verified.unit}/{verified.type} published on {unit[:64]}/{event_type[:64]}", key_id=verified.key_id
        )
    if lane is not None and verified.data.get("lane") != lane:
        raise TopicMismatchError(
            f"an event about lane {str(verified.data.get('lane'))[:64]!r} on lane {lane[:64]!r}'s topic",
            key_id=verified.key_id,
        )
    return verified


class PeerEvents:
    """What one unit accepts from another unit's event stream: only envelopes that verify
    against the site's :class:`Authority` — the lane acts on a scanner's ``scan.*`` only when
    that scanner's key signed them; the scanner queues ``inspection.requested`` only when the
    requesting lane's key signed it. The broker is not a trust boundary: anyone who can publish
    on it can write any topic.

    A refused event is counted by reason (:attr:`refused`) and audited through ``rejections``
    (an aggregator of kind ``event_rejected``: a flood costs counters, not fsyncs).
    """

    def __init__(self, authority: Authority, rejections: RejectionAggregator, *, unit: str) -> None:
        self.authority = authority
        self.rejections = rejections
        self.unit = unit
        self.accepted = 0
        self.refused: dict[str, int] = {}

    def unkeyed(self, units: list[str]) -> list[str]:
        """Those of ``units`` the site file gives no signing key: nothing they publish can be
        accepted. The daemon says so once at start (a config that cannot work is not silent)."""
        return [u for u in units if not self.authority.unit_key_ids(u)]

    def accept(self, payload: bytes, *, unit: str, event_type: str, lane: str | None = None) -> VerifiedEvent | None:
        """The verified envelope of ``payload`` received on ``unit``'s topic for ``event_type``
        (``lane``: of a per-lane scan topic), or None (refused, counted, audited while under
        the aggregator's thresholds). :func:`verify_message` does the checks."""
        try:
            verified = verify_message(payload, self.authority, unit=unit, event_type=event_type, lane=lane)
        except TrustError as exc:
            self.refuse(exc.reason, exc.key_id, event_type, exc.detail)
            return None
        self.accepted += 1
        return verified

    def refuse(self, reason: str, key_id: str | None, event_type: str, detail: str) -> None:
        """Count and audit (aggregated) an event refused here or by a later check."""
        n = self.refused[reason] = self.refused.get(reason, 0) + 1
        if n in (1, 10, 100) or n % 1000 == 0:
            log.warning("%s: refused %s event (%s, %d so far): %s", self.unit, event_type[:64], reason, n, detail[:200])
        self.rejections.record(reason, key_id=key_id, command=event_type, detail=detail)
