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
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from .errors import ConfigError

__all__ = [
    "REDACTED",
    "Agency",
    "BrokerConfig",
    "BrokerTLS",
    "CameraConfig",
    "CameraRole",
    "ClientConfig",
    "LaneConfig",
    "LaneDevices",
    "OutboxConfig",
    "OutboxRetention",
    "PlatformConfig",
    "ScannerConfig",
    "Site",
    "TrustedKey",
    "UnitKey",
    "load_site",
    "parse_site",
    "redact",
    "redact_text",
    "redact_yaml",
]

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
#: Command names in key authorities (checked against the command set by the verifier).
COMMAND_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
#: Unit id reserved for the platform's topics (portlane/v1/{site}/platform/expected).
PLATFORM_UNIT = "platform"


#: MQTT protocol versions a unit may speak: "auto" tries 5 and falls back to 3.1.1.
MqttProtocol = Literal["auto", "3.1.1", "5"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Agency(enum.StrEnum):
    CUSTOMS = "customs"
    BORDER = "border"
    QUARANTINE = "quarantine"
    MARITIME = "maritime"
    TRANSPORT = "transport"


_CREDENTIAL_HELP = (
    "a file: an absolute path, or a name looked up in $CREDENTIALS_DIRECTORY (systemd LoadCredential=); "
    "'{unit}' is replaced by the unit id of the daemon (lane, scanner or client id)"
)


class BrokerTLS(_Frozen):
    """Files for ``mqtts://``. Client certificate and key go together; without them the
    broker authenticates only itself (then ``password_file`` names the client)."""

    ca_file: str | None = Field(None, description="CA that signed the broker's certificate; " + _CREDENTIAL_HELP)
    cert_file: str | None = Field(None, description="this unit's client certificate (PEM); " + _CREDENTIAL_HELP)
    key_file: str | None = Field(None, description="this unit's client private key (PEM); " + _CREDENTIAL_HELP)

    @model_validator(mode="after")
    def _pair(self) -> BrokerTLS:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class BrokerConfig(_Frozen):
    url: str = Field("mqtt://127.0.0.1:1883", pattern=r"^mqtts?://[^/:]+(:\d+)?/?$")
    protocol: MqttProtocol = "auto"
    username: str | None = None
    password: SecretStr | None = Field(
        None, description="deprecated: a password in clear in the site file; use password_file"
    )
    password_file: str | None = Field(None, description="file holding the broker password; " + _CREDENTIAL_HELP)
    tls: BrokerTLS | None = None
    keepalive_s: int = Field(15, ge=5, le=600)
    max_packet_size: int = Field(
        1024 * 1024,
        ge=4096,
        le=256 * 1024 * 1024,
        description="largest MQTT packet this unit accepts (and the shipped broker config allows), bytes",
    )

    @model_validator(mode="after")
    def _credentials(self) -> BrokerConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password_file or password, not both (password_file: the password is not in YAML)")
        if self.tls is not None and not self.url.startswith("mqtts://"):
            raise ValueError("tls needs an mqtts:// url")
        return self


def _check_public_key(v: str) -> str:
    import base64
    import binascii

    try:
        raw = base64.b64decode(v.strip().encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError("public_key must be standard base64") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this one is {len(raw)}")
    return v


class TrustedKey(_Frozen):
    """A key the platform signs commands with, and what it may sign. Omitted ``agencies``,
    ``lanes`` or ``commands`` mean *any* (what a key could do before authorities existed):
    list them, so one leaked key cannot speak for every agency."""

    id: str = Field(pattern=ID_PATTERN)
    public_key: str = Field(description="Ed25519 public key, 32 bytes, base64")
    agencies: tuple[Agency, ...] | None = Field(
        None,
        description="agencies whose verdicts (decision/release/hold/divert), pre-decisions and revokes this key "
        "may sign; omitted = any",
    )
    lanes: tuple[str, ...] | None = Field(
        None, description="lane/scanner ids this key may command; omitted = every unit of the site"
    )
    commands: tuple[str, ...] | None = Field(None, description="commands this key may sign; omitted = any")

    @field_validator("public_key")
    @classmethod
    def _public_key(cls, v: str) -> str:
        return _check_public_key(v)

    @field_validator("commands")
    @classmethod
    def _command_names(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for name in v or ():
            if not re.fullmatch(COMMAND_PATTERN, name):
                raise ValueError(f"{name!r} is not a command name")
        return v


class UnitKey(_Frozen):
    """A unit's own signing key: the public half here, the private half in a file."""

    id: str = Field(pattern=ID_PATTERN)
    public_key: str = Field(description="Ed25519 public key, 32 bytes, base64")
    private_key_file: str = Field(
        "signing.key", description="the unit's private key (read by that unit only); " + _CREDENTIAL_HELP
    )

    @field_validator("public_key")
    @classmethod
    def _public_key(cls, v: str) -> str:
        return _check_public_key(v)


class ClientConfig(_Frozen):
    """A broker client that is neither a lane nor a scanner: the platform's connection, the
    console, a technician's tool. Gets a client certificate and its ACL; with ``key``, may sign
    the ``commands`` listed (to the ``lanes`` listed, default every unit)."""

    id: str = Field(pattern=ID_PATTERN)
    role: Literal["platform", "console", "technician"]
    key: UnitKey | None = None
    commands: tuple[str, ...] = ()
    lanes: tuple[str, ...] | None = None


class PlatformConfig(_Frozen):
    keys: tuple[TrustedKey, ...] = ()
    unreachable_policy: Literal["hold"] = Field(
        "hold", description="what a lane does without a decision: hold (the only safe policy today)"
    )
    decision_timeout_s: float = Field(120.0, gt=0)
    max_clock_skew_s: float = Field(5.0, ge=0)
    max_validity_s: float = Field(
        300.0, gt=0, le=86400, description="longest expires_at - issued_at a command may have (skew comes on top)"
    )


#: What a lane camera looks at: licence plates (front and rear cameras) or container numbers
#: (rear, side and top cameras). Its frames go to the matching recognition.
CameraRole = Literal["plate", "container"]


class CameraConfig(DeviceConfig):
    """A lane camera: a device like the others, and what it looks at."""

    role: CameraRole = Field(description="plate (front/rear plate cameras) or container (rear, side, top cameras)")


class LaneDevices(_Frozen):
    gate: DeviceConfig
    io: DeviceConfig
    board: DeviceConfig | None = None
    rfid: DeviceConfig | None = None
    weighbridge: DeviceConfig | None = None
    cameras: dict[str, CameraConfig] = Field(default_factory=dict)
    # issue 21: cargo-lane devices (optional; the lane wires them in phase 2)
    rpm: DeviceConfig | None = Field(
        None, description="radiation portal monitor on the approach (backend rapiscan: TCP line stream)"
    )
    seal_reader: DeviceConfig | None = Field(
        None, description="e-seal / e-lock reader at the stop line (backend serial: framed, polled)"
    )

    @model_validator(mode="before")
    @classmethod
    def _camera_roles_of_older_files(cls, data: Any) -> Any:
        """Site files written before ``role`` existed said what a camera looks at only in its
        name, and the lane guessed from that: a camera without ``role`` is a ``container``
        camera when its name contains "container", else a ``plate`` camera. Only the default
        for those files — a camera's role is its ``role``, whatever it is called."""
        if not isinstance(data, dict) or not isinstance(data.get("cameras"), dict):
            return data
        cameras = {
            name: {"role": "container" if "container" in str(name) else "plate", **cam}
            if isinstance(cam, dict) and "role" not in cam
            else cam
            for name, cam in data["cameras"].items()
        }
        return {**data, "cameras": cameras}


class LaneConfig(_Frozen):
    id: str = Field(pattern=ID_PATTERN)
    kind: Literal["cargo", "passenger"]
    agencies: tuple[Agency, ...] = Field(min_length=1)
    scanner: str | None = None
    devices: LaneDevices
    key: UnitKey | None = Field(None, description="the lane's signing key (events, inspection requests)")


class ScannerConfig(_Frozen):
    id: str = Field(pattern=ID_PATTERN)
    device: DeviceConfig
    lanes: tuple[str, ...] = Field(min_length=1)
    scan_timeout_s: float = Field(90.0, gt=0, description="longest a scan may take before it is a fault")
    fault_policy: Literal["wait", "divert"] = "divert"
    fault_wait_s: float = Field(300.0, gt=0, description="deadline for 'wait' before diverting")
    key: UnitKey | None = Field(None, description="the scanner's signing key (scan events)")


class OutboxRetention(_Frozen):
    """How long delivered events stay in a unit's outbox so that they can be replayed (a broker
    that crashed may lose events it had acknowledged). Bounded by age and by size; the bound
    evicts the oldest delivered events first and never an undelivered one."""

    max_age_s: float = Field(72 * 3600.0, ge=0, description="delivered events older than this are evicted")
    max_mb: float = Field(256.0, ge=0, description="payload bytes of delivered events kept, in MiB")


class OutboxConfig(_Frozen):
    """The durable outbox of every unit (lane or scanner) of the site: ``outbox:`` in the site file."""

    capacity: int = Field(
        1_000_000, ge=1, description="undelivered events kept; 75,000 is a busy lane's day (5,000 vehicles x 15)"
    )
    overflow: Literal["reject_new", "drop_oldest"] = Field(
        "reject_new",
        description="when full: refuse the new event (the lane takes itself out of service) or drop the oldest",
    )
    retention: OutboxRetention = OutboxRetention()
    commit_batch_max: int = Field(
        1000, ge=1, le=100_000, description="most events committed in one transaction (group commit)"
    )


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
    clients: tuple[ClientConfig, ...] = ()
    state_dir: str = "/var/lib/portlane"
    outbox: OutboxConfig = OutboxConfig()

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
        self._trust_checks()
        return self

    def _trust_checks(self) -> None:
        units = [lane.id for lane in self.lanes] + [s.id for s in self.scanners]
        everyone = units + [c.id for c in self.clients]
        dup = {x for x in everyone if everyone.count(x) > 1}
        if dup:
            raise ValueError(f"lanes, scanners and clients share ids: {', '.join(sorted(dup))}")
        if PLATFORM_UNIT in units:
            raise ValueError(f"{PLATFORM_UNIT!r} is reserved for the platform's topics; not a lane or scanner id")
        key_ids = [k.id for k in self.platform.keys] + [k.id for _, k in self.unit_keys()]
        dup = {x for x in key_ids if key_ids.count(x) > 1}
        if dup:
            raise ValueError(f"key ids listed twice: {', '.join(sorted(dup))}")
        for i, k in enumerate(self.platform.keys):
            extra = set(k.agencies or ()) - set(self.agencies)
            if extra:
                raise ValueError(f"platform.keys[{i}] ({k.id}): agencies {sorted(extra)} are not agencies of the site")
            unknown = set(k.lanes or ()) - set(units)
            if unknown:
                raise ValueError(f"platform.keys[{i}] ({k.id}): unknown lanes/scanners {sorted(unknown)}")
        for c in self.clients:
            unknown = set(c.lanes or ()) - set(units)
            if unknown:
                raise ValueError(f"client {c.id}: unknown lanes/scanners {sorted(unknown)}")
            if c.commands and c.key is None:
                raise ValueError(f"client {c.id}: lists commands but has no key to sign them with")

    def unit_keys(self) -> list[tuple[str, UnitKey]]:
        """``(unit id, key)`` of every lane, scanner and client that has a signing key."""
        out: list[tuple[str, UnitKey]] = []
        for lane in self.lanes:
            if lane.key is not None:
                out.append((lane.id, lane.key))
        for s in self.scanners:
            if s.key is not None:
                out.append((s.id, s.key))
        for c in self.clients:
            if c.key is not None:
                out.append((c.id, c.key))
        return out

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
