"""A lane camera's role comes from the site file (``role``), whatever the camera is called."""

from __future__ import annotations

from portlane.edge.config import parse_site
from portlane.edge.lane.devices import LaneDevices

from tests.virtual_lane import site_dict


async def test_the_lane_reads_each_cameras_role_from_the_site_file() -> None:
    raw = site_dict(url="mqtt://127.0.0.1:1")
    cam = {"backend": "virtual", "link": {"kind": "virtual", "world": "c1"}}
    raw["lanes"][0]["devices"]["cameras"] = {
        "rear_high": {**cam, "role": "container"},  # the name says nothing of the view
        "container_gantry": {**cam, "role": "plate"},  # the name says the opposite
        "plate_front": cam,  # an older file: no role, the name's guess
    }
    devices = LaneDevices(parse_site(raw).lane("c1"), on_sample=lambda s: None, on_health=lambda *a: None)
    roles = {name: devices.camera_role(name) for name, _cam in devices.cameras()}
    assert roles == {"camera:rear_high": "container", "camera:container_gantry": "plate", "camera:plate_front": "plate"}
