"""`portlane demo` end to end: simulators on the wire, lanes, scanner, central platform, broker.

These are the slow tests of the suite (tens of seconds each); they run in CI all the same.
The counts come from the demo's independent subscriber on the broker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from portlane.edge.demo.broker import BrokerProcess, MosquittoBroker

pytestmark = pytest.mark.slow
log = logging.getLogger(__name__)


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
    keys = (
        "passages",
        "events_lost",
        "events_lost_by_unit",
        "duplicates",
        "invariant_violations",
        "violations",
        "timed_out",
        "stuck_lanes",
    )
    assert res.returncode == 0, (json.dumps({k: summary.get(k) for k in keys}), res.stderr[-3000:])
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


@pytest.mark.timeout(600)  # 80 vehicles on 4 lanes: over the suite's 120 s at load 10-19 (a stress run)
def test_the_done_when_command_declared_vehicles_and_cargo_lanes() -> None:
    """The "Done when" command of issues 20 and 21, run once for both.

    Issue 20: the platform declares ~70 % of the traffic, with a deliberate mismatch of each kind;
    the lanes release the declared vehicles themselves and name every mismatch; a declared
    vehicle's arrival → gate open p50 is at least 5× shorter than an undeclared one's.
    Issue 21: occupancies and alarms, innocent and real, every alarm adjudicated before release or
    diverted, tampered and foreign seals refused with their reason — the portals and seal readers
    on the wire, the platform adjudicating. Both: nothing lost, no violation."""
    s = _demo("--lanes", "4", "--vehicles", "80", "--seed", "7")
    assert s["passages"] == 80 and s["events_lost"] == 0 and s["invariant_violations"] == 0, s["violations"]
    pd = s["predecisions"]
    assert (pd["declared"], pd["undeclared"]) == (56, 24) and pd["declarations_refused"] == {}
    assert pd["deliberate_missed"] == [], pd["deliberate_missed"]
    kinds = {"weight_out_of_tolerance", "wrong_lane", "expired", "revoked", "predecision_revoked"}
    assert set(pd["deliberate"]) == kinds and all(d["named"] == d["planted"] == 1 for d in pd["deliberate"].values())
    assert pd["deliberate"]["predecision_revoked"]["arm_down"] == 1  # the release taken back, the arm down
    assert pd["refusals"]["not_declared"] == 24
    assert set(pd["clearance_ms"]) == {"predecision", "online"}
    assert pd["clearance_p50_ratio"] >= 5, pd["clearance_ms"]
    c = s["cargo"]
    assert c["occupancies"] >= 60 and c["seal_reads"] >= 60  # every truck on c1, c2, c3
    assert c["innocent_alarms"] >= 1 and c["real_alarms"] >= 1
    assert c["alarms_not_adjudicated"] == 0 and c["alarms"] == c["alarms_released"] + c["alarms_diverted"]
    assert c["real_alarms"] <= c["alarms_diverted"]
    assert {"seal_tampered", "seal_foreign"} <= set(c["seal_refusals"])
    assert c["elocks_removed"] >= 1


async def test_demo_on_an_external_broker(broker: BrokerProcess) -> None:
    import asyncio

    s = await asyncio.to_thread(_demo, "--lanes", "2", "--vehicles", "6", "--seed", "5", "--broker", broker.url)
    assert s["passages"] == 6 and s["events_lost"] == 0 and s["invariant_violations"] == 0
    assert s["events_received"] >= s["events_published"]


class ScanForger:
    """Anyone on the broker, during every real scan: unsigned ``scan.completed`` on the scanner's
    topics (per lane and the old unscoped one) every 150 ms — RED and GREEN in turn, so that
    whatever the scanner finds, a forged opposite races it — from ``scan.started`` until the
    scanner's own signed result. It also collects the signed results and the completed passages."""

    #: Issue 23: "unsigned scan.completed RED messages on the scanner's topic every 150 ms".
    EVERY_S = 0.15

    def __init__(self, url: str, site: str) -> None:
        from portlane.edge.delivery.mqtt import Message, MqttLink

        self.prefix = f"portlane/v1/{site}"
        self.genuine: dict[str, str] = {}  # passage -> the scanner's signed result
        self.completed: dict[str, dict] = {}  # passage -> its passage.completed data
        self.forged_before_result: dict[str, int] = {}  # passage -> forgeries sent before the real result
        self._racing: dict[str, asyncio.Task[None]] = {}

        def on_message(msg: Message) -> None:
            env = json.loads(msg.payload)
            if "sig" not in env:
                return  # our own forgeries
            data, kind = env["data"], env["type"].removeprefix("portlane.")
            if kind == "scan.started":
                pid = data["passage_id"]
                self._racing[pid] = asyncio.get_running_loop().create_task(self._race(env), name=f"forge-{pid}")
            elif kind == "scan.completed":
                self.genuine[data["passage_id"]] = data["result"]
                task = self._racing.pop(data["passage_id"], None)
                if task is not None:
                    task.cancel()
            elif kind == "passage.completed":
                self.completed[data["passage_id"]] = data

        topics = [f"{self.prefix}/xray-1/event/#", f"{self.prefix}/+/event/passage.completed"]
        self.link = MqttLink(url, client_id="t-scan-forger", subscriptions=topics, on_message=on_message)

    async def _race(self, started: dict) -> None:
        data, pid = started["data"], started["data"]["passage_id"]
        n = 0
        while True:
            result = ("RED", "GREEN")[n % 2]
            forged = {
                **{k: v for k, v in started.items() if k not in ("sig", "sigkeyid")},
                "id": f"{started['id']}-forged-{n}",
                "type": "portlane.scan.completed",
                "data": {**data, "result": result, "image_ref": "XR-FORGED"},
            }
            for topic in (f"scan.completed/{data['lane']}", "scan.completed"):
                self.link.publish_best_effort(f"{self.prefix}/xray-1/event/{topic}", json.dumps(forged).encode())
            n += 1
            self.forged_before_result[pid] = n
            await asyncio.sleep(self.EVERY_S)  # the attacker's own pace, not a synchronisation

    async def close(self) -> None:
        for task in self._racing.values():
            task.cancel()
        await asyncio.gather(*self._racing.values(), return_exceptions=True)
        await self.link.close()


async def test_forged_scan_results_during_real_scans_change_no_outcome(
    broker: BrokerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What we saw (issue 23, first item): during a real scan, unsigned ``scan.completed`` RED
    every 150 ms on the scanner's topic; the scanner signed GREEN, but the platform simulator had
    already answered the forgery with a genuine signed ``divert``, which the lane accepted — the
    cleared vehicle was diverted (and a forged GREEN on a RED scan raced towards a release).
    Now the platform decides only on its scanner's signed result: every vehicle's outcome follows
    the scanner's own result. The scanner is made to find GREEN and RED in turn."""
    from portlane.edge.demo import run as demo_run
    from portlane.edge.demo.report import DemoRun
    from portlane.edge.demo.run import DemoOptions, run_demo

    # No radiation loads and no bad seals: every outcome is the scan's (the cargo desk diverts a
    # truck with a tampered seal without a scan).
    monkeypatch.setattr(demo_run, "RADIATION_RATIO", 0.0)
    monkeypatch.setattr(demo_run, "SEAL_FAULT_RATIO", 0.0)

    def alternate(run: DemoRun) -> None:  # the demo's live-view hook, every 0.25 s: scans take 1-4 s
        run.scanner_world.forced_result = 3 if run.scanner_world.scans_started % 2 == 0 else 1  # RED : GREEN

    forger = ScanForger(broker.url, "zhuhai-hzmb-cargo")
    task = asyncio.create_task(forger.link.run(), name="forger")
    try:
        async with asyncio.timeout(30):
            await forger.link.wait_subscribed()
        # Nothing declared: every vehicle is decided online and scanned (a declared one the lane
        # would release itself, with no scan to race).
        opts = DemoOptions(
            lanes=2, vehicles=6, seed=3, inspect_ratio=1.0, declared=0.0, broker=broker.url, timeout_s=300
        )
        summary = await run_demo(opts, on_tick=alternate)
    finally:
        await forger.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert summary["passages"] == 6 and summary["invariant_violations"] == 0, summary["violations"]
    assert set(forger.genuine) == set(forger.completed), (forger.genuine, list(forger.completed))
    assert set(forger.genuine.values()) == {"GREEN", "RED"}, forger.genuine  # both races were run
    assert all(forger.forged_before_result.get(pid, 0) >= 1 for pid in forger.genuine), forger.forged_before_result
    for pid, result in forger.genuine.items():
        done = forger.completed[pid]
        assert done["scan_result"] == result, (pid, done)
        # A cleared vehicle is released, a RED one diverted: never what a forgery said.
        assert done["outcome"] == ("diverted" if result == "RED" else "released"), (pid, result, done)
    assert summary["diverted"] == sum(r == "RED" for r in forger.genuine.values())


#: How long the broker stays down in the restart test (issue 23 saw 20 s; long enough that the
#: lanes queue events in their outboxes and every client reconnects after it, short enough that
#: no decision deadline of the demo (60 s) runs out). The outage itself, not a synchronisation.
BROKER_DOWN_S = 10.0


@pytest.mark.skipif(not MosquittoBroker.available(), reason="needs the mosquitto binary")
async def test_a_broker_restart_mid_run_loses_no_event(tmp_path: Path) -> None:
    """What we saw (issue 23): after a graceful restart of Mosquitto mid-run (persistence on),
    the demo's observer counted 12–18 events lost — it asked for no replay, so ``events_lost``
    meant "not seen". Now it is a consumer on the library, on a clean session (no stopgap
    persistent session): what it missed it has replayed with its own key, and ``events_lost`` is
    what the library gave up on — none."""
    from portlane.edge.demo.report import DemoRun
    from portlane.edge.demo.run import DemoOptions, run_demo

    broker = MosquittoBroker(persistence_dir=tmp_path / "mosquitto")
    await broker.start()
    seen: list[DemoRun] = []
    outage: list[asyncio.Task[None]] = []

    async def restart() -> None:
        await broker.stop(graceful=True)
        await asyncio.sleep(BROKER_DOWN_S)  # the outage, as on a site
        await broker.start()

    def restart_after_two_passages(run: DemoRun) -> None:  # the demo's live-view hook
        seen[:] = [run]
        done = sum(1 for e in run.observer.events if e["type"] == "portlane.passage.completed") if run.observer else 0
        if not outage and done >= 2:
            outage.append(asyncio.get_running_loop().create_task(restart(), name="broker-restart"))

    try:
        opts = DemoOptions(lanes=2, vehicles=8, seed=7, inspect_ratio=0.5, broker=broker.url, timeout_s=300)
        summary = await run_demo(opts, on_tick=restart_after_two_passages)
        await asyncio.gather(*outage)
    finally:
        await broker.close()
    observer = seen[0].observer
    assert outage and observer is not None, "the broker was never restarted: the test shows nothing"
    stats = observer.client.stats
    log.info(
        "observer: %d connects, %d replays asked, %d late events, %d given up; %d events published",
        *(observer.link.connects, stats.replays_requested, stats.late, stats.lost, summary["events_published"]),
    )
    assert observer.link.connects >= 2 and not observer.link.persistent_session  # it lived through the outage
    assert summary["passages"] == 8 and summary["invariant_violations"] == 0, summary["violations"]
    assert summary["events_lost"] == 0 and stats.lost == 0, summary
    assert summary["events_received"] >= summary["events_published"]


def test_demo_identifies_vehicles_with_on_edge_ocr() -> None:
    """Cameras serve rendered vehicles over MJPEG; the lane reads them with the ONNX pipeline."""
    s = _demo("--lanes", "2", "--vehicles", "4", "--seed", "3", "--ocr")
    rec = s["recognition"]
    assert s["passages"] == 4 and s["invariant_violations"] == 0 and s["events_lost"] == 0
    assert rec["identifications"] == 4
    assert rec["plates_exact"] >= 3  # synthetic renders, real models: allow one miss, never silence
    assert rec["containers_read"] == rec["containers_exact"] > 0  # a check-digit-valid read is a true read


def test_demo_replays_labelled_photographs(tmp_path: Path) -> None:
    """``--images``: the container cameras show the photographs of a labelled folder for the
    generated trucks, which take the photographs' numbers; per passage the summary says what the
    lane identified alone (right or wrong) and what went to an officer."""
    import cv2
    from portlane.sim_devices.render import render_container

    numbers = ("CSQU3054383", "MSKU0539301")
    for i, n in enumerate(numbers):
        cv2.imwrite(str(tmp_path / f"c{i}.jpg"), render_container(n, "split", size_type="22G1", seed=i))
    (tmp_path / "labels.csv").write_text(
        "file,text,kind\n" + "".join(f"c{i}.jpg,{n},container_door\n" for i, n in enumerate(numbers)),
        encoding="utf-8",
    )
    s = _demo("--lanes", "1", "--vehicles", "3", "--seed", "3", "--ocr", "--images", str(tmp_path))
    pp = s["recognition"]["per_passage"]
    assert s["passages"] == 3 and s["invariant_violations"] == 0 and s["events_lost"] == 0
    assert pp["passages"] == 3 and pp["automated_wrong"] == 0
    apart = pp["swapped_plate_caught"] + pp["seal_fault_caught"]  # planted faults, flagged
    assert pp["automated_right"] + pp["needs_officer"] + apart == 3
    assert pp["automated_right"] == pp["automated_right_by_reads"] + pp["automated_right_by_declaration"]
    assert s["recognition"]["containers_read"] >= 1  # the photographs were read, not drawn


# ---------------------------------------------------------------------- bad input: one line, an exit code
def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from portlane.edge.cli import main

    rc = main(["demo", *args, "--json"])
    out, err = capsys.readouterr()
    return rc, out, err


BAD_YAML = "site: {id: x\n"
BAD_SCHEMA = "site: {id: x, name: y}\nagencies: [customs]\nlanes: []\n"


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--lanes", "0"], 2, "--lanes 0: a demo has 1 to 200 lanes"),
        (["--lanes", "-1"], 2, "--lanes -1:"),
        (["--vehicles", "0"], 2, "--vehicles 0: a demo needs at least one vehicle"),
        (["--vehicles", "-3"], 2, "--vehicles -3:"),
        (["--time-factor", "0"], 2, "--time-factor 0.0: must be > 0"),
        (["--inspect-ratio", "1.5"], 2, "--inspect-ratio 1.5: a share, from 0 to 1"),
        (["--inject-forged", "-1"], 2, "--inject-forged -1: cannot be negative"),
        (["--declared", "1.2"], 2, "--declared 1.2: a share, from 0 to 1"),
        (["--mismatches", "heavy=1"], 2, "--mismatches heavy=1: 'heavy' is not a mismatch; one of"),
        (["--mismatches", "expired=x"], 2, "--mismatches expired=x: 'expired=x': the count must be a whole number"),
        (["--broker", "http://127.0.0.1:1883"], 2, "--broker http://127.0.0.1:1883: not an MQTT URL"),
        (["--broker", "mqtt://127.0.0.1:99999"], 2, "--broker mqtt://127.0.0.1:99999: Port out of range"),
        (["--broker", "mqtt://"], 2, "--broker mqtt://: not an MQTT URL"),
        (["--site", "{missing}"], 2, "{missing}: <root>: cannot read: No such file or directory"),
        (["--site", "{bad_yaml}"], 2, "{bad_yaml}: line 2, column 1: not valid YAML"),
        (["--site", "{bad_schema}"], 2, "{bad_schema}: lanes: Tuple should have at least 1 item"),
    ],
)
def test_bad_input_is_one_line_and_an_exit_code(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], code: int, says: str
) -> None:
    files = {"missing": tmp_path / "nope.yaml", "bad_yaml": tmp_path / "bad.yaml", "bad_schema": tmp_path / "x.yaml"}
    files["bad_yaml"].write_text(BAD_YAML)
    files["bad_schema"].write_text(BAD_SCHEMA)
    args = [a.format(**{k: str(v) for k, v in files.items()}) for a in args]
    says = says.format(**{k: str(v) for k, v in files.items()})
    rc, out, err = _cli(capsys, *args)
    assert rc == code
    assert err.count("\n") == 1 and err.startswith("portlane demo: ") and "Traceback" not in err
    assert says in err
    lines = out.splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == {
        "error": err.strip().removeprefix("portlane demo: "),
        "exit_code": code,
    }


def test_an_unreachable_broker_is_named_after_a_bounded_wait(capsys: pytest.CaptureFixture[str]) -> None:
    from portlane.edge.demo.broker import free_port
    from portlane.edge.demo.run import BROKER_WAIT_S

    url = f"mqtt://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    rc, out, err = _cli(capsys, "--broker", url)
    assert rc == 3 and time.monotonic() - t0 < BROKER_WAIT_S + 10
    assert err.startswith(f"portlane demo: --broker {url}: no MQTT broker reachable within 5 s")
    assert "leave out --broker to use the embedded one" in err and json.loads(out)["exit_code"] == 3


# ---------------------------------------------------------------------- a site for any number of lanes
@pytest.mark.parametrize("n", [1, 4, 6, 7, 16, 32, 64])
def test_a_generated_site_has_unique_buses_paths_and_addresses(n: int) -> None:
    from portlane.edge.config import parse_site
    from portlane.edge.demo.options import DEFAULT_SITE
    from portlane.edge.demo.sitegen import demo_site

    raw = demo_site(yaml.safe_load(DEFAULT_SITE.read_text(encoding="utf-8")), n)
    site = parse_site(raw)
    assert len(site.lanes) == n and len({la.id for la in site.lanes}) == n
    gates, serial, tcp = [], [], []
    for lane in raw["lanes"]:
        g = lane["devices"]["gate"]
        if g["backend"] == "rs485":
            gates.append((g["link"].get("bus") or g["link"]["url"], g.get("unit", 1)))
        for dev in [d for k, d in lane["devices"].items() if k != "cameras" and d]:
            link = dev["link"]
            if link["kind"] == "serial":
                serial.append(link["url"])
            elif link["kind"] == "tcp":
                tcp.append((link["host"], link["port"]))
    assert len(set(gates)) == len(gates), "two gates share an RS-485 address"
    assert len(set(serial)) == len(serial) and len(set(tcp)) == len(tcp)
    kinds = [la.kind for la in site.lanes]
    if n >= 3:
        assert "passenger" in kinds and kinds.count("cargo") >= kinds.count("passenger")
    for s in site.scanners:
        assert set(s.lanes) == {la.id for la in site.lanes if la.scanner == s.id}


@pytest.mark.slow
async def test_simulators_start_for_32_lanes() -> None:
    from portlane.edge.demo.options import DEFAULT_SITE
    from portlane.edge.demo.sitegen import demo_site
    from portlane.sim_devices.catalog import start_site

    raw = demo_site(yaml.safe_load(DEFAULT_SITE.read_text(encoding="utf-8")), 32, cameras=False)
    async with await start_site(raw, {}, time_factor=0.1) as sims:
        assert len(sims.links["lanes"]) == 32
        gates = [lk["gate"] for lk in sims.links["lanes"].values()]
        assert all(g.get("url") or g.get("port") for g in gates)


@pytest.mark.slow
@pytest.mark.timeout(600)  # 16 lane daemons on 2 cores: ~40 s quiet, minutes on a loaded machine
def test_sixteen_lanes_on_one_host() -> None:
    # The demo gives up first, so that a run too slow for the test says where its lanes were
    # (the summary's stuck_lanes) instead of being killed by pytest-timeout without a word.
    s = _demo("--lanes", "16", "--vehicles", "32", "--seed", "5", "--timeout", "540")
    assert s["passages"] == 32 and s["events_lost"] == 0 and s["invariant_violations"] == 0
    assert s["timed_out"] is False and s["stuck_lanes"] == {}


# ---------------------------------------------------------------------- the end of a run
async def test_the_live_view_never_reads_a_closed_lane_and_nothing_is_left_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broker: BrokerProcess
) -> None:
    """The live table read lane.status() -> outbox.stats() while the lanes closed their
    outboxes ("Cannot operate on a closed database"); every run left /tmp/portlane-demo-*."""
    import tempfile

    from portlane.edge.demo.options import DemoOptions
    from portlane.edge.demo.run import run_demo

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    ticks: list[bool] = []
    inside: list[list[str]] = []

    def on_tick(run: object) -> None:
        for d in run.lanes.values():  # type: ignore[attr-defined]
            ticks.append(d.unit.outbox.closed)
            d.status()
        inside.append(sorted(p.name for p in tmp.iterdir()))

    # In-process, so on an external broker: the embedded one leaves sockets for the GC.
    s = await run_demo(DemoOptions(lanes=2, vehicles=4, seed=3, timeout_s=120, broker=broker.url), on_tick=on_tick)
    assert s["passages"] == 4 and not s["timed_out"]
    assert ticks and not any(ticks), "the live view read a lane whose outbox was closed"
    assert any(x and x[0].startswith("portlane-demo-") for x in inside)  # the state was there...
    assert list(tmp.iterdir()) == []  # ...and is gone


def test_a_run_that_gives_up_still_prints_its_summary(
    capsys: pytest.CaptureFixture[str], broker: BrokerProcess
) -> None:
    rc, out, _err = _cli(
        capsys, "--lanes", "2", "--vehicles", "6", "--seed", "3", "--timeout", "2", "--broker", broker.url
    )
    s = json.loads(out)
    assert rc == 1 and s["timed_out"] is True and s["passages"] < 6
    assert s["stuck_lanes"], "which lanes, in which stage"
    for st in s["stuck_lanes"].values():
        assert {"stage", "in_service", "sensors", "gate", "vehicle_position", "passages"} <= set(st)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("console", [False, True], ids=["", "console"])
def test_a_signal_stops_the_demo_in_one_line_and_cleans_up(
    tmp_path: Path, sig: signal.Signals, code: int, console: bool
) -> None:
    """Issue 24: SIGINT gave 868 lines and 56 tracebacks (the camera simulators' clients),
    SIGTERM with --console 821 lines; now one "stopped" line and 130 / 143, after clean-up."""
    from portlane.edge.demo.broker import free_port

    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TMPDIR": str(tmp_path)}
    argv = [sys.executable, "-m", "portlane.edge", "demo", "--lanes", "2", "--vehicles", "20"]
    if console:
        argv += ["--console", f"127.0.0.1:{free_port()}"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        # The run is under way — cameras streaming, the platform deciding — once the lanes have
        # audited an accepted command. Another process's file (stdlib has no inotify): polled
        # with a deadline, not slept on.
        while not any(p.stat().st_size for p in tmp_path.glob("portlane-demo-*/state/audit.jsonl")):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, err[-2000:]
    # A device that answered late on a loaded machine says so before the signal (its supervisor's
    # one WARNING, "c2/io online -> degraded", seen at load 10): the demo at work, not the noise
    # of its shutdown, which is all this one-line check is about.
    lines = [x for x in err.splitlines(keepends=True) if " WARNING portlane.drivers.supervisor: " not in x]
    assert "".join(lines) == f"portlane demo: stopped by {sig.name} (cleaned up)\n" and out == "", err[-3000:]
    assert list(tmp_path.iterdir()) == []


def test_the_json_summary_of_a_stopped_demo_is_one_object(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "portlane.edge", "demo", "--lanes", "1", "--vehicles", "20", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("portlane-demo-*")):  # polled with a deadline (see above)
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err[-2000:]
    assert json.loads(out) == {"error": "stopped by SIGTERM (cleaned up)", "exit_code": 143}
    assert list(tmp_path.iterdir()) == []


async def test_the_live_view_ends_on_the_final_count(broker: BrokerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 24: the live table's last frame showed 39/40 just before the summary said 40."""
    from portlane.edge.demo import run as demo_run
    from portlane.edge.demo.options import DemoOptions

    monkeypatch.setattr(demo_run, "TICK_S", 3600.0)  # one frame at the start, then only the last one
    frames: list[int] = []

    def on_tick(run: demo_run.DemoRun) -> None:
        frames.append(demo_run.count_events(run, "passage.completed"))

    s = await demo_run.run_demo(
        DemoOptions(lanes=1, vehicles=3, seed=3, timeout_s=120, broker=broker.url), on_tick=on_tick
    )
    assert s["passages"] == 3 and frames[-1] == 3, frames
