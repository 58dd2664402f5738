"""An independent subscriber in its own process, for the benchmarks (as the platform's would be).

    python bench/subscriber.py URL SITE PROTOCOL

Prints ``ready`` once subscribed. Then, for each line ``wait UNIT[,UNIT…] LAST_SEQ`` on stdin,
waits until every unit's events up to LAST_SEQ arrived and prints one JSON line:
``{"done_at": <time.time()>, "lost": n, "duplicates": n}`` (or ``{"error": …}`` after the
deadline).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from portlane.edge.demo.observer import EventObserver

#: Longest one wait may take: a stuck broker, not a slow one.
WAIT_S = 300.0


async def main(url: str, site: str, protocol: str) -> None:
    obs = EventObserver(url, site, client_id=f"bench-subscriber-{site}", protocol=protocol)
    async with asyncio.TaskGroup() as tg:
        link = tg.create_task(obs.link.run(), name="subscriber")
        await asyncio.wait_for(obs.link.wait_connected(), 10)
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            _cmd, units_s, last_s = line.split()
            units, last = units_s.split(","), int(last_s)
            try:
                await obs.wait_for(lambda u=units, n=last: all(obs.units[x].max_seq >= n for x in u), timeout=WAIT_S)
            except TimeoutError:
                print(json.dumps({"error": f"not all events within {WAIT_S} s"}), flush=True)
                continue
            done_at = time.time()
            lost = obs.lost({u: last for u in units})
            dup = sum(obs.units[u].duplicates for u in units)
            print(json.dumps({"done_at": done_at, "lost": lost, "duplicates": dup}), flush=True)
        link.cancel()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
