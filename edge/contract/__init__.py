"""The MQTT contract, version 1: topics, the CloudEvents envelope and the payload models.

The AsyncAPI document in ``docs/asyncapi.yaml`` is generated from these models
(``python -m portlane.edge.contract.asyncapi``); a test fails when it is stale.
"""

from .envelope import Envelope
from .times import format_rfc3339, parse_rfc3339, rfc3339
from .topics import Topics

__all__ = ["Envelope", "Topics", "format_rfc3339", "parse_rfc3339", "rfc3339"]
