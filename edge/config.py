"""Site configuration: parsed once, at the boundary, into frozen pydantic models.

Unknown keys are rejected; cross-field rules are checked in one place
(``Site._cross_checks``); errors name the file, the key path and the reason.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any, Literal

import yaml
from portlane.drivers.config import DeviceConfig
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from .errors import ConfigError

__all__ = [
    "Agency",
    "BrokerConfig",
    "LaneConfig",
    "LaneDevices",
    "OutboxConfig",
    "OutboxRetention",
    "PlatformConfig",
    "ScannerConfig",
    "Site",
    "TrustedKey",
    "load_site",
    "parse_site",
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
