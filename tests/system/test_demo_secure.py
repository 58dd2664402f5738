"""`portlane demo --secure --console`: the whole simulated port over TLS with client certificates
and the shipped ACL on a Mosquitto it starts — the same zero-loss summary as on an open broker —
with the site console on its own certificate (``units/console``) and its own signing key (issue
23: ``--console`` did not combine with ``--secure``). The broker's refusals of the issue's attacks
(an anonymous client, a lane's certificate on another unit's topics, a client-id takeover) are
tests/trust/test_broker_least_privilege.py, on the same shipped configuration."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from portlane.edge.demo.broker import MosquittoBroker, free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MosquittoBroker.available(), reason="needs the mosquitto binary"),
]


def test_demo_runs_on_the_secure_broker_with_the_console(tmp_path: Path) -> None:
    db = tmp_path / "console.db"
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
            "--console",
            f"127.0.0.1:{free_port()}",
            "--console-db",
            str(db),
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
    # The console took the whole run over TLS with its own certificate: every passage, every
    # event verified (nothing refused, nothing missing in the library's ledger it saved).
    with contextlib.closing(sqlite3.connect(db)) as con:
        passages = con.execute("SELECT COUNT(*) FROM passages").fetchone()[0]
        refused = con.execute("SELECT reason, COUNT(*) FROM rejected GROUP BY reason").fetchall()
        streams = con.execute("SELECT unit, max_seq, missing, lost FROM streams").fetchall()
    assert passages == 9 and refused == [], (passages, refused)
    assert {u for u, *_ in streams} >= {"c1", "c2", "xray-1"}, streams
    assert all(missing == "[]" and lost == 0 for _u, _s, missing, lost in streams), streams
