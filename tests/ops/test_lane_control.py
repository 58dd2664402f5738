"""``LaneControl`` (edge/ops/handlers.py) over a real Unix socket in front of a real lane daemon
(virtual devices, real broker): each operation does what the technician's CLI expects of it,
refuses what it must, and writes the acting ones to the audit log."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from portlane.edge.demo.broker import BrokerProcess
from portlane.edge.ops.control import ControlServer, request
from portlane.edge.ops.handlers import LaneControl
from portlane.edge.trust.audit_chain import read_entries

from tests.virtual_lane import start_lane, stop_lane

OP = {"operator": "tech:li.wei", "reason": "maintenance window, lane 1"}


@pytest.fixture
def sockdir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 107 bytes; pytest's tmp_path can be longer.
    d = Path(tempfile.mkdtemp(prefix="pl-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _audit_kinds(state_dir: Path) -> list[str]:
    return [e.kind for _n, e, _raw in read_entries(state_dir / "audit.jsonl") if e is not None]


async def test_every_lane_operation_answers_from_the_running_lane(
    broker: BrokerProcess, tmp_path: Path, sockdir: Path
) -> None:
    state = tmp_path / "state"
    rig = await start_lane(broker.url, state)
    path = sockdir / "lane-c1.sock"
    try:
        control = LaneControl(rig.daemon, None, asyncio.Event())
        async with ControlServer(path, control.handlers()):
            ping = await request(path, "ping")
            # the operations the technician's CLI sends to a lane (edge/cli/)
            assert ping["ops"] == [
                "board",
                "config",
                "config_apply",
                "devices",
                "gate",
                "lane_service",
                "outbox",
                "passage",
                "status",
            ]

            status = await request(path, "status")
            assert status["site"] == rig.site.site.id and [s["lane"] for s in status["lanes"]] == ["c1"]
            devices = await request(path, "devices")
            assert devices["lanes"][0]["lane"] == "c1" and "gate" in devices["lanes"][0]["devices"]

            missing = await request(path, "passage", id="c1-none")
            assert missing["ok"] is False and "no passage c1-none" in missing["error"]

            shown = await request(path, "outbox")
            assert shown["outbox"]["last_seq"] == rig.daemon.unit.outbox.last_seq

            # acting operations: the lane must be this one, and an operator and a reason are required
            wrong = await request(path, "lane_service", lane="c2", in_service=False, **OP)
            assert wrong["ok"] is False and "drives lane c1, not c2" in wrong["error"]
            anonymous = await request(path, "lane_service", lane="c1", in_service=False)
            assert anonymous["ok"] is False and rig.logic.in_service
            closed = await request(path, "lane_service", lane="c1", in_service=False, **OP)
            assert closed["in_service"] is False and not rig.logic.in_service

            bad_gate = await request(path, "gate", action="lift", **OP)
            assert bad_gate["ok"] is False and "open, close or stop" in bad_gate["error"]

            replayed = await request(path, "outbox", action="replay", from_seq=1, **OP)
            assert replayed["ok"] is True and replayed["replayed"] >= 0
            purge = await request(path, "outbox", action="purge", **OP)
            assert purge["ok"] is False and "explicit positive count" in purge["error"]

            no_file = await request(path, "config")
            assert no_file["ok"] is False and "without a site file" in no_file["error"]
    finally:
        await stop_lane(rig)
    kinds = _audit_kinds(state)
    assert "outbox_replay" in kinds
    assert "outbox_purge" not in kinds  # refused before anything was done
