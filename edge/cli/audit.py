"""``portlane audit verify|show`` and ``portlane keys generate``.

``audit verify [FILE] [--expect-head HASH | --checkpoint CP | --broker URL --unit U] [--site SITE] [--json]``
    exit 0 when the chain is intact, 1 when it was tampered with, truncated, replaced or its last
    line is torn (the line and the reason are printed), 2 when FILE or CP is missing, unreadable
    or not a checkpoint, 3 when the broker gives no checkpoint. ``--checkpoint`` reads a signed
    checkpoint from a file (the JSON object, or an ``audit.checkpoint`` event); ``--broker`` takes
    the unit's retained one from ``portlane/v1/{site}/{unit}/checkpoint``. With ``--site`` the
    checkpoint's signature is checked against the unit's key in the site file (without, it is not:
    say so in any report).
``audit show [FILE] [--last N] [--json]``
    entries as a table (or a JSON array); no chain checks.
``keys generate [--id KEY_ID] [--json]``
    a new Ed25519 key pair in base64: the public half for ``platform.keys`` of a site
    configuration, the private half for the central platform only.
``keys generate --unit UNIT --out DIR [--id KEY_ID] [--json]``
    a unit's key pair: the private half to ``DIR/signing.key`` (mode 0600, never overwritten),
    the public half printed as the ``key:`` entry for that lane/scanner/client in the site file.

Without FILE, the log where the state is: the ``state_dir`` of ``--site``, else
``$PORTLANE_STATE_DIR/audit.jsonl``, else the log the running daemons report (their status),
else ``/var/lib/portlane/audit.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from portlane.edge.errors import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE

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
    anchor = v.add_mutually_exclusive_group()
    anchor.add_argument("--expect-head", metavar="HASH", help="the newest entry's hash as recorded elsewhere")
    anchor.add_argument("--checkpoint", metavar="FILE", help="a signed checkpoint (JSON) the log must still contain")
    anchor.add_argument("--broker", metavar="URL", help="take the unit's retained checkpoint from this broker")
    v.add_argument("--site", metavar="FILE", help="site file: check the checkpoint's signature (and site id)")
    v.add_argument("--unit", help="with --broker: the lane or scanner whose checkpoint to take")
    v.add_argument("--ca-file", help="with an mqtts:// --broker: CA of the broker")
    v.add_argument("--cert-file", help="with an mqtts:// --broker: client certificate")
    v.add_argument("--key-file", help="with an mqtts:// --broker: client key")
    v.add_argument("--timeout", type=float, default=5.0, help="with --broker: seconds to wait (default 5)")
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
    g.add_argument("--id", default=None, help="key id (default platform-key, or <unit>-key with --unit)")
    g.add_argument("--unit", help="a unit's key (lane, scanner or client id): needs --out")
    g.add_argument("--out", metavar="DIR", help="write the private half to DIR/signing.key (0600)")
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
    """FILE, else where the state is (see the module docstring)."""
    from portlane.edge.errors import ConfigError, UsageError

    if args.file:
        return Path(args.file)
    if getattr(args, "site", None):
        from portlane.edge.config import load_site

        try:
            return Path(load_site(args.site).state_dir) / AUDIT_FILE_NAME
        except ConfigError:
            pass  # said by _checkpoint, which reads the same file
    if os.environ.get("PORTLANE_STATE_DIR"):
        return default_audit_file()
    from ._common import ask_quiet

    logs = sorted({str(a["audit_log"]) for _p, a in ask_quiet(args, "status") if isinstance(a.get("audit_log"), str)})
    if len(logs) > 1:
        raise UsageError(f"the running daemons keep {len(logs)} audit logs ({', '.join(logs)}); name the one to read")
    return Path(logs[0]) if logs else default_audit_file()


def _unreadable(path: Path, exc: OSError, as_json: bool) -> int:
    reason = exc.strerror or str(exc)
    if as_json:
        print(json.dumps({"file": str(path), "ok": False, "error": reason}))
    else:
        print(f"{path}: cannot read: {reason}", file=sys.stderr)
    return EXIT_USAGE


def _fail(message: str, as_json: bool, rc: int) -> int:
    if as_json:
        print(json.dumps({"ok": False, "error": message}))
    else:
        print(message, file=sys.stderr)
    return rc


def _checkpoint(args: argparse.Namespace) -> tuple[Any, Any, str | None]:
    """(checkpoint or None, authority or None, error line or None) from --checkpoint/--broker/--site."""
    from portlane.edge.errors import CheckpointError
    from portlane.edge.trust.audit_chain import Checkpoint

    authority = None
    site_id = None
    if args.site:
        from portlane.edge.config import load_site
        from portlane.edge.errors import ConfigError
        from portlane.edge.trust.authority import Authority

        try:
            site = load_site(args.site)
        except ConfigError as exc:
            return None, None, str(exc)
        authority, site_id = Authority.from_site(site), site.site.id
    if args.checkpoint:
        try:
            raw = Path(args.checkpoint).read_bytes()
        except OSError as exc:
            return None, None, f"{args.checkpoint}: cannot read: {exc.strerror or exc}"
        try:
            return Checkpoint.parse(raw), authority, None
        except CheckpointError as exc:
            return None, None, f"{args.checkpoint}: {exc}"
    if args.broker:
        if not (args.unit and site_id):
            return None, None, "--broker needs --site FILE and --unit UNIT (whose checkpoint to take)"
        from portlane.edge.contract.topics import Topics

        raw_cp = _fetch_retained(args, Topics(site_id, args.unit).checkpoint)
        if raw_cp is None:
            return None, None, f"{args.broker}: no retained checkpoint of {args.unit} within {args.timeout:g} s"
        try:
            return Checkpoint.parse(raw_cp), authority, None
        except CheckpointError as exc:
            return None, None, f"{args.broker}: checkpoint of {args.unit}: {exc}"
    return None, authority, None


def _fetch_retained(args: argparse.Namespace, topic: str) -> bytes | None:
    import asyncio
    import contextlib

    from portlane.edge.delivery.mqtt import Message, MqttLink

    async def fetch() -> bytes | None:
        got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def on_message(msg: Message) -> None:
            if msg.topic == topic and not got.done():
                got.set_result(msg.payload)

        link = MqttLink(
            args.broker,
            client_id=f"portlane-audit-verify-{os.getpid()}",
            subscriptions=[topic],
            on_message=on_message,
            ca_file=args.ca_file,
            cert_file=args.cert_file,
            key_file=args.key_file,
        )
        task = asyncio.create_task(link.run(), name="audit-verify-link")
        try:
            async with asyncio.timeout(args.timeout):
                return await got
        except TimeoutError:
            return None
        finally:
            await link.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return asyncio.run(fetch())


def run_verify(args: argparse.Namespace) -> int:
    from portlane.edge.errors import CheckpointError
    from portlane.edge.trust.audit_chain import verify_log

    path = _file(args)
    checkpoint, authority, error = _checkpoint(args)
    if error is not None:
        return _fail(error, args.json, EXIT_UNREACHABLE if args.broker and "no retained" in error else EXIT_USAGE)
    signature = "none"
    if checkpoint is not None:
        if authority is not None:
            try:
                checkpoint.verify(authority)
            except CheckpointError as exc:
                return _fail(f"{args.checkpoint or args.broker}: {exc}", args.json, EXIT_FAILED)
            signature = f"verified ({checkpoint.sigkeyid})"
        else:
            signature = "NOT checked (give --site)"
    try:
        report = verify_log(path, expected_head=args.expect_head, checkpoint=checkpoint)
    except OSError as exc:
        return _unreadable(path, exc, args.json)
    anchor = (
        {"checkpoint": {"entries": checkpoint.entries, "head": checkpoint.head, "signature": signature}}
        if checkpoint is not None
        else {}
    )
    if args.json:
        print(json.dumps({"file": str(path), **report.as_dict(), **anchor}))
    elif report.ok:
        extra = ""
        if checkpoint is not None:
            extra = (
                f"; contains the checkpoint of {checkpoint.time} (entry {checkpoint.entries}, signature {signature})"
            )
        print(f"{path}: ok — {report.entries} entries, head {report.head}{extra}")
    else:
        what = "torn" if report.torn else "TAMPERED"
        print(
            f"{path}: {what} — line {report.line}: {report.problem.value if report.problem else '?'}: "
            f"{report.detail} ({report.entries} valid entries before it)",
            file=sys.stderr,
        )
    return EXIT_OK if report.ok else EXIT_FAILED


def run_show(args: argparse.Namespace) -> int:
    from portlane.edge.trust.audit_chain import read_entries

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

    from rich.table import Table

    from ._common import console

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
    console().print(table)
    return EXIT_OK


def run_keys_generate(args: argparse.Namespace) -> int:
    import re

    from portlane.edge.trust.keys import generate_keypair

    if args.unit is not None or args.out is not None:
        return _generate_unit_key(args)
    args.id = args.id or "platform-key"
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


def _generate_unit_key(args: argparse.Namespace) -> int:
    import re

    from portlane.edge.trust.keys import generate_unit_key

    if not (args.unit and args.out):
        return _fail("keys generate: --unit and --out go together (a unit's private key goes to a file)", False, 2)
    key_id = args.id or f"{args.unit}-key"
    for what, value in (("unit", args.unit), ("key id", key_id)):
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", value):
            return _fail(f"{what} {value!r}: lowercase letters, digits, '-' and '_', at most 32", args.json, EXIT_USAGE)
    out = Path(args.out)
    try:
        path, public = generate_unit_key(out)
    except FileExistsError:
        return _fail(
            f"{out / 'signing.key'}: exists; a key is never overwritten — move it aside to rotate",
            args.json,
            EXIT_USAGE,
        )
    except OSError as exc:
        return _fail(f"{out}: cannot write the key: {exc.strerror or exc}", args.json, EXIT_USAGE)
    if args.json:
        print(json.dumps({"unit": args.unit, "key_id": key_id, "public_key": public, "private_key_file": str(path)}))
        return EXIT_OK
    print(f"# private key written to {path} (mode 0600); install it as the unit's 'signing.key' credential")
    print(f"# site configuration, under the lane/scanner/client {args.unit}:")
    print(f'key: {{id: {key_id}, public_key: "{public}"}}')
    return EXIT_OK
