"""A bounded inbox for what a daemon receives: oldest dropped first, never unbounded.

The broker is not a trust boundary: anyone on it can flood a lane's command topic. A FIFO that
grows without bound costs memory, and one that is merely bounded makes a valid release wait
behind every forgery already queued (each costs a signature check). Dropping the *oldest*
message when full bounds both: the work between a valid command and the gate is at most
``capacity`` checks, whatever came before it, and the platform re-sends a command that went
unanswered. Drops are counted.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

__all__ = ["Inbox"]

T = TypeVar("T")


class Inbox(Generic[T]):
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("an inbox holds at least one message")
        self.capacity = capacity
        self.dropped = 0
        self._items: deque[T] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> bool:
        """Queue ``item``; returns False when an older message had to be dropped for it."""
        dropped = len(self._items) >= self.capacity
        if dropped:
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)
        self._ready.set()
        return not dropped

    def put_back(self, item: T) -> None:
        """Return ``item`` (taken with ``get_nowait``) to the head of the queue."""
        self._items.appendleft(item)
        self._ready.set()

    def get_nowait(self) -> T | None:
        """The oldest message, or None when there is none."""
        return self._items.popleft() if self._items else None

    async def get(self) -> T:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()
