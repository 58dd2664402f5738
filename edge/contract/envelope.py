"""CloudEvents 1.0 structured-mode JSON envelope with a per-unit monotonic ``seq``.

``seq`` is assigned by the durable outbox when the event is written to disk, so it strictly
increases per unit across restarts and has no gaps within one ``epoch``. The ``epoch`` (UNIX
time in milliseconds when the unit's outbox store was created, as Sparkplug's bdSeq) changes
only when the store is lost and recreated; ``seq`` restarts at 1 only with a new epoch. The
``id`` ``{site}/{unit}/{epoch}/{seq}`` is therefore never reused and stays the same when an
event is redelivered or replayed: a subscriber de-duplicates by ``id`` and detects gaps per
``(unit, epoch)`` — a new epoch is a stream restart, not a gap.

``sigkeyid``/``sig`` (optional extension attributes) sign the event: ``sig`` is a standard
base64 Ed25519 signature over the RFC 8785 canonical JSON of the whole envelope object
without ``sig`` (``sigkeyid`` included).

``audience`` (an extension attribute) lists the agencies entitled to see the event
(DESIGN §1: data shared, with conditions); empty means every agency of the site.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["MAX_EVENT_BYTES", "Envelope"]

#: Largest envelope a consumer reads, in bytes: the contract's biggest event (an identification
#: with its reads, an audit checkpoint) is a few kilobytes; anything much larger is garbage.
MAX_EVENT_BYTES = 256 * 1024


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: str = "1.0"
    id: str = Field(description="unique, stable across redelivery and replay: '{site}/{unit}/{epoch}/{seq}'")
    source: str = Field(description="'portlane://{site}/{unit}'")
    type: str = Field(description="'portlane.' + event type, e.g. 'portlane.passage.completed'")
    time: str = Field(description="RFC 3339 UTC time the event happened")
    subject: str | None = Field(None, description="the passage id when the event belongs to a passage")
    datacontenttype: str = "application/json"
    dataschema: str | None = None
    seq: int = Field(ge=1, description="per-unit monotonic sequence number, no gaps within an epoch")
    epoch: int = Field(
        0, ge=0, description="stream epoch: ms since 1970 when the unit's outbox store was created (0: before epochs)"
    )
    audience: tuple[str, ...] = Field((), description="agencies entitled to see the event; empty = all")
    data: dict[str, Any]
    sigkeyid: str | None = Field(None, description="key id of the signing unit (event signatures)")
    sig: str | None = Field(
        None, description="base64 Ed25519 signature over RFC 8785 JSON of the envelope without 'sig'"
    )

    def wire_bytes(self) -> bytes:
        """The envelope as it is published: absent fields left out, as the outbox signs it (a
        ``null`` the signature does not cover would make a consumer refuse it)."""
        return self.model_dump_json(exclude_none=True).encode()

    @property
    def event_type(self) -> str:
        return self.type.removeprefix("portlane.")
