"""Control socket and trust: the kernel's peer in every audit entry, `config apply` recording
hashes and changed paths, refusing new trusted keys without --allow-key-change, and a trial
broker connection with the configured credentials."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from portlane.edge.config import parse_site
from portlane.edge.demo.broker import BrokerProcess, MosquittoBroker
from portlane.edge.ops.control import ControlServer, peer_of, request
from portlane.edge.ops.handlers import LaneControl
from portlane.edge.trust.audit import AuditLog
from portlane.edge.trust.audit_chain import AuditEntry, read_entries, verify_log
from portlane.edge.trust.keys import generate_keypair
from portlane.edge.trust.pki import init_pki
from portlane.edge.unit.skeleton import restart_needed

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "firmware_config/sites/zhuhai-hzmb-cargo.yaml"
OP = {"operator": "tech:li.wei", "reason": "new broker address for the lane"}


@pytest.fixture
def sockdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="pl-", dir="/tmp"))  # AF_UNIX paths are short
    yield d
    shutil.rmtree(d, ignore_errors=True)


def entries(path: Path) -> list[AuditEntry]:
    return [e for _, e, _ in read_entries(path) if e is not None]


async def test_every_audit_entry_of_a_request_carries_the_kernel_peer(sockdir: Path, tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    seen: list[Any] = []

    async def act(req: dict[str, Any]) -> dict[str, Any]:
        seen.append(peer_of(req))
        audit.append("override", actor=str(req["operator"]), reason="barrier jammed, opened by hand", lane="c1")
        return {}

    async with ControlServer(sockdir / "c.sock", {"act": act}):
        # A client claiming to be someone else: the kernel's answer replaces it.
        resp = await request(sockdir / "c.sock", "act", operator="tech:li.wei", peer={"uid": 0, "user": "boss"})
        assert resp["ok"], resp
    audit.append("lane_opened", actor="portlane", reason="outside any request")
    audit.close()
    me = pwd.getpwuid(os.getuid()).pw_name
    assert seen[0] is not None and (seen[0].uid, seen[0].user, seen[0].pid) == (os.getuid(), me, os.getpid())
    first, second = entries(tmp_path / "audit.jsonl")
    assert first.actor == "tech:li.wei"
    assert first.data["peer"] == {"pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid(), "user": me}
    assert "peer" not in second.data


def _site_text(url: str, **broker: Any) -> str:
    raw = yaml.safe_load(SITE.read_text())
    raw["broker"] = {"url": url, **broker}
    return yaml.safe_dump(raw, allow_unicode=True, sort_keys=False)


def _daemon(site_file: Path, audit: AuditLog) -> Any:
    """What config_apply uses of a LaneDaemon: its lane id, running site, audit log, and what a
    new site file would need (the real rule: keys and deadlines in place, the rest a restart)."""
    site = parse_site(yaml.safe_load(site_file.read_text()))
    return SimpleNamespace(
        cfg=SimpleNamespace(id="c1"),
        site=site,
        unit=SimpleNamespace(audit=audit),
        reload=lambda new: restart_needed(site, new, "c1"),
    )


async def _apply(sockdir: Path, site_file: Path, audit: AuditLog, new_text: str, **extra: Any) -> dict[str, Any]:
    d = _daemon(site_file, audit)
    restart = asyncio.Event()
    handlers = {"config_apply": LaneControl(d, site_file, restart).config_apply}
    async with ControlServer(sockdir / "lane-c1.sock", handlers):
        resp = await request(sockdir / "lane-c1.sock", "config_apply", yaml=new_text, **OP, **extra)
    assert restart.is_set() == bool(resp.get("restarting"))
    return resp


async def test_config_apply_records_hashes_paths_and_refuses_new_keys(
    sockdir: Path, tmp_path: Path, broker: BrokerProcess
) -> None:
    site_file = tmp_path / "site.yaml"
    old_text = _site_text(broker.url)
    site_file.write_text(old_text)
    audit = AuditLog(tmp_path / "audit.jsonl")
    raw = yaml.safe_load(old_text)
    raw["platform"]["keys"].append({"id": "rogue-2026", "public_key": generate_keypair()[1]})
    raw["platform"]["decision_timeout_s"] = 90
    new_text = yaml.safe_dump(raw, allow_unicode=True, sort_keys=False)

    resp = await _apply(sockdir, site_file, audit, new_text)
    assert not resp["ok"] and "adds key rogue-2026" in resp["error"] and "--allow-key-change" in resp["error"]
    assert site_file.read_text() == old_text

    resp = await _apply(sockdir, site_file, audit, new_text, allow_key_change=True)
    assert resp["ok"] and resp["applied"], resp
    assert site_file.read_text() == new_text
    audit.close()
    refused, applied = entries(tmp_path / "audit.jsonl")
    assert refused.kind == "config_refused" and refused.data["trust_changes"] == ["adds key rogue-2026"]
    assert applied.kind == "config_applied" and applied.actor == "tech:li.wei"
    import hashlib

    assert applied.data["old_sha256"] == hashlib.sha256(old_text.encode()).hexdigest()
    assert applied.data["new_sha256"] == hashlib.sha256(new_text.encode()).hexdigest()
    assert applied.data["changed"] == ["platform.decision_timeout_s", "platform.keys[1]"]
    assert applied.data["allow_key_change"] is True
    assert applied.data["peer"]["uid"] == os.getuid()
    assert verify_log(tmp_path / "audit.jsonl").ok


async def test_revoking_a_key_needs_no_flag(sockdir: Path, tmp_path: Path, broker: BrokerProcess) -> None:
    raw = yaml.safe_load(_site_text(broker.url))
    raw["platform"]["keys"].append({"id": "old-2025", "public_key": generate_keypair()[1]})
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(raw, allow_unicode=True))
    raw["platform"]["keys"].pop()
    with AuditLog(tmp_path / "audit.jsonl") as audit:
        resp = await _apply(sockdir, site_file, audit, yaml.safe_dump(raw, allow_unicode=True))
    assert resp["ok"] and resp["applied"], resp


@pytest.mark.slow  # the refused trial waits out its 5 s connect deadline
@pytest.mark.skipif(not MosquittoBroker.available(), reason="needs the mosquitto binary")
async def test_the_trial_connection_uses_the_configured_tls_credentials(sockdir: Path, tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    init_pki(parse_site(yaml.safe_load(SITE.read_text())), pki)
    secure = MosquittoBroker(secure=pki / "broker")
    await secure.start()
    try:
        site_file = tmp_path / "site.yaml"
        site_file.write_text(_site_text("mqtt://127.0.0.1:1"))  # the old broker: gone
        audit = AuditLog(tmp_path / "audit.jsonl")
        units = pki / "units"
        tls = {
            "ca_file": str(units / "{unit}" / "ca.crt"),
            "cert_file": str(units / "{unit}" / "client.crt"),
            "key_file": str(units / "{unit}" / "client.key"),
        }
        good = _site_text(secure.url, tls=tls)
        resp = await _apply(sockdir, site_file, audit, good)
        assert resp["ok"] and resp["applied"], resp
        assert "as portlane-zhuhai-hzmb-cargo-c1" in secure.log  # the trial came in with c1's certificate
        # A certificate the broker does not accept: the trial fails and nothing changes.
        site_file.write_text(_site_text("mqtt://127.0.0.1:1"))
        wrong = _site_text(secure.url, tls={**tls, "cert_file": str(units / "{unit}" / "ca.crt")})
        resp = await _apply(sockdir, site_file, audit, wrong)
        assert not resp["ok"]
        missing = _site_text(secure.url, tls={**tls, "ca_file": str(tmp_path / "nope.crt")})
        resp = await _apply(sockdir, site_file, audit, missing)
        assert not resp["ok"] and "nope.crt: cannot read the ca file" in resp["error"]
        assert "mqtt://127.0.0.1:1" in site_file.read_text()
        audit.close()
    finally:
        await secure.close()
