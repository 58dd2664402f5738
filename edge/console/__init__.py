"""The site console: a consumer of the MQTT contract on the consumer library, and what people look at.

``portlane console serve`` reads a site through :class:`portlane.edge.client.SiteClient` — the
one home for verification against the site's keys, de-duplication, gaps and signed replays —
stores what the library verified in SQLite, and serves a web page: the lanes live, the shared
scanner, alarms with acknowledgement, passage detail, and clearance-time analytics (通关时效) —
the same figures as ``portlane report clearance``. Unsigned, forged and malformed input is a
site alarm, never a fact; a unit is online, offline or closed only on its signed status.

Layers inside the package, each module one job::

    picture.py      the live picture's state: lanes, passages, the shared scanner, their views — pure
    live.py         the alarm rules that move the picture, fed by verified events and unit views — pure
    cargo.py        the rules for radiation alarms, seals and pre-decisions (issues 20, 21) — pure
    findings.py     the console's own findings from the library: refused input, gaps, anomalies — pure
    effects.py      what the rules hand back (alarm raised/cleared, passage completed), and
                    writing it to the store
    store.py        SQLite (WAL): events, passages, the library's ledger, units, the schema
    store_alarms.py the alarm and acknowledgement tables (a part of the store)
    analytics.py    clearance-time percentiles, one function for the page and the CLI
    auth.py         users file (scrypt), sessions, roles, sign-in throttling
    config.py       the console's configuration file
    web.py          aiohttp application: pages, JSON API, server-sent events; it sees the
                    service only as the ``Console`` protocol it declares (no import cycle)
    service.py      ConsoleService: the library's client and everything above, as one async
                    context manager
    daemon.py       ``portlane console serve``: the service under systemd

The demo's console (users, thresholds, keys) is ``portlane.edge.demo.console``.

Its exceptions (``ConsoleError``: ``UsersFileError``, ``ConsoleStoreError``) are in
``portlane.edge.errors``.

``aiohttp`` (the ``console`` extra) is imported only by ``web.py`` and ``service.py``.
"""

from __future__ import annotations
