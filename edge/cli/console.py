"""``portlane console``: the site console daemon and its users file.

    portlane console serve --site SITE.yaml [--config console.yaml] [--db PATH] [--http HOST:PORT]
    portlane console user add NAME --role supervisor|officer [--agency AGENCY] [--users FILE]
    portlane console user list|remove [--users FILE]

``serve`` is what ``systemd/portlane-console.service`` runs: notify + watchdog, SIGTERM →
drain and stop. See ``docs/console.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from portlane.edge.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE

DEFAULT_CONFIG = Path("/etc/portlane/console.yaml")
DEFAULT_USERS = Path("/etc/portlane/console-users.yaml")


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT with a port 1-65535, e.g. 127.0.0.1:8080")
    return host.strip("[]") or "127.0.0.1", int(port)


def register(sub: Any) -> None:
    p = sub.add_parser("console", help="the site console: live lanes, scanner, alarms, clearance time in a browser")
    csub = p.add_subparsers(dest="console_cmd", metavar="SUBCOMMAND", required=True)
    s = csub.add_parser("serve", help="run the console daemon (what portlane-console.service starts)")
    s.add_argument("--site", type=Path, required=True, help="the site file (lanes, agencies, broker)")
    s.add_argument("--config", type=Path, help=f"console configuration (default {DEFAULT_CONFIG} if it exists)")
    s.add_argument("--db", type=Path, help="SQLite database (overrides the configuration)")
    s.add_argument("--http", type=_hostport, metavar="HOST:PORT", help="listen here (default 127.0.0.1:8080)")
    s.add_argument("--broker", metavar="URL", help="override the site's broker URL")
    s.add_argument("--users", type=Path, help="users file (overrides the configuration)")
    s.set_defaults(func=run_serve)
    u = csub.add_parser("user", help="manage the console's users file (salted scrypt hashes)")
    usub = u.add_subparsers(dest="user_cmd", metavar="ACTION", required=True)
    add = usub.add_parser("add", help="add a user or set a new password (read from stdin or asked for)")
    add.add_argument("name")
    add.add_argument("--role", choices=("supervisor", "officer"), required=True)
    add.add_argument("--agency", help="the officer's agency (customs, border, quarantine, maritime, transport)")
    add.add_argument("--users", type=Path, default=DEFAULT_USERS)
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    add.set_defaults(func=run_user)
    for action, helptext in (("list", "list users (no hashes)"), ("remove", "remove NAME")):
        a = usub.add_parser(action, help=helptext)
        if action == "remove":
            a.add_argument("name")
        a.add_argument("--users", type=Path, default=DEFAULT_USERS)
        a.set_defaults(func=run_user)


def run_serve(args: argparse.Namespace) -> int:
    import aiohttp  # noqa: F401  # the console extra: without it, say so (one line) before anything starts
    from portlane.edge.console.daemon import main_console
    from portlane.edge.errors import ConfigError, PortlaneError

    config = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    try:
        return main_console(
            args.site, config, db=args.db, http=args.http, broker_url=args.broker, users_file=args.users
        )
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except PortlaneError as exc:  # users file, database, credentials, the HTTP port in use
        print(f"portlane console: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"portlane console: {exc}", file=sys.stderr)
        return EXIT_FAILED


def run_user(args: argparse.Namespace) -> int:
    import getpass

    from portlane.edge.console.auth import User, hash_password, load_users, save_users
    from portlane.edge.errors import UsersFileError
    from pydantic import ValidationError

    try:
        users = load_users(args.users) if args.users.exists() else {}
    except UsersFileError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    if args.user_cmd == "list":
        for u in users.values():
            print(f"{u.name}\t{u.role}\t{u.agency.value if u.agency else '-'}")
        return EXIT_OK
    if args.user_cmd == "remove":
        if users.pop(args.name, None) is None:
            print(f"{args.users}: no user {args.name!r}", file=sys.stderr)
            return EXIT_FAILED
        save_users(args.users, users)
        return EXIT_OK
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif not sys.stdin.isatty():
        print(
            f"no terminal to ask for {args.name}'s password on; give it on stdin with --password-stdin "
            "(e.g. from a password manager); nothing changed",
            file=sys.stderr,
        )
        return EXIT_USAGE
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("passwords differ; nothing changed", file=sys.stderr)
            return EXIT_USAGE
    if len(password) < 8:
        print("password: at least 8 characters; nothing changed", file=sys.stderr)
        return EXIT_USAGE
    try:
        user = User(name=args.name, role=args.role, agency=args.agency, password=hash_password(password))
    except ValidationError as exc:
        print(f"{args.name}: {exc.errors()[0]['msg']}; nothing changed", file=sys.stderr)
        return EXIT_USAGE
    users[user.name] = user
    save_users(args.users, users)
    print(f"{args.users}: {user.name} ({user.role}{', ' + user.agency.value if user.agency else ''}) saved")
    return EXIT_OK
