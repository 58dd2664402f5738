"""edge/runtime.py: sd_notify, the heartbeat watchdog, signals, structured logging.

The last test is a small stand-in for systemd's service manager (notify socket with
sender credentials, NotifyAccess=main, WatchdogSec, Restart=on-failure) supervising a real
child process that uses edge/runtime.py and whose main loop hangs on a trigger file.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from portlane.edge.ops import runtime
from portlane.edge.ops.runtime import (
    Heartbeat,
    JsonFormatter,
    KeyValueFormatter,
    Notifier,
    Watchdog,
    install_signal_handlers,
    watchdog_interval,
)

RECV_TIMEOUT_S = 30.0  # generous bound for a loaded CI machine; never reached when things work


@pytest.fixture
def notify_sock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(RECV_TIMEOUT_S)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def _recv(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_notifier_sends_each_state_as_one_datagram(notify_sock: socket.socket) -> None:
    with Notifier.from_env() as n:
        assert n.enabled
        assert n.ready("lane c1: serving")
        assert _recv(notify_sock) == ["READY=1", "STATUS=lane c1: serving"]
        assert n.watchdog()
        assert _recv(notify_sock) == ["WATCHDOG=1"]
        assert n.status("two\nlines")
        assert _recv(notify_sock) == ["STATUS=two lines"]
        assert n.stopping()
        assert _recv(notify_sock) == ["STOPPING=1"]
    assert runtime.notify("STATUS=one-shot")
    assert _recv(notify_sock) == ["STATUS=one-shot"]


def test_notifier_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"portlane-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(RECV_TIMEOUT_S)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        with Notifier.from_env() as n:
            assert n.ready()
        assert _recv(sock) == ["READY=1"]
    finally:
        sock.close()


def test_notifier_outside_systemd_is_a_no_op(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier.from_env()
    assert not n.enabled and not n.ready() and not n.watchdog()
    # a socket path that does not exist: logged, not raised
    gone = Notifier(str(tmp_path / "nothing.sock"))
    assert gone.enabled and not gone.ready()
    gone.close()


def test_from_env_unset_hides_the_socket_from_children(notify_sock: socket.socket) -> None:
    n = Notifier.from_env(unset=True)
    assert "NOTIFY_SOCKET" not in os.environ
    assert n.ready()
    assert _recv(notify_sock) == ["READY=1"]
    n.close()


def test_watchdog_interval_from_environment() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "200000"}) == pytest.approx(0.2)
    assert watchdog_interval({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}) == 0.2
    assert watchdog_interval({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "junk"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None


def test_watchdog_pings_only_while_every_heartbeat_advances(notify_sock: socket.socket) -> None:
    n = Notifier.from_env()
    wd = Watchdog(n, interval_s=1.0)
    main, gate = wd.heartbeat("main"), wd.heartbeat("gate")
    main.beat()
    gate.beat()
    assert wd.tick()
    assert _recv(notify_sock) == ["WATCHDOG=1"]

    main.beat()  # the gate supervisor is stuck
    assert not wd.tick()
    assert wd.stalled == ("gate",)
    assert _recv(notify_sock) == ["STATUS=hung: gate"]  # and no WATCHDOG=1 follows it
    main.beat()
    assert not wd.tick()  # still stuck: still no ping, and no repeated STATUS either

    main.beat()
    gate.beat()
    assert wd.tick()
    assert wd.stalled == ()
    assert _recv(notify_sock) == ["WATCHDOG=1"]
    assert wd.pings == 2
    n.close()


def test_watchdog_treats_a_raising_check_as_hung(notify_sock: socket.socket) -> None:
    n = Notifier.from_env()
    wd = Watchdog(n, interval_s=1.0)
    state = {"n": 0}

    def check() -> int:
        state["n"] += 1
        if state["n"] > 1:
            raise RuntimeError("supervisor gone")
        return 0

    wd.register("rfid", check)
    with pytest.raises(ValueError):
        wd.register("rfid", check)
    assert not wd.tick()
    assert wd.stalled == ("rfid",)
    wd.unregister("rfid")
    assert wd.tick()  # nothing left to watch
    n.close()


def test_heartbeat_is_a_counter() -> None:
    hb = Heartbeat("main")
    assert hb() == 0
    hb.beat()
    hb.beat()
    assert hb() == 2 and "main" in repr(hb)


async def test_watchdog_task_pings_then_withholds_when_a_loop_stops(notify_sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    notify_sock.setblocking(False)
    n = Notifier.from_env()
    wd = Watchdog(n, interval_s=0.1)  # pings every 50 ms
    hb = wd.heartbeat("main")
    stop, beating = asyncio.Event(), asyncio.Event()
    beating.set()

    async def main_loop() -> None:
        while not stop.is_set():
            await beating.wait()
            hb.beat()
            await asyncio.sleep(0.005)  # the stand-in loop's work period, not synchronisation

    async def recv() -> list[str]:
        async with asyncio.timeout(RECV_TIMEOUT_S):
            return (await loop.sock_recv(notify_sock, 4096)).decode().split("\n")

    async with asyncio.TaskGroup() as tg:
        tg.create_task(wd.run(stop), name="watchdog")
        tg.create_task(main_loop(), name="main")
        assert await recv() == ["WATCHDOG=1"]  # the immediate first ping
        assert await recv() == ["WATCHDOG=1"]  # a periodic one
        beating.clear()
        msgs = [await recv()]
        while msgs[-1] == ["WATCHDOG=1"]:  # at most one ping was already in flight
            msgs.append(await recv())
        assert msgs[-1] == ["STATUS=hung: main"]
        assert wd.stalled == ("main",)
        beating.set()
        assert await recv() == ["WATCHDOG=1"]
        stop.set()
        beating.set()
    n.close()


async def test_watchdog_run_without_systemd_just_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    wd = Watchdog(Notifier.from_env())
    assert not wd.enabled
    stop = asyncio.Event()
    task = asyncio.create_task(wd.run(stop))
    stop.set()
    async with asyncio.timeout(RECV_TIMEOUT_S):
        await task
    assert wd.pings == 0


async def test_sigterm_sets_stop() -> None:
    stop = asyncio.Event()
    remove = install_signal_handlers(stop)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        async with asyncio.timeout(RECV_TIMEOUT_S):
            await stop.wait()
        os.kill(os.getpid(), signal.SIGINT)  # a second signal is only logged
        await asyncio.sleep(0)
    finally:
        remove()
    assert stop.is_set()


def _record(msg: str, **extra: object) -> logging.LogRecord:
    rec = logging.getLogger("portlane.edge.lane.daemon").makeRecord(
        "portlane.edge.lane.daemon", logging.WARNING, __file__, 1, msg, (), None, extra=extra
    )
    return rec


def test_key_value_formatter_fields_and_journal_priority() -> None:
    line = KeyValueFormatter().format(_record("gate did not open", lane="c1", device="gate", code=7))
    assert line.startswith("ts=")
    expected = 'level=warning logger=portlane.edge.lane.daemon msg="gate did not open" lane=c1 device=gate code=7'
    assert expected in line
    journal = KeyValueFormatter(journal=True).format(_record("x", lane="c1"))
    assert journal == "<4>level=warning logger=portlane.edge.lane.daemon msg=x lane=c1"


def test_json_formatter() -> None:
    obj = json.loads(JsonFormatter().format(_record("opened %s", lane="c1")))
    assert obj["level"] == "warning" and obj["lane"] == "c1" and obj["logger"] == "portlane.edge.lane.daemon"
    assert JsonFormatter(journal=True).format(_record("x")).startswith("<4>{")


def test_setup_logging_replaces_root_handlers() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    buf = io.StringIO()
    try:
        runtime.setup_logging(level="DEBUG", fmt="json", stream=buf)
        logging.getLogger("portlane.test").debug("hello", extra={"lane": "c2"})
        assert json.loads(buf.getvalue())["lane"] == "c2"
        with pytest.raises(ValueError):
            runtime.setup_logging(fmt="xml", stream=buf)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


# --------------------------------------------------------------------------- the restart test

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from portlane.edge.ops.runtime import Notifier, Watchdog, install_signal_handlers, setup_logging

    TRIGGER = Path(sys.argv[1])

    async def main() -> int:
        setup_logging(level="INFO")
        stop = asyncio.Event()
        install_signal_handlers(stop)
        notifier = Notifier.from_env()
        watchdog = Watchdog(notifier)
        hb = watchdog.heartbeat("main")

        async def main_loop() -> None:
            while not stop.is_set():
                hb.beat()
                if TRIGGER.exists():
                    TRIGGER.unlink()
                    await asyncio.Event().wait()  # hung: an await that never completes
                try:
                    async with asyncio.timeout(0.02):
                        await stop.wait()
                except TimeoutError:
                    pass

        async with asyncio.TaskGroup() as tg:
            tg.create_task(watchdog.run(stop), name="watchdog")
            tg.create_task(main_loop(), name="main")
            notifier.ready("serving")
            await stop.wait()
            notifier.stopping()
        return 0

    sys.exit(asyncio.run(main()))
    """
)


class FakeServiceManager:
    """Just enough of systemd: Type=notify, NotifyAccess=main, WatchdogSec, Restart=on-failure."""

    def __init__(self, tmp: Path, argv: list[str], watchdog_s: float) -> None:
        self.argv = argv
        self.watchdog_s = watchdog_s
        self.path = tmp / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: list[tuple[int, str]] = []  # (pid, message) accepted from the main pid
        self.restarts = 0

    def start(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ, NOTIFY_SOCKET=str(self.path), WATCHDOG_USEC=str(int(self.watchdog_s * 1e6)))
        env.pop("WATCHDOG_PID", None)
        self.proc = subprocess.Popen(self.argv, env=env, stderr=subprocess.DEVNULL)
        return self.proc

    def _recv(self, timeout: float) -> tuple[int, list[str]] | None:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data, anc, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
        except TimeoutError:
            return None
        pid = -1
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, _uid, _gid = struct.unpack("3i", payload[: struct.calcsize("3i")])
        return pid, data.decode().split("\n")

    def run_until(self, predicate, deadline_s: float = 60.0) -> None:
        """Process notifications, enforce the watchdog, restart on failure, until predicate()."""
        end = time.monotonic() + deadline_s
        last_ping: float | None = None
        while not predicate():
            now = time.monotonic()
            assert now < end, f"fake systemd gave up; log={self.log}"
            assert self.proc is not None
            wait = end - now if last_ping is None else min(end - now, last_ping + self.watchdog_s - now)
            if last_ping is not None and now >= last_ping + self.watchdog_s:
                # Watchdog timeout: systemd sends WatchdogSignal= (SIGABRT), then restarts on failure.
                self.log.append((self.proc.pid, "WATCHDOG-TIMEOUT"))
                alive_when_killed = self.proc.poll() is None
                self.proc.send_signal(signal.SIGABRT)
                rc = self.proc.wait(timeout=RECV_TIMEOUT_S)
                self.log.append((self.proc.pid, f"EXIT={rc} alive={alive_when_killed}"))
                self.restarts += 1
                self.start()
                last_ping = None
                continue
            got = self._recv(wait)
            if got is None:
                continue
            pid, lines = got
            if pid != self.proc.pid:  # NotifyAccess=main
                continue
            for line in lines:
                self.log.append((pid, line))
                if line in ("READY=1", "WATCHDOG=1"):
                    last_ping = time.monotonic()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()


def test_fake_systemd_restarts_a_daemon_whose_loop_hangs(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    trigger = tmp_path / "hang"
    # WatchdogSec=1: the child pings every 0.5 s. The fake manager times the pings as it reads
    # them, so with 0.2 s a test process descheduled for 0.2 s on a loaded machine killed a
    # healthy child whose ping sat unread in the socket.
    mgr = FakeServiceManager(tmp_path, [sys.executable, str(script), str(trigger)], watchdog_s=1.0)
    try:
        first = mgr.start()

        def count(msg: str, pid: int | None = None) -> int:
            return sum(1 for p, m in mgr.log if m == msg and (pid is None or p == pid))

        mgr.run_until(lambda: count("READY=1", first.pid) == 1 and count("WATCHDOG=1", first.pid) >= 3)
        trigger.touch()
        mgr.run_until(lambda: mgr.restarts == 1 and count("READY=1") == 2)
        second = mgr.proc
        assert second is not None and second.pid != first.pid
        assert not trigger.exists()  # the first instance saw the trigger and hung
        # it reported itself hung, stayed alive (a hang, not a crash) and was killed by the watchdog
        assert (first.pid, "STATUS=hung: main") in mgr.log
        assert (first.pid, "WATCHDOG-TIMEOUT") in mgr.log
        assert (first.pid, f"EXIT={-signal.SIGABRT} alive=True") in mgr.log
        timeout_at = mgr.log.index((first.pid, "WATCHDOG-TIMEOUT"))
        hung_at = mgr.log.index((first.pid, "STATUS=hung: main"))
        assert all(m != "WATCHDOG=1" for p, m in mgr.log[hung_at:timeout_at])
        # the new instance is healthy: it pings, and stops cleanly on SIGTERM
        mgr.run_until(lambda: count("WATCHDOG=1", second.pid) >= 2)
        second.terminate()
        mgr.run_until(lambda: count("STOPPING=1", second.pid) == 1)
        assert second.wait(timeout=RECV_TIMEOUT_S) == 0
    finally:
        mgr.close()
