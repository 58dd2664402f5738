"""``config check|diff|apply``: site configuration files, alone and against the running daemons::

    config check FILE [--json]                       validate; exit 2 naming file, key path, reason
    config diff FILE [--show-secrets] [--json]       FILE against the running configuration
    config apply FILE --operator NAME --reason TEXT  make FILE the running configuration

``apply`` validates FILE here, then sends it to each daemon that accepts ``config_apply`` in
turn; each validates it again, switches over, and rolls back by itself when it cannot reach
the broker or its devices with the new one. It stops at the first refusal: the daemons after
it keep the old configuration.

Exit codes: 0 ok / same · 1 ``diff`` found differences, a daemon refused ``apply`` · 2 invalid
file, usage, not confirmed · 3 no daemon reachable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from portlane.edge.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError

from ._common import (
    Answer,
    accepting,
    act_opts,
    ask,
    confirm,
    console,
    daemon_opts,
    err,
    guard,
    operator,
    print_json,
)

if TYPE_CHECKING:
    from portlane.edge.errors import ConfigError


def register(sub: Any) -> None:
    p = sub.add_parser("config", help="site configuration: check a file, diff or apply it to the daemons")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)

    c = csub.add_parser("check", help="validate FILE; exit 2 naming file, key path and reason if it is bad")
    c.add_argument("file")
    c.add_argument("--json", action="store_true", help="machine-readable result")
    c.set_defaults(func=run_check)

    d = csub.add_parser("diff", help="FILE against the running configuration (exit 1 if they differ)")
    d.add_argument("file")
    d.add_argument("--show-secrets", action="store_true", help="do not redact passwords and keys")
    daemon_opts(d)
    d.set_defaults(func=run_diff)

    a = csub.add_parser("apply", help="make FILE the running configuration (rolled back on failure)")
    a.add_argument("file")
    # Options that change what the daemons accept go here and into _apply_fields.
    a.add_argument(
        "--allow-key-change", action="store_true", help="FILE adds or changes trusted keys, and that is intended"
    )
    act_opts(a)
    a.set_defaults(func=run_apply)


# =============================================================================== check


def report_config_error(exc: ConfigError, *, as_json: bool) -> int:
    """Print a ConfigError the way every command does (file, key path, reason); return exit 2."""
    if as_json:
        problems = [{"key": k, "reason": r} for k, r in exc.problems]
        print(json.dumps({"file": exc.file, "ok": False, "problems": problems}))
    else:
        print(str(exc), file=sys.stderr)
    return EXIT_USAGE


def run_check(args: argparse.Namespace) -> int:
    from portlane.edge.config import load_site
    from portlane.edge.errors import ConfigError

    try:
        site = load_site(args.file)
    except ConfigError as exc:
        return report_config_error(exc, as_json=args.json)
    if args.json:
        print(json.dumps({"file": args.file, "ok": True, "site": site.site.id, "lanes": len(site.lanes)}))
    else:
        lanes, scanners = len(site.lanes), len(site.scanners)
        print(
            f"{args.file}: ok — site {site.site.id}, {lanes} lane{'s' * (lanes != 1)}, "
            f"{scanners} scanner{'s' * (scanners != 1)}"
        )
    return EXIT_OK


# =============================================================================== diff


def _load_checked(file: str) -> str:
    """FILE's text once it validates; an invalid file is a usage error and nothing is sent."""
    from portlane.edge.config import load_site
    from portlane.edge.errors import ConfigError

    try:
        load_site(file)
    except ConfigError as exc:
        raise UsageError(f"invalid configuration, nothing sent:\n{exc}") from exc
    return Path(file).read_text(encoding="utf-8")


def _normalised(text: str, *, secrets: bool) -> list[str]:
    import yaml
    from portlane.edge.config import redact

    data = yaml.safe_load(text)
    shown = data if secrets else redact(data)
    return yaml.safe_dump(shown, sort_keys=False, allow_unicode=True).splitlines(keepends=True)


def _diff_style(line: str) -> str | None:
    if line.startswith("@@"):
        return "cyan"
    return {"+": "green", "-": "red"}.get(line[:1])


@guard
def run_diff(args: argparse.Namespace) -> int:
    """FILE against every running daemon's configuration (they normally share one file)."""
    import difflib

    new_text = _load_checked(args.file)
    running: dict[str, list[str]] = {}  # the running file's text -> the daemons that run it
    for path in accepting(args, "config"):
        resp = ask(path, "config", args)
        if not resp.get("ok") or not isinstance(resp.get("yaml"), str):
            err(f"{Path(path).stem} did not give its configuration: {resp.get('error')}")
            return EXIT_FAILED
        running.setdefault(resp["yaml"], []).append(Path(path).stem)
    diffs = [
        (
            names,
            list(
                difflib.unified_diff(
                    _normalised(text, secrets=args.show_secrets),
                    _normalised(new_text, secrets=args.show_secrets),
                    fromfile=f"running ({', '.join(names)})",
                    tofile=args.file,
                )
            ),
        )
        for text, names in running.items()
    ]
    same = not any(diff for _names, diff in diffs)
    if args.json:
        per = [{"daemons": names, "same": not diff, "diff": "".join(diff)} for names, diff in diffs]
        print_json({"ok": True, "same": same, "diff": "".join(line for _n, d in diffs for line in d), "running": per})
    else:
        con = console()
        for names, diff in diffs:
            if not diff:
                con.print(f"{args.file}: same as the running configuration ({', '.join(names)})")
            for line in diff:
                con.print(line.rstrip("\n"), style=_diff_style(line), markup=False, soft_wrap=True)
    return EXIT_OK if same else EXIT_FAILED


# =============================================================================== apply


def _apply_fields(args: argparse.Namespace, text: str, who: str, why: str) -> dict[str, object]:
    """The ``config_apply`` request: the file, who and why (and any consent flags)."""
    return {"yaml": text, "operator": who, "reason": why, "allow_key_change": bool(args.allow_key_change)}


@guard
def run_apply(args: argparse.Namespace) -> int:
    who, why = operator(args)
    text = _load_checked(args.file)
    targets = accepting(args, "config_apply")
    confirm(args, f"apply {args.file} to {', '.join(Path(t).stem for t in targets)}?")
    fields = _apply_fields(args, text, who, why)
    results: list[Answer] = []
    rc = EXIT_OK
    for path in targets:
        resp = ask(path, "config_apply", args, **fields)
        results.append({"socket": path, **resp})
        if not resp.get("ok"):
            rc = EXIT_FAILED
            break  # the rest keep the old configuration; this one rolled itself back
    if args.json:
        print_json({"ok": rc == EXIT_OK, "results": results})
        return rc
    con = console()
    for r in results:
        name = Path(r["socket"]).stem
        if r.get("ok") and r.get("restarting"):
            why = ", ".join(r.get("restart_for") or []) or "the new file"
            con.print(f"[green]applied[/green] to {name}: restarting to take {why} (systemd starts it again)")
        elif r.get("ok"):
            con.print(f"[green]applied[/green] to {name}, in place")
        else:
            err(f"{name} refused and kept its configuration: {r.get('error')}")
    skipped = [Path(t).stem for t in targets[len(results) :]]
    if skipped:
        err(f"not sent to: {', '.join(skipped)} (they keep the old configuration)")
    return rc
