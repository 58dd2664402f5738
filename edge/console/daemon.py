"""``portlane console serve``: the console as systemd runs it (``systemd/portlane-console.service``).

``READY=1`` once the database is open and the web server listens; the watchdog is fed only
while the ingest ticker keeps beating; SIGTERM → drain what the units announced, then stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from portlane.edge.config import Site, load_site
from portlane.edge.errors import CredentialError
from portlane.edge.ops.runtime import Notifier, Watchdog, install_signal_handlers, setup_logging
from portlane.edge.trust.keys import credential_path, load_private_key_file, public_key_b64

from .config import ConsoleConfig, load_console_config
from .replay import ReplayRequester
from .service import ConsoleService
from .signatures import EventVerifier

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
    replay = _replay_requester(site, cfg, base)
    verifier = EventVerifier.for_site(site, [k.key() for k in cfg.event_keys], require_signed=cfg.require_signed_events)
    stop = stop or asyncio.Event()
    install_signal_handlers(stop)
    notifier = Notifier.from_env()
    service = ConsoleService(
        site=site,
        db=db or cfg.db,
        broker_url=broker_url,
        http=http or (cfg.http.host, cfg.http.port),
        users=users_file or cfg.users_file,
        replay=replay,
        verifier=verifier,
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


def _replay_requester(site: Site, cfg: ConsoleConfig, base: Path) -> ReplayRequester | None:
    """The console signs replay requests with ``signing_key`` from its configuration, else with
    the key of its ``clients`` entry in the site file (checked against the published public
    key); without either it still finds gaps but cannot ask for them."""
    if cfg.signing_key is not None:
        return ReplayRequester(
            site=site.site.id, key_id=cfg.signing_key.id, private_key=cfg.signing_key.private_key_b64(base)
        )
    client = next((c for c in site.clients if c.id == cfg.client_id), None)
    if client is None or client.key is None:
        log.warning("no signing key for the console (%s): it cannot ask units to replay missing events", cfg.client_id)
        return None
    path = credential_path(client.key.private_key_file, unit=client.id)
    private = load_private_key_file(path)
    if public_key_b64(private) != client.key.public_key.strip():
        raise CredentialError(f"{path}: does not match key {client.key.id} of client {client.id} in the site file")
    return ReplayRequester(site=site.site.id, key_id=client.key.id, private_key=private)


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
