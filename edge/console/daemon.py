"""``portlane console serve``: the console as systemd runs it (``systemd/portlane-console.service``).

``READY=1`` once the database is open and the web server listens; the watchdog is fed only
while the ingest ticker keeps beating; SIGTERM → drain what the units announced, then stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from portlane.edge.config import load_site
from portlane.edge.ops.runtime import Notifier, Watchdog, install_signal_handlers, setup_logging
from portlane.edge.trust.commands import CommandSigner

from .config import ConsoleConfig, load_console_config
from .service import ConsoleService

__all__ = ["main_console", "run_console_daemon"]

log = logging.getLogger(__name__)


async def run_console_daemon(
    site_file: Path,
    config_file: Path | None,
    *,
    db: Path | None = None,
    http: tuple[str, int] | None = None,
    broker_url: str | None = None,
    users_file: Path | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    site = load_site(site_file)
    cfg = load_console_config(config_file)
    base = config_file.parent if config_file else Path.cwd()
    stop = stop or asyncio.Event()
    install_signal_handlers(stop)
    notifier = Notifier.from_env()
    service = ConsoleService(
        site=site,
        db=db or cfg.db,
        broker_url=broker_url,
        http=http or (cfg.http.host, cfg.http.port),
        users=users_file or cfg.users_file,
        signer=_signer(cfg, base),
        stuck_after_s=cfg.stuck_after_s,
        low_confidence=cfg.low_confidence,
        backfill=cfg.backfill,
        cookie_secure=cfg.cookie_secure,
        client_id=cfg.client_id,
    )
    async with service:
        notifier.ready(f"console serving {service.url}")
        log.info("console for %s serving %s", site.site.id, service.url)
        wd = Watchdog(notifier)
        wd.register("ticker", lambda: service.heartbeat)
        async with asyncio.TaskGroup() as tg:
            w = tg.create_task(wd.run(stop), name="watchdog")
            await stop.wait()
            notifier.stopping("draining")
            w.cancel()
    return 0


def _signer(cfg: ConsoleConfig, base: Path) -> CommandSigner | None:
    """The console signs replay requests with ``signing_key`` from its configuration when given;
    else (None) with the key of its ``clients`` entry in the site file, checked against the
    published public key (``SiteClient.from_site``); without either it still finds gaps but
    cannot ask for them (a ``gap`` alarm says so)."""
    if cfg.signing_key is None:
        return None
    return CommandSigner(cfg.signing_key.id, cfg.signing_key.private_key_b64(base))


def main_console(
    site_file: Path,
    config_file: Path | None,
    *,
    db: Path | None = None,
    http: tuple[str, int] | None = None,
    broker_url: str | None = None,
    users_file: Path | None = None,
) -> int:
    setup_logging()
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(
            run_console_daemon(site_file, config_file, db=db, http=http, broker_url=broker_url, users_file=users_file)
        )
    return 0
