"""The console's own findings about what it reads, from the consumer library (``portlane.edge.client``):
site alarms for supervisors, never facts.

* ``signature`` — input the library refused before reading it: unsigned, forged (a key the site
  does not name, a signature that does not verify, a key speaking for another unit or on another
  unit's topic), one per reason, with the count and the newest topics; cleared after
  :data:`REFUSAL_QUIET_MS` without another. Also units the site file gives no key: nothing they
  publish can be believed.
* ``contract`` — refused as malformed (not JSON, a bad topic or unit id, oversize), or signed by
  a trusted key and yet breaking the contract (``Anomaly``: two events under one id, data that
  does not match its model).
* ``gap`` — events still missing: once a replay request is refused, once they have been missing
  :data:`GAP_ALARM_AFTER_MS` (the library asks again with backoff), or at once when the console
  has no key to ask with; cleared when they arrive. Events the library gave up on
  (``GapAbandoned``) are a notice: lost.
* ``stream_restart`` — a unit moved to a new stream epoch (its outbox store was recreated).

Pure: library outputs and counters in, effects out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from portlane.edge.client import Anomaly, CommandAnswered, ConsumerStats, GapAbandoned, Refusal, SiteEvent, StreamView

from .effects import Clear, Effect, Raise

__all__ = ["GAP_ALARM_AFTER_MS", "REFUSAL_QUIET_MS", "SIGNATURE_REASONS", "Findings"]

#: A refusal alarm clears after this long without another refusal of its reason.
REFUSAL_QUIET_MS = 600_000
#: Events missing this long (grace, a first replay request and its backoff) raise a gap alarm.
GAP_ALARM_AFTER_MS = 30_000
#: Refusal reasons that mean someone is forging or replaying (``signature``, critical); the rest
#: are garbage (``contract``, warning).
SIGNATURE_REASONS = frozenset(
    {"unsigned", "unsigned_status", "unknown_key", "bad_signature", "not_authorised", "topic_mismatch", "stale_epoch"}
)


class Findings:
    def __init__(self, *, can_ask: bool, gap_alarm_after_ms: int = GAP_ALARM_AFTER_MS) -> None:
        self.can_ask = can_ask
        self.gap_alarm_after_ms = gap_alarm_after_ms
        self.epochs: dict[str, int] = {}  # unit -> newest epoch seen
        self.answers: dict[str, str] = {}  # unit -> its last answer to a replay request
        self.replay_refused = 0
        self._refused: dict[str, int] = {}  # reason -> count already raised
        self._refused_total = 0
        self._refusal_ms: dict[str, int] = {}  # reason -> last time it grew
        self._missing_since: dict[tuple[str, int], int] = {}
        self._gaps: set[str] = set()  # gap alarm keys raised

    def load(self, active_alarm_keys: Iterable[str], streams: Iterable[StreamView]) -> None:
        """A restart: the gap alarms raised before, the epochs of the saved ledger."""
        self._gaps = {k for k in active_alarm_keys if k.startswith("gap:")}
        for v in streams:
            self.epochs[v.unit] = max(self.epochs.get(v.unit, v.epoch), v.epoch)

    @staticmethod
    def unkeyed(units: Sequence[str], ms: int) -> list[Effect]:
        if not units:
            return []
        names = ", ".join(units)
        detail = f"the site file names no signing key for {names}: none of their events or status is believed"
        return [Raise("unkeyed", "signature", "critical", None, None, (), "units without a key", detail, None, ms)]

    # -- what the library hands out ---------------------------------------------------------

    def event(self, ev: SiteEvent, ms: int) -> list[Effect]:
        """A verified event: a newer epoch than the unit's last is a stream restart."""
        known = self.epochs.get(ev.unit)
        if known is not None and ev.epoch <= known:
            return []
        self.epochs[ev.unit] = ev.epoch
        if known is None:
            return []
        return [
            Raise(
                f"restart:{ev.unit}:{ev.epoch}",
                "stream_restart",
                "info",
                ev.unit,
                None,
                (),
                f"{ev.unit}: event stream restarted (epoch {ev.epoch})",
                f"its outbox store was recreated; epoch {known} ended",
                ev.id,
                ms,
                notice=True,
            )
        ]

    def output(self, out: Anomaly | GapAbandoned | CommandAnswered, ms: int) -> list[Effect]:
        match out:
            case Anomaly(kind=kind, unit=unit, key_id=key_id, detail=detail):
                title = f"{unit}: two events signed under one id" if kind == "conflict" else f"{unit}: {kind}"
                what = f"signed by {key_id}: {detail}"
                return [Raise(f"contract:{unit}", "contract", "warning", unit, None, (), title, what[:300], None, ms)]
            case GapAbandoned(unit=unit, epoch=epoch, count=count, why=why):
                if not count:
                    return []
                title = f"{unit}: {count} events lost (epoch {epoch})"
                why_text = {
                    "stream_restarted": "the unit moved to a new epoch: they cannot be replayed",
                    "no_answer": f"no replay brought them (last answer: {self.answers.get(unit, 'none')})",
                    "too_many_gaps": "too many gaps to keep",
                    "not_replayable": "this unit does not replay",
                }.get(why, why)
                key = f"lost:{unit}:{epoch}:{ms}"
                return [Raise(key, "gap", "warning", unit, None, (), title, why_text, None, ms, notice=True)]
            case CommandAnswered(unit=unit, command="replay_events", ok=ok, reason=reason):
                self.answers[unit] = "accepted" if ok else f"refused: {reason}"
                self.replay_refused += not ok
        return []

    # -- on the tick --------------------------------------------------------------------------

    def refusals(self, stats: ConsumerStats, recent: Sequence[Refusal], ms: int) -> tuple[list[Effect], list[Refusal]]:
        """Alarms for what the library refused since the last call, and those refusals (the newest
        kept by the library) for the ``rejected`` table."""
        out: list[Effect] = []
        for reason, n in sorted(stats.refused.items()):
            if n > self._refused.get(reason, 0):
                self._refused[reason] = n
                self._refusal_ms[reason] = ms
                topics = sorted({r.topic for r in recent if r.reason == reason})[-3:]
                signature = reason in SIGNATURE_REASONS
                out.append(
                    Raise(
                        f"refused:{reason}",
                        "signature" if signature else "contract",
                        "critical" if signature else "warning",
                        None,
                        None,
                        (),
                        f"{n} messages refused: {reason.replace('_', ' ')}",
                        f"not believed, not stored; newest on {', '.join(topics) or '?'}"[:300],
                        None,
                        ms,
                    )
                )
        for reason, last in list(self._refusal_ms.items()):
            if ms - last >= REFUSAL_QUIET_MS:
                del self._refusal_ms[reason]
                out.append(Clear(f"refused:{reason}", ms))
        total = stats.refused_total
        new = list(recent)[-min(len(recent), total - self._refused_total) :] if total > self._refused_total else []
        self._refused_total = total
        return out, new

    def gaps(self, streams: Sequence[StreamView], attempts: Callable[[str, int], int], ms: int) -> list[Effect]:
        """Gap alarms for the library's streams with events still missing; cleared when filled."""
        out: list[Effect] = []
        seen: set[tuple[str, int]] = set()
        for v in streams:
            key, stream = f"gap:{v.unit}:{v.epoch}", (v.unit, v.epoch)
            if not v.missing:
                if key in self._gaps:
                    self._gaps.discard(key)
                    out.append(Clear(key, ms))
                continue
            seen.add(stream)
            since = self._missing_since.setdefault(stream, ms)
            tries = attempts(v.unit, v.epoch)
            answer = self.answers.get(v.unit)
            if not self.can_ask:
                why = "the console has no signing key, so it cannot ask for a replay"
            elif answer is not None and answer.startswith("refused"):
                why = f"asked {tries} times; the unit {answer}"
            elif ms - since >= self.gap_alarm_after_ms:
                why = f"asked {tries} times; last answer: {answer or 'none'}"
            else:
                continue
            lo, hi = v.missing[0][0], v.missing[-1][1]
            self._gaps.add(key)
            title = f"{v.unit}: {v.missing_count} events missing (seq {lo}–{hi}, epoch {v.epoch})"
            out.append(Raise(key, "gap", "warning", v.unit, None, (), title, why, None, ms))
        for stream in set(self._missing_since) - seen:
            del self._missing_since[stream]
        for key in sorted(self._gaps - {f"gap:{u}:{e}" for u, e in seen}):  # filled, or the stream is gone
            self._gaps.discard(key)
            out.append(Clear(key, ms))
        return out
