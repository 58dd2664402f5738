"""Shared by the control-socket and technician-CLI tests: a daemon with fixed answers behind a
real control socket, and the CLI run off the event loop (the run directory for the sockets is
the ``sockdir`` fixture of conftest.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from portlane.edge.cli import main as cli_main


def _status(lane: str, *, in_service: bool = True) -> dict[str, Any]:
    return {
        "lane": lane,
        "in_service": in_service,
        "stage": "IDLE",
        "passage_id": None,
        "devices": {
            "gate": {
                "health": "online",
                "backend": "rs485",
                "link": "/dev/ttyGATE",
                "last_error": None,
                "counters": {"tx": 10, "rx": 10},
            }
        },
        "outbox": {"depth": 2, "oldest_age_s": 1.5, "dropped": 0},
    }


class FakeDaemon:
    """Fixed handlers recording what they were asked. ``scanner``: a scanner daemon (status names
    it, it can abort a scan); ``serial_ports``, ``audit_log``: what its status reports."""

    def __init__(
        self,
        *lanes: str,
        site_yaml: str = "",
        scanner: str | None = None,
        serial_ports: tuple[str, ...] = (),
        audit_log: str | None = None,
    ) -> None:
        self.lanes = lanes
        self.calls: list[dict[str, Any]] = []
        self.site_yaml = site_yaml
        self.apply_ok = True
        self.scanner = scanner
        self.serial_ports = serial_ports
        self.audit_log = audit_log
        self.outbox: dict[str, Any] = {"depth": 0, "last_seq": 0}

    def handlers(self) -> dict[str, Any]:
        async def record(req: dict[str, Any]) -> dict[str, Any]:
            self.calls.append(req)
            return {}

        async def status(req: dict[str, Any]) -> dict[str, Any]:
            return {
                "site": "zhuhai-hzmb-cargo",
                "broker": {"url": "mqtt://127.0.0.1:1", "connected": True},
                "lanes": [_status(lane) for lane in self.lanes],
                "serial_ports": list(self.serial_ports),
                **({"scanner": self.scanner, "state": "READY", "queue": 0, "scans": 0} if self.scanner else {}),
                **({"audit_log": self.audit_log} if self.audit_log else {}),
            }

        async def outbox(req: dict[str, Any]) -> dict[str, Any]:
            self.calls.append(req)
            if req.get("action") == "show":
                return {"outbox": dict(self.outbox), "head": []}
            if req.get("action") == "purge":
                n = min(int(req["count"]), int(self.outbox["depth"]))
                self.outbox["depth"] -= n
                return {"purged": n, "outbox": dict(self.outbox)}
            return {"replayed": int(self.outbox["last_seq"]) - int(req.get("from_seq", 1)) + 1}

        if self.scanner is not None:
            return {"status": status, "scanner_abort": record}

        async def devices(req: dict[str, Any]) -> dict[str, Any]:
            return {"lanes": [{"lane": lane, "devices": _status(lane)["devices"]} for lane in self.lanes]}

        async def config(req: dict[str, Any]) -> dict[str, Any]:
            return {"yaml": self.site_yaml}

        async def config_apply(req: dict[str, Any]) -> dict[str, Any]:
            self.calls.append(req)
            if not self.apply_ok:
                return {"ok": False, "error": "broker unreachable with the new configuration; rolled back"}
            return {}

        return {
            "status": status,
            "devices": devices,
            "gate": record,
            "board": record,
            "lane_service": record,
            "config": config,
            "config_apply": config_apply,
            "outbox": outbox,
        }


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(cli_main, list(argv))
