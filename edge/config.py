"""Site configuration: parsed once, at the boundary, into frozen pydantic models.

Unknown keys are rejected; cross-field rules are checked in one place
(``Site._cross_checks``); errors name the file, the key path and the reason.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from portlane.drivers.config import DeviceConfig
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from .errors import ConfigError

__all__ = [
    "REDACTED",
    "Agency",
    "BrokerConfig",
    "LaneConfig",
    "LaneDevices",
    "PlatformConfig",
    "ScannerConfig",
    "Site",
    "TrustedKey",
    "load_site",
    "parse_site",
    "redact",
    "redact_text",
    "redact_yaml",
]

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Agency(enum.StrEnum):
    CUSTOMS = "customs"
    BORDER = "border"
    QUARANTINE = "quarantine"
    MARITIME = "maritime"
    TRANSPORT = "transport"


class BrokerConfig(_Frozen):
    url: str = Field("mqtt://127.0.0.1:1883", pattern=r"^mqtts?://[^/:]+(:\d+)?/?$")
    protocol: Literal["auto", "3.1.1", "5"] = "auto"
    username: str | None = None
    password: SecretStr | None = None
    keepalive_s: int = Field(15, ge=5, le=600)


class TrustedKey(_Frozen):
    id: str = Field(pattern=ID_PATTERN)
    public_key: str = Field(description="Ed25519 public key, 32 bytes, base64")


class PlatformConfig(_Frozen):
    keys: tuple[TrustedKey, ...] = ()
    unreachable_policy: Literal["hold"] = Field(
        "hold", description="what a lane does without a decision: hold (the only safe policy today)"
    )
    decision_timeout_s: float = Field(120.0, gt=0)
    max_clock_skew_s: float = Field(5.0, ge=0)


class LaneDevices(_Frozen):
    gate: DeviceConfig
    io: DeviceConfig
    board: DeviceConfig | None = None
    rfid: DeviceConfig | None = None
    weighbridge: DeviceConfig | None = None
    cameras: dict[str, DeviceConfig] = Field(default_factory=dict)


class LaneConfig(_Frozen):
    id: str = Field(pattern=ID_PATTERN)
    kind: Literal["cargo", "passenger"]
    agencies: tuple[Agency, ...] = Field(min_length=1)
    scanner: str | None = None
    devices: LaneDevices


class ScannerConfig(_Frozen):
    id: str = Field(pattern=ID_PATTERN)
    device: DeviceConfig
    lanes: tuple[str, ...] = Field(min_length=1)
    scan_timeout_s: float = Field(90.0, gt=0, description="longest a scan may take before it is a fault")
    fault_policy: Literal["wait", "divert"] = "divert"
    fault_wait_s: float = Field(300.0, gt=0, description="deadline for 'wait' before diverting")


class SiteInfo(_Frozen):
    id: str = Field(pattern=ID_PATTERN)
    name: str
    timezone: str = "Asia/Shanghai"


class Site(_Frozen):
    site: SiteInfo
    broker: BrokerConfig = BrokerConfig()
    platform: PlatformConfig = PlatformConfig()
    agencies: tuple[Agency, ...] = Field(min_length=1)
    lanes: tuple[LaneConfig, ...] = Field(min_length=1)
    scanners: tuple[ScannerConfig, ...] = ()
    state_dir: str = "/var/lib/portlane"

    @model_validator(mode="after")
    def _cross_checks(self) -> Site:
        lane_ids = [lane.id for lane in self.lanes]
        dup = {x for x in lane_ids if lane_ids.count(x) > 1}
        if dup:
            raise ValueError(f"duplicate lane ids: {', '.join(sorted(dup))}")
        scanners = {s.id: s for s in self.scanners}
        for lane in self.lanes:
            extra = set(lane.agencies) - set(self.agencies)
            if extra:
                raise ValueError(f"lane {lane.id}: agencies {sorted(extra)} are not agencies of the site")
            if lane.scanner is not None:
                if lane.scanner not in scanners:
                    raise ValueError(f"lane {lane.id}: unknown scanner {lane.scanner!r}")
                if lane.id not in scanners[lane.scanner].lanes:
                    raise ValueError(f"lane {lane.id}: scanner {lane.scanner!r} does not list this lane")
        for s in self.scanners:
            unknown = set(s.lanes) - set(lane_ids)
            if unknown:
                raise ValueError(f"scanner {s.id}: unknown lanes {sorted(unknown)}")
        return self

    def lane(self, lane_id: str) -> LaneConfig:
        for lane in self.lanes:
            if lane.id == lane_id:
                return lane
        raise KeyError(lane_id)

    def scanner(self, scanner_id: str) -> ScannerConfig:
        for s in self.scanners:
            if s.id == scanner_id:
                return s
        raise KeyError(scanner_id)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def parse_site(data: Any, *, file: str = "<memory>") -> Site:
    try:
        return Site.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            # Drop the union-member tags pydantic inserts (e.g. 'serial') from the path.
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in ("serial", "tcp", "camera")))
            problems.append((_loc(loc), err["msg"]))
        raise ConfigError(file, problems) from None


def load_site(path: str | Path) -> Site:
    """Read and validate a site YAML file. Raises ConfigError naming file, key and reason."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [("", f"cannot read: {exc.strerror or exc}")]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(str(p), [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from exc
    if not isinstance(data, dict):
        raise ConfigError(str(p), [("", "top level must be a mapping")])
    return parse_site(data, file=str(p))


# --------------------------------------------------------------------------- secrets out of sight
# The one home of secret redaction: configuration shown by `config diff`, packed by `diag
# bundle`, and free text (logs) that may quote it. Keys named like a password, token or
# private key; credentials inside URLs; PEM private keys anywhere. Public keys are not secrets.

REDACTED = "<redacted>"
#: A secret's name: the word ends there (``password_file``, ``client_secret``, ``accessToken``),
#: so that ``passage_id`` or ``passenger`` are not taken for passwords.
_SECRET_WORDS = r"(?:pass(?:word|wd|phrase)?|secrets?|tokens?|private[_-]?key|api[_-]?key|credentials?)(?![a-z0-9])"
_SECRET_KEY = re.compile(rf"(?i){_SECRET_WORDS}")
#: ``password: xxx`` at the start of a line: the rest of the line is the value.
_SECRET_LINE = re.compile(rf"(?im)^(\s*[\w.-]*{_SECRET_WORDS}[\w.-]*\s*[:=]\s*)(?!\s*$)(?!<redacted>).+$")
#: ``password=xxx`` / ``"token": "xxx"`` / ``{password: xxx}`` inside a line: one value.
_SECRET_INLINE = re.compile(
    rf"(?i)([\w.-]*{_SECRET_WORDS}[\w.-]*[\"']?\s*[:=]\s*)(?!<redacted>)(\"[^\"]*\"|'[^']*'|[^\s,;&}}\]]+)"
)
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S)
_URL_CRED = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@")


def redact(obj: object) -> object:
    """A copy of parsed configuration (or any JSON-like value) with secret values replaced."""
    if isinstance(obj, dict):
        return {
            k: (
                REDACTED
                if isinstance(k, str) and _SECRET_KEY.search(k) and v is not None and not isinstance(v, (dict, list))
                else redact(v)
            )
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


def redact_text(text: str) -> str:
    """Redact free text (logs, unparseable YAML): PEM private keys, URL credentials, and
    ``password: xxx`` / ``token=xxx`` style assignments."""
    text = _PEM.sub("-----BEGIN PRIVATE KEY-----" + REDACTED + "-----END PRIVATE KEY-----", text)
    text = _URL_CRED.sub(r"\1" + REDACTED + "@", text)
    text = _SECRET_LINE.sub(r"\1" + REDACTED, text)
    return _SECRET_INLINE.sub(r"\1" + REDACTED, text)


def redact_yaml(text: str) -> str:
    """YAML text with its secrets redacted, re-emitted in its key order (free text if unparseable)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return redact_text(text)
    return yaml.safe_dump(redact(data), sort_keys=False, allow_unicode=True)
