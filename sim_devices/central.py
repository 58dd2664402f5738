"""A central-platform simulator: the risk engine and the agencies, answering lanes over MQTT.

It speaks the MQTT contract from the platform's side, with its own code (it does not import
``portlane.edge``): it subscribes to the lanes' events, publishes signed decision commands,
shares the expected vehicles' registrations, corrects identities an officer would correct,
asks a unit to replay the events it is missing (``request_replay``: the signed
``replay_events`` command), and — for demos of the trust layer — injects forged, replayed,
expired and misdirected commands that every lane must reject.

A broker that dies (``kill -9``) takes with it what it had not delivered, in both directions,
and the platform's subscriptions until it reconnects. So, as a platform must:

* every event is handled once, by its envelope ``id`` (a replay or a redelivery is skipped);
* after a reconnect, each unit's status (``last_seq``, ``epoch``) is compared with the last
  ``seq`` received from it, and a unit that wrote events since asks to replay them — a
  ``vehicle.identified`` published while the platform was not subscribed still gets its
  decisions;
* a command the unit has not answered within ``COMMAND_RESEND_S`` is signed afresh (a new
  nonce) and sent again, up to ``COMMAND_ATTEMPTS`` times — a decision the broker lost still
  reaches the lane.

Commands are Ed25519-signed over a canonical JSON form (sorted keys, no whitespace, UTF-8,
integers and strings only), written here independently of the lane's verifier so that the
two implementations check each other.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import logging
import random
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import cargo_desk

__all__ = ["CentralPlatform", "canonical", "sign_command"]

log = logging.getLogger(__name__)

#: How long commands stay valid. Short: a command that sat in a queue is stale.
COMMAND_TTL_S = 60
#: A command not answered within this long is signed afresh and sent again (lost with a broker).
COMMAND_RESEND_S = 15.0
COMMAND_ATTEMPTS = 3
#: Event ids remembered for de-duplication (a replay re-sends at most a retention window).
SEEN_IDS = 20_000


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _ts(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def sign_command(
    key: Ed25519PrivateKey,
    key_id: str,
    *,
    cmd: str,
    site: str,
    lane: str,
    passage_id: str | None,
    args: dict[str, Any],
    now: dt.datetime,
    ttl_s: float = COMMAND_TTL_S,
    nonce: str | None = None,
) -> dict[str, Any]:
    body = {
        "v": 1,
        "cmd": cmd,
        "site": site,
        "lane": lane,
        "passage_id": passage_id,
        "args": args,
        "issued_at": _ts(now),
        "expires_at": _ts(now + dt.timedelta(seconds=ttl_s)),
        "nonce": nonce or base64.urlsafe_b64encode(secrets.token_bytes(18)).decode().rstrip("="),
        "key_id": key_id,
    }
    body["sig"] = base64.b64encode(key.sign(canonical(body))).decode()
    return body


@dataclass
class CentralStats:
    identified: int = 0
    commands_sent: int = 0
    inspections_ordered: int = 0
    forged_sent: int = 0
    corrections: int = 0
    diverts: int = 0
    responses_ok: int = 0
    responses_rejected: int = 0
    commands_resent: int = 0
    inspected_passages: set[str] = field(default_factory=set)


class CentralPlatform:
    def __init__(
        self,
        url: str,
        site: str,
        *,
        key_id: str,
        private_key_b64: str,
        lanes: dict[str, dict[str, Any]],  # lane id -> {"kind": cargo|passenger, "agencies": [...], "scanner": id|None}
        inspect_ratio: float = 0.25,
        forged: int = 0,
        seed: int = 0,
        think_s: float = 0.3,
        protocol: str = "auto",
        registrations: list[dict[str, Any]] | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        tls_files: tuple[str, str, str] | None = None,  # (CA, client cert, client key) for mqtts://
        cargo: cargo_desk.CargoDesk | None = None,  # the officers for radiation alarms and seals
    ) -> None:
        self.url = url
        self.tls_files = tls_files
        self.cargo = cargo
        self.site = site
        self.key_id = key_id
        self._key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(private_key_b64))
        self._rogue = Ed25519PrivateKey.generate()
        self.lanes = lanes
        self.inspect_ratio = inspect_ratio
        self.forged_left = forged
        self.rng = random.Random(seed)
        self.think_s = think_s
        self.protocol = protocol
        self.registrations = registrations or []
        self.clock = clock
        self.stats = CentralStats()
        self._sent: list[tuple[str, dict[str, Any]]] = []  # (topic, command) for replays
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._pending: set[asyncio.Task[None]] = set()
        self._answers: dict[str, asyncio.Future[dict[str, Any]]] = {}  # command nonce -> response
        self.registered: set[str] = set()  # lanes that accepted the registrations
        self._registered_changed = asyncio.Event()
        self._connections = 0  # broker sessions so far: a reconnect is any after the first
        self._seen_ids: dict[str, None] = {}  # id#digest, insertion-ordered, bounded (SEEN_IDS)
        self._last_seq: dict[str, tuple[int, int]] = {}  # unit -> (epoch, highest seq received)
        self._resynced: set[str] = set()  # units compared with their status since the reconnect

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def wait_registered(self, lanes: Iterable[str]) -> None:
        """Until every one of ``lanes`` has accepted the expected-vehicle registrations."""
        want = set(lanes)
        while not want <= self.registered:
            self._registered_changed.clear()
            await self._registered_changed.wait()

    async def run(self) -> None:
        tls = self.url.startswith("mqtts://")
        host, _, port = self.url.removeprefix("mqtts://").removeprefix("mqtt://").rstrip("/").partition(":")
        tls_params = None
        if self.tls_files is not None:
            ca, cert, key = self.tls_files
            tls_params = aiomqtt.TLSParameters(ca_certs=ca, certfile=cert, keyfile=key)
        # amqtt (the embedded broker) only speaks 3.1.1; anything else gets MQTT 5.
        proto = aiomqtt.ProtocolVersion.V311 if self.protocol == "3.1.1" else aiomqtt.ProtocolVersion.V5
        backoff = 0.1
        try:
            while True:
                try:
                    async with aiomqtt.Client(
                        host,
                        int(port or (8883 if tls else 1883)),
                        identifier=f"central-{self.site}",
                        protocol=proto,
                        tls_params=tls_params,
                    ) as client:
                        self._client = client
                        backoff = 0.1
                        prefix = f"portlane/v1/{self.site}"
                        await client.subscribe(f"{prefix}/+/event/vehicle.identified", qos=1)
                        await client.subscribe(f"{prefix}/+/event/scan.completed", qos=1)
                        for etype in self.cargo.events if self.cargo is not None else ():
                            await client.subscribe(f"{prefix}/+/event/{etype}", qos=1)
                        await client.subscribe(f"{prefix}/+/response", qos=1)
                        # Registrations go to each lane as a signed command when the lane comes
                        # online (its retained status says so): a lane trusts no unsigned list.
                        await client.subscribe(f"{prefix}/+/status", qos=1)
                        self._connections += 1
                        self._resynced.clear()
                        self._connected.set()
                        async for msg in client.messages:
                            try:
                                self._on_message(str(msg.topic), bytes(msg.payload))
                            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
                                # Anyone on an open broker can publish anything: a malformed
                                # message is skipped, it never ends the platform.
                                log.warning("central: malformed message on %s skipped (%r)", msg.topic, exc)
                except aiomqtt.MqttError as exc:
                    self._connected.clear()
                    self._client = None
                    log.debug("central: broker connection lost (%s)", exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
        finally:
            # Decisions under way end with the platform (they are re-made on the next run).
            for t in list(self._pending):
                t.cancel()

    # ------------------------------------------------------------------ decisions
    def _on_message(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        try:
            body = json.loads(payload)
        except ValueError:
            return
        if not isinstance(body, dict) or len(parts) < 5:
            return
        if parts[-1] == "status":
            lane = parts[3]
            if "specversion" in body and isinstance(body.get("data"), dict):
                # The signed unit.status event (its own seq is the newest the unit had written).
                body = {**body["data"], "last_seq": body.get("seq"), "epoch": body.get("epoch", 0)}
            if body.get("state") == "online":
                self._resync(lane, body)
                if lane in self.lanes:
                    self._spawn(self._send(lane, "expected_vehicles", None, {"vehicles": self.registrations}))
            return
        if parts[-1] == "response":
            if body.get("ok"):
                self.stats.responses_ok += 1
                if body.get("command") == "expected_vehicles":
                    self.registered.add(parts[3])
                    self._registered_changed.set()
            else:
                self.stats.responses_rejected += 1
            waiter = self._answers.pop(str(body.get("correlation_id")), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(body)
            return
        if not self._first_time(parts[3], body, payload):
            return  # redelivered or replayed: handled already
        etype, unit, data = parts[-1], parts[3], body.get("data", {})
        if etype == "vehicle.identified":
            self._spawn(self._decide(unit, data))
        elif etype == "scan.completed":
            self._spawn(self._verdicts(data["lane"], data))
        elif self.cargo is not None and etype in self.cargo.events:
            self._spawn(self._send_all(unit, self.cargo.on_event(etype, data)))

    def _first_time(self, unit: str, envelope: dict[str, Any], payload: bytes) -> bool:
        """Note an event's id and seq; False when it was handled before. A redelivery or a
        replay carries the very same bytes, so the key is the id with the payload's digest: a
        message that only claims a genuine event's id cannot make the genuine one be skipped."""
        eid = envelope.get("id")
        if not isinstance(eid, str):
            return True
        key = f"{eid}#{hashlib.sha256(payload).hexdigest()}"
        if key in self._seen_ids:
            return False
        self._seen_ids[key] = None
        if len(self._seen_ids) > SEEN_IDS:
            del self._seen_ids[next(iter(self._seen_ids))]
        seq, epoch = envelope.get("seq"), envelope.get("epoch", 0)
        if isinstance(seq, int) and isinstance(epoch, int):
            seen = self._last_seq.get(unit)
            if seen is None or (epoch, seq) > seen:
                self._last_seq[unit] = (epoch, seq)
        return True

    def _resync(self, unit: str, status: dict[str, Any]) -> None:
        """After a reconnect, the first status of each unit: replay what it wrote since the last
        event received from it (the broker may have lost it, or delivered it while the platform
        was not subscribed)."""
        if self._connections < 2 or unit in self._resynced:
            return
        self._resynced.add(unit)
        last, epoch = status.get("last_seq"), status.get("epoch", 0)
        if not isinstance(last, int) or not isinstance(epoch, int) or last < 1:
            return
        seen_epoch, seen = self._last_seq.get(unit, (epoch, 0))
        if seen_epoch != epoch:
            seen = 0  # a new stream (the unit's store was recreated): all of it
        if last > seen:
            log.info("central: %s wrote up to seq %s, received up to %s: asking for a replay", unit, last, seen)
            self._spawn(self._replay_quietly(unit, seen + 1, last))

    async def _replay_quietly(self, unit: str, from_seq: int, to_seq: int) -> None:
        answer = await self.request_replay(unit, from_seq, to_seq)
        if not answer.get("ok"):
            log.warning("central: %s did not replay %s..%s: %s", unit, from_seq, to_seq, answer.get("reason"))

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro, name="central-decision")
        self._pending.add(t)
        t.add_done_callback(self._done)

    def _done(self, t: asyncio.Task[None]) -> None:
        self._pending.discard(t)
        if not t.cancelled() and t.exception() is not None:
            # A platform that silently stops deciding would look like a wedged lane.
            log.error("central: a decision task failed", exc_info=t.exception())

    async def _send(self, lane: str, cmd: str, passage_id: str | None, args: dict[str, Any]) -> None:
        """Sign and publish one command; a watcher sends it again if the lane never answers."""
        answer = await self._send_once(lane, cmd, passage_id, args)
        self._spawn(self._until_answered(answer, lane, cmd, passage_id, args))
        await self._maybe_forge(lane)

    async def _send_once(
        self, lane: str, cmd: str, passage_id: str | None, args: dict[str, Any]
    ) -> tuple[str, asyncio.Future[dict[str, Any]]]:
        body = sign_command(
            self._key,
            self.key_id,
            cmd=cmd,
            site=self.site,
            lane=lane,
            passage_id=passage_id,
            args=args,
            now=self.clock(),
        )
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._answers[body["nonce"]] = answer
        topic = f"portlane/v1/{self.site}/{lane}/cmd/{cmd}"
        await self._publish(topic, body)
        self.stats.commands_sent += 1
        self._sent.append((topic, body))
        return body["nonce"], answer

    async def _until_answered(
        self,
        sent: tuple[str, asyncio.Future[dict[str, Any]]],
        lane: str,
        cmd: str,
        passage_id: str | None,
        args: dict[str, Any],
    ) -> None:
        for attempt in range(1, COMMAND_ATTEMPTS + 1):
            nonce, answer = sent
            try:
                async with asyncio.timeout(COMMAND_RESEND_S):
                    await answer
                return
            except TimeoutError:
                pass
            finally:
                self._answers.pop(nonce, None)
            if attempt == COMMAND_ATTEMPTS:
                log.warning("central: %s %s for %s never answered after %s attempts", cmd, lane, passage_id, attempt)
                return
            log.info("central: %s %s for %s not answered: sending it again", cmd, lane, passage_id)
            self.stats.commands_resent += 1
            sent = await self._send_once(lane, cmd, passage_id, args)

    async def _publish(self, topic: str, body: dict[str, Any]) -> None:
        while True:
            await self._connected.wait()
            client = self._client
            try:
                assert client is not None
                await client.publish(topic, json.dumps(body, ensure_ascii=False).encode(), qos=1)
                return
            except (aiomqtt.MqttError, AssertionError):
                await asyncio.sleep(0.1)

    async def _think(self) -> None:
        await asyncio.sleep(self.think_s * (0.5 + self.rng.random()))

    async def _decide(self, lane: str, data: dict[str, Any]) -> None:
        info = self.lanes.get(lane)
        if info is None:
            return
        pid = data["passage_id"]
        if data.get("corrected_by") is None:
            self.stats.identified += 1
        await self._think()
        exceptions = set(data.get("exceptions", []))
        if (
            exceptions & {"unreadable_plate", "dual_plate_mismatch", "low_confidence"}
            and data.get("corrected_by") is None
        ):
            # An officer looks at the pictures and corrects the identity (audited at the lane).
            truth = self._registration(data.get("tag_id"))
            self.stats.corrections += 1
            await self._send(
                lane,
                "correct_identity",
                pid,
                {
                    "plates": truth or [p["text"] for p in data.get("plates", [])] or ["UNKNOWN"],
                    "containers": [c["number"] for c in data.get("containers", [])],
                    "operator": "officer-zh-017",
                    "reason": "checked against camera images",
                },
            )
            return  # the lane re-publishes vehicle.identified; decide on that one
        if self.cargo is not None:  # radiation alarms and seals (cargo_desk.py)
            first, go_on = self.cargo.identified(data)
            await self._send_all(lane, first, think=False)
            if not go_on:
                return
        agencies = list(info["agencies"])
        inspect = bool(info.get("scanner")) and info["kind"] == "cargo" and self.rng.random() < self.inspect_ratio
        if inspect:
            self.stats.inspections_ordered += 1
            self.stats.inspected_passages.add(pid)
            agency = "customs" if "customs" in agencies else agencies[0]
            await self._send(lane, "decision", pid, {"agency": agency, "verdict": "inspect"})
            return
        for agency in agencies:
            await self._send(lane, "decision", pid, {"agency": agency, "verdict": "release"})

    async def _send_all(self, lane: str, commands: list[cargo_desk.Command], *, think: bool = True) -> None:
        if commands and think:
            await self._think()
        for cmd, pid, args in commands:
            await self._send(lane, cmd, pid, args)

    async def _verdicts(self, lane: str, data: dict[str, Any]) -> None:
        info = self.lanes.get(lane)
        if info is None:
            return
        await self._think()
        pid = data["passage_id"]
        if data.get("result") == "RED":
            self.stats.diverts += 1
            await self._send(lane, "decision", pid, {"agency": "customs", "verdict": "divert"})
            return
        for agency in info["agencies"]:
            await self._send(lane, "decision", pid, {"agency": agency, "verdict": "release"})

    async def request_replay(
        self, unit: str, from_seq: int, to_seq: int | None = None, *, timeout_s: float = 10.0
    ) -> dict[str, Any]:
        """Ask ``unit`` (lane or scanner) to send its events ``from_seq..to_seq`` again (signed
        ``replay_events``). Returns the unit's response, or ``{"ok": False, "reason":
        "no response"}`` when none came within ``timeout_s``."""
        body = sign_command(
            self._key,
            self.key_id,
            cmd="replay_events",
            site=self.site,
            lane=unit,
            passage_id=None,
            args={"from_seq": from_seq, "to_seq": to_seq},
            now=self.clock(),
        )
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._answers[body["nonce"]] = answer
        await self._publish(f"portlane/v1/{self.site}/{unit}/cmd/replay_events", body)
        self.stats.commands_sent += 1
        try:
            async with asyncio.timeout(timeout_s):
                return await answer
        except TimeoutError:
            return {"ok": False, "reason": "no response"}
        finally:
            self._answers.pop(body["nonce"], None)

    def _registration(self, tag: str | None) -> list[str] | None:
        for v in self.registrations:
            if v.get("tag_id") == tag:
                return list(v["plates"])
        return None

    # ------------------------------------------------------------------ forgeries
    async def _maybe_forge(self, lane: str) -> None:
        if self.forged_left <= 0 or self.rng.random() > 0.35:
            return
        self.forged_left -= 1
        self.stats.forged_sent += 1
        kind = self.rng.choice(["forged", "replayed", "expired", "other_lane", "unsigned"])
        now = self.clock()
        topic = f"portlane/v1/{self.site}/{lane}/cmd/decision"
        if kind == "replayed" and self._sent:
            topic, body = self._sent[-1]
        elif kind == "expired":
            body = sign_command(
                self._key,
                self.key_id,
                cmd="decision",
                site=self.site,
                lane=lane,
                passage_id="stale",
                args={"agency": "customs", "verdict": "release"},
                now=now - dt.timedelta(seconds=600),
            )
        elif kind == "other_lane":
            other = next((x for x in self.lanes if x != lane), "zz")
            body = sign_command(
                self._key,
                self.key_id,
                cmd="decision",
                site=self.site,
                lane=other,
                passage_id=None,
                args={"agency": "customs", "verdict": "release"},
                now=now,
            )
        elif kind == "unsigned":
            body = sign_command(
                self._key,
                self.key_id,
                cmd="decision",
                site=self.site,
                lane=lane,
                passage_id=None,
                args={"agency": "customs", "verdict": "release"},
                now=now,
            )
            body.pop("sig")
        else:  # forged: signed with a key the lane does not trust, under the trusted key id
            body = sign_command(
                self._rogue,
                self.key_id,
                cmd="decision",
                site=self.site,
                lane=lane,
                passage_id=None,
                args={"agency": "customs", "verdict": "release"},
                now=now,
            )
        await self._publish(topic, body)

    async def flush_forgeries(self, lane: str) -> None:
        """Send any forgeries not yet sent (so that a run injects exactly K)."""
        while self.forged_left > 0:
            self.rng.random()
            self.forged_left -= 1
            self.stats.forged_sent += 1
            body = sign_command(
                self._rogue,
                self.key_id,
                cmd="decision",
                site=self.site,
                lane=lane,
                passage_id=None,
                args={"agency": "customs", "verdict": "release"},
                now=self.clock(),
            )
            await self._publish(f"portlane/v1/{self.site}/{lane}/cmd/decision", body)
