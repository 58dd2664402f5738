"""Keys per unit: the site-file schema, per-key authority, event signatures, key files."""

from __future__ import annotations

import base64
import copy
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from portlane.edge.config import parse_site
from portlane.edge.errors import (
    BadSignatureError,
    CommandRejectedError,
    ConfigError,
    CredentialError,
    MalformedEventError,
    NotAuthorisedError,
    TrustError,
    UnknownKeyError,
    UnsignedEventError,
)
from portlane.edge.trust.authority import Authority, Role
from portlane.edge.trust.commands import CommandSigner, CommandVerifier, RejectReason
from portlane.edge.trust.events import EventSigner, canonical_envelope, verify_event
from portlane.edge.trust.keys import (
    broker_credentials,
    credential_path,
    generate_keypair,
    generate_unit_key,
    load_private_key_file,
    load_unit_signer,
    public_key_b64,
)
from portlane.edge.trust.nonces import MemoryNonceStore

ROOT = Path(__file__).resolve().parents[2]
SITE_FILE = ROOT / "firmware_config/sites/zhuhai-hzmb-cargo.yaml"
T0 = datetime(2026, 11, 23, 18, 0, 0, tzinfo=UTC)


def _pair() -> tuple[str, str]:
    return generate_keypair()


KEYS = {name: _pair() for name in ("customs", "border", "registry", "c1", "c2", "xray", "console")}


def raw_site() -> dict[str, Any]:
    raw = yaml.safe_load(SITE_FILE.read_text())
    raw["platform"]["keys"] = [
        {
            "id": "customs-k",
            "public_key": KEYS["customs"][1],
            "agencies": ["customs"],
            "commands": ["decision", "release"],
        },
        {"id": "border-k", "public_key": KEYS["border"][1], "agencies": ["border"], "lanes": ["c1"]},
        {"id": "registry-k", "public_key": KEYS["registry"][1], "commands": ["expected_vehicles"]},
    ]
    by_id = {lane["id"]: lane for lane in raw["lanes"]}
    by_id["c1"]["key"] = {"id": "lane-c1", "public_key": KEYS["c1"][1]}
    by_id["c2"]["key"] = {"id": "lane-c2", "public_key": KEYS["c2"][1]}
    raw["scanners"][0]["key"] = {"id": "scanner-xray-1", "public_key": KEYS["xray"][1]}
    raw["scanners"][0]["lanes"] = ["c1", "c2", "c3"]
    by_id["c4"]["scanner"] = None
    raw["clients"] = [
        {"id": "platform", "role": "platform"},
        {
            "id": "console",
            "role": "console",
            "key": {"id": "console-k", "public_key": KEYS["console"][1]},
            "commands": ["replay_events"],
        },
    ]
    return raw


@pytest.fixture
def authority() -> Authority:
    return Authority.from_site(parse_site(raw_site()))


# -- schema --------------------------------------------------------------------------------------


def test_old_site_files_stay_valid() -> None:
    raw = raw_site()
    raw["platform"]["keys"] = [{"id": "old", "public_key": KEYS["customs"][1]}]  # no authority fields
    raw.pop("clients")
    raw["broker"] = {"url": "mqtt://10.0.0.1:1883", "username": "lane", "password": "x"}
    for lane in raw["lanes"]:
        lane.pop("key", None)
    raw["scanners"][0].pop("key")
    site = parse_site(raw)
    assert site.platform.max_validity_s == 300
    # An old key keeps its old powers: any agency, any lane.
    Authority.from_site(site).check("old", command="decision", unit="c3", agency="border")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r["platform"]["keys"][0].update(agencies=["maritime"]), "not agencies of the site"),
        (lambda r: r["platform"]["keys"][1].update(lanes=["c9"]), "unknown lanes/scanners"),
        (lambda r: r["lanes"][1]["key"].update(id="lane-c1"), "key ids listed twice"),
        (lambda r: r["clients"].append({"id": "c1", "role": "console"}), "share ids"),
        (lambda r: r["platform"]["keys"][0].update(public_key="AAAA"), "32 bytes"),
        (lambda r: r["broker"].update(password="x", password_file="pw"), "not both"),
        (lambda r: r["broker"].update(url="mqtt://10.0.0.1:1883"), "tls needs an mqtts:// url"),
        (lambda r: r["broker"]["tls"].pop("key_file"), "go together"),
        (lambda r: r["clients"].append({"id": "x", "role": "console", "commands": ["hold"]}), "no key"),
    ],
)
def test_cross_checks_name_the_problem(mutate: Any, message: str) -> None:
    raw = raw_site()
    mutate(raw)
    with pytest.raises(ConfigError, match=message):
        parse_site(raw)


# -- command authority ---------------------------------------------------------------------------


def test_a_customs_key_cannot_sign_a_border_verdict(authority: Authority) -> None:
    authority.check("customs-k", command="decision", unit="c1", agency="customs")
    with pytest.raises(NotAuthorisedError, match="agency 'border'"):
        authority.check("customs-k", command="decision", unit="c1", agency="border")
    with pytest.raises(NotAuthorisedError, match="only with an agency"):
        authority.check("customs-k", command="release", unit="c1")


def test_lane_limits_and_command_limits(authority: Authority) -> None:
    authority.check("border-k", command="decision", unit="c1", agency="border")
    with pytest.raises(NotAuthorisedError, match="may not command 'c2'"):
        authority.check("border-k", command="decision", unit="c2", agency="border")
    authority.check("registry-k", command="expected_vehicles", unit="c2")
    with pytest.raises(NotAuthorisedError, match="may not sign 'decision'"):
        authority.check("registry-k", command="decision", unit="c2", agency="customs")
    authority.check("console-k", command="replay_events", unit="xray-1")
    with pytest.raises(NotAuthorisedError):
        authority.check("console-k", command="release", unit="c1", agency="customs")


def test_lane_and_scanner_keys_never_sign_commands(authority: Authority) -> None:
    for kid in ("lane-c1", "scanner-xray-1"):
        with pytest.raises(NotAuthorisedError, match="may not sign commands"):
            authority.check(kid, command="open_lane", unit="c1")
    assert set(authority.command_keys()) == {"customs-k", "border-k", "registry-k", "console-k"}
    with pytest.raises(UnknownKeyError):
        authority.check("nobody", command="release", unit="c1")


def test_command_verifier_refuses_not_authorised(tmp_path: Path) -> None:
    site = parse_site(raw_site())
    verifier = CommandVerifier.from_site(site, "c1", clock=lambda: T0, nonce_store=MemoryNonceStore())
    signer = CommandSigner("customs-k", KEYS["customs"][0])

    def cmd(agency: str) -> bytes:
        return signer.sign(
            {
                "cmd": "decision",
                "site": site.site.id,
                "lane": "c1",
                "passage_id": "p-1",
                "args": {"agency": agency, "verdict": "release"},
                "issued_at": T0,
                "expires_at": T0 + timedelta(seconds=60),
            }
        ).to_json_bytes()

    assert verifier.verify(cmd("customs")).args.agency == "customs"
    with pytest.raises(CommandRejectedError) as ei:
        verifier.verify(cmd("border"))
    assert ei.value.reason is RejectReason.NOT_AUTHORISED
    assert ei.value.as_dict()["reason"] == "not_authorised"


# -- event signatures ----------------------------------------------------------------------------


def envelope(unit: str, type_: str, data: dict[str, Any], site: str = "zhuhai-hzmb-cargo") -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"{site}/{unit}/1",
        "source": f"portlane://{site}/{unit}",
        "type": f"portlane.{type_}",
        "time": "2026-11-23T18:00:00.000Z",
        "subject": None,
        "datacontenttype": "application/json",
        "seq": 1,
        "audience": [],
        "data": data,
    }


def scan(lane: str = "c1", scanner: str = "xray-1") -> dict[str, Any]:
    return {"passage_id": "p-1", "lane": lane, "scanner": scanner, "result": "GREEN", "confidence": 0.5}


def test_sign_and_verify_round_trip(authority: Authority) -> None:
    signer = EventSigner("scanner-xray-1", KEYS["xray"][0])
    signed = signer.sign(envelope("xray-1", "scan.completed", scan()))
    assert signed["sigkeyid"] == "scanner-xray-1"
    assert len(base64.b64decode(signed["sig"])) == 64
    ev = verify_event(signed, authority)
    assert (ev.key_id, ev.role, ev.unit, ev.type) == ("scanner-xray-1", Role.SCANNER, "xray-1", "scan.completed")
    assert ev.data["result"] == "GREEN"


def test_the_signature_covers_the_canonical_envelope_with_sigkeyid() -> None:
    signed = EventSigner("lane-c1", KEYS["c1"][0]).sign(envelope("c1", "passage.arrived", {"passage_id": "p"}))
    pub = Ed25519PrivateKey.from_private_bytes(base64.b64decode(KEYS["c1"][0])).public_key()
    import rfc8785

    body = {k: v for k, v in signed.items() if k != "sig"}
    assert "sigkeyid" in body
    pub.verify(base64.b64decode(signed["sig"]), rfc8785.dumps(body))
    assert canonical_envelope(signed) == rfc8785.dumps(body)
    # Key order and spelling on the wire do not matter: the consumer re-canonicalises.
    shuffled = dict(reversed(list(signed.items())))
    assert canonical_envelope(shuffled) == canonical_envelope(signed)


def test_unsigned_and_forged_events_are_refused(authority: Authority) -> None:
    ev = envelope("xray-1", "scan.completed", scan())
    with pytest.raises(UnsignedEventError):
        verify_event(ev, authority)
    rogue = EventSigner("scanner-xray-1", _pair()[0]).sign(ev)
    with pytest.raises(BadSignatureError):
        verify_event(rogue, authority)
    with pytest.raises(UnknownKeyError):
        verify_event(EventSigner("scanner-xray-9", KEYS["xray"][0]).sign(ev), authority)
    good = EventSigner("scanner-xray-1", KEYS["xray"][0]).sign(ev)
    tampered = copy.deepcopy(good)
    tampered["data"]["result"] = "RED"
    with pytest.raises(BadSignatureError):
        verify_event(tampered, authority)
    swapped = good | {"sigkeyid": "lane-c1"}  # the key id is covered too
    with pytest.raises(BadSignatureError):
        verify_event(swapped, authority)
    for garbage in (None, [], "x", {"sig": 5, "sigkeyid": "lane-c1"}):
        with pytest.raises(TrustError):
            verify_event(garbage, authority)


@pytest.mark.parametrize(
    ("key", "private", "ev", "why"),
    [
        # a lane key cannot speak for the scanner ...
        ("lane-c1", "c1", envelope("xray-1", "scan.completed", scan()), "may not sign for unit"),
        # ... nor publish scan events under its own name
        ("lane-c1", "c1", envelope("c1", "scan.completed", scan()), "not a scanner's key"),
        # ... nor ask the X-ray for another lane
        (
            "lane-c1",
            "c1",
            envelope("c1", "inspection.requested", {"passage_id": "p", "lane": "c2", "vehicle_ref": "x"}),
            "own lane",
        ),
        # the scanner reports only about its own lanes, under its own name
        ("scanner-xray-1", "xray", envelope("xray-1", "scan.completed", scan(lane="c4")), "does not serve"),
        ("scanner-xray-1", "xray", envelope("xray-1", "scan.failed", scan(scanner="xray-2")), "only for scanner"),
        # a platform key signs registrations only with that authority
        ("customs-k", "customs", envelope("platform", "expected_vehicles", {"vehicles": []}), "expected_vehicles"),
        # another site
        ("lane-c1", "c1", envelope("c1", "passage.arrived", {}, site="elsewhere"), "from site"),
    ],
)
def test_event_authority(authority: Authority, key: str, private: str, ev: dict[str, Any], why: str) -> None:
    with pytest.raises(NotAuthorisedError, match=why):
        verify_event(EventSigner(key, KEYS[private][0]).sign(ev), authority)


def test_allowed_events(authority: Authority) -> None:
    req = envelope("c1", "inspection.requested", {"passage_id": "p", "lane": "c1", "vehicle_ref": "x"})
    assert verify_event(EventSigner("lane-c1", KEYS["c1"][0]).sign(req), authority).unit == "c1"
    reg = envelope("platform", "expected_vehicles", {"vehicles": []})
    assert verify_event(EventSigner("registry-k", KEYS["registry"][0]).sign(reg), authority).role is Role.PLATFORM


def test_deep_or_uncanonical_envelopes_are_malformed(authority: Authority) -> None:
    deep: Any = "x"
    for _ in range(100):
        deep = [deep]
    signer = EventSigner("lane-c1", KEYS["c1"][0])
    with pytest.raises(MalformedEventError):
        signer.sign(envelope("c1", "passage.arrived", {"deep": deep}))
    ok = signer.sign(envelope("c1", "passage.arrived", {}))
    with pytest.raises(MalformedEventError):
        verify_event(ok | {"data": {"deep": deep}}, authority)
    with pytest.raises(TrustError):
        verify_event(ok | {"data": {"n": float("nan")}}, authority)


# -- key files -----------------------------------------------------------------------------------


def test_generated_key_files_are_private_and_load(tmp_path: Path) -> None:
    path, public = generate_unit_key(tmp_path / "c1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_key_b64(load_private_key_file(path)) == public
    with pytest.raises(FileExistsError):
        generate_unit_key(tmp_path / "c1")  # never overwrite a key


def test_seed_files_load_and_bad_files_say_what_to_do(tmp_path: Path) -> None:
    priv, pub = _pair()
    seed = tmp_path / "seed.key"
    seed.write_text(priv + "\n")
    assert public_key_b64(load_private_key_file(seed)) == pub
    bad = tmp_path / "bad.key"
    bad.write_text("not a key")
    with pytest.raises(CredentialError, match=r"bad.key: neither PEM nor a base64 seed; regenerate it"):
        load_private_key_file(bad)
    with pytest.raises(CredentialError, match="cannot read the private key"):
        load_private_key_file(tmp_path / "missing.key")


def test_credentials_directory_and_unit_placeholder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert credential_path("/etc/portlane/pki/{unit}/client.crt", unit="c1") == Path("/etc/portlane/pki/c1/client.crt")
    with pytest.raises(CredentialError, match="CREDENTIALS_DIRECTORY"):
        credential_path("client.crt", unit="c1")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert credential_path("client.crt", unit="c1") == tmp_path / "client.crt"


def test_unit_signer_must_match_the_published_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    raw = raw_site()
    path, public = generate_unit_key(tmp_path / "keys")
    raw["lanes"][0]["key"] = {"id": "lane-c1", "public_key": public, "private_key_file": str(path)}
    site = parse_site(raw)
    signer = load_unit_signer(site.lanes[0].key, unit="c1")  # type: ignore[arg-type]
    ev = signer.sign(envelope("c1", "passage.arrived", {}))
    assert verify_event(ev, Authority.from_site(site)).unit == "c1"
    raw["lanes"][0]["key"]["public_key"] = _pair()[1]
    with pytest.raises(CredentialError, match="does not match key lane-c1"):
        load_unit_signer(parse_site(raw).lanes[0].key, unit="c1")  # type: ignore[arg-type]


def test_broker_credentials_resolve_files_only_for_mqtts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    site = parse_site(raw_site())
    with pytest.raises(CredentialError, match=r"ca\.crt: cannot read the ca file"):
        broker_credentials(site.broker, unit="c1")
    for name in ("ca.crt", "client.crt", "client.key"):
        (tmp_path / name).write_text("x")
    creds = broker_credentials(site.broker, unit="c1")
    assert creds.link_kwargs()["cert_file"] == str(tmp_path / "client.crt")
    assert creds.link_kwargs()["max_packet_size"] == 1048576
    plain = broker_credentials(site.broker, unit="c1", url="mqtt://127.0.0.1:1883")
    assert "ca_file" not in plain.link_kwargs()
    assert os.environ["CREDENTIALS_DIRECTORY"] == str(tmp_path)


def test_public_api_of_the_trust_modules_is_pinned() -> None:
    import importlib

    expected = {
        "authority": {"Authority", "KeyGrant", "Role"},
        "events": {"EventSigner", "VerifiedEvent", "verify_event"},
        "keys": {"broker_credentials", "credential_path", "generate_unit_key", "load_unit_signer"},
        "pki": {"init_pki", "issue_unit", "render_acl", "render_mosquitto_conf", "provision_unit_keys"},
        "rejections": {"RejectionAggregator", "RejectionSummary"},
        "config_audit": {"config_change", "trust_changes"},
        "audit": {"AuditLog", "audit_context", "require_operator"},
        "audit_chain": {"Checkpoint", "verify_against_checkpoint", "verify_log"},
    }
    for name, names in expected.items():
        mod = importlib.import_module(f"portlane.edge.trust.{name}")
        assert names <= set(mod.__all__), name
        assert all(hasattr(mod, n) for n in mod.__all__), name
    # Their exceptions have one home, with every other exception of edge.
    errors = importlib.import_module("portlane.edge.errors")
    trust_errors = {"TrustError", "UnknownKeyError", "NotAuthorisedError", "BadSignatureError", "UnsignedEventError"}
    assert trust_errors | {"CommandRejectedError", "NonceStoreError", "CheckpointError"} <= set(errors.__all__)
