"""Daemon entry points run by systemd: ``portlane daemon lane|scanner``.

Each daemon: structured logging to the journal, SIGTERM → graceful stop (finish the current
frame, leave unsent events on disk, publish offline status), ``READY=1`` once its devices
and broker link are started, a watchdog that pings only while the main loop and every device
supervisor keep beating, Prometheus metrics on a loopback port (``PORTLANE_METRICS_PORT``),
and a control socket (``PORTLANE_CONTROL``) for the technician's CLI.

Control operations: ``portlane.edge.ops.handlers``. A daemon that cannot start — a broken
site file, a corrupt or read-only state file, a missing credential — says so in one line
(file, what is wrong, what to do) and exits with ``EXIT_CONFIG`` (78, EX_CONFIG), which the
unit files list in ``RestartPreventExitStatus=``: restarting cannot fix it, a technician can.

A daemon never ends silently — under systemd or started by hand: its last log line says why
it stopped, and the exit code says it too (:func:`_stopped`): SIGINT 130, SIGTERM 143 (the unit
files list both in ``SuccessExitStatus=``), a new site file to take ``EXIT_RESTART`` (75;
systemd starts it again, by hand you do).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

from portlane.edge.config import Site, load_site
from portlane.edge.errors import EXIT_CONFIG, EXIT_INTERRUPTED, EXIT_OK, EXIT_RESTART, PortlaneError
from portlane.edge.lane.daemon import LaneDaemon
from portlane.edge.lane.recognition import Recogniser, camera_rois
from portlane.edge.ops.control import ControlServer, default_path, run_directory
from portlane.edge.ops.handlers import LaneControl, ScannerControl
from portlane.edge.ops.metrics import DaemonMetrics
from portlane.edge.ops.recognition import SocketRecogniser, serialise_reads
from portlane.edge.ops.runtime import Notifier, Watchdog, install_signal_handlers, setup_logging
from portlane.edge.scanner.daemon import ScannerDaemon

__all__ = [
    "main_lane",
    "main_recognition",
    "main_scanner",
    "run_lane_daemon",
    "run_scanner_daemon",
]

log = logging.getLogger(__name__)

#: Metrics are sampled this often (Prometheus scrapes every 15 s by default).
METRICS_PERIOD_S = 5.0


def _state_dir(site: Site) -> Path:
    return Path(os.environ.get("STATE_DIRECTORY", "").split(":")[0] or site.state_dir)


class _Signals:
    """The signal that stopped a daemon, if one did: its exit code is 128 + the number."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None

    def __call__(self, sig: signal.Signals) -> None:
        self.received = self.received or sig

    def exit_code(self, default: int = EXIT_OK) -> int:
        return 128 + int(self.received) if self.received is not None else default


async def run_lane_daemon(
    site_file: Path, lane_id: str, *, stop: asyncio.Event | None = None, broker_url: str | None = None
) -> int:
    site = load_site(site_file)
    lane = site.lane(lane_id)
    stop = stop or asyncio.Event()
    restart = asyncio.Event()
    signals = _Signals()
    notifier = Notifier.from_env()
    recogniser: Recogniser | None = None
    rec_sock = os.environ.get("PORTLANE_RECOGNITION") or str(Path(run_directory()) / "recognition.sock")
    if await asyncio.to_thread(Path(rec_sock).exists):
        recogniser = SocketRecogniser(rec_sock, rois=camera_rois(site))
    metrics = DaemonMetrics("lane", site=site.site.id, lane=lane.id)
    d = LaneDaemon(
        site, lane, state_dir=_state_dir(site), broker_url=broker_url, recogniser=recogniser, metrics=metrics
    )
    install_signal_handlers(stop, reload=lambda: reload_from_file(d, site_file, notifier, restart), on_signal=signals)
    port = int(os.environ.get("PORTLANE_METRICS_PORT", "0") or 0)
    server = metrics.serve(port) if port else None
    wd = Watchdog(notifier)
    wd.register("main", lambda: d.heartbeat)
    for name, slot in d.devices.slots.items():
        wd.register(name, lambda s=slot: s.supervisor.heartbeat)  # type: ignore[misc]

    async def publish_metrics() -> None:
        while not stop.is_set():
            st = d.unit.outbox.stats()
            metrics.outbox(st.depth, st.oldest_age_s, st.dropped)
            metrics.broker_connected(d.unit.link.connected)
            metrics.heartbeats_stalled(wd.names, wd.stalled)
            for name, slot in d.devices.slots.items():
                metrics.device_state(lane.id, name, slot.supervisor.health.value)
                metrics.device_errors(lane.id, name, slot.device.counters)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(METRICS_PERIOD_S):
                    await stop.wait()

    async with (
        ControlServer(default_path(f"lane-{lane.id}"), LaneControl(d, site_file, restart).handlers()),
        asyncio.TaskGroup() as tg,
    ):
        main = tg.create_task(d.run(stop), name="lane")
        await d.ready.wait()
        notifier.ready(f"lane {lane.id} running")
        aux = [
            tg.create_task(wd.run(stop), name="watchdog"),
            tg.create_task(publish_metrics(), name="metrics"),
            tg.create_task(_stop_on(restart, stop), name="restart"),
        ]
        await main
        notifier.stopping("flushing and going offline")
        for t in aux:
            t.cancel()
    if server is not None:
        server.close()
    return _stopped(f"lane {lane.id}", restart, signals)


async def run_scanner_daemon(site_file: Path, scanner_id: str, *, broker_url: str | None = None) -> int:
    site = load_site(site_file)
    cfg = site.scanner(scanner_id)
    stop = asyncio.Event()
    restart = asyncio.Event()
    signals = _Signals()
    notifier = Notifier.from_env()
    d = ScannerDaemon(site, cfg, state_dir=_state_dir(site), broker_url=broker_url)
    install_signal_handlers(stop, reload=lambda: reload_from_file(d, site_file, notifier, restart), on_signal=signals)
    wd = Watchdog(notifier)
    wd.register("scan-loop", lambda: d.heartbeat)
    wd.register("plc", lambda: d.supervisor.heartbeat)

    async with (
        ControlServer(default_path(f"scanner-{cfg.id}"), ScannerControl(d).handlers()),
        asyncio.TaskGroup() as tg,
    ):
        main = tg.create_task(d.run(stop), name="scanner")
        notifier.ready(f"scanner {cfg.id} running")
        w = tg.create_task(wd.run(stop), name="watchdog")
        r = tg.create_task(_stop_on(restart, stop), name="restart")
        await main
        notifier.stopping()
        w.cancel()
        r.cancel()
    return _stopped(f"scanner {cfg.id}", restart, signals)


class _Reloadable(Protocol):
    def reload(self, site: Site) -> list[str]: ...


def reload_from_file(d: _Reloadable, site_file: Path, notifier: Notifier, restart: asyncio.Event) -> None:
    """SIGHUP (``systemctl reload``): read the site file again and take it in place where the
    daemon can; where it cannot, say so in one line and restart (``restart`` is set: the daemon
    stops and exits EXIT_RESTART, which systemd restarts). A file that does not parse changes
    nothing and is said in one line."""
    notifier.reloading()
    try:
        try:
            new = load_site(site_file)
        except PortlaneError as exc:
            log.error("reload refused, running on the file as it was: %s", "; ".join(str(exc).splitlines()))
            return
        needs = d.reload(new)
        if needs:
            log.warning("reload: %s changed in %s; restarting to apply it", ", ".join(needs), site_file)
            restart.set()
        else:
            log.warning("reload: %s taken in place", site_file)
    finally:
        notifier.ready("running")


async def _stop_on(restart: asyncio.Event, stop: asyncio.Event) -> None:
    await restart.wait()
    stop.set()


def _stopped(what: str, restart: asyncio.Event | None, signals: _Signals) -> int:
    """The one line a daemon says when it ends (by hand as under systemd), and its exit code:
    EXIT_RESTART for a new site file, 128 + the signal that stopped it (130, 143), else 0."""
    if restart is not None and restart.is_set():
        log.warning(
            "%s stopped to start on the new site file (exit %d: systemd starts it again; started by hand, start it "
            "again)",
            what,
            EXIT_RESTART,
        )
        return EXIT_RESTART
    code = signals.exit_code()
    if signals.received is not None:
        log.warning("%s stopped by %s (exit %d)", what, signals.received.name, code)
    else:
        log.warning("%s stopped", what)
    return code


async def run_recognition_daemon(*, threads: int | None = None, workers: int | None = None) -> int:
    """The site's shared recognition worker, serving ``recognise`` on its control socket."""
    import base64

    from portlane.models.worker import RecognitionWorker, default_workers

    stop = asyncio.Event()
    signals = _Signals()
    install_signal_handlers(stop, on_signal=signals)
    notifier = Notifier.from_env()
    metrics = DaemonMetrics("recognition", site=os.environ.get("PORTLANE_SITE", ""))
    port = int(os.environ.get("PORTLANE_METRICS_PORT", "0") or 0)
    server = metrics.serve(port) if port else None

    async def recognise(req: dict[str, Any]) -> dict[str, Any]:
        kind = req.get("kind")
        if kind not in ("plate", "container"):
            raise ValueError("kind must be plate or container")
        frames = [base64.b64decode(f) for f in req.get("frames", [])]
        t0 = time.monotonic()
        rois = req.get("rois")
        per_image = await worker.recognise(frames, kind=kind, rois=rois if isinstance(rois, list) else None)
        reads = serialise_reads(per_image)
        best = max((r["confidence"] for image in reads for r in image), default=None)
        metrics.recognition(kind, time.monotonic() - t0, best)
        return {"reads": reads}

    async with RecognitionWorker(threads=threads, workers=workers or default_workers()) as worker:
        await worker.warm_up()
        async with ControlServer(default_path("recognition"), {"recognise": recognise}):
            wd = Watchdog(notifier)
            main_beat = wd.heartbeat("main")
            notifier.ready("recognition worker ready")

            async def beat() -> None:
                while not stop.is_set():
                    main_beat.beat()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            await stop.wait()

            async with asyncio.TaskGroup() as tg:
                tg.create_task(wd.run(stop), name="watchdog")
                tg.create_task(beat(), name="main")
            notifier.stopping()
    if server is not None:
        server.close()
    return _stopped("recognition", None, signals)


def _main(run: Callable[[], Coroutine[Any, Any, int]], name: str) -> int:
    """Run a daemon (which says why it stopped in its last log line, ``_stopped``); errors
    that end it before it runs are one line too, never a traceback."""
    setup_logging()
    try:
        return asyncio.run(run())
    except KeyboardInterrupt:  # ^C before the signal handlers were installed (start-up)
        log.warning("%s stopped by SIGINT while starting (exit %d)", name, EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except PortlaneError as exc:
        # ConfigError, StateError, NonceStoreError, CredentialError …: one line, no traceback.
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"portlane: {line}", file=sys.stderr)
        return EXIT_CONFIG


def main_recognition(threads: int | None, workers: int | None = None) -> int:
    return _main(lambda: run_recognition_daemon(threads=threads, workers=workers), "recognition")


def main_lane(site_file: Path, lane: str, broker: str | None) -> int:
    return _main(lambda: run_lane_daemon(site_file, lane, broker_url=broker), f"lane {lane}")


def main_scanner(site_file: Path, scanner: str, broker: str | None) -> int:
    return _main(lambda: run_scanner_daemon(site_file, scanner, broker_url=broker), f"scanner {scanner}")
