"""RFC 3339 timestamps as the contract writes them: UTC, milliseconds, ``Z`` — one home.

Events, signed commands and audit entries all use ``YYYY-MM-DDTHH:MM:SS.mmmZ``. Parsing is
strict (UTC ``Z`` only) because a signed command's validity window depends on it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

__all__ = ["format_rfc3339", "parse_rfc3339", "rfc3339"]

_RFC3339_UTC = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$")


def format_rfc3339(dt: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` in UTC. ``dt`` must be timezone-aware."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime; pass an aware one (UTC)")
    u = dt.astimezone(UTC)
    return u.strftime("%Y-%m-%dT%H:%M:%S.") + f"{u.microsecond // 1000:03d}Z"


def rfc3339(ts: float) -> str:
    """A UNIX timestamp in the contract's form."""
    return format_rfc3339(datetime.fromtimestamp(ts, tz=UTC))


def parse_rfc3339(s: str) -> datetime:
    """Parse an RFC 3339 UTC timestamp ending in ``Z`` (fractions beyond µs are truncated)."""
    m = _RFC3339_UTC.fullmatch(s)
    if not m:
        raise ValueError(f"not an RFC 3339 UTC timestamp (YYYY-MM-DDTHH:MM:SS[.f]Z): {s!r}")
    y, mo, d, h, mi, sec, frac = m.groups()
    us = int((frac or "0")[:6].ljust(6, "0"))
    return datetime(int(y), int(mo), int(d), int(h), int(mi), int(sec), us, tzinfo=UTC)
