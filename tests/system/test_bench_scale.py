"""The scale scenarios of bench/ (lanes, latency, soak, recognition) at a tiny size: each runs
end to end on a real Mosquitto with lane daemons as processes and produces the keys that
docs/benchmarks.md is rendered from. The figures themselves come from the full runs
(``python bench/run.py NAME``); here only that they are there and plausible."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from portlane.edge.demo.broker import MosquittoBroker

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import lanes_bench  # bench/ is not a package: on sys.path above
import latency_bench
import recognition_bench
import soak_bench

needs_mosquitto = pytest.mark.skipif(not MosquittoBroker.available(), reason="needs mosquitto")


def test_soak_judge_flags_growth_and_passes_flat_series() -> None:
    t = [float(i) for i in range(20)]
    flat = {"t_min": t, "rss_mb": [60.0 + (i % 3) * 0.1 for i in range(20)], "threads": [7] * 20, "fds": [30] * 20}
    leak = dict(flat, fds=[30 + i for i in range(20)])  # one fd per simulated minute: 60 per hour
    for s in (flat, leak):
        s.update(tasks=[None] * 20, outbox_depth=[0] * 20, outbox_retained=list(range(20)))
    v = soak_bench.judge({"c1": flat, "c2": leak})
    assert v["c1"]["fds"]["flat"] and v["c1"]["rss_mb"]["flat"]
    assert v["c2"]["fds"]["flat"] is False and v["c2"]["fds"]["slope_per_sim_hour"] == pytest.approx(60.0)
    assert v["c1"]["outbox_retained"]["flat"] is None  # reported, not judged
    assert v["c1"]["tasks"]["flat"] is None  # no samples: no verdict


@pytest.mark.slow
@needs_mosquitto
@pytest.mark.timeout(240)
async def test_lanes_scenario_measures_cpu_rss_and_passages() -> None:
    r = await lanes_bench.main(lanes="1", warmup=3.0, window=6.0)
    row = r["rows"][0]
    assert "error" not in row, row
    assert row["daemons_died"] == []
    assert 20 < row["lane_rss_mb_mean"] < 500
    assert row["lane_cpu_pct_mean"] is not None and row["lane_cpu_pct_mean"] > 0
    assert row["passages_per_wall_hour"] >= 0 and row["loadavg_before"] and "| lanes |" in r["table"]


@pytest.mark.slow
@needs_mosquitto
@pytest.mark.timeout(240)
async def test_latency_scenario_times_release_to_the_open_frame() -> None:
    r = await latency_bench.main(lanes="1", samples=4)
    row = r["rows"][0]
    assert "error" not in row, row
    assert row["all_done"] and row["passages"] >= 4
    r2o = row["release_to_open_ms"]
    assert r2o["n"] >= 4  # every released passage timed at both ends
    assert 0 < r2o["p50"] < 5000  # positive: the frame comes after the release
    assert row["identified_to_decided_ms"]["n"] >= 4
    assert row["harness_loop_lag_ms"]["n"] > 0
    # The lane's first passage (all lanes start together) is reported apart from the others.
    assert len(row["release_to_open_first_ms"]) == 1 and row["release_to_open_warm_ms"]["n"] == r2o["n"] - 1
    assert row["scheduling"] == "normal"


@pytest.mark.slow
@needs_mosquitto
@pytest.mark.timeout(240)
async def test_soak_scenario_samples_every_daemon_each_simulated_minute() -> None:
    r = await soak_bench.main(lanes=1, sim_minutes=1.5)
    assert r["daemons_died"] == []
    series = r["series"]
    assert set(series) >= {"c1"}
    c1 = series["c1"]
    assert len(c1["t_min"]) >= 2  # one sample per simulated minute
    assert all(x is not None for x in c1["rss_mb"] + c1["threads"] + c1["fds"] + c1["outbox_depth"])
    assert any(x is not None for x in c1["tasks"])  # the probe in the daemon answered
    assert set(r["verdicts"]["c1"]) == set(soak_bench.SERIES)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_recognition_scenario_reports_frames_per_core() -> None:
    pytest.importorskip("onnxruntime")
    r = await recognition_bench.main(frames=2)
    assert r["ok"], r
    assert r["rows"][0]["frames of"].startswith("plate")
    assert all(row["frames_per_cpu_s"] and row["frames_per_cpu_s"] > 0 for row in r["rows"])
