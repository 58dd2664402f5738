"""``portlane pki init|issue|acl``: the site's certificates, signing keys and broker ACL.

``pki init --site FILE --out DIR [--broker-host HOST ...] [--json]``
    a new site CA, the broker's certificate, configuration and ACL, and a client certificate
    (+ signing key) for every lane, scanner and client of the site; ``DIR/site-keys.yaml`` lists
    the public signing keys to merge into the site file. Refuses a DIR that already has a CA.
``pki issue UNIT --site FILE --out DIR [--json]``
    certificate (+ signing key) for one unit with the existing CA in DIR (a new lane, or a
    rotation after moving the old ``DIR/units/UNIT`` aside).
``pki acl --site FILE``
    print the broker ACL rendered from the site file (after adding lanes: copy it over the
    broker's ``acl`` and send Mosquitto SIGHUP).

Exit codes: 0 done, 2 invalid site file or unusable DIR (one line: file, what, what to do).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from portlane.edge.errors import EXIT_OK, EXIT_USAGE


def register(sub: Any) -> None:
    p = sub.add_parser("pki", help="site CA, unit certificates and signing keys, broker ACL")
    psub = p.add_subparsers(dest="pki_command", metavar="ACTION", required=True)

    i = psub.add_parser("init", help="new site CA, broker files and every unit's certificate and key")
    i.add_argument("--site", required=True, help="site file")
    i.add_argument("--out", required=True, help="directory to create (e.g. /etc/portlane/pki)")
    i.add_argument(
        "--broker-host",
        action="append",
        default=None,
        help="name or address clients use for the broker (repeat; default: the site's broker host, localhost)",
    )
    i.add_argument(
        "--ca-dir",
        default=None,
        help="where the CA (and its private key) goes: e.g. removable media; never a unit's or the broker's "
        "directory (default: OUT/ca)",
    )
    i.add_argument("--json", action="store_true", help="machine-readable result")
    i.set_defaults(func=run_init)

    s = psub.add_parser("issue", help="certificate and signing key for one unit, with the existing CA")
    s.add_argument("unit", help="lane, scanner or client id")
    s.add_argument("--site", required=True, help="site file")
    s.add_argument("--out", required=True, help="the directory `pki init` created")
    s.add_argument("--ca-dir", default=None, help="where the CA is, if not OUT/ca (`pki init --ca-dir`)")
    s.add_argument("--json", action="store_true", help="machine-readable result")
    s.set_defaults(func=run_issue)

    a = psub.add_parser("acl", help="print the broker ACL for the site file")
    a.add_argument("--site", required=True, help="site file")
    a.set_defaults(func=run_acl)


def _site(path: str) -> Any:
    from portlane.edge.config import load_site

    return load_site(path)


def _print_issued(issued: list[Any], out: Path, as_json: bool) -> None:
    rows = [
        {
            "unit": i.unit.id,
            "role": i.unit.role,
            "client_id": i.unit.client_id,
            "directory": str(i.directory),
            "key_id": i.key_id,
            "public_key": i.public_key,
        }
        for i in issued
    ]
    if as_json:
        print(json.dumps({"ok": True, "out": str(out), "units": rows}))
        return
    for r in rows:
        key = f"  key {r['key_id']}" if r["key_id"] else ""
        print(f"{r['unit']:<12} {r['role']:<10} {r['client_id']:<40} {r['directory']}{key}")
    print(f"# add the public keys in {out / 'site-keys.yaml'} to the site file (`key:` of each unit)")


def run_init(args: argparse.Namespace) -> int:
    from portlane.edge.errors import ConfigError, PkiError
    from portlane.edge.trust.pki import init_pki

    try:
        site = _site(args.site)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    hosts = args.broker_host
    if not hosts:
        from portlane.edge.delivery.mqtt import parse_url

        hosts = [parse_url(site.broker.url)[0], "localhost"]
    out = Path(args.out)
    ca_dir = Path(args.ca_dir) if args.ca_dir else out / "ca"
    try:
        issued = init_pki(site, out, broker_hosts=hosts, ca_dir=ca_dir)
    except PkiError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"{out}: cannot write: {exc.strerror or exc}; check the path and permissions", file=sys.stderr)
        return EXIT_USAGE
    _print_issued(issued, out, args.json)
    if not args.json:
        print(f"# broker: {out / 'broker'} (mosquitto.conf, acl, certificates); keep {ca_dir / 'ca.key'} offline")
    return EXIT_OK


def run_issue(args: argparse.Namespace) -> int:
    from portlane.edge.errors import ConfigError, PkiError
    from portlane.edge.trust.pki import SiteCA, issue_unit, render_key_fragment, site_units

    try:
        site = _site(args.site)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    units = {u.id: u for u in site_units(site)}
    if args.unit not in units:
        print(f"{args.site}: no lane, scanner or client {args.unit!r}; add it to the site file first", file=sys.stderr)
        return EXIT_USAGE
    out = Path(args.out)
    try:
        issued = issue_unit(SiteCA.load(Path(args.ca_dir) if args.ca_dir else out / "ca"), units[args.unit], out)
    except PkiError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    _print_issued([issued], out, args.json)
    if not args.json and issued.key_id:
        print(render_key_fragment([issued]), end="")
    return EXIT_OK


def run_acl(args: argparse.Namespace) -> int:
    from portlane.edge.errors import ConfigError
    from portlane.edge.trust.pki import render_acl

    try:
        site = _site(args.site)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    print(render_acl(site))
    return EXIT_OK
