"""``portlane sim <device>``: run one device simulator standalone and print its link.

Examples::

    portlane sim gate-rs485 --address 1 --address 2        # two controllers on one pty
    portlane sim weighbridge --fault noise=0.1 --fault seed=3
    portlane sim board --json                              # {"device": ..., "link": {...}}
    portlane sim rpm --fault stuck                         # a radiation portal whose occupancy sensor sticks
    portlane sim site --site firmware_config/sites/zhuhai-hzmb-cargo.yaml --out /tmp/sim-site.yaml \
        --broker mqtt://127.0.0.1:1883                     # every device of a site, and a site file
                                                           # whose links point at the simulators

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

from portlane.edge.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE

#: Names known without importing the simulators (the parser must stay light).
DEVICES = (
    "gate-rs485",
    "gate-modbus",
    "io",
    "board",
    "rfid",
    "weighbridge",
    "scanner",
    "camera",
    "rpm",
    "seal-reader",
    "site",
)


def register(sub: Any) -> None:
    p = sub.add_parser("sim", help="run one device simulator and print the link to configure")
    p.add_argument("device", choices=DEVICES, help="which simulator")
    p.add_argument(
        "--address",
        type=int,
        action="append",
        default=None,
        help="RS-485 address / Modbus unit (repeat for several gates on one line)",
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="fault injection, e.g. drop=0.1, delay=0.05, corrupt=0.2, noise=0.1, dead, stuck, seed=7",
    )
    p.add_argument(
        "--time-factor", type=float, default=1.0, help="scale physical times (0.1 = ten times faster than life)"
    )
    p.add_argument("--lane", default="sim", help="lane id of the simulated world")
    p.add_argument("--json", action="store_true", help="print the link as JSON")
    p.add_argument("--site", help="with 'site': the site file whose devices to simulate")
    p.add_argument("--out", help="with 'site': write a copy of the site file with the simulators' links here")
    p.add_argument("--broker", help="with 'site': broker URL to put into the written site file")
    p.add_argument("--state-dir", help="with 'site': state directory to put into the written site file")
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


async def _until_stopped() -> None:
    """Until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _serve_site(args: argparse.Namespace) -> int:
    """Simulate every device of a site; write a site file pointing at them; run until ^C."""
    from pathlib import Path

    import yaml
    from portlane.sim_devices.catalog import start_site
    from portlane.sim_devices.scanner import ScannerWorld
    from portlane.sim_devices.world import LaneWorld

    if not args.site or not args.out:
        print("sim site needs --site FILE and --out FILE", file=sys.stderr)
        return EXIT_USAGE
    raw = yaml.safe_load(await asyncio.to_thread(Path(args.site).read_text, encoding="utf-8"))
    worlds = {lane["id"]: LaneWorld(lane["id"], time_factor=args.time_factor) for lane in raw["lanes"]}
    scanners = {s["id"]: ScannerWorld(time_factor=args.time_factor) for s in raw.get("scanners", [])}
    sims = await start_site(raw, worlds, scanner_worlds=scanners, time_factor=args.time_factor)
    try:
        async with asyncio.TaskGroup() as tg:
            running = [tg.create_task(w.run(), name=f"sim-lane-{k}") for k, w in worlds.items()]
            running += [tg.create_task(w.run(), name=f"sim-scanner-{k}") for k, w in scanners.items()]
            for lane in raw["lanes"]:
                links = sims.links["lanes"].get(lane["id"], {})
                for dev, cfg in lane["devices"].items():
                    if dev == "cameras":
                        for cam_id, cam in cfg.items():
                            cam["link"] = links.get("cameras", {}).get(cam_id, cam["link"])
                    elif dev in links:
                        cfg["link"] = links[dev]
            for s in raw.get("scanners", []):
                s["device"]["link"] = sims.links["scanners"].get(s["id"], s["device"]["link"])
            if args.broker:
                raw.setdefault("broker", {})["url"] = args.broker
                raw["broker"].pop("username", None)
                raw["broker"].pop("password", None)
            if args.state_dir:
                raw["state_dir"] = args.state_dir
            text = yaml.safe_dump(raw, allow_unicode=True, sort_keys=False)
            await asyncio.to_thread(Path(args.out).write_text, text, encoding="utf-8")
            print(
                json.dumps({"site": args.out, "links": sims.links})
                if args.json
                else f"simulating {len(worlds)} lanes; site file with their links: {args.out} (Ctrl-C to stop)",
                flush=True,
            )
            await _until_stopped()
            for task in running:
                task.cancel()
    finally:
        await sims.close()
    return EXIT_OK


async def _serve(args: argparse.Namespace, faults: Any) -> int:
    if args.device == "site":
        return await _serve_site(args)
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
        worlds = {
            a: (world if i == 0 else LaneWorld(f"{args.lane}-{a}", time_factor=args.time_factor))
            for i, a in enumerate(addresses)
        }
        handle_coro = start(None, worlds=worlds, faults=faults, **opts)
    elif args.device in ("gate-modbus", "io", "scanner"):
        handle_coro = start(None if args.device == "scanner" else world, faults=faults, unit=addresses[0], **opts)
    elif args.device in ("board", "seal-reader"):
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
        await _until_stopped()
    finally:
        await handle.close()
    return EXIT_OK
