"""``portlane demo``: run a simulated port end to end (see ``portlane.edge.demo.run``).

Exit codes: 0 every vehicle passed, nothing lost, no violation; 1 the run finished otherwise
(or gave up: ``timed_out`` in the summary), or a package or program it needs is missing (the
line names the ``pip install`` or ``apt-get install``); 2 a bad option or site file, the
console's port in use; 3 the ``--broker`` does not answer; 4 the temporary state directory
cannot be written (``EXIT_STATE``); 130 interrupted (Ctrl-C), 143 terminated (SIGTERM) — both
after cleaning up. Errors are one line on stderr — with ``--json``, also one
``{"error": …, "exit_code": …}`` object on stdout, so that stdout always holds exactly one
JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from portlane.edge.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, MissingExtraError

if TYPE_CHECKING:
    from portlane.edge.demo.options import DemoOptions


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run a simulated port: lanes, devices, scanner, central platform, broker")
    p.add_argument(
        "--lanes",
        type=int,
        default=4,
        help="number of lanes, 1 to 200 (default 4; cargo and passenger mixed); beyond 6 lanes the cameras "
        "are simulated only with --ocr (the lanes identify vehicles by their e-cards)",
    )
    p.add_argument("--vehicles", type=int, default=40, help="vehicles in the run (default 40)")
    p.add_argument(
        "--seed",
        type=int,
        default=7,
        help="seed of the traffic and the platform's choices: the same seed, the same vehicles and decisions "
        "(default 7)",
    )
    p.add_argument("--broker", metavar="URL", help="use this broker (mqtt://HOST:PORT) instead of the embedded one")
    p.add_argument("--inspect-ratio", type=float, default=0.25, help="share of cargo vehicles sent to X-ray")
    p.add_argument(
        "--declared",
        type=float,
        default=0.7,
        metavar="SHARE",
        help="share of the vehicles the platform declares in advance: each agency signs a pre-decision the "
        "lane releases on by itself (default 0.7)",
    )
    p.add_argument(
        "--mismatches",
        metavar="KIND=N,…",
        help="deliberate mismatches among the declared vehicles, e.g. weight_out_of_tolerance=2,wrong_lane=1 "
        "(kinds: weight_out_of_tolerance, container_mismatch (with --ocr), wrong_lane, expired, revoked, "
        "predecision_revoked; 'none'); default: one of each that applies, at most one declared vehicle in five",
    )
    p.add_argument(
        "--inject-forged",
        type=int,
        default=0,
        metavar="K",
        help="send K forged/replayed/expired/misdirected commands during the run",
    )
    p.add_argument(
        "--time-factor",
        type=float,
        default=0.1,
        help="physical time scale: 1.0 = real time (a scan takes 10–40 s), default 0.1",
    )
    p.add_argument("--site", type=Path, default=None, help="site file (default: the HZMB Zhuhai cargo site)")
    p.add_argument(
        "--secure",
        action="store_true",
        help="run on a Mosquitto it starts with the shipped secure config: TLS, client certificates, ACL",
    )
    p.add_argument(
        "--ocr",
        action="store_true",
        help="identify vehicles from the simulated cameras with the on-edge OCR (slower; CPU-bound)",
    )
    p.add_argument(
        "--images",
        type=Path,
        metavar="DIR",
        help="with --ocr: the cameras show real photographs from DIR (labels.csv: file,text,kind) of the "
        "generated vehicles, which take the photographs' plates or container numbers",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds (default 600)")
    p.add_argument("--json", action="store_true", help="print exactly one JSON summary object on stdout")
    p.add_argument(
        "--console",
        nargs="?",
        const="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="serve the site console while the demo runs (default 127.0.0.1:8080; sign in as supervisor / demo)",
    )
    p.add_argument("--console-db", type=Path, metavar="PATH", help="keep the console's database (portlane report --db)")
    p.set_defaults(func=run)


def _table(run: Any) -> Any:
    from rich.table import Table

    t = Table(title=f"portlane demo — {run.site.site.name}", expand=True)
    for col in ("lane", "stage", "passage", "vehicle", "gate", "devices", "outbox", "events"):
        t.add_column(col)
    for lid, d in run.lanes.items():
        st = d.status()
        w = run.worlds[lid]
        bad = [n for n, x in st["devices"].items() if x["health"] != "online"]
        t.add_row(
            lid,
            st["stage"],
            (st["passage_id"] or "")[-12:],
            ",".join(w.vehicle.plates) if w.vehicle else "",
            f"{w.arm_angle:3.0f}°",
            "[green]all online[/]" if not bad else f"[red]{','.join(bad)}[/]",
            str(st["outbox"]["depth"]),
            str(st["outbox"]["last_seq"]),
        )
    obs = run.observer
    done = sum(1 for e in obs.events if e["type"] == "portlane.passage.completed") if obs else 0
    sc = run.scanner
    t.caption = (
        f"passages {done}/{run.plan.total} · events on broker {obs.received if obs else 0} · "
        f"scanner queue {len(sc.logic.queue) if sc else 0}, scans {sc.scans if sc else 0}"
    )
    return t


def options_from_args(args: argparse.Namespace) -> DemoOptions:
    """The command line as ``DemoOptions`` (checked by ``DemoOptions.validated``)."""
    from portlane.edge.demo.options import DEFAULT_SITE, DemoOptions
    from portlane.edge.errors import UsageError

    from .console import _hostport

    try:
        console = _hostport(args.console) if args.console else None
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"--console {exc}") from None
    return DemoOptions(
        lanes=args.lanes,
        vehicles=args.vehicles,
        seed=args.seed,
        broker=args.broker,
        time_factor=args.time_factor,
        inspect_ratio=args.inspect_ratio,
        inject_forged=args.inject_forged,
        declared=args.declared,
        mismatches=args.mismatches,
        site_file=args.site or DEFAULT_SITE,
        timeout_s=args.timeout,
        recognition=args.ocr,
        secure=args.secure,
        console=console,
        console_db=args.console_db,
        images=args.images,
    ).validated()


def run(args: argparse.Namespace) -> int:
    from portlane.edge.errors import ConfigError, PortlaneError

    received: list[signal.Signals] = []
    try:
        from portlane.edge.demo.run import run_demo  # the demo extra: simulators, broker, platform

        opts = options_from_args(args)
        live_view = not args.json and sys.stdout.isatty()
        if live_view:
            from rich.console import Console
            from rich.live import Live

            console = Console()
            with Live(console=console, refresh_per_second=4, transient=False) as live:
                demo = run_demo(opts, on_tick=lambda r: live.update(_table(r)))
                summary = asyncio.run(_until_signal(demo, received))
        else:
            summary = asyncio.run(_until_signal(run_demo(opts), received))
    except asyncio.CancelledError:
        sig = received[0] if received else signal.SIGTERM
        return _fail(args, f"stopped by {sig.name} (cleaned up)", 128 + int(sig))
    except ConfigError as exc:
        return _fail(args, "; ".join(str(exc).splitlines()), EXIT_USAGE)
    except PortlaneError as exc:  # DemoError, UsageError, BrokerUnreachableError, StateError …
        return _fail(args, str(exc), exc.exit_code)
    except ModuleNotFoundError as exc:
        missing = MissingExtraError.of(exc)
        if missing is None:
            raise
        return _fail(args, str(missing), missing.exit_code)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        _print_summary(summary)
    ok = (
        summary["events_lost"] == 0
        and summary["invariant_violations"] == 0
        and summary["passages"] == opts.vehicles
        and not summary["timed_out"]
    )
    return EXIT_OK if ok else EXIT_FAILED


async def _until_signal(demo: Coroutine[Any, Any, dict[str, Any]], received: list[signal.Signals]) -> dict[str, Any]:
    """Ctrl-C (SIGINT) and SIGTERM (systemd, a CI timeout, ``kill``) cancel the run once, and it
    cleans up (simulators, broker, the temporary state directory) before the one "stopped" line.

    Handled on the loop rather than as ``KeyboardInterrupt``: that one cancels the run and then
    every task the run is still closing, whose tracebacks asyncio prints by the dozen. A second
    signal while cleaning up is ignored; the first is in ``received``."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def stop(sig: signal.Signals) -> None:
        if not received:
            received.append(sig)
            task.cancel()

    sigs = (signal.SIGINT, signal.SIGTERM)
    for sig in sigs:
        loop.add_signal_handler(sig, stop, sig)
    try:
        return await demo
    finally:
        for sig in sigs:
            loop.remove_signal_handler(sig)


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    """One line on stderr (and, with --json, the one JSON object on stdout)."""
    print(f"portlane demo: {message}", file=sys.stderr)
    if args.json:
        print(json.dumps({"error": message, "exit_code": code}, ensure_ascii=False))
    return code


def _print_summary(s: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    c = Console()
    b = s.get("broker") or {}
    how = "TLS, a client certificate per unit, the site's ACL" if b.get("client_certificates") else "plain MQTT"
    c.print(f"broker {b.get('url', '?')}: {'TLS' if b.get('tls') and not b.get('client_certificates') else how}")
    t = Table(title="summary", show_header=False)
    for k in (
        "passages",
        "released",
        "diverted",
        "inspected",
        "scans",
        "scanner_utilisation",
        "events_published",
        "events_received",
        "events_lost",
        "duplicates",
        "rejected_commands",
        "identity_corrections",
        "invariant_violations",
        "wall_s",
    ):
        t.add_row(k, str(s[k]))
    c.print(t)
    st = Table(title="stage times from arrival (ms, simulated time × time factor)")
    st.add_column("stage")
    st.add_column("p50")
    st.add_column("p95")
    for k, v in s["stage_ms"].items():
        st.add_row(k, str(v["p50"]), str(v["p95"]))
    c.print(st)
    cargo = s.get("cargo") or {}
    if cargo.get("occupancies") or cargo.get("seal_reads"):
        ct = Table(title="cargo lanes: radiation portals and seals", show_header=False)
        for k in ("occupancies", "alarms", "innocent_alarms", "real_alarms", "alarms_not_adjudicated", "portal_faults"):
            ct.add_row(k, str(cargo[k]))
        for code, n in cargo["adjudications"].items():
            ct.add_row(f"adjudicated {code}", str(n))
        ct.add_row("seal_reads", str(cargo["seal_reads"]))
        for reason, n in cargo["seal_refusals"].items():
            ct.add_row(f"refused: {reason}", str(n))
        ct.add_row("elocks_removed", str(cargo["elocks_removed"]))
        for reason, n in cargo["seal_commands_refused"].items():
            ct.add_row(f"e-lock command refused: {reason}", str(n))
        c.print(ct)
    _print_predecisions(c, s.get("predecisions"))
    for v in s["violations"]:
        c.print(f"[red]violation:[/] {v}")
    if s.get("timed_out"):
        c.print(f"[red]gave up after --timeout:[/] {len(s['stuck_lanes'])} lanes had not finished")
        for lane, st in s["stuck_lanes"].items():
            c.print(f"  {lane}: {st}")


def _print_predecisions(c: Any, pd: dict[str, Any] | None) -> None:
    """What the lanes released by themselves on the platform's pre-decisions, and why not."""
    if not pd:
        return
    from rich.table import Table

    share = f"{pd['automatic_share']:.0%}"
    c.print(
        f"pre-decisions: {pd['declared']} vehicles declared, {pd['undeclared']} not; "
        f"[bold]{pd['automatic_releases']}[/] released by their lane itself ({share} of the passages)"
    )
    t = Table(title="arrival → gate open by release basis (ms)")
    for col in ("basis", "passages", "p50", "p95"):
        t.add_column(col)
    for basis, f in pd["clearance_ms"].items():
        t.add_row(basis, str(f["n"]), str(f["p50"]), str(f["p95"]))
    c.print(t)
    if pd.get("clearance_p50_ratio"):
        look = f"the simulated officer's look: {pd['online_review_s']} s"
        c.print(f"online p50 / pre-decision p50: {pd['clearance_p50_ratio']}× ({look})")
    reasons = ", ".join(f"{r} {n}" for r, n in pd["refusals"].items())
    c.print(f"not released on pre-decisions (vehicles by reason): {reasons or 'none'}")
    for kind, d in pd["deliberate"].items():
        c.print(f"  deliberate {kind}: named {d['named']} of {d['planted']} ({', '.join(d['vehicles'])})")
    for line in pd["deliberate_missed"]:
        c.print(f"[red]deliberate mismatch not named:[/] {line}")
