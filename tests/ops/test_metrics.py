"""edge/metrics.py: scrape a daemon's loopback endpoint and read the numbers back."""

from __future__ import annotations

import urllib.request

import pytest
from portlane.edge.ops.metrics import DaemonMetrics
from prometheus_client.parser import text_string_to_metric_families


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _get(samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def metrics():
    m = DaemonMetrics("lane", site="zhuhai-hzmb-cargo", lane="c1")
    srv = m.serve(0)
    yield m, srv
    srv.close()


def test_served_on_loopback_only_by_default(metrics) -> None:
    _m, srv = metrics
    assert srv.host == "127.0.0.1" and srv.port > 0
    srv.close()
    srv.close()  # idempotent


def test_scrape_reports_what_the_daemon_recorded(metrics) -> None:
    m, srv = metrics
    m.passage_completed("released", {"identify": 250.0, "decide": 1500.0})
    m.passage_completed("released", {"identify": 400.0})
    m.passage_completed("diverted", {"identify": 300.0, "scan": 42_000.0})
    m.device_state("c1", "gate", "online")
    m.device_state("c1", "gate", "offline")
    m.device_errors("c1", "gate", {"ok": 40, "timeout": 1})
    m.device_errors("c1", "gate", {"ok": 90, "timeout": 3, "protocol": 1})  # running totals
    m.outbox(12, 4.5, 1)
    m.outbox(10, 2.0, 3)  # running total 3 → counter 3
    m.command_rejected("expired")
    m.command_rejected("replayed")
    m.command_rejected("expired")
    m.recognition("plate", 0.180, 0.97)
    m.recognition("container", 0.850, 0.42)
    m.broker_connected(True)
    m.heartbeats_stalled(["main", "gate"], ["gate"])

    s = _scrape(srv.url)
    assert _get(s, "portlane_daemon_info", daemon="lane", site="zhuhai-hzmb-cargo", version="0.1.0") == 1
    assert _get(s, "portlane_passages_total", lane="c1", outcome="released") == 2
    assert _get(s, "portlane_passages_total", lane="c1", outcome="diverted") == 1
    assert _get(s, "portlane_stage_duration_seconds_count", lane="c1", stage="identify") == 3
    assert _get(s, "portlane_stage_duration_seconds_sum", lane="c1", stage="identify") == pytest.approx(0.95)
    assert _get(s, "portlane_stage_duration_seconds_bucket", lane="c1", stage="decide", le="1.0") == 0
    assert _get(s, "portlane_stage_duration_seconds_bucket", lane="c1", stage="decide", le="2.0") == 1
    assert _get(s, "portlane_stage_duration_seconds_bucket", lane="c1", stage="scan", le="60.0") == 1
    assert _get(s, "portlane_device_state", lane="c1", device="gate", state="offline") == 1
    assert _get(s, "portlane_device_state", lane="c1", device="gate", state="online") == 0
    assert _get(s, "portlane_device_state", lane="c1", device="gate", state="degraded") == 0
    assert _get(s, "portlane_device_errors_total", lane="c1", device="gate", kind="timeout") == 3
    assert _get(s, "portlane_device_errors_total", lane="c1", device="gate", kind="protocol") == 1
    assert not [k for k in s if k[0] == "portlane_device_errors_total" and ("kind", "ok") in k[1]]
    assert _get(s, "portlane_outbox_depth", lane="c1") == 10
    assert _get(s, "portlane_outbox_oldest_age_seconds", lane="c1") == 2.0
    assert _get(s, "portlane_outbox_dropped_total", lane="c1") == 3
    assert _get(s, "portlane_command_rejections_total", lane="c1", reason="expired") == 2
    assert _get(s, "portlane_command_rejections_total", lane="c1", reason="replayed") == 1
    assert _get(s, "portlane_recognition_latency_seconds_bucket", kind="plate", le="0.2") == 1
    assert _get(s, "portlane_recognition_latency_seconds_bucket", kind="container", le="0.75") == 0
    assert _get(s, "portlane_recognition_confidence_bucket", kind="container", le="0.5") == 1
    assert _get(s, "portlane_recognition_confidence_bucket", kind="plate", le="0.95") == 0
    assert _get(s, "portlane_broker_connected") == 1
    assert _get(s, "portlane_heartbeat_stalled", check="gate") == 1
    assert _get(s, "portlane_heartbeat_stalled", check="main") == 0


def test_outbox_dropped_follows_a_restarted_count(metrics) -> None:
    m, srv = metrics
    m.outbox(0, 0.0, 5)
    m.outbox(0, 0.0, 2)  # the outbox restarted its count: 2 more were dropped
    assert _get(_scrape(srv.url), "portlane_outbox_dropped_total", lane="c1") == 7


def test_registries_are_per_daemon_and_input_is_checked() -> None:
    a = DaemonMetrics("lane", site="s", lane="c1")
    b = DaemonMetrics("lane", site="s", lane="c2")  # would collide on a global registry
    a.command_rejected("unsigned")
    assert b"portlane_command_rejections_total" in a.render()
    assert b'reason="unsigned"' not in b.render()
    with pytest.raises(ValueError):
        a.device_state("c1", "gate", "on fire")
    b.command_rejected("unsigned", lane="c3")
    assert b'lane="c3",reason="unsigned"' in b.render()
