"""The ANSI N42.42-2012 export of an occupancy, read back by a standard parser.

The parser is Sandia's SpecUtils (PyPI ``sandiaspecutils``, the library InterSpec and OSCAR
use): it must read the document as a portal's N42 file — instrument, detectors, a background
and an occupied foreground measurement per gamma panel with its neutron counts merged in, live
times and counts as exported. SpecUtils does not surface ``RadAlarm`` to Python, so the
alarms are checked with the standard library's XML parser, against the N42 namespace.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from portlane.edge.contract.events import RpmOccupancyEvent
from portlane.edge.contract.n42 import N42_NAMESPACE, PortalInfo, occupancy_document

SpecUtils = pytest.importorskip("SpecUtils", reason="sandiaspecutils is in the dev extra")

NS = {"n": N42_NAMESPACE}
OCC = RpmOccupancyEvent(
    passage_id="c1-19ab-7",
    portal="c1/rpm",
    occupancy=123,
    started="2026-12-06T09:41:00.000Z",
    ended="2026-12-06T09:41:02.400Z",
    live_s=2.4,
    gamma_counts=(6100, 6230, 5980, 6050),
    neutron_counts=(9, 12, 7, 10),
    gamma_background_cps=(2410.0, 2380.0, 2450.0, 2395.0),
    neutron_background_cps=(1.5, 1.0, 2.0, 1.5),
    gamma_alarm=True,
    neutron_alarm=True,
    gamma_sigma=12.5,
    nsigma=4.0,
    speed_kph=8.2,
    verdict="alarm",
)


def _read(tmp_path: Path, xml: bytes) -> object:
    path = tmp_path / "occupancy.n42"
    path.write_bytes(xml)
    spec = SpecUtils.SpecFile()
    spec.loadFile(str(path), SpecUtils.ParserType.N42_2012)
    return spec


def test_specutils_reads_the_occupancy(tmp_path: Path) -> None:
    spec = _read(tmp_path, occupancy_document(OCC, PortalInfo("c1/rpm", manufacturer="Acme"), version="0.1.0"))
    assert spec.instrumentId() == "c1/rpm" and spec.instrumentType() == "Portal Monitor"
    assert spec.detectorNames() == ["Gamma-1", "Gamma-2", "Gamma-3", "Gamma-4"]
    ms = spec.measurements()
    fg = [m for m in ms if m.sourceType() == SpecUtils.SourceType.Foreground]
    bg = [m for m in ms if m.sourceType() == SpecUtils.SourceType.Background]
    assert len(fg) == len(bg) == 4
    assert all(m.occupied() == SpecUtils.OccupancyStatus.Occupied for m in fg)
    assert all(m.occupied() == SpecUtils.OccupancyStatus.NotOccupied for m in bg)
    assert [m.gammaCountSum() for m in fg] == list(OCC.gamma_counts)
    assert [m.neutronCountsSum() for m in fg] == list(OCC.neutron_counts)
    assert [m.gammaCountSum() for m in bg] == list(OCC.gamma_background_cps)  # counts in one second
    assert all(m.liveTime() == pytest.approx(2.4) and m.realTime() == pytest.approx(2.4) for m in fg)
    assert spec.gammaCountSum() == sum(OCC.gamma_counts) + sum(OCC.gamma_background_cps)
    assert not spec.parseWarnings()


def test_alarms_are_rad_alarms_of_their_category() -> None:
    root = ET.fromstring(occupancy_document(OCC, PortalInfo("c1/rpm")))
    assert root.tag == f"{{{N42_NAMESPACE}}}RadInstrumentData"
    alarms = root.findall("n:AnalysisResults/n:RadAlarm", NS)
    assert [a.findtext("n:RadAlarmCategoryCode", namespaces=NS) for a in alarms] == ["Gamma", "Neutron"]
    assert alarms[0].get("radDetectorInformationReferences") == "Gamma-1 Gamma-2 Gamma-3 Gamma-4"
    occupancy = root.findall("n:RadMeasurement/n:OccupancyIndicator", NS)
    assert [o.text for o in occupancy] == ["false", "true"]
    clean = OCC.model_copy(update={"gamma_alarm": False, "neutron_alarm": False, "verdict": "clear"})
    assert ET.fromstring(occupancy_document(clean, PortalInfo("c1/rpm"))).findall(".//n:RadAlarm", NS) == []


def test_the_same_occupancy_gives_the_same_document() -> None:
    info = PortalInfo("c1/rpm")
    assert occupancy_document(OCC, info) == occupancy_document(OCC, info)  # stable document id


@settings(max_examples=25, deadline=None)
@given(
    gamma=st.lists(st.integers(0, 10**7), min_size=1, max_size=8),
    neutron=st.lists(st.integers(0, 10**5), min_size=1, max_size=8),
    live=st.floats(0.2, 600.0),
)
def test_any_occupancy_round_trips_through_specutils(
    tmp_path_factory: pytest.TempPathFactory, gamma: list[int], neutron: list[int], live: float
) -> None:
    occ = OCC.model_copy(
        update={
            "gamma_counts": tuple(gamma),
            "neutron_counts": tuple(neutron),
            "gamma_background_cps": (1000.0,) * len(gamma),
            "neutron_background_cps": (1.0,) * len(neutron),
            "live_s": round(live, 3),
        }
    )
    spec = _read(tmp_path_factory.mktemp("n42"), occupancy_document(occ, PortalInfo("c1/rpm")))
    fg = [m for m in spec.measurements() if m.sourceType() == SpecUtils.SourceType.Foreground]
    assert sum(m.gammaCountSum() for m in fg) == sum(gamma)
    assert sum(m.neutronCountsSum() for m in fg) == sum(neutron)
