"""The signing and verification test vectors of docs/contract-vectors.json, checked.

For a platform written in another language: each vector gives the object as signed, its RFC 8785
canonical bytes, the Ed25519 key (seed and public half, public test material) and the
signature. Ed25519 is deterministic, so the vectors are rebuilt here from their inputs with the
package's own signers and must come out byte for byte as written; the signatures are verified
over the stated bytes with the cryptography library directly (not through the package's
verifiers), and the package's verifiers must accept the good vectors and refuse the bad ones
for the stated reason.

Regenerate after a deliberate change of the contract (and say so in the commit):
``PORTLANE_WRITE_VECTORS=1 python3 dev.py test tests/contract/test_vectors.py``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from portlane.edge.contract.canonical import canonical_json
from portlane.edge.errors import CommandRejectedError, TrustError
from portlane.edge.trust.authority import Authority, KeyGrant, Role
from portlane.edge.trust.commands import CommandSigner, CommandVerifier
from portlane.edge.trust.events import EventSigner, canonical_envelope, verify_event
from portlane.edge.trust.keys import public_key_b64
from portlane.edge.trust.nonces import MemoryNonceStore

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "docs" / "contract-vectors.json"
SITE = "zhuhai-hzmb-cargo"
#: Public test material: the seed is the bytes 0, 1, …, 31. Never trust these keys on a site.
SEED = base64.b64encode(bytes(range(32))).decode()
EVENT_KEY_ID, COMMAND_KEY_ID = "c1-vectors", "platform-vectors"
#: Commands in the vectors are valid during this minute.
COMMAND_TIME = datetime(2026, 11, 23, 18, 0, 30, tzinfo=UTC)


def _envelope(seq: int, type_: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"{SITE}/c1/1795000000000/{seq}",
        "source": f"portlane://{SITE}/c1",
        "type": f"portlane.{type_}",
        "time": "2026-11-23T18:00:00.250Z",
        "datacontenttype": "application/json",
        "seq": seq,
        "epoch": 1795000000000,
        "data": data,
    }
    env.update(extra)
    return env


EVENTS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "event: plain ASCII",
        "the smallest real event: a device's health",
        _envelope(1, "device.state", {"device": "gate", "health": "online"}),
    ),
    (
        "event: non-ASCII text, floats, nesting, audience",
        "UTF-8 written literally (no \\u escapes); floats in ECMAScript form (0.97, 1e-7, 100 from 100.0)",
        _envelope(
            2,
            "vehicle.identified",
            {
                "passage_id": "p-000123",
                "plates": [
                    {"text": "粤Z·1234港", "kind": "cn_crossborder", "confidence": 0.97},
                    {"text": "AB 1234", "kind": "hk", "confidence": 1e-7},
                ],
                "containers": [
                    {"number": "CSQU3054383", "check_digit_ok": True, "iso_type": None, "confidence": 100.0}
                ],
                "tag_id": None,
                "weight_kg": 31250,
                "confidence": 0.5,
                "exceptions": [],
                "corrected_by": None,
            },
            subject="p-000123",
            audience=["customs", "border"],
        ),
    ),
    (
        "event: key order and escapes",
        "keys sorted by UTF-16 code units ('😀' before '｡'); quote, backslash and controls escaped, "
        "U+2028 and U+007F literal",
        _envelope(
            3,
            "lane.exception",
            {
                "passage_id": None,
                "kind": "operator_note",
                "detail": 'line 1\nline 2\t"quoted" \\ bell\u0007 sep\u2028 del\u007f',
                "｡": 1,
                "😀": 2,
                "a": -0.0,
            },
        ),
    ),
]

COMMANDS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "command: decision",
        "one agency's verdict; no floats in commands, ever",
        {
            "cmd": "decision",
            "site": SITE,
            "lane": "c1",
            "passage_id": "p-000123",
            "args": {"agency": "customs", "verdict": "release"},
            "issued_at": "2026-11-23T18:00:00.000Z",
            "expires_at": "2026-11-23T18:01:00.000Z",
            "nonce": "MMFWm0n8ZXPWtW3vri0utA",
        },
    ),
    (
        "command: replay_events",
        "passage_id and to_seq are null, written out (a field is never omitted)",
        {
            "cmd": "replay_events",
            "site": SITE,
            "lane": "c1",
            "passage_id": None,
            "args": {"from_seq": 12, "to_seq": None},
            "issued_at": "2026-11-23T18:00:00.000Z",
            "expires_at": "2026-11-23T18:01:00.000Z",
            "nonce": "AAECAwQFBgcICQoLDA0ODw",
        },
    ),
    (
        "command: expected_vehicles",
        "non-ASCII plates inside nested arrays",
        {
            "cmd": "expected_vehicles",
            "site": SITE,
            "lane": "c1",
            "passage_id": None,
            "args": {"vehicles": [{"tag_id": "E200341201930500001", "plates": ["粤Z·1234港", "HZ1234"]}]},
            "issued_at": "2026-11-23T18:00:00.000Z",
            "expires_at": "2026-11-23T18:01:00.000Z",
            "nonce": "_-_-_-_-_-_-_-_-_-_-_w",
        },
    ),
]


def build() -> dict[str, Any]:
    event_signer = EventSigner(EVENT_KEY_ID, SEED)
    command_signer = CommandSigner(COMMAND_KEY_ID, SEED)
    public = public_key_b64(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
    vectors: list[dict[str, Any]] = []
    for name, note, env in EVENTS:
        signed = event_signer.sign(env)
        vectors.append(
            {
                "name": name,
                "note": note,
                "kind": "event",
                "key_id": EVENT_KEY_ID,
                "signed": signed,
                "canonical": canonical_envelope(signed).decode("utf-8"),
                "canonical_sha256": hashlib.sha256(canonical_envelope(signed)).hexdigest(),
                "signature": signed["sig"],
            }
        )
    for name, note, fields in COMMANDS:
        cmd = command_signer.sign(fields)
        body = json.loads(cmd.to_json_bytes())
        vectors.append(
            {
                "name": name,
                "note": note,
                "kind": "command",
                "key_id": COMMAND_KEY_ID,
                "signed": body,
                "canonical": canonical_json({k: v for k, v in body.items() if k != "sig"}).decode("utf-8"),
                "canonical_sha256": hashlib.sha256(
                    canonical_json({k: v for k, v in body.items() if k != "sig"})
                ).hexdigest(),
                "signature": body["sig"],
            }
        )
    good_event = vectors[0]["signed"]
    good_command = vectors[len(EVENTS)]["signed"]
    sig = good_command["sig"]
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    # The same 64 bytes spelled with other unused low bits in the last base64 character.
    respelled = sig[:-3] + last[(last.index(sig[-3]) ^ 1)] + sig[-2:]
    bad = [
        {
            "name": "bad event: data changed after signing",
            "kind": "event",
            "signed": {**good_event, "data": {"device": "gate", "health": "offline"}},
            "reason": "bad_signature",
        },
        {
            "name": "bad event: sig removed",
            "kind": "event",
            "signed": {k: v for k, v in good_event.items() if k not in ("sig", "sigkeyid")},
            "reason": "unsigned",
        },
        {
            "name": "bad command: args changed after signing",
            "kind": "command",
            "signed": {**good_command, "args": {"agency": "border", "verdict": "release"}},
            "reason": "bad_signature",
        },
        {
            "name": "bad command: signature in a non-canonical base64 spelling",
            "kind": "command",
            "signed": {**good_command, "sig": respelled},
            "reason": "malformed",
        },
    ]
    return {
        "about": (
            "portlane contract signing vectors (docs/contract-vectors.md). Keys are public test material: "
            "never trust them on a site."
        ),
        "key": {"seed_b64": SEED, "public_key_b64": public, "algorithm": "Ed25519 (RFC 8032)"},
        "site": SITE,
        "command_valid_at": "2026-11-23T18:00:30.000Z",
        "vectors": vectors,
        "bad": bad,
    }


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    fresh = render(build())
    if os.environ.get("PORTLANE_WRITE_VECTORS") == "1":
        VECTORS.write_text(fresh, encoding="utf-8")
    written = VECTORS.read_text(encoding="utf-8")
    assert written == fresh, "docs/contract-vectors.json is stale: see this module's docstring to regenerate it"
    return dict(json.loads(written))


def test_the_vectors_are_what_the_package_signs_today(doc: dict[str, Any]) -> None:
    assert len(doc["vectors"]) == len(EVENTS) + len(COMMANDS) and len(doc["bad"]) == 4


def test_each_signature_verifies_over_the_stated_bytes_with_plain_ed25519(doc: dict[str, Any]) -> None:
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(doc["key"]["public_key_b64"]))
    for v in doc["vectors"]:
        canonical = v["canonical"].encode("utf-8")
        assert hashlib.sha256(canonical).hexdigest() == v["canonical_sha256"], v["name"]
        public.verify(base64.b64decode(v["signature"]), canonical)  # raises if not
        without_sig = {k: x for k, x in v["signed"].items() if k != "sig"}
        assert json.loads(v["canonical"]) == without_sig, v["name"]
        assert "\\u" not in v["canonical"].replace("\\u0007", ""), "non-ASCII text is written literally"


def test_the_package_verifiers_accept_the_good_and_refuse_the_bad(doc: dict[str, Any]) -> None:
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(doc["key"]["public_key_b64"]))
    authority = Authority([KeyGrant(EVENT_KEY_ID, public, Role.LANE, "c1")], site=SITE, scanner_lanes={})

    def verifier() -> CommandVerifier:
        return CommandVerifier(
            {COMMAND_KEY_ID: doc["key"]["public_key_b64"]},
            site=SITE,
            lane="c1",
            clock=lambda: COMMAND_TIME,
            max_skew_s=5,
            nonce_store=MemoryNonceStore(),
        )

    for v in doc["vectors"]:
        if v["kind"] == "event":
            assert verify_event(v["signed"], authority).unit == "c1"
        else:
            verified = verifier().verify(json.dumps(v["signed"], ensure_ascii=False).encode())
            assert verified.command.sig == v["signature"]
    for b in doc["bad"]:
        if b["kind"] == "event":
            with pytest.raises(TrustError) as ei:
                verify_event(b["signed"], authority)
            assert ei.value.reason == b["reason"], b["name"]
        else:
            with pytest.raises(CommandRejectedError) as ej:
                verifier().verify(json.dumps(b["signed"], ensure_ascii=False).encode())
            assert ej.value.reason == b["reason"], b["name"]
