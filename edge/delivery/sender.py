"""Drains a durable outbox into an MQTT link, in seq order, marking delivered only what the
broker acknowledged.

A window of up to ``window`` events is in flight at once (QoS 1 pipelining keeps the wire
order); when the connection drops, everything not acknowledged stays on disk and is re-sent
from the oldest on the next connection. A subscriber may therefore see an event twice
(same ``id``) but never out of order and never with a gap. Acknowledgements are recorded in
batches: every PUBACK that arrived in one event-loop turn, in one transaction.

After ``Outbox.replay`` re-queued delivered events, the sender finishes what is in flight and
starts again from the lowest queued seq: replayed events arrive after newer ones, with their
original ids (the subscriber that asked for them fills its gap by seq).

``retained`` names event topics whose newest event is also kept on another topic, retained (a
unit's ``unit.status`` on ``…/{unit}/status``): the copy is published right after the event, so
it never overtakes the events before it, and only when it is newer than the last copy (a replay
does not bring back an old status).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from portlane.edge.delivery.mqtt import MqttLink
from portlane.edge.delivery.outbox import Outbox
from portlane.edge.errors import NotConnectedError, PublishRefusedError

__all__ = ["OutboxSender"]

log = logging.getLogger(__name__)


class OutboxSender:
    def __init__(
        self, outbox: Outbox, link: MqttLink, *, window: int = 100, retained: Mapping[str, str] | None = None
    ) -> None:
        self.outbox = outbox
        self.link = link
        self.window = window
        self.retained = dict(retained or {})  # event topic -> where its newest copy is retained
        self._retained_seq: dict[str, int] = {}
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
        inflight: dict[int, asyncio.Future[None]] = {}  # seq -> PUBACK, in send (= seq) order
        failed: list[BaseException] = []
        last = 0  # highest seq handed to the link on this connection
        rewinds = self.outbox.rewinds

        def on_done(fut: asyncio.Future[None]) -> None:
            exc = None if fut.cancelled() else fut.exception()
            if exc is not None:
                failed.append(exc)
            self._wake.set()

        while True:
            if self.outbox.rewinds != rewinds and not inflight:
                # A replay re-queued delivered events below ``last``: start again from the lowest
                # (only once nothing is in flight, so that nothing goes out twice from here).
                rewinds, last = self.outbox.rewinds, 0
            room = self.window - len(inflight) if self.outbox.rewinds == rewinds else 0
            if room > 0 and not failed:
                for row in self.outbox.peek(after=last, limit=room):
                    fut = self.link.publish_nowait(row.topic, row.payload, qos=1)
                    fut.add_done_callback(on_done)
                    inflight[row.seq] = fut
                    last = row.seq
                    copy = self.retained.get(row.topic)
                    if copy is not None and row.seq > self._retained_seq.get(copy, 0):
                        self._retained_seq[copy] = row.seq
                        self.link.publish_best_effort(copy, row.payload, retain=True)
            # Acknowledge (in one transaction) the longest prefix of in-flight events that the
            # broker acknowledged. Only a prefix: an event acknowledged after an earlier one
            # failed would otherwise be overtaken by the earlier one's re-send.
            ready: list[int] = []
            for seq, fut in inflight.items():
                if not fut.done() or fut.cancelled() or fut.exception() is not None:
                    break
                ready.append(seq)
            if ready:
                self.outbox.ack(ready)
                self.sent += len(ready)
                for seq in ready:
                    del inflight[seq]
            if failed:
                for fut in inflight.values():
                    fut.cancel()
                raise failed[0]
            if not inflight:
                self._drained.set()
            self._wake.clear()
            # Re-check after clearing: a put or a replay may have raced the clear.
            if not inflight and (self.outbox.rewinds != rewinds or self.outbox.peek(after=last, limit=1)):
                continue
            # Woken by a put, a replay, or a PUBACK (or a failure) of an in-flight event.
            await self._wake.wait()
            if not inflight and not self.link.connected:
                raise NotConnectedError("disconnected")
