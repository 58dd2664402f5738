"""A demo site with any number of lanes, generated from a real site file.

``demo_site(raw, n)`` takes ``n`` lanes of the site in a fixed order (small demos still mix
cargo and passenger lanes) and, beyond the configured ones, clones them the way a port adds
lanes: two cargo lanes for one passenger lane, each clone with its own RS-485 bus (its own
serial adapter), its own serial device paths and its own controller subnet
``10.20.<n>.0/24`` — so no two gates share an RS-485 address and no two devices share a
port. The simulators replace every link with their own (a pty or a loopback port) and keep
the bus grouping, which is what must be unique.

Every cargo lane of a demo has a radiation portal and an e-seal reader (issue 21): a cargo lane
the site file gives none gets them (``CARGO_DEVICES``), so the demo's trucks always meet them.
"""

from __future__ import annotations

import copy
import re
from typing import Any

__all__ = ["LANE_ORDER", "apply_links", "demo_site"]

#: Lane order for --lanes N: small demos still mix cargo and passenger lanes.
LANE_ORDER = ("c1", "c2", "p1", "c3", "p2", "c4")
#: The devices a demo cargo lane gets when its site file has none, in the reference site's form
#: ({lane} and {net}: the lane id and its controller subnet; the simulators replace the links).
CARGO_DEVICES: dict[str, dict[str, Any]] = {
    "rpm": {"backend": "rapiscan", "link": {"kind": "tcp", "host": "10.20.{net}.31", "port": 1601}, "timeout_s": 1.0},
    "seal_reader": {
        "backend": "serial",
        "link": {
            "kind": "serial",
            "url": "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_SEAL-{lane}-if00-port0",
            "baudrate": 19200,
        },
        "unit": 1,
        "timeout_s": 0.5,
    },
}


def demo_site(raw: dict[str, Any], n: int, *, cameras: bool = True) -> dict[str, Any]:
    """The site dict with exactly ``n`` lanes (the scanners list only lanes that exist);
    without ``cameras`` the lanes have none (they identify vehicles by their e-cards)."""
    if n < 1:
        raise ValueError(f"a demo site has at least one lane, not {n}")
    lanes = raw.get("lanes") or []
    by_id = {lane["id"]: lane for lane in lanes}
    order = [x for x in LANE_ORDER if x in by_id] + [x for x in by_id if x not in LANE_ORDER]
    chosen = [copy.deepcopy(by_id[x]) for x in order[:n]]
    templates = {kind: next((la for la in lanes if la["kind"] == kind), None) for kind in ("cargo", "passenger")}
    taken = {lane["id"] for lane in lanes}
    subnets = {_subnet(lane) for lane in lanes} - {None}
    k = 0
    while len(chosen) < n:
        kind = "passenger" if k % 3 == 2 else "cargo"
        k += 1
        template = templates[kind] or templates["cargo"] or templates["passenger"] or lanes[0]
        prefix = "c" if template["kind"] == "cargo" else "p"
        i = 1
        while f"{prefix}{i}" in taken:
            i += 1
        new_id = f"{prefix}{i}"
        taken.add(new_id)
        net = 1
        while net in subnets:
            net += 1
        subnets.add(net)
        chosen.append(_clone(template, new_id, net))
    if not cameras:
        for lane in chosen:
            (lane.get("devices") or {}).pop("cameras", None)
    for lane in chosen:
        if lane.get("kind") == "cargo":
            _with_cargo_devices(lane)
    out = copy.deepcopy(raw)
    out["lanes"] = chosen
    for s in out.get("scanners", []) or []:
        s["lanes"] = [lane["id"] for lane in chosen if lane.get("scanner") == s["id"]]
    out["scanners"] = [s for s in out.get("scanners", []) or [] if s["lanes"]]
    kept = {s["id"] for s in out["scanners"]}
    for lane in chosen:
        if lane.get("scanner") and lane["scanner"] not in kept:
            lane["scanner"] = None
    return out


def _with_cargo_devices(lane: dict[str, Any]) -> None:
    devices = lane.setdefault("devices", {})
    net = _subnet(lane) or 0
    for name, template in CARGO_DEVICES.items():
        if devices.get(name) is None:
            dev = copy.deepcopy(template)
            dev["link"] = {
                k: v.format(lane=lane["id"].upper(), net=net) if isinstance(v, str) else v
                for k, v in dev["link"].items()
            }
            devices[name] = dev


def _subnet(lane: dict[str, Any]) -> int | None:
    """The lane's controller subnet: the third octet of its I/O module's address."""
    host = ((lane.get("devices") or {}).get("io") or {}).get("link", {}).get("host", "")
    m = re.fullmatch(r"10\.20\.(\d+)\.\d+", str(host))
    return int(m.group(1)) if m else None


def _clone(template: dict[str, Any], new_id: str, net: int) -> dict[str, Any]:
    """``template`` as lane ``new_id``: own bus, own serial paths, own subnet 10.20.<net>.0/24."""
    if net > 254:
        raise ValueError("no controller subnet left for another lane (10.20.1-254.0/24)")
    old_id = template["id"]
    lane = copy.deepcopy(template)
    lane["id"] = new_id
    devices: dict[str, Any] = lane.get("devices") or {}
    links = [d["link"] for k, d in devices.items() if k != "cameras" and d] + [
        c["link"] for c in (devices.get("cameras") or {}).values()
    ]
    for link in links:
        if "bus" in link:
            link["bus"] = f"{new_id}-rs485"
        if link.get("kind") == "serial" and "url" in link:
            url = re.sub(rf"(?i)-{re.escape(old_id)}-", f"-{new_id.upper()}-", str(link["url"]))
            link["url"] = url if url != link["url"] else f"{link['url']}-{new_id}"
        if link.get("kind") == "tcp" and "host" in link:
            link["host"] = re.sub(r"^10\.20\.\d+\.", f"10.20.{net}.", str(link["host"]))
        if link.get("kind") == "camera" and "source" in link:
            link["source"] = re.sub(r"10\.20\.\d+\.", f"10.20.{net}.", str(link["source"]))
    return lane


def apply_links(raw: dict[str, Any], links: dict[str, Any]) -> dict[str, Any]:
    """A copy of the raw site with each device's link replaced by its simulator's
    (``links`` as ``sim_devices.catalog.start_site`` gives them)."""
    raw = copy.deepcopy(raw)
    for lane in raw["lanes"]:
        lk = links["lanes"].get(lane["id"], {})
        for dev, cfg in lane["devices"].items():
            if dev == "cameras":
                for cam_id, cam in cfg.items():
                    if cam_id in lk.get("cameras", {}):
                        cam["link"] = lk["cameras"][cam_id]
            elif dev in lk:
                cfg["link"] = lk[dev]
    for s in raw.get("scanners", []):
        if s["id"] in links.get("scanners", {}):
            s["device"]["link"] = links["scanners"][s["id"]]
    return raw
