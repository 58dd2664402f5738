"""docs/examples/consumer.py against a real ``portlane demo`` run: it sees every event the lanes
and the scanner published, exactly once, verified against the site's keys, and its summary says
so.

The demo runs with ``--broker`` on the test's broker, so that the consumer is subscribed before
the first event.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from portlane.edge.demo.broker import BrokerProcess
from portlane.edge.demo.options import DEFAULT_SITE
from portlane.edge.trust.pki import provision_unit_keys

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "consumer.py"
ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}
#: Bounds for a broken run only; every wait ends on a line read.
START_S, DEMO_S, DRAIN_S = 60.0, 480.0, 60.0


def site_file(tmp_path: Path) -> Path:
    """The shipped demo site with signing keys for every unit (the demo keeps them) and a client
    ``consumer`` whose key may sign replay requests."""
    raw: dict[str, Any] = yaml.safe_load(DEFAULT_SITE.read_text(encoding="utf-8"))
    raw["clients"] = [*raw.get("clients", []), {"id": "consumer", "role": "console", "commands": ["replay_events"]}]
    raw = provision_unit_keys(raw, tmp_path / "keys")
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


async def _line(stream: asyncio.StreamReader, within_s: float) -> str:
    async with asyncio.timeout(within_s):
        raw = await stream.readline()
    if not raw:
        raise AssertionError("the process ended")
    return raw.decode().rstrip("\n")


async def test_the_example_consumer_sees_every_event_of_the_demo_once(broker: BrokerProcess, tmp_path: Path) -> None:
    site = site_file(tmp_path)
    url = broker.url
    consumer = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), "--site", str(site), "--broker", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV,
    )  # fmt: skip
    demo: asyncio.subprocess.Process | None = None
    try:
        assert consumer.stdout is not None and consumer.stderr is not None
        while (await _line(consumer.stderr, START_S)) != "subscribed":
            pass
        lines: list[str] = []
        got = asyncio.Event()

        async def read() -> None:
            assert consumer.stdout is not None
            while raw := await consumer.stdout.readline():
                lines.append(raw.decode().rstrip("\n"))
                got.set()

        reader = asyncio.create_task(read(), name="consumer-stdout")
        demo = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "portlane.edge", "demo", "--site", str(site), "--broker", url,
            "--lanes", "2", "--vehicles", "4", "--seed", "3", "--inspect-ratio", "0.5", "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV,
        )  # fmt: skip
        async with asyncio.timeout(DEMO_S):
            out, err = await demo.communicate()
        assert demo.returncode == 0, err.decode()[-3000:]
        summary = json.loads(out.decode().strip().splitlines()[-1])
        assert summary["passages"] == 4 and summary["events_lost"] == 0
        published = summary["events_published"]

        try:
            async with asyncio.timeout(DRAIN_S):  # the demo ends once its own observer has them all
                while len(lines) < published:
                    got.clear()
                    await got.wait()
        except TimeoutError:
            seen = sorted({tuple(x.split(" ")[:3]) for x in lines})
            raise AssertionError(f"the consumer printed {len(lines)} of {published} events: {seen}") from None
        consumer.send_signal(signal.SIGTERM)
        async with asyncio.timeout(DRAIN_S):
            await reader
            await consumer.wait()
        assert consumer.returncode == 0
        report = json.loads(lines.pop())
        events = [tuple(x.split(" ")[:2]) for x in lines]
        assert len(events) == len(set(events)) == published, "every event exactly once"
        assert report["events"] == published and report["missing"] == 0
        assert sum(report["last_seq"].values()) == published
        assert report["by_type"]["passage.completed"] == 4 and sum(report["outcomes"].values()) == 4
        assert report["stats"]["duplicates"] >= 0 and report["stats"]["anomalies"] == 0
        # Every event verified (above), and nothing refused: the units' retained status copies too.
        assert not report["stats"]["refused"], report["stats"]
    finally:
        for proc in (demo, consumer):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
