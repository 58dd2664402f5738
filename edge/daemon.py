"""Daemon entry points run by systemd: ``portlane daemon lane|scanner``.

Each daemon: structured logging to the journal, SIGTERM → graceful stop (finish the current
frame, leave unsent events on disk, publish offline status), ``READY=1`` once its devices
and broker link are started, a watchdog that pings only while the main loop and every device
supervisor keep beating, Prometheus metrics on a loopback port (``PORTLANE_METRICS_PORT``),
and a control socket (``PORTLANE_CONTROL``) for the technician's CLI.

Control operations (JSON Lines, see ``portlane.edge.control``): ``status``, ``devices``,
``passage``, ``gate``, ``board``, ``lane_service``, ``outbox``, ``config``,
``config_apply``; the scanner daemon answers ``status`` and ``scanner_abort``. Acting
operations need an operator and a reason and are written to the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from .audit import OperatorError, require_operator
from .config import Site, load_site, parse_site
from .control import ControlServer, default_path
from .errors import ConfigError
from .lane import LaneDaemon
from .metrics import DaemonMetrics
from .passage import Action
from .runtime import Notifier, Watchdog, install_signal_handlers, setup_logging
from .scanner import ScannerDaemon

__all__ = ["lane_handlers", "run_lane_daemon", "run_scanner_daemon"]

log = logging.getLogger(__name__)

#: Exit status asking systemd to restart us with a newly applied configuration
#: (EX_TEMPFAIL; Restart=on-failure restarts on it).
EXIT_RESTART = 75


def _state_dir(site: Site) -> Path:
    return Path(os.environ.get("STATE_DIRECTORY", "").split(":")[0] or site.state_dir)


def lane_handlers(d: LaneDaemon, site_file: Path | None, restart: asyncio.Event) -> dict[str, Any]:
    """Control-socket handlers of a lane daemon."""

    def _who(req: dict[str, Any]) -> tuple[str, str]:
        try:
            return require_operator(str(req.get("operator", "")), str(req.get("reason", "")))
        except OperatorError as exc:
            raise ValueError(str(exc)) from None

    def _lane_ok(req: dict[str, Any]) -> None:
        if req.get("lane") not in (None, d.cfg.id):
            raise ValueError(f"this daemon drives lane {d.cfg.id}, not {req.get('lane')}")

    async def status(req: dict[str, Any]) -> dict[str, Any]:
        st = d.status()
        return {"site": d.site.site.id, "broker": st.pop("broker"), "lanes": [st]}

    async def devices(req: dict[str, Any]) -> dict[str, Any]:
        return {"lanes": [{"lane": d.cfg.id, "devices": d.status()["devices"]}]}

    async def passage(req: dict[str, Any]) -> dict[str, Any]:
        pid = req.get("id")
        for p in [*([d.logic.passage] if d.logic.passage else []), *reversed(d.logic.history)]:
            if pid in (None, p.id):
                return {"passage": {"id": p.id, "stage": p.stage.value, "outcome": p.outcome,
                                    "decisions": p.decisions, "phase": p.phase, "scans": p.scans,
                                    "scan_result": p.scan_result, "stamps": p.stamps,
                                    "identity": p.identity.vehicle_ref if p.identity else None}}
        return {"ok": False, "error": f"no passage {pid} on lane {d.cfg.id} (the last 50 are kept)"}

    async def gate(req: dict[str, Any]) -> dict[str, Any]:
        _lane_ok(req)
        op, why = _who(req)
        if req.get("action") not in ("open", "close", "stop"):
            raise ValueError("action must be open, close or stop")
        return d.override(str(req["action"]), operator=op, reason=why)

    async def board(req: dict[str, Any]) -> dict[str, Any]:
        _lane_ok(req)
        op, why = _who(req)
        d.audit.append("board_message", actor=op, reason=why, lane=d.cfg.id, data={"text": str(req.get("text"))})
        d._actions.put_nowait(Action("board", {"lines": [(str(req.get("text", "")), "amber")]}))
        return {}

    async def lane_service(req: dict[str, Any]) -> dict[str, Any]:
        _lane_ok(req)
        op, why = _who(req)
        d._apply(d.logic.set_in_service(bool(req.get("in_service")), operator=op, reason=why))
        return {"in_service": d.logic.in_service}

    async def outbox(req: dict[str, Any]) -> dict[str, Any]:
        action = req.get("action", "show")
        if action == "show":
            return {"outbox": d.outbox.stats().as_dict(),
                    "head": [{"seq": r.seq, "topic": r.topic} for r in d.outbox.peek(limit=20)]}
        op, why = _who(req)
        if action == "replay":
            d.audit.append("outbox_replay", actor=op, reason=why, lane=d.cfg.id)
            d.sender._wake.set()
            return {"outbox": d.outbox.stats().as_dict()}
        if action == "purge":
            count = req.get("count")
            if not isinstance(count, int) or count <= 0:
                raise ValueError("purge needs an explicit positive count")
            n = d.outbox.purge(count)
            d.audit.append("outbox_purge", actor=op, reason=why, lane=d.cfg.id, data={"purged": n})
            return {"purged": n, "outbox": d.outbox.stats().as_dict()}
        raise ValueError("action must be show, replay or purge")

    async def config(req: dict[str, Any]) -> dict[str, Any]:
        if site_file is None:
            return {"ok": False, "error": "daemon was started without a site file"}
        return {"yaml": site_file.read_text(encoding="utf-8")}

    async def config_apply(req: dict[str, Any]) -> dict[str, Any]:
        op, why = _who(req)
        if site_file is None:
            return {"ok": False, "error": "daemon was started without a site file"}
        text = str(req.get("yaml", ""))
        import yaml

        try:
            new = parse_site(yaml.safe_load(text), file="<config_apply>")
            new.lane(d.cfg.id)
        except (ConfigError, KeyError, yaml.YAMLError) as exc:
            return {"ok": False, "error": f"refused: {exc}"}
        # Trial: the new broker must answer before we switch (devices are checked by the
        # supervisors after the restart; a lane that cannot reach its gate closes itself).
        from .mqtt import MqttLink

        trial = MqttLink(new.broker.url, client_id=f"portlane-trial-{d.cfg.id}", protocol=new.broker.protocol)
        task = asyncio.create_task(trial.run())
        try:
            async with asyncio.timeout(5.0):
                await trial.wait_connected()
        except TimeoutError:
            return {"ok": False, "error": f"refused: broker {new.broker.url} unreachable; configuration unchanged"}
        finally:
            await trial.close()
            task.cancel()
        tmp = site_file.with_suffix(".yaml.new")
        tmp.write_text(text, encoding="utf-8")
        backup = site_file.with_suffix(".yaml.previous")
        backup.write_text(site_file.read_text(encoding="utf-8"), encoding="utf-8")
        os.replace(tmp, site_file)  # atomic on one filesystem
        d.audit.append("config_applied", actor=op, reason=why, lane=d.cfg.id)
        restart.set()
        return {"applied": True, "restarting": True}

    return {"status": status, "devices": devices, "passage": passage, "gate": gate, "board": board,
            "lane_service": lane_service, "outbox": outbox, "config": config, "config_apply": config_apply}


async def run_lane_daemon(site_file: Path, lane_id: str, *, stop: asyncio.Event | None = None,
                          broker_url: str | None = None) -> int:
    site = load_site(site_file)
    lane = site.lane(lane_id)
    stop = stop or asyncio.Event()
    restart = asyncio.Event()
    install_signal_handlers(stop)
    notifier = Notifier.from_env()
    recogniser: Any = None
    rec_sock = os.environ.get("PORTLANE_RECOGNITION", "/run/portlane/recognition.sock")
    if Path(rec_sock).exists():
        from .recognition import SocketRecogniser, camera_rois

        recogniser = SocketRecogniser(rec_sock, rois=camera_rois(site))
    metrics = DaemonMetrics("lane", site=site.site.id, lane=lane.id)
    d = LaneDaemon(site, lane, state_dir=_state_dir(site), broker_url=broker_url, recogniser=recogniser,
                   metrics=metrics)
    port = int(os.environ.get("PORTLANE_METRICS_PORT", "0") or 0)
    server = metrics.serve(port) if port else None
    wd = Watchdog(notifier)
    wd.register("main", lambda: d.heartbeat)
    for name, slot in d.devices.items():
        wd.register(name, lambda s=slot: s.supervisor.heartbeat)  # type: ignore[misc]

    async def publish_metrics() -> None:
        while True:
            st = d.outbox.stats()
            metrics.outbox(st.depth, st.oldest_age_s, st.dropped)
            metrics.broker_connected(d.link.connected)
            for name, slot in d.devices.items():
                metrics.device_state(lane.id, name, slot.supervisor.health.value)
            await asyncio.sleep(5)

    async def watch_restart() -> None:
        await restart.wait()
        stop.set()

    async with ControlServer(os.environ.get("PORTLANE_CONTROL") or default_path(),
                             lane_handlers(d, site_file, restart)):
        async with asyncio.TaskGroup() as tg:
            main = tg.create_task(d.run(stop), name="lane")
            await d.ready.wait()
            notifier.ready(f"lane {lane.id} running")
            aux = [tg.create_task(wd.run(stop), name="watchdog"),
                   tg.create_task(publish_metrics(), name="metrics"),
                   tg.create_task(watch_restart(), name="restart")]
            await main
            notifier.stopping("flushing and going offline")
            for t in aux:
                t.cancel()
    if server is not None:
        server.close()
    return EXIT_RESTART if restart.is_set() else 0


async def run_scanner_daemon(site_file: Path, scanner_id: str, *, broker_url: str | None = None) -> int:
    site = load_site(site_file)
    cfg = site.scanner(scanner_id)
    stop = asyncio.Event()
    install_signal_handlers(stop)
    notifier = Notifier.from_env()
    d = ScannerDaemon(site, cfg, state_dir=_state_dir(site), broker_url=broker_url)
    wd = Watchdog(notifier)
    wd.register("scan-loop", lambda: d.heartbeat)
    wd.register("plc", lambda: d.supervisor.heartbeat)

    async def status(req: dict[str, Any]) -> dict[str, Any]:
        st = d.status
        return {"site": site.site.id, "scanner": cfg.id, "lanes": [],
                "state": st.state.name if st else None, "queue": len(d.queue),
                "current": d.current.passage_id if d.current else None, "scans": d.scans,
                "utilisation": d.utilisation(), "outbox": d.outbox.stats().as_dict()}

    async def scanner_abort(req: dict[str, Any]) -> dict[str, Any]:
        op, why = require_operator(str(req.get("operator", "")), str(req.get("reason", "")))
        from .audit import AuditLog

        AuditLog(_state_dir(site) / "audit.jsonl").append("override", actor=op, reason=why,
                                                          data={"action": "scanner_abort"})
        await d.device.abort()
        return {}

    async with ControlServer(os.environ.get("PORTLANE_CONTROL") or default_path(),
                             {"status": status, "scanner_abort": scanner_abort}):
        async with asyncio.TaskGroup() as tg:
            main = tg.create_task(d.run(stop), name="scanner")
            notifier.ready(f"scanner {cfg.id} running")
            w = tg.create_task(wd.run(stop), name="watchdog")
            await main
            notifier.stopping()
            w.cancel()
    return 0


async def run_recognition_daemon(*, threads: int | None = None) -> int:
    """The site's shared recognition worker, serving ``recognise`` on its control socket."""
    import base64

    from portlane.models.worker import RecognitionWorker

    from .recognition import serialise_reads

    stop = asyncio.Event()
    install_signal_handlers(stop)
    notifier = Notifier.from_env()
    beats = {"n": 0}

    async def recognise(req: dict[str, Any]) -> dict[str, Any]:
        kind = req.get("kind")
        if kind not in ("plate", "container"):
            raise ValueError("kind must be plate or container")
        frames = [base64.b64decode(f) for f in req.get("frames", [])]
        per_image = await worker.recognise(frames, kind=kind, rois=req.get("rois"))
        return {"reads": serialise_reads(kind, per_image)}

    async with RecognitionWorker(threads=threads) as worker:
        await worker.warm_up()
        async with ControlServer(os.environ.get("PORTLANE_CONTROL") or default_path(), {"recognise": recognise}):
            wd = Watchdog(notifier)
            wd.register("main", lambda: beats["n"])
            notifier.ready("recognition worker ready")

            async def beat() -> None:
                while not stop.is_set():
                    beats["n"] += 1
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            await stop.wait()

            async with asyncio.TaskGroup() as tg:
                tg.create_task(wd.run(stop), name="watchdog")
                tg.create_task(beat(), name="main")
            notifier.stopping()
    return 0


def main_recognition(threads: int | None) -> int:
    setup_logging()
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run_recognition_daemon(threads=threads))
    return 0


def main_lane(site_file: Path, lane: str, broker: str | None) -> int:
    setup_logging()
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run_lane_daemon(site_file, lane, broker_url=broker))
    return 0


def main_scanner(site_file: Path, scanner: str, broker: str | None) -> int:
    setup_logging()
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run_scanner_daemon(site_file, scanner, broker_url=broker))
    return 0
