"""Topic layout, v1.

    portlane/v1/{site}/{unit}/event/{type}     events, QoS 1, CloudEvents JSON (unit = lane or scanner id)
    portlane/v1/{site}/{scanner}/event/{type}/{lane}
                                               a scanner's scan.* events for one lane's passages
                                               (per-lane scan topics, see below)
    portlane/v1/{site}/{unit}/status           retained: the envelope of the unit's newest signed
                                               ``unit.status`` event; the broker publishes the
                                               unsigned last will {"state": "offline", ...} when
                                               the daemon vanishes
    portlane/v1/{site}/{unit}/cmd/{name}       signed commands from the central platform, QoS 1
    portlane/v1/{site}/{unit}/response         command responses, carrying the command's nonce as
                                               correlation id (MQTT 5: also the Correlation Data
                                               property; the response topic is also set as the
                                               Response Topic property of the command)
    portlane/v1/{site}/{unit}/checkpoint       the unit's latest signed audit checkpoint, retained

The platform scales out with shared subscriptions, e.g.
``$share/platform/portlane/v1/+/+/event/#``; events carry stable ids for de-duplication.

**Per-lane scan topics.** The policies share data with conditions: a lane may read the scan
results of its own passages, not its neighbours'. So a scanner publishes each ``scan.*`` event
on ``{base}/event/{type}/{lane}`` (:meth:`Topics.lane_event`, ``lane`` = the event's
``data.lane``), a lane subscribes to ``{scanner base}/event/+/{lane}`` only
(:meth:`Topics.lane_scans`) and the broker ACL lets it read nothing else of the scanner's.
Consumers that read everything (``…/+/event/#``) get both forms; the event type is the first
level after ``event`` (:meth:`Topics.parse_event`), and a receiver checks, after the signature,
that a scoped event names the lane of its topic. :data:`SCAN_TOPICS_PER_LANE` says whether the
site's scanners publish so yet: the broker ACL (``trust.pki.render_acl``) follows it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LANE_SCOPED_EVENTS", "PREFIX", "SCAN_TOPICS_PER_LANE", "Topics"]

PREFIX = "portlane/v1"
#: Event types a scanner publishes per lane (``{base}/event/{type}/{lane}``).
LANE_SCOPED_EVENTS = frozenset({"scan.queued", "scan.started", "scan.completed", "scan.failed"})
#: Whether scanners publish their scan events on per-lane topics: they do (the scanner's executor,
#: issue 23), so the rendered ACL gives each lane only its own scan topics
#: (``{scanner}/event/+/{lane}``). False would give lanes the scanner's whole event tree.
SCAN_TOPICS_PER_LANE = True


@dataclass(frozen=True, slots=True)
class Topics:
    site: str
    unit: str

    @property
    def base(self) -> str:
        return f"{PREFIX}/{self.site}/{self.unit}"

    def event(self, type_: str) -> str:
        return f"{self.base}/event/{type_}"

    def lane_event(self, type_: str, lane: str) -> str:
        """Where a scanner publishes a ``scan.*`` event about one of ``lane``'s passages."""
        return f"{self.base}/event/{type_}/{lane}"

    def lane_scans(self, lane: str) -> str:
        """The filter by which ``lane`` reads this scanner's scan events about its passages."""
        return f"{self.base}/event/+/{lane}"

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
    def parse_event(rest: str) -> tuple[str, str | None]:
        """The ``rest`` of an event topic (:meth:`parse`) as ``(event type, lane scope or None)``;
        raises ValueError for anything else (empty levels, more than one scope level)."""
        type_, sep, scope = rest.partition("/")
        if not type_ or (sep and (not scope or "/" in scope)):
            raise ValueError(f"not an event type [/lane]: {rest!r}")
        return type_, (scope if sep else None)

    @staticmethod
    def parse(topic: str) -> tuple[str, str, str, str]:
        """Split a v1 topic into (site, unit, kind, rest); raises ValueError if it is not one."""
        parts = topic.split("/")
        if len(parts) < 5 or "/".join(parts[:2]) != PREFIX:
            raise ValueError(f"not a portlane v1 topic: {topic!r}")
        return parts[2], parts[3], parts[4], "/".join(parts[5:])
