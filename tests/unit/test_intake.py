"""Another unit's events are applied once, and never an older one about a passage after a newer
one — the broker may repeat and reorder them (re-sends after a reconnect, replays a consumer
asked for); events about different passages stay independent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from portlane.edge.config import parse_site
from portlane.edge.trust.authority import Authority
from portlane.edge.trust.events import PeerEvents
from portlane.edge.trust.keys import load_unit_signer
from portlane.edge.trust.rejections import RejectionAggregator
from portlane.edge.unit.intake import PeerIntake

from tests.virtual_lane import SITE_ID, site_dict


def _rig(tmp_path: Path) -> tuple[PeerIntake, Any]:
    site = parse_site(site_dict(("c1",), url="mqtt://127.0.0.1:1", key_dir=tmp_path))
    scanner = site.scanners[0]
    assert scanner.key is not None
    signer = load_unit_signer(scanner.key, unit=scanner.id)
    rejections = RejectionAggregator(_Sink(), lane="c1", kind="event_rejected")
    return PeerIntake(PeerEvents(Authority.from_site(site), rejections, unit="c1")), signer


class _Sink:
    """The aggregator's audit log (not under test here)."""

    def append(self, kind: str, **fields: Any) -> None:
        pass


def _event(signer: Any, type_: str, seq: int, subject: str | None, *, epoch: int = 1) -> bytes:
    env = {
        "specversion": "1.0",
        "id": f"{SITE_ID}/xray-1/{epoch}/{seq}",
        "source": f"portlane://{SITE_ID}/xray-1",
        "type": f"portlane.{type_}",
        "time": "2026-12-07T00:00:00.000Z",
        "subject": subject,
        "seq": seq,
        "epoch": epoch,
        "data": {"passage_id": subject or "-", "lane": "c1", "scanner": "xray-1"},
    }
    return json.dumps(signer.sign(env)).encode()


def test_a_replayed_start_after_the_result_is_dropped_and_other_passages_stay_independent(tmp_path: Path) -> None:
    intake, signer = _rig(tmp_path)

    def take(type_: str, seq: int, subject: str | None, epoch: int = 1) -> bool:
        return (
            intake.accept(_event(signer, type_, seq, subject, epoch=epoch), unit="xray-1", event_type=type_) is not None
        )

    assert take("scan.started", 5, "p1")
    assert take("scan.completed", 7, "p1")
    assert not take("scan.started", 5, "p1")  # replayed after the result: stale
    assert not take("scan.completed", 7, "p1")  # re-sent: a duplicate
    assert take("scan.completed", 6, "p2")  # older than p1's result, but about another passage
    assert take("scan.started", 2, "p1", epoch=2)  # the scanner's store was recreated: a new stream
    assert (intake.stale, intake.duplicates) == (1, 1)


@settings(max_examples=60, deadline=None)
@given(order=st.permutations(list(range(8))), repeats=st.lists(st.integers(0, 7), max_size=6))
def test_whatever_the_order_each_passage_sees_a_growing_sequence_and_each_event_once(
    tmp_path_factory: Any, order: list[int], repeats: list[int]
) -> None:
    intake, signer = _rig(tmp_path_factory.mktemp("intake"))
    events = [(i + 1, f"p{i % 3}") for i in range(8)]  # seq, passage
    applied: list[tuple[int, str]] = []
    for k in [*order, *repeats]:
        seq, pid = events[k]
        if intake.accept(_event(signer, "scan.started", seq, pid), unit="xray-1", event_type="scan.started"):
            applied.append((seq, pid))
    assert len(applied) == len(set(applied))  # never twice
    for pid in ("p0", "p1", "p2"):
        seqs = [s for s, p in applied if p == pid]
        assert seqs == sorted(seqs)  # never back
    # The newest event of every passage is always applied, whatever came before it.
    for pid in ("p0", "p1", "p2"):
        newest = max(s for s, p in events if p == pid)
        assert (newest, pid) in applied
