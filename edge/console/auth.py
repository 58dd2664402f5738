"""Who may use the console: a users file with salted scrypt hashes, sessions, roles.

Roles:

* ``supervisor`` — sees everything of the site, read-only (cannot acknowledge);
* ``officer`` — belongs to one agency; sees what that agency is entitled to (events whose
  ``audience`` is empty or names it; alarms of the lanes it works on) and acknowledges its
  agency's items.

The users file (YAML, written by ``portlane console user add``; keep it ``0640``)::

    users:
      - {name: li, role: supervisor, password: "scrypt$16384$8$1$<salt b64>$<hash b64>"}
      - {name: wang, role: officer, agency: customs, password: "scrypt$..."}

Passwords are hashed with ``hashlib.scrypt`` (n=2**14, r=8, p=1, 16-byte random salt,
32-byte key) and compared in constant time. Sessions are random 256-bit tokens held in
memory (a restart signs everybody out) and expire after :data:`SESSION_TTL_S`; the cookie is
``Secure`` whenever the page is served over TLS (:func:`cookie_secure`).

Sign-in cannot be used against the users (:class:`LoginThrottle`): failures slow down the
account and the source they come from, with growing, capped delays — never a lock that
refuses the right password — and are audited in aggregate.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from portlane.edge.config import Agency
from portlane.edge.errors import UsersFileError
from portlane.edge.trust.rejections import AuditSink, RejectionAggregator
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "LoginThrottle",
    "Sessions",
    "User",
    "client_source",
    "cookie_secure",
    "hash_password",
    "load_users",
    "save_users",
    "verify_password",
]

#: A shift, with margin: an officer signs in once per shift.
SESSION_TTL_S = 12 * 3600
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN = 2**14, 8, 1, 32
_NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class User(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=_NAME)
    role: Literal["supervisor", "officer"]
    agency: Agency | None = None
    password: str = Field(description="scrypt$N$r$p$salt$hash (base64)")

    @model_validator(mode="after")
    def _agency(self) -> User:
        if self.role == "officer" and self.agency is None:
            raise ValueError("an officer belongs to an agency")
        if self.role == "supervisor" and self.agency is not None:
            raise ValueError("a supervisor sees every agency; give no agency")
        if not self.password.startswith("scrypt$"):
            raise ValueError("password must be a scrypt hash (portlane console user add)")
        return self

    def public(self) -> dict[str, str | None]:
        return {"name": self.name, "role": self.role, "agency": self.agency.value if self.agency else None}

    def sees(self, agencies: tuple[str, ...] | list[str]) -> bool:
        """May this user see an item concerning ``agencies`` (() = a site alarm)?"""
        if self.role == "supervisor":
            return True
        return self.agency is not None and self.agency.value in agencies


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=SCRYPT_DKLEN)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(key).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, key_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt, key = base64.b64decode(salt_b64), base64.b64decode(key_b64)
        got = hashlib.scrypt(
            password.encode("utf-8"), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(key), maxmem=128 * 1024 * 1024
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, key)


#: A hash to check against when the name is unknown, so timing does not tell names apart.
_DUMMY = hash_password("not a password", salt=b"\0" * 16)


def check_login(users: Mapping[str, User], name: str, password: str) -> User | None:
    user = users.get(name)
    ok = verify_password(password, user.password if user else _DUMMY)
    return user if ok and user is not None else None


def load_users(path: str | Path) -> dict[str, User]:
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise UsersFileError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise UsersFileError(f"{p}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("users", []), list):
        raise UsersFileError(f"{p}: expected a mapping with a 'users' list")
    out: dict[str, User] = {}
    for i, entry in enumerate(raw.get("users") or []):
        try:
            u = User.model_validate(entry)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"]) or "<entry>"
            raise UsersFileError(f"{p}: users[{i}].{where}: {err['msg']}") from None
        if u.name in out:
            raise UsersFileError(f"{p}: users[{i}]: user {u.name!r} listed twice")
        out[u.name] = u
    return out


def save_users(path: str | Path, users: Mapping[str, User]) -> None:
    """Write atomically (temporary file, then rename), readable by owner and group only."""
    p = Path(path)
    body = "# portlane console users: edit with `portlane console user add|remove`\n" + yaml.safe_dump(
        {"users": [u.model_dump(mode="json", exclude_none=True) for u in users.values()]},
        allow_unicode=True,
        sort_keys=False,
    )
    tmp = p.with_name(p.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(body)
    os.replace(tmp, p)


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    user: User
    expires: float


class Sessions:
    def __init__(self, *, ttl_s: float = SESSION_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._by_token: dict[str, Session] = {}

    def create(self, user: User) -> Session:
        now = self._clock()
        for t in [t for t, s in self._by_token.items() if s.expires <= now]:
            del self._by_token[t]
        s = Session(secrets.token_urlsafe(32), user, now + self.ttl_s)
        self._by_token[s.token] = s
        return s

    def get(self, token: str | None) -> User | None:
        if not token:
            return None
        s = self._by_token.get(token)
        if s is None or s.expires <= self._clock():
            return None
        return s.user

    def drop(self, token: str | None) -> None:
        if token:
            self._by_token.pop(token, None)


#: Failed sign-ins of one account (or from one source) before any delay: enough for typos.
FREE_FAILURES = 3
#: The first delay; each further failure doubles it.
FIRST_DELAY_S = 1.0
#: The longest a sign-in to one account waits: someone hammering a name slows its owner by at
#: most this much — never a lock that refuses the right password.
ACCOUNT_DELAY_CAP_S = 15.0
#: The longest one source waits for its own failures: guessing from one address is hopeless.
SOURCE_DELAY_CAP_S = 300.0
#: Failures are forgotten this long after the last one.
FORGET_AFTER_S = 3600.0
#: Sign-ins from one source waiting at once; more are answered at once as failed (that source's
#: own flood), never checked.
MAX_WAITING_PER_SOURCE = 4
#: Accounts and sources remembered (names and addresses are attacker-chosen): least recently
#: failed forgotten first.
MAX_TRACKED = 10_000
#: Peers whose ``X-Forwarded-For`` is believed: the console listens on loopback behind its TLS
#: reverse proxy (docs/console.md), so only that proxy can be the peer.
LOOPBACK = frozenset({"127.0.0.1", "::1"})


def client_source(remote: str | None, forwarded_for: str | None, *, trusted: frozenset[str] = LOOPBACK) -> str:
    """The address to throttle: the peer's, or — when the peer is a trusted reverse proxy —
    the last address in ``X-Forwarded-For`` (the one the proxy appended; earlier ones are the
    client's word)."""
    peer = (remote or "unknown")[:64]
    if peer in trusted and forwarded_for:
        last = forwarded_for.split(",")[-1].strip()
        if last:
            return last[:64]
    return peer


def cookie_secure(configured: bool, *, scheme: str, forwarded_proto: str | None = None) -> bool:
    """Whether the session cookie gets ``Secure``: whenever the page is served over TLS — the
    request's own scheme, or the proxy's ``X-Forwarded-Proto`` — or the configuration says so.
    Believing the header is safe: it can only make the cookie stricter."""
    proto = (forwarded_proto or "").split(",")[0].strip().lower()
    return configured or scheme == "https" or proto == "https"


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0


class LoginThrottle:
    """Sign-in throttling that cannot be used against the users: growing delays per account and
    per source, never a lock.

    :meth:`check` waits, before checking the password, until ``delay(n)`` after the last
    failure of that account and of that source (``n`` failures: none for the first
    :data:`FREE_FAILURES`, then :data:`FIRST_DELAY_S` doubling, capped at
    :data:`ACCOUNT_DELAY_CAP_S` for the account and :data:`SOURCE_DELAY_CAP_S` for the source).
    Whoever hammers a name delays its owner by at most the account cap and then the right
    password signs in; the hammering source itself waits minutes per guess. A source with
    :data:`MAX_WAITING_PER_SOURCE` sign-ins already waiting gets the next one answered as failed
    at once (its own flood; nobody else's sign-in is touched).

    Failures are audited through a :class:`~portlane.edge.trust.rejections.RejectionAggregator`
    (kind ``sign_in_failed``: the first ones individually, a flood as one summary per name and
    minute — ``wall_clock``'s minutes, UNIX seconds) when ``audit`` is given; call :meth:`flush`
    on a tick and ``flush(force=True)`` at shutdown.
    """

    def __init__(
        self,
        *,
        audit: AuditSink | None = None,
        free_failures: int = FREE_FAILURES,
        first_delay_s: float = FIRST_DELAY_S,
        account_cap_s: float = ACCOUNT_DELAY_CAP_S,
        source_cap_s: float = SOURCE_DELAY_CAP_S,
        forget_after_s: float = FORGET_AFTER_S,
        max_waiting_per_source: int = MAX_WAITING_PER_SOURCE,
        max_tracked: int = MAX_TRACKED,
        trusted_proxies: frozenset[str] = LOOPBACK,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.free_failures = free_failures
        self.first_delay_s = first_delay_s
        self.account_cap_s = account_cap_s
        self.source_cap_s = source_cap_s
        self.forget_after_s = forget_after_s
        self.max_waiting_per_source = max_waiting_per_source
        self.max_tracked = max_tracked
        self.trusted_proxies = trusted_proxies
        self._clock = clock
        self._sleep = sleep
        self._accounts: OrderedDict[str, _Failures] = OrderedDict()
        self._sources: OrderedDict[str, _Failures] = OrderedDict()
        self._waiting: dict[str, int] = {}
        self.rejections = (
            None if audit is None else RejectionAggregator(audit, lane=None, kind="sign_in_failed", clock=wall_clock)
        )
        #: Totals since start, for the health page: failed sign-ins, delayed ones, refused floods.
        self.failures = 0
        self.delayed = 0
        self.flooded = 0

    # -- the sign-in -------------------------------------------------------------------------

    async def check(
        self,
        users: Mapping[str, User],
        name: str,
        password: str,
        *,
        remote: str | None,
        forwarded_for: str | None = None,
    ) -> User | None:
        """The user whose name and password these are, or None — after the delay this account
        and this source have earned (see the class docstring). Records and audits the outcome."""
        source = client_source(remote, forwarded_for, trusted=self.trusted_proxies)
        if self._waiting.get(source, 0) >= self.max_waiting_per_source:
            self.flooded += 1
            self._failed(name, source, "flood")
            return None
        self._waiting[source] = self._waiting.get(source, 0) + 1
        try:
            wait = self.delay(name, source)
            if wait > 0:
                self.delayed += 1
                await self._sleep(wait)
            user = await asyncio.to_thread(check_login, users, name, password)  # scrypt: ~50 ms of CPU
        finally:
            left = self._waiting[source] - 1
            if left:
                self._waiting[source] = left
            else:
                del self._waiting[source]
        if user is None:
            self._failed(name, source, "wrong_password" if name in users else "unknown_name")
        else:
            self._accounts.pop(name, None)
            self._sources.pop(source, None)
        return user

    def delay(self, name: str, source: str) -> float:
        """Seconds the next sign-in to ``name`` from ``source`` waits before its check."""
        now = self._clock()
        return max(
            self._wait(self._accounts.get(name[:64]), self.account_cap_s, now),
            self._wait(self._sources.get(source), self.source_cap_s, now),
        )

    def flush(self, *, force: bool = False) -> None:
        if self.rejections is not None:
            self.rejections.flush(force=force)

    # -- internals ---------------------------------------------------------------------------

    def _wait(self, f: _Failures | None, cap: float, now: float) -> float:
        if f is None or f.count <= self.free_failures or now - f.last > self.forget_after_s:
            return 0.0
        doublings: int = min(f.count - self.free_failures - 1, 32)
        step = min(cap, self.first_delay_s * float(2**doublings))
        return max(0.0, f.last + step - now)

    def _failed(self, name: str, source: str, reason: str) -> None:
        now = self._clock()
        self.failures += 1
        for table, key in ((self._accounts, name[:64]), (self._sources, source)):
            f = table.pop(key, None)
            if f is None or now - f.last > self.forget_after_s:
                f = _Failures()
            f.count += 1
            f.last = now
            table[key] = f  # most recently failed last
            while len(table) > self.max_tracked:
                table.popitem(last=False)
        if self.rejections is not None:
            count = self._accounts[name[:64]].count
            self.rejections.record(
                reason, key_id=name[:64], command="sign_in", detail=f"from {source}; {count} failures in a row"
            )
