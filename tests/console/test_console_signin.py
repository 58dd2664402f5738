"""Console sign-in that cannot be used against its users (issue 23).

What we saw: five wrong passwords for a name made the console answer 429 to that name's correct
password for five minutes, renewable for ever, from anywhere; nothing limited one source. Now
failures slow down the account (capped: its owner waits seconds, then signs in) and the source
(which waits minutes per guess); nothing refuses the right password; failures are audited in
aggregate; the session cookie is Secure whenever the page is served over TLS.

Time is a fake clock; a throttled sign-in "waits" by advancing it (no wall-clock sleeps).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from portlane.edge.console.auth import (
    ACCOUNT_DELAY_CAP_S,
    LoginThrottle,
    User,
    client_source,
    cookie_secure,
    hash_password,
)
from portlane.edge.demo.broker import BrokerProcess
from portlane.edge.trust.audit import AuditLog
from portlane.edge.trust.audit_chain import read_entries

PASSWORD = "correct horse battery"
USERS = {"li": User(name="li", role="supervisor", password=hash_password(PASSWORD))}
ATTACKER, OWNER = "203.0.113.66", "10.20.0.5"


class Time:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        """UNIX seconds for the audit's per-minute windows: the start of a minute, standing
        still (no wall-clock minute may end in the middle of a test)."""
        return 1_800_000_000.0

    async def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def throttle(t: Time, **kw: Any) -> LoginThrottle:
    return LoginThrottle(clock=t.clock, sleep=t.sleep, wall_clock=t.wall, **kw)


async def test_hammering_a_name_never_locks_its_owner_out() -> None:
    t = Time()
    guard = throttle(t)
    for _ in range(20):  # "five wrong passwords ... renewable for ever": twenty, from one address
        assert await guard.check(USERS, "li", "guess", remote=ATTACKER) is None
        t.now += 0.1
    t.slept.clear()
    # The owner, from their own desk, with the right password: delayed at most the account cap.
    assert await guard.check(USERS, "li", PASSWORD, remote=OWNER) == USERS["li"]
    assert sum(t.slept) <= ACCOUNT_DELAY_CAP_S
    # Before: the old throttle's lock held here, and the handler answered 429.


async def test_the_guessing_source_waits_longer_and_longer() -> None:
    t = Time()
    guard = throttle(t)
    for _ in range(12):
        await guard.check(USERS, f"user{len(t.slept)}", "guess", remote=ATTACKER)  # a new name each time
    waits = [round(x, 3) for x in t.slept]
    assert waits[:3] == [1.0, 2.0, 4.0] and waits[-1] > 100, waits  # per source, whatever the names
    assert guard.delay("li", OWNER) == 0  # nobody else is slowed down


async def test_failures_are_forgotten_and_success_clears_them() -> None:
    t = Time()
    guard = throttle(t)
    for _ in range(5):
        await guard.check(USERS, "li", "typo", remote=OWNER)
    assert guard.delay("li", OWNER) > 0
    t.now += 3601
    assert guard.delay("li", OWNER) == 0
    for _ in range(5):
        await guard.check(USERS, "li", "typo", remote=OWNER)
    assert await guard.check(USERS, "li", PASSWORD, remote=OWNER) == USERS["li"]
    assert guard.delay("li", OWNER) == 0


async def test_a_flood_from_one_source_is_answered_at_once_and_touches_nobody_else() -> None:
    release = asyncio.Event()
    t = Time()

    async def held(s: float) -> None:
        await release.wait()  # the attacker's sign-ins sit in their delay until the test says

    guard = LoginThrottle(clock=t.clock, sleep=held, free_failures=0)
    await guard.check(USERS, "x", "guess", remote=ATTACKER)  # from now on the source waits before each check
    waiting = [asyncio.create_task(guard.check(USERS, "x", "guess", remote=ATTACKER)) for _ in range(4)]
    await asyncio.sleep(0)  # let them reach their wait
    assert await guard.check(USERS, "li", PASSWORD, remote=ATTACKER) is None  # the fifth: answered at once
    assert guard.flooded == 1
    release.set()
    assert await asyncio.gather(*waiting) == [None] * 4
    assert await guard.check(USERS, "li", PASSWORD, remote=OWNER) == USERS["li"]  # others unaffected


async def test_the_real_client_behind_the_proxy_is_throttled_not_the_proxy() -> None:
    assert client_source("127.0.0.1", "198.51.100.1, 203.0.113.66") == ATTACKER  # what nginx appended
    assert client_source(ATTACKER, "127.0.0.1") == ATTACKER  # a client's own header is not believed
    assert client_source(None, None) == "unknown"
    t = Time()
    guard = throttle(t)
    for _ in range(6):
        await guard.check(USERS, "nobody", "guess", remote="127.0.0.1", forwarded_for=ATTACKER)
    assert guard.delay("other", ATTACKER) > 0 and guard.delay("other", OWNER) == 0


async def test_sign_in_failures_are_audited_in_aggregate(tmp_path: Path) -> None:
    t = Time()
    with AuditLog(tmp_path / "audit.jsonl") as audit:
        guard = throttle(t, audit=audit)
        await guard.check(USERS, "li", "typo", remote=OWNER)
        await guard.check(USERS, "ghost", "x", remote=ATTACKER)
        for _ in range(15):
            await guard.check(USERS, "li", "guess", remote=ATTACKER)
        guard.flush(force=True)
    entries = [e for _, e, _ in read_entries(tmp_path / "audit.jsonl") if e is not None]
    failed = [e for e in entries if e.kind == "sign_in_failed"]
    assert [(e.actor, e.reason) for e in failed[:2]] == [("li", "wrong_password"), ("ghost", "unknown_name")]
    assert f"from {OWNER}" in failed[0].data["detail"]
    assert len(failed) == 11  # the first ten per name and minute, one by one ...
    [summary] = [e for e in entries if e.kind == "sign_in_failed_summary"]
    assert summary.actor == "li" and summary.data["count"] == 16  # ... then one summary


@pytest.mark.parametrize(
    ("configured", "scheme", "proto", "secure"),
    [
        (False, "http", None, False),  # plain HTTP on loopback, no proxy
        (False, "https", None, True),  # served over TLS itself
        (False, "http", "https", True),  # behind the TLS proxy
        (False, "http", "https, http", True),
        (True, "http", None, True),
    ],
)
def test_the_session_cookie_is_secure_whenever_served_over_tls(
    configured: bool, scheme: str, proto: str | None, secure: bool
) -> None:
    assert cookie_secure(configured, scheme=scheme, forwarded_proto=proto) is secure


# ------------------------------------------------------------------------------ over HTTP


async def test_over_http_the_right_password_signs_in_while_a_flood_of_wrong_ones_is_delayed(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    """The login handler of the running console (issue 23 phase 2: before, it checked the password
    at once, whatever had failed before — no delay at all). Shorter delays than the defaults, so
    the test takes seconds; the sleeps are the throttle's own (no sleep synchronises the test)."""
    import time

    import aiohttp
    from console_helpers import site
    from portlane.edge.console.service import ConsoleService
    from portlane.edge.console.web import start_web

    svc = ConsoleService(site=site(), db=tmp_path / "c.db", broker_url=broker.url, http=None, users=USERS)
    async with svc:
        assert svc.audit is not None
        # the audit's per-minute windows on a standing clock: a wall-clock minute ending mid-test
        # split the 17 failures in two windows, each under the summary threshold (no summary)
        guard = LoginThrottle(
            audit=svc.audit, first_delay_s=0.2, account_cap_s=1.0, source_cap_s=60.0, wall_clock=Time().wall
        )
        runner, url = await start_web(svc, "127.0.0.1", 0, throttle=guard)
        try:
            hdr = {"X-Portlane": "1"}

            async def sign_in(password: str, source: str, **headers: str) -> tuple[int, float, str]:
                h = {**hdr, "X-Forwarded-For": source, **headers}  # the loopback TLS proxy's header
                t0 = time.monotonic()
                body = {"name": "li", "password": password}
                async with aiohttp.ClientSession(url) as http, http.post("/api/login", json=body, headers=h) as r:
                    return r.status, time.monotonic() - t0, r.headers.get("Set-Cookie", "")

            # One after the other from the attacker: the first four at once, then 0.2, 0.4, 0.8 s.
            tries = [await sign_in("guess", ATTACKER) for _ in range(7)]
            assert [s for s, _t, _c in tries] == [401] * 7
            assert tries[-1][1] >= 0.6, [round(t, 3) for _s, t, _c in tries]  # before: ~0.05 s each
            # A flood at once: four wait their turn, the rest are answered at once as failed.
            flood = await asyncio.gather(*(sign_in("guess", ATTACKER) for _ in range(10)))
            assert [s for s, _t, _c in flood] == [401] * 10 and guard.flooded >= 6
            # The owner, from their own desk, while the account is hammered: signed in, delayed at
            # most the account's cap; over TLS (the proxy says so) the cookie is Secure.
            status, took, cookie = await sign_in(PASSWORD, OWNER, **{"X-Forwarded-Proto": "https"})
            assert status == 200 and took < 1.0 + 5.0, took  # the cap, and a busy machine's margin
            assert "Secure" in cookie and "HttpOnly" in cookie
            status, _took, cookie = await sign_in(PASSWORD, OWNER)
            assert status == 200 and "Secure" not in cookie  # plain HTTP on loopback
        finally:
            await runner.cleanup()  # writes the aggregated summaries
        entries = [e for _, e, _ in read_entries(svc.audit_path) if e is not None]
    failed = [e for e in entries if e.kind == "sign_in_failed"]
    assert failed and all(e.actor == "li" for e in failed)
    assert any(e.kind == "sign_in_failed_summary" for e in entries)
