"""Shared helpers of the console tests: the demo site, contract-exact envelopes, signing."""

from __future__ import annotations

import base64
import importlib.resources
from pathlib import Path
from typing import Any

from portlane.edge.config import Site, load_site
from portlane.edge.console.picture import LiveEvent
from portlane.edge.console.store import time_ms
from portlane.edge.contract.envelope import Envelope
from portlane.edge.contract.times import rfc3339

SITE_FILE = Path(str(importlib.resources.files("portlane.firmware_config"))) / "sites" / "zhuhai-hzmb-cargo.yaml"
SITE_ID = "zhuhai-hzmb-cargo"
#: Debian's chromium and chromium-driver, for the browser tests (.ci/run installs them).
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def site() -> Site:
    return load_site(SITE_FILE)


def envelope(
    unit: str,
    seq: int,
    type_: str,
    data: dict[str, Any],
    *,
    epoch: int | None = 1,
    t: float = 1_700_000_000.0,
    site_id: str = SITE_ID,
    audience: tuple[str, ...] = (),
) -> dict[str, Any]:
    """An envelope as the outbox writes it (with the stream-epoch attribute unless epoch=None)."""
    env: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"{site_id}/{unit}/{epoch}/{seq}" if epoch is not None else f"{site_id}/{unit}/{seq}",
        "source": f"portlane://{site_id}/{unit}",
        "type": f"portlane.{type_}",
        "time": rfc3339(t),
        "subject": data.get("passage_id"),
        "datacontenttype": "application/json",
        "dataschema": None,
        "seq": seq,
        "audience": list(audience),
        "data": data,
    }
    if epoch is not None:
        env["epoch"] = epoch
    return env


def live_ev(env: dict[str, Any]) -> LiveEvent:
    """An envelope as the live picture's rules read a verified event."""
    e = Envelope.model_validate(env)
    return LiveEvent(e.id, e.source.rsplit("/", 1)[1], e.event_type, time_ms(e.time), e.audience, e.data)


def sign_event(env: dict[str, Any], key_id: str, private_key_b64: str) -> dict[str, Any]:
    """Sign exactly as the contract says: Ed25519 over RFC 8785 JSON of the envelope without
    ``sig`` (``sigkeyid`` included), standard base64. Independent of the console's code."""
    import rfc8785
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out = {k: v for k, v in env.items() if k != "sig"}
    out["sigkeyid"] = key_id
    key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(private_key_b64))
    out["sig"] = base64.b64encode(key.sign(rfc8785.dumps(out))).decode("ascii")
    return out


def completed(pid: str, stage_ms: dict[str, int], *, t0: float, outcome: str = "released", **kw: Any) -> dict[str, Any]:
    stages = {k: rfc3339(t0 + v / 1000) for k, v in stage_ms.items()}
    return {
        "passage_id": pid,
        "outcome": outcome,
        "inspected": "scan_started" in stage_ms,
        "scan_id": None,
        "scan_result": None,
        "plates": kw.get("plates", ["粤Z1234港"]),
        "containers": kw.get("containers", []),
        "stages": stages,
        "stage_ms": stage_ms,
        "release_basis": kw.get("release_basis", "online" if outcome == "released" else None),
    }


def chromium_driver(profile: Path, *, size: tuple[int, int] = (1440, 1000)) -> Any:
    """Headless Chromium through selenium, never downloading anything."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--window-size={size[0]},{size[1]}",
        "--lang=en-GB",
    ):
        opts.add_argument(flag)
    # Service(path) with an explicit driver: selenium-manager never runs, nothing is downloaded.
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


class SignedConsoleSite:
    """The shipped site with a signing key for every unit (as ``portlane pki init`` or the demo
    gives them) and a ``console`` client whose key may sign ``replay_events``: what the console
    believes. ``sign`` signs an envelope with its unit's key, as the unit's outbox does."""

    def __init__(self, key_dir: Path) -> None:
        import yaml
        from portlane.edge.config import parse_site
        from portlane.edge.trust.keys import load_unit_signer
        from portlane.edge.trust.pki import provision_unit_keys

        raw = yaml.safe_load(SITE_FILE.read_text(encoding="utf-8"))
        for c in raw["clients"]:
            if c["id"] == "console":
                c["commands"] = ["replay_events"]
        self.raw = provision_unit_keys(raw, key_dir)
        self.site = parse_site(self.raw)
        self.signers = {}
        for unit in [*self.site.lanes, *self.site.scanners]:
            assert unit.key is not None
            self.signers[unit.id] = load_unit_signer(unit.key, unit=unit.id)

    def sign(self, env: dict[str, Any], *, by: str | None = None) -> dict[str, Any]:
        unit = by or env["source"].rsplit("/", 1)[1]
        return self.signers[unit].sign(env)

    def status(
        self, unit: str, seq: int, *, last_seq: int | None = None, epoch: int = 1, **fields: Any
    ) -> dict[str, Any]:
        """A signed ``unit.status`` envelope (what the unit retains on its status topic)."""
        data = {
            "state": "online",
            "unit": unit,
            "kind": "scanner" if unit.startswith("xray") else "lane",
            "version": "test",
            "in_service": True,
            "last_seq": seq - 1 if last_seq is None else last_seq,
            "epoch": epoch,
            "since": rfc3339(1_800_000_000),
            **fields,
        }
        return self.sign(envelope(unit, seq, "unit.status", data, epoch=epoch))
