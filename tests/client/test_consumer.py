"""The consumer core, message by message: what it believes, what it delivers once, what it asks
again, and what it refuses. Envelopes are signed with the units' own keys as their outboxes
sign them; nothing is mocked."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
from portlane.edge.client import (
    Anomaly,
    CommandAnswered,
    GapAbandoned,
    ReplayNeed,
    SiteConsumer,
    SiteEvent,
    StreamView,
    UnitChanged,
)
from portlane.edge.client.consumer import GAP_GRACE_S, MAX_REPLAY_ATTEMPTS, subscriptions
from portlane.edge.client.streams import MAX_MISSING_RANGES
from portlane.edge.contract.events import DeviceState, UnitStatus

from tests.signed_site import EPOCH, PREFIX, SignedSite


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> SignedSite:
    return SignedSite(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def consumer(signed: SignedSite) -> SiteConsumer:
    return SiteConsumer.for_site(signed.site, rng=random.Random(1))


def events(outs: list[object]) -> list[SiteEvent]:
    return [o for o in outs if isinstance(o, SiteEvent)]


def feed(c: SiteConsumer, msg: tuple[str, bytes], now: float = 0.0) -> list[object]:
    return list(c.receive(msg[0], msg[1], now=now))


def test_subscriptions_cover_events_status_and_responses() -> None:
    assert subscriptions("s") == ["portlane/v1/s/+/event/#", "portlane/v1/s/+/status", "portlane/v1/s/+/response"]


def test_a_signed_event_comes_out_once_typed(consumer: SiteConsumer, signed: SignedSite) -> None:
    msg = signed.event("c1", 1)
    [ev] = events(feed(consumer, msg))
    assert (ev.unit, ev.epoch, ev.seq, ev.type, ev.key_id) == ("c1", EPOCH, 1, "device.state", "c1-key")
    assert ev.payload == DeviceState(device="gate", health="online") and not ev.late
    assert ev.id == f"t-site/c1/{EPOCH}/1"
    assert events(feed(consumer, msg)) == []  # a redelivery
    # The same signed event spelled differently (a third party re-publishing it): a duplicate,
    # not a second event — the signature covers the canonical form, not the bytes.
    respelled = json.dumps(json.loads(msg[1]), indent=2, sort_keys=True).encode()
    assert events(feed(consumer, (msg[0], respelled))) == []
    assert consumer.stats.duplicates == 2 and consumer.stats.events == 1


def test_two_events_signed_under_one_id_are_a_conflict_not_a_fact(consumer: SiteConsumer, signed: SignedSite) -> None:
    feed(consumer, signed.event("c1", 1, device="gate"))
    outs = feed(consumer, signed.event("c1", 1, device="board"))
    assert events(outs) == [] and [type(o) for o in outs] == [Anomaly]
    assert outs[0].kind == "conflict"  # type: ignore[attr-defined]


def test_unsigned_tampered_and_misplaced_events_are_refused_and_counted(
    consumer: SiteConsumer, signed: SignedSite
) -> None:
    topic, payload = signed.event("c1", 1)
    env = json.loads(payload)
    unsigned = {k: v for k, v in env.items() if k not in ("sig", "sigkeyid")}
    tampered = {**env, "data": {"device": "gate", "health": "offline"}}
    by_c2 = signed.envelope("c1", "device.state", {"device": "gate", "health": "online"}, seq=1, signer="c2")
    cases = [
        (topic, json.dumps(unsigned).encode(), "unsigned"),
        (topic, json.dumps(tampered).encode(), "bad_signature"),
        (topic, json.dumps(by_c2).encode(), "not_authorised"),  # c2's key does not speak for c1
        (f"{PREFIX}/c2/event/device.state", payload, "topic_mismatch"),
        (f"{PREFIX}/c1/event/lane.exception", payload, "topic_mismatch"),
        ("portlane/v1/other-site/c1/event/device.state", payload, "other_site"),
        (f'{PREFIX}/c9"x/event/device.state', payload, "bad_unit"),
        (f"{PREFIX}/c1/event/a/b/c", payload, "bad_topic"),
        (topic, b"\xff\xfe", "malformed"),
    ]
    for t, p, _ in cases:
        assert feed(consumer, (t, p)) == []
    for _, _, reason in cases:
        assert consumer.stats.refused.get(reason), reason
    assert consumer.units() == {} and consumer.streams() == []


def test_gaps_are_asked_for_after_the_grace_with_growing_delays_then_given_up(
    consumer: SiteConsumer, signed: SignedSite
) -> None:
    feed(consumer, signed.event("c1", 1), now=0)
    feed(consumer, signed.event("c1", 5), now=0)  # 2..4 missing
    assert consumer.due(GAP_GRACE_S - 0.1) == []  # may still be in flight
    [need] = consumer.due(GAP_GRACE_S)
    assert need == ReplayNeed("c1", EPOCH, 2, 4, 1)
    times = [GAP_GRACE_S]
    t = GAP_GRACE_S
    while True:
        t += 0.25
        due = consumer.due(t)
        if due:
            times.append(t)
            if isinstance(due[0], GapAbandoned):
                break
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) == MAX_REPLAY_ATTEMPTS + 1
    assert gaps[-1] > gaps[0] and max(gaps) <= 120 + 0.25  # capped, growing
    assert consumer.missing == 0 and consumer.stats.lost == 3


def test_a_replay_filling_the_gap_comes_out_late_and_stops_the_requests(
    consumer: SiteConsumer, signed: SignedSite
) -> None:
    feed(consumer, signed.event("c1", 1))
    feed(consumer, signed.event("c1", 4))
    assert consumer.due(GAP_GRACE_S) == [ReplayNeed("c1", EPOCH, 2, 3, 1)]
    [ev] = events(feed(consumer, signed.event("c1", 2), now=6))
    assert ev.late and consumer.missing == 1
    assert consumer.due(6 + GAP_GRACE_S - 0.1) == []  # progress: a fresh grace for the rest
    feed(consumer, signed.event("c1", 3), now=7)
    assert consumer.missing == 0 and consumer.due(1000) == []


def test_a_new_epoch_is_a_restart_not_a_gap(consumer: SiteConsumer, signed: SignedSite) -> None:
    feed(consumer, signed.event("c1", 1))
    feed(consumer, signed.event("c1", 3))  # 2 missing in the old epoch
    outs = feed(consumer, signed.event("c1", 1, epoch=EPOCH + 1))
    assert [o for o in outs if isinstance(o, GapAbandoned)] == [GapAbandoned("c1", EPOCH, 1, "stream_restarted")]
    assert len(events(outs)) == 1 and consumer.missing == 0


def test_a_unit_is_online_offline_or_closed_only_on_its_signed_word(consumer: SiteConsumer, signed: SignedSite) -> None:
    # The broker's last will (unsigned): unconfirmed offline, nothing more.
    [changed] = feed(consumer, (f"{PREFIX}/c1/status", b'{"state": "offline", "unit": "c1", "kind": "lane"}'))
    assert isinstance(changed, UnitChanged) and changed.view.state == "unconfirmed_offline"
    # An unsigned "online" (the old LaneStatus, or anyone on the broker): not believed.
    assert feed(consumer, (f"{PREFIX}/c1/status", b'{"state": "online", "unit": "c1", "last_seq": 99}')) == []
    assert consumer.unit("c1").state == "unconfirmed_offline"  # type: ignore[union-attr]
    assert consumer.missing == 0  # its last_seq asked nothing
    outs = feed(consumer, signed.status("c1", seq=3))
    view = consumer.unit("c1")
    assert view is not None and view.state == "online" and isinstance(view.status, UnitStatus)
    assert [type(o) for o in outs] == [SiteEvent, UnitChanged]
    feed(consumer, signed.status("c1", seq=4, in_service=False))
    assert consumer.unit("c1").state == "closed"  # type: ignore[union-attr]
    feed(consumer, signed.status("c1", seq=2, state="offline"))  # an older status changes nothing
    assert consumer.unit("c1").state == "closed"  # type: ignore[union-attr]
    feed(consumer, signed.status("c1", seq=5, state="offline"))
    assert consumer.unit("c1").state == "offline"  # type: ignore[union-attr]
    # Nobody else's status, signed or not, speaks for c1; a will of a unit the site lacks is nothing.
    forged = signed.envelope("c1", "unit.status", json.loads(signed.status("c1", seq=9)[1])["data"], seq=9, signer="c2")
    assert feed(consumer, (f"{PREFIX}/c1/status", json.dumps(forged).encode())) == []
    assert feed(consumer, (f"{PREFIX}/zz9/status", b'{"state": "offline"}')) == []
    assert consumer.unit("zz9") is None


def test_a_signed_status_with_last_seq_ahead_opens_the_tail_gap(consumer: SiteConsumer, signed: SignedSite) -> None:
    consumer.book.backfill = True
    feed(consumer, signed.status("c1", seq=10, last_seq=10**12))
    [need, *_] = consumer.due(GAP_GRACE_S)
    assert need == ReplayNeed("c1", EPOCH, 1, 9, 1)
    assert consumer.missing == 10**12 - 1  # two integers of memory, whatever the count


def test_command_answers_are_matched_by_nonce_and_unit(consumer: SiteConsumer, signed: SignedSite) -> None:
    consumer.expect_answer("n" * 22, unit="c1", command="replay_events")
    body = b'{"correlation_id": "' + b"n" * 22 + b'", "command": "replay_events", "ok": true, "reason": null}'
    assert feed(consumer, (f"{PREFIX}/c2/response", body)) == []  # not c2's command
    assert consumer.stats.other_responses == 1 and consumer.stats.refused == {}
    [answered] = feed(consumer, (f"{PREFIX}/c1/response", body))
    assert answered == CommandAnswered("c1", "n" * 22, "replay_events", True, None, signed=False)
    assert feed(consumer, (f"{PREFIX}/c1/response", body)) == []  # answered once
    # A signed command.rejected naming the nonce answers too, and is the unit's word.
    consumer.expect_answer("m" * 22, unit="c1", command="release")
    rejected = signed.envelope(
        "c1", "command.rejected", {"command": "release", "reason": "wrong_lane", "nonce": "m" * 22}, seq=1
    )
    outs = feed(consumer, (f"{PREFIX}/c1/event/command.rejected", json.dumps(rejected).encode()))
    assert CommandAnswered("c1", "m" * 22, "release", False, "wrong_lane", signed=True) in outs


def test_memory_is_bounded_whatever_the_gaps(consumer: SiteConsumer, signed: SignedSite) -> None:
    for n in range(1, 4 * MAX_MISSING_RANGES, 2):  # every other seq: one range per event
        feed(consumer, signed.event("c1", n))
    [stream] = consumer.streams()
    assert len(stream.missing) <= MAX_MISSING_RANGES and stream.lost > 0


def test_an_event_the_caller_could_not_take_is_asked_for_again(consumer: SiteConsumer, signed: SignedSite) -> None:
    feed(consumer, signed.event("c1", 1))
    [ev] = events(feed(consumer, signed.event("c1", 2)))
    consumer.undelivered(ev, now=0)
    assert consumer.due(GAP_GRACE_S) == [ReplayNeed("c1", EPOCH, 2, 2, 1)]
    [again] = events(feed(consumer, signed.event("c1", 2), now=6))
    assert again.late and again.seq == 2


def test_per_lane_scan_topics_are_checked_against_the_events_lane(signed: SignedSite, tmp_path: Path) -> None:
    consumer = SiteConsumer.for_site(signed.site)
    data = {"passage_id": "p-1", "lane": "c1", "scanner": "xray-1", "scan_id": 1, "result": "GREEN"}
    env = json.dumps(signed.envelope("xray-1", "scan.completed", data, seq=1)).encode()
    assert feed(consumer, (f"{PREFIX}/xray-1/event/scan.completed/c2", env)) == []
    assert consumer.stats.refused == {"topic_mismatch": 1}
    assert len(events(feed(consumer, (f"{PREFIX}/xray-1/event/scan.completed/c1", env)))) == 1
    assert events(feed(consumer, (f"{PREFIX}/xray-1/event/scan.completed", env))) == []  # same event


def test_a_restarted_consumer_goes_on_from_its_saved_ledger(signed: SignedSite) -> None:
    """What the console saves of the ledger and puts back at start: events it had are duplicates,
    what it was missing is asked for (after the grace), what comes next is new — it does not meet
    every unit again as if for the first time (with backfill: every stream again from seq 1)."""
    before = SiteConsumer.for_site(signed.site, backfill=True)
    for seq in (1, 2, 6):
        feed(before, signed.event("c1", seq))
    saved = before.streams()
    assert [(v.max_seq, v.missing) for v in saved] == [(6, ((3, 5),))]

    after = SiteConsumer.for_site(signed.site, backfill=True, rng=random.Random(1))
    assert after.restore(saved, now=100.0) == 1
    assert after.streams() == saved
    assert events(feed(after, signed.event("c1", 2), now=100)) == []  # had it: a duplicate
    assert after.due(100 + GAP_GRACE_S) == [ReplayNeed("c1", EPOCH, 3, 5, 1)]  # still missing: asked again
    [late] = events(feed(after, signed.event("c1", 4), now=106))
    assert late.late
    [new] = events(feed(after, signed.event("c1", 7), now=106))
    assert not new.late and after.missing == 2
    # A unit not of the site is not restored.
    assert after.restore([StreamView("c9", EPOCH, 3, 3, (), 0)], now=0) == 0


def test_public_api_is_pinned() -> None:
    import portlane.edge.client as client

    assert client.__all__ == sorted(client.__all__)
    assert set(client.__all__) == {
        "Anomaly",
        "ClientError",
        "ClientStateError",
        "CommandAnswered",
        "CommandResult",
        "CommandTimeoutError",
        "ConsumerStats",
        "GapAbandoned",
        "NoSignerError",
        "Output",
        "Refusal",
        "ReplayNeed",
        "SiteClient",
        "SiteConsumer",
        "SiteEvent",
        "StreamView",
        "UnitChanged",
        "UnitState",
        "UnitView",
        "subscriptions",
    }
    assert {name for name in vars(client.SiteClient) if not name.startswith("_")} == {
        "aclose",
        "command",
        "events",
        "from_site",
        "missing",
        "request_replay",
        "restore",
        "run",
        "stats",
        "streams",
        "units",
        "wait_for",
        "wait_subscribed",
    }
