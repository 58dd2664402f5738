"""`portlane demo` end to end: simulators on the wire, lanes, scanner, central platform, broker.

These are the slow tests of the suite (tens of seconds each); they run in CI all the same.
The counts come from the demo's independent subscriber on the broker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from portlane.edge.demo.broker import BrokerProcess

pytestmark = pytest.mark.slow


def _demo(*args: str) -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    res = subprocess.run(
        [sys.executable, "-m", "portlane.edge", "demo", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    lines = [x for x in res.stdout.splitlines() if x.strip()]
    assert len(lines) == 1, f"expected exactly one JSON line on stdout, got {res.stdout!r}\n{res.stderr[-3000:]}"
    summary: dict = json.loads(lines[0])
    assert res.returncode == 0, (summary, res.stderr[-3000:])
    return summary


def test_demo_on_the_embedded_broker() -> None:
    s = _demo("--lanes", "3", "--vehicles", "9", "--seed", "3", "--inspect-ratio", "0.5", "--inject-forged", "3")
    assert s["passages"] == 9
    assert s["events_lost"] == 0 and s["out_of_order"] == 0
    assert s["invariant_violations"] == 0, s["violations"]
    assert s["events_received"] >= s["events_published"] > 9 * 8
    assert s["rejected_commands"] == 3
    assert s["scans"] == s["scans_ordered"] == s["inspected"]
    assert set(s["stage_ms"]) >= {"arrived", "identified", "decided", "released", "gate_opened", "exited"}
    assert s["stage_ms"]["exited"]["p50"] > s["stage_ms"]["identified"]["p50"] > 0


async def test_demo_on_an_external_broker(broker: BrokerProcess) -> None:
    import asyncio

    s = await asyncio.to_thread(_demo, "--lanes", "2", "--vehicles", "6", "--seed", "5", "--broker", broker.url)
    assert s["passages"] == 6 and s["events_lost"] == 0 and s["invariant_violations"] == 0
    assert s["events_received"] >= s["events_published"]


def test_demo_identifies_vehicles_with_on_edge_ocr() -> None:
    """Cameras serve rendered vehicles over MJPEG; the lane reads them with the ONNX pipeline."""
    s = _demo("--lanes", "2", "--vehicles", "4", "--seed", "3", "--ocr")
    rec = s["recognition"]
    assert s["passages"] == 4 and s["invariant_violations"] == 0 and s["events_lost"] == 0
    assert rec["identifications"] == 4
    assert rec["plates_exact"] >= 3  # synthetic renders, real models: allow one miss, never silence
    assert rec["containers_read"] == rec["containers_exact"] > 0  # a check-digit-valid read is a true read
