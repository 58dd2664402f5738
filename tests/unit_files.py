"""Reading systemd unit files (shared by the unit-file tests of ops and console)."""

from __future__ import annotations

import re
from pathlib import Path

SYSTEMD = Path(__file__).resolve().parents[1] / "systemd"
SERVICES = ("portlane-lane@.service", "portlane-scanner@.service", "portlane-recognition.service")
BINARY = "/opt/portlane/venv/bin/portlane"


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections → [(key, value)] in order; keys may repeat, as systemd allows."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if m := re.fullmatch(r"\[(\w+)\]", line):
            current = sections.setdefault(m.group(1), [])
            continue
        assert current is not None, f"{path.name}: key outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not key=value: {line}"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def one(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}: {found}"
    return found[0]
