"""The site console: the reference consumer of the MQTT contract, and what people look at.

``portlane console serve`` subscribes to a site's events and retained status (through
:class:`portlane.edge.delivery.mqtt.MqttLink`), de-duplicates them by id, detects ``seq``
gaps per ``(unit, epoch)`` and asks the unit to replay them (signed ``replay_events``),
verifies event signatures when events carry them, stores everything in SQLite, and serves
a web page: the lanes live, the shared scanner, alarms with acknowledgement, passage
detail, and clearance-time analytics (通关时效) — the same figures as
``portlane report clearance``.

Layers inside the package, each module one job::

    ingest.py     envelope parsing and the stream ledger (dedupe, gaps, epochs) — pure
    picture.py    the live picture's state: lanes, passages, the shared scanner, their views — pure
    live.py       the alarm rules that move the picture, fed by events — pure
    effects.py    what the rules hand back (alarm raised/cleared, passage completed), and
                  writing it to the store
    store.py      SQLite (WAL): events, passages, streams, gaps, alarms, acknowledgements
    gaps.py       gaps per stream: when to ask for a replay, when to raise the gap alarm
    analytics.py  clearance-time percentiles, one function for the page and the CLI
    signatures.py event-signature verification (adapter onto the trust layer)
    replay.py     signed replay_events requests
    auth.py       users file (scrypt), sessions, roles
    config.py     the console's configuration file
    web.py        aiohttp application: pages, JSON API, server-sent events; it sees the
                  service only as the ``Console`` protocol it declares (no import cycle)
    service.py    ConsoleService: everything above, as one async context manager
    daemon.py     ``portlane console serve``: the service under systemd
    errors.py     the console's exceptions (the tree below)

The demo's console (users, thresholds, keys) is ``portlane.edge.demo.console``.

Its exceptions (``ConsoleError``: ``UsersFileError``, ``EventRejectedError``,
``ConsoleStoreError``) are in ``portlane.edge.errors``.

``aiohttp`` (the ``console`` extra) is imported only by ``web.py`` and ``service.py``.
"""

from __future__ import annotations
