"""The console's pure parts: envelope parsing, the stream ledger, signatures, replay requests,
the live picture and its alarms, analytics, users and passwords."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from console_helpers import SITE_ID, completed, envelope, sign_event, site
from portlane.edge.console.analytics import clearance, group_figures, parse_bound, percentile
from portlane.edge.console.auth import (
    Sessions,
    User,
    check_login,
    hash_password,
    load_users,
    save_users,
    verify_password,
)
from portlane.edge.console.effects import Clear, Completed, Raise
from portlane.edge.console.ingest import StreamLedger, check_payload, parse_event
from portlane.edge.console.live import SiteLive
from portlane.edge.console.replay import ReplayRequester
from portlane.edge.console.signatures import EventKey, EventVerifier
from portlane.edge.console.store import Store
from portlane.edge.contract.canonical import canonical_json
from portlane.edge.contract.topics import Topics
from portlane.edge.errors import EventRejectedError, UsersFileError
from portlane.edge.trust.keys import generate_keypair, load_public_key


def _msg(env: dict) -> tuple[str, bytes]:
    unit = env["source"].rsplit("/", 1)[1]
    return Topics(SITE_ID, unit).event(env["type"].removeprefix("portlane.")), json.dumps(env).encode()


# ------------------------------------------------------------------------------ parsing


def test_parse_event_reads_the_stream_position_and_rejects_what_is_not_the_contract() -> None:
    ev = parse_event(SITE_ID, *_msg(envelope("c1", 7, "passage.arrived", {"passage_id": "p", "lane_kind": "cargo"})))
    assert (ev.unit, ev.epoch, ev.seq, ev.type, ev.subject) == ("c1", 1, 7, "passage.arrived", "p")
    legacy = parse_event(SITE_ID, *_msg(envelope("c1", 3, "gate.moved", {"passage_id": None}, epoch=None)))
    assert legacy.epoch == 0 and legacy.id == f"{SITE_ID}/c1/3"

    env = envelope("c1", 1, "passage.arrived", {"passage_id": "p", "lane_kind": "cargo"})
    topic, _ = _msg(env)
    with pytest.raises(EventRejectedError) as e:
        parse_event(SITE_ID, topic, b"{not json")
    assert e.value.reason == "malformed"
    with pytest.raises(EventRejectedError) as e:
        parse_event(SITE_ID, topic.replace("/c1/", "/c2/"), json.dumps(env).encode())
    assert e.value.reason == "wrong_source"
    with pytest.raises(EventRejectedError) as e:
        parse_event(SITE_ID, topic.replace("passage.arrived", "gate.moved"), json.dumps(env).encode())
    assert e.value.reason == "malformed" and "does not match the topic" in e.value.detail
    with pytest.raises(EventRejectedError):
        parse_event(SITE_ID, topic, json.dumps({**env, "seq": 0}).encode())
    bad = parse_event(SITE_ID, *_msg(envelope("c1", 2, "passage.arrived", {"passage_id": "p", "lane_kind": "boat"})))
    assert "lane_kind" in (check_payload(bad) or "")
    assert check_payload(ev) is None


# ------------------------------------------------------------------------------ ledger


def test_ledger_finds_gaps_fills_them_and_tells_a_restart_from_a_gap() -> None:
    led = StreamLedger()
    assert led.observe("c1", 5, 1).gap is None
    assert led.observe("c1", 5, 2).gap is None
    o = led.observe("c1", 5, 6)
    assert o.gap == (3, 5)
    assert led.stream("c1", 5).missing == [(3, 5)]  # type: ignore[union-attr]
    assert led.observe("c1", 5, 4).filled
    assert led.stream("c1", 5).missing == [(3, 3), (5, 5)]  # type: ignore[union-attr]
    assert led.observe("c1", 5, 4).seq_seen_before  # same seq again under a new id
    led.observe("c1", 5, 3)
    led.observe("c1", 5, 5)
    assert led.stream("c1", 5).missing == []  # type: ignore[union-attr]
    # A new epoch: a restart, not a gap; a late event of the old epoch is marked old.
    r = led.observe("c1", 9, 1)
    assert r.restart_from == 5 and r.gap is None
    assert led.observe("c1", 5, 7).old_epoch
    # The new epoch seen first at seq 4 (the console was away): 1..3 are missing.
    assert led.observe("c1", 12, 4).gap == (1, 3)
    # Retained status announces more than we have: the tail is missing until it arrives.
    assert led.expect("c1", 12, 6) == (5, 6)
    assert led.expect("c1", 12, 6) is None
    led.observe("c1", 12, 5)
    assert led.stream("c1", 12).missing == [(1, 3), (6, 6)]  # type: ignore[union-attr]


def test_ledger_backfill_off_starts_from_what_it_first_sees() -> None:
    led = StreamLedger(backfill=False)
    assert led.observe("c2", 1, 40).gap is None
    assert led.observe("c2", 1, 42).gap == (41, 41)
    assert led.expect("p1", 1, 10) is None
    on = StreamLedger(backfill=True)
    assert on.observe("c2", 1, 40).gap == (1, 39)


# ------------------------------------------------------------------------------ signatures


def test_event_signatures_are_checked_as_the_contract_says() -> None:
    priv, pub = generate_keypair()
    other_priv, _ = generate_keypair()
    v = EventVerifier([EventKey("lane-c1", pub, ("c1",))])
    env = envelope("c1", 1, "passage.arrived", {"passage_id": "p", "lane_kind": "cargo"})
    signed = sign_event(env, "lane-c1", priv)
    assert v.verify(signed, "c1") == "verified:lane-c1"
    assert v.verify(env, "c1") == "unsigned"

    def reason(e: dict, unit: str = "c1", verifier: EventVerifier = v) -> str:
        with pytest.raises(EventRejectedError) as exc:
            verifier.verify(e, unit)
        return exc.value.reason

    assert reason({**signed, "data": {**signed["data"], "passage_id": "forged"}}) == "bad_signature"
    assert reason(sign_event(env, "lane-c1", other_priv)) == "bad_signature"
    assert reason(sign_event(env, "lane-c9", priv)) == "unknown_key"
    assert reason(signed, unit="c2") == "not_authorised"
    assert reason({**signed, "sig": 5}) == "malformed"
    assert reason(env, verifier=EventVerifier([], require_signed=True)) == "unsigned"
    with pytest.raises(ValueError, match="listed twice"):
        EventVerifier([EventKey("k", pub), EventKey("k", pub)])


# ------------------------------------------------------------------------------ replay


def test_replay_request_is_a_signed_command_for_the_unit() -> None:
    priv, pub = generate_keypair()
    r = ReplayRequester(site=SITE_ID, key_id="console-1", private_key=priv)
    req = r.request("c1", 3, 9)
    assert req.topic == f"portlane/v1/{SITE_ID}/c1/cmd/replay_events"
    cmd = json.loads(req.payload)
    assert cmd["cmd"] == "replay_events" and cmd["lane"] == "c1" and cmd["site"] == SITE_ID
    assert cmd["args"] == {"from_seq": 3, "to_seq": 9} and cmd["nonce"] == req.nonce and cmd["key_id"] == "console-1"
    unsigned = {k: v for k, v in cmd.items() if k != "sig"}
    load_public_key(pub).verify(base64.b64decode(cmd["sig"]), canonical_json(unsigned, allow_floats=False))
    assert req.payload == canonical_json(cmd, allow_floats=False)  # the wire form is canonical
    assert json.loads(r.request("c1", 3, None).payload)["args"]["to_seq"] is None
    assert r.request("c1", 3, 9).nonce != req.nonce


# ------------------------------------------------------------------------------ live picture


def _ev(unit: str, seq: int, type_: str, data: dict, t: float) -> object:
    return parse_event(SITE_ID, *_msg(envelope(unit, seq, type_, data, t=t)))


def test_live_picture_follows_a_passage_and_raises_and_clears_alarms() -> None:
    live = SiteLive(site(), stuck_after_s={"awaiting_decision": 10.0})
    t0 = 1_700_000_000.0
    out = live.apply(_ev("c1", 1, "passage.arrived", {"passage_id": "p1", "lane_kind": "cargo"}, t0))  # type: ignore[arg-type]
    assert out == [] and live.lanes["c1"].passage.stage == "arrived"  # type: ignore[union-attr]
    ident = {
        "passage_id": "p1",
        "plates": [{"text": "粤Z1234港", "kind": "cn_crossborder", "confidence": 0.55}],
        "containers": [],
        "confidence": 0.55,
        "exceptions": ["low_confidence"],
    }
    out = live.apply(_ev("c1", 2, "vehicle.identified", ident, t0 + 1))  # type: ignore[arg-type]
    assert [type(x) for x in out] == [Raise] and out[0].key == "identity:p1"  # type: ignore[union-attr]
    assert set(out[0].agencies) == {"customs", "border", "quarantine"}  # type: ignore[union-attr]
    assert live.lanes["c1"].passage.stage == "awaiting_decision"  # type: ignore[union-attr]
    # Stuck: nothing for longer than the stage allows; raised once, cleared when it moves on.
    assert live.tick(int((t0 + 5) * 1000)) == []
    stuck = live.tick(int((t0 + 12) * 1000))
    assert len(stuck) == 1 and isinstance(stuck[0], Raise) and stuck[0].kind == "stuck"
    assert live.tick(int((t0 + 13) * 1000)) == []
    # A scanner event for the passage moves it forward; an older lane event cannot move it back.
    out = live.apply(_ev("xray-1", 1, "scan.started", {"passage_id": "p1", "lane": "c1", "scanner": "xray-1"}, t0 + 14))  # type: ignore[arg-type]
    assert any(isinstance(x, Clear) and x.key == stuck[0].key for x in out)
    assert live.lanes["c1"].passage.stage == "scanning"  # type: ignore[union-attr]
    live.apply(_ev("c1", 3, "inspection.requested", {"passage_id": "p1", "lane": "c1", "vehicle_ref": "x"}, t0 + 13))  # type: ignore[arg-type]
    assert live.lanes["c1"].passage.stage == "scanning"  # type: ignore[union-attr]
    snap = live.snapshot(int((t0 + 20) * 1000))
    assert snap["scanners"][0]["lease"]["passage_id"] == "p1"
    assert snap["scanners"][0]["utilisation"] == 1.0
    done = live.apply(
        _ev(
            "c1",
            4,
            "passage.completed",
            completed("p1", {"arrived": 0, "identified": 1000, "exited": 20000}, t0=t0),
            t0 + 20,
        )  # type: ignore[arg-type]
    )
    rows = [x.row for x in done if isinstance(x, Completed)]
    assert len(rows) == 1 and rows[0].vehicle_kind == "truck" and rows[0].stage_ms["exited"] == 20000
    assert rows[0].local_day == "2023-11-15" and rows[0].local_hour == 6  # 22:13 UTC is 06:13 in Shanghai
    assert any(isinstance(x, Clear) and x.key == "identity:p1" for x in done)
    assert live.lanes["c1"].passage is None and live.lanes["c1"].completed == 1


def test_device_faults_status_and_close_commands_show_a_closed_lane() -> None:
    live = SiteLive(site())
    t0 = 1_700_000_000.0
    out = live.apply(_ev("c2", 1, "device.state", {"device": "gate", "health": "offline", "reason": "timeout"}, t0))  # type: ignore[arg-type]
    assert [x.key for x in out if isinstance(x, Raise)] == ["device:c2:gate"]
    out = live.apply(
        _ev(
            "c2",
            2,
            "lane.exception",
            {"passage_id": None, "kind": "device_fault", "detail": "gate offline: timeout"},
            t0,
        )  # type: ignore[arg-type]
    )
    assert {x.key for x in out if isinstance(x, Raise)} >= {"closed:c2"} and not live.lanes["c2"].in_service
    out = live.apply(_ev("c2", 3, "device.state", {"device": "gate", "health": "online", "reason": None}, t0 + 5))  # type: ignore[arg-type]
    assert {x.key for x in out if isinstance(x, Clear)} == {"device:c2:gate", "closed:c2"} and live.lanes[
        "c2"
    ].in_service
    # An older report replayed late does not undo the newer one.
    assert live.apply(_ev("c2", 4, "device.state", {"device": "gate", "health": "offline"}, t0 + 1)) == []  # type: ignore[arg-type]
    # The retained status and an accepted close_lane also close it; the last will says offline.
    out = live.on_status("p1", {"state": "online", "in_service": False}, 1)
    assert [x.key for x in out if isinstance(x, Raise)] == ["closed:p1"]
    out = live.on_response("p2", {"command": "close_lane", "ok": True}, 2)
    assert [x.key for x in out if isinstance(x, Raise)] == ["closed:p2"]
    assert live.on_response("p2", {"command": "close_lane", "ok": False}, 3) == []
    assert [x.key for x in live.on_status("c3", {"state": "offline"}, 4) if isinstance(x, Raise)] == ["offline:c3"]


# ------------------------------------------------------------------------------ analytics


def test_percentiles_are_nearest_rank_like_the_demo_summary() -> None:
    vals = [float(x) for x in (500, 100, 400, 200, 300)]
    assert percentile(vals, 0.5) == 300.0 and percentile(vals, 0.95) == 500.0 and percentile([], 0.5) == 0.0
    # round() is the banker's rounding the demo uses: q*(n-1) = 0.5 -> index 0.
    assert percentile([1.0, 2.0], 0.5) == 1.0


def test_clearance_groups_by_lane_day_hour_and_kind_in_the_site_time_zone(tmp_path: Path) -> None:
    live = SiteLive(site())
    st = Store(tmp_path / "c.db")
    tz = ZoneInfo("Asia/Shanghai")
    base = dt.datetime(2026, 11, 20, 8, 0, tzinfo=tz).timestamp()
    specs = [
        ("c1", 0, {"arrived": 0, "identified": 400, "decided": 900, "released": 1000, "exited": 5000}, ["CSQU3054383"]),
        ("c1", 1, {"arrived": 0, "identified": 600, "decided": 1100, "released": 1300, "exited": 7000}, []),
        ("p1", 2, {"arrived": 0, "identified": 300, "decided": 500, "released": 600, "exited": 2000}, []),
        ("c1", 26, {"arrived": 0, "identified": 800, "decided": 1500, "released": 1600, "exited": 9000}, []),
    ]
    with st.transaction():
        for i, (lane, hours, stage_ms, boxes) in enumerate(specs):
            t0 = base + hours * 3600
            ev = _ev(lane, i + 1, "passage.completed", completed(f"p{i}", stage_ms, t0=t0, containers=boxes), t0 + 9)
            for eff in live.apply(ev):  # type: ignore[arg-type]
                if isinstance(eff, Completed):
                    st.upsert_passage(eff.row)
    rep = clearance(st, site=SITE_ID, tz=tz)
    g = rep.groups
    assert g["all"]["all"]["passages"] == 4
    # exited: 2000 5000 7000 9000 -> p50 index round(1.5) = 2 (round half to even);
    # steps (released -> exited): 4000 5700 1400 7400.
    assert g["all"]["all"]["stages"]["exited"] == {
        "n": 4,
        "p50": 7000.0,
        "p90": 9000.0,
        "p95": 9000.0,
        "max": 9000.0,
        "step_p50": 5700.0,
        "step_p95": 7400.0,
    }
    assert set(g["lane"]) == {"c1", "p1"} and g["lane"]["c1"]["passages"] == 3
    assert set(g["day"]) == {"2026-11-20", "2026-11-21"}
    assert set(g["hour"]) == {"08", "09", "10"}
    assert set(g["kind"]) == {"container_truck", "truck", "car"}
    assert g["kind"]["car"]["stages"]["identified"]["p50"] == 300.0
    day = clearance(
        st,
        site=SITE_ID,
        tz=tz,
        start=parse_bound("2026-11-20", tz, end=False),
        end=parse_bound("2026-11-20", tz, end=True),
    )
    assert day.groups["all"]["all"]["passages"] == 3
    only = clearance(st, site=SITE_ID, tz=tz, lanes=["c1"], kinds=["truck"])
    assert only.groups["all"]["all"]["passages"] == 2
    csv_lines = rep.to_csv().splitlines()
    assert csv_lines[0].startswith("dimension,group,stage,n,p50_ms") and any(
        x.startswith("lane,p1,exited,1,2000.0") for x in csv_lines
    )
    assert group_figures([])["all"]["all"]["passages"] == 0
    with pytest.raises(ValueError):
        parse_bound("yesterday", tz, end=False)
    assert parse_bound("2026-11-20T10:00", tz, end=False).utcoffset() == dt.timedelta(hours=8)
    st.close()


# ------------------------------------------------------------------------------ users


def test_passwords_are_salted_scrypt_and_users_files_are_checked(tmp_path: Path) -> None:
    h1, h2 = hash_password("correct horse"), hash_password("correct horse")
    assert h1 != h2 and h1.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse", h1) and not verify_password("correct hors", h1)
    assert not verify_password("x", "md5$abc")
    users = {
        "li": User(name="li", role="supervisor", password=h1),
        "wang": User(name="wang", role="officer", agency="customs", password=h2),  # type: ignore[arg-type]
    }
    path = tmp_path / "users.yaml"
    save_users(path, users)
    assert path.stat().st_mode & 0o777 == 0o640
    loaded = load_users(path)
    assert loaded == users
    assert check_login(loaded, "wang", "correct horse") == users["wang"]
    assert check_login(loaded, "wang", "wrong") is None and check_login(loaded, "nobody", "correct horse") is None
    assert (
        users["wang"].sees(["customs", "border"]) and not users["wang"].sees(["border"]) and not users["wang"].sees([])
    )
    assert users["li"].sees([])
    path.write_text("users:\n  - {name: zhao, role: officer, password: 'scrypt$1$1$1$AA==$AA=='}\n")
    with pytest.raises(UsersFileError, match=r"users\[0\].*officer belongs to an agency"):
        load_users(path)
    path.write_text("users:\n  - {name: zhao, role: supervisor, password: plain}\n")
    with pytest.raises(UsersFileError, match="scrypt"):
        load_users(path)


def test_sessions_expire() -> None:
    now = [0.0]
    s = Sessions(ttl_s=10, clock=lambda: now[0])
    u = User(name="li", role="supervisor", password=hash_password("pw-pw-pw-pw"))
    tok = s.create(u).token
    assert s.get(tok) == u and s.get("forged") is None and s.get(None) is None
    now[0] = 11
    assert s.get(tok) is None


def test_site_keys_are_checked_through_the_trust_layer() -> None:
    """The console verifies every key of the site file through ``trust.events.verify_event``
    (authority included: a lane's key signs only that lane's events)."""
    import yaml
    from console_helpers import SITE_FILE
    from portlane.edge.config import parse_site
    from portlane.edge.trust import events

    priv, pub = generate_keypair()
    raw = yaml.safe_load(SITE_FILE.read_text(encoding="utf-8"))
    raw["lanes"][0]["key"] = {"id": "lane-c1", "public_key": pub}
    v = EventVerifier.for_site(parse_site(raw))
    env = envelope("c1", 1, "passage.arrived", {"passage_id": "p", "lane_kind": "cargo"})
    signed = events.EventSigner("lane-c1", priv).sign(env)
    assert v.verify(signed, "c1") == "verified:lane-c1"
    for forged, reason in (
        ({**signed, "data": {**signed["data"], "passage_id": "x"}}, "bad_signature"),
        (events.EventSigner("lane-c9", priv).sign(env), "unknown_key"),
        (events.EventSigner("lane-c1", priv).sign({**env, "source": f"portlane://{SITE_ID}/c2"}), "not_authorised"),
    ):
        with pytest.raises(EventRejectedError) as exc:
            v.verify(forged, "c1")
        assert exc.value.reason == reason
