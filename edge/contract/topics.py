"""Topic layout, v1.

    portlane/v1/{site}/{unit}/event/{type}     events, QoS 1, CloudEvents JSON (unit = lane or scanner id)
    portlane/v1/{site}/{unit}/status           retained status; the broker publishes the last will
                                               {"state": "offline"} when the daemon vanishes
    portlane/v1/{site}/{unit}/cmd/{name}       signed commands from the central platform, QoS 1
    portlane/v1/{site}/{unit}/response         command responses, carrying the command's nonce as
                                               correlation id (MQTT 5: also the Correlation Data
                                               property; the response topic is also set as the
                                               Response Topic property of the command)
    portlane/v1/{site}/{unit}/checkpoint       the unit's latest signed audit checkpoint, retained

The platform scales out with shared subscriptions, e.g.
``$share/platform/portlane/v1/+/+/event/#``; events carry stable ids for de-duplication.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PREFIX", "Topics"]

PREFIX = "portlane/v1"


@dataclass(frozen=True, slots=True)
class Topics:
    site: str
    unit: str

    @property
    def base(self) -> str:
        return f"{PREFIX}/{self.site}/{self.unit}"

    def event(self, type_: str) -> str:
        return f"{self.base}/event/{type_}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    def cmd(self, name: str) -> str:
        return f"{self.base}/cmd/{name}"

    @property
    def cmd_filter(self) -> str:
        return f"{self.base}/cmd/+"

    @property
    def response(self) -> str:
        return f"{self.base}/response"

    @property
    def checkpoint(self) -> str:
        return f"{self.base}/checkpoint"

    @staticmethod
    def all_events(site: str, unit: str = "+") -> str:
        return f"{PREFIX}/{site}/{unit}/event/#"

    @staticmethod
    def all_status(site: str) -> str:
        """Every unit's retained status on the site."""
        return f"{PREFIX}/{site}/+/status"

    @staticmethod
    def all_responses(site: str) -> str:
        """Every unit's command responses on the site."""
        return f"{PREFIX}/{site}/+/response"

    @staticmethod
    def parse(topic: str) -> tuple[str, str, str, str]:
        """Split a v1 topic into (site, unit, kind, rest); raises ValueError if it is not one."""
        parts = topic.split("/")
        if len(parts) < 5 or "/".join(parts[:2]) != PREFIX:
            raise ValueError(f"not a portlane v1 topic: {topic!r}")
        return parts[2], parts[3], parts[4], "/".join(parts[5:])
