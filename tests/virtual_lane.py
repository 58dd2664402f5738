"""A lane on virtual devices (drivers/virtual.py) with a real broker: the fixture for the lane
daemon's own tests (trust, liveness), where wire-level simulators would only add time.

``LaneRig`` runs one ``LaneDaemon`` whose devices are the virtual backend; the test plays the
physical lane through ``rig.world`` and the central platform through ``rig.platform`` (signed
commands with the demo's platform key, published on the real broker). Lanes get signing keys
of their own (``rig.keys``) so that signed events can be checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from portlane.drivers.virtual_world import VirtualWorld, virtual_world
from portlane.edge.config import Site, parse_site
from portlane.edge.delivery.mqtt import Message, MqttLink
from portlane.edge.lane.daemon import LaneDaemon
from portlane.edge.lane.passage import LaneTimeouts, Stage
from portlane.edge.trust.commands import CommandSigner
from portlane.edge.trust.keys import generate_keypair

ROOT = Path(__file__).resolve().parents[1]
DEMO_KEYS = yaml.safe_load((ROOT / "firmware_config" / "demo_keys.yaml").read_text())
SITE_ID = "t-site"
AGENCIES = ("customs", "border")
#: Bounds a broken run only (every wait here ends on an event): a lane starting, a registration
#: going through, a passage moving on a 2-core CI machine shared with the rest of the suite.
WITHIN_S = 30.0


def _virtual(world: str) -> dict[str, Any]:
    return {"backend": "virtual", "link": {"kind": "virtual", "world": world}, "poll_s": 0.01}


def site_dict(
    lanes: tuple[str, ...] = ("c1",),
    *,
    url: str,
    key_dir: Path | None = None,
    clients: list[dict[str, Any]] | None = None,
    cargo: bool = False,
) -> dict[str, Any]:
    """A site with virtual devices. With ``key_dir`` every lane and the scanner get a signing
    key (private key files written there); ``clients`` are its ``clients:`` entries; with
    ``cargo`` every lane has a radiation portal and a seal reader too (``world.rpm``,
    ``world.seals``)."""
    raw: dict[str, Any] = {
        "site": {"id": SITE_ID, "name": "virtual test site"},
        "broker": {"url": url},
        "platform": {
            "decision_timeout_s": 30,
            "keys": [{"id": DEMO_KEYS["key_id"], "public_key": DEMO_KEYS["public_key"]}],
        },
        "agencies": list(AGENCIES),
        "scanners": [{"id": "xray-1", "lanes": list(lanes), "device": _virtual("xray-1")}],
        "lanes": [
            {
                "id": lane,
                "kind": "cargo",
                "agencies": list(AGENCIES),
                "scanner": "xray-1",
                "devices": {
                    "gate": _virtual(lane),
                    "io": _virtual(lane),
                    "board": _virtual(lane),
                    "rfid": _virtual(lane),
                }
                | ({"rpm": _virtual(lane), "seal_reader": _virtual(lane)} if cargo else {}),
            }
            for lane in lanes
        ],
    }
    if clients:
        raw["clients"] = clients
    if key_dir is not None:
        units = [*raw["lanes"], *raw["scanners"]]
        for unit in units:
            private, public = generate_keypair()
            path = key_dir / f"{unit['id']}.key"
            path.write_text(private + "\n")
            path.chmod(0o600)
            unit["key"] = {"id": f"{unit['id']}-key", "public_key": public, "private_key_file": str(path)}
    return raw


class Platform:
    """The central platform's side: signed commands on the real broker, responses read back."""

    def __init__(self, url: str, *, key_id: str = DEMO_KEYS["key_id"], private_key: str = DEMO_KEYS["private_key"]):
        self.signer = CommandSigner(key_id, private_key)
        self.responses: list[dict[str, Any]] = []
        self.link = MqttLink(
            url, client_id="t-platform", subscriptions=[f"portlane/v1/{SITE_ID}/+/response"], on_message=self._on
        )

    def _on(self, msg: Message) -> None:
        self.responses.append(json.loads(msg.payload))

    def command(self, lane: str, cmd: str, passage_id: str | None = None, **args: Any) -> bytes:
        now = dt.datetime.now(dt.UTC)
        signed = self.signer.sign(
            {
                "cmd": cmd,
                "site": SITE_ID,
                "lane": lane,
                "passage_id": passage_id,
                "args": args,
                "issued_at": now,
                "expires_at": now + dt.timedelta(seconds=60),
            }
        )
        return signed.to_json_bytes()

    async def send(self, lane: str, cmd: str, passage_id: str | None = None, **args: Any) -> None:
        await self.link.publish(f"portlane/v1/{SITE_ID}/{lane}/cmd/{cmd}", self.command(lane, cmd, passage_id, **args))


@dataclass
class LaneRig:
    daemon: LaneDaemon
    world: VirtualWorld
    platform: Platform
    site: Site
    stop: asyncio.Event
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    daemon_events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def logic(self) -> Any:
        return self.daemon.logic

    async def until(self, pred: Callable[[], bool], within_s: float = WITHIN_S) -> None:
        """Wait until ``pred()`` holds, re-checked after every input the lane's logic handled
        (device polls run every 10 ms, so a change in the world is seen promptly)."""
        async with asyncio.timeout(within_s):
            await self.daemon.wait_for(pred)

    def events(self, type_: str) -> list[dict[str, Any]]:
        """The ``data`` of every ``type_`` event the lane wrote to its outbox (in order)."""
        return [data for t, data in self.daemon_events if t == type_]

    async def until_event(self, type_: str, pred: Callable[[dict[str, Any]], bool] = lambda d: True) -> dict[str, Any]:
        await self.until(lambda: any(pred(d) for d in self.events(type_)))
        return next(d for d in self.events(type_) if pred(d))


async def start_lane(
    url: str,
    state_dir: Path,
    *,
    lane: str = "c1",
    timeouts: LaneTimeouts | None = None,
    key_dir: Path | None = None,
    outbox: dict[str, Any] | None = None,
    clients: list[dict[str, Any]] | None = None,
    cargo: bool = False,
) -> LaneRig:
    raw = site_dict((lane,), url=url, key_dir=key_dir, clients=clients, cargo=cargo)
    if outbox is not None:
        raw["outbox"] = outbox
    site = parse_site(raw)
    world = virtual_world(lane)
    daemon = LaneDaemon(site, site.lane(lane), state_dir=state_dir, timeouts=timeouts)
    platform = Platform(url)
    stop = asyncio.Event()
    rig = LaneRig(daemon, world, platform, site, stop)
    writer_put_many = daemon.unit.events.put_many  # ``put`` goes through it too

    def record(events: Any) -> Any:
        rig.daemon_events += [(str(type_), data.model_dump(mode="json")) for type_, data, _subject, _topic in events]
        return writer_put_many(events)

    daemon.unit.events.put_many = record  # type: ignore[method-assign]
    rig.tasks = [
        asyncio.create_task(daemon.run(stop), name="rig-lane"),
        asyncio.create_task(platform.link.run(), name="rig-platform"),
    ]
    async with asyncio.timeout(WITHIN_S):
        await daemon.ready.wait()
        await daemon.unit.link.wait_subscribed()
        await platform.link.wait_connected()
    return rig


async def arrive_and_identify(r: LaneRig, tag: str) -> str:
    """A vehicle carrying ``tag`` drives onto the entry loop and into position; returns its
    passage id once the lane waits for the agencies' decision."""
    r.world.present_tag(tag)
    r.world.set_inputs(entry_loop=True)
    await r.until(lambda: r.logic.passage is not None)
    r.world.set_inputs(in_position=True)
    await r.until(lambda: r.logic.stage == Stage.AWAITING_DECISION)
    assert r.logic.passage is not None
    return r.logic.passage.id


async def register(rig: LaneRig, tag: str, plates: list[str], *, seals: list[str] | None = None) -> None:
    """Send the registrations until the lane has them: a command published before the broker
    has the lane's subscription is lost, and a platform re-sends what went unanswered.
    ``seals``: the seal ids the vehicle's declaration names."""
    async with asyncio.timeout(WITHIN_S):
        while tag not in rig.daemon.identifier.registrations:
            vehicles = [{"tag_id": tag, "plates": plates} | ({"seals": seals} if seals is not None else {})]
            await rig.platform.send(rig.daemon.cfg.id, "expected_vehicles", vehicles=vehicles)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await rig.daemon.wait_for(lambda: tag in rig.daemon.identifier.registrations)


async def stop_lane(rig: LaneRig) -> None:
    rig.stop.set()
    try:
        async with asyncio.timeout(WITHIN_S):
            await rig.tasks[0]
    finally:
        await rig.platform.link.close()
        for t in rig.tasks:
            t.cancel()
        await asyncio.gather(*rig.tasks, return_exceptions=True)
