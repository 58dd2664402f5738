"""ANSI N42.42-2012 export of one radiation portal occupancy (pure: a contract model in, XML out).

N42.42-2012 is the standard XML for radiation instrument data; every portal vendor and the
analysis tools (Sandia's SpecUtils / InterSpec, LBNL's becquerel, OSCAR) read it. One
occupancy becomes one ``RadInstrumentData`` document (namespace
``http://physics.nist.gov/N42/2011/N42``)::

    RadInstrumentData
      RadInstrumentDataCreatorName           portlane <version>
      RadInstrumentInformation               the portal: identifier, model, class "Portal Monitor"
      RadDetectorInformation × panels        Gamma-1..n (PVT), Neutron-1..n (He3)
      EnergyCalibration                      the gamma panels' counting window (below)
      RadMeasurement  Background             the portal's background: counts in 1 s per panel
      RadMeasurement  Foreground             the occupancy: counts over its live time, with
                                             OccupancyIndicator true
      AnalysisResults                        the portal's verdict, with one RadAlarm per alarm
                                             category (Gamma / Neutron)

Gamma panels of a gross-counting portal (PVT) count every pulse inside one discriminator
window; each panel's counts are written as a one-channel ``Spectrum`` over that window
(``EnergyCalibration`` maps channel 0 to ``GAMMA_WINDOW_KEV``), which is what a gross count
in an energy window is, and what spectrum readers (SpecUtils among them) read as gamma
counts — they skip gamma ``GrossCounts``. Neutron detectors have no energy: ``GrossCounts``.

Read back in the tests by SpecUtils' Python bindings (PyPI ``sandiaspecutils``).
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from .events import RpmOccupancyEvent
from .times import parse_rfc3339

__all__ = ["GAMMA_WINDOW_KEV", "N42_NAMESPACE", "PortalInfo", "occupancy_document"]

N42_NAMESPACE = "http://physics.nist.gov/N42/2011/N42"
#: Discriminator window of the gamma panels (keV): a PVT portal counts ~60 keV to ~3 MeV.
GAMMA_WINDOW_KEV = (60.0, 3000.0)
#: Background rates are written as the counts of one second.
BACKGROUND_S = 1.0


@dataclass(frozen=True, slots=True)
class PortalInfo:
    """What the document says about the instrument (from the site file)."""

    identifier: str  # the device id, e.g. "c1/rpm"
    manufacturer: str = "unknown"
    model: str = "gross-counting portal"
    software: str = "portlane"
    location: str = ""  # e.g. "zhuhai-hzmb-cargo lane c1"


def _duration(seconds: float) -> str:
    return f"PT{seconds:.3f}S"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrib)
    if text is not None:
        el.text = text
    return el


def _measurement(
    root: ET.Element,
    mid: str,
    cls: str,
    start: str,
    seconds: float,
    gamma: tuple[float, ...],
    neutron: tuple[float, ...],
    *,
    occupied: bool,
) -> None:
    m = _sub(root, "RadMeasurement", id=mid)
    _sub(m, "MeasurementClassCode", cls)
    _sub(m, "StartDateTime", start)
    _sub(m, "RealTimeDuration", _duration(seconds))
    for i, counts in enumerate(gamma, start=1):
        s = _sub(m, "Spectrum", id=f"{mid}-G{i}", radDetectorInformationReference=f"Gamma-{i}")
        s.set("energyCalibrationReference", "GammaWindow")
        _sub(s, "LiveTimeDuration", _duration(seconds))
        _sub(s, "ChannelData", f"{counts:.15g}")
    for i, counts in enumerate(neutron, start=1):
        g = _sub(m, "GrossCounts", id=f"{mid}-N{i}", radDetectorInformationReference=f"Neutron-{i}")
        _sub(g, "LiveTimeDuration", _duration(seconds))
        _sub(g, "CountData", f"{counts:.15g}")
    _sub(m, "OccupancyIndicator", "true" if occupied else "false")


def occupancy_document(occ: RpmOccupancyEvent, portal: PortalInfo, *, version: str = "") -> bytes:
    """The N42.42-2012 document of one occupancy, UTF-8 XML with its declaration."""
    ET.register_namespace("", N42_NAMESPACE)
    ns = "{" + N42_NAMESPACE + "}"
    parse_rfc3339(occ.started)  # refuse a malformed time before writing anything
    doc_id = uuid.uuid5(uuid.NAMESPACE_URL, f"portlane:{portal.identifier}:{occ.occupancy}:{occ.started}")
    root = ET.Element(ns + "RadInstrumentData", {"n42DocUUID": str(doc_id), "n42DocDateTime": occ.ended})
    # ElementTree writes the default namespace once on the root; children use bare names.
    _sub(root, "RadInstrumentDataCreatorName", f"portlane {version}".strip())
    info = _sub(root, "RadInstrumentInformation", id="Portal")
    _sub(info, "RadInstrumentManufacturerName", portal.manufacturer)
    _sub(info, "RadInstrumentIdentifier", portal.identifier)
    _sub(info, "RadInstrumentModelName", portal.model)
    if portal.location:
        _sub(info, "RadInstrumentDescription", portal.location)
    _sub(info, "RadInstrumentClassCode", "Portal Monitor")
    ver = _sub(info, "RadInstrumentVersion")
    _sub(ver, "RadInstrumentComponentName", "Software")
    _sub(ver, "RadInstrumentComponentVersion", f"{portal.software} {version}".strip())
    for i in range(1, len(occ.gamma_counts) + 1):
        d = _sub(root, "RadDetectorInformation", id=f"Gamma-{i}")
        _sub(d, "RadDetectorCategoryCode", "Gamma")
        _sub(d, "RadDetectorKindCode", "PVT")
    for i in range(1, len(occ.neutron_counts) + 1):
        d = _sub(root, "RadDetectorInformation", id=f"Neutron-{i}")
        _sub(d, "RadDetectorCategoryCode", "Neutron")
        _sub(d, "RadDetectorKindCode", "He3")
    cal = _sub(root, "EnergyCalibration", id="GammaWindow")
    lo, hi = GAMMA_WINDOW_KEV
    _sub(cal, "CoefficientValues", f"{lo:g} {hi - lo:g}")
    _measurement(  # the portal's estimate as it stood when the occupancy began
        root,
        "Background",
        "Background",
        occ.started,
        BACKGROUND_S,
        tuple(round(b * BACKGROUND_S, 3) for b in occ.gamma_background_cps),
        tuple(round(b * BACKGROUND_S, 3) for b in occ.neutron_background_cps),
        occupied=False,
    )
    _measurement(
        root,
        "Foreground",
        "Foreground",
        occ.started,
        occ.live_s,
        tuple(float(c) for c in occ.gamma_counts),
        tuple(float(c) for c in occ.neutron_counts),
        occupied=True,
    )
    res = _sub(root, "AnalysisResults", radMeasurementReferences="Background Foreground")
    _sub(res, "AnalysisAlgorithmName", "portal n-sigma threshold")
    if occ.nsigma is not None:
        setting = _sub(res, "AnalysisAlgorithmSetting")
        _sub(setting, "AnalysisAlgorithmSettingName", "nsigma")
        _sub(setting, "AnalysisAlgorithmSettingValue", f"{occ.nsigma:g}")
    _sub(res, "AnalysisResultStatusCode", "Valid" if occ.verdict != "fault" else "Invalid")
    _sub(
        res,
        "AnalysisResultDescription",
        f"verdict {occ.verdict}; occupancy {occ.occupancy}; gamma sigma {occ.gamma_sigma:.2f}"
        + (f"; faults {', '.join(occ.faults)}" if occ.faults else ""),
    )
    for category, on, panels in (
        ("Gamma", occ.gamma_alarm, len(occ.gamma_counts)),
        ("Neutron", occ.neutron_alarm, len(occ.neutron_counts)),
    ):
        if not on:
            continue
        refs = " ".join(f"{category}-{i}" for i in range(1, panels + 1))
        alarm = _sub(res, "RadAlarm", radDetectorInformationReferences=refs)
        _sub(alarm, "RadAlarmDateTime", occ.ended)
        _sub(alarm, "RadAlarmCategoryCode", category)
        _sub(alarm, "RadAlarmDescription", f"{category.lower()} alarm above the portal's threshold")
        _sub(alarm, "AlarmAudibleIndicator", "true")
        _sub(alarm, "RadAlarmLightColor", "Red")
    _qualify(root, ns)
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))


def _qualify(el: ET.Element, ns: str) -> None:
    """Put every element in the N42 namespace (``_sub`` builds them with bare names)."""
    for child in el.iter():
        if not child.tag.startswith("{"):
            child.tag = ns + child.tag
