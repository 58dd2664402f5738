"""The tamper-evident audit log: hash-chained JSON Lines, append-only, fsync'ed — the writer.

The entry format, the chain check (``verify_log``) and the signed checkpoints that anchor the
chain live in :mod:`portlane.edge.trust.audit_chain`; ``portlane audit verify`` and anyone
holding a copy of the file use that module alone.

Who asked: while a control-socket request is handled, :func:`audit_context` holds the
kernel-reported peer (uid, user name, pid); every entry appended meanwhile gets it as
``data.peer``, next to the operator name the technician typed (``actor``) — whatever handler
or lane code writes the entry.

Writers: one ``write()`` per entry on an ``O_APPEND`` descriptor, ``fsync`` before
:meth:`AuditLog.append` returns (inside the unit's flush group, ``edge/delivery/flush.py``:
when the group closes, before anything written in it can move a device); a thread lock plus
``flock`` serialise writers, also across processes (every lane daemon of a site may share one
file). A torn tail found by a writer is moved aside to ``<file>.torn-<offset>`` and a
``log_recovered`` entry records its size and sha256, so the chain continues from the last
complete entry and the evidence is kept.
"""

from __future__ import annotations

import enum
import fcntl
import hashlib
import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from portlane.edge.contract.canonical import canonical_json
from portlane.edge.contract.times import format_rfc3339
from portlane.edge.delivery.flush import FlushGroup
from portlane.edge.errors import AuditError, AuditLineError, OperatorError
from portlane.edge.trust.audit_chain import (
    GENESIS,
    KIND_PATTERN,
    AuditEntry,
    Checkpoint,
    Signer,
    VerifyReport,
    hash_body,
    parse_line,
    split_lines,
    verify_log,
)
from portlane.edge.trust.nonces import Clock

__all__ = [
    "MAX_ENTRY_BYTES",
    "MIN_REASON_CHARS",
    "AuditKind",
    "AuditLog",
    "audit_context",
    "require_operator",
]

#: One entry's line, newline included. Keeps one append to one write() and a bounded tail read.
MAX_ENTRY_BYTES = 64 * 1024
#: A reason shorter than this says nothing ("ok", "test").
MIN_REASON_CHARS = 8


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
        if not re.fullmatch(KIND_PATTERN, kind):
            raise ValueError(f"audit kind {kind!r} must match {KIND_PATTERN}")
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

    def checkpoint(self, *, unit: str, signer: Signer) -> Checkpoint:
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
        entry = AuditEntry.model_validate({**body, "hash": hash_body(body)})
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
        lines, tail = split_lines(chunk)
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
                last = parse_line(lines[-1])
            except AuditLineError as exc:
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
