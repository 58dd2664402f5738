"""Throughput of the durable outbox against raw paho-mqtt QoS 1, measured side by side in one run.

    python bench/outbox_bench.py [--events 20000] [--lanes 4] [--rounds 3] [--mode async|many|single]
                                 [--broker mosquitto|embedded]
    python bench/run.py outbox …      # the same, and writes bench/results/outbox.json

Both sides publish the same events (same topics, same envelope size) to the same broker with
the same in-flight window (100) over MQTT 5, and one independent subscriber — in a process of
its own, as the platform's would be (``bench/subscriber.py``) — counts what arrives. Rounds
alternate raw / outbox so that both see the same machine load; the figures are the medians
over rounds, and ``ratio`` is outbox ÷ raw.

* raw — per lane one paho client (network thread, ``loop_start``), ``publish(qos=1)`` of
  pre-built payloads as fast as paho takes them; done at the last PUBACK.
* outbox — per lane a SQLite outbox (WAL, ``synchronous=FULL``), an ``OutboxSender`` and an
  ``MqttLink``: every event is committed to disk (fsync) BEFORE it can be sent, and marked
  delivered on PUBACK. Producers call ``put_async`` in bursts of ``--burst`` concurrent
  callers (group commit: one transaction and one fsync per burst, each caller gets its
  envelope after the commit) — ``--mode many`` uses ``put_many`` bursts, ``--mode single``
  one ``put`` (one fsync) per event, the pre-group-commit path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from portlane.edge.contract.topics import Topics
from portlane.edge.delivery.mqtt import MqttLink
from portlane.edge.delivery.outbox import Outbox, OutboxEvent
from portlane.edge.delivery.sender import OutboxSender
from portlane.edge.demo.broker import BrokerProcess, MosquittoBroker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine

SITE = "bench"
PAYLOAD = {"passage_id": "c1-18f3a2b-17", "lane_kind": "cargo"}
WINDOW = 100
#: Longest a round may take before the benchmark gives up (a stuck broker, not a slow one).
ROUND_TIMEOUT_S = 300.0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=20000, help="events per round and side (split over lanes)")
    ap.add_argument("--lanes", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--burst", type=int, default=100, help="concurrent producers per lane")
    ap.add_argument("--mode", choices=("async", "many", "single"), default="async")
    ap.add_argument("--broker", choices=("mosquitto", "embedded"), default="mosquitto")
    ap.add_argument("--sides", default="raw,outbox", help="which sides to run (for profiling one): raw,outbox")
    return ap


class Subscriber:
    """``bench/subscriber.py`` in a child process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, url: str, protocol: str) -> Subscriber:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).with_name("subscriber.py")),
            url,
            SITE,
            protocol,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if line.strip() != b"ready":
            raise RuntimeError(f"subscriber did not start: {line!r}")
        return cls(proc)

    async def wait(self, units: list[str], last_seq: int) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"wait {','.join(units)} {last_seq}\n".encode())
        await self.proc.stdin.drain()
        reply: dict[str, Any] = json.loads(await asyncio.wait_for(self.proc.stdout.readline(), ROUND_TIMEOUT_S + 10))
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    async def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def _raw_round(url: str, port: int, obs: Subscriber, lanes: int, per_lane: int, rnd: int) -> dict[str, Any]:
    """paho-mqtt alone: no disk, no bookkeeping — the broker's and the client's limit."""
    units = [f"raw{rnd}x{i}" for i in range(lanes)]
    payloads: list[list[tuple[str, bytes]]] = []
    for u in units:
        t = Topics(SITE, u)
        payloads.append(
            [
                (
                    t.event("passage.arrived"),
                    json.dumps(
                        {
                            "specversion": "1.0",
                            "id": f"{SITE}/{u}/1700000000000/{n}",
                            "source": f"portlane://{SITE}/{u}",
                            "type": "portlane.passage.arrived",
                            "time": "2026-11-23T18:40:24.000Z",
                            "datacontenttype": "application/json",
                            "seq": n,
                            "epoch": 1700000000000,
                            "audience": [],
                            "data": PAYLOAD,
                        },
                        separators=(",", ":"),
                    ).encode(),
                )
                for n in range(1, per_lane + 1)
            ]
        )
    loop = asyncio.get_running_loop()
    total = lanes * per_lane
    acked = [0]
    lock = threading.Lock()
    all_acked = asyncio.Event()

    def on_publish(_c: Any, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
        with lock:
            acked[0] += 1
            done = acked[0] == total
        if done:
            loop.call_soon_threadsafe(all_acked.set)

    clients = []
    for u in units:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{u}", protocol=MQTTProtocolVersion.MQTTv5)
        c.max_inflight_messages_set(WINDOW)
        c.max_queued_messages_set(0)
        c.on_publish = on_publish
        connected = threading.Event()
        c.on_connect = lambda *_a, ev=connected: ev.set()
        c.connect("127.0.0.1", port)
        c.loop_start()
        await asyncio.to_thread(connected.wait, 10)
        clients.append(c)
    t0, w0, c0 = time.perf_counter(), time.time(), _cpu()
    for n in range(per_lane):
        for c, msgs in zip(clients, payloads, strict=True):
            topic, body = msgs[n]
            c.publish(topic, body, qos=1)
        if n % 100 == 99:
            await asyncio.sleep(0)
    async with asyncio.timeout(ROUND_TIMEOUT_S):
        await all_acked.wait()
    t_acked, cpu = time.perf_counter() - t0, _cpu() - c0
    seen = await obs.wait(units, per_lane)
    t_seen = seen["done_at"] - w0
    for c in clients:
        c.disconnect()
        await asyncio.to_thread(c.loop_stop)
    return {
        "side": "raw",
        "acked_per_s": round(total / t_acked),
        "cpu_us_per_event": round(cpu / total * 1e6),
        "received_per_s": round(total / t_seen),
        "lost": seen["lost"],
    }


async def _outbox_round(
    url: str, obs: Subscriber, lanes: int, per_lane: int, rnd: int, mode: str, burst: int, folder: Path
) -> dict[str, Any]:
    units = [f"ob{rnd}x{i}" for i in range(lanes)]
    tasks: list[asyncio.Task[None]] = []
    parts = []
    for u in units:
        ob = Outbox(folder / f"{u}.db", site=SITE, unit=u)
        link = MqttLink(url, client_id=f"bench-{u}", protocol="5")
        sender = OutboxSender(ob, link, window=WINDOW)
        tasks += [asyncio.create_task(link.run(), name=f"{u}:mqtt"), asyncio.create_task(sender.run(), name=u)]
        await asyncio.wait_for(link.wait_connected(), 10)
        parts.append((u, ob, sender, Topics(SITE, u)))

    async def produce(ob: Outbox, t: Topics) -> None:
        topic = t.event("passage.arrived")
        n = 0
        while n < per_lane:
            k = min(burst, per_lane - n)
            if mode == "async":
                await asyncio.gather(*(ob.put_async("passage.arrived", PAYLOAD, topic=topic) for _ in range(k)))
            elif mode == "many":
                ob.put_many([OutboxEvent("passage.arrived", PAYLOAD, topic)] * k)
                await asyncio.sleep(0)
            else:
                for _ in range(k):
                    ob.put("passage.arrived", PAYLOAD, topic=topic)
                await asyncio.sleep(0)
            n += k

    t0, w0, c0 = time.perf_counter(), time.time(), _cpu()
    await asyncio.gather(*(produce(ob, t) for _u, ob, _s, t in parts))
    t_put = time.perf_counter() - t0
    async with asyncio.timeout(ROUND_TIMEOUT_S):
        await asyncio.gather(*(s.wait_drained() for _u, _ob, s, _t in parts))
    t_acked, cpu = time.perf_counter() - t0, _cpu() - c0
    seen = await obs.wait(units, per_lane)
    t_seen = seen["done_at"] - w0
    commits = sum(ob.commits for _u, ob, _s, _t in parts)
    commit_s = sum(ob.commit_seconds for _u, ob, _s, _t in parts)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for _u, ob, _s, _t in parts:
        ob.close()
    total = lanes * per_lane
    return {
        "side": "outbox",
        "written_per_s": round(total / t_put),
        "acked_per_s": round(total / t_acked),
        "cpu_us_per_event": round(cpu / total * 1e6),
        "received_per_s": round(total / t_seen),
        "lost": seen["lost"],
        "commits": commits,
        "events_per_commit": round(total / max(1, commits), 1),
        "commit_ms": round(commit_s / max(1, commits) * 1000, 1),
    }


def _cpu() -> float:
    """CPU seconds of this process, all threads (paho's, the outboxes' writers)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def main(
    events: int = 20000,
    lanes: int = 4,
    rounds: int = 3,
    burst: int = 100,
    mode: str = "async",
    broker: str = "mosquitto",
    sides: str = "raw,outbox",
) -> dict[str, Any]:
    before = machine()
    b = MosquittoBroker() if broker == "mosquitto" and MosquittoBroker.available() else BrokerProcess("embedded")
    await b.start()
    folder = Path(tempfile.mkdtemp(prefix="outbox-bench-"))
    per_lane = events // lanes
    rows: list[dict[str, Any]] = []
    obs: Subscriber | None = None
    try:
        obs = await Subscriber.start(b.url, "5" if b.kind == "mosquitto" else "3.1.1")
        for rnd in range(rounds):
            if "raw" in sides:
                rows.append({"round": rnd + 1, **await _raw_round(b.url, b.port, obs, lanes, per_lane, rnd)})
            if "outbox" in sides:
                rows.append(
                    {"round": rnd + 1, **await _outbox_round(b.url, obs, lanes, per_lane, rnd, mode, burst, folder)}
                )
    finally:
        if obs is not None:
            await obs.close()
        await b.close()
        shutil.rmtree(folder, ignore_errors=True)

    def med(side: str, key: str) -> int:
        return round(statistics.median([r[key] for r in rows if r["side"] == side] or [0]))

    summary = {
        "raw_acked_per_s": med("raw", "acked_per_s"),
        "raw_received_per_s": med("raw", "received_per_s"),
        "outbox_written_per_s": med("outbox", "written_per_s"),
        "outbox_acked_per_s": med("outbox", "acked_per_s"),
        "outbox_received_per_s": med("outbox", "received_per_s"),
        "raw_cpu_us_per_event": med("raw", "cpu_us_per_event"),
        "outbox_cpu_us_per_event": med("outbox", "cpu_us_per_event"),
        "outbox_commit_ms": med("outbox", "commit_ms"),
    }
    summary["ratio_acked"] = round(summary["outbox_acked_per_s"] / max(1, summary["raw_acked_per_s"]), 2)
    summary["ratio_received"] = round(summary["outbox_received_per_s"] / max(1, summary["raw_received_per_s"]), 2)
    lost = sum(r["lost"] for r in rows)
    return {
        "events": per_lane * lanes,
        "lanes": lanes,
        "rounds": rounds,
        "mode": mode,
        "burst": burst,
        "broker": b.kind,
        **summary,
        "lost": lost,
        "ok": lost == 0,
        "per_round": rows,
        "machine": before,
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
    }


if __name__ == "__main__":
    args = parser().parse_args()
    print(json.dumps(asyncio.run(main(**vars(args)))))
