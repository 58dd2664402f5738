"""Signed commands from the central platform: canonical JSON, Ed25519, replay protection.

Wire format of a command (one JSON object, UTF-8)::

    {"v": 1, "cmd": "release", "site": "zhuhai-hzmb", "lane": "c01", "passage_id": "p-123",
     "args": {"agency": "customs"}, "issued_at": "2026-11-23T18:00:00Z",
     "expires_at": "2026-11-23T18:01:00Z", "nonce": "<>=16 random bytes, base64url, unpadded>",
     "key_id": "platform-2026", "sig": "<Ed25519 signature, standard base64>"}

The signature is Ed25519 over ``canonical_json(command without "sig")``. The canonical form
follows RFC 8785 (JCS): object keys sorted by their UTF-16 code units, no insignificant
whitespace, strings escaped exactly as ECMAScript ``JSON.stringify`` does (``\\" \\\\ \\b \\f
\\n \\r \\t``, other controls as lowercase ``\\u00xx``, everything else literal), UTF-8.
Numbers: integers within ±(2**53−1); finite floats in ECMAScript form — but signed
commands reject floats altogether (an agency's verdict never needs one, and it avoids
cross-language float formatting as an attack surface). NaN, ±Infinity, duplicate keys
and lone surrogates are rejected.

:meth:`CommandVerifier.verify` checks, in this order, and stops at the first failure:

1. **parse** — bytes are UTF-8 JSON of at most :data:`MAX_COMMAND_BYTES`, an object;
   no ``sig`` → ``unsigned``; anything not matching :class:`SignedCommand` → ``malformed``
2. **key** — ``key_id`` names a trusted key → else ``unknown_key``
3. **signature** — Ed25519 over the canonical bytes → else ``bad_signature``
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

Exception tree (all from :class:`portlane.edge.errors.PortlaneError`)::

    PortlaneError
    ├── CommandRejected       .reason is a RejectReason
    └── NonceStoreError       the nonce store file is unusable (found when it is opened)
    ValueError
    └── CanonicalJSONError    a value has no canonical JSON form
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import math
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Protocol, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from portlane.edge.contract.times import format_rfc3339, parse_rfc3339
from portlane.edge.errors import PortlaneError
from portlane.edge.trust.authority import Authority, TrustError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "COMMAND_NAMES",
    "MAX_COMMAND_BYTES",
    "CanonicalJSONError",
    "Clock",
    "CommandName",
    "CommandRejected",
    "CommandSigner",
    "CommandVerifier",
    "MemoryNonceStore",
    "NonceStore",
    "NonceStoreError",
    "RejectReason",
    "SignedCommand",
    "SqliteNonceStore",
    "b64decode_strict",
    "b64url_decode_strict",
    "canonical_json",
    "format_rfc3339",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "new_nonce",
    "parse_rfc3339",
    "public_key_b64",
    "trusted_keys_from_config",
]

#: Largest command accepted on the wire. A board message or an expected-vehicle list fits easily.
MAX_COMMAND_BYTES = 64 * 1024
#: Largest safe integer (I-JSON, RFC 7493): beyond it a JavaScript or Java platform would round.
MAX_SAFE_INT = 2**53 - 1
_MAX_DEPTH = 32
_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
_NONCE_MIN_BYTES = 16

Clock = Callable[[], datetime]


# --------------------------------------------------------------------------------------------
# Canonical JSON (RFC 8785 style)


class CanonicalJSONError(ValueError):
    """The value has no canonical JSON form (float where none is allowed, NaN, huge int, ...)."""


def _es6_number(x: float) -> str:
    """ECMAScript Number::toString for a finite float (RFC 8785 §3.2.2.3)."""
    if x == 0:
        return "0"  # also -0
    sign = "-" if x < 0 else ""
    # repr() gives the shortest round-tripping digits, as ECMAScript requires; only the layout differs.
    t = Decimal(repr(abs(x))).as_tuple()
    digits = "".join(map(str, t.digits)).rstrip("0") or "0"
    k = len(digits)
    n = t.exponent + len(t.digits)  # type: ignore[operator]  # x = 0.digits * 10**n
    if k <= n <= 21:
        out = digits + "0" * (n - k)
    elif 0 < n <= 21:
        out = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        exp = ("+" if e >= 0 else "-") + str(abs(e))
        out = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + exp
    return sign + out


def _encode(value: Any, out: list[str], allow_floats: bool, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise CanonicalJSONError(f"nested deeper than {_MAX_DEPTH}")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, int):
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise CanonicalJSONError(f"integer {value} is outside ±(2**53-1)")
        out.append(str(int(value)))
    elif isinstance(value, float):
        if not allow_floats:
            raise CanonicalJSONError(f"floats are not allowed here ({value!r}); use an integer or a string")
        if not math.isfinite(value):
            raise CanonicalJSONError(f"{value!r} has no JSON form")
        out.append(_es6_number(value))
    elif isinstance(value, Mapping):
        items = []
        for k in value:
            if not isinstance(k, str):
                raise CanonicalJSONError(f"object key {k!r} is not a string")
            items.append(k)
        # RFC 8785 sorts by UTF-16 code units; big-endian UTF-16 bytes sort the same way.
        items.sort(key=lambda s: s.encode("utf-16-be", "surrogatepass"))
        out.append("{")
        for i, k in enumerate(items):
            if i:
                out.append(",")
            out.append(json.dumps(k, ensure_ascii=False))
            out.append(":")
            _encode(value[k], out, allow_floats, depth + 1)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out, allow_floats, depth + 1)
        out.append("]")
    else:
        raise CanonicalJSONError(f"{type(value).__name__} has no JSON form")


def canonical_json(value: Any, *, allow_floats: bool = True) -> bytes:
    """The RFC 8785 (JCS) canonical UTF-8 bytes of ``value``.

    Accepts ``None``, ``bool``, ``int`` within ±(2**53−1), ``str`` (no lone surrogates),
    finite ``float`` unless ``allow_floats`` is false, lists/tuples and string-keyed mappings.
    Raises :class:`CanonicalJSONError` for anything else.
    """
    out: list[str] = []
    _encode(value, out, allow_floats, 0)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalJSONError("string contains a lone surrogate") from exc


def _reject_float(s: str) -> Any:
    raise CanonicalJSONError(f"float {s} not allowed in a signed command")


def _reject_constant(s: str) -> Any:
    raise CanonicalJSONError(f"{s} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise CanonicalJSONError(f"duplicate key {k!r}")
        d[k] = v
    return d


def _strict_loads(raw: bytes) -> Any:
    """Parse JSON for a signed command: UTF-8 only, no floats, no NaN, no duplicate keys."""
    text = raw.decode("utf-8")  # strict: no BOM sniffing, no UTF-16
    return json.loads(
        text, parse_float=_reject_float, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates
    )


# --------------------------------------------------------------------------------------------
# Base64, keys, time


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


def load_public_key(b64: str) -> Ed25519PublicKey:
    """An Ed25519 public key from its 32 raw bytes in standard base64 (the site-config form)."""
    raw = b64decode_strict(b64.strip())
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def load_private_key(b64: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from its 32-byte seed in standard base64."""
    raw = b64decode_strict(b64.strip())
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 private key (seed) is 32 bytes, got {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def generate_keypair() -> tuple[str, str]:
    """A new Ed25519 key pair as ``(private_key_b64, public_key_b64)``."""
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return base64.b64encode(seed).decode("ascii"), public_key_b64(key)


def trusted_keys_from_config(keys: Iterable[Any]) -> dict[str, str]:
    """``platform.keys`` of a site config (``TrustedKey`` models or ``{id, public_key}``
    mappings) as the ``{key_id: public_key_b64}`` mapping :class:`CommandVerifier` takes."""
    out: dict[str, str] = {}
    for k in keys:
        kid, pub = (k["id"], k["public_key"]) if isinstance(k, Mapping) else (k.id, k.public_key)
        if kid in out:
            raise ValueError(f"trusted key id {kid!r} listed twice")
        out[kid] = pub
    return out


def new_nonce() -> str:
    """16 random bytes, unpadded base64url (22 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(_NONCE_MIN_BYTES)).rstrip(b"=").decode("ascii")


def _now_checked(clock: Clock) -> datetime:
    now = clock()
    if now.tzinfo is None:
        raise ValueError("the clock returned a naive datetime; it must be timezone-aware")
    return now


# --------------------------------------------------------------------------------------------
# The command model


class CommandName(enum.StrEnum):
    DECISION = "decision"  # an agency's verdict: args {agency, verdict: release|inspect|hold, ...}
    RELEASE = "release"
    HOLD = "hold"
    DIVERT = "divert"
    CORRECT_IDENTITY = "correct_identity"
    BOARD_MESSAGE = "board_message"
    EXPECTED_VEHICLES = "expected_vehicles"
    CLOSE_LANE = "close_lane"
    OPEN_LANE = "open_lane"
    REPLAY_EVENTS = "replay_events"  # re-send retained events: args {from_seq, to_seq}


COMMAND_NAMES: tuple[str, ...] = tuple(c.value for c in CommandName)
_CommandLiteral = Literal[
    "decision",
    "release",
    "hold",
    "divert",
    "correct_identity",
    "board_message",
    "expected_vehicles",
    "close_lane",
    "open_lane",
    "replay_events",
]


class SignedCommand(BaseModel):
    """A command as signed by the central platform. Every field is required (``passage_id``
    may be null), types are strict and unknown fields are rejected, so the model and the
    received JSON object are the same thing and :meth:`signed_bytes` is what was signed."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    v: Literal[1]
    cmd: _CommandLiteral
    site: str = Field(pattern=_ID_PATTERN)
    lane: str = Field(pattern=_ID_PATTERN)
    passage_id: str | None = Field(min_length=1, max_length=128)
    args: dict[str, Any]
    issued_at: str
    expires_at: str
    nonce: str = Field(min_length=22, max_length=128)
    key_id: str = Field(pattern=_ID_PATTERN)
    sig: str = Field(min_length=1, max_length=128)

    @field_validator("v", mode="before")
    @classmethod
    def _v_is_int(cls, v: Any) -> Any:
        if type(v) is not int:  # pydantic's Literal[1] lets True through
            raise ValueError("v must be the integer 1")
        return v

    @field_validator("args")
    @classmethod
    def _args_canonical(cls, v: dict[str, Any]) -> dict[str, Any]:
        canonical_json(v, allow_floats=False)
        return v

    @field_validator("issued_at", "expires_at")
    @classmethod
    def _timestamp(cls, v: str) -> str:
        parse_rfc3339(v)
        return v

    @field_validator("nonce")
    @classmethod
    def _nonce(cls, v: str) -> str:
        if len(b64url_decode_strict(v)) < _NONCE_MIN_BYTES:
            raise ValueError(f"nonce must carry at least {_NONCE_MIN_BYTES} random bytes")
        return v

    @field_validator("sig")
    @classmethod
    def _sig(cls, v: str) -> str:
        if len(b64decode_strict(v)) != 64:
            raise ValueError("an Ed25519 signature is 64 bytes")
        return v

    @model_validator(mode="after")
    def _window(self) -> Self:
        if parse_rfc3339(self.expires_at) <= parse_rfc3339(self.issued_at):
            raise ValueError("expires_at must be after issued_at")
        return self

    @property
    def issued_at_dt(self) -> datetime:
        return parse_rfc3339(self.issued_at)

    @property
    def expires_at_dt(self) -> datetime:
        return parse_rfc3339(self.expires_at)

    def signed_bytes(self) -> bytes:
        """The canonical bytes the signature covers: every field except ``sig``."""
        return canonical_json(self.model_dump(exclude={"sig"}), allow_floats=False)

    def to_json_bytes(self) -> bytes:
        """The wire form: the canonical JSON of the whole command, ``sig`` included."""
        return canonical_json(self.model_dump(), allow_floats=False)

    def digest(self) -> str:
        """sha256 (hex) of the wire form, for audit entries."""
        return hashlib.sha256(self.to_json_bytes()).hexdigest()


class CommandSigner:
    """Signs commands: used by the central-platform simulator and tests."""

    def __init__(self, key_id: str, private_key_b64: str) -> None:
        if not re.fullmatch(_ID_PATTERN, key_id):
            raise ValueError(f"key id {key_id!r} must match {_ID_PATTERN}")
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


class CommandRejected(PortlaneError):
    """A command failed verification. ``reason`` is a :class:`RejectReason`; ``detail`` is for
    humans; ``fields`` holds what could be read of the command (``cmd``, ``key_id``, ``nonce``,
    ``passage_id``, ``site``, ``lane``) — *unauthenticated* unless the reason comes after
    ``bad_signature`` in the check order — for the response and the audit entry."""

    def __init__(self, reason: RejectReason, detail: str, fields: Mapping[str, Any] | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.fields: dict[str, Any] = dict(fields or {})
        super().__init__(f"{reason.value}: {detail}")

    def as_dict(self) -> dict[str, Any]:
        """Body for the response topic / audit ``data``."""
        return {"ok": False, "reason": self.reason.value, "detail": self.detail, **self.fields}


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
# Nonce stores


class NonceStoreError(PortlaneError):
    """The nonce store cannot be used (corrupt file, unreadable). Raised when it is opened."""


class NonceStore(Protocol):
    @property
    def created_at(self) -> datetime | None:
        """When the store was created (None: unknown, no ``issued_before_store`` check)."""
        ...

    def check_and_record(self, nonce: str, *, keep_until: datetime, now: datetime) -> bool:
        """Record ``nonce`` atomically; False if it was already recorded. Forgets nonces whose
        ``keep_until`` has passed (they belong to commands that are expired anyway)."""
        ...

    def close(self) -> None: ...


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


class MemoryNonceStore:
    """In-memory nonce store for tests and simulators. Forgets everything on restart."""

    def __init__(self, *, created_at: datetime | None = None) -> None:
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        self._created_at = created_at

    @property
    def created_at(self) -> datetime | None:
        return self._created_at

    def check_and_record(self, nonce: str, *, keep_until: datetime, now: datetime) -> bool:
        with self._lock:
            cutoff = _ms(now)
            for n in [n for n, until in self._seen.items() if until < cutoff]:
                del self._seen[n]
            if nonce in self._seen:
                return False
            self._seen[nonce] = _ms(keep_until)
            return True

    def count(self) -> int:
        return len(self._seen)

    def close(self) -> None:
        pass


class SqliteNonceStore:
    """Nonces that survive restarts and power cuts: SQLite in WAL mode, ``synchronous=FULL``
    so a nonce is on disk before the command it belongs to is acted on. Safe for several
    processes (one file per site is fine) and threads.

    Rows are pruned in the same transaction as each insert once ``keep_until + margin`` is
    past; the margin (default one hour) covers a wall clock stepped backwards by NTP, which
    would otherwise make an already-pruned, expired command look valid again.

    The store records its creation time (``clock()``, default the wall clock) in a ``meta``
    table: the verifier refuses commands issued before it, so deleting or recreating the file
    does not reopen replays. A store from before that table existed gets "now" — the cautious
    choice. A file that is not a nonce store raises :class:`NonceStoreError` here, at open.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        margin_s: float = 3600.0,
        synchronous: str = "FULL",
        clock: Clock | None = None,
    ) -> None:
        if synchronous not in ("FULL", "EXTRA", "NORMAL"):
            raise ValueError("synchronous must be FULL, EXTRA or NORMAL")
        self.path = Path(path)
        self._margin_ms = int(margin_s * 1000)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        now = _now_checked(clock or (lambda: datetime.now(UTC)))
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
            self._created_at = self._open(self._db, synchronous, now)
        except sqlite3.Error as exc:
            if self._db is not None:
                self._db.close()
                self._db = None
            raise NonceStoreError(
                f"{self.path}: not a usable nonce store ({exc}); stop the daemon, move the file aside "
                "(keep it as evidence) and start again — a new store refuses commands issued before it"
            ) from exc

    @staticmethod
    def _open(db: sqlite3.Connection, synchronous: str, now: datetime) -> datetime:
        # Reading the schema fails at once on a file that is not SQLite ("file is not a database").
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        check = db.execute("PRAGMA quick_check").fetchone()
        if check is None or check[0] != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {check[0] if check else 'no answer'}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, keep_until_ms INTEGER NOT NULL) "
                "WITHOUT ROWID"
            )
            db.execute("CREATE INDEX IF NOT EXISTS nonces_keep_until ON nonces(keep_until_ms)")
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
            db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('created_at', ?)", (format_rfc3339(now),))
            row = db.execute("SELECT value FROM meta WHERE key = 'created_at'").fetchone()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        try:
            return parse_rfc3339(str(row[0]))
        except ValueError as exc:
            raise sqlite3.DatabaseError(f"meta.created_at is not a timestamp: {row[0]!r}") from exc

    @property
    def created_at(self) -> datetime:
        """When this store file was created; commands issued before it are refused."""
        return self._created_at

    def check_and_record(self, nonce: str, *, keep_until: datetime, now: datetime) -> bool:
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM nonces WHERE keep_until_ms < ?", (_ms(now) - self._margin_ms,))
                cur = db.execute(
                    "INSERT OR IGNORE INTO nonces(nonce, keep_until_ms) VALUES (?, ?)",
                    (nonce, _ms(keep_until)),
                )
                fresh = cur.rowcount == 1
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return fresh

    def count(self) -> int:
        """Number of nonces held (not ``__len__``: an empty store must not be falsy)."""
        with self._lock:
            row = self._conn().execute("SELECT count(*) FROM nonces").fetchone()
            return int(row[0])

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("nonce store is closed")
        return self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# The verifier


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

    def verify(self, raw: bytes | str | Mapping[str, Any]) -> SignedCommand:
        """Return the verified command or raise :class:`CommandRejected` (see the module
        docstring for the order of the checks)."""
        obj = self._parse(raw)
        if obj.get("sig") in (None, ""):
            raise CommandRejected(RejectReason.UNSIGNED, "command carries no signature", _echo(obj))
        try:
            cmd = SignedCommand.model_validate(obj)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "<root>"
            raise CommandRejected(RejectReason.MALFORMED, f"{where}: {err['msg']}", _echo(obj)) from None
        echo = _echo(obj)

        key = self._keys.get(cmd.key_id)
        if key is None:
            raise CommandRejected(RejectReason.UNKNOWN_KEY, f"key id {cmd.key_id!r} is not trusted", echo)

        signed = {k: v for k, v in obj.items() if k != "sig"}
        try:
            key.verify(b64decode_strict(cmd.sig), canonical_json(signed, allow_floats=False))
        except InvalidSignature:
            raise CommandRejected(RejectReason.BAD_SIGNATURE, "signature does not verify", echo) from None

        if self._max_validity is not None and cmd.expires_at_dt - cmd.issued_at_dt > self._max_validity:
            raise CommandRejected(
                RejectReason.VALIDITY_TOO_LONG,
                f"valid from {cmd.issued_at} to {cmd.expires_at}; at most "
                f"{self._max_validity.total_seconds():g} s is accepted",
                echo,
            )
        now = _now_checked(self._clock)
        if now < cmd.issued_at_dt - self._skew:
            raise CommandRejected(
                RejectReason.NOT_YET_VALID,
                f"issued_at {cmd.issued_at} is in the future (now {format_rfc3339(now)})",
                echo,
            )
        if now >= cmd.expires_at_dt + self._skew:
            raise CommandRejected(
                RejectReason.EXPIRED, f"expired at {cmd.expires_at} (now {format_rfc3339(now)})", echo
            )

        if cmd.site != self.site:
            raise CommandRejected(RejectReason.WRONG_SITE, f"for site {cmd.site!r}, this is {self.site!r}", echo)
        if cmd.lane != self.lane:
            raise CommandRejected(RejectReason.WRONG_LANE, f"for lane {cmd.lane!r}, this is {self.lane!r}", echo)

        if self._authority is not None:
            agency = cmd.args.get("agency")
            try:
                self._authority.check(
                    cmd.key_id, command=cmd.cmd, unit=cmd.lane, agency=agency if isinstance(agency, str) else None
                )
            except TrustError as exc:
                raise CommandRejected(RejectReason.NOT_AUTHORISED, exc.detail, echo) from None

        created = self._nonces.created_at
        if created is not None and cmd.issued_at_dt < created:
            raise CommandRejected(
                RejectReason.ISSUED_BEFORE_STORE,
                f"issued at {cmd.issued_at}, before this lane's nonce store was created "
                f"({format_rfc3339(created)}); the platform must sign it again",
                echo,
            )

        if not self._nonces.check_and_record(cmd.nonce, keep_until=cmd.expires_at_dt + self._skew, now=now):
            raise CommandRejected(RejectReason.REPLAYED, f"nonce {cmd.nonce} was already used", echo)
        return cmd

    @staticmethod
    def _parse(raw: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
        # A mapping goes through the same strict path as bytes: canonicalise, then re-parse.
        try:
            if isinstance(raw, Mapping):
                raw = canonical_json(raw, allow_floats=False)
            elif isinstance(raw, str):
                raw = raw.encode("utf-8")
            if len(raw) > MAX_COMMAND_BYTES:
                raise CanonicalJSONError(f"longer than {MAX_COMMAND_BYTES} bytes")
            obj = _strict_loads(raw)
        except (ValueError, RecursionError) as exc:  # CanonicalJSONError, JSONDecodeError, UnicodeError
            raise CommandRejected(RejectReason.MALFORMED, f"not a JSON command: {exc}") from None
        if not isinstance(obj, dict):
            raise CommandRejected(RejectReason.MALFORMED, "a command is a JSON object")
        return obj
