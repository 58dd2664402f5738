"""Throughput of the durable outbox: events/s written to disk, sent, acknowledged, and seen by
an independent subscriber — the path every lane event takes.

    python bench/outbox_bench.py [--events 20000] [--lanes 4] [--broker mosquitto|embedded]

Each lane has its own SQLite outbox (WAL, synchronous=FULL: one fsync per event) and its own
MQTT connection; puts are issued in bursts of 100 so that the sender pipelines. Results go to
stdout as JSON; docs/benchmarks.md records them with the machine they were taken on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from portlane.edge.contract.topics import Topics
from portlane.edge.delivery.mqtt import MqttLink
from portlane.edge.delivery.outbox import Outbox
from portlane.edge.delivery.sender import OutboxSender
from portlane.edge.demo.broker import BrokerProcess, MosquittoBroker
from portlane.edge.demo.observer import EventObserver


async def main(events: int, lanes: int, kind: str) -> dict[str, object]:
    broker = MosquittoBroker() if kind == "mosquitto" and MosquittoBroker.available() else BrokerProcess("embedded")
    await broker.start()
    d = Path(tempfile.mkdtemp(prefix="outbox-bench-"))
    obs = EventObserver(broker.url, "bench")
    tasks = [asyncio.create_task(obs.link.run())]
    await obs.link.wait_connected()
    units = []
    for i in range(lanes):
        ob = Outbox(d / f"l{i}.db", site="bench", unit=f"l{i}")
        link = MqttLink(broker.url, client_id=f"bench-l{i}")
        sender = OutboxSender(ob, link)
        tasks += [asyncio.create_task(link.run()), asyncio.create_task(sender.run())]
        await link.wait_connected()
        units.append((ob, sender, Topics("bench", f"l{i}")))
    per_lane = events // lanes
    payload = {"passage_id": "c1-18f3a2b-17", "lane_kind": "cargo"}

    async def produce(ob: Outbox, t: Topics) -> None:
        for n in range(per_lane):
            ob.put("passage.arrived", payload, topic=t.event("passage.arrived"))
            if n % 100 == 99:
                await asyncio.sleep(0)

    t0 = time.perf_counter()
    await asyncio.gather(*(produce(ob, t) for ob, _s, t in units))
    t_put = time.perf_counter() - t0
    await asyncio.gather(*(s.wait_drained() for _ob, s, _t in units))
    t_acked = time.perf_counter() - t0
    await obs.wait_for(lambda: obs.received >= per_lane * lanes, timeout=120)
    t_seen = time.perf_counter() - t0
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await broker.close()
    total = per_lane * lanes
    return {
        "events": total,
        "lanes": lanes,
        "broker": broker.kind,
        "written_per_s": round(total / t_put),
        "acked_per_s": round(total / t_acked),
        "received_per_s": round(total / t_seen),
        "lost": obs.lost({f"l{i}": per_lane for i in range(lanes)}),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--lanes", type=int, default=4)
    ap.add_argument("--broker", choices=("mosquitto", "embedded"), default="mosquitto")
    a = ap.parse_args()
    print(json.dumps(asyncio.run(main(a.events, a.lanes, a.broker))))
