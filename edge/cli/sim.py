"""``portlane sim <device>``: run one device simulator standalone and print its link.

Examples::

    portlane sim gate-rs485 --address 1 --address 2        # two controllers on one pty
    portlane sim weighbridge --fault noise=0.1 --fault seed=3
    portlane sim board --json                              # {"device": ..., "link": {...}}
    portlane sim rpm --fault stuck                         # a radiation portal whose occupancy sensor sticks
    portlane sim site --out site.yaml --lanes 2 --traffic 40 --env sim.env --detach
        # every device of a site (default: the shipped HZMB site), an embedded broker, traffic
        # and the central platform; a site file for the daemons and the addresses as shell
        # variables (docs/operations.md, "Practising without hardware"); see edge/demo/simsite.py

A simulator runs until interrupted (Ctrl-C, SIGTERM); ``sim site --detach`` runs in the
background and returns once its site file is written (stop it with ``kill PID``). Exit codes:
0 stopped by the user (or detached), 1 the simulator failed to start, 2 usage error (unknown
device, bad ``--fault``, a site it cannot simulate).
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
    s = p.add_argument_group("sim site")
    s.add_argument("--site", help="the site file whose devices to simulate (default: the shipped HZMB cargo site)")
    s.add_argument("--out", help="write the site file for the daemons here: the simulators' links (required)")
    s.add_argument("--lanes", type=int, help="simulate this many lanes of the site (default: all)")
    s.add_argument("--cameras", action="store_true", help="simulate the cameras too (CPU-heavy; for --ocr work)")
    s.add_argument("--broker", help="use this broker (mqtt://HOST:PORT) instead of an embedded one")
    s.add_argument("--state-dir", help="the daemons' state directory (default: state/ beside --out)")
    s.add_argument("--env", metavar="FILE", help="write the simulated devices' addresses as shell variables here")
    s.add_argument("--traffic", type=int, default=0, metavar="N", help="drive N vehicles through the lanes")
    s.add_argument("--seed", type=int, default=7, help="seed of the traffic and the platform's decisions")
    s.add_argument("--inspect-ratio", type=float, default=0.25, help="share of cargo vehicles sent to X-ray")
    s.add_argument("--detach", action="store_true", help="run in the background; return once the site file is written")
    s.add_argument("--pid-file", metavar="FILE", help="with --detach: write the simulator's pid here")
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
    if args.device == "site" and args.detach:
        return _detach(args)
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


def _site_options(args: argparse.Namespace) -> Any:
    from pathlib import Path

    from portlane.edge.demo.options import DEFAULT_SITE
    from portlane.edge.demo.simsite import SimSiteOptions
    from portlane.edge.errors import UsageError

    if not args.out:
        raise UsageError("sim site needs --out FILE: where to write the site file for the daemons")
    return SimSiteOptions(
        out=Path(args.out),
        site_file=Path(args.site) if args.site else DEFAULT_SITE,
        lanes=args.lanes,
        cameras=args.cameras,
        broker=args.broker,
        state_dir=Path(args.state_dir) if args.state_dir else None,
        env_file=Path(args.env) if args.env else None,
        traffic=args.traffic,
        seed=args.seed,
        inspect_ratio=args.inspect_ratio,
        time_factor=args.time_factor,
    ).validated()


async def _serve_site(args: argparse.Namespace) -> int:
    """Simulate every device of a site; write a site file pointing at them; run until stopped."""
    from portlane.edge.demo.simsite import serve_site

    opts = _site_options(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def ready(info: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps(info), flush=True)
            return
        lanes = ", ".join(info["lanes"])
        print(f"simulating lanes {lanes} (pid {info['pid']}); site file {info['site']}; broker {info['broker']}")
        if info["env"]:
            print(f"device addresses: . {info['env']}")
        print("Ctrl-C to stop", flush=True)

    await serve_site(opts, stop=stop, ready=ready)
    return EXIT_OK


#: How long ``--detach`` waits for the background simulator to write its site file: starting
#: a few dozen simulators and an embedded broker takes a few seconds on a busy 2-core box.
DETACH_READY_S = 60.0


def _detach(args: argparse.Namespace) -> int:
    """Start ``sim site`` again in its own session, in the background; return once it is ready."""
    import subprocess
    from pathlib import Path

    from portlane.edge.errors import PortlaneError

    opts = _site_options(args)  # usage errors here, in the foreground
    argv = [sys.executable, "-m", "portlane.edge", "sim", "site", "--json", "--out", str(opts.out)]
    for flag, value in (
        ("--site", args.site),
        ("--lanes", args.lanes),
        ("--broker", args.broker),
        ("--state-dir", args.state_dir),
        ("--env", args.env),
        ("--traffic", args.traffic),
        ("--seed", args.seed),
        ("--inspect-ratio", args.inspect_ratio),
        ("--time-factor", args.time_factor),
    ):
        if value is not None:
            argv += [flag, str(value)]
    if args.cameras:
        argv.append("--cameras")
    log_path = opts.out.with_suffix(".log")
    with open(log_path, "ab") as log_file:
        child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file, start_new_session=True
        )
    assert child.stdout is not None
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(child.stdout, selectors.EVENT_READ)
        line = child.stdout.readline() if sel.select(DETACH_READY_S) else b""
    child.stdout.close()
    if not line:
        if child.poll() is None:
            child.terminate()
        rc = child.wait()
        tail = Path(log_path).read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise PortlaneError(f"the simulator did not start (exit {rc}): {tail[0]} (log: {log_path})")
    info = json.loads(line)
    if args.pid_file:
        Path(args.pid_file).write_text(f"{child.pid}\n", encoding="utf-8")
    if args.json:
        print(json.dumps({**info, "log": str(log_path)}))
    else:
        print(f"simulating lanes {', '.join(info['lanes'])} in the background (pid {child.pid}, log {log_path});")
        print(
            f"site file {info['site']}, broker {info['broker']}"
            + (f", addresses in {info['env']}" if info["env"] else "")
        )
        print(f"stop it with: kill {child.pid}")
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
