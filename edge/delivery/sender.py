"""Drains a durable outbox into an MQTT link, in seq order, deleting only what the broker
acknowledged.

A window of up to ``window`` events is in flight at once (QoS 1 pipelining keeps the wire
order); when the connection drops, everything not acknowledged stays on disk and is re-sent
from the oldest on the next connection. A subscriber may therefore see an event twice
(same ``id``) but never out of order and never with a gap.
"""

from __future__ import annotations

import asyncio
import logging

from portlane.edge.delivery.mqtt import MqttLink, NotConnectedError, PublishRefusedError
from portlane.edge.delivery.outbox import Outbox

__all__ = ["OutboxSender"]

log = logging.getLogger(__name__)


class OutboxSender:
    def __init__(self, outbox: Outbox, link: MqttLink, *, window: int = 100) -> None:
        self.outbox = outbox
        self.link = link
        self.window = window
        self.sent = 0  # acknowledged publishes (re-sends included)
        self.refused = 0
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        outbox.on_put(self._wake.set)

    def wake(self) -> None:
        """Look at the outbox again now (after a replay or a purge)."""
        self._wake.set()

    async def wait_drained(self) -> None:
        """Wait until the outbox is empty (everything acknowledged)."""
        while self.outbox.depth:
            self._drained.clear()
            self._wake.set()
            await self._drained.wait()

    async def run(self) -> None:
        while True:
            await self.link.wait_connected()
            try:
                await self._drain_connected()
            except (NotConnectedError, PublishRefusedError) as exc:
                if isinstance(exc, PublishRefusedError):
                    self.refused += 1
                    log.warning("broker refused an event (%s); it stays queued", exc)
                    # A refused publish (ACL) will be refused again: do not spin.
                    await asyncio.sleep(1.0)
                continue

    async def _drain_connected(self) -> None:
        inflight: dict[int, asyncio.Future[None]] = {}
        acked: set[int] = set()
        last = 0
        while True:
            room = self.window - len(inflight)
            rows = self.outbox.peek(after=last, limit=room) if room > 0 else []
            for row in rows:
                inflight[row.seq] = self.link.publish_nowait(row.topic, row.payload, qos=1)
                last = row.seq
            if not inflight:
                self._drained.set()
                self._wake.clear()
                # Re-check after clearing: a put may have raced the clear.
                if self.outbox.depth and self.outbox.peek(after=last, limit=1):
                    continue
                await self._wake.wait()
                if not self.link.connected:
                    raise NotConnectedError("disconnected")
                continue
            wake_task = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait([*inflight.values(), wake_task], return_when=asyncio.FIRST_COMPLETED)
            finally:
                wake_task.cancel()
            self._wake.clear()
            error: BaseException | None = None
            for seq, fut in list(inflight.items()):
                if fut.done():
                    del inflight[seq]
                    exc = fut.exception()
                    if exc is None:
                        acked.add(seq)
                    elif error is None:
                        error = exc
            if error is not None:
                for fut in inflight.values():
                    fut.cancel()
                raise error
            # Delete only a contiguous prefix: an event acknowledged after an earlier one
            # failed would otherwise be overtaken by the earlier one's re-send.
            floor = min(inflight) if inflight else last + 1
            ready = sorted(s for s in acked if s < floor)
            if ready:
                self.outbox.ack(ready)
                self.sent += len(ready)
                acked.difference_update(ready)
