"""``portlane demo`` options, checked in one place, and the demo's errors.

``DemoOptions.validated()`` turns every bad option into a ``UsageError`` whose message is
one line naming the option, the value and what is allowed; ``load_demo_site`` reads the site
file (a ``ConfigError`` names the file, the key and the reason). The CLI prints either as one
line and exits with the error's ``exit_code``.

To add an option (``--console``, ``--secure`` …): a field here (with its check in
``validated`` if it has constraints), a flag in ``edge/cli/demo.py`` and its line in
``options_from_args``; ``run_demo`` reads the field.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from portlane.edge.errors import ConfigError, UsageError

__all__ = [
    "DEFAULT_SITE",
    "MAX_LANES",
    "DemoOptions",
    "load_demo_site",
]

#: Site files ship as package data of ``portlane.firmware_config`` (a regular package).
SITES_DIR = Path(str(importlib.resources.files("portlane.firmware_config"))) / "sites"
DEFAULT_SITE = SITES_DIR / "zhuhai-hzmb-cargo.yaml"
#: Lanes a generated demo site can have: one 10.20.<n>.0/24 controller subnet per lane.
MAX_LANES = 200

#: Up to this many lanes (the size of the shipped site) the demo simulates every camera.
CAMERA_LANES = 6


@dataclass(frozen=True)
class DemoOptions:
    lanes: int = 4
    vehicles: int = 40
    seed: int = 7
    broker: str | None = None
    time_factor: float = 0.1
    inspect_ratio: float = 0.25
    inject_forged: int = 0
    site_file: Path = DEFAULT_SITE
    live: bool = True
    timeout_s: float = 600.0
    recognition: bool = False
    #: Simulate the lanes' cameras. ``None``: with --ocr (recognition reads them), and for up
    #: to CAMERA_LANES lanes (the site as configured). Beyond that, without --ocr, nothing would
    #: read their frames, and rendering and decoding 10 frames/s for 50+ cameras would take
    #: the CPU the lanes need; the lanes identify vehicles by their e-cards.
    cameras: bool | None = None
    secure: bool = False  # shipped Mosquitto config: TLS, client certificates, ACL (edge/demo/secure.py)
    console: tuple[str, int] | None = None  # serve the site console here (edge/console)
    console_db: Path | None = None  # keep the console's database here
    images: Path | None = None  # real photographs for the vehicles (labels.csv), read with --ocr

    @property
    def with_cameras(self) -> bool:
        return self.cameras if self.cameras is not None else (self.recognition or self.lanes <= CAMERA_LANES)

    def validated(self) -> DemoOptions:
        """Return self, or raise ``UsageError`` naming the first bad option."""
        if not 1 <= self.lanes <= MAX_LANES:
            raise UsageError(f"--lanes {self.lanes}: a demo has 1 to {MAX_LANES} lanes")
        if self.vehicles < 1:
            raise UsageError(f"--vehicles {self.vehicles}: a demo needs at least one vehicle")
        if not self.time_factor > 0:
            raise UsageError(f"--time-factor {self.time_factor}: must be > 0 (1.0 = real time)")
        if not 0.0 <= self.inspect_ratio <= 1.0:
            raise UsageError(f"--inspect-ratio {self.inspect_ratio}: a share, from 0 to 1")
        if self.inject_forged < 0:
            raise UsageError(f"--inject-forged {self.inject_forged}: cannot be negative")
        if not self.timeout_s > 0:
            raise UsageError(f"--timeout {self.timeout_s}: must be > 0 seconds")
        if self.broker is not None:
            check_broker_url(self.broker)
        if self.secure and self.broker is not None:
            raise UsageError("--secure starts its own Mosquitto: leave out --broker")
        if self.images is not None and not self.recognition:
            raise UsageError(f"--images {self.images}: photographs are read by the OCR; add --ocr")
        if self.images is not None and not (self.images / "labels.csv").is_file():
            raise UsageError(f"--images {self.images}: no labels.csv there (file,text,kind per photo)")
        return self

    def replace(self, **changes: Any) -> DemoOptions:
        return dataclasses.replace(self, **changes)


def check_broker_url(url: str) -> tuple[str, int]:
    """(host, port) of an ``mqtt://HOST[:PORT]`` URL, or ``UsageError`` saying what is wrong."""
    hint = "expected mqtt://HOST:PORT, e.g. mqtt://127.0.0.1:1883"
    try:
        u = urllib.parse.urlsplit(url)
        port = u.port
    except ValueError as exc:
        raise UsageError(f"--broker {url}: {exc}; {hint}") from None
    if u.scheme == "mqtts":
        raise UsageError(f"--broker {url}: the demo speaks plain MQTT on a local network; {hint}")
    if u.scheme != "mqtt" or not u.hostname:
        raise UsageError(f"--broker {url}: not an MQTT URL; {hint}")
    if u.path not in ("", "/") or u.query or u.fragment:
        raise UsageError(f"--broker {url}: no path or query allowed; {hint}")
    return u.hostname, port or 1883


def load_demo_site(path: Path) -> dict[str, Any]:
    """The site file as a dict, validated by the site schema (``ConfigError`` otherwise) and
    with what the demo needs: at least one lane."""
    from portlane.edge.config import parse_site

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [("", f"cannot read: {exc.strerror or exc}")]) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(str(path), [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from exc
    if not isinstance(raw, dict):
        raise ConfigError(str(path), [("", "top level must be a mapping")])
    parse_site(raw, file=str(path))  # the whole schema, before any lane is cloned
    result: dict[str, Any] = raw
    return result
