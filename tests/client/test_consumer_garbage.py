"""Garbage on every topic the consumer subscribes to never raises out of it, never makes it
believe an unsigned unit, and never makes it ask for a replay it has no signed reason for.

Generated batches mix the units' genuine signed events and statuses with everything a client on
an open broker can publish, retained or not (the consumer applies the same rules to both):
empty, huge, deeply nested, bad UTF-8, random JSON, genuine envelopes with one field changed or
their signature stripped, genuine envelopes on another unit's or lane's topic, unsigned statuses
with ``last_seq`` far ahead, last wills — on topics with real unit ids and with ids like
``c9"x`` (the retained status that stopped the console). Then the consumer's replay timer runs
for a simulated hour. The two guards this rests on are removed one at a time and the same
search must fail.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from portlane.edge.client import ReplayNeed, SiteConsumer, SiteEvent
from portlane.edge.client import consumer as consumer_module
from portlane.edge.client.consumer import MAX_AWAITED
from portlane.edge.client.streams import MAX_EPOCHS, MAX_MISSING_RANGES
from portlane.edge.contract.envelope import MAX_EVENT_BYTES
from portlane.edge.contract.events import EVENTS
from portlane.edge.trust.authority import Role
from portlane.edge.trust.events import VerifiedEvent, parse_envelope

from tests.signed_site import EPOCH, PREFIX, SignedSite
from tests.strategies import json_value

EXAMPLES = 300
UNITS = ("c1", "c2", "xray-1", "consumer", 'c9"x', "", "C1", "a" * 40, "+", "#", "платформа", "zz9")
TYPES = (*EVENTS, "unit.status", "", "x" * 300, "scan.completed/c1", "scan.completed/c9", "a/b/c")


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> SignedSite:
    return SignedSite(tmp_path_factory.mktemp("keys"))


def _genuine(signed: SignedSite) -> list[tuple[str, bytes]]:
    out = [signed.event(u, n) for u in ("c1", "c2") for n in (1, 2, 3, 7)]
    out += [signed.event("c1", 1, epoch=EPOCH + 5), signed.event("xray-1", 1)]
    out += [signed.status("c1", seq=8), signed.status("c2", seq=9, last_seq=40, in_service=False)]
    scan = {"passage_id": "p-1", "lane": "c1", "scanner": "xray-1", "scan_id": 1, "result": "RED"}
    env = json.dumps(signed.envelope("xray-1", "scan.completed", scan, seq=2)).encode()
    out += [(f"{PREFIX}/xray-1/event/scan.completed/c1", env), (f"{PREFIX}/xray-1/event/scan.completed", env)]
    return out


def _mutate(msg: tuple[str, bytes], key: str, value: Any, strip: bool) -> tuple[str, bytes]:
    env = json.loads(msg[1])
    env[key] = value
    if strip:
        env.pop("sig", None)
        env.pop("sigkeyid", None)
    return msg[0], json.dumps(env, allow_nan=True).encode()


def messages(signed: SignedSite) -> st.SearchStrategy[tuple[str, bytes]]:
    genuine = _genuine(signed)
    topic = st.one_of(
        st.builds(lambda u, t: f"{PREFIX}/{u}/event/{t}", st.sampled_from(UNITS), st.sampled_from(TYPES)),
        st.builds(lambda u: f"{PREFIX}/{u}/status", st.sampled_from(UNITS)),
        st.builds(lambda u: f"{PREFIX}/{u}/response", st.sampled_from(UNITS)),
        st.text(max_size=60),
    )
    garbage = st.one_of(
        st.just(b""),
        st.binary(max_size=200),
        st.just(b"x" * (MAX_EVENT_BYTES + 1)),
        st.builds(lambda n: b"[" * n + b"]" * n, st.integers(1, 50_000)),
        st.builds(lambda n: b'{"a":' * n + b"1" + b"}" * n, st.integers(30, 2_000)),
        st.just(b'{"state": "offline", "unit": "\xff"}'),
        json_value.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    )
    unsigned_status = st.builds(
        lambda u, last, epoch, state: (
            f"{PREFIX}/{u}/status",
            json.dumps({"state": state, "unit": u, "kind": "lane", "last_seq": last, "epoch": epoch}).encode(),
        ),
        st.sampled_from(UNITS),
        st.integers(0, 2**62),
        st.sampled_from([0, EPOCH, EPOCH + 1]),
        st.sampled_from(["online", "offline"]),
    )
    fields = st.sampled_from(["seq", "epoch", "data", "source", "type", "id", "sig", "sigkeyid", "time", "audience"])
    mutated = st.builds(_mutate, st.sampled_from(genuine), fields, json_value, st.booleans())
    misplaced = st.builds(lambda m, t: (t, m[1]), st.sampled_from(genuine), topic)
    return st.one_of(st.sampled_from(genuine), mutated, misplaced, unsigned_status, st.tuples(topic, garbage))


def _check(signed: SignedSite, batch: list[tuple[str, bytes]]) -> None:
    genuine = {(t, p) for t, p in _genuine(signed)}
    genuine_sigs = {json.loads(p)["sig"] for _, p in genuine}
    consumer = SiteConsumer.for_site(signed.site, backfill=True, rng=random.Random(0))
    delivered: list[SiteEvent] = []
    needs: list[ReplayNeed] = []
    now = 0.0
    for topic, payload in batch:
        now += 1.0
        for out in [*consumer.receive(topic, payload, now=now), *consumer.due(now)]:
            if isinstance(out, SiteEvent):
                delivered.append(out)
            elif isinstance(out, ReplayNeed):
                needs.append(out)
    for _ in range(60):  # the replay timer, for an hour
        now += 60.0
        needs += [o for o in consumer.due(now) if isinstance(o, ReplayNeed)]

    # Believed: only what the units signed, each event once.
    assert all(ev.envelope.sig in genuine_sigs for ev in delivered), "an event nobody signed was delivered"
    keys = [(ev.unit, ev.epoch, ev.seq) for ev in delivered]
    assert len(keys) == len(set(keys)), "an event was delivered twice"
    signed_units = {ev.unit for ev in delivered}
    # Replays: only to units that said something signed, never to an id that is not one.
    assert {n.unit for n in needs} <= signed_units & {"c1", "c2", "xray-1"}, needs
    # A unit's state: only on its signed word (or "unconfirmed offline" from a will).
    views = consumer.units()
    assert set(views) <= {"c1", "c2", "xray-1", "consumer"}
    for view in views.values():
        if view.state in ("online", "offline", "closed"):
            assert view.status is not None and view.unit in signed_units
    # Bounded.
    streams = consumer.streams()
    assert all(len(s.missing) <= MAX_MISSING_RANGES for s in streams)
    assert all(sum(1 for s in streams if s.unit == u) <= MAX_EPOCHS for u in views)
    assert len(consumer._awaited) <= MAX_AWAITED


def _run(signed: SignedSite, examples: int = EXAMPLES) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        # The same examples everywhere: a mutant caught here is caught on every machine.
        derandomize=True,
        database=None,
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(batch=st.lists(messages(signed), min_size=1, max_size=25))
    def prop(batch: list[tuple[str, bytes]]) -> None:
        _check(signed, batch)

    prop()


@pytest.mark.timeout(600)
def test_garbage_on_every_topic_is_never_believed_and_never_raises(signed: SignedSite) -> None:
    _run(signed)


def _trusting(payload: bytes, keys: Any, *, unit: str, event_type: str, lane: str | None = None) -> VerifiedEvent:
    """Mutant: reads the envelope without checking its signature or authority."""
    env = parse_envelope(payload)
    return VerifiedEvent(str(env.get("sigkeyid") or "nobody"), Role.LANE, keys.site, unit, event_type, env)


def _believes_unsigned_status(original: Callable[..., Any]) -> Callable[..., Any]:
    def status(self: SiteConsumer, unit: str, payload: bytes, topic: str, now: float) -> Any:
        """Mutant: an unsigned status's last_seq opens a gap (what the console did)."""
        try:
            body = json.loads(payload)
            last, epoch = int(body["last_seq"]), int(body.get("epoch", 0))
        except (ValueError, TypeError, KeyError, AttributeError):
            return original(self, unit, payload, topic, now)
        s, _ = self.book.expect(unit, epoch, last)
        if s is not None:
            self._schedule(s, now, progressed=False)
        return original(self, unit, payload, topic, now)

    return status


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("guard", ["signature", "unsigned_status"])
def test_removing_a_guard_is_caught(guard: str, signed: SignedSite, monkeypatch: pytest.MonkeyPatch) -> None:
    if guard == "signature":
        monkeypatch.setattr(consumer_module, "verify_message", _trusting)
    else:
        monkeypatch.setattr(SiteConsumer, "_status", _believes_unsigned_status(SiteConsumer._status))
    with pytest.raises(AssertionError):
        _run(signed)


def test_the_retained_status_that_stopped_the_console(signed: SignedSite, tmp_path: Path) -> None:
    """What we saw (issue 23): a retained unsigned status on ``…/c9"x/status`` with ``last_seq``
    ahead made the console sign a replay_events for that id; the signer raised and the console's
    ticker died. The consumer refuses the id by pattern and believes no unsigned last_seq."""
    consumer = SiteConsumer.for_site(signed.site, backfill=True)
    body = json.dumps({"state": "online", "unit": 'c9"x', "last_seq": 10**9, "epoch": 1}).encode()
    assert consumer.receive(f'{PREFIX}/c9"x/status', body, now=0) == []
    body = json.dumps({"state": "online", "unit": "c1", "last_seq": 10**9, "epoch": 1}).encode()
    assert consumer.receive(f"{PREFIX}/c1/status", body, now=0) == []
    assert consumer.due(10_000) == [] and consumer.units() == {} and consumer.missing == 0
    assert consumer.stats.refused == {"bad_unit": 1, "unsigned_status": 1}
