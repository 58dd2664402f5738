"""Canonical JSON (RFC 8785, JCS) and strict base64: one spelling per value on the wire.

Signed commands and signed events are signed over the RFC 8785 form of a JSON object: keys
sorted by UTF-16 code units, no insignificant whitespace, ECMAScript string escaping and number
formatting, UTF-8. The ``rfc8785`` package does the encoding; this module adds what signing
needs on top: floats can be refused altogether (a verdict never needs one, and it avoids
cross-language float formatting as an attack surface), nesting is bounded, and parsing is
strict (UTF-8 only, no floats, NaN or duplicate keys). Base64 is decoded only in its canonical
spelling, so that one byte string has exactly one text form.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

import rfc8785
from portlane.edge.errors import CanonicalJSONError

__all__ = [
    "MAX_DEPTH",
    "MAX_SAFE_INT",
    "b64decode_strict",
    "b64url_decode_strict",
    "canonical_json",
    "no_duplicate_keys",
    "strict_loads",
]

#: Largest safe integer (I-JSON, RFC 7493): beyond it a JavaScript or Java platform would round.
MAX_SAFE_INT = 2**53 - 1
#: Deepest nesting accepted: a command or an event is a few levels deep.
MAX_DEPTH = 32


def _check(value: Any, allow_floats: bool, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise CanonicalJSONError(f"nested deeper than {MAX_DEPTH}")
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise CanonicalJSONError(f"integer {value} is outside ±(2**53-1)")
    elif isinstance(value, float):
        if not allow_floats:
            raise CanonicalJSONError(f"floats are not allowed here ({value!r}); use an integer or a string")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise CanonicalJSONError(f"object key {k!r} is not a string")
            _check(v, allow_floats, depth + 1)
    elif isinstance(value, list | tuple):
        for v in value:
            _check(v, allow_floats, depth + 1)
    else:
        raise CanonicalJSONError(f"{type(value).__name__} has no JSON form")


def canonical_json(value: Any, *, allow_floats: bool = True) -> bytes:
    """The RFC 8785 (JCS) canonical UTF-8 bytes of ``value``.

    Accepts ``None``, ``bool``, ``int`` within ±(2**53−1), ``str`` (no lone surrogates),
    finite ``float`` unless ``allow_floats`` is false, lists/tuples and string-keyed mappings,
    nested at most :data:`MAX_DEPTH` deep. Raises :class:`CanonicalJSONError` for anything else.
    """
    _check(value, allow_floats, 0)
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        raise CanonicalJSONError(str(exc)) from exc


def _reject_float(s: str) -> Any:
    raise CanonicalJSONError(f"float {s} not allowed in a signed command")


def _reject_constant(s: str) -> Any:
    raise CanonicalJSONError(f"{s} is not JSON")


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for ``json.loads`` that refuses an object naming a key twice (a
    reader keeping the first would see another object than the one verified)."""
    d: dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise CanonicalJSONError(f"duplicate key {k!r}")
        d[k] = v
    return d


def strict_loads(raw: bytes) -> Any:
    """Parse JSON for a signed command: UTF-8 only, no floats, no NaN, no duplicate keys."""
    text = raw.decode("utf-8")  # strict: no BOM sniffing, no UTF-16
    return json.loads(
        text, parse_float=_reject_float, parse_constant=_reject_constant, object_pairs_hook=no_duplicate_keys
    )


def b64decode_strict(s: str) -> bytes:
    """Standard base64 (with padding), rejecting non-alphabet characters and non-canonical
    encodings (unused trailing bits set), so that one byte string has exactly one spelling."""
    try:
        raw = base64.b64decode(s.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"not base64: {exc}") from None
    if base64.b64encode(raw).decode("ascii") != s:
        raise ValueError("not canonical base64")
    return raw


def b64url_decode_strict(s: str) -> bytes:
    """Unpadded base64url (RFC 4648 §5), canonical spelling only."""
    if not re.fullmatch(r"[A-Za-z0-9_-]*", s):
        raise ValueError("not unpadded base64url")
    try:
        raw = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except binascii.Error as exc:
        raise ValueError(f"not base64url: {exc}") from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != s:
        raise ValueError("not canonical base64url")
    return raw
