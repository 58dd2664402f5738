"""The ``portlane`` command tree, pinned: a command lost in a refactoring fails here."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from portlane.edge.cli import GROUPS, build_parser

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "edge" / "cli"
DEMO_SITE = ROOT / "firmware_config" / "sites" / "zhuhai-hzmb-cargo.yaml"

#: Every command and sub-command, in help order. Add yours here when you add one.
COMMANDS = [
    "demo",
    "config",
    "config check",
    "config diff",
    "config apply",
    "sim",
    "selftest",
    "ocr",
    "ocr plate",
    "ocr container",
    "ocr eval",
    "audit",
    "audit verify",
    "audit show",
    "keys",
    "keys generate",
    "status",
    "devices",
    "passage",
    "passage show",
    "events",
    "events tail",
    "outbox",
    "outbox show",
    "outbox replay",
    "outbox purge",
    "gate",
    "board",
    "board say",
    "lane",
    "scanner",
    "scanner abort",
    "modbus",
    "modbus read",
    "modbus write",
    "serial",
    "serial sniff",
    "diag",
    "diag bundle",
    "pki",
    "pki init",
    "pki issue",
    "pki acl",
    "daemon",
    "daemon lane",
    "daemon scanner",
    "daemon recognition",
    "systemd",
    "systemd install",
    "console",
    "console serve",
    "console user",
    "console user add",
    "console user list",
    "console user remove",
    "report",
    "report clearance",
]
#: Commands that only read: each takes --json.
READ_COMMANDS = [
    "status",
    "devices",
    "passage show",
    "events tail",
    "outbox show",
    "modbus read",
    "serial sniff",
    "diag bundle",
    "config check",
    "config diff",
    "audit verify",
    "audit show",
    "selftest",
    "report clearance",
]
#: No module of the CLI grows past this many lines (one module per command group).
MAX_MODULE_LINES = 400
#: Parsing must not import these; they are loaded by the command that runs.
HEAVY = ("rich", "pydantic", "yaml", "paho", "pymodbus", "serial", "numpy", "cv2", "onnxruntime", "amqtt")


def _walk(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> dict[str, argparse.ArgumentParser]:
    out: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out[" ".join((*prefix, name))] = sub
                out.update(_walk(sub, (*prefix, name)))
    return out


def test_every_command_is_there_in_help_order() -> None:
    assert list(_walk(build_parser())) == COMMANDS


def test_every_leaf_command_runs_something_and_read_commands_take_json() -> None:
    tree = _walk(build_parser())
    leaves = [c for c in tree if not any(other.startswith(c + " ") for other in tree)]
    for cmd in leaves:
        assert callable(tree[cmd].get_default("func")), f"{cmd} has no run function"
    for cmd in READ_COMMANDS:
        flags = {s for a in tree[cmd]._actions for s in a.option_strings}
        assert "--json" in flags, f"{cmd} has no --json"


def test_groups_list_exactly_the_command_modules() -> None:
    modules = {p.stem for p in CLI.glob("*.py") if not p.stem.startswith("_")}
    assert set(GROUPS) == modules


@pytest.mark.parametrize("path", sorted(CLI.glob("*.py")), ids=lambda p: p.name)
def test_no_cli_module_is_too_long(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.name}: {lines} lines; split it by command group"


def test_building_the_parser_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import portlane.edge.cli as cli\n"
        "cli.build_parser().format_help()\n"
        f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sim_site_writes_a_valid_site_file_and_stops_on_sigint(tmp_path: Path) -> None:
    from portlane.edge.config import load_site

    out = tmp_path / "sim-site.yaml"
    argv = [sys.executable, "-m", "portlane.edge", "sim", "site", "--site", str(DEMO_SITE), "--out", str(out), "--json"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        started = json.loads(proc.stdout.readline() or "null")  # written once the site file is
        assert started is not None and started["site"] == str(out)
        site = load_site(out)
        gate = site.lane("c1").devices.gate
        assert gate.link.model_dump() == started["links"]["lanes"]["c1"]["gate"]
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
