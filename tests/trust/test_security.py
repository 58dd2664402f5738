"""Signed commands: canonical form, each rejection reason, replay across restarts, mutations."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from portlane.edge.contract.canonical import b64decode_strict, canonical_json
from portlane.edge.contract.commands import AgencyArgs, SignedCommand
from portlane.edge.errors import CanonicalJSONError, CommandRejectedError
from portlane.edge.trust.commands import CommandSigner, CommandVerifier, RejectReason
from portlane.edge.trust.keys import generate_keypair, load_public_key, trusted_keys_from_config
from portlane.edge.trust.nonces import MemoryNonceStore, SqliteNonceStore

ROOT = Path(__file__).resolve().parents[2]
DEMO = yaml.safe_load((ROOT / "firmware_config" / "demo_keys.yaml").read_text())
T0 = datetime(2026, 11, 23, 18, 0, 0, tzinfo=UTC)
SITE, LANE = "zhuhai-hzmb", "c01"


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def signer() -> CommandSigner:
    return CommandSigner(DEMO["key_id"], DEMO["private_key"])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_verifier(clock: FakeClock, store: Any = None, **kw: Any) -> CommandVerifier:
    opts: dict[str, Any] = {"site": SITE, "lane": LANE, "max_skew_s": 5.0}
    opts.update(kw)
    keys = opts.pop("keys", {DEMO["key_id"]: DEMO["public_key"]})
    return CommandVerifier(keys, clock=clock, nonce_store=MemoryNonceStore() if store is None else store, **opts)


def fields(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cmd": "release",
        "site": SITE,
        "lane": LANE,
        "passage_id": "p-000123",
        "args": {"agency": "customs"},
        "issued_at": T0,
        "expires_at": T0 + timedelta(seconds=60),
    }
    base.update(over)
    return base


def reject_reason(verifier: CommandVerifier, raw: Any) -> RejectReason:
    with pytest.raises(CommandRejectedError) as ei:
        verifier.verify(raw)
    return ei.value.reason


# -- canonical form -----------------------------------------------------------------------------


def test_canonical_form_is_sorted_compact_utf8() -> None:
    assert (
        canonical_json({"b": 1, "a": [True, None, "é\n"], "A": {}}) == '{"A":{},"a":[true,null,"é\\n"],"b":1}'.encode()
    )


def test_canonical_key_order_is_utf16_code_units() -> None:
    # U+FF61 sorts after U+1F600 by code point but before it in UTF-16 (surrogate D83D < FF61).
    assert canonical_json({"\uff61": 1, "\U0001f600": 2}) == '{"😀":2,"｡":1}'.encode()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (1e-6, "0.000001"),
        (-0.0, "0"),
        (0.1, "0.1"),
        (100.0, "100"),
        (5e-324, "5e-324"),
    ],
)
def test_canonical_floats_use_the_ecmascript_form(value: float, text: str) -> None:
    assert canonical_json(value) == text.encode()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 2**53, {1: "x"}, "\ud800", b"x", object()])
def test_values_without_a_canonical_form_are_refused(bad: Any) -> None:
    with pytest.raises(CanonicalJSONError):
        canonical_json(bad)


def test_floats_can_be_refused() -> None:
    with pytest.raises(CanonicalJSONError):
        canonical_json({"w": 1.5}, allow_floats=False)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=6), st.randoms())
def test_canonical_form_is_stable_under_key_order(d: dict[str, Any], rnd: Any) -> None:
    items = list(d.items())
    rnd.shuffle(items)
    assert canonical_json(dict(items)) == canonical_json(d)
    # and it is JSON that parses back to the same value
    assert json.loads(canonical_json(d)) == d


# -- round trip ---------------------------------------------------------------------------------


def test_demo_key_pair_matches() -> None:
    assert CommandSigner(DEMO["key_id"], DEMO["private_key"]).public_key_b64 == DEMO["public_key"]


def test_sign_verify_round_trip(signer: CommandSigner, clock: FakeClock) -> None:
    cmd = signer.sign(fields())
    assert isinstance(cmd, SignedCommand)
    got = make_verifier(clock).verify(cmd.to_json_bytes())
    assert got.command == cmd
    assert got.name == "release" and got.passage_id == "p-000123" and got.key_id == DEMO["key_id"]
    assert got.args == AgencyArgs(agency="customs")  # read once, as its model
    assert len(base64.urlsafe_b64decode(got.nonce + "==")) >= 16


def test_verify_accepts_pretty_printed_json_and_dicts(signer: CommandSigner, clock: FakeClock) -> None:
    verifier = make_verifier(clock)
    a, b = signer.sign(fields()), signer.sign(fields())
    assert verifier.verify(json.dumps(a.model_dump(), indent=2)).command == a
    assert verifier.verify(b.model_dump()).command == b


def test_signed_command_is_frozen(signer: CommandSigner) -> None:
    cmd = signer.sign(fields())
    with pytest.raises(ValueError, match="frozen"):
        cmd.lane = "c02"  # type: ignore[misc]


def test_key_rotation_accepts_every_trusted_key(clock: FakeClock) -> None:
    old_priv, old_pub = generate_keypair()
    new_priv, new_pub = generate_keypair()
    verifier = make_verifier(clock, keys={"k-old": old_pub, "k-new": new_pub})
    for kid, priv in (("k-old", old_priv), ("k-new", new_priv)):
        assert verifier.verify(CommandSigner(kid, priv).sign(fields()).to_json_bytes()).key_id == kid
    # a key signing under another key's id is a forgery
    forged = CommandSigner("k-new", old_priv).sign(fields())
    assert reject_reason(verifier, forged.to_json_bytes()) is RejectReason.BAD_SIGNATURE


def test_trusted_keys_from_site_config_shape() -> None:
    keys = trusted_keys_from_config([{"id": "a", "public_key": DEMO["public_key"]}])
    assert keys == {"a": DEMO["public_key"]}
    with pytest.raises(ValueError, match="twice"):
        trusted_keys_from_config([{"id": "a", "public_key": "x"}, {"id": "a", "public_key": "y"}])


def test_bad_trusted_key_fails_at_start_up(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="trusted key 'k1'"):
        make_verifier(clock, keys={"k1": base64.b64encode(b"short").decode()})
    with pytest.raises(ValueError):
        load_public_key("not base64!")


# -- each rejection reason --------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b"\xff\xfe{}",
        b'{"v": 1, "v": 1, "sig": "x"}',
        b'{"v": 1.0, "sig": "x"}',
        b'{"v": NaN, "sig": "x"}',
        b"[" * 100_000,
        b" " * 70_000 + b"{}",
    ],
    ids=["empty", "text", "array", "not-utf8", "dup-key", "float", "nan", "deep", "too-big"],
)
def test_malformed_bytes(raw: bytes, clock: FakeClock) -> None:
    assert reject_reason(make_verifier(clock), raw) is RejectReason.MALFORMED


@pytest.mark.parametrize(
    "change",
    [
        {"v": 2},
        {"v": True},
        {"cmd": "self_destruct"},
        {"lane": "C 01"},
        {"args": {"w": 1.5}},
        {"issued_at": "2026-11-23 18:00:00"},
        {"expires_at": "2026-11-23T18:01:00+08:00"},
        {"expires_at": "2026-11-23T17:59:00Z"},
        {"nonce": "c2hvcnQ"},
        {"nonce": "AAAAAAAAAAAAAAAAAAAAAA=="},
        {"extra": 1},
        {"sig": "AAAA"},
        {"passage_id": 5},
    ],
    ids=lambda c: next(iter(c)) + "=" + repr(next(iter(c.values())))[:20],
)
def test_malformed_fields(change: dict[str, Any], signer: CommandSigner, clock: FakeClock) -> None:
    d = signer.sign(fields()).model_dump()
    d.update(change)
    assert reject_reason(make_verifier(clock), d) is RejectReason.MALFORMED


def test_missing_field_is_malformed(signer: CommandSigner, clock: FakeClock) -> None:
    d = signer.sign(fields()).model_dump()
    del d["expires_at"]
    assert reject_reason(make_verifier(clock), d) is RejectReason.MALFORMED


@pytest.mark.parametrize("sig", [None, "", "<absent>"])
def test_unsigned(sig: str | None, signer: CommandSigner, clock: FakeClock) -> None:
    d = signer.sign(fields()).model_dump()
    if sig == "<absent>":
        del d["sig"]
    else:
        d["sig"] = sig
    assert reject_reason(make_verifier(clock), d) is RejectReason.UNSIGNED


def test_unknown_key(clock: FakeClock) -> None:
    priv, _ = generate_keypair()
    cmd = CommandSigner("rogue", priv).sign(fields())
    assert reject_reason(make_verifier(clock), cmd.to_json_bytes()) is RejectReason.UNKNOWN_KEY


def test_forged_signature(clock: FakeClock) -> None:
    priv, _ = generate_keypair()  # the attacker signs with their own key under the trusted id
    cmd = CommandSigner(DEMO["key_id"], priv).sign(fields())
    assert reject_reason(make_verifier(clock), cmd.to_json_bytes()) is RejectReason.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lane", "c01"),
        ("cmd", "hold"),
        ("passage_id", "p-999"),
        ("args", {"agency": "border"}),
        ("expires_at", "2026-11-23T19:00:00.000Z"),
        ("nonce", "A" * 22),
        ("passage_id", None),
    ],
)
def test_tampered_field_after_signing(field: str, value: Any, signer: CommandSigner, clock: FakeClock) -> None:
    cmd = signer.sign(fields(lane="c02"))
    d = cmd.model_dump()
    assert d[field] != value
    d[field] = value
    assert reject_reason(make_verifier(clock), d) is RejectReason.BAD_SIGNATURE


def test_expired(signer: CommandSigner, clock: FakeClock) -> None:
    verifier = make_verifier(clock)  # skew 5 s
    cmd = signer.sign(fields())  # expires T0 + 60 s
    clock.advance(65)
    assert reject_reason(verifier, cmd.to_json_bytes()) is RejectReason.EXPIRED
    clock.advance(-0.001)  # still inside expiry + skew: accepted
    assert verifier.verify(cmd.to_json_bytes()).command == cmd


def test_not_yet_valid(signer: CommandSigner, clock: FakeClock) -> None:
    verifier = make_verifier(clock)
    early = signer.sign(fields(issued_at=T0 + timedelta(seconds=5.001), expires_at=T0 + timedelta(seconds=60)))
    assert reject_reason(verifier, early.to_json_bytes()) is RejectReason.NOT_YET_VALID
    within_skew = signer.sign(fields(issued_at=T0 + timedelta(seconds=5), expires_at=T0 + timedelta(seconds=60)))
    assert verifier.verify(within_skew.to_json_bytes()).command == within_skew


def test_wrong_site_and_wrong_lane(signer: CommandSigner, clock: FakeClock) -> None:
    verifier = make_verifier(clock)
    assert reject_reason(verifier, signer.sign(fields(site="other-port")).to_json_bytes()) is RejectReason.WRONG_SITE
    assert reject_reason(verifier, signer.sign(fields(lane="c02")).to_json_bytes()) is RejectReason.WRONG_LANE


def test_replayed(signer: CommandSigner, clock: FakeClock) -> None:
    verifier = make_verifier(clock)
    raw = signer.sign(fields()).to_json_bytes()
    verifier.verify(raw)
    clock.advance(1)
    assert reject_reason(verifier, raw) is RejectReason.REPLAYED


def test_replay_is_rejected_across_a_restart(signer: CommandSigner, clock: FakeClock, tmp_path: Path) -> None:
    raw = signer.sign(fields()).to_json_bytes()
    with SqliteNonceStore(tmp_path / "nonces.db", clock=lambda: T0) as store:
        make_verifier(clock, store).verify(raw)
    with SqliteNonceStore(tmp_path / "nonces.db", clock=lambda: T0) as store:  # the daemon restarted
        assert reject_reason(make_verifier(clock, store), raw) is RejectReason.REPLAYED


def test_a_nonce_is_recorded_only_after_every_other_check(signer: CommandSigner, clock: FakeClock) -> None:
    store = MemoryNonceStore()
    cmd = signer.sign(fields())
    other_lane = make_verifier(clock, store, lane="c02")
    assert reject_reason(other_lane, cmd.to_json_bytes()) is RejectReason.WRONG_LANE
    d = cmd.model_dump() | {"args": {}}
    assert reject_reason(make_verifier(clock, store), d) is RejectReason.BAD_SIGNATURE
    assert store.count() == 0
    assert make_verifier(clock, store).verify(cmd.to_json_bytes()).command == cmd  # nonce still unused
    assert store.count() == 1


def test_check_order_signature_before_time_before_target(clock: FakeClock) -> None:
    priv, _ = generate_keypair()
    stale_forgery = CommandSigner(DEMO["key_id"], priv).sign(
        fields(site="elsewhere", issued_at=T0 - timedelta(hours=2), expires_at=T0 - timedelta(hours=1))
    )
    assert reject_reason(make_verifier(clock), stale_forgery.to_json_bytes()) is RejectReason.BAD_SIGNATURE
    stale_other_site = CommandSigner(DEMO["key_id"], DEMO["private_key"]).sign(
        fields(site="elsewhere", issued_at=T0 - timedelta(hours=2), expires_at=T0 - timedelta(hours=1))
    )
    assert reject_reason(make_verifier(clock), stale_other_site.to_json_bytes()) is RejectReason.EXPIRED


def test_sqlite_store_prunes_only_what_can_never_be_accepted(tmp_path: Path) -> None:
    with SqliteNonceStore(tmp_path / "n.db", margin_s=10, clock=lambda: T0) as store:
        assert store.check_and_record("a" * 22, keep_until=T0 + timedelta(seconds=60), now=T0)
        assert store.check_and_record("b" * 22, keep_until=T0 + timedelta(seconds=600), now=T0)
        later = T0 + timedelta(seconds=75)  # past a's keep_until + margin, not b's
        assert store.check_and_record("c" * 22, keep_until=later + timedelta(seconds=60), now=later)
        assert store.count() == 2
        assert not store.check_and_record("b" * 22, keep_until=T0 + timedelta(seconds=600), now=later)


def test_rejection_echoes_fields_for_the_response(signer: CommandSigner, clock: FakeClock) -> None:
    cmd = signer.sign(fields(lane="c02"))
    with pytest.raises(CommandRejectedError) as ei:
        make_verifier(clock).verify(cmd.to_json_bytes())
    body = ei.value.as_dict()
    assert body["ok"] is False and body["reason"] == "wrong_lane"
    assert body["nonce"] == cmd.nonce and body["passage_id"] == "p-000123" and body["cmd"] == "release"


def test_clock_must_be_aware(signer: CommandSigner) -> None:
    verifier = make_verifier(FakeClock(T0.replace(tzinfo=None)))
    with pytest.raises(ValueError, match="naive"):
        verifier.verify(signer.sign(fields()).to_json_bytes())


def test_signature_base64_must_be_canonical(signer: CommandSigner, clock: FakeClock) -> None:
    # Changing only the unused low bits of the last base64 character leaves the same 64 bytes.
    cmd = signer.sign(fields())
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = cmd.sig[-3]
    twin = cmd.sig[:-3] + alphabet[alphabet.index(last) ^ 1] + "=="
    assert base64.b64decode(twin) == base64.b64decode(cmd.sig)
    with pytest.raises(ValueError):
        b64decode_strict(twin)
    assert reject_reason(make_verifier(clock), cmd.model_dump() | {"sig": twin}) is RejectReason.MALFORMED


# -- any single-byte mutation is rejected -----------------------------------------------------

# Characters that the canonical form writes literally (no escapes: an escape such as \u001f has
# a twin spelling \u001F that parses to the same string, which is not tampering).
_printable = st.characters(min_codepoint=0x20, exclude_characters='"\\', exclude_categories=("Cs",))
# Args the command's model accepts (a signed command's args are validated after the signature):
# board lines of any printable text in any colour.
printable_args = st.builds(
    lambda lines: {"lines": lines},
    st.lists(
        st.fixed_dictionaries(
            {"text": st.text(_printable, max_size=20), "colour": st.sampled_from(["red", "green", "amber"])}
        ),
        min_size=1,
        max_size=3,
    ),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(args=printable_args, data=st.data())
def test_any_single_byte_mutation_is_rejected(args: dict[str, Any], data: st.DataObject, clock: FakeClock) -> None:
    signer = CommandSigner(DEMO["key_id"], DEMO["private_key"])
    raw = signer.sign(fields(cmd="board_message", args=args)).to_json_bytes()
    pos = data.draw(st.integers(0, len(raw) - 1), label="position")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != raw[pos]), label="byte")
    mutated = raw[:pos] + bytes([new]) + raw[pos + 1 :]
    verifier = make_verifier(clock)
    with pytest.raises(CommandRejectedError):
        verifier.verify(mutated)
    assert verifier.verify(raw).command.to_json_bytes() == raw  # the original still verifies: nonce unburnt


def test_every_single_character_change_of_the_signature_is_rejected(clock: FakeClock) -> None:
    """Exhaustive over the sig (the random byte flips above rarely land on its padding bits)."""
    cmd = CommandSigner(DEMO["key_id"], DEMO["private_key"]).sign(fields())
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
    verifier = make_verifier(clock)
    base = cmd.model_dump()
    for i, old in enumerate(cmd.sig):
        for c in alphabet.replace(old, ""):
            with pytest.raises(CommandRejectedError):
                verifier.verify(base | {"sig": cmd.sig[:i] + c + cmd.sig[i + 1 :]})
    assert verifier.verify(cmd.to_json_bytes()).command == cmd


def test_public_api_is_pinned() -> None:
    import portlane.edge.contract.canonical as canonical
    import portlane.edge.contract.commands as commands_contract
    import portlane.edge.trust.audit as audit
    import portlane.edge.trust.audit_chain as audit_chain
    import portlane.edge.trust.commands as commands
    import portlane.edge.trust.keys as keys
    import portlane.edge.trust.nonces as nonces

    for mod in (commands, nonces, keys, canonical, commands_contract, audit, audit_chain):
        assert all(hasattr(mod, name) for name in mod.__all__)
    assert [r.value for r in RejectReason] == [
        "malformed",
        "unsigned",
        "unknown_key",
        "bad_signature",
        "validity_too_long",
        "not_yet_valid",
        "expired",
        "wrong_site",
        "wrong_lane",
        "not_authorised",
        "issued_before_store",
        "replayed",
    ]
    assert {"CommandSigner", "CommandVerifier", "RejectReason"} <= set(commands.__all__)
    assert {"SignedCommand", "CommandName", "COMMAND_NAMES"} <= set(commands_contract.__all__)
    assert {"SqliteNonceStore", "MemoryNonceStore"} <= set(nonces.__all__)
    assert {"canonical_json", "strict_loads", "b64decode_strict"} <= set(canonical.__all__)
    assert {"generate_keypair", "load_public_key"} <= set(keys.__all__)
    assert {"AuditLog", "require_operator"} <= set(audit.__all__)
    assert {"VerifyReport", "verify_log"} <= set(audit_chain.__all__)


# -- validity cap, store birth, corrupt stores ---------------------------------------------------


def test_a_command_valid_until_2099_is_refused(signer: CommandSigner, clock: FakeClock) -> None:
    verifier = make_verifier(clock, max_validity_s=300)
    far = signer.sign(fields(expires_at=datetime(2099, 1, 1, tzinfo=UTC)))
    assert reject_reason(verifier, far.to_json_bytes()) is RejectReason.VALIDITY_TOO_LONG
    just = signer.sign(fields(expires_at=T0 + timedelta(seconds=300)))
    assert verifier.verify(just.to_json_bytes()).command == just
    over = signer.sign(fields(expires_at=T0 + timedelta(seconds=300.001)))
    assert reject_reason(verifier, over.to_json_bytes()) is RejectReason.VALIDITY_TOO_LONG


def test_the_site_caps_validity_by_default(signer: CommandSigner) -> None:
    from portlane.edge.config import load_site

    site = load_site(ROOT / "firmware_config/sites/zhuhai-hzmb-cargo.yaml")
    verifier = CommandVerifier.from_site(site, "c1", clock=lambda: T0, nonce_store=MemoryNonceStore())
    far = signer.sign(fields(site=site.site.id, lane="c1", expires_at=datetime(2099, 1, 1, tzinfo=UTC)))
    assert reject_reason(verifier, far.to_json_bytes()) is RejectReason.VALIDITY_TOO_LONG


def test_deleting_the_nonce_store_does_not_reopen_replays(
    signer: CommandSigner, clock: FakeClock, tmp_path: Path
) -> None:
    db = tmp_path / "nonces.db"
    with SqliteNonceStore(db, clock=lambda: T0 - timedelta(days=1)) as store:
        raw = signer.sign(fields()).to_json_bytes()
        make_verifier(clock, store).verify(raw)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)  # an attacker (or a disk swap) loses the store
    clock.advance(10)
    with SqliteNonceStore(db, clock=clock) as store:  # recreated at T0 + 10 s
        assert store.created_at == T0 + timedelta(seconds=10)
        assert reject_reason(make_verifier(clock, store), raw) is RejectReason.ISSUED_BEFORE_STORE
        fresh = signer.sign(fields(issued_at=clock.now, expires_at=clock.now + timedelta(seconds=60)))
        assert make_verifier(clock, store).verify(fresh.to_json_bytes()).command == fresh
    with SqliteNonceStore(db, clock=lambda: T0 + timedelta(days=3)) as store:  # reopening keeps the birth
        assert store.created_at == T0 + timedelta(seconds=10)


@pytest.mark.parametrize(
    "content", [b"garbage, not a database", b"SQLite format 3\x00" + b"\xff" * 200, b"\x00" * 4096]
)
def test_a_corrupt_nonce_store_fails_at_open_with_one_line(tmp_path: Path, content: bytes) -> None:
    from portlane.edge.errors import NonceStoreError

    db = tmp_path / "nonces-c1.db"
    db.write_bytes(content)
    with pytest.raises(NonceStoreError) as ei:
        SqliteNonceStore(db, clock=lambda: T0)
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith(f"{db}: not a usable nonce store (") and "move the file aside" in msg
