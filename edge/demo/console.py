"""The site console as ``portlane demo --console`` runs it (``edge/console/`` is the console
itself; this is only the demo's choice of users, thresholds and session)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from portlane.edge.config import MqttProtocol, Site
from portlane.edge.console.auth import User, hash_password
from portlane.edge.console.live import DEFAULT_STUCK_AFTER_S
from portlane.edge.console.service import ConsoleService

__all__ = ["CONSOLE", "DEMO_CONNECT_TIMEOUT_S", "demo_console"]

#: The demo's console is the site's ``clients`` entry of this id (role console): its key signs
#: ``replay_events`` (the demo gives it that command), under ``--secure`` its certificate is
#: ``units/console``.
CONSOLE = "console"
#: The demo waits this long for the console's broker connection (the broker is local).
DEMO_CONNECT_TIMEOUT_S = 30.0


def demo_console(
    site: Site,
    *,
    broker_url: str,
    broker_protocol: MqttProtocol | None,
    http: tuple[str, int] | None,
    db: str | Path | None,
    time_factor: float,
) -> ConsoleService:
    """The console as ``portlane demo --console`` runs it: demo users (password ``demo``) in a
    temporary users file, stuck thresholds scaled by the demo's time factor, the site's
    ``console`` client (its key, its certificate under ``--secure``), and no persistent session
    (a run never inherits another run's queue on an external broker: what the console misses it
    has replayed)."""
    path = Path(db) if db else Path(tempfile.mkdtemp(prefix="portlane-console-")) / "console.db"
    pw = hash_password("demo")
    users = {"supervisor": User(name="supervisor", role="supervisor", password=pw)}
    for a in site.agencies:
        users[a.value] = User(name=a.value, role="officer", agency=a, password=pw)
    return ConsoleService(
        site=site,
        db=path,
        broker_url=broker_url,
        broker_protocol=broker_protocol or "auto",
        http=http,
        users=users,
        stuck_after_s={k: max(v * time_factor, 5.0) for k, v in DEFAULT_STUCK_AFTER_S.items()},
        client_id=CONSOLE,
        connect_timeout_s=DEMO_CONNECT_TIMEOUT_S,
        persistent_session=False,
    )
