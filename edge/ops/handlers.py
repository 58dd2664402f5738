"""What the daemons answer on their control socket (the technician's CLI, ``portlane.edge.cli``).

One class per daemon, one method per operation; ``handlers()`` is what the ``ControlServer``
dispatches on. Lane (``LaneControl``): ``status``, ``devices``, ``passage``, ``gate``, ``board``,
``lane_service``, ``outbox`` (show, replay from a seq, purge), ``config``, ``config_apply``.
Scanner (``ScannerControl``): ``status``, ``scanner_abort``. Acting operations need an operator and a reason and are
written to the audit log (the control server adds the peer's uid, user and pid).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from portlane.drivers.serial_link import open_ports
from portlane.edge.config import Site, parse_site
from portlane.edge.errors import ConfigError, CredentialError, OperatorError
from portlane.edge.lane.daemon import LaneDaemon
from portlane.edge.scanner.daemon import ScannerDaemon
from portlane.edge.trust.audit import require_operator

__all__ = ["TRIAL_CONNECT_S", "LaneControl", "ScannerControl"]

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

#: ``config_apply`` tries the new broker before switching; a broker on the LAN answers a
#: CONNECT within milliseconds, a TLS handshake with client certificates within a second.
TRIAL_CONNECT_S = 5.0


def _replace_file(site_file: Path, text: str, old_text: str) -> None:
    """Keep the previous file beside it and switch atomically (one filesystem)."""
    tmp = site_file.with_suffix(".yaml.new")
    tmp.write_text(text, encoding="utf-8")
    site_file.with_suffix(".yaml.previous").write_text(old_text, encoding="utf-8")
    os.replace(tmp, site_file)


def _operator(req: dict[str, Any]) -> tuple[str, str]:
    try:
        return require_operator(str(req.get("operator", "")), str(req.get("reason", "")))
    except OperatorError as exc:
        raise ValueError(str(exc)) from None


class LaneControl:
    """The control-socket operations of a lane daemon, one method each (``handlers()`` maps the
    operation names to them). ``restart`` is set when an applied configuration cannot be taken in
    place (the daemon then exits with EXIT_RESTART and systemd starts it on the new file)."""

    def __init__(self, d: LaneDaemon, site_file: Path | None, restart: asyncio.Event) -> None:
        self.d = d
        self.site_file = site_file
        self.restart = restart

    def handlers(self) -> dict[str, Handler]:
        return {
            "status": self.status,
            "devices": self.devices,
            "passage": self.passage,
            "gate": self.gate,
            "board": self.board,
            "lane_service": self.lane_service,
            "outbox": self.outbox,
            "config": self.config,
            "config_apply": self.config_apply,
        }

    def _lane_ok(self, req: dict[str, Any]) -> None:
        if req.get("lane") not in (None, self.d.cfg.id):
            raise ValueError(f"this daemon drives lane {self.d.cfg.id}, not {req.get('lane')}")

    async def status(self, req: dict[str, Any]) -> dict[str, Any]:
        st = self.d.status()
        held = {"serial_ports": open_ports(), "audit_log": str(self.d.unit.audit.path)}  # for `serial sniff`, `audit`
        return {"site": self.d.site.site.id, "broker": st.pop("broker"), "lanes": [st], **held}

    async def devices(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"lanes": [{"lane": self.d.cfg.id, "devices": self.d.status()["devices"]}]}

    async def passage(self, req: dict[str, Any]) -> dict[str, Any]:
        """The passage under way or one of the last ones (``id``; none: the newest)."""
        d, pid = self.d, req.get("id")
        for p in [*([d.logic.passage] if d.logic.passage else []), *reversed(d.logic.history)]:
            if pid in (None, p.id):
                return {
                    "passage": {
                        "id": p.id,
                        "stage": p.stage.value,
                        "outcome": p.outcome,
                        "decisions": p.decisions,
                        "phase": p.phase,
                        "scans": p.scans,
                        "scan_result": p.scan_result,
                        "stamps": p.stamps,
                        "identity": p.identity.vehicle_ref if p.identity else None,
                    }
                }
        return {"ok": False, "error": f"no passage {pid} on lane {d.cfg.id} (the last 50 are kept)"}

    async def gate(self, req: dict[str, Any]) -> dict[str, Any]:
        self._lane_ok(req)
        op, why = _operator(req)
        if req.get("action") not in ("open", "close", "stop"):
            raise ValueError("action must be open, close or stop")
        return self.d.override(str(req["action"]), operator=op, reason=why)

    async def board(self, req: dict[str, Any]) -> dict[str, Any]:
        self._lane_ok(req)
        op, why = _operator(req)
        self.d.show_board(str(req.get("text", "")), operator=op, reason=why)
        return {}

    async def lane_service(self, req: dict[str, Any]) -> dict[str, Any]:
        self._lane_ok(req)
        op, why = _operator(req)
        in_service = self.d.set_in_service(bool(req.get("in_service")), operator=op, reason=why)
        # An operator's open withdraws the operator's closure; a fault the lane closed for
        # (gate offline, outbox, journal) keeps it closed until it is gone: say which.
        return {"in_service": in_service, "closed_for": sorted(self.d.logic.closures)}

    async def outbox(self, req: dict[str, Any]) -> dict[str, Any]:
        """``show`` (the default), ``replay`` from a seq, or ``purge`` a count (both audited)."""
        d, action = self.d, req.get("action", "show")
        if action == "show":
            return {
                "outbox": d.unit.outbox.stats().as_dict(),
                "head": [{"seq": r.seq, "topic": r.topic} for r in d.unit.outbox.peek(limit=20)],
            }
        op, why = _operator(req)
        if action == "replay":
            start, end = req.get("from_seq", 1), req.get("to_seq")
            if not isinstance(start, int) or start < 1 or not (end is None or isinstance(end, int)):
                raise ValueError("replay needs from_seq (>= 1) and optionally to_seq")
            n = d.unit.replay(start, end)
            d.unit.audit.append(
                "outbox_replay",
                actor=op,
                reason=why,
                lane=d.cfg.id,
                data={"from_seq": start, "to_seq": end, "queued": n},
            )
            return {"replayed": n, "outbox": d.unit.outbox.stats().as_dict()}
        if action == "purge":
            count = req.get("count")
            if not isinstance(count, int) or count <= 0:
                raise ValueError("purge needs an explicit positive count")
            n = d.unit.outbox.purge(count)
            d.unit.audit.append("outbox_purge", actor=op, reason=why, lane=d.cfg.id, data={"purged": n})
            return {"purged": n, "outbox": d.unit.outbox.stats().as_dict()}
        raise ValueError("action must be show, replay or purge")

    async def config(self, req: dict[str, Any]) -> dict[str, Any]:
        if self.site_file is None:
            return {"ok": False, "error": "daemon was started without a site file"}
        return {"yaml": await asyncio.to_thread(self.site_file.read_text, encoding="utf-8")}

    async def config_apply(self, req: dict[str, Any]) -> dict[str, Any]:
        """Check a new site file, refuse a change of trusted keys unless allowed, try its broker,
        then switch the file (audited) and take it in place where the daemon can (keys,
        authority, deadlines); otherwise restart, and say why."""
        d, site_file = self.d, self.site_file
        op, why = _operator(req)
        if site_file is None:
            return {"ok": False, "error": "daemon was started without a site file"}
        text = str(req.get("yaml", ""))
        import yaml

        try:
            new = parse_site(yaml.safe_load(text), file="<config_apply>")
            new.lane(d.cfg.id)
        except (ConfigError, KeyError, yaml.YAMLError) as exc:
            return {"ok": False, "error": f"refused: {exc}"}
        from portlane.edge.trust.config_audit import config_change

        old_text = await asyncio.to_thread(site_file.read_text, encoding="utf-8")
        change = config_change(old_text, text, d.site, new)
        allow = req.get("allow_key_change") is True
        if change.trust_changes and not allow:
            d.unit.audit.append("config_refused", actor=op, reason=why, lane=d.cfg.id, data=change.as_dict())
            return {
                "ok": False,
                "error": f"refused: the new configuration {', '.join(change.trust_changes)}; a new trusted key "
                "may open barriers — check it, then apply again with --allow-key-change",
            }
        refusal = await self._trial_connect(new)
        if refusal is not None:
            return {"ok": False, "error": f"refused: {refusal}; configuration unchanged"}
        await asyncio.to_thread(_replace_file, site_file, text, old_text)
        d.unit.audit.append(
            "config_applied", actor=op, reason=why, lane=d.cfg.id, data={**change.as_dict(), "allow_key_change": allow}
        )
        needs = d.reload(new)
        if needs:
            log.warning("%s: %s changed; restarting to apply the new site file", d.cfg.id, ", ".join(needs))
            self.restart.set()
        return {"applied": True, "restarting": bool(needs), "restart_for": needs}

    async def _trial_connect(self, new: Site) -> str | None:
        """Why the new broker cannot be used, or None: it must answer, with the new credentials,
        before we switch (devices are checked by the supervisors after the restart; a lane that
        cannot reach its gate closes itself). With client certificates the trial has the lane's
        identity: the broker ends the lane's own session for the moment of the trial, and the
        lane reconnects."""
        from portlane.edge.delivery.mqtt import MqttLink
        from portlane.edge.trust.keys import broker_credentials

        unit = self.d.cfg.id
        try:
            creds = broker_credentials(new.broker, unit=unit).link_kwargs()
        except CredentialError as exc:
            return str(exc)
        trial = MqttLink(new.broker.url, client_id=f"portlane-trial-{unit}", protocol=new.broker.protocol, **creds)
        reached = False
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(trial.run(), name=f"{unit}:config-trial")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TRIAL_CONNECT_S):
                    await trial.wait_connected()
                    reached = True
            await trial.close()
            task.cancel()
        return None if reached else f"broker {new.broker.url} unreachable"


class ScannerControl:
    """The control-socket operations of the scanner daemon."""

    def __init__(self, d: ScannerDaemon) -> None:
        self.d = d

    def handlers(self) -> dict[str, Handler]:
        return {"status": self.status, "scanner_abort": self.scanner_abort}

    async def status(self, req: dict[str, Any]) -> dict[str, Any]:
        d = self.d
        st = d.status
        return {
            "site": d.site.site.id,
            "scanner": d.cfg.id,
            "lanes": [],
            "state": st.state.name if st else None,
            "queue": len(d.logic.queue),
            "current": d.logic.current.passage_id if d.logic.current else None,
            "scans": d.scans,
            "utilisation": d.utilisation(),
            "outbox": d.unit.outbox.stats().as_dict(),
            "serial_ports": open_ports(),
            "audit_log": str(d.unit.audit.path),
        }

    async def scanner_abort(self, req: dict[str, Any]) -> dict[str, Any]:
        op, why = _operator(req)
        d = self.d
        running = d.logic.current is not None
        d.unit.audit.append("override", actor=op, reason=why, data={"action": "scanner_abort", "running": running})
        if not running:  # the PLC would refuse (exception 04): say so, as a stopped unit is "stopped"
            return {"aborted": False, "detail": f"no scan was running on {d.cfg.id}; nothing to abort"}
        await d.device.abort()
        return {"aborted": True}
