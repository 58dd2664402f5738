"""Reading the lane logic's actions in tests: their kinds in order, and the events they publish."""

from __future__ import annotations

from typing import Any

from portlane.edge.lane.actions import Action, Audit, CloseGate, Identify, OpenGate, Publish


def types(actions: list[Action]) -> list[str]:
    """Event types for ``Publish``, ``open``/``close``/``identify``/``audit``, else the class name."""
    names = {OpenGate: "open", CloseGate: "close", Identify: "identify", Audit: "audit"}
    return [a.type if isinstance(a, Publish) else names.get(type(a), type(a).__name__) for a in actions]


def published(actions: list[Action], type_: str) -> list[dict[str, Any]]:
    """The ``data`` of every ``type_`` event among ``actions``."""
    return [a.data.model_dump() for a in actions if isinstance(a, Publish) and a.type == type_]
