"""What the lane last told its barrier to do, and whether the controller has confirmed it — pure.

A frame on a noisy RS-485 line can be lost, and a controller can ignore a command (a fault,
a manual mode). So a gate command is an *intent*: ``gate.moved`` is published and the light
turns green only when the controller reports the arm at its limit switch; an intent not
confirmed within ``gate_confirm_s`` is sent again with a doubling interval (capped at
``gate_retry_cap_s``, with no cap on the number of retries), and after the third attempt the
lane raises ``gate_not_opening`` / ``gate_not_closing`` so an operator knows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from portlane.edge.contract.events import GateMoved, LaneException

from .actions import Action, CloseGate, GateCause, OpenGate, Publish, SetLight
from .passage import LaneTimeouts, Sensors

__all__ = ["ALERT_AFTER_ATTEMPTS", "GateIntent", "GateTracker"]

#: Attempts after which an unconfirmed gate command becomes an operator-visible exception.
ALERT_AFTER_ATTEMPTS = 3


@dataclass
class GateIntent:
    want: Literal["open", "close"]
    cause: GateCause
    passage_id: str | None
    sent_at: float
    attempts: int = 1
    confirmed: bool = False
    alerted: bool = False


class GateTracker:
    def __init__(self, timeouts: LaneTimeouts) -> None:
        self.timeouts = timeouts
        self.intent: GateIntent | None = None

    @property
    def commanded(self) -> Literal["open", "close"] | None:
        return self.intent.want if self.intent else None

    @property
    def is_closed(self) -> bool:
        """Told to close and confirmed closed (or never told anything and found closed)."""
        i = self.intent
        return i is not None and i.want == "close" and i.confirmed

    def assume(self, want: Literal["open", "close"], *, cause: GateCause, now: float) -> None:
        """Adopt the position the controller reports (at start-up, or after a refused close)."""
        self.intent = GateIntent(want, cause, None, now, confirmed=True)

    def open(self, cause: GateCause, passage_id: str | None, now: float) -> list[Action]:
        self.intent = GateIntent("open", cause, passage_id, now)
        return [OpenGate(passage_id, cause)]

    def close(self, cause: GateCause, passage_id: str | None, now: float) -> list[Action]:
        self.intent = GateIntent("close", cause, passage_id, now)
        # Red before the arm comes down: nobody should start driving under a closing arm.
        return [SetLight("red"), CloseGate(passage_id, cause)]

    def on_sensors(self, s: Sensors) -> tuple[list[Action], Literal["opened", "closed"] | None]:
        i = self.intent
        if i is None or i.confirmed:
            return [], None
        if i.want == "open" and s.gate_open:
            i.confirmed = True
            moved = GateMoved(passage_id=i.passage_id, action="open", cause=i.cause)
            return [Publish("gate.moved", moved), SetLight("green")], "opened"
        if i.want == "close" and s.gate_closed:
            i.confirmed = True
            return [Publish("gate.moved", GateMoved(passage_id=i.passage_id, action="close", cause=i.cause))], "closed"
        return [], None

    def on_tick(self, now: float) -> list[Action]:
        i = self.intent
        if i is None or i.confirmed:
            return []
        t = self.timeouts
        wait = min(t.gate_confirm_s * 2 ** (i.attempts - 1), t.gate_retry_cap_s)
        if now - i.sent_at < wait:
            return []
        i.attempts += 1
        i.sent_at = now
        out: list[Action] = [OpenGate(i.passage_id, i.cause) if i.want == "open" else CloseGate(i.passage_id, i.cause)]
        if i.attempts >= ALERT_AFTER_ATTEMPTS and not i.alerted:
            i.alerted = True
            kind = "gate_not_opening" if i.want == "open" else "gate_not_closing"
            detail = f"the controller has not confirmed {i.want} after {i.attempts - 1} attempts; retrying"
            out.insert(0, Publish("lane.exception", LaneException(passage_id=i.passage_id, kind=kind, detail=detail)))
        return out
