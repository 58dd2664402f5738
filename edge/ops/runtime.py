"""Process runtime for the daemons: systemd notify and watchdog, signals, logging.

No dependency on libsystemd: the notify protocol is one datagram per message to the
``AF_UNIX`` socket named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract
namespace), the payload being newline-separated ``KEY=VALUE`` assignments
(``READY=1``, ``STATUS=...``, ``STOPPING=1``, ``WATCHDOG=1``). Outside systemd the
variable is unset and every call is a cheap no-op.

How a daemon uses this module (the contract with ``edge/daemon.py``)::

    setup_logging()                              # once, before anything logs
    stop = asyncio.Event()
    install_signal_handlers(stop)                # SIGTERM / SIGINT set ``stop``
    notifier = Notifier.from_env()
    watchdog = Watchdog(notifier)                # reads WATCHDOG_USEC / WATCHDOG_PID
    main_hb = watchdog.heartbeat("main")         # main loop calls main_hb.beat() each turn
    gate_hb = watchdog.heartbeat("gate")         # a supervisor calls gate_hb.beat() per poll
    async with asyncio.TaskGroup() as tg:
        tg.create_task(watchdog.run(stop), name="watchdog")
        ...                                      # start devices, control socket, metrics
        notifier.ready("lane c1: serving")       # READY=1 + STATUS=
        await stop.wait()
        notifier.stopping("flushing outbox")     # STOPPING=1 before the slow part of shutdown

Watchdog rule: every ``WATCHDOG_USEC / 2`` the watchdog looks at each registered
liveness check (a callable returning a monotonically increasing counter). It sends
``WATCHDOG=1`` only if *every* counter has advanced since the previous look. A counter that
did not advance means that task is hung (a deadlocked await, a device supervisor stuck
past its deadlines); we then withhold the ping, and systemd kills and restarts the service
once ``WatchdogSec`` passes without one. One slow turn costs one skipped ping, not a restart:
systemd needs two consecutive misses. A blocked event loop needs no check at all — the
watchdog task itself cannot run, so it stops pinging by construction.

Hence each heartbeat must beat at least once per half watchdog interval even when idle:
wait for work with a timeout (``asyncio.timeout``) and beat on every turn.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

__all__ = [
    "Heartbeat",
    "JsonFormatter",
    "KeyValueFormatter",
    "Notifier",
    "Watchdog",
    "install_signal_handlers",
    "notify",
    "setup_logging",
    "watchdog_interval",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- sd_notify


def _notify_address(value: str) -> str | None:
    """``$NOTIFY_SOCKET`` → socket address for ``sendto`` (abstract names start with NUL)."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    # vsock:... and other exotic schemes are not used on a lane controller.
    return None


class Notifier:
    """Client of the systemd notify socket. Every method is a no-op when not under systemd.

    Send failures are logged once and otherwise ignored: the service manager going away
    must never take a lane down with it.
    """

    def __init__(self, address: str | None) -> None:
        self._address = _notify_address(address or "")
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_env(cls, *, unset: bool = False) -> Notifier:
        """Build from ``$NOTIFY_SOCKET``; ``unset=True`` removes it from the environment so that
        child processes do not talk to systemd in our name."""
        value = os.environ.get("NOTIFY_SOCKET", "")
        if unset:
            os.environ.pop("NOTIFY_SOCKET", None)
        return cls(value)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments in one datagram. True when it was sent."""
        if self._address is None:
            return False
        payload = "\n".join(assignments).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload, self._address)
        except OSError as exc:
            if not self._warned:
                log.warning("cannot notify the service manager: %s", exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        # STATUS is one line in systemctl status; newlines would end the assignment.
        return self.send(f"STATUS={text.replace(chr(10), ' ')}")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        """Before a reload (SIGHUP); ``ready()`` when it is done."""
        return self.send("RELOADING=1")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def notify(*assignments: str) -> bool:
    """One-shot ``sd_notify``: e.g. ``notify("READY=1", "STATUS=serving")``."""
    with Notifier.from_env() as n:
        return n.send(*assignments)


def watchdog_interval(environ: dict[str, str] | os._Environ[str] | None = None) -> float | None:
    """``WatchdogSec`` in seconds from ``$WATCHDOG_USEC``, or None when the watchdog is off.

    ``$WATCHDOG_PID``, when set, names the process the watchdog is meant for; another
    process (a child that inherited the environment) gets None.
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec:
        return None
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 if value > 0 else None


# --------------------------------------------------------------------------- watchdog


class Heartbeat:
    """A liveness counter: the owning task calls :meth:`beat`; the watchdog calls the object."""

    __slots__ = ("count", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0

    def beat(self) -> None:
        self.count += 1

    def __call__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"Heartbeat({self.name!r}, count={self.count})"


LivenessCheck = Callable[[], int]


class Watchdog:
    """Pings systemd at half the watchdog interval while every liveness check advances.

    ``interval_s`` overrides ``$WATCHDOG_USEC`` (tests); with neither, :meth:`run` just waits
    for ``stop`` so it can sit in a task group unconditionally.
    """

    def __init__(self, notifier: Notifier, *, interval_s: float | None = None) -> None:
        self._notifier = notifier
        self.interval_s = interval_s if interval_s is not None else watchdog_interval()
        self._checks: dict[str, LivenessCheck] = {}
        self._last: dict[str, int] = {}
        self.stalled: tuple[str, ...] = ()
        self.pings = 0

    @property
    def enabled(self) -> bool:
        return self.interval_s is not None and self._notifier.enabled

    def register(self, name: str, check: LivenessCheck) -> None:
        """Add a liveness check; it must advance at least once per ``interval_s / 2``."""
        if name in self._checks:
            raise ValueError(f"liveness check {name!r} is already registered")
        self._checks[name] = check
        self._last[name] = check()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._checks)

    def unregister(self, name: str) -> None:
        """Remove a check (a device taken out of the configuration, a finished task)."""
        self._checks.pop(name, None)
        self._last.pop(name, None)

    def heartbeat(self, name: str) -> Heartbeat:
        """Create, register and return a :class:`Heartbeat` called ``name``."""
        hb = Heartbeat(name)
        self.register(name, hb)
        return hb

    def check(self) -> tuple[str, ...]:
        """Sample every check; return the names that did not advance since the last sample."""
        stuck = []
        for name, fn in list(self._checks.items()):
            try:
                value = fn()
            except Exception:  # a broken check counts as hung, never as alive
                log.exception("liveness check %s raised", name)
                stuck.append(name)
                continue
            if value <= self._last[name]:
                stuck.append(name)
            self._last[name] = value
        return tuple(stuck)

    def tick(self) -> bool:
        """One watchdog period: sample the checks and ping if all advanced. True if pinged."""
        stuck = self.check()
        if stuck != self.stalled:
            if stuck:
                log.error(
                    "watchdog: %s not advancing; withholding WATCHDOG=1",
                    ", ".join(stuck),
                    extra={"stalled": ",".join(stuck)},
                )
                self._notifier.status(f"hung: {', '.join(stuck)}")
            else:
                log.info("watchdog: all liveness checks advancing again")
            self.stalled = stuck
        if stuck:
            return False
        self.pings += 1
        return self._notifier.watchdog()

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every ``interval_s / 2`` until ``stop`` is set."""
        if not self.enabled:
            await stop.wait()
            return
        assert self.interval_s is not None
        period = self.interval_s / 2
        # A first ping right away: systemd starts counting at READY=1 / exec, and start-up
        # may have eaten part of the interval already.
        self._notifier.watchdog()
        while not stop.is_set():
            try:
                async with asyncio.timeout(period):
                    await stop.wait()
            except TimeoutError:
                self.tick()


# --------------------------------------------------------------------------- signals


def install_signal_handlers(
    stop: asyncio.Event,
    *,
    loop: asyncio.AbstractEventLoop | None = None,
    reload: Callable[[], None] | None = None,
    on_signal: Callable[[signal.Signals], None] | None = None,
) -> Callable[[], None]:
    """SIGTERM and SIGINT set ``stop`` (graceful shutdown: finish the frame, flush the
    outbox, publish offline). A second signal while stopping is logged and ignored —
    systemd escalates to SIGKILL after ``TimeoutStopSec``. With ``reload``, SIGHUP calls it
    (``systemctl reload``: ``ExecReload=kill -HUP $MAINPID``). ``on_signal`` is told which
    signal started the stop (a daemon exits 128 + its number: 130, 143). Returns a function
    that removes the handlers. Must be called from the loop's thread.
    """
    loop = loop or asyncio.get_running_loop()

    def _on_signal(signum: int) -> None:
        sig = signal.Signals(signum)
        name = sig.name
        if stop.is_set():
            log.warning("%s while already stopping; still shutting down", name)
            return
        log.info("%s received; stopping", name, extra={"signal": name})
        if on_signal is not None:
            on_signal(sig)
        stop.set()

    sigs = [signal.SIGTERM, signal.SIGINT]
    for sig in sigs:
        loop.add_signal_handler(sig, _on_signal, int(sig))
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reload)
        sigs.append(signal.SIGHUP)

    def _remove() -> None:
        for sig in sigs:
            loop.remove_signal_handler(sig)

    return _remove


# --------------------------------------------------------------------------- logging

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is a field.
_STD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

# journald understands "<N>" syslog priority prefixes on stderr (SyslogLevelPrefix=yes).
_SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def _priority(levelno: int) -> int:
    for level, prio in _SYSLOG_PRIORITY.items():
        if levelno >= level:
            return prio
    return 7


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STD_ATTRS and not k.startswith("_")}


def _kv_value(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return json.dumps(text, ensure_ascii=False)
    return text


class KeyValueFormatter(logging.Formatter):
    """``level=info logger=portlane.edge.lane.daemon msg="gate opened" lane=c1 device=gate``.

    ``extra={...}`` fields of the call become ``key=value`` pairs. With ``journal=True`` the
    timestamp is left out (the journal stamps each line) and the line starts with the
    syslog priority so ``journalctl -p warning`` works.
    """

    def __init__(self, *, journal: bool = False) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        parts = []
        if not self.journal:
            parts.append(f"ts={self.formatTime(record, '%Y-%m-%dT%H:%M:%S')}.{int(record.msecs):03d}")
        parts += [f"level={record.levelname.lower()}", f"logger={record.name}", f"msg={_kv_value(record.getMessage())}"]
        parts += [f"{k}={_kv_value(v)}" for k, v in _fields(record).items()]
        if record.exc_info:
            parts.append(f"exc={_kv_value(self.formatException(record.exc_info))}")
        line = " ".join(parts)
        return f"<{_priority(record.levelno)}>{line}" if self.journal else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, extra fields, ``exc``."""

    def __init__(self, *, journal: bool = False) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        obj.update(_fields(record))
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        line = json.dumps(obj, ensure_ascii=False, default=str)
        return f"<{_priority(record.levelno)}>{line}" if self.journal else line


def setup_logging(
    *,
    level: int | str = logging.INFO,
    fmt: str = "kv",
    stream: TextIO | None = None,
    journal: bool | None = None,
) -> logging.Handler:
    """Configure the root logger for a daemon: one handler on stderr, structured lines.

    ``fmt`` is ``"kv"`` (key=value, readable in ``journalctl``) or ``"json"``. ``journal``
    defaults to whether stderr is connected to the journal (``$JOURNAL_STREAM``). There is
    no file logging and no rotation: the journal does both.
    """
    stream = stream or sys.stderr
    if journal is None:
        journal = _stderr_is_journal(stream)
    formatter: logging.Formatter
    if fmt == "json":
        formatter = JsonFormatter(journal=journal)
    elif fmt == "kv":
        formatter = KeyValueFormatter(journal=journal)
    else:
        raise ValueError(f"unknown log format {fmt!r}; use 'kv' or 'json'")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def _stderr_is_journal(stream: TextIO) -> bool:
    """True when ``$JOURNAL_STREAM`` (``dev:inode``) names the stream's file."""
    value = os.environ.get("JOURNAL_STREAM", "")
    if not value:
        return False
    try:
        dev, ino = (int(x) for x in value.split(":", 1))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)
