"""The console's own configuration file (``/etc/portlane/console.yaml``), parsed once.

Everything about the site (lanes, agencies, broker, time zone) comes from the site file;
this file holds what only the console needs::

    http: {host: 127.0.0.1, port: 8080}     # loopback: TLS and outside access via nginx
    client_id: console                      # its clients[] entry in the site file (key, certificate)
    db: /var/lib/portlane/console.db
    users_file: /etc/portlane/console-users.yaml
    signing_key: {id: console-1, private_key_file: /etc/portlane/console.key}   # else the clients[] key
    stuck_after_s: {awaiting_decision: 180} # per stage; defaults in live.DEFAULT_STUCK_AFTER_S
    cookie_secure: false                    # true behind the TLS reverse proxy

The console believes only what the site file's unit keys signed (``portlane.edge.client``):
``require_signed_events`` and ``event_keys`` (issue 13) are gone, and a file that still has them
fails at start with one line saying what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from portlane.edge.contract.vocabulary import LOW_CONFIDENCE
from portlane.edge.errors import ConfigError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .picture import STAGE_RANK

__all__ = ["ConsoleConfig", "load_console_config"]

_ID = r"^[a-z0-9][a-z0-9_-]{0,31}$"
#: Keys of older console files that no longer exist, and what to do instead.
REMOVED = {
    "require_signed_events": "the console believes only signed units now; delete the key",
    "event_keys": "give each unit its key in the site file (lanes[].key, scanners[].key); delete the key",
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HttpConfig(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)


class SigningKeyConfig(_Frozen):
    id: str = Field(pattern=_ID)
    private_key_file: str = Field(description="file holding the Ed25519 seed, standard base64 (32 bytes)")

    def private_key_b64(self, base: Path) -> str:
        p = Path(self.private_key_file)
        p = p if p.is_absolute() else base / p
        return p.read_text(encoding="utf-8").strip()


class ConsoleConfig(_Frozen):
    http: HttpConfig = HttpConfig()
    client_id: str = Field("console", pattern=_ID, description="the console's clients[] entry in the site file")
    db: str = "/var/lib/portlane/console.db"
    users_file: str = "/etc/portlane/console-users.yaml"
    signing_key: SigningKeyConfig | None = None
    backfill: bool = Field(True, description="ask a unit first seen mid-stream for its retained earlier events")
    stuck_after_s: dict[str, float] = Field(default_factory=dict)
    low_confidence: float = Field(LOW_CONFIDENCE, ge=0, le=1)
    cookie_secure: bool = False

    @model_validator(mode="before")
    @classmethod
    def _removed(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, what in REMOVED.items():
                if key in data:
                    raise ValueError(f"{key}: removed in issue 23 — {what}")
        return data

    @model_validator(mode="after")
    def _stages(self) -> ConsoleConfig:
        unknown = set(self.stuck_after_s) - set(STAGE_RANK)
        if unknown:
            raise ValueError(f"stuck_after_s: unknown stages {sorted(unknown)} (known: {sorted(STAGE_RANK)})")
        return self


def load_console_config(path: str | Path | None) -> ConsoleConfig:
    """Read ``path`` (None: all defaults). Raises :class:`ConfigError` naming file, key, reason."""
    if path is None:
        return ConsoleConfig()
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(str(p), [("", f"cannot read: {exc.strerror or exc}")]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(str(p), [("", f"not valid YAML: {exc}")]) from exc
    try:
        return ConsoleConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(str(p), [(".".join(str(x) for x in e["loc"]), e["msg"]) for e in exc.errors()]) from None
