"""State files on disk — what is wrong with them, in one line, and what to do.

Every daemon keeps its state in ``state_dir`` (outbox, audit log, nonce store). When a file or
the directory cannot be used — corrupt, truncated, not a database, read-only, on a full disk —
the daemon must say so in one line naming the file, the problem and the remedy, and exit with
``EXIT_STATE`` (4) rather than print a traceback or restart in a loop.

* ``check_state_dir(path)`` — at start-up, before opening anything: the directory exists (or
  can be created), a file can be written and fsynced in it, and it has free space.
* ``sqlite_state_error(path, exc, doing=...)`` — the one translation of an ``sqlite3``/``OSError``
  into a ``StateError`` (the outbox uses it; so can the nonce store).
* ``report_state_error(exc, prog=...)`` — print it as one line on stderr, return the exit code.

Usage in a daemon's entry point::

    try:
        check_state_dir(state_dir)
        daemon = LaneDaemon(...)          # opens the outbox: may raise OutboxStateError
    except StateError as exc:
        return report_state_error(exc, prog="portlane-lane")
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
from pathlib import Path
from typing import TextIO, TypeVar

from portlane.edge.errors import StateError

__all__ = ["MIN_FREE_MB", "check_state_dir", "report_state_error", "sqlite_state_error"]

log = logging.getLogger(__name__)

#: Free space a daemon wants in its state directory at start-up: about 30,000 events, a few
#: hours of a busy lane with the broker unreachable, before the outbox fills the disk.
MIN_FREE_MB = 16.0

_E = TypeVar("_E", bound=StateError)


def report_state_error(exc: StateError, *, prog: str, stream: TextIO | None = None) -> int:
    """Print ``exc`` as ONE line (``prog: file: problem; remedy``) and return its exit code."""
    line = f"{prog}: {exc}".replace("\n", " ")
    print(line, file=stream or sys.stderr, flush=True)
    log.debug("state error", exc_info=exc)
    return exc.exit_code


def check_state_dir(path: str | Path, *, min_free_mb: float = MIN_FREE_MB) -> None:
    """Raise ``StateError`` unless ``path`` is a directory this process can write and fsync a
    file in, with at least ``min_free_mb`` free. Creates it when missing."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _os_state_error(folder, exc, doing="create the state directory") from exc
    if not folder.is_dir():
        raise StateError(str(folder), "is not a directory", "point state_dir in the site file at a directory")
    probe = folder / f".portlane-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"portlane state directory probe\n")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _os_state_error(folder, exc, doing="write a file in the state directory") from exc
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    try:
        st = os.statvfs(folder)
    except OSError as exc:
        raise _os_state_error(folder, exc, doing="read the free space of the state directory") from exc
    free_mb = st.f_bavail * st.f_frsize / (1024 * 1024)
    if free_mb < min_free_mb:
        raise StateError(
            str(folder),
            f"only {free_mb:.1f} MB free on its filesystem (a daemon wants {min_free_mb:.0f} MB)",
            f"free space on the filesystem of {folder} (df {folder}) and restart",
        )


def _os_state_error(folder: Path, exc: OSError, *, doing: str) -> StateError:
    if exc.errno == errno.ENOSPC:
        return StateError(str(folder), f"cannot {doing}: no space left on the device", f"free space (df {folder})")
    if exc.errno == errno.EROFS or _read_only_fs(folder):
        return StateError(
            str(folder),
            f"cannot {doing}: the filesystem is read-only",
            "remount it read-write (a filesystem goes read-only after disk errors: check dmesg) and restart",
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return StateError(
            str(folder),
            f"cannot {doing}: permission denied",
            f"give the daemon's user write access to {folder} (chown/chmod) and restart",
        )
    return StateError(str(folder), f"cannot {doing}: {exc.strerror or exc}", "check the disk (dmesg) and restart")


def corrupt_error(path: Path, detail: str, cls: type[_E]) -> _E:
    return cls(
        str(path),
        f"is corrupt or truncated ({detail})",
        f"stop the daemon, move the file aside (mv {path} {path}.bad; `sqlite3 {path}.bad .recover` may save "
        "what it holds) and start again",
    )


def sqlite_state_error(path: Path, exc: BaseException, *, doing: str, cls: type[_E]) -> _E:
    """Translate an ``sqlite3.Error``/``OSError`` raised while using the SQLite store at ``path``
    into one line: the file, what is wrong, what to do."""
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    code = getattr(exc, "errno", None)
    folder = path.parent
    detail = str(exc) or type(exc).__name__
    if name.startswith("SQLITE_NOTADB"):
        return cls(
            str(path),
            "is not an SQLite database (overwritten, or another kind of file)",
            f"stop the daemon, move the file aside (mv {path} {path}.bad) and start again",
        )
    if name.startswith("SQLITE_CORRUPT"):
        return corrupt_error(path, detail, cls)
    if name.startswith("SQLITE_FULL") or code == errno.ENOSPC:
        return cls(
            str(path),
            f"cannot {doing}: no space left on the device",
            f"free space on the filesystem of {folder} (df {folder}); what is on disk stays there",
        )
    if code == errno.EROFS or _read_only_fs(folder):
        return cls(
            str(path),
            f"cannot {doing}: the filesystem of {folder} is read-only",
            "remount it read-write (a filesystem goes read-only after disk errors: check dmesg) and restart",
        )
    writable = os.access(folder, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))
    if (
        name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH"))
        or code in (errno.EACCES, errno.EPERM)
        or not writable
    ):
        return cls(
            str(path),
            f"cannot {doing}: {folder} or the file is not writable ({detail})",
            f"give the daemon's user write access to {folder} and the files in it (chown/chmod) and restart",
        )
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return cls(
            str(path),
            f"cannot {doing}: locked by another process",
            "stop the other process using this unit's state (one daemon per unit)",
        )
    if name.startswith("SQLITE_IOERR") or isinstance(exc, OSError):
        return cls(str(path), f"cannot {doing}: I/O error ({detail})", "check the disk (dmesg, smartctl) and restart")
    return cls(str(path), f"cannot {doing} ({name or type(exc).__name__}: {detail})", "see docs/reliability.md")


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False
