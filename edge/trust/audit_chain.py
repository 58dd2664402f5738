"""The audit log's chain: the entry format, reading and checking it, and the signed checkpoints
that anchor it. The writer is :class:`portlane.edge.trust.audit.AuditLog`.

One entry per line, each line the canonical JSON (RFC 8785, see
:func:`portlane.edge.contract.canonical.canonical_json`) of::

    {"n": 1, "ts": "2026-11-23T18:00:00.000Z", "kind": "override", "actor": "tech:li.wei",
     "reason": "barrier jammed, vehicle waved through", "lane": "c01", "data": {...},
     "prev": "<hash of entry n-1; 64 zeros for n = 1>",
     "hash": "<sha256 hex of the canonical bytes of this entry without 'hash'>"}

``n`` counts from 1 and equals the line number. :func:`verify_log` checks, line by line and
stopping at the first problem: the line parses and has exactly these fields (``unparseable``),
its bytes are the canonical form (``not_canonical`` — so *any* byte edit is caught), ``hash``
matches (``hash_mismatch``), ``n`` is the line number (``bad_sequence`` — deletions and
reorderings), ``prev`` is the previous ``hash`` (``broken_link``). A last line without a
newline is ``torn_tail``: a write cut short by a power cut, reported apart from tampering.

What the chain cannot show on its own: truncation of the newest entries, or an attacker who
rewrites an entry *and every later one*. **Checkpoints** anchor it: ``AuditLog.checkpoint``
returns a :class:`Checkpoint` — entry count, head hash, time, signed with the unit's Ed25519 key
— which the daemon publishes (``audit.checkpoint`` event, and retained on
``portlane/v1/{site}/{unit}/checkpoint``) periodically and at shutdown, out of reach of anyone
who later edits the file. :func:`verify_against_checkpoint` then requires entry ``n =
checkpoint.entries`` to exist with exactly the checkpoint's hash: deleting the newest entries
(``truncated``) or replacing the file with a fresh chain (``checkpoint_mismatch``) is caught,
and entries appended after the checkpoint are fine. ``expected_head`` (the exact newest hash)
remains for a log that must not have grown since.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from portlane.edge.contract.canonical import canonical_json
from portlane.edge.errors import AuditLineError, CanonicalJSONError, CheckpointError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "GENESIS",
    "KIND_PATTERN",
    "AuditEntry",
    "AuditProblem",
    "Checkpoint",
    "Signer",
    "VerifyReport",
    "hash_body",
    "parse_line",
    "read_entries",
    "split_lines",
    "verify_against_checkpoint",
    "verify_log",
]

#: The ``prev`` of the first entry.
GENESIS = "0" * 64
KIND_PATTERN = r"^[a-z][a-z0-9_.]{0,47}$"


class AuditEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    n: int = Field(ge=1)
    ts: str
    kind: str = Field(pattern=KIND_PATTERN)
    actor: str = Field(min_length=1, max_length=256)
    reason: str = Field(max_length=4000)
    lane: str | None
    data: dict[str, Any]
    prev: str = Field(pattern=r"^[0-9a-f]{64}$")
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")

    def body(self) -> dict[str, Any]:
        """Every field except ``hash``."""
        return self.model_dump(exclude={"hash"})

    def compute_hash(self) -> str:
        return hash_body(self.body())

    def to_line(self) -> bytes:
        return canonical_json(self.model_dump()) + b"\n"


def hash_body(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(body)).hexdigest()


class AuditProblem(enum.StrEnum):
    UNPARSEABLE = "unparseable"
    NOT_CANONICAL = "not_canonical"
    HASH_MISMATCH = "hash_mismatch"
    BAD_SEQUENCE = "bad_sequence"
    BROKEN_LINK = "broken_link"
    TORN_TAIL = "torn_tail"
    HEAD_MISMATCH = "head_mismatch"
    TRUNCATED = "truncated"
    CHECKPOINT_MISMATCH = "checkpoint_mismatch"


@dataclasses.dataclass(frozen=True, slots=True)
class VerifyReport:
    """``entries``: complete, valid entries before the first problem; ``head``: hash of the
    last of them (GENESIS for none); ``line``: 1-based line of the first problem."""

    ok: bool
    entries: int
    head: str
    line: int | None = None
    problem: AuditProblem | None = None
    detail: str = ""

    @property
    def torn(self) -> bool:
        return self.problem is AuditProblem.TORN_TAIL

    @property
    def tampered(self) -> bool:
        return not self.ok and not self.torn

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "head": self.head,
            "line": self.line,
            "problem": self.problem.value if self.problem else None,
            "detail": self.detail,
        }


def parse_line(line: bytes) -> AuditEntry:
    """Parse one line (without its newline); raises ValueError naming the problem kind."""
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise AuditLineError(AuditProblem.UNPARSEABLE, f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise AuditLineError(AuditProblem.UNPARSEABLE, "not a JSON object")
    try:
        entry = AuditEntry.model_validate(obj)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "<root>"
        raise AuditLineError(AuditProblem.UNPARSEABLE, f"not an audit entry: {where}: {err['msg']}") from None
    if type(obj["n"]) is not int:
        raise AuditLineError(AuditProblem.UNPARSEABLE, "not an audit entry: n: not an integer")
    try:
        canonical = canonical_json(obj)
    except CanonicalJSONError as exc:
        raise AuditLineError(AuditProblem.NOT_CANONICAL, str(exc)) from None
    if canonical != line:
        raise AuditLineError(
            AuditProblem.NOT_CANONICAL, "line is not the canonical form of its entry (edited by hand?)"
        )
    if entry.compute_hash() != entry.hash:
        raise AuditLineError(AuditProblem.HASH_MISMATCH, "hash does not match the entry's contents")
    return entry


def split_lines(data: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines (without newlines) and the unterminated tail (b'' if none)."""
    *lines, tail = data.split(b"\n")
    return lines, tail


def verify_log(
    path: str | os.PathLike[str], *, expected_head: str | None = None, checkpoint: Checkpoint | None = None
) -> VerifyReport:
    """Check the whole chain of the log at ``path`` (see the module docstring).

    ``expected_head``: the ``hash`` of the newest entry as recorded elsewhere; if given, the
    log must end with exactly that entry (catches truncation and wholesale rewrites).
    ``checkpoint``: entry ``checkpoint.entries`` must have hash ``checkpoint.head`` (later
    entries are fine). Check the checkpoint's signature first (:meth:`Checkpoint.verify`).
    Raises ``OSError`` if the file cannot be read.
    """
    data = Path(path).read_bytes()
    lines, tail = split_lines(data)
    prev, count = GENESIS, 0
    anchored = checkpoint is None or checkpoint.entries == 0
    for i, line in enumerate(lines, start=1):
        try:
            entry = parse_line(line)
        except AuditLineError as exc:
            return VerifyReport(False, count, prev, i, AuditProblem(exc.problem), exc.detail)
        if entry.n != i:
            return VerifyReport(
                False,
                count,
                prev,
                i,
                AuditProblem.BAD_SEQUENCE,
                f"entry says n={entry.n} on line {i} (a line was deleted, inserted or moved)",
            )
        if entry.prev != prev:
            return VerifyReport(
                False,
                count,
                prev,
                i,
                AuditProblem.BROKEN_LINK,
                "prev does not match the hash of the line before",
            )
        prev, count = entry.hash, count + 1
        if checkpoint is not None and i == checkpoint.entries:
            if entry.hash != checkpoint.head:
                return VerifyReport(
                    False,
                    count,
                    prev,
                    i,
                    AuditProblem.CHECKPOINT_MISMATCH,
                    f"entry {i} has hash {entry.hash}, the checkpoint of {checkpoint.time} says {checkpoint.head} "
                    "(the log was replaced or rewritten)",
                )
            anchored = True
    if checkpoint is not None and not anchored:
        return VerifyReport(
            False,
            count,
            prev,
            (len(lines) or None),
            AuditProblem.TRUNCATED,
            f"the log has {count} complete entries, the checkpoint of {checkpoint.time} counted "
            f"{checkpoint.entries} (the newest {checkpoint.entries - count} were removed)",
        )
    if tail:
        blank = tail.strip(b"\0") == b""
        what = "NUL bytes" if blank else "an incomplete entry"
        return VerifyReport(
            False,
            count,
            prev,
            len(lines) + 1,
            AuditProblem.TORN_TAIL,
            f"last line has no newline: {len(tail)} bytes of {what} (interrupted write)",
        )
    if expected_head is not None and expected_head != prev:
        return VerifyReport(
            False,
            count,
            prev,
            len(lines) or None,
            AuditProblem.HEAD_MISMATCH,
            f"log ends with {prev}, expected {expected_head} (truncated or rewritten)",
        )
    return VerifyReport(True, count, prev)


def read_entries(path: str | os.PathLike[str]) -> Iterator[tuple[int, AuditEntry | None, bytes]]:
    """Yield ``(line number, entry or None if the line does not parse, raw line)`` for display.
    No chain checks: use :func:`verify_log` for that."""
    lines, tail = split_lines(Path(path).read_bytes())
    for i, line in enumerate([*lines, tail] if tail else lines, start=1):
        try:
            obj = json.loads(line.decode("utf-8"))
            yield i, AuditEntry.model_validate(obj), line
        except (ValueError, ValidationError, RecursionError):
            yield i, None, line


class Signer(Protocol):
    """What signs a checkpoint: the unit's ``EventSigner``."""

    key_id: str

    def sign(self, envelope: Mapping[str, Any]) -> dict[str, Any]: ...


class Checkpoint(BaseModel):
    """A signed statement "log ``log`` of ``unit`` had ``entries`` entries ending in ``head``
    at ``time``". The signature (``sigkeyid``/``sig``) is the event-signature scheme of
    :mod:`portlane.edge.trust.events` applied to this object, so the same object is the
    ``data`` of an ``audit.checkpoint`` event and a file a technician can keep."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    entries: int = Field(ge=0)
    head: str = Field(pattern=r"^[0-9a-f]{64}$")
    log: str = Field(min_length=1, max_length=255)
    time: str
    unit: str = Field(min_length=1, max_length=64)
    sigkeyid: str = Field(min_length=1, max_length=64)
    sig: str = Field(min_length=1, max_length=128)

    @classmethod
    def parse(cls, raw: bytes | str | Mapping[str, Any]) -> Checkpoint:
        """From JSON bytes/text or a mapping (an event envelope's ``data`` or a whole envelope
        of type ``portlane.audit.checkpoint``). Raises :class:`CheckpointError`."""
        try:
            obj: Any = json.loads(raw) if isinstance(raw, bytes | str) else raw
        except (ValueError, RecursionError) as exc:
            raise CheckpointError(f"not JSON: {exc}") from None
        if isinstance(obj, Mapping) and obj.get("type") == "portlane.audit.checkpoint":
            obj = obj.get("data")
        if not isinstance(obj, Mapping):
            raise CheckpointError("a checkpoint is a JSON object")
        try:
            return cls.model_validate(dict(obj))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "<root>"
            raise CheckpointError(f"not a checkpoint: {where}: {err['msg']}") from None

    def verify(self, authority: Any) -> None:
        """Check the signature against the site's keys (an
        :class:`~portlane.edge.trust.authority.Authority`) and that the key is ``unit``'s own.
        Raises :class:`CheckpointError`."""
        import base64
        import binascii

        from cryptography.exceptions import InvalidSignature
        from portlane.edge.errors import TrustError
        from portlane.edge.trust.events import canonical_envelope

        try:
            grant = authority.grant(self.sigkeyid)
        except TrustError as exc:
            raise CheckpointError(f"signed by {self.sigkeyid!r}: {exc.detail}") from None
        if grant.unit != self.unit:
            raise CheckpointError(f"key {self.sigkeyid} belongs to {grant.unit}, not to {self.unit}")
        try:
            sig = base64.b64decode(self.sig.encode("ascii"), validate=True)
            grant.public_key.verify(sig, canonical_envelope(self.model_dump()))
        except (binascii.Error, InvalidSignature, ValueError):
            raise CheckpointError(f"signature of key {self.sigkeyid} does not verify") from None

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


def verify_against_checkpoint(
    path: str | os.PathLike[str], checkpoint: Checkpoint, *, authority: Any | None = None
) -> VerifyReport:
    """:func:`verify_log` anchored at ``checkpoint``; with ``authority`` the checkpoint's
    signature is checked first (:class:`CheckpointError` if it fails)."""
    if authority is not None:
        checkpoint.verify(authority)
    return verify_log(path, checkpoint=checkpoint)
