"""Local control socket between the daemons and the technician's CLI.

Wire format: a Unix stream socket carrying JSON Lines — one request object per line, one
response object per line, in order, on the same connection. Every request has ``"op"``;
every response has ``"ok"``; failures carry ``"error"`` (a sentence for a human). A request
may carry ``"id"``; the response echoes it.

Access control is the file system's: the socket is created with mode 0660 (owner and the
service group), inside ``/run/portlane`` (``RuntimeDirectory=``, mode 0750). A technician
in group ``portlane`` can use it; nobody else can connect. The kernel-reported peer
(``SO_PEERCRED``: pid, uid, gid, and the user name of the uid) replaces whatever ``"peer"`` the
request carried, and while the handler runs every audit entry it causes carries it as
``data.peer`` (:func:`portlane.edge.trust.audit.audit_context`): the audit log records who
really asked, next to the operator name they typed. Handlers read it with :func:`peer_of`.

Start-up safety: an existing socket file nobody listens on (left by a crash) is replaced;
one somebody *does* listen on is left alone and start-up fails — two daemons must never
share one socket. A non-socket file at the path is never deleted. The socket is bound
under a temporary name, given its mode, then renamed over the final path, so it is never
reachable with the wrong permissions.

The daemon side (``edge/daemon.py``)::

    handlers = {"status": on_status, "gate": on_gate, ...}   # async (request) -> dict
    async with ControlServer(default_path(), handlers):
        await stop.wait()

A handler that raises answers ``{"ok": false, "error": "..."}`` and the server carries on.
The built-in op ``ping`` answers ``{"ok": true, "pid": ..., "ops": [...]}``.

Where a daemon listens (:func:`default_path`): ``$PORTLANE_CONTROL`` when set (the unit files
set it), else its own name in the run directory — ``lane-<id>.sock``, ``scanner-<id>.sock``,
``recognition.sock`` in ``$PORTLANE_RUN_DIR`` (default ``/run/portlane``) — so a daemon started
by hand listens where the CLI looks; the CLI finds them all with :func:`discover`.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import logging
import os
import pwd
import socket
import stat
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from portlane.drivers.errors import DeviceError
from portlane.edge.errors import ControlError, DaemonUnreachableError, PortlaneError
from portlane.edge.trust.audit import audit_context

__all__ = [
    "DEFAULT_PATH",
    "RUN_DIR",
    "ControlServer",
    "Peer",
    "default_path",
    "discover",
    "peer_of",
    "request",
    "request_sync",
    "run_directory",
]

log = logging.getLogger(__name__)

RUN_DIR = "/run/portlane"
DEFAULT_PATH = f"{RUN_DIR}/control.sock"

#: Longest request or response line. A site configuration (config / config_apply) is the
#: largest thing that travels here: tens of kB for 16 lanes.
MAX_LINE = 4 * 1024 * 1024
#: Client deadline for one answer. ``config_apply`` reconnects the broker and the devices
#: with the new configuration before it answers, which takes a few device timeouts.
REQUEST_TIMEOUT_S = 60.0
#: Deadline for a handler; longer ones are answered with an error (the CLI has given up).
HANDLER_TIMEOUT_S = 90.0
#: How long start-up waits when probing an existing socket file for a live listener.
PROBE_TIMEOUT_S = 0.5
#: How long close() lets a running handler finish before cancelling it.
CLOSE_GRACE_S = 2.0
_AF_UNIX_PATH_MAX = 107

Request = dict[str, Any]
Response = dict[str, Any]
Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Peer:
    """The process at the other end of a control connection, as the kernel reports it."""

    pid: int
    uid: int
    gid: int
    user: str  # the uid's login name, or the uid as text when it has none

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def peer_of(req: Mapping[str, Any]) -> Peer | None:
    """The kernel-reported peer of a request a handler received (None off Linux)."""
    p = req.get("peer")
    if not isinstance(p, Mapping):
        return None
    try:
        return Peer(int(p["pid"]), int(p["uid"]), int(p["gid"]), str(p["user"]))
    except (KeyError, TypeError, ValueError):
        return None


def run_directory() -> str:
    """The directory of the control sockets: ``$PORTLANE_RUN_DIR``, else ``/run/portlane``."""
    return os.environ.get("PORTLANE_RUN_DIR") or RUN_DIR


def default_path(name: str = "control") -> str:
    """Where a daemon called ``name`` (``lane-c1``, ``scanner-xray-1``, ``recognition``)
    listens: ``$PORTLANE_CONTROL``, else ``<run dir>/<name>.sock``."""
    return os.environ.get("PORTLANE_CONTROL") or str(Path(run_directory()) / f"{name}.sock")


def discover(run_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Control sockets of the daemons on this host, sorted: every ``*.sock`` in the run dir.

    ``$PORTLANE_CONTROL``, when set, is the only answer (the CLI inside a unit's environment
    or a developer's shell)."""
    env = os.environ.get("PORTLANE_CONTROL")
    if env and run_dir is None:
        return [env]
    d = Path(run_dir or run_directory())
    try:
        entries = sorted(d.iterdir())
    except OSError:
        return []
    return [str(p) for p in entries if p.suffix == ".sock" and _is_socket(p)]


def _is_socket(p: Path) -> bool:
    try:
        return stat.S_ISSOCK(p.lstat().st_mode)
    except OSError:
        return False


def _error(message: str, **extra: Any) -> Response:
    return {"ok": False, "error": message, **extra}


class ControlServer:
    """JSON Lines server on a Unix socket dispatching ``op`` to ``handlers``.

    Requests on one connection are answered one at a time, in order; connections are
    independent. Use as an async context manager, or :meth:`start` / :meth:`close`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        handlers: Mapping[str, Handler],
        *,
        mode: int = 0o660,
        group: str | int | None = None,
        handler_timeout_s: float = HANDLER_TIMEOUT_S,
    ) -> None:
        self.path = Path(path)
        if "ping" in handlers:
            raise ValueError("'ping' is built in")
        self.handlers = dict(handlers)
        self.mode = mode
        self.group = group
        self.handler_timeout_s = handler_timeout_s
        self._server: asyncio.Server | None = None
        self._inode: int | None = None
        self._conns: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._closed = False

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._server is not None or self._closed:
            raise RuntimeError("ControlServer can be started once")
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        if len(os.fsencode(tmp)) > _AF_UNIX_PATH_MAX:
            raise ControlError(f"control socket path too long for AF_UNIX: {self.path}")
        try:
            self.path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        except OSError as exc:
            raise ControlError(
                f"cannot create the control socket's directory {self.path.parent}: {exc.strerror or exc}; "
                "set PORTLANE_RUN_DIR to a directory this user may write (or PORTLANE_CONTROL to a socket path)"
            ) from exc
        await asyncio.get_running_loop().run_in_executor(None, self._clear_stale)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            try:
                sock.bind(str(tmp))
            except OSError as exc:
                raise ControlError(
                    f"cannot create the control socket {self.path}: {exc.strerror or exc}; "
                    "set PORTLANE_RUN_DIR to a directory this user may write (or PORTLANE_CONTROL)"
                ) from exc
            os.chmod(tmp, self.mode)
            if self.group is not None:
                gid = self.group if isinstance(self.group, int) else grp.getgrnam(self.group).gr_gid
                os.chown(tmp, -1, gid)
            sock.listen(16)
            os.rename(tmp, self.path)  # atomic: the final name only ever has the final mode
            self._inode = self.path.lstat().st_ino
            sock.setblocking(False)
            self._server = await asyncio.start_unix_server(self._on_client, sock=sock, limit=MAX_LINE)
        except BaseException:
            sock.close()
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        log.info("control socket listening", extra={"path": str(self.path)})

    def _clear_stale(self) -> None:
        try:
            st = self.path.lstat()
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlError(f"{self.path} exists and is not a socket; not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(PROBE_TIMEOUT_S)
        try:
            probe.connect(str(self.path))
        except (ConnectionRefusedError, FileNotFoundError):
            log.info("replacing stale control socket", extra={"path": str(self.path)})
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        except OSError as exc:
            raise ControlError(f"cannot probe existing socket {self.path}: {exc}") from exc
        finally:
            probe.close()
        raise ControlError(f"another process is listening on {self.path}; is the daemon already running?")

    async def close(self) -> None:
        """Stop listening, end open connections, remove the socket file if it is still ours."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        # Closing the transport ends each connection's readline with EOF; a handler still
        # running gets CLOSE_GRACE_S to answer (into a closed socket) before it is cancelled.
        for writer in self._conns.values():
            writer.close()
        if self._conns:
            _done, pending = await asyncio.wait(list(self._conns), timeout=CLOSE_GRACE_S)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._server is not None:
            await self._server.wait_closed()
        try:
            if self._inode is not None and self.path.lstat().st_ino == self._inode:
                self.path.unlink()
        except FileNotFoundError:
            pass

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns[task] = writer
        peer = _peer_credentials(writer)
        try:
            while True:
                try:
                    line = await reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    writer.write(_encode(_error(f"request longer than {MAX_LINE} bytes")))
                    await writer.drain()
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                response = await self._answer(line, peer)
                writer.write(_encode(response))
                await writer.drain()
        except (ConnectionError, BrokenPipeError):
            pass
        finally:
            self._conns.pop(task, None)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, line: bytes, peer: Peer | None) -> Response:
        try:
            req = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(f"request is not JSON: {exc}")
        if not isinstance(req, dict):
            return _error("request must be a JSON object")
        op = req.get("op")
        rid = req.get("id")
        extra = {"id": rid} if rid is not None else {}
        if op == "ping":
            return {"ok": True, "pid": os.getpid(), "ops": sorted(self.handlers), **extra}
        handler = self.handlers.get(op) if isinstance(op, str) else None
        if handler is None:
            known = ", ".join(sorted(self.handlers))
            return _error(f"unknown op {op!r}; this daemon knows: {known}", **extra)
        req.pop("peer", None)  # only the kernel says who is asking
        if peer is not None:
            req["peer"] = peer.as_dict()
        try:
            with audit_context(**({"peer": peer.as_dict()} if peer is not None else {})):
                async with asyncio.timeout(self.handler_timeout_s):
                    resp = await handler(req)
        except TimeoutError:
            log.error("control op timed out", extra={"op": op})
            return _error(f"{op}: no answer within {self.handler_timeout_s:g} s", **extra)
        except (ValueError, PortlaneError, DeviceError) as exc:
            # How handlers refuse a request (another lane, no operator, bad arguments), and a
            # device that refuses or does not answer: answered in one line and logged in one —
            # not a traceback, which is for the daemon's own bugs.
            log.warning("control op refused: %s", exc, extra={"op": op})
            return _error(f"refused: {exc}", **extra)
        except Exception as exc:
            # A handler bug must not take the control socket (or the lane) down.
            log.exception("control op failed", extra={"op": op})
            return _error(f"{op}: {type(exc).__name__}: {exc}", **extra)
        if not isinstance(resp, dict):
            log.error("control handler returned %s, not a dict", type(resp).__name__, extra={"op": op})
            return _error(f"{op}: daemon bug: handler returned {type(resp).__name__}", **extra)
        out = {"ok": True, **resp, **extra}
        if not out["ok"] and "error" not in out:
            out["error"] = f"{op} failed"
        return out


def _encode(obj: Response) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, default=str, separators=(",", ":")) + "\n").encode()


def _peer_credentials(writer: asyncio.StreamWriter) -> Peer | None:
    sock = writer.get_extra_info("socket")
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid, uid, gid = struct.unpack("3i", raw)
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    return Peer(pid, uid, gid, user)


# --------------------------------------------------------------------------- client


async def request(
    path: str | os.PathLike[str], op: str, *, timeout_s: float = REQUEST_TIMEOUT_S, **fields: Any
) -> Response:
    """Send one request and return the daemon's answer (``ok`` may be false).

    Raises :class:`DaemonUnreachableError` when nothing listens at ``path`` (or we may not
    connect), :class:`ControlError` when the answer is not a JSON object.
    """
    try:
        async with asyncio.timeout(timeout_s):
            try:
                reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_LINE)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise DaemonUnreachableError(f"no daemon at {path}: {exc.strerror or exc}") from exc
            except PermissionError as exc:
                raise DaemonUnreachableError(f"no permission to use {path}; is this user in group 'portlane'?") from exc
            except OSError as exc:
                raise DaemonUnreachableError(f"cannot connect to {path}: {exc}") from exc
            try:
                writer.write(_encode({"op": op, **fields}))
                await writer.drain()
                line = await reader.readline()
            except ConnectionError as exc:
                raise DaemonUnreachableError(f"daemon at {path} dropped the connection: {exc}") from exc
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
    except TimeoutError as exc:
        raise DaemonUnreachableError(f"daemon at {path} did not answer {op!r} within {timeout_s:g} s") from exc
    if not line:
        raise DaemonUnreachableError(f"daemon at {path} closed the connection without answering")
    try:
        resp = json.loads(line)
    except ValueError as exc:
        raise ControlError(f"daemon at {path} answered with invalid JSON: {exc}") from exc
    if not isinstance(resp, dict) or "ok" not in resp:
        raise ControlError(f"daemon at {path} answered without 'ok': {resp!r}")
    return resp


def request_sync(
    path: str | os.PathLike[str], op: str, *, timeout_s: float = REQUEST_TIMEOUT_S, **fields: Any
) -> Response:
    """:func:`request` for synchronous callers (the CLI). Not for use inside an event loop."""
    return asyncio.run(request(path, op, timeout_s=timeout_s, **fields))
