"""Another unit's events, verified, and applied once and in order per passage.

The broker may deliver a unit's event more than once (QoS 1 re-delivery, the outbox re-sending
its unacknowledged prefix after a reconnect) and out of order (a replay a consumer asked for
arrives after newer events). A lane that took a replayed ``scan.started`` after its
``scan.completed`` would move the passage back to scanning and wait for ever. So, after the
signature and authority check (:class:`~portlane.edge.trust.events.PeerEvents`):

* an event about a passage (its envelope's ``subject``) is applied only if its
  ``(epoch, seq)`` is newer than every event of that unit about that passage applied before —
  a re-delivered or replayed older one is dropped (``stale``), an exact repeat too
  (``duplicates``);
* an event about no passage is applied once per ``(unit, epoch, seq)``.

Events about *different* passages are independent: a late event about passage A is applied
even after newer events about passage B (ordering across passages would drop a result a lane
is still waiting for). Memory is bounded (least recently used passages are forgotten first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from portlane.edge.trust.events import PeerEvents, VerifiedEvent

__all__ = ["SUBJECTS_REMEMBERED", "PeerIntake"]

#: Passages (and subject-less events) remembered per intake. A lane's scanner serves a handful
#: of lanes at ~1 passage a minute each; 4096 covers days, and a forgotten passage long settled
#: is never waited on again.
SUBJECTS_REMEMBERED = 4096


def _position(envelope: Mapping[str, Any]) -> tuple[int, int] | None:
    seq, epoch = envelope.get("seq"), envelope.get("epoch", 0)
    if type(seq) is not int or type(epoch) is not int or seq < 1 or epoch < 0:
        return None
    return epoch, seq


class PeerIntake:
    def __init__(self, peers: PeerEvents, *, remember: int = SUBJECTS_REMEMBERED) -> None:
        self.peers = peers
        self.remember = remember
        self.stale = 0  # older than an event already applied for the same passage
        self.duplicates = 0  # the same event again
        self._newest: OrderedDict[tuple[str, str], tuple[int, int]] = OrderedDict()
        self._seen: OrderedDict[tuple[str, int, int], None] = OrderedDict()

    def accept(self, payload: bytes, *, unit: str, event_type: str, lane: str | None = None) -> VerifiedEvent | None:
        """The verified event to apply, or None: refused (see ``PeerEvents``; ``lane``: the lane
        level of a per-lane scan topic, which the event must name), a repeat, or older than what
        was applied for its passage."""
        verified = self.peers.accept(payload, unit=unit, event_type=event_type, lane=lane)
        if verified is None:
            return None
        env = verified.envelope
        position = _position(env)
        if position is None:
            self.peers.refuse("malformed", verified.key_id, event_type, "no usable seq/epoch")
            return None
        subject = env.get("subject")
        if isinstance(subject, str):
            key = (unit, subject)
            newest = self._newest.get(key)
            if newest is not None and position <= newest:
                if position == newest:
                    self.duplicates += 1
                else:
                    self.stale += 1
                return None
            self._newest[key] = position
            self._newest.move_to_end(key)
            if len(self._newest) > self.remember:
                self._newest.popitem(last=False)
            return verified
        seen = (unit, *position)
        if seen in self._seen:
            self.duplicates += 1
            return None
        self._seen[seen] = None
        if len(self._seen) > self.remember:
            self._seen.popitem(last=False)
        return verified

    @property
    def refused(self) -> dict[str, int]:
        return self.peers.refused
