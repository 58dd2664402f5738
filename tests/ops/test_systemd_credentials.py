"""The unit files load exactly the credentials the shipped site file names."""

from __future__ import annotations

import re
from pathlib import Path

from portlane.edge.config import load_site

ROOT = Path(__file__).resolve().parents[2]


def _credentials(unit: str) -> dict[str, str]:
    text = (ROOT / "systemd" / unit).read_text()
    return dict(re.findall(r"(?m)^LoadCredential=([^:\s]+):(\S+)$", text))


def test_lane_and_scanner_units_load_the_site_files_credentials() -> None:
    site = load_site(ROOT / "firmware_config/sites/zhuhai-hzmb-cargo.yaml")
    assert site.broker.tls is not None and site.lanes[0].key is None  # keys come with `portlane pki init`
    names = {site.broker.tls.ca_file, site.broker.tls.cert_file, site.broker.tls.key_file, "signing.key"}
    for unit in ("portlane-lane@.service", "portlane-scanner@.service"):
        creds = _credentials(unit)
        assert set(creds) == names, unit
        assert all(p == f"/etc/portlane/pki/units/%i/{name}" for name, p in creds.items()), creds
