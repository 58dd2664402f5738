"""A minimal daemon for delivery tests: writes events to a durable outbox and sends them.

    python tests/pump.py URL OUTBOX_DB UNIT TOTAL [put|async]

Resumes where the outbox left off (its last seq), so a test can SIGKILL it mid-stream and
start it again. Prints "sent N" when everything up to TOTAL is acknowledged. ``async`` writes
with ``put_async`` from 10 concurrent producers (group commit in the writer thread).
"""

from __future__ import annotations

import asyncio
import sys

from portlane.edge.contract.topics import Topics
from portlane.edge.delivery.mqtt import MqttLink
from portlane.edge.delivery.outbox import Outbox
from portlane.edge.delivery.sender import OutboxSender


async def main(url: str, db: str, unit: str, total: int, mode: str = "put") -> None:
    topics = Topics("test-site", unit)
    outbox = Outbox(db, site="test-site", unit=unit)
    link = MqttLink(url, client_id=f"pump-{unit}")
    sender = OutboxSender(outbox, link, window=20)
    async with asyncio.TaskGroup() as tg:
        t_link = tg.create_task(link.run(), name="mqtt")
        t_send = tg.create_task(sender.run(), name="sender")
        while outbox.last_seq < total:
            n = outbox.last_seq + 1
            if mode == "async":
                k = min(10, total - outbox.last_seq)
                await asyncio.gather(
                    *(outbox.put_async("test.tick", {"n": n + i}, topic=topics.event("test.tick")) for i in range(k))
                )
            else:
                outbox.put("test.tick", {"n": n}, topic=topics.event("test.tick"))
            # Let the sender run between puts so that the stream is really interleaved.
            await asyncio.sleep(0.002)
        await sender.wait_drained()
        print(f"sent {outbox.last_seq}", flush=True)
        await link.close()
        t_send.cancel()
        t_link.cancel()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), *sys.argv[5:6]))
