"""Issue 24, "docs and program disagree": the technician's commands against daemons behind real
control sockets, as docs/operations.md describes them (each of these answered otherwise)."""

from __future__ import annotations

import json
import logging
import os
import pty
import subprocess
import sys
import tty
from pathlib import Path
from typing import Any

import pytest
from control_helpers import FakeDaemon, cli
from portlane.drivers.config import SerialLink
from portlane.drivers.serial_link import SerialPort, open_ports
from portlane.edge.ops.control import ControlServer, default_path, request

ROOT = Path(__file__).resolve().parents[2]
DEMO_SITE = ROOT / "firmware_config" / "sites" / "zhuhai-hzmb-cargo.yaml"
WHO = ("--operator", "tech:li.wei", "--reason", "practising on the simulator", "--yes")


# ------------------------------------------------------------------------------ routing


async def test_gate_open_for_a_lane_no_daemon_serves_is_exit_3_even_with_one_daemon(
    sockdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c1 = FakeDaemon("c1")
    async with ControlServer(sockdir / "lane-c1.sock", c1.handlers()):
        assert await cli("gate", "open", "--lane", "c9", *WHO) == 3  # docs: 3, lane not served
    assert c1.calls == []  # c1's daemon was never asked to move a barrier of c9
    assert "no running daemon serves lane 'c9'" in capsys.readouterr().err


async def test_a_refusal_of_a_real_handler_is_one_answer_line_and_one_log_line(
    sockdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def gate(req: dict[str, Any]) -> dict[str, Any]:
        raise ValueError(f"this daemon drives lane c1, not {req['lane']}")

    async with ControlServer(sockdir / "lane-c1.sock", {"gate": gate}):
        with caplog.at_level(logging.INFO, logger="portlane.edge.ops.control"):
            answer = await request(sockdir / "lane-c1.sock", "gate", lane="c9")
    assert answer == {"ok": False, "error": "refused: this daemon drives lane c1, not c9"}
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.levelno == logging.WARNING and record.exc_info is None  # was a traceback at error


async def test_scanner_abort_without_a_scanner_daemon_says_so(
    sockdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with ControlServer(sockdir / "lane-c1.sock", FakeDaemon("c1").handlers()):
        assert await cli("scanner", "abort", *WHO) == 3
    err = capsys.readouterr().err
    assert "no running daemon can abort a scan" in err and "unknown op" not in err
    scanner = FakeDaemon(scanner="xray-1")
    async with (
        ControlServer(sockdir / "lane-c1.sock", FakeDaemon("c1").handlers()),
        ControlServer(sockdir / "scanner-xray-1.sock", scanner.handlers()),
    ):
        assert await cli("scanner", "abort", *WHO) == 0
        assert await cli("scanner", "abort", "--scanner", "xray-2", *WHO) == 3
    assert [c["op"] for c in scanner.calls] == ["scanner_abort"]


async def test_config_diff_with_two_daemons_compares_with_both(
    sockdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running = DEMO_SITE.read_text(encoding="utf-8")
    changed = tmp_path / "site.yaml"
    changed.write_text(running.replace("decision_timeout_s: 120", "decision_timeout_s: 90"), encoding="utf-8")
    async with (
        ControlServer(sockdir / "lane-c1.sock", FakeDaemon("c1", site_yaml=running).handlers()),
        ControlServer(sockdir / "lane-c2.sock", FakeDaemon("c2", site_yaml=running).handlers()),
    ):
        assert await cli("config", "diff", str(DEMO_SITE)) == 0  # was 2: "choose one with --socket"
        assert "same as the running configuration (lane-c1, lane-c2)" in capsys.readouterr().out
        assert await cli("config", "diff", str(changed), "--json") == 1
    out = json.loads(capsys.readouterr().out)
    assert out["same"] is False and [r["daemons"] for r in out["running"]] == [["lane-c1", "lane-c2"]]
    assert "+  decision_timeout_s: 90" in out["diff"]


# ------------------------------------------------------------------------------ outbox


async def test_outbox_purge_on_an_empty_outbox_says_it_purged_nothing(
    sockdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with ControlServer(sockdir / "lane-c1.sock", FakeDaemon("c1").handlers()):
        assert await cli("outbox", "purge", "--count", "1", *WHO) == 0
    out = capsys.readouterr().out
    assert "purged 0 undelivered events of the 1 asked for" in out and "purge 1 outbox events" not in out


async def test_outbox_replay_count_is_the_last_n_events(sockdir: Path) -> None:
    daemon = FakeDaemon("c1")
    daemon.outbox = {"depth": 0, "last_seq": 40}
    async with ControlServer(sockdir / "lane-c1.sock", daemon.handlers()):
        assert await cli("outbox", "replay", "--count", "5", *WHO) == 0
    [replay] = [c for c in daemon.calls if c.get("action") == "replay"]
    assert replay["from_seq"] == 36  # seq 36..40; the daemon's handler replays from from_seq


async def test_outbox_show_prints_no_raw_dicts(sockdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    daemon = FakeDaemon("c1")
    daemon.outbox = {"depth": 3, "last_seq": 12, "oldest_age_s": 4.5}
    async with ControlServer(sockdir / "lane-c1.sock", daemon.handlers()):
        assert await cli("outbox", "show") == 0
    out = capsys.readouterr().out
    assert "outbox.depth" in out and "outbox.last_seq" in out and "{" not in out and "'" not in out


# ------------------------------------------------------------------------------ serial ports


def _pty() -> tuple[int, int, str]:
    master, slave = pty.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


async def test_serial_sniff_refuses_only_a_port_a_running_daemon_holds(
    sockdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With lane c1's daemon stopped, c1's bus is free even though c2's daemon runs with a site
    file that names it (every configured port used to count as held by every daemon)."""
    m1, s1, c1_bus = _pty()
    m2, s2, c2_bus = _pty()
    site_yaml = DEMO_SITE.read_text(encoding="utf-8")
    c2 = FakeDaemon("c2", site_yaml=site_yaml, serial_ports=(c2_bus,))
    sniff = ("serial", "sniff", "--protocol", "gate-rs485", "--count", "1", "--timeout", "0.3")
    try:
        async with ControlServer(sockdir / "lane-c2.sock", c2.handlers()):
            assert await cli(*sniff[:2], c2_bus, *sniff[2:]) == 2
            assert f"in use by daemon at {sockdir / 'lane-c2.sock'}" in capsys.readouterr().err
            assert await cli(*sniff[:2], c1_bus, *sniff[2:]) == 1  # opened and listened: nothing came
            assert "0 frame(s) before the 0.3 s timeout" in capsys.readouterr().err
    finally:
        for fd in (m1, s1, m2, s2):
            os.close(fd)


async def test_a_daemon_reports_the_serial_ports_it_holds_open(tmp_path: Path) -> None:
    master, slave, path = _pty()
    port = SerialPort(SerialLink(kind="serial", url=path))
    try:
        assert path not in open_ports()
        await port.open()
        assert path in open_ports()
        await port.close()
        assert path not in open_ports()  # configured, but not held
    finally:
        os.close(master)
        os.close(slave)


def test_the_device_end_of_a_pty_is_not_a_reader() -> None:
    """A simulator holds both ends of its pty; that is the device, not another reader."""
    master, slave, path = _pty()
    try:
        res = subprocess.run(
            [sys.executable, "-m", "portlane.edge", "serial", "sniff", path, "--count", "1", "--timeout", "0.3"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PORTLANE_RUN_DIR": "/nonexistent"},
        )
    finally:
        os.close(master)
        os.close(slave)
    assert res.returncode == 1 and "in use" not in res.stderr


# ------------------------------------------------------------------------------ where things are


def test_a_daemon_started_by_hand_listens_where_the_cli_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PORTLANE_CONTROL", raising=False)
    monkeypatch.setenv("PORTLANE_RUN_DIR", "/tmp/practice/run")
    assert default_path("lane-c1") == "/tmp/practice/run/lane-c1.sock"  # was /run/portlane/control.sock
    monkeypatch.setenv("PORTLANE_CONTROL", "/tmp/x.sock")
    assert default_path("lane-c1") == "/tmp/x.sock"


async def test_audit_verify_without_a_path_reads_the_log_the_daemons_keep(
    sockdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from portlane.edge.trust.audit import AuditLog

    monkeypatch.delenv("PORTLANE_STATE_DIR", raising=False)
    log_path = tmp_path / "state" / "audit.jsonl"
    log_path.parent.mkdir()
    with AuditLog(log_path) as log:
        log.append("lane_closed", actor="tech:li.wei", reason="practising on the simulator", lane="c1")
    async with ControlServer(sockdir / "lane-c1.sock", FakeDaemon("c1", audit_log=str(log_path)).handlers()):
        assert await cli("audit", "verify") == 0  # was: /var/lib/portlane/audit.jsonl: cannot read
    assert f"{log_path}: ok — 1 entries" in capsys.readouterr().out
