"""The console's pure parts: the live picture and its alarms (cargo lanes and pre-decisions
included), the console's findings from the library, the database's schema upgrade, analytics,
users and passwords."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from console_helpers import SITE_ID, completed, envelope, live_ev, site
from portlane.edge.client import UnitView
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
from portlane.edge.console.live import SiteLive
from portlane.edge.console.picture import LiveEvent
from portlane.edge.console.store import Store
from portlane.edge.contract.events import UnitStatus
from portlane.edge.errors import UsersFileError

# ------------------------------------------------------------------------------ live picture


def _ev(unit: str, seq: int, type_: str, data: dict, t: float) -> LiveEvent:
    return live_ev(envelope(unit, seq, type_, data, t=t))


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
    # The lane's signed status closes it (the library's UnitView: state "closed"); a signed
    # offline is an alarm, the broker's unsigned last will only "offline? (unconfirmed)".
    out = live.on_unit(UnitView("p1", "closed", status("p1", in_service=False, reason="closed by close_lane")), 1)
    assert [x.key for x in out if isinstance(x, Raise)] == ["closed:p1"] and not live.lanes["p1"].in_service
    assert live.lanes["p1"].closed_reason == "closed by close_lane"
    out = live.on_unit(UnitView("p1", "online", status("p1")), 2)
    assert {x.key for x in out if isinstance(x, Clear)} == {"offline:p1", "closed:p1"}
    [offline] = [
        x for x in live.on_unit(UnitView("c3", "offline", status("c3", state="offline")), 3) if isinstance(x, Raise)
    ]
    assert (offline.key, offline.severity, offline.title) == ("offline:c3", "critical", "c3: offline")
    will = live.on_unit(UnitView("c4", "unconfirmed_offline", None, will=True), 4)
    [unconfirmed] = [x for x in will if isinstance(x, Raise)]
    assert unconfirmed.severity == "warning" and "unconfirmed" in unconfirmed.title
    assert live.snapshot(5)["lanes"][3]["state"] == "unconfirmed_offline"
    assert live.on_unit(UnitView("c1", "unknown"), 6) == []  # no signed word yet: nothing shown


def status(unit: str, *, state: str = "online", in_service: bool = True, reason: str | None = None) -> UnitStatus:
    return UnitStatus(state=state, unit=unit, in_service=in_service, reason=reason)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ analytics


def test_percentiles_are_nearest_rank_like_the_demo_summary() -> None:
    vals = [float(x) for x in (500, 100, 400, 200, 300)]
    assert percentile(vals, 0.5) == 300.0 and percentile(vals, 0.95) == 500.0 and percentile([], 0.5) == 0.0
    # round() is the banker's rounding the demo uses: q*(n-1) = 0.5 -> index 0.
    assert percentile([1.0, 2.0], 0.5) == 1.0


def test_clearance_groups_by_lane_day_hour_kind_and_release_basis_in_the_site_time_zone(tmp_path: Path) -> None:
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
            basis = "predecision" if i == 0 else "online"  # the first released by the lane on pre-decisions
            data = completed(f"p{i}", stage_ms, t0=t0, containers=boxes, release_basis=basis)
            ev = _ev(lane, i + 1, "passage.completed", data, t0 + 9)
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
    # By what released them (portlane report clearance prints it): the lane itself, on signed
    # pre-decisions, against the platform's decisions online.
    assert {k: v["passages"] for k, v in g["basis"].items()} == {"online": 3, "predecision": 1}
    assert g["basis"]["predecision"]["stages"]["exited"]["p50"] == 5000.0
    assert live.lanes["c1"].released_by == {"predecision": 1, "online": 2}
    assert live.lanes["c1"].automatic_share == round(1 / 3, 3)
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


# ------------------------------------------------------------------------------ cargo lanes, pre-decisions


def test_radiation_seals_and_pre_decisions_are_shown_and_alarmed() -> None:
    live = SiteLive(site())
    t0 = 1_700_000_000.0
    live.apply(_ev("c1", 1, "passage.arrived", {"passage_id": "p1", "lane_kind": "cargo"}, t0))
    refusal = {"reason": "seal_mismatch", "agency": None, "predecision_id": None, "detail": "x"}
    ident = {"passage_id": "p1", "confidence": 0.95, "predecision_refusals": [refusal]}
    live.apply(_ev("c1", 2, "vehicle.identified", ident, t0 + 1))
    live.apply(_ev("c1", 3, "vehicle.identified", {**ident, "corrected_by": "officer"}, t0 + 2))  # once per passage
    assert live.lanes["c1"].refusals == {"seal_mismatch": 1}
    assert live.snapshot(0)["lanes"][0]["passage"]["predecision_refusals"] == ["seal_mismatch"]

    alarm = {"passage_id": "p1", "portal": "c1/rpm", "occupancy": 7, "categories": ["gamma"], "gamma_sigma": 9.2}
    [radiation] = live.apply(_ev("c1", 4, "rpm.alarm", alarm, t0 + 3))
    assert isinstance(radiation, Raise) and (radiation.kind, radiation.severity) == ("radiation", "critical")
    assert radiation.agencies and "9.2" in radiation.detail
    adjudicated = {
        "passage_id": "p1",
        "occupancy": 7,
        "agency": "customs",
        "code": 4,
        "code_name": "NORM",
        "effect": "release",
        "isotopes": ["K-40"],
        "remark": "",
        "command_nonce": "n1",
    }
    cleared, notice = live.apply(_ev("c1", 5, "rpm.adjudicated", adjudicated, t0 + 4))
    assert isinstance(cleared, Clear) and cleared.key == radiation.key
    assert isinstance(notice, Raise) and notice.notice and "NORM (4) → release" in notice.title
    assert live.lanes["c1"].passage.radiation == "adjudicated: release"  # type: ignore[union-attr]

    seal = {"passage_id": "p1", "reader": "c1/seals", "seals": [], "declared": ["0001-0000000A"]}
    assert live.apply(_ev("c1", 6, "seal.read", seal, t0 + 5)) == []  # every declared seal read
    [seals] = live.apply(_ev("c1", 7, "seal.read", {**seal, "exceptions": ["seal_missing"]}, t0 + 5))
    assert isinstance(seals, Raise) and seals.kind == "seal" and "seal_missing" in seals.title
    decided = {"passage_id": "p1", "agency": "customs", "decision": "release", "phase": "initial"}
    live.apply(_ev("c1", 8, "passage.decided", {**decided, "command_nonce": "n", "basis": "predecision"}, t0 + 6))
    assert live.lanes["c1"].passage.basis == {"customs": "predecision"}  # type: ignore[union-attr]
    done = live.apply(
        _ev("c1", 9, "passage.completed", completed("p1", {"arrived": 0}, t0=t0, release_basis="predecision"), t0 + 9)
    )
    assert {x.key for x in done if isinstance(x, Clear)} >= {seals.key, radiation.key}
    [row] = [x.row for x in done if isinstance(x, Completed)]
    assert row.release_basis == "predecision" and live.lanes["c1"].automatic_share == 1.0

    for kind in ("predecision_revoked", "revoked_after_release"):
        [x] = live.apply(_ev("c2", 1, "lane.exception", {"passage_id": "p9", "kind": kind, "detail": "布控"}, t0))
        assert (
            isinstance(x, Raise) and (x.kind, x.severity) == ("predecision", "critical") and "control order" in x.title
        )


# ------------------------------------------------------------------------------ findings


def test_refused_input_is_a_site_alarm_per_reason_never_a_fact() -> None:
    from portlane.edge.client import Anomaly, ConsumerStats, GapAbandoned, Refusal, StreamView
    from portlane.edge.console.findings import REFUSAL_QUIET_MS, Findings

    f = Findings(can_ask=True, gap_alarm_after_ms=30_000)
    stats = ConsumerStats(refused={"unsigned": 3, "malformed": 1})
    recent = [Refusal("unsigned", "portlane/v1/s/xray-1/event/scan.completed/c1"), Refusal("malformed", "t")]
    effects, new = f.refusals(stats, recent, 0)
    by_key = {x.key: x for x in effects if isinstance(x, Raise)}
    assert set(by_key) == {"refused:unsigned", "refused:malformed"}
    assert by_key["refused:unsigned"].kind == "signature" and by_key["refused:unsigned"].agencies == ()
    assert by_key["refused:malformed"].kind == "contract" and "3 messages" in by_key["refused:unsigned"].title
    assert new == recent  # for the rejected table (topic and reason, nothing believed)
    assert f.refusals(stats, recent, 1000) == ([], [])  # nothing new
    stats.refused["unsigned"] = 5
    effects, new = f.refusals(stats, recent, 2000)
    assert [x.title for x in effects if isinstance(x, Raise)] == ["5 messages refused: unsigned"]
    assert len(new) == 2  # the newest the library kept
    quiet, _ = f.refusals(stats, recent, 2000 + REFUSAL_QUIET_MS)
    assert {x.key for x in quiet if isinstance(x, Clear)} == {"refused:unsigned", "refused:malformed"}

    [contract] = f.output(Anomaly("conflict", "c1", "c1-key", "s/c1/1/4 signed twice"), 0)
    assert isinstance(contract, Raise) and contract.kind == "contract" and "two events" in contract.title
    [lost] = f.output(GapAbandoned("c1", 1, 3, "no_answer"), 0)
    assert isinstance(lost, Raise) and lost.notice and lost.title == "c1: 3 events lost (epoch 1)"

    gap = StreamView("c1", 1, 9, 6, ((3, 5),), 0)
    assert f.gaps([gap], lambda u, e: 1, 0) == []  # just found: the library asks first
    [raised] = f.gaps([gap], lambda u, e: 2, 30_000)
    assert isinstance(raised, Raise) and raised.key == "gap:c1:1" and "asked 2 times" in raised.detail
    [filled] = f.gaps([StreamView("c1", 1, 9, 9, (), 0)], lambda u, e: 0, 31_000)
    assert isinstance(filled, Clear) and filled.key == "gap:c1:1"
    [cannot] = Findings(can_ask=False).gaps([gap], lambda u, e: 0, 0)
    assert isinstance(cannot, Raise) and "no signing key" in cannot.detail


# ------------------------------------------------------------------------------ store


def test_a_schema_1_database_is_upgraded_and_still_reported(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema', '1');"
        "CREATE TABLE streams (unit TEXT NOT NULL, epoch INTEGER NOT NULL, max_seq INTEGER NOT NULL,"
        " missing TEXT NOT NULL, missing_since_ms INTEGER, replay_tries INTEGER NOT NULL DEFAULT 0,"
        " replay_next_ms INTEGER NOT NULL DEFAULT 0, replay_last TEXT, PRIMARY KEY (unit, epoch));"
        "INSERT INTO streams VALUES ('c1', 5, 40, '[[3, 4]]', NULL, 0, 0, NULL);"
        "CREATE TABLE passages (passage_id TEXT PRIMARY KEY, lane TEXT NOT NULL, lane_kind TEXT NOT NULL,"
        " vehicle_kind TEXT NOT NULL, outcome TEXT NOT NULL, inspected INTEGER NOT NULL, scan_result TEXT,"
        " arrived_ms INTEGER NOT NULL, completed_ms INTEGER NOT NULL, local_day TEXT NOT NULL,"
        " local_hour INTEGER NOT NULL, plates TEXT NOT NULL, containers TEXT NOT NULL, stage_ms TEXT NOT NULL,"
        " event_id TEXT NOT NULL);"
        "INSERT INTO passages VALUES ('p1', 'c1', 'cargo', 'truck', 'released', 0, NULL, 0, 1, '2026-11-20', 8,"
        " '[]', '[]', '{\"exited\": 5000}', 'e1');"
    )
    db.commit()
    db.close()
    ro = Store(path, readonly=True)  # portlane report reads it as it is
    [old] = ro.passages()
    assert old.release_basis is None and ro.released_by_basis() == {}
    ro.close()
    st = Store(path)  # a writer upgrades it in place
    assert st.meta()["schema"] == "2" and st.load_streams()[0].missing == ((3, 4),)
    [row] = st.passages()
    assert row.passage_id == "p1" and row.release_basis is None
    assert group_figures([row])["basis"] == {"unknown": group_figures([row])["all"]["all"]}
    st.close()
