"""A broken outbox store is one line — file, what is wrong, what to do — never a traceback.

Every broken state is made for real: a store truncated or overwritten on disk, a directory the
daemon's user cannot write, a read-only filesystem and a full disk. The last two need a
filesystem of their own: the test runs the outbox in a child process inside a private mount
namespace (``unshare --user --map-root-user --mount``) with a small tmpfs — a real ENOSPC and
a real EROFS from the kernel, no mocking — and is skipped where namespaces are not allowed.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from portlane.edge.delivery.outbox import Outbox
from portlane.edge.delivery.state import check_state_dir, report_state_error
from portlane.edge.errors import EXIT_STATE, OutboxError, OutboxStateError, StateError


def _store(path: Path, events: int = 300) -> None:
    ob = Outbox(path, site="s", unit="l1")
    for i in range(events):
        ob.put("x", {"i": i, "pad": "p" * 200}, topic="t")
    ob.close()
    # Fold the WAL into the main file, as after a clean shutdown.
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def _open_error(path: Path) -> OutboxStateError:
    with pytest.raises(OutboxStateError) as ei:
        Outbox(path, site="s", unit="l1")
    err = ei.value
    assert isinstance(err, StateError) and isinstance(err, OutboxError)
    assert err.exit_code == EXIT_STATE == 4
    assert "\n" not in str(err) and str(err).startswith(f"{path}: ")
    return err


def test_truncated_store(tmp_path: Path) -> None:
    path = tmp_path / "outbox-c1.db"
    _store(path)
    os.truncate(path, path.stat().st_size // 2)
    err = _open_error(path)
    assert "corrupt or truncated" in err.problem and f"mv {path} {path}.bad" in err.remedy


def test_garbage_over_the_store(tmp_path: Path) -> None:
    path = tmp_path / "outbox-c1.db"
    _store(path)
    with path.open("r+b") as f:
        f.write(os.urandom(4096))
    err = _open_error(path)
    assert "not an SQLite database" in err.problem and "move the file aside" in err.remedy


def test_a_damaged_page_in_the_middle_is_found_at_open(tmp_path: Path) -> None:
    """Plain queries can read past a damaged page; the integrity check at open does not."""
    path = tmp_path / "outbox-c1.db"
    _store(path)
    with path.open("r+b") as f:
        f.seek(4096 * 4)
        f.write(os.urandom(4096))
    err = _open_error(path)
    assert "corrupt or truncated" in err.problem


def test_another_database_where_the_outbox_should_be(tmp_path: Path) -> None:
    path = tmp_path / "outbox-c1.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE nonces (nonce TEXT PRIMARY KEY, expires REAL)")
    db.close()
    err = _open_error(path)
    assert "not an outbox (tables: nonces)" in err.problem


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A directory outside pytest's private tmp tree, so that another user can reach it."""
    d = Path(tempfile.mkdtemp(prefix="portlane-state-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        for p in [d, *d.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        shutil.rmtree(d, ignore_errors=True)


def _as_daemon_user(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as an unprivileged user (root ignores permission bits: as root, the child
    drops to uid/gid 65534, the way systemd runs the daemon as user ``portlane``)."""
    kw: dict[str, object] = {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        **kw,  # type: ignore[call-overload]
    )


def test_a_directory_the_daemon_cannot_write(world_readable_dir: Path) -> None:
    state = world_readable_dir / "state"
    state.mkdir()
    _store(state / "outbox-c1.db")
    for p in state.iterdir():
        p.chmod(0o444)
    state.chmod(0o555)
    res = _as_daemon_user(
        f"""
        from portlane.edge.delivery.outbox import Outbox
        from portlane.edge.delivery.state import check_state_dir
        from portlane.edge.errors import StateError
        for attempt in (lambda: Outbox({str(state / "outbox-c1.db")!r}, site="s", unit="l1"),
                        lambda: check_state_dir({str(state)!r})):
            try:
                attempt()
                print("opened")
            except StateError as exc:
                print(exc)
        """
    )
    lines = res.stdout.splitlines()
    assert res.returncode == 0 and len(lines) == 2, res
    assert lines[0].startswith(f"{state}/outbox-c1.db: cannot open it: ") and "not writable" in lines[0]
    assert f"give the daemon's user write access to {state}" in lines[0]
    assert lines[1].startswith(f"{state}: cannot write a file in the state directory: permission denied")


# ---------------------------------------------------------------------- a filesystem of our own
def _unshare() -> str | None:
    exe = shutil.which("unshare")
    if exe is None:
        return None
    probe = subprocess.run([exe, "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    return exe if probe.returncode == 0 else None


def _in_small_fs(script: str, *, size_kb: int, tmp: Path, then_readonly: str | None = None) -> list[dict[str, str]]:
    """Run ``script`` (Python, sees ``FS``: the mount point) in a private mount namespace with a
    ``size_kb`` tmpfs at ``FS``; with ``then_readonly``, run that Python next after remounting
    the filesystem read-only. Returns the JSON lines the scripts print."""
    exe = _unshare()
    if exe is None:
        pytest.skip("needs unshare and user namespaces for a private tmpfs (a real full or read-only disk)")
    fs = tmp / "fs"
    fs.mkdir()
    first, second = tmp / "first.py", tmp / "second.py"
    first.write_text(f"FS = {str(fs)!r}\n" + textwrap.dedent(script))
    second.write_text(f"FS = {str(fs)!r}\n" + textwrap.dedent(then_readonly or "pass"))
    py = sys.executable
    shell = f"mount -t tmpfs -o size={size_kb}k tmpfs {fs} && {py} {first}"
    if then_readonly:
        shell += f" && mount -o remount,ro {fs} && {py} {second}"
    res = subprocess.run(
        [exe, "--user", "--map-root-user", "--mount", "sh", "-c", shell],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]


OUTCOME = """
import json
from portlane.edge.delivery.outbox import Outbox
from portlane.edge.errors import OutboxStateError, StateError

def outcome(step, fn):
    try:
        value = fn()
        print(json.dumps({"step": step, "ok": str(value)}))
    except StateError as exc:
        print(json.dumps({"step": step, "error": str(exc), "outbox": isinstance(exc, OutboxStateError)}))
"""


def test_a_full_disk(tmp_path: Path) -> None:
    """ENOSPC from the kernel: the put that does not fit fails with a one-line state error,
    the events before it stay on disk, and a new store cannot even be opened."""
    out = _in_small_fs(
        OUTCOME
        + """
ob = Outbox(FS + "/outbox-c1.db", site="s", unit="c1")
n = 0
def fill():
    global n
    while True:
        ob.put("x", {"pad": "p" * 2000}, topic="t")
        n += 1
outcome("put", fill)
print(json.dumps({"step": "written", "ok": str(n)}))
ob.close()
outcome("reopen", lambda: Outbox(FS + "/outbox-c1.db", site="s", unit="c1").depth)
outcome("new", lambda: Outbox(FS + "/outbox-p1.db", site="s", unit="p1"))
""",
        size_kb=256,
        tmp=tmp_path,
    )
    by_step = {o["step"]: o for o in out}
    path = f"{tmp_path}/fs/outbox-c1.db"
    assert by_step["put"]["outbox"] is True
    assert by_step["put"]["error"].startswith(f"{path}: cannot write an event: no space left on the device; free space")
    written = int(by_step["written"]["ok"])
    assert written > 0 and by_step["reopen"]["ok"] == str(written)  # what was committed is still there
    assert "no space left on the device" in by_step["new"]["error"]


def test_a_read_only_filesystem(tmp_path: Path) -> None:
    out = _in_small_fs(
        OUTCOME
        + """
ob = Outbox(FS + "/outbox-c1.db", site="s", unit="c1")
ob.put("x", {}, topic="t")
ob.close()
""",
        then_readonly=OUTCOME
        + """
from portlane.edge.delivery.state import check_state_dir
outcome("open", lambda: Outbox(FS + "/outbox-c1.db", site="s", unit="c1"))
outcome("dir", lambda: check_state_dir(FS))
""",
        size_kb=1024,
        tmp=tmp_path,
    )
    by_step = {o["step"]: o for o in out}
    fs = f"{tmp_path}/fs"
    assert by_step["open"]["error"] == (
        f"{fs}/outbox-c1.db: cannot open it: the filesystem of {fs} is read-only; remount it read-write "
        "(a filesystem goes read-only after disk errors: check dmesg) and restart"
    )
    assert by_step["dir"]["error"].startswith(f"{fs}: cannot write a file in the state directory: the filesystem is")


# ---------------------------------------------------------------------- the helpers daemons use
def test_check_state_dir(tmp_path: Path) -> None:
    check_state_dir(tmp_path / "new" / "state")  # created
    assert (tmp_path / "new" / "state").is_dir() and not list((tmp_path / "new" / "state").iterdir())
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StateError, match="cannot create the state directory"):
        check_state_dir(tmp_path / "afile" / "state")
    with pytest.raises(StateError, match=r"MB free on its filesystem \(a daemon wants"):
        check_state_dir(tmp_path, min_free_mb=1e12)


def test_report_state_error_prints_one_line_and_returns_the_exit_code() -> None:
    err = StateError("/var/lib/portlane/outbox-c1.db", "is corrupt or truncated (x)", "move it aside")
    buf = io.StringIO()
    assert report_state_error(err, prog="portlane-lane", stream=buf) == EXIT_STATE
    assert (
        buf.getvalue() == "portlane-lane: /var/lib/portlane/outbox-c1.db: is corrupt or truncated (x); move it aside\n"
    )
