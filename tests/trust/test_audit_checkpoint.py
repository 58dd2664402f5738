"""Audit anchoring: signed checkpoints catch truncation and replacement, not later entries."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from portlane.edge.config import parse_site
from portlane.edge.delivery.mqtt import MqttLink
from portlane.edge.demo.broker import BrokerProcess
from portlane.edge.errors import CheckpointError
from portlane.edge.trust.audit import AuditLog
from portlane.edge.trust.audit_chain import AuditProblem, Checkpoint, verify_against_checkpoint
from portlane.edge.trust.authority import Authority
from portlane.edge.trust.events import EventSigner
from portlane.edge.trust.keys import generate_keypair

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 23, 18, 0, 0, tzinfo=UTC)
LANE_PRIV, LANE_PUB = generate_keypair()
SCANNER_PRIV, SCANNER_PUB = generate_keypair()


class StepClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=10)
        return self.now


def site_raw() -> dict[str, Any]:
    raw = yaml.safe_load((ROOT / "firmware_config/sites/zhuhai-hzmb-cargo.yaml").read_text())
    raw["lanes"][0]["key"] = {"id": "lane-c1", "public_key": LANE_PUB}
    raw["scanners"][0]["key"] = {"id": "scanner-xray-1", "public_key": SCANNER_PUB}
    return raw


AUTHORITY = Authority.from_site(parse_site(site_raw()))
SIGNER = EventSigner("lane-c1", LANE_PRIV)


def grow(path: Path, count: int, *, actor: str = "customs-k") -> None:
    with AuditLog(path, clock=StepClock()) as log:
        for i in range(count):
            log.append("command_accepted", actor=actor, reason="decision", lane="c1", data={"i": i})


def checkpointed(tmp_path: Path, count: int = 600) -> tuple[Path, Checkpoint]:
    path = tmp_path / "audit.jsonl"
    grow(path, count)
    with AuditLog(path, clock=StepClock()) as log:
        cp = log.checkpoint(unit="c1", signer=SIGNER)
    assert (cp.entries, cp.unit, cp.sigkeyid) == (count, "c1", "lane-c1")
    return path, cp


def drop_newest(path: Path, n: int) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-n]))


@pytest.mark.parametrize("n", [1, 10, 500])
def test_truncation_of_the_newest_entries_is_caught(tmp_path: Path, n: int) -> None:
    path, cp = checkpointed(tmp_path)
    assert verify_against_checkpoint(path, cp, authority=AUTHORITY).ok
    drop_newest(path, n)
    report = verify_against_checkpoint(path, cp, authority=AUTHORITY)
    assert not report.ok and report.problem is AuditProblem.TRUNCATED
    assert f"the newest {n} were removed" in report.detail


def test_a_fresh_chain_in_place_of_the_log_is_caught(tmp_path: Path) -> None:
    path, cp = checkpointed(tmp_path)
    path.unlink()
    grow(path, 700, actor="border-k")  # a wholly valid chain, longer than the checkpoint
    report = verify_against_checkpoint(path, cp, authority=AUTHORITY)
    assert not report.ok and report.problem is AuditProblem.CHECKPOINT_MISMATCH and report.line == 600


def test_no_false_alarm_after_later_legitimate_entries(tmp_path: Path) -> None:
    path, cp = checkpointed(tmp_path)
    grow(path, 1)
    assert verify_against_checkpoint(path, cp, authority=AUTHORITY).ok
    grow(path, 250)
    report = verify_against_checkpoint(path, cp, authority=AUTHORITY)
    assert report.ok and report.entries == 851


def test_checkpoint_signatures_are_checked(tmp_path: Path) -> None:
    _, cp = checkpointed(tmp_path, 3)
    forged = Checkpoint.model_validate(cp.as_dict() | {"entries": 2})
    with pytest.raises(CheckpointError, match="does not verify"):
        forged.verify(AUTHORITY)
    by_scanner = Checkpoint.model_validate(EventSigner("scanner-xray-1", SCANNER_PRIV).sign(cp.as_dict()))
    with pytest.raises(CheckpointError, match="belongs to xray-1, not to c1"):
        by_scanner.verify(AUTHORITY)
    rogue = Checkpoint.model_validate(EventSigner("lane-c1", generate_keypair()[0]).sign(cp.as_dict()))
    with pytest.raises(CheckpointError):
        rogue.verify(AUTHORITY)
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        Checkpoint.parse(b'{"entries": -1}')
    # The payload is the contract's audit.checkpoint event data.
    from portlane.edge.contract.events import EVENTS

    EVENTS["audit.checkpoint"].model_validate(cp.as_dict())
    assert Checkpoint.parse({"type": "portlane.audit.checkpoint", "data": cp.as_dict()}) == cp


def test_checkpoints_include_appends_by_other_writers(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as a, AuditLog(path) as b:
        a.append("lane_closed", actor="portlane", reason="r")
        b.append("lane_opened", actor="portlane", reason="r")
        assert a.checkpoint(unit="c1", signer=SIGNER).entries == 2


# -- CLI -----------------------------------------------------------------------------------------


def portlane(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portlane.edge", *args], capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )


def test_cli_verify_with_a_checkpoint_file(tmp_path: Path) -> None:
    path, cp = checkpointed(tmp_path, 30)
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(site_raw(), allow_unicode=True))
    cp_file = tmp_path / "cp.json"
    cp_file.write_text(json.dumps(cp.as_dict()))
    r = portlane("audit", "verify", str(path), "--checkpoint", str(cp_file), "--site", str(site))
    assert r.returncode == 0, r.stderr
    assert "contains the checkpoint" in r.stdout and "verified (lane-c1)" in r.stdout
    grow(path, 1)  # --expect-head would raise a false alarm here; the checkpoint does not
    assert portlane("audit", "verify", str(path), "--checkpoint", str(cp_file), "--site", str(site)).returncode == 0
    drop_newest(path, 10)
    r = portlane("audit", "verify", str(path), "--checkpoint", str(cp_file), "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 1 and out["problem"] == "truncated"
    assert out["checkpoint"]["signature"] == "NOT checked (give --site)"
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    r = portlane("audit", "verify", str(path), "--checkpoint", str(bad))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "bad.json: not a checkpoint" in r.stderr


async def test_cli_verify_with_the_retained_checkpoint_from_the_broker(tmp_path: Path, broker: BrokerProcess) -> None:
    path, cp = checkpointed(tmp_path, 20)
    raw = site_raw()
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(raw, allow_unicode=True))
    link = MqttLink(broker.url, client_id="cp-publisher")
    task = asyncio.create_task(link.run(), name="cp-publisher")
    try:
        async with asyncio.timeout(10):
            await link.wait_connected()
            topic = f"portlane/v1/{raw['site']['id']}/c1/checkpoint"
            await link.publish(topic, json.dumps(cp.as_dict()).encode(), retain=True)
    finally:
        await link.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    args = ("audit", "verify", str(path), "--broker", broker.url, "--site", str(site), "--unit", "c1")
    r = await asyncio.to_thread(portlane, *args)
    assert r.returncode == 0, r.stderr
    drop_newest(path, 1)
    r = await asyncio.to_thread(portlane, *args)
    assert r.returncode == 1 and "truncated" in r.stderr
    r = await asyncio.to_thread(portlane, *args[:-1], "c2", "--timeout", "0.5")
    assert r.returncode == 3 and "no retained checkpoint of c2" in r.stderr
