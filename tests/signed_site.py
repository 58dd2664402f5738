"""A site whose units sign, for consumer tests: envelopes and statuses signed with the units'
own keys exactly as a daemon's outbox signs them (``trust.events.EventSigner``), and a consumer
client (``consumer``, role console) whose key may sign ``replay_events``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from portlane.edge.config import Site, parse_site
from portlane.edge.contract.times import rfc3339
from portlane.edge.trust.events import EventSigner
from portlane.edge.trust.keys import generate_keypair, load_unit_signer

from tests.virtual_lane import SITE_ID, site_dict

PREFIX = f"portlane/v1/{SITE_ID}"
CONSUMER = "consumer"
#: The stream epoch of the units here (ms since 1970 when their outbox was born).
EPOCH = 1_790_000_000_000


def consumer_client(key_dir: Path, *, unit: str = CONSUMER) -> dict[str, Any]:
    """A ``clients:`` entry with a key that may sign ``replay_events`` (private key in key_dir)."""
    private, public = generate_keypair()
    path = key_dir / f"{unit}.key"
    path.write_text(private + "\n")
    path.chmod(0o600)
    return {
        "id": unit,
        "role": "console",
        "commands": ["replay_events"],
        "key": {"id": f"{unit}-key", "public_key": public, "private_key_file": str(path)},
    }


class SignedSite:
    def __init__(self, key_dir: Path, *, lanes: tuple[str, ...] = ("c1", "c2"), url: str = "mqtt://127.0.0.1:1883"):
        self.raw = site_dict(lanes, url=url, key_dir=key_dir, clients=[consumer_client(key_dir)])
        self.site: Site = parse_site(self.raw)
        self.signers: dict[str, EventSigner] = {}
        for unit in [*self.site.lanes, *self.site.scanners]:
            assert unit.key is not None
            self.signers[unit.id] = load_unit_signer(unit.key, unit=unit.id)

    def envelope(
        self,
        unit: str,
        type_: str,
        data: dict[str, Any],
        *,
        seq: int,
        epoch: int = EPOCH,
        signer: str | None = None,
    ) -> dict[str, Any]:
        env = {
            "specversion": "1.0",
            "id": f"{SITE_ID}/{unit}/{epoch}/{seq}",
            "source": f"portlane://{SITE_ID}/{unit}",
            "type": f"portlane.{type_}",
            "time": rfc3339(1_790_000_000 + seq),
            "subject": data.get("passage_id"),
            "datacontenttype": "application/json",
            "seq": seq,
            "epoch": epoch,
            "data": data,
        }
        return self.signers[signer or unit].sign(env)

    def event(self, unit: str, seq: int, *, epoch: int = EPOCH, device: str = "gate") -> tuple[str, bytes]:
        """A signed ``device.state`` of ``unit`` as (topic, payload)."""
        env = self.envelope(unit, "device.state", {"device": device, "health": "online"}, seq=seq, epoch=epoch)
        return f"{PREFIX}/{unit}/event/device.state", json.dumps(env).encode()

    def status(
        self,
        unit: str,
        *,
        seq: int,
        last_seq: int | None = None,
        state: str = "online",
        in_service: bool = True,
        epoch: int = EPOCH,
    ) -> tuple[str, bytes]:
        """A signed ``unit.status`` envelope as the retained status message (topic, payload)."""
        data = {
            "state": state,
            "unit": unit,
            "kind": "scanner" if unit.startswith("xray") else "lane",
            "version": "test",
            "in_service": in_service,
            "stage": None,
            "last_seq": seq - 1 if last_seq is None else last_seq,
            "epoch": epoch,
            "since": rfc3339(1_790_000_000),
        }
        env = self.envelope(unit, "unit.status", data, seq=seq, epoch=epoch)
        return f"{PREFIX}/{unit}/status", json.dumps(env).encode()
