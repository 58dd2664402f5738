"""The lane's store of N42.42 documents: one per occupancy, written whole, the newest kept."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from portlane.edge.contract.events import RpmOccupancyEvent
from portlane.edge.contract.n42 import N42_NAMESPACE, PortalInfo
from portlane.edge.lane.n42_store import N42Store


def occupancy(n: int, second: int) -> RpmOccupancyEvent:
    return RpmOccupancyEvent(
        passage_id=None,
        portal="c1/rpm",
        occupancy=n,
        started=f"2026-12-06T09:41:{second:02d}.000Z",
        ended=f"2026-12-06T09:41:{second + 2:02d}.400Z",
        live_s=2.4,
        gamma_counts=(5800, 5790, 5850, 5810),
        neutron_counts=(3, 2, 3, 4),
        gamma_background_cps=(2400.0,) * 4,
        neutron_background_cps=(1.5,) * 4,
        gamma_alarm=False,
        neutron_alarm=False,
        gamma_sigma=0.4,
        verdict="clear",
    )


def test_each_occupancy_is_one_document_and_only_the_newest_are_kept(tmp_path: Path) -> None:
    store = N42Store(tmp_path, "c1", PortalInfo("c1/rpm", location="t-site lane c1"), version="9.9", keep=2)
    names = [store.write(occupancy(n, 2 * n)) for n in (1, 2, 3)]
    assert names[0] == "n42/c1/20261206T094104Z-000001.n42"
    on_disk = sorted(p.name for p in (tmp_path / "n42" / "c1").iterdir())
    assert on_disk == [Path(n).name for n in names[1:]]  # the oldest went, nothing half-written stays
    root = ET.parse(tmp_path / names[-1]).getroot()
    assert root.tag == f"{{{N42_NAMESPACE}}}RadInstrumentData"
    # A new store over the same directory knows what is there and keeps bounding it.
    again = N42Store(tmp_path, "c1", PortalInfo("c1/rpm"), keep=2)
    again.write(occupancy(4, 8))
    assert len(list((tmp_path / "n42" / "c1").glob("*.n42"))) == 2


def test_a_store_keeps_at_least_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        N42Store(tmp_path, "c1", PortalInfo("c1/rpm"), keep=0)
