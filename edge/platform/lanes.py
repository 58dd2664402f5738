"""What the platform knows of a site's lanes, from the site file: the one home of
:class:`LaneInfo`, read by the platform's decisions and by its declarations."""

from __future__ import annotations

from dataclasses import dataclass

from portlane.edge.config import Site

__all__ = ["LaneInfo", "lane_infos"]


@dataclass(frozen=True, slots=True)
class LaneInfo:
    kind: str  # cargo | passenger
    agencies: tuple[str, ...]
    scanner: str | None = None  # the X-ray that serves it
    weighbridge: bool = False  # it weighs the vehicle (a declared gross weight is checked)


def lane_infos(site: Site) -> dict[str, LaneInfo]:
    return {
        lc.id: LaneInfo(
            kind=lc.kind,
            agencies=tuple(a.value for a in lc.agencies),
            scanner=lc.scanner,
            weighbridge=lc.devices.weighbridge is not None,
        )
        for lc in site.lanes
    }
