"""Gaps in a unit's event stream, and the replay requests that fill them.

The ledger (``ingest.StreamLedger``) says which seqs of a stream ``(unit, epoch)`` are missing.
A missing seq may still be in flight — the unit's outbox re-sends unacknowledged events after
a reconnect — so the console waits ``GAP_GRACE_MS``, then asks the unit to replay the range
(a signed ``replay_events``, ``replay.py``), again after each of ``REPLAY_BACKOFF_MS``. A gap
that stays — the unit moved to a new epoch, the console has no key, every try was spent, or
two tries went unanswered — raises a ``gap`` alarm, cleared when the gap is filled.

``GapRecovery`` decides; the service sends the requests it returns (and counts them). Its state
per stream is saved with the stream (``Store.save_stream``), so a restarted console goes on
where it stopped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .effects import Clear, Effect, Raise
from .ingest import StreamLedger
from .replay import ReplayRequest, ReplayRequester
from .store import Store

__all__ = ["GAP_GRACE_MS", "REPLAY_BACKOFF_MS", "GapRecovery", "ReplayState"]

log = logging.getLogger(__name__)

#: A missing seq may still be in flight: the unit's outbox re-sends unacknowledged events
#: after a reconnect, within the MQTT link's backoff cap (5 s). Ask for replay after that.
GAP_GRACE_MS = 5_000
#: Replay retries: 5 s, 30 s, 2 min, 10 min after the previous request; then give up (alarm stays).
REPLAY_BACKOFF_MS = (5_000, 30_000, 120_000, 600_000)

Stream = tuple[str, int]  # (unit, epoch)


@dataclass
class ReplayState:
    """One stream's recovery: since when something is missing, the tries, the next one, and
    the unit's last answer."""

    missing_since_ms: int | None = None
    tries: int = 0
    next_ms: int = 0
    last: str | None = None


@dataclass
class GapRecovery:
    ledger: StreamLedger
    requester: ReplayRequester | None
    replays: dict[Stream, ReplayState] = field(default_factory=dict)
    #: Streams whose state changed since the last ``flush``.
    dirty: set[Stream] = field(default_factory=set)
    _pending: dict[str, Stream] = field(default_factory=dict)  # replay nonce -> stream
    _alarms: set[str] = field(default_factory=set)  # gap alarm keys raised

    def load(self, st: Store) -> None:
        """The ledger's streams, their recovery state and the raised gap alarms (a restart)."""
        self._alarms = {k for k in st.active_alarm_keys() if k.startswith("gap:")}
        for s, since, tries, nxt, last in st.load_streams():
            self.ledger.load([s])
            self.replays[(s.unit, s.epoch)] = ReplayState(since, tries, nxt, last)

    def missing(self, stream: Stream, now: int) -> None:
        """The ledger found a gap in ``stream``."""
        r = self.replays.setdefault(stream, ReplayState())
        if r.missing_since_ms is None:
            r.missing_since_ms = now

    def answered(self, correlation_id: str, ok: bool, reason: object) -> bool | None:
        """A unit's response: None if it answers no replay request of ours, else whether the
        replay was accepted."""
        stream = self._pending.pop(correlation_id, None)
        if stream is None:
            return None
        r = self.replays.setdefault(stream, ReplayState())
        r.last = "accepted" if ok else f"refused: {reason}"
        self.dirty.add(stream)
        return ok

    def flush(self, st: Store) -> None:
        """Save the state of the streams that changed (inside the caller's transaction)."""
        for key in sorted(self.dirty):
            s = self.ledger.stream(*key)
            if s is None:
                continue
            r = self.replays.setdefault(key, ReplayState())
            if not s.missing:
                r.missing_since_ms, r.tries, r.next_ms = None, 0, 0
            st.save_stream(s, missing_since_ms=r.missing_since_ms, tries=r.tries, next_ms=r.next_ms, last=r.last)
        self.dirty.clear()

    def schedule(self, now: int, *, connected: bool) -> tuple[list[Effect], list[ReplayRequest]]:
        """The alarms to raise or clear and the replay requests to send now."""
        out: list[Effect] = []
        requests: list[ReplayRequest] = []
        for (unit, epoch), s in list(self.ledger.streams.items()):
            key = f"gap:{unit}:{epoch}"
            r = self.replays.setdefault((unit, epoch), ReplayState())
            if not s.missing:
                if r.missing_since_ms is not None or r.tries:
                    r.missing_since_ms, r.tries, r.next_ms = None, 0, 0
                    self.dirty.add((unit, epoch))
                if key in self._alarms:
                    self._alarms.discard(key)
                    out.append(Clear(key, now))
                continue
            if r.missing_since_ms is None:
                r.missing_since_ms = now
            if now - r.missing_since_ms < GAP_GRACE_MS:
                continue
            lo, hi = s.missing[0][0], s.missing[-1][1]
            current = epoch == self.ledger.latest_epoch.get(unit, epoch)
            why = None
            if not current:
                why = "the unit has moved to a new epoch: these events cannot be replayed"
            elif self.requester is None:
                why = "the console has no signing key, so it cannot ask for a replay"
            elif r.tries >= len(REPLAY_BACKOFF_MS):
                why = f"asked {r.tries} times; last answer: {r.last or 'none'}"
            elif now >= r.next_ms and connected:
                req = self.requester.request(unit, lo, hi)
                requests.append(req)
                self._pending[req.nonce] = (unit, epoch)
                r.next_ms = now + REPLAY_BACKOFF_MS[r.tries]
                r.tries += 1
                r.last = r.last or "requested"
                self.dirty.add((unit, epoch))
                log.info("asked %s to replay seq %s–%s (try %s)", unit, lo, hi, r.tries)
            if why or r.tries >= 2:
                self._alarms.add(key)
                out.append(
                    Raise(
                        key,
                        "gap",
                        "warning",
                        unit,
                        None,
                        (),
                        f"{unit}: {s.missing_count()} events missing (seq {lo}–{hi}, epoch {epoch})",
                        why or f"replay requested {r.tries} times; last answer: {r.last or 'none'}",
                        None,
                        now,
                    )
                )
        return out, requests
