"""Shared fixtures: a real MQTT broker on a free loopback port.

Mosquitto when the binary is installed (CI installs it), otherwise the embedded amqtt
broker in a child process (``PORTLANE_TEST_BROKER=embedded`` forces the latter). Either can be
killed and restarted mid-test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from portlane.edge.demo.broker import BrokerProcess, MosquittoBroker

#: How long a thread that is ending (a stopped paho loop, an executor worker) may take.
THREAD_EXIT_S = 5.0

# Property tests check what the code does, not how fast a loaded CI machine runs it: no
# per-example deadline (Hypothesis's 200 ms default, which fails an example that a busy 2-core
# machine merely runs slowly, as "Flaky" when it re-runs fast) and no "too slow" health check.
# Loaded here, before any test module builds its @settings: explicit ones inherit from it.
settings.register_profile("portlane", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile("portlane")

#: ``dev.py test`` runs the suite on two workers (pytest-xdist, ``--dist loadgroup``). The tests
#: that start daemons, simulators on their documented ports or whole simulated ports, or that are
#: slow end to end, share one group: they run one after another on one worker, as they always
#: did, while the other worker takes the rest.
SERIAL_DIRS = frozenset({"system", "ops", "project", "cli", "console", "client"})
TESTS = Path(__file__).resolve().parent

if os.environ.get("PYTEST_XDIST_WORKER"):
    # xdist gives its workers COLUMNS=80; the CLI takes COLUMNS as the operator's terminal width
    # (edge/cli/_common.py), so the tests would see another table layout than in a serial run
    os.environ.pop("COLUMNS", None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        part = item.path.relative_to(TESTS).parts[0]
        if part in SERIAL_DIRS or item.get_closest_marker("slow") is not None:
            item.add_marker(pytest.mark.xdist_group("serial"))


@pytest.fixture
async def broker() -> AsyncIterator[BrokerProcess]:
    # PORTLANE_TEST_BROKER=embedded runs the suite on the embedded broker even where
    # Mosquitto is installed.
    use_mosquitto = MosquittoBroker.available() and os.environ.get("PORTLANE_TEST_BROKER") != "embedded"
    b: BrokerProcess = MosquittoBroker() if use_mosquitto else BrokerProcess("embedded")
    await b.start()
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
async def embedded_broker() -> AsyncIterator[BrokerProcess]:
    b = BrokerProcess("embedded")
    await b.start()
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
def sockdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A run directory for daemons' control sockets, where the CLI looks (``PORTLANE_RUN_DIR``)."""
    # AF_UNIX paths are limited to 107 bytes; pytest's tmp_path can be longer.
    d = Path(tempfile.mkdtemp(prefix="pl-", dir="/tmp"))
    monkeypatch.delenv("PORTLANE_CONTROL", raising=False)
    monkeypatch.setenv("PORTLANE_RUN_DIR", str(d))
    yield d
    shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- leaks
def _fds() -> set[str]:
    try:
        return set(os.listdir("/proc/self/fd"))
    except FileNotFoundError:  # not Linux: nothing to compare
        return set()


def _describe(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


@pytest.fixture(autouse=True, scope="session")
def _process_wide_helpers() -> None:
    """Helpers a process starts once and keeps (multiprocessing's resource tracker, which the
    spawn context of ``portlane ocr eval`` starts): started before any test, so that the first
    test to need them is not blamed for their descriptors."""
    import multiprocessing.resource_tracker

    multiprocessing.resource_tracker.ensure_running()


@pytest.fixture(autouse=True)
def no_leaked_threads_or_descriptors() -> Iterator[None]:
    """A test must not leave threads running or file descriptors open (a leaked paho thread,
    an unclosed outbox or socket). Threads that are finishing get a moment to end."""
    threads = {t.ident for t in threading.enumerate()}
    fds = _fds()
    yield
    # asyncio_N are the idle workers of the test's event loop's default executor (to_thread);
    # the loop shuts them down when pytest-asyncio closes it, after this fixture.
    leaked_threads = [
        t
        for t in threading.enumerate()
        if t.ident not in threads and t.is_alive() and not t.name.startswith("asyncio_")
    ]
    for t in leaked_threads:
        t.join(timeout=THREAD_EXIT_S)  # event-based: returns as soon as the thread ends
    leaked_threads = [t for t in leaked_threads if t.is_alive()]
    leaked_fds = sorted(_fds() - fds)
    # onnxruntime keeps a process-wide telemetry database open once loaded: not ours to close.
    leaked_fds = [f for f in leaked_fds if os.path.exists(f"/proc/self/fd/{f}") and ".onnxruntime" not in _describe(f)]
    problems = [f"thread {t.name!r} still running" for t in leaked_threads]
    problems += [f"fd {f} still open: {_describe(f)}" for f in leaked_fds]
    assert not problems, "the test leaked: " + "; ".join(problems)


@pytest.fixture(autouse=True)
async def no_leaked_tasks(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """An async test must not leave tasks running on its loop (every task belongs to a task
    group or is awaited; cancellation is never swallowed)."""
    before = asyncio.all_tasks()
    yield
    me = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() if t not in before and t is not me and not t.done()]
    for _ in leaked:  # cancelled ones get one turn of the loop to finish
        await asyncio.sleep(0)
    leaked = [t for t in leaked if not t.done()]
    assert not leaked, "the test leaked tasks: " + ", ".join(t.get_name() for t in leaked)
