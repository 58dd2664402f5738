"""`portlane pki` and `portlane keys generate --unit`: files, modes, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import yaml
from portlane.edge.config import load_site, parse_site
from portlane.edge.trust.authority import Authority
from portlane.edge.trust.events import verify_event
from portlane.edge.trust.keys import load_unit_signer
from portlane.edge.trust.pki import apply_unit_keys, init_pki, provision_unit_keys

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "firmware_config/sites/zhuhai-hzmb-cargo.yaml"


def portlane(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portlane.edge", *args], capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )


def test_pki_init_issue_acl(tmp_path: Path) -> None:
    out = tmp_path / "pki"
    r = portlane("pki", "init", "--site", str(SITE), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    units = {u["unit"]: u for u in json.loads(r.stdout)["units"]}
    assert units["c1"]["client_id"] == "portlane-zhuhai-hzmb-cargo-c1" and units["c1"]["key_id"]
    assert units["platform"]["key_id"] is None
    assert (out / "broker" / "mosquitto.conf").read_text().count(f"acl_file {out / 'broker' / 'acl'}") == 1
    again = portlane("pki", "init", "--site", str(SITE), "--out", str(out))
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "already holds a site CA" in again.stderr
    r = portlane("pki", "issue", "c1", "--site", str(SITE), "--out", str(out))
    assert r.returncode == 2 and "move it aside" in r.stderr
    (out / "units" / "c1").rename(out / "c1.old")
    r = portlane("pki", "issue", "c1", "--site", str(SITE), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["units"][0]["public_key"] != units["c1"]["public_key"]
    r = portlane("pki", "acl", "--site", str(SITE))
    assert r.returncode == 0 and "user portlane-zhuhai-hzmb-cargo-xray-1" in r.stdout


def test_issued_keys_drop_into_the_site_file(tmp_path: Path) -> None:
    issued = init_pki(load_site(SITE), tmp_path / "pki")
    raw = apply_unit_keys(yaml.safe_load(SITE.read_text()), issued)
    site = parse_site(raw)
    assert site.lanes[0].key is not None and site.scanners[0].key is not None
    signer = load_unit_signer(site.scanners[0].key, unit="xray-1")
    ev = {
        "source": f"portlane://{site.site.id}/xray-1",
        "type": "portlane.scan.completed",
        "data": {"lane": "c1", "scanner": "xray-1", "passage_id": "p"},
    }
    assert verify_event(signer.sign(ev), Authority.from_site(site)).unit == "xray-1"


def test_keys_generate_for_a_unit(tmp_path: Path) -> None:
    r = portlane("keys", "generate", "--unit", "c9", "--out", str(tmp_path / "c9"), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    key = Path(out["private_key_file"])
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and out["key_id"] == "c9-key"
    r = portlane("keys", "generate", "--unit", "c9", "--out", str(tmp_path / "c9"))
    assert r.returncode == 2 and "never overwritten" in r.stderr
    assert portlane("keys", "generate", "--unit", "c9").returncode == 2
    assert portlane("keys", "generate", "--unit", "Bad Unit", "--out", str(tmp_path / "x")).returncode == 2


def test_provision_unit_keys_for_an_open_broker(tmp_path: Path) -> None:
    raw = provision_unit_keys(yaml.safe_load(SITE.read_text()), tmp_path / "keys")
    site = parse_site(raw)
    authority = Authority.from_site(site)
    assert all(lane.key is not None for lane in site.lanes)
    assert {c.id for c in site.clients if c.key is not None} == {"console", "tech"}
    signer = load_unit_signer(site.lanes[0].key, unit=site.lanes[0].id)  # type: ignore[arg-type]
    ev = {"source": f"portlane://{site.site.id}/c1", "type": "portlane.passage.arrived", "data": {}}
    assert verify_event(signer.sign(ev), authority).key_id == site.lanes[0].key.id  # type: ignore[union-attr]
