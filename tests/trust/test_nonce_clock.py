"""Replay protection that does not rest on the lane's clock (issue 23).

A nonce store recreated, or rolled back to an older copy, must not accept a command it accepted
before — even when the lane's clock was an hour wrong when the store was born — and must keep
taking fresh commands. A clock that jumps an hour or more either way and comes back must not
reopen a replay either. The store learns what it lost from the audit log beside it (the
daemons keep ``audit.jsonl`` in the same state directory, anchored by signed checkpoints).
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from portlane.edge.contract.commands import SignedCommand
from portlane.edge.errors import CommandRejectedError
from portlane.edge.trust.audit import AuditLog
from portlane.edge.trust.commands import CommandSigner, CommandVerifier, RejectReason
from portlane.edge.trust.nonces import SqliteNonceStore

ROOT = Path(__file__).resolve().parents[2]
DEMO = yaml.safe_load((ROOT / "firmware_config" / "demo_keys.yaml").read_text())
T0 = datetime(2026, 11, 23, 18, 0, 0, tzinfo=UTC)
SITE, LANE = "zhuhai-hzmb", "c01"
HOUR = timedelta(hours=1)
#: The validity the platform simulator gives its commands.
VALID = timedelta(seconds=60)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Lane:
    """The parts of a lane that replay protection is made of, as the daemon wires them: the
    verifier, ``nonces-<lane>.db`` and ``audit.jsonl`` in one state directory, and the
    ``command_accepted`` entry the command handler writes for each accepted command."""

    def __init__(self, state: Path, clock: Clock) -> None:
        self.state, self.clock = state, clock
        self.store_path = state / f"nonces-{LANE}.db"
        self.store: SqliteNonceStore | None = None
        self.audit = AuditLog(state / "audit.jsonl", clock=clock)

    def open(self) -> SqliteNonceStore:
        self.store = SqliteNonceStore(self.store_path, clock=self.clock)  # as the daemons construct it
        return self.store

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def verify(self, cmd: SignedCommand) -> RejectReason | None:
        assert self.store is not None
        verifier = CommandVerifier(
            {DEMO["key_id"]: DEMO["public_key"]},
            site=SITE,
            lane=LANE,
            clock=self.clock,
            max_skew_s=5.0,
            nonce_store=self.store,
        )
        try:
            verifier.verify(cmd.to_json_bytes())
        except CommandRejectedError as exc:
            return RejectReason(exc.reason)
        self.audit.append("command_accepted", actor=cmd.key_id, reason=cmd.cmd, lane=LANE, data={"nonce": cmd.nonce})
        return None

    def lose_store(self) -> None:
        self.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.store_path}{suffix}").unlink(missing_ok=True)


@pytest.fixture
def lane(tmp_path: Path) -> Any:
    lane = Lane(tmp_path, Clock())
    lane.open()
    yield lane
    lane.close()
    lane.audit.close()


def command(at: datetime, **over: Any) -> SignedCommand:
    fields: dict[str, Any] = {
        "cmd": "release",
        "site": SITE,
        "lane": LANE,
        "passage_id": "p-1",
        "args": {"agency": "customs"},
        "issued_at": at,
        "expires_at": at + VALID,
    }
    fields.update(over)
    return CommandSigner(DEMO["key_id"], DEMO["private_key"]).sign(fields)


def test_a_store_recreated_while_the_clock_was_an_hour_behind_refuses_what_it_accepted(lane: Lane) -> None:
    captured = command(T0)
    assert lane.verify(captured) is None
    lane.clock.now = T0 + timedelta(seconds=10)
    lane.lose_store()
    lane.clock.now = T0 + timedelta(seconds=10) - HOUR  # the lane's clock is an hour behind at birth
    lane.open()
    lane.clock.now = T0 + timedelta(seconds=20)  # NTP puts it right, within the command's validity
    assert lane.verify(captured) is RejectReason.ISSUED_BEFORE_STORE
    assert lane.verify(command(lane.clock.now)) is None  # the platform's next command is taken


def test_a_store_recreated_while_the_clock_was_an_hour_ahead_takes_fresh_commands(lane: Lane) -> None:
    captured = command(T0)
    assert lane.verify(captured) is None
    lane.lose_store()
    lane.clock.now = T0 + timedelta(seconds=10) + HOUR  # born an hour ahead
    lane.open()
    lane.clock.now = T0 + timedelta(seconds=20)
    # Before: the store's birth (an hour ahead) refused every command for the next hour.
    assert lane.verify(command(lane.clock.now)) is None
    assert lane.verify(captured) is RejectReason.ISSUED_BEFORE_STORE


def test_a_rolled_back_store_refuses_what_it_no_longer_holds(lane: Lane, tmp_path: Path) -> None:
    assert lane.verify(command(T0)) is None
    lane.close()
    backup = tmp_path / "backup"
    backup.mkdir()
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{lane.store_path}{suffix}")
        if src.exists():
            shutil.copy2(src, backup / src.name)
    lane.open()
    lane.clock.now = T0 + timedelta(seconds=10)
    later = command(lane.clock.now)
    assert lane.verify(later) is None
    lane.close()
    for suffix in ("", "-wal", "-shm"):  # the old copy comes back (a restored backup, an attacker)
        Path(f"{lane.store_path}{suffix}").unlink(missing_ok=True)
    for f in backup.iterdir():
        shutil.copy2(f, lane.state / f.name)
    lane.clock.now = T0 + timedelta(seconds=15)
    lane.open()
    assert lane.verify(later) is RejectReason.ISSUED_BEFORE_STORE
    assert lane.verify(command(T0 + timedelta(seconds=16))) is None


def test_an_intact_store_keeps_its_floor_across_restarts(lane: Lane) -> None:
    """Reopening a store that holds what the audit log says it accepted changes nothing: a
    command issued just before the restart and delivered after it is still taken."""
    assert lane.verify(command(T0)) is None
    assert lane.store is not None
    floor = lane.store.created_at
    in_flight = command(T0 + timedelta(seconds=1))
    lane.close()
    lane.clock.now = T0 + timedelta(seconds=2)
    lane.open()
    assert lane.store.created_at == floor
    assert lane.verify(in_flight) is None


@pytest.mark.parametrize("jump", [-HOUR, HOUR, HOUR + timedelta(minutes=10), 2 * HOUR], ids=str)
def test_a_clock_jump_and_back_reopens_no_replay(lane: Lane, jump: timedelta) -> None:
    """Site-wide clock trouble (lane and platform on the same wrong time server): while the
    clocks are wrong the lane accepts commands stamped with the wrong time; when they come back,
    a command captured before the jump must still be refused, and fresh commands taken."""
    lane.lose_store()
    lane.clock.now = T0 - 3 * HOUR  # the lane has run for a while
    lane.open()
    lane.clock.now = T0
    captured = command(T0)
    assert lane.verify(captured) is None
    lane.clock.now = T0 + jump
    assert lane.verify(command(lane.clock.now)) is None  # prunes what looks an hour expired
    lane.clock.now = T0 + timedelta(seconds=30)
    assert lane.verify(captured) in (RejectReason.REPLAYED, RejectReason.ISSUED_BEFORE_STORE)
    # Forgetting a nonce raised the floor past its command; fresh commands after it are taken.
    lane.clock.now = T0 + VALID + timedelta(seconds=10)
    assert lane.verify(command(lane.clock.now)) is None


def test_forgetting_raises_the_floor_past_every_forgotten_command(tmp_path: Path) -> None:
    with SqliteNonceStore(tmp_path / "n.db", margin_s=10, clock=lambda: T0, audit_path=None) as store:
        birth = store.created_at
        assert store.check_and_record("a" * 22, keep_until=T0 + timedelta(seconds=60), now=T0)
        later = T0 + timedelta(seconds=75)
        assert store.check_and_record("b" * 22, keep_until=later + timedelta(seconds=60), now=later)
        assert store.count() == 1
        assert store.created_at == T0 + timedelta(seconds=60) > birth
    with SqliteNonceStore(tmp_path / "n.db", clock=lambda: T0, audit_path=None) as store:
        assert store.created_at == T0 + timedelta(seconds=60)  # persisted


def test_a_lane_clock_far_ahead_forgets_nothing_still_valid(tmp_path: Path) -> None:
    """Pruning judges expiry by the earlier of the lane's clock and the newest expiry the
    platform signed, so a lane clock a day ahead does not forget a valid command."""
    with SqliteNonceStore(tmp_path / "n.db", clock=lambda: T0, audit_path=None) as store:
        assert store.check_and_record("a" * 22, keep_until=T0 + timedelta(seconds=65), now=T0)
        ahead = T0 + timedelta(days=1)
        assert store.check_and_record("b" * 22, keep_until=T0 + timedelta(seconds=70), now=ahead)
        assert store.count() == 2
        assert store.created_at <= T0


def test_an_audit_log_far_in_the_future_is_not_believed(tmp_path: Path) -> None:
    """A forged audit entry dated 2099 must not lock the lane out for ever."""
    with AuditLog(tmp_path / "audit.jsonl", clock=lambda: datetime(2099, 1, 1, tzinfo=UTC)) as audit:
        audit.append("command_accepted", actor="x", reason="release", lane=LANE, data={"nonce": "n" * 22})
    with SqliteNonceStore(tmp_path / f"nonces-{LANE}.db", clock=lambda: T0) as store:
        assert store.created_at == T0


def test_a_torn_or_garbled_audit_tail_is_read_past(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.jsonl", clock=lambda: T0) as audit:
        audit.append("command_accepted", actor="x", reason="release", lane=LANE, data={"nonce": "n" * 22})
    with open(tmp_path / "audit.jsonl", "ab") as f:
        f.write(b'{"n": 2, "ts": "not a time"}\n\xff\xfe[[[[\n{"torn')
    with SqliteNonceStore(tmp_path / f"nonces-{LANE}.db", clock=lambda: T0 - HOUR) as store:
        assert store.created_at == T0 + timedelta(seconds=5)
