"""`portlane demo --secure`: the whole simulated port over TLS with client certificates and the
shipped ACL on a Mosquitto it starts — the same zero-loss summary as on an open broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from portlane.edge.demo.broker import MosquittoBroker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MosquittoBroker.available(), reason="needs the mosquitto binary"),
]


def test_demo_runs_on_the_secure_broker() -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "portlane.edge",
            "demo",
            "--secure",
            "--lanes",
            "3",
            "--vehicles",
            "9",
            "--seed",
            "3",
            "--inspect-ratio",
            "0.5",
            "--inject-forged",
            "3",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    lines = [x for x in res.stdout.splitlines() if x.strip()]
    assert len(lines) == 1, f"expected one JSON line, got {res.stdout!r}\n{res.stderr[-3000:]}"
    s = json.loads(lines[0])
    assert res.returncode == 0, (s, res.stderr[-3000:])
    assert s["passages"] == 9 and s["events_lost"] == 0 and s["out_of_order"] == 0
    assert s["invariant_violations"] == 0, s["violations"]
    assert s["events_received"] >= s["events_published"] > 9 * 8
    assert s["scans"] == s["scans_ordered"] == s["inspected"] > 0
    assert s["rejected_commands"] == 3
    # It says what it ran on (issue 24: --secure did not say it ran on TLS).
    assert s["broker"]["url"].startswith("mqtts://") and s["broker"]["tls"] is True
    assert s["broker"]["client_certificates"] is True and s["broker"]["acl"] is True
