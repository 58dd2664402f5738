"""What the live picture's rules hand back for the caller to persist — an alarm raised or
cleared, a passage completed — and ``apply_effects``, which writes them to the store. ``key``
names an alarm's condition, so raising it twice is one alarm; a ``notice`` is raised already
cleared and waits only for acknowledgement."""

from __future__ import annotations

from dataclasses import dataclass

from .store import PassageRow, Store

__all__ = ["Clear", "Completed", "Effect", "Raise", "apply_effects"]


@dataclass(frozen=True, slots=True)
class Raise:
    key: str
    kind: str
    severity: str  # critical | warning | info
    unit: str | None
    passage_id: str | None
    agencies: tuple[str, ...]  # who sees and acknowledges it; () = site alarm (supervisors)
    title: str
    detail: str
    event_id: str | None
    ms: int
    notice: bool = False  # a one-off: stored already cleared, waits only for acknowledgement


@dataclass(frozen=True, slots=True)
class Clear:
    key: str
    ms: int


@dataclass(frozen=True, slots=True)
class Completed:
    row: PassageRow


Effect = Raise | Clear | Completed


def apply_effects(st: Store, effects: list[Effect]) -> None:
    """Write ``effects`` to the store, in order (inside the caller's transaction)."""
    for e in effects:
        if isinstance(e, Raise):
            st.raise_alarm(
                key=e.key,
                kind=e.kind,
                severity=e.severity,
                unit=e.unit,
                passage_id=e.passage_id,
                agencies=e.agencies,
                title=e.title,
                detail=e.detail,
                event_id=e.event_id,
                ms=e.ms,
            )
            if e.notice:
                st.clear_alarm(e.key, e.ms)
        elif isinstance(e, Clear):
            st.clear_alarm(e.key, e.ms)
        else:
            st.upsert_passage(e.row)
