"""edge/ops/control.py over a real Unix socket, and the technician's CLI against in-test daemons."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest
from control_helpers import FakeDaemon, cli
from portlane.edge.errors import ControlError, DaemonUnreachableError
from portlane.edge.ops.control import ControlServer, default_path, discover, request

ROOT = Path(__file__).resolve().parents[2]
DEMO_SITE = ROOT / "firmware_config" / "sites" / "zhuhai-hzmb-cargo.yaml"


# ------------------------------------------------------------------------------ server / client


async def test_round_trip_permissions_and_errors(sockdir: Path) -> None:
    path = sockdir / "lane-c1.sock"

    async def echo(req: dict[str, Any]) -> dict[str, Any]:
        return {"echo": req.get("x"), "peer_uid": req["peer"]["uid"]}

    async def boom(req: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("handler bug")

    async def refuse(req: dict[str, Any]) -> dict[str, Any]:
        return {"ok": False}

    async with ControlServer(path, {"echo": echo, "boom": boom, "refuse": refuse}):
        st = path.lstat()
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert await request(path, "echo", x=[1, "二"]) == {"ok": True, "echo": [1, "二"], "peer_uid": os.getuid()}
        bad = await request(path, "boom", id=7)
        assert bad == {"ok": False, "error": "boom: RuntimeError: handler bug", "id": 7}
        assert await request(path, "echo", x=2) == {"ok": True, "echo": 2, "peer_uid": os.getuid()}  # still up
        assert await request(path, "refuse") == {"ok": False, "error": "refuse failed"}
        unknown = await request(path, "nope")
        assert not unknown["ok"] and "boom, echo, refuse" in unknown["error"]
        ping = await request(path, "ping")
        assert ping["ok"] and ping["pid"] == os.getpid() and ping["ops"] == ["boom", "echo", "refuse"]
        assert discover() == [str(path)]

        # malformed lines get an error line each; the connection stays usable
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b'not json\n[1]\n{"op":"echo","x":3}\n')
        answers = [json.loads(await reader.readline()) for _ in range(3)]
        writer.close()
        await writer.wait_closed()
        assert [a["ok"] for a in answers] == [False, False, True]
        assert "not JSON" in answers[0]["error"] and answers[2]["echo"] == 3
    assert not path.exists()  # removed on close
    with pytest.raises(DaemonUnreachableError):
        await request(path, "echo")


async def test_stale_socket_is_replaced_but_a_live_one_is_not(sockdir: Path) -> None:
    path = sockdir / "c.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a crashed daemon's leftover: file exists, nobody listens
    async with ControlServer(path, {}) as first:
        assert (await request(path, "ping"))["ok"]
        with pytest.raises(ControlError, match="already running"):
            await ControlServer(path, {}).start()
        assert (await request(path, "ping"))["ok"]  # the live one is untouched
        await first.close()
        await first.close()  # idempotent
    regular = sockdir / "file.sock"
    regular.write_text("precious")
    with pytest.raises(ControlError, match="not a socket"):
        await ControlServer(regular, {}).start()
    assert regular.read_text() == "precious"


async def test_closing_ends_open_connections(sockdir: Path) -> None:
    path = sockdir / "c.sock"
    server = ControlServer(path, {})
    await server.start()
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(b'{"op":"ping"}\n')
    assert json.loads(await reader.readline())["ok"]  # accepted and being served
    await server.close()
    async with asyncio.timeout(5):
        assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()


def test_default_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PORTLANE_CONTROL", raising=False)
    assert default_path() == "/run/portlane/control.sock"
    monkeypatch.setenv("PORTLANE_CONTROL", "/tmp/x.sock")
    assert default_path() == "/tmp/x.sock"
    assert discover() == ["/tmp/x.sock"]


# ------------------------------------------------------------------------------ the ops CLI


async def test_gate_open_needs_operator_reason_and_confirmation(sockdir: Path, capsys) -> None:
    daemon = FakeDaemon("c1")
    path = str(sockdir / "lane-c1.sock")
    async with ControlServer(path, daemon.handlers()):
        assert await cli("gate", "open", "--lane", "c1", "--yes", "--socket", path) == 2
        assert await cli("gate", "open", "--lane", "c1", "--yes", "--operator", "tech:li", "--socket", path) == 2
        assert "--operator NAME and --reason TEXT" in capsys.readouterr().err
        # the audit module's rules apply here too: a reason of a few characters is not one
        assert (
            await cli(
                "gate", "open", "--lane", "c1", "--yes", "--operator", "tech:li", "--reason", "x", "--socket", path
            )
            == 2
        )
        # no --yes and no terminal to ask on (stdin is not a tty under pytest)
        assert (
            await cli(
                "gate",
                "open",
                "--lane",
                "c1",
                "--operator",
                "tech:li",
                "--reason",
                "barrier stuck, truck waiting",
                "--socket",
                path,
            )
            == 2
        )
        assert daemon.calls == []
        capsys.readouterr()
        assert (
            await cli(
                "gate",
                "open",
                "--lane",
                "c1",
                "--yes",
                "--operator",
                "tech:li",
                "--reason",
                "barrier stuck, truck waiting",
                "--socket",
                path,
                "--json",
            )
            == 0
        )
    assert json.loads(capsys.readouterr().out) == {"ok": True}
    [call] = daemon.calls
    assert call["op"] == "gate" and call["lane"] == "c1" and call["action"] == "open"
    assert call["operator"] == "tech:li" and call["reason"] == "barrier stuck, truck waiting"
    assert call["peer"]["pid"] > 0


async def test_acting_commands_route_to_the_daemon_of_the_lane(sockdir: Path) -> None:
    d1, d2 = FakeDaemon("c1"), FakeDaemon("c2")
    async with (
        ControlServer(sockdir / "lane-c1.sock", d1.handlers()),
        ControlServer(sockdir / "lane-c2.sock", d2.handlers()),
    ):
        who = ("--operator", "tech:li", "--reason", "lane maintenance window", "--yes")
        assert await cli("lane", "close", "c2", *who) == 0
        assert await cli("board", "say", "--lane", "c1", "请稍候 / please wait", *who) == 0
        assert await cli("gate", "stop", "--lane", "c9", *who) == 3  # nobody serves c9
    assert [(c["op"], c["lane"], c.get("in_service")) for c in d2.calls] == [("lane_service", "c2", False)]
    assert [(c["op"], c["text"]) for c in d1.calls] == [("board", "请稍候 / please wait")]


async def test_status_json_merges_daemons(sockdir: Path, capsys) -> None:
    async with (
        ControlServer(sockdir / "lane-c1.sock", FakeDaemon("c1").handlers()),
        ControlServer(sockdir / "lane-c2.sock", FakeDaemon("c2").handlers()),
    ):
        assert await cli("status", "--json") == 0
        out = json.loads(capsys.readouterr().out)
        assert out["ok"] and out["site"] == "zhuhai-hzmb-cargo" and out["broker"]["connected"]
        assert [lane["lane"] for lane in out["lanes"]] == ["c1", "c2"]
        assert out["lanes"][0]["outbox"]["depth"] == 2
        assert await cli("status") == 0  # the human table renders
        text = capsys.readouterr().out
        assert "zhuhai-hzmb-cargo" in text and "c2" in text and "online" in text
        assert await cli("devices", "--json", "--lane", "c2") == 0
        devs = json.loads(capsys.readouterr().out)["devices"]
        assert [(d["lane"], d["device"], d["health"]) for d in devs] == [("c2", "gate", "online")]


async def test_unreachable_daemon_is_exit_3(sockdir: Path, capsys) -> None:
    assert await cli("status", "--json") == 3  # nothing in the run dir
    assert await cli("status", "--socket", str(sockdir / "gone.sock")) == 3
    assert "no daemon" in capsys.readouterr().err


async def test_config_diff_and_apply(sockdir: Path, tmp_path: Path, capsys) -> None:
    running = DEMO_SITE.read_text(encoding="utf-8")
    daemon = FakeDaemon("c1", site_yaml=running)
    path = str(sockdir / "lane-c1.sock")
    changed = tmp_path / "site.yaml"
    changed.write_text(running.replace("decision_timeout_s: 120", "decision_timeout_s: 90"), encoding="utf-8")
    broken = tmp_path / "bad.yaml"
    broken.write_text(running.replace("kind: cargo", "kind: spaceship", 1), encoding="utf-8")
    who = ("--operator", "tech:li", "--reason", "shorter decision timeout", "--yes", "--socket", path)
    async with ControlServer(path, daemon.handlers()):
        assert await cli("config", "diff", str(DEMO_SITE), "--socket", path) == 0
        assert await cli("config", "diff", str(changed), "--socket", path, "--json") == 1
        out = capsys.readouterr().out
        diff = json.loads(out[out.index("{") :])["diff"]
        assert "-  decision_timeout_s: 120" in diff and "+  decision_timeout_s: 90" in diff
        assert "change-me" not in diff and "change-me" not in out  # secrets redacted
        assert await cli("config", "apply", str(broken), *who) == 2  # refused locally, never sent
        assert daemon.calls == []
        assert await cli("config", "apply", str(changed), *who) == 0
        daemon.apply_ok = False
        assert await cli("config", "apply", str(changed), *who) == 1
        assert "rolled back" in capsys.readouterr().err
    assert [c["yaml"] == changed.read_text(encoding="utf-8") for c in daemon.calls] == [True, True]


async def test_diag_bundle_redacts_secrets(sockdir: Path, tmp_path: Path, capsys) -> None:
    # The shipped site has no secret any more (TLS client certificates): add a legacy password.
    site_yaml = DEMO_SITE.read_text(encoding="utf-8").replace(
        "  max_packet_size: 1048576\n", "  max_packet_size: 1048576\n  username: lane\n  password: change-me\n"
    )
    assert "change-me" in site_yaml
    daemon = FakeDaemon("c1", site_yaml=site_yaml)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "lane.log").write_text("connect mqtt://lane:hunter2@10.0.0.1:1883\npassword = hunter2\nok\n")
    out = tmp_path / "bundle.tar.gz"
    async with ControlServer(sockdir / "lane-c1.sock", daemon.handlers()):
        assert await cli("diag", "bundle", "-o", str(out), "--log-dir", str(logs), "--no-journal", "--json") == 0
    names = json.loads(capsys.readouterr().out)["files"]
    assert {"versions.json", "config/site.yaml", "daemons/lane-c1/status.json", "logs/lane.log"} <= set(names)
    with tarfile.open(out) as tar:
        blobs = {m.name.split("/", 1)[1]: tar.extractfile(m).read().decode() for m in tar.getmembers()}
    assert "change-me" not in blobs["config/site.yaml"] and "<redacted>" in blobs["config/site.yaml"]
    assert "DCpmIjeV4lNbZoww" in blobs["config/site.yaml"]  # public keys are not secrets
    assert "hunter2" not in blobs["logs/lane.log"] and "ok" in blobs["logs/lane.log"]
    assert json.loads(blobs["versions.json"])["packages"]["pymodbus"]


def test_serial_sniff_decodes_gate_frames_on_a_pty() -> None:
    import subprocess
    import sys

    gate = pytest.importorskip("portlane.drivers.gate_rs485")
    master, slave = os.openpty()
    frames = [gate.encode_frame(1, 0x10), gate.encode_frame(1, 0x01)]
    argv = [
        sys.executable,
        "-m",
        "portlane.edge",
        "serial",
        "sniff",
        os.ttyname(slave),
        "--protocol",
        "gate-rs485",
        "--count",
        "3",
        "--timeout",
        "10",
        "--json",
    ]
    # Another process holds the port open, as a daemon would: refused without --force. (This test
    # process holds both ends of the pty — it is the device, like a simulator — which is no reader.)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY); "
            "print('open', flush=True); sys.stdin.read()",
            os.ttyname(slave),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        refused = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    finally:
        holder.communicate(timeout=20)
    assert refused.returncode == 2 and f"in use by pid {holder.pid}" in refused.stderr
    proc = subprocess.Popen([*argv, "--force"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        while "sniffing" not in (line := proc.stderr.readline()):  # the port is open, input flushed
            assert line, "sniffer exited before opening the port"
        os.write(master, b"\x00" + frames[0] + frames[1])
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    assert lines[0]["hex"] == "00" and "error" in lines[0]
    assert lines[1]["hex"] == frames[0].hex(" ") and lines[1]["decoded"]["cmd"] == "STATUS"
    assert lines[2]["decoded"] == {"address": 1, "cmd": "OPEN", "data": ""}
    assert all(x["ts"].endswith("+00:00") for x in lines)


# ------------------------------------------------------------------------------ direct device access


async def test_modbus_write_then_read_a_simulated_io_module(sockdir: Path, capsys) -> None:
    pytest.importorskip("portlane.sim_devices.io_module")
    from portlane.sim_devices.io_module import start_io
    from portlane.sim_devices.world import LaneWorld

    async with await start_io(LaneWorld("t1")) as sim:
        target = ("--host", "127.0.0.1", "--port", str(sim.link["port"]), "--unit", "1")
        # writing bypasses the daemon: operator and reason are required all the same
        assert await cli("modbus", "write", *target, "--table", "coil", "--address", "0", "0", "0", "1", "--yes") == 2
        assert (
            await cli(
                "modbus",
                "write",
                *target,
                "--table",
                "coil",
                "--address",
                "0",
                "0",
                "0",
                "1",
                "--yes",
                "--operator",
                "tech:li",
                "--reason",
                "lamp test, green",
            )
            == 0
        )
        capsys.readouterr()
        assert await cli("modbus", "read", *target, "--table", "coil", "--address", "0", "--count", "3", "--json") == 0
        out = json.loads(capsys.readouterr().out)
        assert out["values"] == [0, 0, 1] and out["table"] == "coil"
        assert await cli("modbus", "read", *target, "--table", "hr", "--address", "90", "--json") == 1
        assert "exception" in capsys.readouterr().err
    assert await cli("modbus", "read", *target, "--table", "di", "--address", "0", "--timeout", "0.5") == 3


def test_events_tail_filters_by_lane_and_stops_after_count(broker) -> None:
    import subprocess
    import sys

    import paho.mqtt.client as mqtt

    argv = [
        sys.executable,
        "-m",
        "portlane.edge",
        "events",
        "tail",
        "--broker",
        broker.url,
        "--site",
        "zhuhai-hzmb-cargo",
        "--lane",
        "c1",
        "--count",
        "2",
        "--timeout",
        "15",
        "--json",
    ]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PORTLANE_RUN_DIR": "/nonexistent"},
    )
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    try:
        assert proc.stderr is not None
        while "listening on" not in (line := proc.stderr.readline()):  # subscribed: nothing is missed
            assert line, "events tail exited before subscribing"
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        root = "portlane/v1/zhuhai-hzmb-cargo"
        for lane, etype, seq in (("c2", "gate.opened", 1), ("c1", "vehicle.arrived", 7), ("c1", "gate.opened", 8)):
            body = {"id": f"e{seq}", "type": f"portlane.{etype}", "seq": seq, "data": {"lane": lane}}
            pub.publish(f"{root}/{lane}/event/{etype}", json.dumps(body), qos=1).wait_for_publish(10)
        out, err = proc.communicate(timeout=20)
    finally:
        pub.loop_stop()
        pub.disconnect()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    events = [json.loads(x) for x in out.splitlines()]
    assert [(e["lane"], e["type"], e["payload"]["seq"]) for e in events] == [
        ("c1", "vehicle.arrived", 7),
        ("c1", "gate.opened", 8),
    ]


async def test_events_tail_unreachable_broker_is_exit_3(sockdir: Path) -> None:
    from portlane.edge.demo.broker import free_port

    assert (
        await cli("events", "tail", "--broker", f"mqtt://127.0.0.1:{free_port()}", "--site", "s", "--count", "1") == 3
    )
