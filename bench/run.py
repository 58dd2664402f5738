"""Run one benchmark scenario and keep its result.

    python bench/run.py                 # list the scenarios
    python bench/run.py outbox [--events 20000 --lanes 4 --rounds 3 ...]
    python bench/run.py chaos [--only broker_kill ...]
    python bench/run.py demo_load [--runs 10 --hogs 3]    # issue 11: the demo under CPU starvation
    python bench/run.py latency --think 0.2 --as latency_think   # a variant, kept as latency_think.json
    python bench/run.py predecisions   # issue 20: a lane's book of pre-decisions at capacity

Each scenario is a module in ``bench/`` with a ``parser()`` (its options) and an
``async main(**options) -> dict``; the result is printed as JSON and written to
``bench/results/<scenario>.json`` with the command line and the machine (``bench/harness.py``).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import write_result

#: scenario name -> module in bench/
SCENARIOS = {
    "outbox": "outbox_bench",
    "chaos": "chaos",
    "lanes": "lanes_bench",
    "latency": "latency_bench",
    "soak": "soak_bench",
    "recognition": "recognition_bench",
    "demo_load": "demo_load",
    "predecisions": "predecisions_bench",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in SCENARIOS:
        print("usage: python bench/run.py SCENARIO [OPTIONS]; scenarios: " + ", ".join(SCENARIOS), file=sys.stderr)
        return 2
    name = argv[0]
    rest = list(argv[1:])
    save_as = name
    if "--as" in rest:  # a variant of a scenario, kept next to the main result (bench/results/NAME.json)
        i = rest.index("--as")
        save_as = rest[i + 1]
        del rest[i : i + 2]
    mod = importlib.import_module(SCENARIOS[name])
    opts = vars(mod.parser().parse_args(rest))
    result = asyncio.run(mod.main(**opts))
    path = write_result(save_as, result, argv=["bench/run.py", *argv])
    print(json.dumps(result, ensure_ascii=False))
    print(f"written to {path}", file=sys.stderr)
    return 0 if result.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
