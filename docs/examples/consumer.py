"""A consumer of one site's events on portlane.edge.client: every event once, verified, typed.

    python docs/examples/consumer.py --site site.yaml [--unit consumer] [--broker mqtt://HOST:PORT]

The site file names every unit's public key (what each may sign) and this client's own entry
(``clients: [{id: consumer, role: console, commands: [replay_events], key: …}]``): its key signs
the replay requests for events it missed. Prints one line per event and, when stopped (Ctrl-C,
SIGTERM), a JSON summary. tests/client/test_example_consumer.py runs it against ``portlane demo``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections import Counter

from portlane.edge.client import SiteClient
from portlane.edge.config import load_site
from portlane.edge.contract.events import PassageCompleted


async def consume(site_file: str, unit: str, broker: str | None) -> dict[str, object]:
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    by_type: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    async with SiteClient.from_site(load_site(site_file), unit=unit, url=broker) as client:

        async def read() -> None:
            async for ev in client.events():  # verified against the site's keys, de-duplicated
                by_type[ev.type] += 1
                if isinstance(ev.payload, PassageCompleted):  # typed: the contract's model
                    outcomes[ev.payload.outcome] += 1
                print(ev.unit, ev.seq, ev.type, ev.subject or "-", "late" if ev.late else "", flush=True)

        await client.wait_subscribed()
        print("subscribed", file=sys.stderr, flush=True)
        reader = asyncio.create_task(read(), name="reader")
        await stop.wait()
        reader.cancel()
        return {
            "events": sum(by_type.values()),
            "by_type": dict(sorted(by_type.items())),
            "outcomes": dict(outcomes),
            "last_seq": {s.unit: s.max_seq for s in client.streams()},
            "missing": client.missing,
            "units": {u: v.state for u, v in client.units().items()},
            "stats": client.stats.as_dict(),
        }


def main() -> int:
    p = argparse.ArgumentParser(description="print a site's events, verified, once each")
    p.add_argument("--site", required=True, help="the site file (units' public keys, this client's key)")
    p.add_argument("--unit", default="consumer", help="this client's id in the site file")
    p.add_argument("--broker", help="broker URL (default: the site file's)")
    args = p.parse_args()
    print(json.dumps(asyncio.run(consume(args.site, args.unit, args.broker))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
