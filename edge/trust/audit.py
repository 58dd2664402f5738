"""The tamper-evident audit log: hash-chained JSON Lines, append-only, fsync'ed.

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
rewrites an entry *and every later one*. **Checkpoints** anchor it: :meth:`AuditLog.checkpoint`
returns a :class:`Checkpoint` — entry count, head hash, time, signed with the unit's Ed25519 key
— which the daemon publishes (``audit.checkpoint`` event, and retained on
``portlane/v1/{site}/{unit}/checkpoint``) periodically and at shutdown, out of reach of anyone
who later edits the file. :func:`verify_against_checkpoint` then requires entry ``n =
checkpoint.entries`` to exist with exactly the checkpoint's hash: deleting the newest entries
(``truncated``) or replacing the file with a fresh chain (``checkpoint_mismatch``) is caught,
and entries appended after the checkpoint are fine. ``expected_head`` (the exact newest hash)
remains for a log that must not have grown since.

Who asked: while a control-socket request is handled, :func:`audit_context` holds the
kernel-reported peer (uid, user name, pid); every entry appended meanwhile gets it as
``data.peer``, next to the operator name the technician typed (``actor``) — whatever handler
or lane code writes the entry.

Writers: one ``write()`` per entry on an ``O_APPEND`` descriptor, ``fsync`` before
:meth:`AuditLog.append` returns (inside the unit's flush group, ``edge/delivery/flush.py``:
when the group closes, before anything written in it can move a device); a thread lock plus
``flock`` serialise writers, also across processes (every lane daemon of a site may share one
file). A torn tail found by a writer is
moved aside to ``<file>.torn-<offset>`` and a ``log_recovered`` entry records its size and
sha256, so the chain continues from the last complete entry and the evidence is kept.
"""

from __future__ import annotations

import dataclasses
import enum
import fcntl
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, Self

from portlane.edge.contract.canonical import canonical_json
from portlane.edge.contract.times import format_rfc3339
from portlane.edge.delivery.flush import FlushGroup
from portlane.edge.errors import AuditError, CanonicalJSONError, CheckpointError, OperatorError
from portlane.edge.trust.nonces import Clock
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "GENESIS",
    "MAX_ENTRY_BYTES",
    "MIN_REASON_CHARS",
    "AuditEntry",
    "AuditKind",
    "AuditLog",
    "AuditProblem",
    "Checkpoint",
    "VerifyReport",
    "audit_context",
    "read_entries",
    "require_operator",
    "verify_against_checkpoint",
    "verify_log",
]

GENESIS = "0" * 64
#: One entry's line, newline included. Keeps one append to one write() and a bounded tail read.
MAX_ENTRY_BYTES = 64 * 1024
#: A reason shorter than this says nothing ("ok", "test").
MIN_REASON_CHARS = 8
_KIND_PATTERN = r"^[a-z][a-z0-9_.]{0,47}$"
_FIELDS = ("actor", "data", "hash", "kind", "lane", "n", "prev", "reason", "ts")


#: Fields added to every entry appended in this context (see :func:`audit_context`).
_CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar("portlane_audit_context", default=None)


@contextmanager
def audit_context(**fields: Any) -> Iterator[None]:
    """Within the block (this task or thread and what it awaits), every appended entry's
    ``data`` also carries ``fields`` (e.g. ``peer={...}``) unless it sets them itself."""
    token = _CONTEXT.set({**(_CONTEXT.get() or {}), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class AuditKind(enum.StrEnum):
    """Kinds used by portlane itself. ``kind`` is open: any name matching ``[a-z][a-z0-9_.]*``."""

    OVERRIDE = "override"
    CORRECTION = "correction"
    COMMAND_ACCEPTED = "command_accepted"
    COMMAND_REJECTED = "command_rejected"
    LANE_CLOSED = "lane_closed"
    LANE_OPENED = "lane_opened"
    LOG_RECOVERED = "log_recovered"


#: Kinds that a person causes: append() applies require_operator() to them.
_OPERATOR_KINDS = frozenset({AuditKind.OVERRIDE.value, AuditKind.CORRECTION.value})


def require_operator(actor: str, reason: str) -> tuple[str, str]:
    """Validate an operator identity and a reason for a manual action; return both stripped.

    The identity must be non-empty, at most 64 characters, without whitespace or control
    characters (e.g. ``tech:li.wei`` or an officer number); the reason must have at least
    :data:`MIN_REASON_CHARS` characters and no control characters other than spaces.
    Raises :class:`OperatorError`.
    """
    a = actor.strip() if isinstance(actor, str) else ""
    r = " ".join(reason.split()) if isinstance(reason, str) else ""
    if not a:
        raise OperatorError("an operator identity is required")
    if len(a) > 64 or not a.isprintable() or any(c.isspace() for c in a):
        raise OperatorError(f"operator identity {a[:64]!r} must be ≤ 64 printable characters without spaces")
    if len(r) < MIN_REASON_CHARS:
        raise OperatorError(f"a reason of at least {MIN_REASON_CHARS} characters is required")
    if not r.isprintable() or len(r) > 1000:
        raise OperatorError("the reason must be printable text of at most 1000 characters")
    return a, r


class AuditEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    n: int = Field(ge=1)
    ts: str
    kind: str = Field(pattern=_KIND_PATTERN)
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
        return _hash_body(self.body())

    def to_line(self) -> bytes:
        return canonical_json(self.model_dump()) + b"\n"


def _hash_body(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(body)).hexdigest()


# --------------------------------------------------------------------------------------------
# Verification


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


def _parse_line(line: bytes) -> AuditEntry:
    """Parse one line (without its newline); raises ValueError naming the problem kind."""
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _LineError(AuditProblem.UNPARSEABLE, f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise _LineError(AuditProblem.UNPARSEABLE, "not a JSON object")
    try:
        entry = AuditEntry.model_validate(obj)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "<root>"
        raise _LineError(AuditProblem.UNPARSEABLE, f"not an audit entry: {where}: {err['msg']}") from None
    if type(obj["n"]) is not int:
        raise _LineError(AuditProblem.UNPARSEABLE, "not an audit entry: n: not an integer")
    try:
        canonical = canonical_json(obj)
    except CanonicalJSONError as exc:
        raise _LineError(AuditProblem.NOT_CANONICAL, str(exc)) from None
    if canonical != line:
        raise _LineError(AuditProblem.NOT_CANONICAL, "line is not the canonical form of its entry (edited by hand?)")
    if entry.compute_hash() != entry.hash:
        raise _LineError(AuditProblem.HASH_MISMATCH, "hash does not match the entry's contents")
    return entry


class _LineError(ValueError):
    def __init__(self, problem: AuditProblem, detail: str) -> None:
        self.problem = problem
        self.detail = detail
        super().__init__(f"{problem.value}: {detail}")


def _split(data: bytes) -> tuple[list[bytes], bytes]:
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
    lines, tail = _split(data)
    prev, count = GENESIS, 0
    anchored = checkpoint is None or checkpoint.entries == 0
    for i, line in enumerate(lines, start=1):
        try:
            entry = _parse_line(line)
        except _LineError as exc:
            return VerifyReport(False, count, prev, i, exc.problem, exc.detail)
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
    lines, tail = _split(Path(path).read_bytes())
    for i, line in enumerate([*lines, tail] if tail else lines, start=1):
        try:
            obj = json.loads(line.decode("utf-8"))
            yield i, AuditEntry.model_validate(obj), line
        except (ValueError, ValidationError, RecursionError):
            yield i, None, line


# --------------------------------------------------------------------------------------------
# Writer


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AuditLog:
    """Appender for one audit file. Thread-safe; several processes may share the file.

    Opening creates the file (mode 0640) if needed. If the newest complete entry is not a
    valid entry the log was tampered with, and :class:`AuditError` is raised: appending to it
    would hide that. Move the file aside (after ``portlane audit verify``) to start afresh.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, clock: Clock | None = None, flushes: FlushGroup | None = None
    ) -> None:
        self.path = Path(path)
        self._clock = clock or _utc_now
        self._flushes = flushes
        self._lock = threading.Lock()
        existed = self.path.exists()
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        if not existed:
            _fsync_dir(self.path.parent)
        self._size = -1  # size of the file when _head was read; -1 = unknown
        self._n = 0
        self._head = GENESIS
        try:
            with self._locked():
                self._sync_tail()
        except BaseException:
            self.close()
            raise

    # -- public --------------------------------------------------------------------------------

    @property
    def head(self) -> str:
        """Hash of the newest entry this writer knows of (GENESIS for an empty log)."""
        return self._head

    @property
    def entries(self) -> int:
        return self._n

    def append(
        self,
        kind: str,
        *,
        actor: str,
        reason: str,
        lane: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one entry and fsync it; return it. ``override`` and ``correction`` entries
        need a valid operator and reason (:func:`require_operator`, raises OperatorError).
        ``data`` must be JSON (str keys; str, int, finite float, bool, None, lists, objects)."""
        kind = str(kind)
        if not re.fullmatch(_KIND_PATTERN, kind):
            raise ValueError(f"audit kind {kind!r} must match {_KIND_PATTERN}")
        if kind in _OPERATOR_KINDS:
            actor, reason = require_operator(actor, reason)
        elif not actor:
            raise ValueError("actor must not be empty")
        payload = dict(data or {})
        for k, v in (_CONTEXT.get() or {}).items():
            payload.setdefault(k, v)
        canonical_json(payload)  # fail before taking the lock
        with self._locked():
            self._sync_tail()
            return self._write(kind, actor, reason, lane, payload)

    @staticmethod
    def verify(path: str | os.PathLike[str], *, expected_head: str | None = None) -> VerifyReport:
        """Same as :func:`verify_log`."""
        return verify_log(path, expected_head=expected_head)

    def checkpoint(self, *, unit: str, signer: _Signer) -> Checkpoint:
        """A signed checkpoint of the log as it is now (entries and head, re-read from the file
        under the lock, so appends by other writers are included). ``signer`` is the unit's
        :class:`~portlane.edge.trust.events.EventSigner`. Publish it where the lane's own user
        cannot rewrite it: as an ``audit.checkpoint`` event and on the retained checkpoint topic."""
        with self._locked():
            self._sync_tail()
            n, head = self._n, self._head
        body = {
            "entries": n,
            "head": head,
            "log": self.path.name,
            "time": format_rfc3339(self._clock()),
            "unit": unit,
        }
        signed = signer.sign(body)
        return Checkpoint.model_validate(signed)

    def flush(self) -> None:
        """Put every entry written so far on disk (the flush group's)."""
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)

    def close(self) -> None:
        """Idempotent."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------

    def _locked(self) -> _Locked:
        if self._fd is None:
            raise AuditError(f"{self.path}: audit log is closed")
        return _Locked(self._lock, self._fd)

    def _write(self, kind: str, actor: str, reason: str, lane: str | None, data: dict[str, Any]) -> AuditEntry:
        assert self._fd is not None
        body = {
            "n": self._n + 1,
            "ts": format_rfc3339(self._clock()),
            "kind": kind,
            "actor": actor,
            "reason": reason,
            "lane": lane,
            "data": data,
            "prev": self._head,
        }
        entry = AuditEntry.model_validate({**body, "hash": _hash_body(body)})
        line = entry.to_line()
        if len(line) > MAX_ENTRY_BYTES:
            raise AuditError(f"audit entry is {len(line)} bytes; the limit is {MAX_ENTRY_BYTES}")
        view = memoryview(line)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if self._flushes is not None and self._flushes.deferring:
            self._flushes.owe(self)
        else:
            os.fsync(self._fd)
        self._n, self._head = entry.n, entry.hash
        self._size = os.fstat(self._fd).st_size
        return entry

    def _sync_tail(self) -> None:
        """Under the lock: catch up with appends by other writers and recover a torn tail."""
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if size == self._size:
            return
        with open(self.path, "rb") as f:
            start = max(0, size - 2 * MAX_ENTRY_BYTES)
            f.seek(start)
            chunk = f.read(size - start)
        lines, tail = _split(chunk)
        if start > 0:
            lines = lines[1:]  # the first piece may be the end of a longer line
        if tail:
            self._recover_torn(size - len(tail), tail)  # re-reads the head and appends
            return
        if not lines:
            if start > 0:
                raise AuditError(f"{self.path}: newest entry is longer than {MAX_ENTRY_BYTES} bytes")
            self._n, self._head = 0, GENESIS
        else:
            try:
                last = _parse_line(lines[-1])
            except _LineError as exc:
                raise AuditError(
                    f"{self.path}: the newest entry is invalid ({exc}); the log was tampered with. "
                    "Run `portlane audit verify`, keep the file as evidence and start a new one."
                ) from None
            self._n, self._head = last.n, last.hash
        self._size = os.fstat(self._fd).st_size

    def _recover_torn(self, offset: int, tail: bytes) -> None:
        """Move an unterminated last line aside and record that in the chain."""
        assert self._fd is not None
        aside = self.path.with_name(f"{self.path.name}.torn-{offset}")
        with open(aside, "wb") as f:
            f.write(tail)
            f.flush()
            os.fsync(f.fileno())
        os.truncate(self.path, offset)
        os.fsync(self._fd)
        _fsync_dir(self.path.parent)
        self._size = -1
        # Re-read the head now that the tail is gone, then chain the recovery entry to it.
        self._sync_tail()
        self._write(
            AuditKind.LOG_RECOVERED.value,
            "portlane",
            "incomplete last line from an interrupted write moved aside",
            None,
            {
                "offset": offset,
                "bytes": len(tail),
                "sha256": hashlib.sha256(tail).hexdigest(),
                "saved_to": aside.name,
            },
        )


class _Signer(Protocol):
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


class _Locked:
    """Thread lock + exclusive flock on the log for the duration of a with-block."""

    def __init__(self, lock: threading.Lock, fd: int) -> None:
        self._lock = lock
        self._fd = fd

    def __enter__(self) -> None:
        self._lock.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
