"""A cargo lane with a radiation portal and an e-seal reader: the lane daemon on virtual devices
and a real broker (issue 21).

The test plays the physical lane (``world``: loops, the portal's occupancies, the seals in the
reader's field) and the platform (signed decisions, adjudications, e-lock commands through the
broker); it reads what the lane published (its outbox), what the gate controller was told and
what the locks did.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from portlane.drivers.base import GatePosition
from portlane.drivers.cargo_devices import RadiationFault, RouteStatus, SealKind, SealRecord, SealState
from portlane.edge.demo.broker import BrokerProcess
from portlane.edge.lane.passage import LaneTimeouts, Stage
from portlane.edge.trust.audit_chain import read_entries

from tests.virtual_lane import LaneRig, register, start_lane, stop_lane

TAG = "E20034120193050000C1"
PLATE = "粤B12345"
SEALED_AT = dt.datetime(2026, 12, 6, 9, 41, tzinfo=dt.UTC)
LOCK = SealRecord(0x0A1B, 0x00C0FFEE, SealKind.ELOCK, SealState.SEALED, SEALED_AT, None, 87, route=RouteStatus.ON_ROUTE)
FOREIGN = SealRecord(0x0C02, 0x00000042, SealKind.ESEAL, SealState.SEALED, SEALED_AT, None, 90)
CODE = "K3Y-0001"  # the code customs issued for LOCK
AGENCIES = ("customs", "border")


@pytest.fixture
async def rig(broker: BrokerProcess, tmp_path: Path) -> Any:
    r = await start_lane(broker.url, tmp_path, timeouts=LaneTimeouts(identify_s=1.0, gate_confirm_s=0.3), cargo=True)
    await register(r, TAG, [PLATE], seals=[LOCK.seal_id])
    r.world.seals.place(LOCK, authorisation=CODE)
    yield r
    await stop_lane(r)


async def drive_in(r: LaneRig, *, gamma_cps: float = 0.0, alarm: bool = False, leaves_portal: bool = True) -> str:
    """The truck passes the portal on the approach, reaches the stop line and is identified;
    returns its passage id. ``leaves_portal`` False: the portal has not ended the occupancy."""
    r.world.present_tag(TAG)
    r.world.rpm.enter()
    r.world.set_inputs(entry_loop=True)
    await r.until(lambda: r.logic.passage is not None)
    if leaves_portal:
        r.world.rpm.leave(gamma_cps=gamma_cps, gamma_alarm=alarm)
    r.world.set_inputs(in_position=True)
    await r.until(lambda: r.logic.stage == Stage.AWAITING_DECISION)
    assert r.logic.passage is not None
    return r.logic.passage.id


async def every_agency(r: LaneRig, pid: str, verdict: str = "release") -> None:
    for agency in AGENCIES:
        await r.platform.send("c1", "decision", pid, agency=agency, verdict=verdict)
    await r.until(lambda: sum(1 for d in r.events("passage.decided") if d["passage_id"] == pid) >= len(AGENCIES))


def gate_opens(r: LaneRig) -> int:
    return sum(1 for c in r.world.commands if c.device == "gate" and c.action == "open")


def exceptions(r: LaneRig, pid: str | None) -> list[str]:
    return [d["kind"] for d in r.events("lane.exception") if d["passage_id"] == pid]


async def refusal(r: LaneRig, command: str, pid: str, **args: Any) -> str:
    """Send ``command`` and return the reason of the lane's refusal (its ``command.rejected``)."""

    def rejected() -> list[dict[str, Any]]:
        return [d for d in r.events("command.rejected") if d["command"] == command]

    before = len(rejected())
    await r.platform.send("c1", command, pid, **args)
    await r.until(lambda: len(rejected()) > before)
    return str(rejected()[-1]["reason"])


async def test_an_occupancy_goes_to_its_passage_with_its_n42_document_and_the_seals_are_read(
    rig: LaneRig, tmp_path: Path
) -> None:
    r = rig
    pid = await drive_in(r)
    occ = await r.until_event("rpm.occupancy", lambda d: d["passage_id"] == pid)
    assert occ["verdict"] == "clear" and occ["portal"] == "c1/rpm" and occ["occupancy"] == 1
    # The document is on disk where the event says, and a standard N42.42 reader takes it.
    specutils = pytest.importorskip("SpecUtils", reason="sandiaspecutils is in the dev extra")
    spec = specutils.SpecFile()
    spec.loadFile(str(tmp_path / occ["n42"]), specutils.ParserType.N42_2012)
    assert spec.instrumentId() == "c1/rpm" and spec.instrumentType() == "Portal Monitor"
    [read] = r.events("seal.read")
    assert read["passage_id"] == pid and [s["seal_id"] for s in read["seals"]] == [LOCK.seal_id]
    assert read["declared"] == [LOCK.seal_id] and read["exceptions"] == []
    [ident] = r.events("vehicle.identified")
    assert not {e for e in ident["exceptions"] if e.startswith("seal")}
    await every_agency(r, pid)
    await r.until(lambda: r.world.gate.position == GatePosition.OPEN)
    status = r.daemon.status()
    assert status["devices"]["rpm"]["portal"]["occupancies"] == 1 and status["auto_release_held"] == []
    assert {"rpm", "seal_reader"} <= set(status["devices"])


async def test_an_innocent_alarm_holds_the_release_until_it_is_adjudicated(rig: LaneRig) -> None:
    r = rig
    pid = await drive_in(r, gamma_cps=3000.0, alarm=True)  # a load of granite tiles: NORM
    alarm = await r.until_event("rpm.alarm", lambda d: d["passage_id"] == pid)
    assert alarm["categories"] == ["gamma"]
    await r.until(lambda: "radiation_alarm" in exceptions(r, pid))
    assert any("RADIATION" in line.text for board in r.world.boards for line in board)
    await every_agency(r, pid)
    assert r.logic.stage == Stage.AWAITING_DECISION and gate_opens(r) == 0  # every agency released: held
    occupancy = alarm["occupancy"]
    await r.platform.send("c1", "adjudicate", pid, agency="customs", occupancy=occupancy, code=4, isotopes=["K-40"])
    await r.until(lambda: r.world.gate.position == GatePosition.OPEN)
    [adj] = r.events("rpm.adjudicated")
    assert (adj["code"], adj["effect"], adj["code_name"], adj["isotopes"]) == (
        4,
        "release",
        "innocent: NORM found",
        ["K-40"],
    )
    # A second adjudication of the same alarm is refused.
    assert await refusal(r, "adjudicate", pid, agency="customs", occupancy=occupancy, code=1) == "already_adjudicated"


async def test_a_real_alarm_adjudicated_diverts_the_vehicle_with_the_code_as_reason(rig: LaneRig) -> None:
    r = rig
    pid = await drive_in(r, gamma_cps=50_000.0, alarm=True)
    alarm = await r.until_event("rpm.alarm", lambda d: d["passage_id"] == pid)
    # Refusals first: an occupancy that is not the passage's, an agency the lane does not have.
    assert (
        await refusal(r, "adjudicate", pid, agency="customs", occupancy=alarm["occupancy"] + 1, code=4)
        == "wrong_occupancy"
    )
    assert (
        await refusal(r, "adjudicate", pid, agency="maritime", occupancy=alarm["occupancy"], code=4) == "unknown_agency"
    )
    await r.platform.send("c1", "adjudicate", pid, agency="customs", occupancy=alarm["occupancy"], code=1)
    await r.until(lambda: r.logic.stage in (Stage.DIVERTED, Stage.EXITING) and gate_opens(r) == 1)
    [diverted] = r.events("passage.diverted")
    assert diverted["passage_id"] == pid and not r.events("passage.released")
    r.world.set_inputs(entry_loop=False, in_position=False, photocell=True, safety_loop=True)
    r.world.set_inputs(photocell=False, safety_loop=False, exit_loop=True)
    r.world.set_inputs(exit_loop=False)
    done = await r.until_event("passage.completed", lambda d: d["passage_id"] == pid)
    assert done["outcome"] == "diverted" and "adjudicated 1 (real: contraband found)" in done["reason"]


async def test_a_portal_fault_holds_automatic_release_lane_wide_without_closing_the_lane(rig: LaneRig) -> None:
    r = rig
    pid = await drive_in(r)  # counted while the portal was healthy: clear
    await r.until_event("rpm.occupancy", lambda d: d["passage_id"] == pid and d["verdict"] == "clear")
    r.world.rpm.faults.add(RadiationFault.GAMMA_HIGH)
    await r.until(lambda: "rpm_fault" in exceptions(r, None))
    await r.until_event("device.state", lambda d: d["device"] == "rpm" and d["health"] == "degraded")
    assert r.logic.in_service and r.daemon.status()["auto_release_held"]
    await every_agency(r, pid)
    await r.until(lambda: "rpm_fault" in exceptions(r, pid))
    assert r.logic.stage == Stage.AWAITING_DECISION and gate_opens(r) == 0
    r.world.rpm.faults.clear()  # the technician fixed the detector: the held release goes ahead
    await r.until(lambda: r.world.gate.position == GatePosition.OPEN)
    assert any(d["device"] == "rpm" and d["health"] == "online" for d in r.events("device.state"))
    assert r.daemon.status()["auto_release_held"] == []


async def test_an_occupancy_counted_while_the_portal_was_faulted_waits_for_an_officer(rig: LaneRig) -> None:
    r = rig
    r.world.rpm.faults.add(RadiationFault.GAMMA_LOW)  # a dead detector: its counts clear nobody
    await r.until(lambda: "rpm_fault" in exceptions(r, None))
    pid = await drive_in(r)
    await r.until_event("rpm.occupancy", lambda d: d["passage_id"] == pid and d["verdict"] == "fault")
    r.world.rpm.faults.clear()
    await r.until(lambda: r.daemon.status()["auto_release_held"] == [])
    await every_agency(r, pid)
    await r.until(lambda: "rpm_fault" in exceptions(r, pid))
    assert gate_opens(r) == 0
    r.daemon.override("open", operator="officer-zh-017", reason="re-scanned with the handheld: background only")
    await r.until(lambda: r.world.gate.position == GatePosition.OPEN)


async def test_a_portal_that_does_not_answer_holds_release_and_a_late_occupancy_releases_it(rig: LaneRig) -> None:
    r = rig
    pid = await drive_in(r, leaves_portal=False)  # the portal still counts: no verdict yet
    await every_agency(r, pid)
    await r.until(lambda: "rpm_occupancy_without_verdict" in exceptions(r, pid))
    assert gate_opens(r) == 0
    r.world.rpm.leave()
    await r.until(lambda: r.world.gate.position == GatePosition.OPEN)
    # Offline: the lane says so once and stays in service.
    r.world.faults("rpm").unplugged = True
    await r.until(
        lambda: any(d["kind"] == "rpm_fault" and "offline" in d["detail"] for d in r.events("lane.exception"))
    )
    assert r.logic.in_service


async def test_tampered_and_foreign_seals_are_named_and_hold_release_for_an_officer(rig: LaneRig) -> None:
    r = rig
    r.world.seals.clear()
    r.world.seals.place(SealRecord(0x0A1B, 0x00C0FFEE, SealKind.ELOCK, SealState.TAMPERED, SEALED_AT, None, 80))
    r.world.seals.place(FOREIGN)
    pid = await drive_in(r)
    [ident] = r.events("vehicle.identified")
    assert {"seal_tampered", "seal_foreign", "elock_off_route"} <= set(ident["exceptions"])
    [read] = r.events("seal.read")
    assert {"seal_tampered", "seal_foreign"} <= set(read["exceptions"])
    await every_agency(r, pid)
    await r.until(lambda: {"seal_tampered", "seal_foreign"} <= set(exceptions(r, pid)))
    assert gate_opens(r) == 0 and r.logic.stage == Stage.AWAITING_DECISION
    # The officer refuses it: customs diverts the truck to the inspection bay.
    await r.platform.send("c1", "divert", pid, agency="customs")
    await r.until(lambda: gate_opens(r) == 1 and bool(r.events("passage.diverted")))


async def test_an_elock_is_removed_only_on_customs_signed_command_with_its_code(rig: LaneRig, tmp_path: Path) -> None:
    r = rig
    pid = await drive_in(r)
    assert (
        await refusal(r, "seal_remove", pid, agency="border", seal_id=LOCK.seal_id, authorisation=CODE) == "not_customs"
    )
    assert (
        await refusal(r, "seal_remove", pid, agency="customs", seal_id=FOREIGN.seal_id, authorisation=CODE)
        == "seal_not_in_field"
    )
    assert (
        await refusal(r, "seal_remove", pid, agency="customs", seal_id=LOCK.seal_id, authorisation="WRONG-01")
        == "lock_authorisation_refused"
    )
    assert "lock_authorisation_refused" in exceptions(r, pid)
    assert r.world.seals.records[LOCK.seal_id].state is SealState.SEALED
    await r.platform.send("c1", "seal_remove", pid, agency="customs", seal_id=LOCK.seal_id, authorisation=CODE)
    changed = await r.until_event("seal.changed")
    assert (changed["seal_id"], changed["action"], changed["state"]) == (LOCK.seal_id, "remove", "opened")
    assert r.world.seals.records[LOCK.seal_id].state is SealState.OPENED
    assert [c.action for c in r.world.commands if c.device == "seal_reader"] == ["remove"]
    # Audited before the lock was told, and customs' code is nowhere in the record.
    audit = (tmp_path / "audit.jsonl").read_text()
    kinds = [e.kind for _n, e, _raw in read_entries(tmp_path / "audit.jsonl") if e is not None]
    assert "seal_remove" in kinds and "seal_remove_refused" in kinds and CODE not in audit
    # Opened by customs is no seal exception: the truck is released.
    await every_agency(r, pid)
    await r.until(lambda: r.world.gate.position == GatePosition.OPEN)


async def test_a_lane_restarted_mid_passage_gives_the_truck_still_there_its_occupancy_again(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    """kill -9 while the truck waits at the stop line: the next process closes the passage out
    and the truck's new passage takes the occupancy the portal reported before the crash."""
    timeouts = LaneTimeouts(identify_s=1.0, gate_confirm_s=0.3)
    r = await start_lane(broker.url, tmp_path, timeouts=timeouts, cargo=True)
    await register(r, TAG, [PLATE], seals=[LOCK.seal_id])
    r.world.seals.place(LOCK, authorisation=CODE)
    pid = await drive_in(r)
    occ = await r.until_event("rpm.occupancy", lambda d: d["passage_id"] == pid)
    r.tasks[0].cancel()  # the process dies: no shutdown path runs
    await asyncio.gather(r.tasks[0], return_exceptions=True)
    await r.platform.link.close()
    r.tasks[1].cancel()
    r2 = await start_lane(broker.url, tmp_path, timeouts=timeouts, cargo=True)
    try:
        await register(r2, TAG, [PLATE], seals=[LOCK.seal_id])
        await r2.until(lambda: r2.logic.passage is not None and r2.logic.passage.id != pid)
        assert r2.logic.passage is not None
        new = r2.logic.passage.id
        again = await r2.until_event("rpm.occupancy", lambda d: d["passage_id"] == new)
        assert again["occupancy"] == occ["occupancy"] and again["n42"] == occ["n42"]
        r2.world.present_tag(TAG)
        await r2.until(lambda: r2.logic.stage == Stage.AWAITING_DECISION)
        await every_agency(r2, new)
        await r2.until(lambda: r2.world.gate.position == GatePosition.OPEN)
    finally:
        await stop_lane(r2)
