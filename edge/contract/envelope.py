"""CloudEvents 1.0 structured-mode JSON envelope with a per-unit monotonic ``seq``.

``seq`` is assigned by the durable outbox when the event is written to disk, so it strictly
increases per lane across restarts and has no gaps; ``id`` is ``{source}#{seq}``-stable, which
lets a subscriber de-duplicate redelivered events.

``audience`` (an extension attribute) lists the agencies entitled to see the event
(DESIGN §1: data shared, with conditions); empty means every agency of the site.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Envelope"]


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: str = "1.0"
    id: str = Field(description="unique and stable across redelivery: '{site}/{unit}/{seq}'")
    source: str = Field(description="'portlane://{site}/{unit}'")
    type: str = Field(description="'portlane.' + event type, e.g. 'portlane.passage.completed'")
    time: str = Field(description="RFC 3339 UTC time the event happened")
    subject: str | None = Field(None, description="the passage id when the event belongs to a passage")
    datacontenttype: str = "application/json"
    dataschema: str | None = None
    seq: int = Field(ge=1, description="per-unit monotonic sequence number, no gaps")
    audience: tuple[str, ...] = Field((), description="agencies entitled to see the event; empty = all")
    data: dict[str, Any]

    @property
    def event_type(self) -> str:
        return self.type.removeprefix("portlane.")
