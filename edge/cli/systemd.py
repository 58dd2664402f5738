"""``portlane systemd install``: put the unit files, udev rules and sysusers file in place::

    systemd install [--prefix DIR] [--bin PATH] [--force] [--json]

The files ship inside the package (``portlane.systemd``, the repository's ``systemd/``), so a
controller installed from the wheel needs no clone (docs/operations.md §2). They go to

=====================================  ==============================================
``PREFIX/etc/systemd/system/``          ``portlane-*.service``, ``portlane.target``
``PREFIX/etc/udev/rules.d/``            ``99-portlane-serial.rules`` (an example to edit:
                                        an existing one is kept unless ``--force``)
``PREFIX/etc/sysusers.d/``              ``portlane.conf`` (the service user)
=====================================  ==============================================

``ExecStart=`` names the ``portlane`` of this installation (``--bin`` to choose another).
Nothing is started or reloaded: the command prints what to run next. Standard library only,
so it runs before anything else of the controller is set up.

Exit codes: 0 installed · 1 a file cannot be written (not root? use ``--prefix``) · 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portlane.edge.errors import EXIT_OK, PortlaneError, UsageError

__all__ = ["SHIPPED_BINARY", "install", "register"]

#: The ``portlane`` the shipped unit files start (docs/operations.md §2 installs there).
SHIPPED_BINARY = "/opt/portlane/venv/bin/portlane"
#: The udev rules are an example with made-up serial numbers: the technician edits them.
EDITED_BY_HAND = frozenset({"99-portlane-serial.rules"})


@dataclass(frozen=True)
class Placed:
    source: str  # name inside portlane.systemd
    target: Path
    action: str  # "installed", "replaced", "kept"


def register(sub: Any) -> None:
    p = sub.add_parser("systemd", help="install the systemd units, udev rules and sysusers file shipped in the package")
    ssub = p.add_subparsers(dest="systemd_command", metavar="ACTION", required=True)
    i = ssub.add_parser("install", help="copy them into /etc (or under --prefix); starts nothing")
    i.add_argument("--prefix", type=Path, default=Path("/"), help="install under this root (default /)")
    i.add_argument(
        "--bin",
        default=None,
        help="the portlane command ExecStart= runs (default: the one of this installation)",
    )
    i.add_argument("--force", action="store_true", help="also replace an existing udev rules file")
    i.add_argument("--json", action="store_true", help="machine-readable list of the files")
    i.set_defaults(func=run_install)


def _this_binary() -> str:
    """The ``portlane`` script beside this interpreter (a venv's bin/), else the shipped path."""
    candidate = Path(sys.executable).parent / "portlane"
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else SHIPPED_BINARY


def _destination(prefix: Path, name: str) -> Path:
    if name.endswith((".service", ".target")):
        return prefix / "etc" / "systemd" / "system" / name
    if name.endswith(".rules"):
        return prefix / "etc" / "udev" / "rules.d" / name
    return prefix / "etc" / "sysusers.d" / Path(name).name


def shipped_files() -> list[tuple[str, bytes]]:
    """(name, content) of every file ``portlane.systemd`` ships, sorted by name."""
    from importlib.resources import files

    root = files("portlane.systemd")
    out: list[tuple[str, bytes]] = []
    for entry in root.iterdir():
        if entry.name.endswith((".service", ".target", ".rules")):
            out.append((entry.name, entry.read_bytes()))
        elif entry.name == "sysusers.d":
            out += [(f"sysusers.d/{f.name}", f.read_bytes()) for f in entry.iterdir() if f.name.endswith(".conf")]
    if not out:
        raise PortlaneError("this installation of portlane carries no systemd files; reinstall it from the wheel")
    return sorted(out)


def install(prefix: Path, *, binary: str, force: bool = False) -> list[Placed]:
    """Copy the shipped files under ``prefix``; ``ExecStart=`` runs ``binary``."""
    placed: list[Placed] = []
    for name, content in shipped_files():
        target = _destination(prefix, name)
        if name.endswith(".service"):
            content = content.replace(SHIPPED_BINARY.encode(), binary.encode())
        existed = target.exists()
        if existed and name in EDITED_BY_HAND and not force:
            placed.append(Placed(name, target, "kept"))
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_bytes(content)
            tmp.chmod(0o644)
            os.replace(tmp, target)
        except OSError as exc:
            raise PortlaneError(
                f"{target}: cannot write: {exc.strerror or exc}; run it as root, or choose a directory with --prefix"
            ) from exc
        placed.append(Placed(name, target, "replaced" if existed else "installed"))
    return placed


def run_install(args: argparse.Namespace) -> int:
    if not args.prefix.is_absolute():
        raise UsageError(f"--prefix {args.prefix}: give an absolute directory")
    binary = args.bin or _this_binary()
    placed = install(args.prefix, binary=binary, force=args.force)
    if args.json:
        files = [{"file": p.source, "path": str(p.target), "action": p.action} for p in placed]
        print(json.dumps({"ok": True, "bin": binary, "files": files}, indent=2))
        return EXIT_OK
    for p in placed:
        note = " (edit the serial numbers, §4; --force replaces it)" if p.action == "kept" else ""
        print(f"{p.action:9} {p.target}{note}")
    print(f"ExecStart= runs {binary}")
    print(
        "next: systemd-sysusers; udevadm control --reload && udevadm trigger --subsystem-match=tty; "
        "systemctl daemon-reload"
    )
    return EXIT_OK
