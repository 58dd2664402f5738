"""The platform's side of the contract: a consumer library for one site.

What a central platform, the site console, the platform simulator and a third party's consumer
use to read a site's lanes and scanners and to command them::

    from portlane.edge.client import SiteClient
    from portlane.edge.config import load_site

    site = load_site("site.yaml")                       # the site's keys: who may sign what
    async with SiteClient.from_site(site, unit="console") as client:
        async for event in client.events():
            ...                                          # verified, once, typed (event.payload)

* every envelope and every status is verified against the site's keys before its data is read
  (``portlane.edge.trust.events.verify_message``); unsigned or unverifiable input is counted,
  never believed — a unit is online, offline or closed only on its signed ``unit.status``;
* de-duplication by id and signature, gaps per ``(unit, epoch)``, signed ``replay_events`` with
  capped jittered backoff;
* commands signed with the client's key, matched to their answers by nonce, re-signed when
  unanswered;
* bounded memory and work per unit and in total; garbage never raises out of it.

Modules::

    streams.py   the ledger of each unit's streams: seen ids, gaps, epochs
    consumer.py  the sans-I/O core: messages in, typed outputs out
    outputs.py   what the consumer hands out (events, unit changes, answers, refusals)
    client.py    ``SiteClient``: the MQTT connection, replays, commands

Layers: :mod:`.streams` (the ledger) → :mod:`.consumer` (sans-I/O core: messages in, typed
outputs out, :mod:`.outputs`) → :mod:`.client` (the MQTT connection, commands). It sits on the
contract, delivery's MQTT bridge and trust; the console, the demo and the CLI may use it.
"""

from __future__ import annotations

from .client import (
    ClientError,
    ClientStateError,
    CommandResult,
    CommandTimeoutError,
    NoSignerError,
    SiteClient,
)
from .consumer import SiteConsumer, subscriptions
from .outputs import (
    Anomaly,
    CommandAnswered,
    ConsumerStats,
    GapAbandoned,
    Output,
    Refusal,
    ReplayNeed,
    SiteEvent,
    StreamView,
    UnitChanged,
    UnitState,
    UnitView,
)

__all__ = [
    "Anomaly",
    "ClientError",
    "ClientStateError",
    "CommandAnswered",
    "CommandResult",
    "CommandTimeoutError",
    "ConsumerStats",
    "GapAbandoned",
    "NoSignerError",
    "Output",
    "Refusal",
    "ReplayNeed",
    "SiteClient",
    "SiteConsumer",
    "SiteEvent",
    "StreamView",
    "UnitChanged",
    "UnitState",
    "UnitView",
    "subscriptions",
]
