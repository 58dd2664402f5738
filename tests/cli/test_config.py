from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from portlane.edge.config import load_site, parse_site
from portlane.edge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SITES = sorted((ROOT / "firmware_config" / "sites").glob("*.yaml"))


@pytest.mark.parametrize("path", SITES, ids=lambda p: p.name)
def test_shipped_sites_are_valid(path: Path) -> None:
    site = load_site(path)
    assert site.lanes


def _base() -> dict:
    return yaml.safe_load((ROOT / "firmware_config/sites/zhuhai-hzmb-cargo.yaml").read_text())


def test_unknown_key_is_named_with_its_path() -> None:
    data = _base()
    data["lanes"][2]["devices"]["gate"]["speed"] = 3
    with pytest.raises(ConfigError) as ei:
        parse_site(data, file="x.yaml")
    assert ("lanes[2].devices.gate.speed", "Extra inputs are not permitted") in ei.value.problems


def test_cross_field_rule_unknown_scanner() -> None:
    data = _base()
    data["lanes"][0]["scanner"] = "xray-9"
    with pytest.raises(ConfigError, match="unknown scanner 'xray-9'"):
        parse_site(data)


def test_models_are_frozen() -> None:
    site = parse_site(_base())
    with pytest.raises(Exception, match="frozen"):
        site.lanes[0].id = "zz"  # type: ignore[misc]


def test_cli_config_check_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    data = _base()
    data["lanes"][0]["devices"]["io"]["link"]["port"] = 70000
    bad.write_text(yaml.safe_dump(data))
    exe = [sys.executable, "-m", "portlane.edge"]
    ok = subprocess.run([*exe, "config", "check", str(SITES[0])], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    res = subprocess.run([*exe, "config", "check", str(bad)], capture_output=True, text=True)
    assert res.returncode == 2
    assert f"{bad}: lanes[0].devices.io.link.port: Input should be less than or equal to 65535" in res.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("site: [unclosed\n")
    res = subprocess.run([*exe, "config", "check", str(broken)], capture_output=True, text=True)
    assert res.returncode == 2 and "not valid YAML" in res.stderr and str(broken) in res.stderr


def test_redaction_hides_secrets_and_keeps_public_keys() -> None:
    from portlane.edge.config import REDACTED, redact, redact_text, redact_yaml

    pem = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----"
    text = f"url mqtt://lane:hunter2@10.0.0.1:1883\npassword = hunter2\napi_key: abc\n{pem}\nplain: ok\n"
    out = redact_text(text)
    assert "hunter2" not in out and "abc" not in out and "MHcCAQEE" not in out
    assert "mqtt://lane:<redacted>@10.0.0.1:1883" in out and "plain: ok" in out
    data = {"broker": {"password": "s3cret", "username": "lane"}, "keys": [{"public_key": "DCpm"}], "token": None}
    assert redact(data) == {
        "broker": {"password": REDACTED, "username": "lane"},
        "keys": [{"public_key": "DCpm"}],
        "token": None,
    }
    assert yaml.safe_load(redact_yaml(yaml.safe_dump(data))) == redact(data)
    assert "s3cret" not in redact_yaml("broker: {password: s3cret")  # not YAML: redacted as text
    log = 'connect token=abc123&x=1 {"api_key": "k-9", "passage_id": "p-1"} passenger: 3'
    assert redact_text(log) == 'connect token=<redacted>&x=1 {"api_key": <redacted>, "passage_id": "p-1"} passenger: 3'
    assert redact({"passage_id": "p-1", "password_file": "/etc/pw"}) == {"passage_id": "p-1", "password_file": REDACTED}


def test_a_cameras_role_is_its_role_field_not_its_name() -> None:
    data = _base()
    cams = data["lanes"][0]["devices"]["cameras"]
    assert {n: c["role"] for n, c in cams.items()} == {
        "plate_front": "plate",
        "plate_rear": "plate",
        "container_left": "container",
        "container_right": "container",
    }
    # a camera named after its mounting point, not its view: the role says what it reads
    cams["rear_high"] = {**cams.pop("container_right"), "role": "container"}
    cams["container_gantry"] = {**cams.pop("plate_rear"), "role": "plate"}
    got = {n: c.role for n, c in parse_site(data).lanes[0].devices.cameras.items()}
    assert got["rear_high"] == "container" and got["container_gantry"] == "plate"
    cams["rear_high"]["role"] = "wagon"
    with pytest.raises(ConfigError) as ei:
        parse_site(data, file="x.yaml")
    assert any(path == "lanes[0].devices.cameras.rear_high.role" for path, _why in ei.value.problems)


def test_a_site_file_from_before_camera_roles_gets_the_old_guess_from_the_name() -> None:
    data = _base()
    for lane in data["lanes"]:
        for cam in (lane["devices"].get("cameras") or {}).values():
            del cam["role"]
    site = parse_site(data)
    roles = {n: c.role for lane in site.lanes for n, c in lane.devices.cameras.items()}
    assert roles == {
        "plate_front": "plate",
        "plate_rear": "plate",
        "container_left": "container",
        "container_right": "container",
    }
