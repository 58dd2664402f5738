"""The consumer core's cost per message: how many signed events a ``SiteConsumer`` verifies,
de-duplicates and types per second, on one core, with the load average beside the figure.

    python bench/client_bench.py [--events 10000]

Three passes over the same messages (signed ``device.state`` envelopes of two lanes, as their
outboxes sign them): first sight (verify, ledger, contract model), duplicates (a redelivery is
verified again before it is believed a duplicate), and the same messages with the signature
field renamed (unsigned: refused before any cryptography). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from portlane.edge.client import SiteConsumer
from portlane.edge.contract.times import rfc3339
from portlane.edge.trust.authority import Authority, KeyGrant, Role
from portlane.edge.trust.events import EventSigner

SITE = "bench-site"


def messages(n: int) -> tuple[SiteConsumer, list[tuple[str, bytes]]]:
    grants, out = [], []
    for lane in ("c1", "c2"):
        key = Ed25519PrivateKey.generate()
        grants.append(KeyGrant(f"{lane}-key", key.public_key(), Role.LANE, lane))
        signer = EventSigner(f"{lane}-key", key)
        for seq in range(1, n // 2 + 1):
            env = {
                "specversion": "1.0",
                "id": f"{SITE}/{lane}/1/{seq}",
                "source": f"portlane://{SITE}/{lane}",
                "type": "portlane.device.state",
                "time": rfc3339(1_790_000_000 + seq),
                "seq": seq,
                "epoch": 1,
                "data": {"device": "gate", "health": "online"},
            }
            out.append((f"portlane/v1/{SITE}/{lane}/event/device.state", json.dumps(signer.sign(env)).encode()))
    authority = Authority(grants, site=SITE, scanner_lanes={})
    consumer = SiteConsumer(site_id=SITE, authority=authority, units=["c1", "c2"], replayable=["c1", "c2"])
    return consumer, out


def rate(consumer: SiteConsumer, msgs: list[tuple[str, bytes]]) -> float:
    t0 = time.perf_counter()
    for topic, payload in msgs:
        consumer.receive(topic, payload, now=0.0)
    return len(msgs) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--events", type=int, default=10_000)
    args = ap.parse_args()
    consumer, msgs = messages(args.events)
    load_before = os.getloadavg()[0]
    new = rate(consumer, msgs)
    dup = rate(consumer, msgs)
    unsigned = rate(consumer, [(t, p.replace(b'"sig"', b'"sog"')) for t, p in msgs])
    assert consumer.stats.events == len(msgs) and consumer.stats.duplicates == len(msgs)
    print(
        json.dumps(
            {
                "events": len(msgs),
                "new_per_s": round(new),
                "us_per_new_event": round(1e6 / new),
                "duplicates_per_s": round(dup),
                "unsigned_per_s": round(unsigned),
                "loadavg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
