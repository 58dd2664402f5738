"""The console's throughput: events/s ingested, end to end through a broker and in-process,
and how long the clearance-time figures take over many passages.

    python bench/console_bench.py [--passages 2000] [--lanes 8] [--report-passages 100000]

* ``broker``: a real Mosquitto (the embedded broker where it is not installed); one MQTT
  connection per lane publishes realistic passages (arrived, identified, three decisions,
  released, gate open/close, completed: 9 events each), each signed with its lane's key as the
  lane's outbox signs it, pipelined at QoS 1; the clock runs from the first publish to the
  console having stored the last event.
* ``direct``: the same messages through the consumer library (``SiteConsumer.receive``: verify,
  de-duplicate, ledger, type) and ``ConsoleService.ingest`` in batches of 500 (what the client
  and the ingest task do), no broker: the cost of verify + store + live picture.
* ``report``: ``clearance()`` over a database with ``--report-passages`` completed passages.

Results go to stdout as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from portlane.edge.config import Site, parse_site
from portlane.edge.console.analytics import clearance
from portlane.edge.console.service import ConsoleService
from portlane.edge.contract.times import rfc3339
from portlane.edge.contract.topics import Topics
from portlane.edge.delivery.mqtt import Message, MqttLink
from portlane.edge.demo.broker import BrokerProcess, MosquittoBroker
from portlane.edge.demo.run import DEFAULT_SITE, with_demo_clients
from portlane.edge.trust.events import EventSigner
from portlane.edge.trust.keys import load_unit_signer
from portlane.edge.trust.pki import provision_unit_keys

STAGES = {"arrived": 0, "identified": 400, "decided": 1200, "released": 1300, "gate_opened": 2500, "exited": 9000}


def signed_site(key_dir: Path) -> tuple[Site, dict[str, EventSigner]]:
    """The shipped site with a key for every unit (as the demo provisions them) and its signers."""
    import yaml

    raw = provision_unit_keys(with_demo_clients(yaml.safe_load(DEFAULT_SITE.read_text(encoding="utf-8"))), key_dir)
    site = parse_site(raw)
    return site, {lane.id: load_unit_signer(lane.key, unit=lane.id) for lane in site.lanes if lane.key is not None}


def passage_events(site: str, lane: str, n: int, t0: float, signer: EventSigner) -> list[tuple[str, dict[str, Any]]]:
    """(topic, signed envelope) of ``n`` passages on ``lane``, 9 events each, seq from 1."""
    out: list[tuple[str, dict[str, Any]]] = []
    seq = 0
    topics = Topics(site, lane)

    def ev(type_: str, data: dict[str, Any], t: float) -> None:
        nonlocal seq
        seq += 1
        env = {
            "specversion": "1.0",
            "id": f"{site}/{lane}/1/{seq}",
            "source": f"portlane://{site}/{lane}",
            "type": f"portlane.{type_}",
            "time": rfc3339(t),
            "subject": data.get("passage_id"),
            "datacontenttype": "application/json",
            "seq": seq,
            "epoch": 1,
            "audience": [],
            "data": data,
        }
        out.append((topics.event(type_), signer.sign(env)))

    for i in range(n):
        pid = f"{lane}-{i}"
        t = t0 + i * 30
        ev("passage.arrived", {"passage_id": pid, "lane_kind": "cargo"}, t)
        ev(
            "vehicle.identified",
            {
                "passage_id": pid,
                "plates": [{"text": "粤Z1234港", "kind": "cn_crossborder", "confidence": 0.97}],
                "containers": [{"number": "CSQU3054383", "check_digit_ok": True, "confidence": 0.95}],
                "confidence": 0.95,
            },
            t + 0.4,
        )
        for agency in ("customs", "border", "quarantine"):
            ev(
                "passage.decided",
                {"passage_id": pid, "agency": agency, "decision": "release", "phase": "initial", "command_nonce": "n"},
                t + 1.2,
            )
        ev("passage.released", {"passage_id": pid, "outcome": "released"}, t + 1.3)
        ev("gate.moved", {"passage_id": pid, "action": "open", "cause": "release"}, t + 1.3)
        ev("gate.moved", {"passage_id": pid, "action": "close", "cause": "exit"}, t + 8)
        stage_ms = {k: v + (i % 7) * 100 if k != "arrived" else 0 for k, v in STAGES.items()}
        ev(
            "passage.completed",
            {
                "passage_id": pid,
                "outcome": "released",
                "inspected": False,
                "plates": ["粤Z1234港"],
                "containers": ["CSQU3054383"],
                "stages": {k: rfc3339(t + v / 1000) for k, v in stage_ms.items()},
                "stage_ms": stage_ms,
            },
            t + 9,
        )
    return out


async def bench_broker(passages: int, lanes: list[str], broker: BrokerProcess) -> dict[str, Any]:
    t0 = time.time() - passages * 30
    with tempfile.TemporaryDirectory() as tmp:
        site, signers = signed_site(Path(tmp) / "keys")
        streams = {lane: passage_events(site.site.id, lane, passages, t0, signers[lane]) for lane in lanes}
        total = sum(len(v) for v in streams.values())
        svc = ConsoleService(
            site=site, db=Path(tmp) / "c.db", broker_url=broker.url, http=None, connect_timeout_s=10, backfill=False
        )
        links = {lane: MqttLink(broker.url, client_id=f"bench-{lane}", max_inflight=1000) for lane in lanes}
        async with svc, asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(link.run(), name=f"bench-{lane}") for lane, link in links.items()]
            for link in links.values():
                await link.wait_connected()

            async def publish(lane: str) -> None:
                futs = [links[lane].publish_nowait(t, json.dumps(e).encode()) for t, e in streams[lane]]
                await asyncio.gather(*futs)

            start = time.perf_counter()
            await asyncio.gather(*(publish(lane) for lane in lanes))
            published = time.perf_counter() - start
            async with asyncio.timeout(300):
                await svc.wait_for(lambda: svc.stats.stored >= total)
            elapsed = time.perf_counter() - start
            for link in links.values():
                await link.close()
            for t in tasks:
                t.cancel()
        return {
            "events": total,
            "published_s": round(published, 2),
            "stored_s": round(elapsed, 2),
            "events_per_s": round(total / elapsed),
            "batches": svc.stats.batches,
        }


async def bench_direct(passages: int, lanes: list[str]) -> dict[str, Any]:
    t0 = time.time() - passages * 30
    with tempfile.TemporaryDirectory() as tmp:
        site, signers = signed_site(Path(tmp) / "keys")
        msgs = [
            Message(topic, json.dumps(env).encode(), False, {})
            for lane in lanes
            for topic, env in passage_events(site.site.id, lane, passages, t0, signers[lane])
        ]
        # An unused loopback port: the link retries quietly; ingest() needs no broker.
        svc = ConsoleService(site=site, db=Path(tmp) / "c.db", broker_url="mqtt://127.0.0.1:9", http=None)
        async with svc:
            start = time.perf_counter()
            for i in range(0, len(msgs), 500):
                now = time.monotonic()
                svc.ingest(
                    [o for m in msgs[i : i + 500] for o in svc.client.consumer.receive(m.topic, m.payload, now=now)]
                )
            elapsed = time.perf_counter() - start
            stored = svc.stats.stored
    return {
        "events": len(msgs),
        "stored": stored,
        "seconds": round(elapsed, 2),
        "events_per_s": round(len(msgs) / elapsed),
    }


async def bench_report(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        site, signers = signed_site(Path(tmp) / "keys")
        lanes = [lane.id for lane in site.lanes]
        svc = ConsoleService(site=site, db=Path(tmp) / "c.db", broker_url="mqtt://127.0.0.1:9", http=None)
        async with svc:
            per_lane = n // len(lanes)
            t0 = time.time() - per_lane * 30
            for lane in lanes:
                evs = passage_events(site.site.id, lane, per_lane, t0, signers[lane])
                for i in range(0, len(evs), 2000):
                    now = time.monotonic()
                    svc.ingest(
                        [
                            o
                            for t, e in evs[i : i + 2000]
                            for o in svc.client.consumer.receive(t, json.dumps(e).encode(), now=now)
                        ]
                    )
            start = time.perf_counter()
            rep = clearance(svc.db(), site=site.site.id, tz=ZoneInfo(site.site.timezone))
            elapsed = time.perf_counter() - start
    return {"passages": rep.groups["all"]["all"]["passages"], "seconds": round(elapsed, 2)}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passages", type=int, default=2000, help="passages per lane (9 events each)")
    ap.add_argument("--lanes", type=int, default=4)
    ap.add_argument("--report-passages", type=int, default=100_000)
    args = ap.parse_args()
    lanes = ["c1", "c2", "p1", "c3", "p2", "c4"][: args.lanes]
    broker: BrokerProcess = MosquittoBroker() if MosquittoBroker.available() else BrokerProcess("embedded")
    await broker.start()
    try:
        result = {
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()},
            "broker": type(broker).__name__,
            "load_average": os.getloadavg(),
            "through_broker": await bench_broker(args.passages, lanes, broker),
            "direct": await bench_direct(args.passages, lanes),
            "report": await bench_report(args.report_passages),
        }
    finally:
        with contextlib.suppress(Exception):
            await broker.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    asyncio.run(main())
