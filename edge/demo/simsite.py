"""``portlane sim site``: a lane controller's whole world, simulated, to practise on.

What a technician needs to rehearse every step of docs/operations.md without hardware:

* a wire-level simulator for every device of the chosen lanes (ptys and loopback TCP ports),
  each RS-485 line with a listening **tap** — the second adapter on the pair the docs
  recommend for watching a live bus;
* a broker: the embedded one unless ``--broker``;
* with ``--traffic N``: N vehicles driving through the lanes and the central-platform simulator
  answering them with signed decisions (the site file's ``platform.keys`` hold its public key);
* a **site file** (``--out``) that ``portlane config check`` accepts: the simulators' links, the
  broker's URL (TLS settings dropped on a plain ``mqtt://`` broker), a state directory the user
  may write, and a signing key per lane and scanner, so that the daemons started on it run as
  on a real controller (``portlane daemon lane --site FILE --lane c1``);
* an **env file** (``--env``) with the simulated devices' addresses as shell variables
  (``C1_IO_PORT``, ``C1_GATE``, ``C1_GATE_TAP`` …), for ``modbus read`` and ``serial sniff``.

The daemons are not started here: the technician starts them, as systemd would, and stops
them. Everything runs until SIGINT or SIGTERM; nothing is left behind but the files written.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from portlane.edge.config import MqttProtocol, Site, parse_site
from portlane.edge.demo.broker import EmbeddedBroker
from portlane.edge.demo.options import DEFAULT_SITE, SITES_DIR, check_broker_url, load_demo_site
from portlane.edge.demo.sitegen import apply_links, demo_site
from portlane.edge.errors import ConfigError, UsageError
from portlane.edge.trust.pki import provision_unit_keys

__all__ = ["SimSiteOptions", "env_lines", "serve_site"]

#: The central-platform simulator signs with the demo's key, whose public half the shipped
#: site file lists under ``platform.keys``.
KEYS_FILE = SITES_DIR.parent / "demo_keys.yaml"
#: Seconds between one vehicle leaving a lane and the next pulling up (scaled by the time factor).
HEADWAY_S = 1.0


@dataclass(frozen=True)
class SimSiteOptions:
    out: Path
    site_file: Path = DEFAULT_SITE
    lanes: int | None = None  # None: every lane of the site file
    cameras: bool = False
    broker: str | None = None  # None: the embedded broker
    state_dir: Path | None = None  # None: state/ beside --out
    env_file: Path | None = None
    traffic: int = 0
    seed: int = 7
    inspect_ratio: float = 0.25
    time_factor: float = 1.0

    def validated(self) -> SimSiteOptions:
        if self.lanes is not None and self.lanes < 1:
            raise UsageError(f"--lanes {self.lanes}: at least one lane")
        if self.traffic < 0:
            raise UsageError(f"--traffic {self.traffic}: a number of vehicles, 0 or more")
        if not self.time_factor > 0:
            raise UsageError(f"--time-factor {self.time_factor}: must be > 0 (1.0 = real time)")
        if not 0.0 <= self.inspect_ratio <= 1.0:
            raise UsageError(f"--inspect-ratio {self.inspect_ratio}: a share, from 0 to 1")
        if self.broker is not None:
            check_broker_url(self.broker)
        return self


def _var(*parts: str) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9]", "_", p).upper() for p in parts)


def env_lines(links: dict[str, Any], taps: dict[str, dict[str, str]]) -> list[str]:
    """``NAME=value`` lines for a POSIX shell: every simulated device's address."""
    out: dict[str, str] = {}
    units = [(lane, devs) for lane, devs in links.get("lanes", {}).items()]
    units += [(sid, {"plc": link}) for sid, link in links.get("scanners", {}).items()]
    for unit, devices in units:
        for dev, link in devices.items():
            if dev == "cameras":
                for cam, cam_link in link.items():
                    out[_var(unit, "cam", cam)] = str(cam_link.get("source", ""))
            elif link.get("kind") == "serial":
                out[_var(unit, dev)] = str(link["url"])
            elif link.get("kind") == "tcp":
                out[_var(unit, dev, "host")] = str(link["host"])
                out[_var(unit, dev, "port")] = str(link["port"])
    for lane, devices in taps.items():
        for dev, path in devices.items():
            out[_var(lane, dev, "tap")] = path
    return [f"{k}={_quoted(v)}" for k, v in out.items()]


def _quoted(value: str) -> str:
    return value if re.fullmatch(r"[A-Za-z0-9_./:@%+=,-]*", value) else "'" + value.replace("'", "'\\''") + "'"


def _site_for(opts: SimSiteOptions) -> dict[str, Any]:
    """The site to simulate: the chosen lanes (cameras only with ``cameras``)."""
    raw = load_demo_site(opts.site_file)
    n = opts.lanes if opts.lanes is not None else len(raw["lanes"])
    return demo_site(raw, n, cameras=opts.cameras)


def _broker_section(raw: dict[str, Any], url: str, protocol: str | None) -> dict[str, Any]:
    """The site's broker section pointed at ``url``: on plain MQTT no TLS files and no password."""
    section = {k: v for k, v in (raw.get("broker") or {}).items() if k not in ("tls", "username", "password")}
    section["url"] = url
    if protocol is not None:
        section["protocol"] = protocol
    if url.startswith("mqtts://") and "tls" in (raw.get("broker") or {}):
        section["tls"] = raw["broker"]["tls"]
    return section


async def serve_site(opts: SimSiteOptions, *, stop: asyncio.Event, ready: Callable[[dict[str, Any]], None]) -> None:
    """Start everything, write the site (and env) file, call ``ready`` with what was written,
    and run until ``stop`` is set; then stop everything it started."""
    from portlane.sim_devices.catalog import SimulatorUnavailableError, start_site
    from portlane.sim_devices.scanner import ScannerWorld
    from portlane.sim_devices.world import LaneWorld

    opts = opts.validated()
    out = opts.out.absolute()
    raw = _site_for(opts)
    state_dir = (opts.state_dir or out.parent / "state").absolute()
    raw["state_dir"] = str(state_dir)
    # Each lane and scanner signs its events, as on a real site: the lanes act only on scan
    # results the scanner signed, the platform sees whose events it gets.
    raw = provision_unit_keys(raw, out.parent / "keys", keep_existing=True)
    worlds = {lane["id"]: LaneWorld(lane["id"], time_factor=opts.time_factor) for lane in raw["lanes"]}
    scanners = {s["id"]: ScannerWorld(time_factor=opts.time_factor, seed=opts.seed) for s in raw.get("scanners", [])}
    broker: EmbeddedBroker | None = None
    protocol: MqttProtocol | None
    async with contextlib.AsyncExitStack() as stack:
        if opts.broker is None:
            broker = EmbeddedBroker()
            await broker.start()
            stack.push_async_callback(broker.stop)
            url, protocol = broker.url, "3.1.1"  # amqtt speaks MQTT 3.1.1 only
        else:
            url, protocol = opts.broker, None
        try:
            sims = await start_site(
                raw, worlds, scanner_worlds=scanners, time_factor=opts.time_factor, seed=opts.seed, taps=True
            )
        except SimulatorUnavailableError as exc:
            raise UsageError(f"{opts.site_file}: cannot simulate this site: {exc}") from exc
        stack.push_async_callback(sims.close)
        site_raw = apply_links(raw, sims.links)
        site_raw["broker"] = _broker_section(raw, url, protocol)
        try:
            site = parse_site(site_raw, file=str(out))  # what `config check` will say, before writing
        except ConfigError as exc:
            raise UsageError(f"the simulated site would not be valid: {exc}") from exc
        text = "# written by `portlane sim site`: the links point at its simulators (it must be running)\n"
        text += yaml.safe_dump(site_raw, allow_unicode=True, sort_keys=False)
        await asyncio.to_thread(_write, out, text)
        env = env_lines(sims.links, sims.taps)
        if opts.env_file is not None:
            await asyncio.to_thread(_write, opts.env_file.absolute(), "".join(f"{line}\n" for line in env))
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(w.run(), name=f"sim-lane-{k}") for k, w in worlds.items()]
            tasks += [tg.create_task(w.run(), name=f"sim-scanner-{k}") for k, w in scanners.items()]
            if opts.traffic:
                tasks += _start_traffic(tg, opts, site, site_raw, worlds, url, protocol)
            ready(
                {
                    "site": str(out),
                    "env": str(opts.env_file.absolute()) if opts.env_file else None,
                    "broker": url,
                    "lanes": list(worlds),
                    "scanners": list(scanners),
                    "traffic": opts.traffic,
                    "links": sims.links,
                    "taps": sims.taps,
                    "pid": os.getpid(),
                }
            )
            await stop.wait()
            for t in tasks:
                t.cancel()


def _start_traffic(
    tg: asyncio.TaskGroup,
    opts: SimSiteOptions,
    site: Site,
    raw: dict[str, Any],
    worlds: dict[str, Any],
    url: str,
    protocol: MqttProtocol | None,
) -> list[asyncio.Task[Any]]:
    """The central platform (signed decisions, registrations; it believes only what the units
    signed) and the vehicles of ``--traffic``."""
    from portlane.edge.platform import CentralPlatform
    from portlane.sim_devices.traffic import make_plan, run_lane

    keys = yaml.safe_load(KEYS_FILE.read_text(encoding="utf-8"))
    plan = make_plan({lane["id"]: lane["kind"] for lane in raw["lanes"]}, opts.traffic, seed=opts.seed)
    central = CentralPlatform(
        site,
        key_id=keys["key_id"],
        private_key_b64=keys["private_key"],
        url=url,
        protocol=protocol,
        inspect_ratio=opts.inspect_ratio,
        seed=opts.seed,
        think_s=2.0 * opts.time_factor,
        registrations=plan.registrations,
    )

    async def lane_traffic(lane: str) -> None:
        # The first vehicle pulls up once the lane's daemon runs and knows the expected vehicles.
        await central.wait_registered([lane])
        await run_lane(worlds[lane], plan.per_lane[lane], headway_s=HEADWAY_S)

    tasks: list[asyncio.Task[Any]] = [tg.create_task(central.run(), name="sim-central")]
    tasks += [tg.create_task(lane_traffic(lane), name=f"sim-traffic-{lane}") for lane in plan.per_lane]
    return tasks


def _write(path: Path, text: str) -> None:
    """Atomically: whoever waits for the file never reads half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
