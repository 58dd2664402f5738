"""``portlane demo --secure``: the simulated port on the shipped secure broker configuration.

A temporary PKI (``portlane.edge.trust.pki.init_pki``) for every unit of the demo site plus an
``observer`` console client, the shipped Mosquitto configuration with that PKI and the ACL
rendered from the site, and a site mapping whose broker section points every unit at its own
certificate (``{unit}`` in the file names) and whose units carry their issued signing keys.

Least privilege as on a site: the CA's private key is never written (every certificate is
issued at once; nothing is issued later), each unit's files are in its own directory, the
console has its own certificate and ACL (``clients`` of the site file), and Mosquitto drops to
its own user (``MosquittoBroker``).
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portlane.edge.config import parse_site
from portlane.edge.demo.broker import MosquittoBroker
from portlane.edge.demo.observer import OBSERVER
from portlane.edge.trust.pki import apply_unit_keys, init_pki

__all__ = ["SecureDemo", "secure_demo"]


@dataclass
class SecureDemo:
    raw: dict[str, Any]  # the site mapping to run, broker and keys filled in
    broker: MosquittoBroker
    directory: Path

    async def close(self) -> None:
        await self.broker.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def secure_demo(raw: dict[str, Any]) -> SecureDemo:
    """Issue a PKI for the units of ``raw`` and configure (not start) a secure Mosquitto."""
    if not MosquittoBroker.available():
        raise RuntimeError("--secure needs the mosquitto binary (apt-get install mosquitto)")
    raw = copy.deepcopy(raw)
    clients = list(raw.get("clients", []) or [])
    if not any(c["role"] == "platform" for c in clients):
        clients.append({"id": "platform", "role": "platform"})
    if not any(c["id"] == OBSERVER for c in clients):
        # a console client (reads everything); it may sign replay_events once it has its key
        # (``demo.run.with_demo_clients``)
        clients.append({"id": OBSERVER, "role": "console"})
    raw["clients"] = clients
    directory = Path(tempfile.mkdtemp(prefix="portlane-demo-pki-"))
    issued = init_pki(parse_site(raw, file="<demo>"), directory, ca_dir=None)
    raw = apply_unit_keys(raw, issued)
    broker = MosquittoBroker(secure=directory / "broker")
    units = directory / "units"
    raw["broker"] = {
        "url": broker.url,
        "protocol": "5",
        "tls": {
            "ca_file": str(units / "{unit}" / "ca.crt"),
            "cert_file": str(units / "{unit}" / "client.crt"),
            "key_file": str(units / "{unit}" / "client.key"),
        },
        "max_packet_size": raw.get("broker", {}).get("max_packet_size", 1024 * 1024),
    }
    return SecureDemo(raw, broker, directory)
