"""The MQTT contract, version 1: topics, the CloudEvents envelope and the payload models.

The AsyncAPI document in ``docs/asyncapi.yaml`` is generated from these models
(``python -m portlane.edge.contract.asyncapi``); a test fails when it is stale.

Modules::

    topics.py      topic layout (``Topics``): events, status, commands, responses, checkpoints
    envelope.py    CloudEvents 1.0 envelope with the unit's ``seq`` and ``epoch``
    events.py      event payloads, one model per event type (``EVENTS``)
    commands.py    the signed command and each command's ``args`` model
    vocabulary.py  words commands and events share: ``Verdict``, ``LOW_CONFIDENCE``
    canonical.py   canonical JSON (RFC 8785) and strict base64: what signatures cover
    times.py       RFC 3339 timestamps as the contract writes them
    asyncapi.py    the AsyncAPI 3.0 document, generated from the models
    n42.py         one radiation-portal occupancy as an ANSI N42.42-2012 document
"""

from .envelope import Envelope
from .times import format_rfc3339, parse_rfc3339, rfc3339
from .topics import Topics

__all__ = ["Envelope", "Topics", "format_rfc3339", "parse_rfc3339", "rfc3339"]
