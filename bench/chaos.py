"""Chaos suite: the simulated port under the faults a field controller meets.

    python bench/chaos.py [--only NAME[,NAME…]] [--lanes 4] [--vehicles 24] [--seed 7] [--json]
    python bench/run.py chaos …          # the same, and writes bench/results/chaos.json

The port is built the way a site runs: Mosquitto (with persistence) as its own process, every
lane daemon and the scanner daemon as their own processes (``portlane daemon lane|scanner``,
what systemd starts, each with its own state directory and control socket), and in this
process the wire-level simulators, the traffic, the central platform (signed decisions) and
two subscribers: a live one for progress, and the platform's durable one (persistent session)
that counts what was lost.

Scenarios (``SCENARIOS``):

  baseline            no fault — the yardstick
  cpu_starvation      CPU_HOGS busy processes on the machine for the whole run
  broker_kill         the platform goes offline; Mosquitto is killed -9 mid-run and restarted;
                      the platform comes back, finds its gaps by seq and asks each unit to
                      replay them (signed ``replay_events``)
  broker_restart      Mosquitto stopped gracefully (SIGTERM, persistence on: what ``systemctl
                      restart mosquitto`` does) for BROKER_DOWN_S mid-run, then started again
  declared_offline    70 % of the vehicles declared in advance (signed pre-decisions at the lanes);
                      Mosquitto stopped for DECLARED_DOWN_S mid-run: every declared vehicle that
                      arrives meanwhile is released by its lane on time (pre-decisions), every
                      undeclared one holds (``platform_unreachable``) until the platform is back
  replay_storm        mid-run, a consumer asks every unit for a full replay of its stream: old
                      events arrive again, out of order with the new ones
  lane_kill           lane daemon killed -9 with the arm open (a vehicle under way), restarted
  scanner_kill        scanner daemon killed -9 mid-scan, restarted
  serial_noise        line noise and lost frames on an RS-485 gate bus during a release
  modbus_exception    a Modbus gate answers "slave device busy" (exception 6) during a release
  disk_full           a lane's state directory fills up mid-run (private tmpfs)
  readonly_state      a lane's state directory is on a read-only filesystem at start

Each reports passages completed (of the planned), events lost after replay (per unit and
epoch, from the durable subscriber), duplicates, stuck lanes (stage, sensors, arm), and the
recovery time after the fault (fault → the lane completed its next passage, or all units
drained). A scenario passes with every vehicle through, 0 lost, 0 stuck.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from portlane.edge.config import load_site
from portlane.edge.contract.times import parse_rfc3339
from portlane.edge.demo.broker import MosquittoBroker
from portlane.edge.demo.observer import EventObserver
from portlane.edge.demo.options import DEFAULT_SITE, SITES_DIR, load_demo_site
from portlane.edge.demo.predecisions import trips
from portlane.edge.demo.sitegen import demo_site
from portlane.edge.platform import CentralPlatform
from portlane.edge.platform.declarations import Declarations, Policy
from portlane.edge.platform.lanes import lane_infos
from portlane.edge.trust.pki import provision_unit_keys
from portlane.sim_devices.catalog import SiteSims, start_site
from portlane.sim_devices.scanner import PlcState, ScannerWorld
from portlane.sim_devices.traffic import make_plan, run_lane
from portlane.sim_devices.world import LaneWorld

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import cpu_hogs, machine, markdown_table

#: Physical time ×0.1, as the demo.
TIME_FACTOR = 0.1
#: Busy processes for cpu_starvation: three on a 2-core machine is what wedged the demo.
CPU_HOGS = 3
#: A daemon process must be online (retained status) within this long after it starts.
DAEMON_START_S = 60.0
#: The whole run (all vehicles) must finish within this long, faults included (a fault-free
#: run of 24 vehicles on 4 lanes takes about 30 s on the 2-core machine).
RUN_TIMEOUT_S = 150.0
#: After a fault is cleared, the faulty lane must complete its passage within this long.
RECOVER_S = 60.0
#: After the run: the units' last events and the replays must arrive within this long.
SETTLE_S = 30.0
#: How long the broker stays down in broker_restart (a restart whose start is slow; the units
#: and the platform keep running and reconnect with backoff).
BROKER_DOWN_S = 20.0
#: declared_offline: how long the broker is down (the issue's 30 s), the lanes' decision timeout
#: (so that an undeclared vehicle held meanwhile says ``platform_unreachable``), and how long a
#: declared vehicle may take from arrival to the gate open and still be on time (about 0.5 s in
#: a fault-free run: 5 s of physical time; the outage is 300 s of physical time).
DECLARED_DOWN_S = 30.0
DECLARED_DECISION_TIMEOUT_S = 8.0
ON_TIME_S = 3.0
#: A daemon's graceful stop (SIGTERM: flush, publish offline) before it is killed.
STOP_S = 15.0
#: tmpfs size for disk_full / readonly_state: room for the lane's state, filled by a ballast.
SMALL_FS_KB = 4096


@dataclass
class Result:
    scenario: str
    passages: int = 0
    vehicles: int = 0  # driven through the barrier (the rest gave up waiting)
    planned: int = 0
    lost_after_replay: int | None = None
    lost_by_unit: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    stuck: dict[str, Any] = field(default_factory=dict)
    recovery_s: float | None = None
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # a scenario's own figures

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and self.passages >= self.planned
            and self.vehicles == self.planned
            and self.lost_after_replay == 0
            and not self.stuck
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "ok": self.ok,
            "passages": f"{self.passages}/{self.planned}",
            "vehicles_through": self.vehicles,
            "lost_after_replay": self.lost_after_replay,
            "lost_by_unit": self.lost_by_unit,
            "duplicates": self.duplicates,
            "stuck_lanes": len(self.stuck),
            "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 1),
            "wall_s": round(self.wall_s, 1),
            "notes": "; ".join(self.notes),
            "error": self.error,
            "stuck": self.stuck,
            **({"details": self.details} if self.details else {}),
        }


class Daemon:
    """One ``portlane daemon lane|scanner`` process, restartable, with its own state dir."""

    def __init__(self, kind: str, unit: str, site_file: Path, root: Path, *, wrap: list[str] | None = None) -> None:
        self.kind, self.unit, self.site_file = kind, unit, site_file
        self.state_dir = root / f"state-{unit}"
        self.state_dir.mkdir(exist_ok=True)
        self.log = root / f"{unit}.log"
        self.control = root / f"control-{unit}.sock"
        self.wrap = wrap or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.exits: list[int] = []

    def start(self) -> None:
        env = {
            **os.environ,
            "PYTHONWARNINGS": "ignore",
            "STATE_DIRECTORY": str(self.state_dir),
            "PORTLANE_CONTROL": str(self.control),
            "PORTLANE_RECOGNITION": str(self.control.with_suffix(".none")),
        }
        env.pop("NOTIFY_SOCKET", None)
        flag = "--lane" if self.kind == "lane" else "--scanner"
        argv = [sys.executable, "-m", "portlane.edge", "daemon", self.kind, "--site", str(self.site_file), flag]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([*self.wrap, *argv, self.unit], stdout=log, stderr=log, env=env)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    async def wait_exit(self, within: float) -> int | None:
        if self.proc is None:
            return None
        try:
            rc = await asyncio.wait_for(asyncio.to_thread(self.proc.wait), within)
        except TimeoutError:
            self.proc.kill()
            rc = await asyncio.to_thread(self.proc.wait)
        self.exits.append(rc)
        return rc

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill(signal.SIGTERM)
            await self.wait_exit(STOP_S)

    def last_lines(self, n: int = 3) -> str:
        try:
            lines = [x for x in self.log.read_text(errors="replace").splitlines() if x.strip()]
        except OSError:
            return ""
        return " | ".join(lines[-n:])[-600:]


class Port:
    """The simulated port of one chaos run (see the module docstring)."""

    # What bench/scale.py (lanes, latency, soak) changes: the platform's class (it times its
    # commands), its think time and inspection ratio, and how long many daemons may take to start.
    central_cls: type[CentralPlatform] = CentralPlatform
    think_s: float = 2.0 * TIME_FACTOR
    inspect_ratio: float = 0.3
    start_timeout_s: float = DAEMON_START_S
    # declared_offline: the share declared in advance, and the lanes' decision timeout.
    declared: float = 0.0
    decision_timeout_s: float | None = None

    def __init__(self, lanes: int, vehicles: int, seed: int, root: Path) -> None:
        self.root = root
        raw = demo_site(load_demo_site(DEFAULT_SITE), lanes, cameras=False)
        self.raw = raw
        self.lane_ids = [lane["id"] for lane in raw["lanes"]]
        self.scanner_ids = [s["id"] for s in raw.get("scanners", [])]
        kinds = {lane["id"]: lane["kind"] for lane in raw["lanes"]}
        self.plan = make_plan(kinds, vehicles, seed=seed, swapped_ratio=0.0)
        self.seed = seed
        self.worlds = {lid: LaneWorld(lid, time_factor=TIME_FACTOR) for lid in self.lane_ids}
        self.scanner_world = ScannerWorld(time_factor=TIME_FACTOR, seed=seed)
        self.broker = MosquittoBroker(persistence_dir=root / "mosquitto")
        self.sims: SiteSims | None = None
        self.daemons: dict[str, Daemon] = {}
        self.live: EventObserver | None = None
        self.platform: EventObserver | None = None
        self.central: CentralPlatform | None = None
        self.declarations: Declarations | None = None
        self.tasks: list[asyncio.Task[Any]] = []
        self.traffic: list[asyncio.Task[list[bool]]] = []
        self.site_file = root / "site.yaml"

    # ------------------------------------------------------------------ start and stop
    async def start(self, *, wrap: dict[str, list[str]] | None = None, skip: tuple[str, ...] = ()) -> None:
        """Start everything; wait until every daemon but ``skip`` is online."""
        await self.broker.start()
        self.sims = await start_site(
            self.raw,
            self.worlds,
            scanner_worlds={sid: self.scanner_world for sid in self.scanner_ids},
            time_factor=TIME_FACTOR,
        )
        site = json.loads(json.dumps(self.raw))
        for lane in site["lanes"]:
            for dev, cfg in lane["devices"].items():
                if dev in self.sims.links["lanes"][lane["id"]] and dev != "cameras":
                    cfg["link"] = self.sims.links["lanes"][lane["id"]][dev]
        for s in site.get("scanners", []):
            s["device"]["link"] = self.sims.links["scanners"][s["id"]]
        site["broker"] = {"url": self.broker.url, "protocol": "5"}
        site["state_dir"] = str(self.root / "state")
        site = provision_unit_keys(site, self.root / "keys")  # units sign their events, as on a site
        if self.decision_timeout_s is not None:
            site["platform"]["decision_timeout_s"] = self.decision_timeout_s
        self.site_file.write_text(yaml.safe_dump(site, allow_unicode=True, sort_keys=False), encoding="utf-8")
        loaded = load_site(self.site_file)  # what the platform believes: the units' keys of the site file
        if self.declared:
            policy = Policy(share=self.declared, mix={}, time_factor=TIME_FACTOR, seed=self.seed, run="pd")
            self.declarations = Declarations.plan(trips(self.plan), lane_infos(loaded), policy)
        self.tasks += [asyncio.create_task(w.run(), name=f"{lid}-physics") for lid, w in self.worlds.items()]
        self.tasks.append(asyncio.create_task(self.scanner_world.run(), name="scanner-physics"))
        # Persistent too: what the lanes flush from their outboxes right after a broker restart,
        # before this subscriber is back, is kept for it (a clean session would miss it and the
        # run would look unfinished).
        self.live = EventObserver(
            self.broker.url, site["site"]["id"], client_id="chaos-live", protocol="5", persistent_session=True
        )
        self.platform = EventObserver(
            self.broker.url, site["site"]["id"], client_id="chaos-platform", protocol="5", persistent_session=True
        )
        keys = yaml.safe_load((SITES_DIR.parent / "demo_keys.yaml").read_text(encoding="utf-8"))
        self.central = self.central_cls(
            loaded,
            key_id=keys["key_id"],
            private_key_b64=keys["private_key"],
            inspect_ratio=self.inspect_ratio,
            seed=self.seed,
            think_s=self.think_s,
            registrations=self.plan.registrations,
            declarations=self.declarations,
        )
        self.tasks += [
            asyncio.create_task(self.live.link.run(), name="live"),
            asyncio.create_task(self.platform.link.run(), name="platform"),
            asyncio.create_task(self.central.run(), name="central"),
        ]
        for unit in self.lane_ids:
            self.daemons[unit] = Daemon("lane", unit, self.site_file, self.root, wrap=(wrap or {}).get(unit))
        for unit in self.scanner_ids:
            self.daemons[unit] = Daemon("scanner", unit, self.site_file, self.root, wrap=(wrap or {}).get(unit))
        # Both subscribers are subscribed before the first daemon publishes anything.
        async with asyncio.timeout(self.start_timeout_s):
            await self.live.link.wait_subscribed()
            await self.platform.link.wait_subscribed()
            await self.central.wait_connected()
        for d in self.daemons.values():
            d.start()
        await self.wait_online([u for u in self.daemons if u not in skip], self.start_timeout_s)
        if self.declarations is not None:  # lodged before the traffic, each answered
            async with asyncio.timeout(self.start_timeout_s):
                await self.central.wait_registered(self.lane_ids)
                await self.central.declare()

    async def wait_online(self, units: list[str], within: float) -> None:
        assert self.live is not None
        live = self.live

        def online() -> bool:
            return all(live.units[u].last_status.get("state") == "online" for u in units)

        try:
            await live.wait_for(online, timeout=within)
        except TimeoutError:
            late = [u for u in units if live.units[u].last_status.get("state") != "online"]
            raise RuntimeError(
                f"not online within {within:.0f} s: "
                + "; ".join(f"{u} (rc {self.daemons[u].proc.poll() if self.daemons[u].proc else None}: "
                            f"{self.daemons[u].last_lines()})" for u in late)
            ) from None  # fmt: skip

    def drive(self) -> None:
        self.traffic = [
            asyncio.create_task(run_lane(self.worlds[lid], vs, headway_s=1.0, give_up_s=120.0), name=f"traffic-{lid}")
            for lid, vs in self.plan.per_lane.items()
        ]

    def completed(self, lane: str | None = None) -> int:
        assert self.live is not None
        return sum(
            1
            for e in self.live.events
            if e["type"] == "portlane.passage.completed" and (lane is None or e["source"].endswith(f"/{lane}"))
        )

    async def wait_all_completed(self, within: float) -> bool:
        """Every vehicle driven through (or given up) and as many passages completed: a lane
        that completes a recovered passage after a restart has not finished its traffic."""
        assert self.live is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await asyncio.wait(self.traffic)
                await self.live.wait_for(self.every_lane_done, timeout=within)
        return self.every_lane_done() and all(t.done() for t in self.traffic)

    def every_lane_done(self) -> bool:
        """Per lane: as many passages completed as vehicles planned (a lane restarted mid-passage
        completes that passage as recovered, so the site total alone could run ahead)."""
        return all(self.completed(lid) >= len(vs) for lid, vs in self.plan.per_lane.items())

    def extra_completions(self) -> str:
        """The completions of lanes that completed more passages than they had vehicles."""
        assert self.live is not None
        out = []
        for lid, vs in self.plan.per_lane.items():
            done = [
                e["data"]
                for e in self.live.events
                if e["type"] == "portlane.passage.completed" and e["source"].endswith(f"/{lid}")
            ]
            if len(done) > len(vs):
                outcomes = ", ".join(f"{d.get('passage_id')}: {d.get('outcome')}" for d in done)
                out.append(f"{lid} {len(done)} for {len(vs)} vehicles ({outcomes})")
        return "; ".join(out)

    def vehicles_through(self) -> int:
        return sum(sum(t.result()) for t in self.traffic if t.done() and not t.cancelled() and not t.exception())

    async def close(self) -> None:
        for t in self.traffic:
            t.cancel()
        await asyncio.gather(*(d.stop() for d in self.daemons.values()))
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.traffic, *self.tasks, return_exceptions=True)
        if self.sims is not None:
            await self.sims.close()
        await self.broker.close()

    # ------------------------------------------------------------------ accounting
    async def stuck_lanes(self) -> dict[str, Any]:
        """Lanes that did not finish: what the daemon says now (its control socket), and the
        physical lane (the simulator's world)."""
        from portlane.edge.ops.control import request

        assert self.live is not None
        out: dict[str, Any] = {}
        gave_up: dict[str, int] = {}
        for lid, task in zip(self.plan.per_lane, self.traffic, strict=False):
            if task.done() and not task.cancelled() and task.exception() is None:
                gave_up[lid] = sum(1 for passed in task.result() if not passed)
        for lid in self.lane_ids:
            planned = len(self.plan.per_lane.get(lid, []))
            done = self.completed(lid)
            w = self.worlds[lid]
            if done >= planned and w.vehicle is None:
                continue
            st: dict[str, Any] = dict(self.live.units[lid].last_status)
            st["source"] = "retained status"
            with contextlib.suppress(Exception):
                answer = await request(self.daemons[lid].control, "status", timeout_s=3.0)
                if answer.get("ok", True) and answer.get("lanes"):
                    st = {**answer["lanes"][0], "state": "online", "source": "control socket"}
            out[lid] = {
                "passages": f"{done}/{planned}",
                "daemon": st.get("state"),
                "stage": st.get("stage"),
                "passage_id": st.get("passage_id"),
                "in_service": st.get("in_service"),
                "vehicle_position": w.position.value,
                "arm_angle": round(w.arm_angle, 1),
                "light": w.light,
                "drivers_gave_up": gave_up.get(lid),
                "from": st["source"],
            }
        return out

    async def settle_and_replay(self, result: Result) -> None:
        """Stop the daemons gracefully (their offline status carries their last seq), then let
        the durable subscriber find its gaps and ask for them again."""
        assert self.platform is not None and self.central is not None
        platform, central = self.platform, self.central
        await asyncio.gather(*(d.stop() for d in self.daemons.values()))
        expected = {u: int(platform.units[u].last_status.get("last_seq", 0)) for u in self.daemons}
        with contextlib.suppress(TimeoutError):
            await platform.wait_for(lambda: all(platform.units[u].max_seq >= s for u, s in expected.items()), SETTLE_S)
        gaps = {u: platform.gaps(u) for u in self.daemons if platform.gaps(u)}
        if gaps:
            result.notes.append(f"gaps before replay: {_ranges(gaps)}")
            for d in self.daemons.values():  # a replay needs the unit running
                if d.unit in gaps:
                    d.start()
            await self.wait_online(list(gaps), DAEMON_START_S)
            for unit, ranges in gaps.items():
                for lo, hi in ranges:
                    answer = await central.request_replay(unit, lo, hi)
                    if not answer.get("ok"):
                        result.notes.append(f"{unit} refused replay_events {lo}..{hi}: {answer.get('reason')}")
            with contextlib.suppress(TimeoutError):
                await platform.wait_for(lambda: not any(platform.gaps(u) for u in gaps), SETTLE_S)
            await asyncio.gather(*(self.daemons[u].stop() for u in gaps))
        result.lost_by_unit = {
            u: n
            for u, s in expected.items()
            if (n := len(platform.units[u].missing(max(s, platform.units[u].max_seq))))
        }
        result.lost_after_replay = sum(result.lost_by_unit.values())
        result.duplicates = platform.duplicates
        if platform.restarts:
            result.notes.append(f"{platform.restarts} stream restarts (new epoch)")


def _ranges(gaps: dict[str, list[tuple[int, int]]]) -> str:
    return ", ".join(f"{u} {' '.join(f'{a}..{b}' for a, b in r)}" for u, r in gaps.items())


# ---------------------------------------------------------------------- scenarios
Scenario = Callable[[Port, Result], Awaitable[None]]


async def _run_plain(port: Port, result: Result) -> None:
    port.drive()
    await port.wait_all_completed(RUN_TIMEOUT_S)


async def baseline(port: Port, result: Result) -> None:
    await _run_plain(port, result)


async def cpu_starvation(port: Port, result: Result) -> None:
    async with cpu_hogs(CPU_HOGS):
        await _run_plain(port, result)
    result.notes.append(f"{CPU_HOGS} busy processes")


async def broker_kill(port: Port, result: Result) -> None:
    assert port.platform is not None and port.live is not None
    # The platform goes offline (its session and queue stay on the broker)…
    await port.platform.link.close()
    port.drive()
    await port.live.wait_for(lambda: port.completed() >= port.plan.total // 3, timeout=RUN_TIMEOUT_S)
    # …and the broker dies before it saved that queue.
    await port.broker.stop()
    t_fault = time.monotonic()
    await port.broker.start()
    # The platform comes back (same client id, persistent session).
    port.platform = EventObserver(
        port.broker.url, port.platform.site, client_id="chaos-platform", protocol="5", persistent_session=True
    )
    port.tasks.append(asyncio.create_task(port.platform.link.run(), name="platform-again"))
    await port.wait_all_completed(RUN_TIMEOUT_S)
    result.recovery_s = time.monotonic() - t_fault
    result.notes.append("recovery = broker restart → every vehicle through")


async def broker_restart(port: Port, result: Result) -> None:
    assert port.live is not None
    port.drive()
    await port.live.wait_for(lambda: port.completed() >= port.plan.total // 3, timeout=RUN_TIMEOUT_S)
    # A graceful stop: Mosquitto saves its persistent sessions and retained messages.
    await port.broker.stop(graceful=True)
    t_fault = time.monotonic()
    # The broker is really down this long: nothing to wait on but the clock.
    await asyncio.sleep(BROKER_DOWN_S)
    await port.broker.start()
    await port.wait_all_completed(RUN_TIMEOUT_S)
    result.recovery_s = time.monotonic() - t_fault
    result.notes.append(f"broker down {BROKER_DOWN_S:.0f} s (graceful stop, persistence on)")


async def declared_offline(port: Port, result: Result) -> None:
    assert port.live is not None and port.platform is not None and port.declarations is not None
    port.drive()
    await port.live.wait_for(lambda: port.completed() >= port.plan.total // 4, timeout=RUN_TIMEOUT_S)
    await port.broker.stop(graceful=True)
    down, t_fault = time.time(), time.monotonic()
    # The broker is really down this long: nothing to wait on but the clock.
    await asyncio.sleep(DECLARED_DOWN_S)
    up = time.time()
    await port.broker.start()
    await port.wait_all_completed(RUN_TIMEOUT_S)
    result.recovery_s = time.monotonic() - t_fault
    platform = port.platform
    with contextlib.suppress(TimeoutError):  # the durable subscriber has every completion
        await platform.wait_for(lambda: _completions(platform.events) >= port.plan.total, SETTLE_S)
    window = result.details = offline_window(platform.events, port.declarations, down, up, DECLARED_DECISION_TIMEOUT_S)
    result.notes.append(
        f"broker down {DECLARED_DOWN_S:.0f} s: declared {window['released_on_time']}/{window['declared']} "
        f"released on time (arrival → gate open max {window['declared_max_s']} s), undeclared "
        f"{window['held']}/{window['undeclared']} held ({window['platform_unreachable']} platform_unreachable)"
    )
    if window["problems"]:
        result.error = "; ".join(window["problems"])[:800]


def _completions(events: list[dict[str, Any]]) -> int:
    return len({e["data"]["passage_id"] for e in events if e["type"] == "portlane.passage.completed"})


def offline_window(
    events: list[dict[str, Any]], declarations: Declarations, down: float, up: float, decision_timeout_s: float
) -> dict[str, Any]:
    """The vehicles that arrived while the broker was down (UNIX times ``down``..``up``): each
    declared one released on its pre-decisions within ON_TIME_S of arriving, before the broker
    was back; each undeclared one held until it was back, with ``platform_unreachable`` once it
    had waited ``decision_timeout_s``."""
    by_tag = declarations.by_tag()
    tag: dict[str, str] = {}
    unreachable: set[str] = set()
    completed: dict[str, dict[str, Any]] = {}
    for e in events:
        t, d = e["type"].removeprefix("portlane."), e["data"]
        if t == "vehicle.identified" and d.get("tag_id"):
            tag[d["passage_id"]] = d["tag_id"]
        elif t == "lane.exception" and d.get("kind") == "platform_unreachable":
            unreachable.add(str(d.get("passage_id")))
        elif t == "passage.completed":
            completed.setdefault(d["passage_id"], d)
    out: dict[str, Any] = {"declared": 0, "released_on_time": 0, "declared_max_s": 0.0}
    out |= {"undeclared": 0, "held": 0, "platform_unreachable": 0, "problems": []}
    for pid, d in completed.items():
        when = {k: parse_rfc3339(v).timestamp() for k, v in d.get("stages", {}).items()}
        if not down <= when.get("arrived", 0.0) <= up:
            continue
        plan = by_tag.get(tag.get(pid, ""))
        opened = when.get("gate_opened")
        if plan is not None and plan.declared:
            out["declared"] += 1
            took = (opened or float("inf")) - when["arrived"]
            out["declared_max_s"] = max(out["declared_max_s"], round(took, 2))
            if d.get("release_basis") == "predecision" and took <= ON_TIME_S and (opened or up) < up:
                out["released_on_time"] += 1
            else:
                out["problems"].append(f"declared {plan.trip.vid} ({pid}): {d.get('release_basis')}, {took:.1f} s")
            continue
        out["undeclared"] += 1
        held = opened is None or opened >= up
        out["held"] += held
        if not held:
            out["problems"].append(f"undeclared {pid} released at {opened} while the broker was down")
        waited = up - when.get("identified", up)
        if pid in unreachable:
            out["platform_unreachable"] += 1
        elif waited > decision_timeout_s + 2.0:
            out["problems"].append(f"undeclared {pid} waited {waited:.0f} s without platform_unreachable")
    if not out["declared"] or not out["undeclared"]:
        out["problems"].append(f"the window shows nothing: {out['declared']} declared, {out['undeclared']} undeclared")
    return out


async def replay_storm(port: Port, result: Result) -> None:
    assert port.live is not None and port.central is not None
    central = port.central
    port.drive()
    await port.live.wait_for(lambda: port.completed() >= port.plan.total // 3, timeout=RUN_TIMEOUT_S)
    t_fault = time.monotonic()
    # Every unit re-sends everything it still holds, with the original ids: the lanes and the
    # scanner see old events again, after newer ones; nothing may move back or happen twice.
    answers = await asyncio.gather(*(central.request_replay(u, 1) for u in port.daemons))
    replayed = sum(int(a.get("ok", False)) for a in answers)
    await port.wait_all_completed(RUN_TIMEOUT_S)
    result.recovery_s = time.monotonic() - t_fault
    result.notes.append(f"{replayed} of {len(port.daemons)} units replayed their whole stream")
    if replayed != len(port.daemons):
        result.error = f"replay refused or unanswered: {answers}"


async def _wait_world(pred: Callable[[], bool], world: Any, within: float) -> None:
    await world.wait_until(pred, timeout=within)


async def lane_kill(port: Port, result: Result) -> None:
    lane = port.lane_ids[0]
    w = port.worlds[lane]
    port.drive()
    # Mid-passage with the arm open (the release came, the vehicle has not passed yet).
    await _wait_world(lambda: w.vehicle is not None and w.arm_angle >= 45.0, w, RUN_TIMEOUT_S)
    before, angle = port.completed(lane), w.arm_angle
    port.daemons[lane].kill()
    await port.daemons[lane].wait_exit(5)
    t_fault = time.monotonic()
    port.daemons[lane].start()
    await port.wait_online([lane], DAEMON_START_S)
    assert port.live is not None
    with contextlib.suppress(TimeoutError):
        await port.live.wait_for(lambda: port.completed(lane) > before, timeout=RECOVER_S)
        result.recovery_s = time.monotonic() - t_fault
    result.notes.append(f"killed {lane} with the arm at {angle:.0f}°; recovery = restart → next passage done")
    await port.wait_all_completed(RECOVER_S if result.recovery_s is None else RUN_TIMEOUT_S)


async def scanner_kill(port: Port, result: Result) -> None:
    if not port.scanner_ids:
        result.error = "the site has no scanner"
        return
    unit = port.scanner_ids[0]
    sw = port.scanner_world
    started = sw.scans_started
    port.drive()
    # the scan's start, counted: a loaded event loop can wake this waiter only after a short scan
    # (1-4 s here) has ended, and a SCANNING state looked for then is never seen again
    await _wait_world(lambda: sw.state == PlcState.SCANNING or sw.scans_started > started, sw, RUN_TIMEOUT_S)
    mid_scan = sw.state == PlcState.SCANNING
    port.daemons[unit].kill()
    await port.daemons[unit].wait_exit(5)
    t_fault = time.monotonic()
    port.daemons[unit].start()
    await port.wait_online([unit], DAEMON_START_S)
    done = await port.wait_all_completed(RUN_TIMEOUT_S)
    if done:
        result.recovery_s = time.monotonic() - t_fault
    result.notes.append(
        f"killed {'mid-scan' if mid_scan else 'just after a scan'}; recovery = restart → every vehicle through"
    )


async def _during_release(port: Port, lane: str, inject: Callable[[], None], clear: Callable[[], None]) -> float | None:
    """Inject a fault when ``lane``'s passage is decided (before the gate is told to open);
    clear it once the lane completed that passage or after 10 s (simulated 100 s)."""
    assert port.live is not None
    live = port.live
    decided = asyncio.Event()
    live.on_event(
        lambda e: (
            decided.set() if e["type"] == "portlane.passage.decided" and e["source"].endswith(f"/{lane}") else None
        )
    )
    port.drive()
    await asyncio.wait_for(decided.wait(), RUN_TIMEOUT_S)
    before = port.completed(lane)
    inject()
    t_fault = time.monotonic()
    with contextlib.suppress(TimeoutError):
        await live.wait_for(lambda: port.completed(lane) > before, timeout=10.0)
    clear()
    recovery: float | None = None
    with contextlib.suppress(TimeoutError):
        await live.wait_for(lambda: port.completed(lane) > before, timeout=RECOVER_S)
        recovery = time.monotonic() - t_fault
    await port.wait_all_completed(RECOVER_S if recovery is None else RUN_TIMEOUT_S)
    return recovery


async def serial_noise(port: Port, result: Result) -> None:
    assert port.sims is not None
    lane = next(la["id"] for la in port.raw["lanes"] if la["devices"]["gate"]["backend"] == "rs485")
    inj = port.sims.faults[f"{lane}/gate"]

    def storm() -> None:
        inj.noise, inj.drop, inj.corrupt = 0.5, 0.2, 0.2

    def calm() -> None:
        inj.noise = inj.drop = inj.corrupt = 0.0

    # TODO(drivers): richer storms (bursts on the bus, garbage between frames) land as new
    # FaultInjector knobs; set them in storm() here.
    result.recovery_s = await _during_release(port, lane, storm, calm)
    result.notes.append(f"{lane} gate bus: noise 0.5, drop 0.2, corrupt 0.2 from the decision on")


async def modbus_exception(port: Port, result: Result) -> None:
    assert port.sims is not None
    lane = next((la["id"] for la in port.raw["lanes"] if la["devices"]["gate"]["backend"].startswith("modbus")), None)
    if lane is None:
        result.error = "no Modbus gate among the lanes (use --lanes 3 or more)"
        return
    inj = port.sims.faults[f"{lane}/gate"]

    def busy() -> None:
        inj.exception = 6  # SLAVE DEVICE BUSY

    def free() -> None:
        inj.exception = 0

    # TODO(drivers): a knob for "exception on writes only" or "on the next N requests" makes
    # this a sharper test of the open command's retry; use it here when it lands.
    result.recovery_s = await _during_release(port, lane, busy, free)
    result.notes.append(f"{lane} Modbus gate answered exception 6 from the decision on")


def _tmpfs_wrap(root: Path, unit: str, *, size_kb: int, readonly: bool) -> list[str] | None:
    """argv prefix that runs a daemon in a private mount namespace whose state directory is a
    small tmpfs (read-only when asked). None when namespaces are not available."""
    exe = shutil.which("unshare")
    if exe is None or subprocess.run([exe, "--user", "--map-root-user", "--mount", "true"]).returncode != 0:
        return None
    state = root / f"state-{unit}"
    state.mkdir(exist_ok=True)
    script = f'mount -t tmpfs -o size={size_kb}k tmpfs "{state}"'
    if readonly:
        script += f' && mount -o remount,ro "{state}"'
    return [exe, "--user", "--map-root-user", "--mount", "sh", "-c", script + ' && exec "$0" "$@"']


def _fill(path: Path) -> int:
    """Write ``path`` until the filesystem is full; returns the bytes written."""
    n = 0
    chunk = b"\0" * 65536
    with contextlib.suppress(OSError), path.open("wb") as f:
        while True:
            f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
            n += len(chunk)
    return n


async def disk_full(port: Port, result: Result) -> None:
    """The lane's state filesystem fills up mid-run (a ballast file, written through the
    daemon's own view of its mount namespace), then space comes back."""
    assert port.live is not None
    lane = port.lane_ids[-1]
    d = port.daemons[lane]
    assert d.proc is not None
    port.drive()
    await port.live.wait_for(lambda: port.completed(lane) >= 1, timeout=RUN_TIMEOUT_S)
    ballast = Path(f"/proc/{d.proc.pid}/root") / d.state_dir.relative_to("/") / "ballast"
    if not ballast.parent.is_dir():
        raise RuntimeError(f"{lane} daemon gone (rc {d.proc.poll()}): {d.last_lines(4)}")
    try:
        ballast.touch()
    except OSError as exc:
        cmd = (await asyncio.to_thread(Path(f"/proc/{d.proc.pid}/cmdline").read_bytes))[:200]
        raise RuntimeError(f"cannot write {ballast} ({exc}); pid {d.proc.pid} runs {cmd!r}") from exc
    filled = await asyncio.to_thread(_fill, ballast)
    before = port.completed(lane)
    t_fault = time.monotonic()
    with contextlib.suppress(TimeoutError):  # the lane must notice: an event that cannot be written
        await port.live.wait_for(lambda: port.live is not None and any(
            e["type"] == "portlane.lane.exception" and e["source"].endswith(f"/{lane}") for e in port.live.events
        ), timeout=20.0)  # fmt: skip
    try:
        ballast.unlink()
    except OSError as exc:
        raise RuntimeError(f"{lane} daemon gone with its namespace (rc {d.proc.poll()}): {d.last_lines(8)}") from exc
    with contextlib.suppress(TimeoutError):
        await port.live.wait_for(lambda: port.completed(lane) > before, timeout=RECOVER_S)
        result.recovery_s = time.monotonic() - t_fault
    result.notes.append(f"{lane}: {SMALL_FS_KB} kB tmpfs filled ({filled // 1024} kB ballast), then freed")
    await port.wait_all_completed(RECOVER_S if result.recovery_s is None else RUN_TIMEOUT_S)
    if "no space left" in d.last_lines(200):
        result.notes.append(f"{lane} logged: no space left on the device")


async def readonly_state(port: Port, result: Result) -> None:
    """A lane whose state directory is read-only must say so in one line and exit with the
    daemons' start-failure code (EXIT_CONFIG, 78: systemd does not restart it); the other lanes
    carry on."""
    lane = port.lane_ids[-1]
    d = port.daemons.pop(lane)
    rc = await d.wait_exit(DAEMON_START_S)
    text = d.log.read_text(errors="replace") if d.log.exists() else ""
    lines = [x for x in text.splitlines() if x.strip()]
    result.notes.append(f"{lane} exited rc {rc}: {(lines[-1] if lines else '')[-240:]}")
    from portlane.edge.errors import EXIT_CONFIG

    if rc != EXIT_CONFIG or "Traceback" in text or not any("read-only" in x for x in lines):
        result.error = f"{lane}: expected one line naming the read-only filesystem and exit {EXIT_CONFIG}"
    await _run_plain(port, result)


SCENARIOS: dict[str, Scenario] = {
    "baseline": baseline,
    "cpu_starvation": cpu_starvation,
    "broker_kill": broker_kill,
    "broker_restart": broker_restart,
    "declared_offline": declared_offline,
    "replay_storm": replay_storm,
    "lane_kill": lane_kill,
    "scanner_kill": scanner_kill,
    "serial_noise": serial_noise,
    "modbus_exception": modbus_exception,
    "disk_full": disk_full,
    "readonly_state": readonly_state,
}


async def run_scenario(name: str, lanes: int, vehicles: int, seed: int) -> Result:
    result = Result(name)
    root = Path(tempfile.mkdtemp(prefix=f"portlane-chaos-{name}-"))
    port = Port(lanes, vehicles, seed, root)
    result.planned = port.plan.total
    t0 = time.monotonic()
    wrap: dict[str, list[str]] = {}
    if name in ("disk_full", "readonly_state"):
        w = _tmpfs_wrap(root, port.lane_ids[-1], size_kb=SMALL_FS_KB, readonly=name == "readonly_state")
        if w is None:
            result.error = "needs unshare and user namespaces (a private tmpfs)"
            return result
        wrap[port.lane_ids[-1]] = w
    if name == "declared_offline":
        port.declared, port.decision_timeout_s = 0.7, DECLARED_DECISION_TIMEOUT_S
    if name == "scanner_kill":  # a scan is certain: at 0.3, 3 lanes could see no cargo scan at all
        port.inspect_ratio = 1.0
    skip: tuple[str, ...] = ()
    if name == "readonly_state":  # that lane cannot start; its vehicles are not sent
        skip = (port.lane_ids[-1],)
        port.plan.per_lane[port.lane_ids[-1]] = []
        result.planned = port.plan.total
    try:
        await port.start(wrap=wrap, skip=skip)
        await SCENARIOS[name](port, result)
        result.passages = port.completed()
        result.vehicles = port.vehicles_through()
        result.stuck = await port.stuck_lanes()
        if result.passages > result.planned:
            result.notes.append(f"passage.completed beyond one per vehicle: {port.extra_completions()}")
        await port.settle_and_replay(result)
    except Exception as exc:  # a scenario that breaks the harness is reported, not raised
        result.error = f"{type(exc).__name__}: {exc}"[:800]
        with contextlib.suppress(Exception):
            result.passages = port.completed()
            result.vehicles = port.vehicles_through()
            result.stuck = await port.stuck_lanes()
    finally:
        result.wall_s = time.monotonic() - t0
        await port.close()
        shutil.rmtree(root, ignore_errors=True)
    return result


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="chaos scenarios over the simulated port")
    ap.add_argument("--only", default="", help="comma-separated scenarios (default: all)")
    ap.add_argument("--lanes", type=int, default=4)
    ap.add_argument("--vehicles", type=int, default=24)
    ap.add_argument("--seed", type=int, default=7)
    return ap


async def main(only: str = "", lanes: int = 4, vehicles: int = 24, seed: int = 7) -> dict[str, Any]:
    if not MosquittoBroker.available():
        return {"ok": False, "error": "needs mosquitto"}
    names = [n for n in only.split(",") if n] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        return {"ok": False, "error": f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}"}
    before = machine()
    results = []
    for name in names:
        r = await run_scenario(name, lanes, vehicles, seed)
        print(json.dumps(r.as_dict(), ensure_ascii=False), file=sys.stderr, flush=True)
        results.append(r.as_dict())
    cols = ["scenario", "ok", "passages", "lost_after_replay", "duplicates", "stuck_lanes", "recovery_s", "notes"]
    return {
        "ok": all(r["ok"] for r in results),
        "lanes": lanes,
        "vehicles": vehicles,
        "seed": seed,
        "results": results,
        "table": markdown_table(results, cols),
        "machine": before,
    }


if __name__ == "__main__":
    args = parser().parse_args()
    out = asyncio.run(main(**vars(args)))
    print(json.dumps(out, ensure_ascii=False))
    sys.exit(0 if out.get("ok") else 1)
