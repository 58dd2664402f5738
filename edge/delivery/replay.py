"""The outbox side of the ``replay_events`` command (contract: ``ReplayEventsArgs`` in
``edge/contract/commands.py``, and ``docs/asyncapi.yaml``).

A platform that finds a gap in a unit's stream (by seq, per epoch) sends the signed command
``replay_events`` with ``{"from_seq": int, "to_seq": int | null}`` to
``portlane/v1/{site}/{unit}/cmd/replay_events``; a technician runs ``portlane outbox replay
--from SEQ [--to SEQ]``. Both end here, after the caller verified the command (signature,
expiry, nonce) or the operator (and audited it)::

    result = replay_command(daemon.outbox, cmd.args)   # ReplayArgsError -> reject as malformed
    # respond ok, with ``result`` for the record

The events come again with their original ids, seqs and bytes; what the retention window no
longer holds is reported (``not_retained``), not silently skipped.
"""

from __future__ import annotations

from typing import Any

from portlane.edge.delivery.outbox import Outbox
from portlane.edge.errors import ReplayArgsError

__all__ = ["replay_command"]


def replay_command(outbox: Outbox, args: dict[str, Any]) -> dict[str, Any]:
    """Validate ``args``, re-queue the retained events in the range, and say what happened:
    ``{"replayed": n, "from_seq", "to_seq", "epoch", "last_seq", "first_retained_seq",
    "not_retained": [lo, hi] | None}``."""
    unknown = set(args) - {"from_seq", "to_seq"}
    if unknown:
        raise ReplayArgsError(f"replay_events: unknown arguments {sorted(unknown)}")
    lo, hi = args.get("from_seq"), args.get("to_seq")
    if not isinstance(lo, int) or isinstance(lo, bool) or lo < 1:
        raise ReplayArgsError(f"replay_events: from_seq must be an integer >= 1, got {lo!r}")
    if hi is not None and (not isinstance(hi, int) or isinstance(hi, bool) or hi < lo):
        raise ReplayArgsError(f"replay_events: to_seq must be null or an integer >= from_seq, got {hi!r}")
    if lo > outbox.last_seq:
        raise ReplayArgsError(f"replay_events: from_seq {lo} is beyond the last seq {outbox.last_seq}")
    n = outbox.replay(lo, hi)
    st = outbox.stats()
    first = st.first_retained_seq
    top = outbox.last_seq if hi is None else min(hi, outbox.last_seq)
    # Below the oldest event still held (retained or queued) nothing is left to send.
    held = [x for x in (first, _first_undelivered(outbox)) if x is not None]
    held_from = min(held) if held else None
    gone = None
    if held_from is None:
        gone = [lo, top]
    elif lo < held_from:
        gone = [lo, min(top, held_from - 1)]
    return {
        "replayed": n,
        "from_seq": lo,
        "to_seq": hi,
        "epoch": outbox.epoch,
        "last_seq": outbox.last_seq,
        "first_retained_seq": first,
        "not_retained": gone,
    }


def _first_undelivered(outbox: Outbox) -> int | None:
    rows = outbox.peek(limit=1)
    return rows[0].seq if rows else None
