"""``portlane selftest --sim``: every device of the reference site against its simulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from portlane.edge.cli import main

SITE = Path(__file__).resolve().parents[2] / "firmware_config" / "sites" / "zhuhai-hzmb-cargo.yaml"
#: A device's transaction deadline in the all-devices self-test (see there).
DEVICE_TIMEOUT_S = 10.0


def _set_device_timeouts(node: object, timeout_s: float) -> None:
    """Every ``timeout_s`` under ``node`` (the devices' own; the platform's are not in it)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "timeout_s":
                node[key] = timeout_s
            else:
                _set_device_timeouts(value, timeout_s)
    elif isinstance(node, list):
        for item in node:
            _set_device_timeouts(item, timeout_s)


def test_selftest_sim_json_all_devices_ok(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # The reference site with more time per transaction than its devices' 0.5-2 s (real devices
    # on a LAN or a serial line): here all 57 devices and their simulators start at once in this
    # one process, and at load 10 the first lane's devices and a dozen MJPEG cameras missed
    # their deadlines while the rest started (14 of 57; 3 cameras at load 10-19 in a stress run).
    raw = yaml.safe_load(SITE.read_text(encoding="utf-8"))
    _set_device_timeouts([*raw["lanes"], *raw["scanners"]], DEVICE_TIMEOUT_S)
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    rc = main(["selftest", "--site", str(site), "--sim", "--json"])
    out = json.loads(capsys.readouterr().out)
    failed = [d for d in out["devices"] if not d["ok"]]
    assert rc == 0 and out["ok"], failed
    kinds = {d["kind"] for d in out["devices"]}
    assert kinds == {"gate", "io", "board", "rfid", "weighbridge", "camera", "scanner", "rpm", "seal_reader"}
    assert len(out["devices"]) == 57  # 4 cargo lanes x 11 + 2 passenger lanes x 6 + 1 scanner
    for d in out["devices"]:
        assert d["latency_ms"] is not None and d["latency_ms"] >= 0, d
    scanner = next(d for d in out["devices"] if d["kind"] == "scanner")
    assert "aborted, radiation off" in scanner["detail"]
    rpm = next(d for d in out["devices"] if d["device"] == "c1/rpm")
    assert "gamma bg" in rpm["detail"] and "4 sigma" in rpm["detail"]
    seals = next(d for d in out["devices"] if d["device"] == "c1/seal_reader")
    assert seals["detail"] == "1 seal(s): 0A1B-00C0FFEE sealed"


def test_selftest_human_table_for_one_lane(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["selftest", "--site", str(SITE), "--sim", "--lane", "p1"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "p1/gate" in out and "p1/camera/plate_front" in out and "c1/gate" not in out


def test_selftest_unknown_lane_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["selftest", "--site", str(SITE), "--sim", "--lane", "nope"]) == 2


def test_selftest_bad_site_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "site.yaml"
    bad.write_text("site: {id: x}\n")
    assert main(["selftest", "--site", str(bad), "--json"]) == 2


def test_selftest_real_links_fail_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Without --sim the configured links are used; none of them exist here, and each
    # device must come back as a clean per-device failure, with exit code 1.
    rc = main(["selftest", "--site", str(SITE), "--lane", "p1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1 and not out["ok"]
    assert all(not d["ok"] and d["error"] for d in out["devices"])


def test_selftest_human_table_fits_80_columns(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 24: at 80 columns every cell was cut (``open…``, ``modb…``)."""
    monkeypatch.setenv("COLUMNS", "80")
    rc = main(["selftest", "--site", str(SITE), "--sim", "--lane", "c1"])
    out = capsys.readouterr().out
    assert rc == 0 and "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    for device in ("c1/gate", "c1/weighbridge", "c1/camera/container_right", "xray-1"):
        assert f"│ {device} " in out  # whole, in its own cell
