"""A new site file is taken in place where the daemon can (issue 24): ``systemctl reload``
(SIGHUP) or ``portlane config apply`` rotates the platform's keys without a restart; a change
to the lane's own devices restarts it, and says so in one line.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from portlane.edge.config import parse_site
from portlane.edge.demo.broker import BrokerProcess
from portlane.edge.lane.passage import LaneTimeouts
from portlane.edge.trust.keys import generate_keypair
from portlane.edge.unit.skeleton import restart_needed

from tests.virtual_lane import Platform, site_dict, start_lane, stop_lane


async def test_new_platform_keys_are_taken_in_place_and_the_old_key_is_refused(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    r = await start_lane(broker.url, tmp_path, timeouts=LaneTimeouts(identify_s=1.0))
    private, public = generate_keypair()
    new = Platform(broker.url, key_id="platform-2027", private_key=private)
    try:
        await r.until(lambda: r.logic.started)
        raw = site_dict(("c1",), url=broker.url)
        raw["platform"]["keys"] = [{"id": "platform-2027", "public_key": public}]  # the old key is revoked
        assert r.daemon.reload(parse_site(raw)) == []  # nothing needs a restart
        counters = r.daemon.unit.commands.counters
        old_cmd = r.platform.command("c1", "close_lane", reason="signed with the revoked key")
        r.daemon.unit.commands.handle("close_lane", old_cmd)
        assert r.logic.in_service and counters.rejected_by_reason == {"unknown_key": 1}
        r.daemon.unit.commands.handle("close_lane", new.command("c1", "close_lane", reason="signed with the new key"))
        assert not r.logic.in_service and counters.accepted == 1
        # Its own devices are another matter: those need a restart, and the answer says so.
        raw["lanes"][0]["devices"]["board"] = {"backend": "virtual", "link": {"kind": "virtual", "world": "c9"}}
        assert r.daemon.reload(parse_site(raw)) == ["c1's own entry"]
    finally:
        await stop_lane(r)


def test_what_needs_a_restart() -> None:
    raw = site_dict(("c1", "c2"), url="mqtt://127.0.0.1:1883")
    old = parse_site(raw)
    raw["lanes"][1]["devices"]["board"] = {"backend": "virtual", "link": {"kind": "virtual", "world": "c9"}}
    assert restart_needed(old, parse_site(raw), "c1") == []  # another lane's devices
    assert restart_needed(old, parse_site(raw), "c2") == ["c2's own entry"]
    raw["broker"]["url"] = "mqtt://10.0.0.9:1883"
    assert restart_needed(old, parse_site(raw), "c1") == ["broker"]


def _notify_socket(tmp_path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(tmp_path / "notify.sock"))
    s.settimeout(30)
    return s


def _until(notify: socket.socket, word: str) -> None:
    while word not in notify.recv(4096).decode():
        pass


@pytest.mark.slow
def test_sighup_reloads_in_place_or_restarts_with_one_line(broker: BrokerProcess, tmp_path: Path) -> None:
    raw = site_dict(("c1",), url=broker.url)
    raw["state_dir"] = str(tmp_path / "state")
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(raw, allow_unicode=True))
    notify = _notify_socket(tmp_path)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "PORTLANE_CONTROL": str(tmp_path / "c.sock")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "portlane.edge", "daemon", "lane", "--site", str(site), "--lane", "c1"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _until(notify, "READY=1")
        _private, public = generate_keypair()
        raw["platform"]["keys"].append({"id": "platform-2027", "public_key": public})
        site.write_text(yaml.safe_dump(raw, allow_unicode=True))
        proc.send_signal(signal.SIGHUP)
        _until(notify, "RELOADING=1")
        _until(notify, "READY=1")  # reloaded: still running
        assert proc.poll() is None
        raw["lanes"][0]["devices"]["board"] = {"backend": "virtual", "link": {"kind": "virtual", "world": "c7"}}
        site.write_text(yaml.safe_dump(raw, allow_unicode=True))
        proc.send_signal(signal.SIGHUP)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 75, err[-2000:]
        assert "Traceback" not in err
        assert "taken in place" in err
        assert "c1's own entry changed" in err and "stopped to start on the new site file" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
