"""The action every unit's pure logic shares: publish one event.

A lane's and a scanner's logic return small frozen actions (``lane/actions.py``,
``scanner/logic.py``); writing an event is common to both, so it is defined once, here.
"""

from __future__ import annotations

from dataclasses import dataclass

from portlane.edge.contract.events import EVENTS, EventType
from pydantic import BaseModel

__all__ = ["Publish"]


@dataclass(frozen=True, slots=True)
class Publish:
    """Write one event (a contract model) to the durable outbox."""

    type: EventType
    data: BaseModel

    def __post_init__(self) -> None:
        model = EVENTS[self.type]
        if not isinstance(self.data, model):
            raise TypeError(f"{self.type} carries {model.__name__}, not {type(self.data).__name__}")

    @property
    def subject(self) -> str | None:
        pid = getattr(self.data, "passage_id", None)
        return pid if isinstance(pid, str) else None
