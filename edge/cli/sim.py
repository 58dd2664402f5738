"""``portlane sim <device>``: run one device simulator standalone and print its link.

Examples::

    portlane sim gate-rs485 --address 1 --address 2        # two controllers on one pty
    portlane sim weighbridge --fault noise=0.1 --fault seed=3
    portlane sim board --json                              # {"device": ..., "link": {...}}

The simulator runs until interrupted (Ctrl-C). Exit codes: 0 stopped by the user,
1 the simulator failed to start, 2 usage error (unknown device, bad ``--fault``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

from . import EXIT_FAILED, EXIT_OK, EXIT_USAGE

#: Names known without importing the simulators (the parser must stay light).
DEVICES = ("gate-rs485", "gate-modbus", "io", "board", "rfid", "weighbridge", "scanner", "camera")


def register(sub: Any) -> None:
    p = sub.add_parser("sim", help="run one device simulator and print the link to configure")
    p.add_argument("device", choices=DEVICES, help="which simulator")
    p.add_argument("--address", type=int, action="append", default=None,
                   help="RS-485 address / Modbus unit (repeat for several gates on one line)")
    p.add_argument("--fault", action="append", default=[], metavar="SPEC",
                   help="fault injection, e.g. drop=0.1, delay=0.05, corrupt=0.2, noise=0.1, dead, stuck, seed=7")
    p.add_argument("--time-factor", type=float, default=1.0,
                   help="scale physical times (0.1 = ten times faster than life)")
    p.add_argument("--lane", default="sim", help="lane id of the simulated world")
    p.add_argument("--json", action="store_true", help="print the link as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from portlane.sim_devices.faults import FaultInjector, FaultSpecError

    if args.time_factor <= 0:
        print("--time-factor must be > 0", file=sys.stderr)
        return EXIT_USAGE
    try:
        faults = FaultInjector.parse(args.fault)
    except FaultSpecError as exc:
        print(f"--fault: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_serve(args, faults))
    except KeyboardInterrupt:
        return EXIT_OK


async def _serve(args: argparse.Namespace, faults: Any) -> int:
    from portlane.sim_devices.catalog import SimulatorUnavailableError, load_simulator
    from portlane.sim_devices.world import LaneWorld

    try:
        start = load_simulator(args.device)
    except SimulatorUnavailableError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    addresses = args.address or [1]
    world = LaneWorld(args.lane, time_factor=args.time_factor)
    opts: dict[str, Any] = {"time_factor": args.time_factor}
    if args.device == "gate-rs485":
        worlds = {a: (world if i == 0 else LaneWorld(f"{args.lane}-{a}", time_factor=args.time_factor))
                  for i, a in enumerate(addresses)}
        handle_coro = start(None, worlds=worlds, faults=faults, **opts)
    elif args.device in ("gate-modbus", "io", "scanner"):
        handle_coro = start(None if args.device == "scanner" else world, faults=faults, unit=addresses[0], **opts)
    elif args.device == "board":
        handle_coro = start(world, faults=faults, address=addresses[0], **opts)
    else:
        handle_coro = start(world, faults=faults, **opts)
    try:
        handle = await handle_coro
    except (OSError, ValueError) as exc:
        print(f"{args.device}: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        if args.json:
            print(json.dumps({"device": args.device, "addresses": addresses, "link": handle.link}), flush=True)
        else:
            print(f"{args.device} simulator running (Ctrl-C to stop)")
            print(f"  link: {json.dumps(handle.link)}")
            if "url" in handle.link:
                print(f"  open: {handle.link['url']}")
            print(flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await handle.close()
    return EXIT_OK
