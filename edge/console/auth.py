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
memory (a restart signs everybody out) and expire after :data:`SESSION_TTL_S`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from portlane.edge.config import Agency
from portlane.edge.errors import UsersFileError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = ["LoginThrottle", "Sessions", "User", "hash_password", "load_users", "save_users", "verify_password"]

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


class LoginThrottle:
    """At most ``attempts`` failed sign-ins per name per ``window_s``: enough for typos,
    too few for guessing (scrypt already makes each guess cost ~50 ms)."""

    def __init__(self, *, attempts: int = 5, window_s: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self.attempts = attempts
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def blocked(self, name: str) -> bool:
        q = self._failures.get(name)
        if not q:
            return False
        now = self._clock()
        while q and q[0] < now - self.window_s:
            q.popleft()
        return len(q) >= self.attempts

    def failed(self, name: str) -> None:
        self._failures.setdefault(name, deque()).append(self._clock())
        if len(self._failures) > 10_000:  # names are attacker-chosen: bound the memory
            self._failures.clear()

    def succeeded(self, name: str) -> None:
        self._failures.pop(name, None)
