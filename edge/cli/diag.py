"""``diag bundle``: one archive for a support ticket, secrets redacted::

    diag bundle [--site FILE] [--log-dir DIR] [--since -24h] [--no-journal] [-o OUT.tar.gz] [--json]

In it: Python and package versions; the site configuration (``--site``, else the running
daemon's) and each daemon's, with passwords, tokens, URL credentials and private keys
redacted (``portlane.edge.config.redact*``); status, devices and outbox of each running
daemon; the journal of the portlane units; the newest files of ``--log-dir``. What could not
be collected is listed under ``notes:`` in ``MANIFEST.txt``.

Exit codes: 0 written (what could not be collected is in the notes) · 2 ``--site`` unreadable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from portlane.edge.errors import EXIT_OK, UsageError

from ._common import ask, console, daemon_opts, err, guard, print_json, running_sockets

#: Packages whose versions go into the bundle (absent ones are listed as null).
KEY_PACKAGES = (
    "portlane",
    "pydantic",
    "PyYAML",
    "pyserial",
    "pymodbus",
    "paho-mqtt",
    "aiomqtt",
    "amqtt",
    "prometheus-client",
    "cryptography",
    "rich",
    "numpy",
    "onnxruntime",
    "opencv-python-headless",
)
#: journalctl over a day of a busy lane's logs takes a few seconds; past this it is hung.
JOURNAL_TIMEOUT_S = 30.0
#: Newest files taken from --log-dir, and the tail of each (the newest bytes matter).
LOG_FILES_MAX = 20
LOG_TAIL_BYTES = 5 * 1024 * 1024
#: What is asked of each daemon, and the request fields.
DAEMON_READS: tuple[tuple[str, dict[str, object]], ...] = (
    ("status", {}),
    ("devices", {}),
    ("outbox", {"action": "show", "count": None}),
    ("config", {}),
)


def register(sub: Any) -> None:
    p = sub.add_parser("diag", help="support diagnostics")
    ds = p.add_subparsers(dest="diag_command", metavar="ACTION", required=True)
    b = ds.add_parser("bundle", help="one archive for a support ticket (secrets redacted)")
    b.add_argument("--site", default=None, help="site file (default: the running daemon's)")
    b.add_argument("--log-dir", default=None, help="also take the newest files of this directory")
    b.add_argument("--since", default="-24h", help="journal window (journalctl --since)")
    b.add_argument("-o", "--output", default=None, help="OUT.tar.gz (default: portlane-diag-<time>.tar.gz)")
    b.add_argument("--no-journal", action="store_true", help="do not run journalctl")
    daemon_opts(b)
    b.set_defaults(func=run_bundle)


def versions() -> dict[str, object]:
    """Python, platform and the versions of :data:`KEY_PACKAGES`."""
    import importlib.metadata
    import platform

    pkgs: dict[str, str | None] = {}
    for name in KEY_PACKAGES:
        try:
            pkgs[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pkgs[name] = None
    return {
        "python": sys.version,
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": pkgs,
    }


def _daemons(args: argparse.Namespace, members: dict[str, bytes], notes: list[str]) -> None:
    from portlane.edge.config import redact, redact_yaml
    from portlane.edge.errors import ControlError

    sockets = running_sockets(args)
    if not sockets:
        notes.append("no daemon running: no live status, device counters or outbox stats")
    for path in sockets:
        name = Path(path).stem
        for op, fields in DAEMON_READS:
            try:
                resp = ask(path, op, args, **fields)
            except ControlError as exc:
                notes.append(f"{name} {op}: {exc}")
                continue
            if op != "config":
                members[f"daemons/{name}/{op}.json"] = json.dumps(redact(resp), indent=2, ensure_ascii=False).encode()
            elif resp.get("ok") and isinstance(resp.get("yaml"), str):
                text = redact_yaml(resp["yaml"]).encode()
                members.setdefault("config/site.yaml", text)
                members[f"daemons/{name}/config.yaml"] = text


def _journal(since: str, members: dict[str, bytes], notes: list[str]) -> None:
    import shutil
    import subprocess

    from portlane.edge.config import redact_text

    if not shutil.which("journalctl"):
        notes.append("no journalctl on this machine")
        return
    cmd = ["journalctl", "--no-pager", "-o", "short-iso-precise", "--since", since, "-u", "portlane*"]
    try:
        res = subprocess.run(cmd, capture_output=True, timeout=JOURNAL_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        notes.append(f"journalctl failed: {exc}")
        return
    members["logs/journal.txt"] = redact_text(res.stdout.decode("utf-8", "replace")).encode()
    if res.returncode:
        notes.append(f"journalctl exit {res.returncode}: {' '.join(res.stderr.decode(errors='replace').split())}")


def _log_dir(log_dir: str, members: dict[str, bytes]) -> None:
    from portlane.edge.config import redact_text

    files = [p for p in Path(log_dir).glob("*") if p.is_file()]
    for p in sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)[:LOG_FILES_MAX]:
        data = p.read_bytes()[-LOG_TAIL_BYTES:]
        members[f"logs/{p.name}"] = redact_text(data.decode("utf-8", "replace")).encode()


def _write_tar(out: Path, prefix: str, members: dict[str, bytes]) -> None:
    """Written under a temporary name and renamed: a half-written bundle never has the name."""
    import io
    import tarfile

    tmp = out.with_name(out.name + ".part")
    with tarfile.open(tmp, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{prefix}/{name}")
            info.size = len(data)
            info.mtime = int(time.time())
            info.mode = 0o640
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, out)


@guard
def run_bundle(args: argparse.Namespace) -> int:
    from portlane.edge.config import redact_yaml

    stamp = time.strftime("%Y%m%dT%H%M%S")
    out = Path(args.output or f"portlane-diag-{stamp}.tar.gz")
    members: dict[str, bytes] = {"versions.json": json.dumps(versions(), indent=2).encode()}
    notes: list[str] = []
    if args.site:
        try:
            members["config/site.yaml"] = redact_yaml(Path(args.site).read_text(encoding="utf-8")).encode()
        except OSError as exc:
            raise UsageError(f"cannot read {args.site}: {exc}") from exc
    _daemons(args, members, notes)
    if not args.no_journal:
        _journal(args.since, members, notes)
    if args.log_dir:
        _log_dir(args.log_dir, members)
    manifest = ["portlane diagnostic bundle " + stamp, "", *sorted(members), "", "notes:", *notes]
    members["MANIFEST.txt"] = ("\n".join(manifest) + "\n").encode()
    _write_tar(out, f"portlane-diag-{stamp}", members)
    if args.json:
        print_json({"ok": True, "output": str(out), "files": sorted(members), "notes": notes})
        return EXIT_OK
    console().print(f"[green]wrote[/green] {out} ({out.stat().st_size} bytes, {len(members)} files)")
    for n in notes:
        err(f"note: {n}")
    return EXIT_OK
