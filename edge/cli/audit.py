"""``portlane audit verify|show`` and ``portlane keys generate``.

``audit verify [FILE] [--expect-head HASH] [--json]``
    exit 0 when the chain is intact, 1 when it was tampered with or its last line is torn
    (the line and the reason are printed), 2 when FILE is missing or unreadable.
``audit show [FILE] [--last N] [--json]``
    entries as a table (or a JSON array); no chain checks.
``keys generate [--id KEY_ID] [--json]``
    a new Ed25519 key pair in base64: the public half for ``platform.keys`` of a site
    configuration, the private half for the central platform only.

FILE defaults to ``$PORTLANE_STATE_DIR/audit.jsonl`` (state dir ``/var/lib/portlane``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from . import EXIT_FAILED, EXIT_OK, EXIT_USAGE

DEFAULT_STATE_DIR = "/var/lib/portlane"
AUDIT_FILE_NAME = "audit.jsonl"


def default_audit_file() -> Path:
    return Path(os.environ.get("PORTLANE_STATE_DIR") or DEFAULT_STATE_DIR) / AUDIT_FILE_NAME


def register(sub: Any) -> None:
    """Registers two groups, ``audit`` and ``keys``."""
    register_audit(sub)
    register_keys(sub)


def register_audit(sub: Any) -> None:
    p = sub.add_parser("audit", help="verify or show the tamper-evident audit log")
    asub = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)

    v = asub.add_parser("verify", help="check the hash chain; exit 1 naming the first bad line")
    v.add_argument("file", nargs="?", help=f"audit log (default $PORTLANE_STATE_DIR/{AUDIT_FILE_NAME})")
    v.add_argument("--expect-head", metavar="HASH", help="the newest entry's hash as recorded elsewhere")
    v.add_argument("--json", action="store_true", help="machine-readable result")
    v.set_defaults(func=run_verify)

    s = asub.add_parser("show", help="print entries (no chain checks; use verify for that)")
    s.add_argument("file", nargs="?", help=f"audit log (default $PORTLANE_STATE_DIR/{AUDIT_FILE_NAME})")
    s.add_argument("--last", type=_positive_int, metavar="N", help="only the newest N lines")
    s.add_argument("--json", action="store_true", help="a JSON array of entries")
    s.set_defaults(func=run_show)


def register_keys(sub: Any) -> None:
    p = sub.add_parser("keys", help="Ed25519 keys for signed commands")
    ksub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    g = ksub.add_parser("generate", help="print a new key pair (base64) for a site configuration")
    g.add_argument("--id", default="platform-key", help="key id to put in platform.keys (default platform-key)")
    g.add_argument("--json", action="store_true", help="machine-readable output")
    g.set_defaults(func=run_keys_generate)


def _positive_int(s: str) -> int:
    try:
        n = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {s!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def _file(args: argparse.Namespace) -> Path:
    return Path(args.file) if args.file else default_audit_file()


def _unreadable(path: Path, exc: OSError, as_json: bool) -> int:
    reason = exc.strerror or str(exc)
    if as_json:
        print(json.dumps({"file": str(path), "ok": False, "error": reason}))
    else:
        print(f"{path}: cannot read: {reason}", file=sys.stderr)
    return EXIT_USAGE


def run_verify(args: argparse.Namespace) -> int:
    from portlane.edge.trust.audit import verify_log

    path = _file(args)
    try:
        report = verify_log(path, expected_head=args.expect_head)
    except OSError as exc:
        return _unreadable(path, exc, args.json)
    if args.json:
        print(json.dumps({"file": str(path), **report.as_dict()}))
    elif report.ok:
        print(f"{path}: ok — {report.entries} entries, head {report.head}")
    else:
        what = "torn" if report.torn else "TAMPERED"
        print(
            f"{path}: {what} — line {report.line}: {report.problem.value if report.problem else '?'}: "
            f"{report.detail} ({report.entries} valid entries before it)",
            file=sys.stderr,
        )
    return EXIT_OK if report.ok else EXIT_FAILED


def run_show(args: argparse.Namespace) -> int:
    from portlane.edge.trust.audit import read_entries

    path = _file(args)
    try:
        rows = list(read_entries(path))
    except OSError as exc:
        return _unreadable(path, exc, args.json)
    if args.last:
        rows = rows[-args.last :]
    if args.json:
        out = [
            e.model_dump() if e else {"line": i, "unparseable": raw.decode("utf-8", "replace")} for i, e, raw in rows
        ]
        print(json.dumps(out, ensure_ascii=False))
        return EXIT_OK

    from rich.console import Console
    from rich.table import Table

    table = Table(title=str(path))
    for col in ("n", "time (UTC)"):
        table.add_column(col, no_wrap=True)
    for col in ("kind", "lane", "actor", "reason", "data"):
        table.add_column(col, overflow="fold")
    for i, e, raw in rows:
        if e is None:
            table.add_row(str(i), "", "[red]unparseable[/red]", "", "", raw.decode("utf-8", "replace")[:80], "")
        else:
            table.add_row(
                str(e.n),
                e.ts,
                e.kind,
                e.lane or "",
                e.actor,
                e.reason,
                json.dumps(e.data, ensure_ascii=False) if e.data else "",
            )
    Console().print(table)
    return EXIT_OK


def run_keys_generate(args: argparse.Namespace) -> int:
    import re

    from portlane.edge.trust.security import generate_keypair

    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", args.id):
        print(f"key id {args.id!r}: lowercase letters, digits, '-' and '_', at most 32", file=sys.stderr)
        return EXIT_USAGE
    private, public = generate_keypair()
    if args.json:
        print(json.dumps({"key_id": args.id, "public_key": public, "private_key": private}))
        return EXIT_OK
    print("# site configuration (public half):")
    print("platform:")
    print("  keys:")
    print(f"    - id: {args.id}")
    print(f'      public_key: "{public}"')
    print()
    print("# central platform only (private half) — keep it secret, never in a site config:")
    print(f'private_key: "{private}"')
    return EXIT_OK
