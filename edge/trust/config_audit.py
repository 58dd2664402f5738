"""What a configuration change changes, for the audit log and the key-change guard.

``config apply`` records the old and new file's sha256 and the key paths that differ, and
refuses a configuration that adds or alters a trusted key unless the technician says so
explicitly (``--allow-key-change``): adding a key is adding someone who may open barriers.
Removing a key (revocation) needs no flag.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portlane.edge.config import Site

__all__ = ["MAX_PATHS", "ConfigChange", "changed_paths", "config_change", "trust_changes"]

#: Paths listed in one audit entry; more are counted, not listed (an entry has 64 KiB).
MAX_PATHS = 200


def changed_paths(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted key paths (``lanes[2].devices.gate.unit``) where two parsed YAML documents differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            p = f"{prefix}.{k}" if prefix else str(k)
            if k not in old or k not in new:
                out.append(p)
            else:
                out += changed_paths(old[k], new[k], p)
        return out
    if isinstance(old, list) and isinstance(new, list):
        out = []
        for i in range(max(len(old), len(new))):
            p = f"{prefix}[{i}]"
            if i >= len(old) or i >= len(new):
                out.append(p)
            else:
                out += changed_paths(old[i], new[i], p)
        return out
    return [] if old == new else [prefix or "<root>"]


def _material(site: Site) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    for k in site.platform.keys:
        out[k.id] = ("platform", k.public_key.strip(), k.agencies, k.lanes, k.commands)
    for c in site.clients:
        if c.key is not None:
            out[c.key.id] = (c.role, c.id, c.key.public_key.strip(), c.commands, c.lanes)
    for lane in site.lanes:
        if lane.key is not None:
            out[lane.key.id] = ("lane", lane.id, lane.key.public_key.strip())
    for s in site.scanners:
        if s.key is not None:
            out[s.key.id] = ("scanner", s.id, s.key.public_key.strip(), s.lanes)
    return out


def trust_changes(old: Site, new: Site) -> list[str]:
    """Keys the new site trusts that the old did not, or trusts differently (public key,
    unit or authority). Removed keys are not listed: revoking needs no flag."""
    before, after = _material(old), _material(new)
    out = []
    for kid in sorted(after):
        if kid not in before:
            out.append(f"adds key {kid}")
        elif before[kid] != after[kid]:
            out.append(f"changes key {kid}")
    return out


@dataclass(frozen=True, slots=True)
class ConfigChange:
    old_sha256: str
    new_sha256: str
    changed: list[str] = field(default_factory=list)
    trust_changes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Audit ``data``: paths capped at :data:`MAX_PATHS` (``changed_total`` has the count)."""
        return {
            "old_sha256": self.old_sha256,
            "new_sha256": self.new_sha256,
            "changed": self.changed[:MAX_PATHS],
            "changed_total": len(self.changed),
            "trust_changes": self.trust_changes,
        }


def config_change(old_text: str, new_text: str, old_site: Site, new_site: Site) -> ConfigChange:
    """Hashes of both files, the changed paths (of the parsed models, so comments and
    formatting do not count; secrets are compared, never written) and the trust changes."""
    changed = changed_paths(old_site.model_dump(mode="json"), new_site.model_dump(mode="json"))

    def secret(site: Site) -> str | None:
        return site.broker.password.get_secret_value() if site.broker.password else None

    if secret(old_site) != secret(new_site) and "broker.password" not in changed:
        changed.append("broker.password")  # the dump masks secrets; compare them, write only the path
    return ConfigChange(
        hashlib.sha256(old_text.encode("utf-8")).hexdigest(),
        hashlib.sha256(new_text.encode("utf-8")).hexdigest(),
        changed,
        trust_changes(old_site, new_site),
    )
