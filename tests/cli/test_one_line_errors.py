"""Issue 24, "one line for every failure the user can cause": each of these printed a traceback
(or the wrong usage, or nothing useful) before. Each ends in one line that says what to do
next, and the exit code docs/operations.md lists ("Exit codes")."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from portlane.edge.cli import main

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "firmware_config" / "sites" / "zhuhai-hzmb-cargo.yaml"

#: Makes the named top-level packages unimportable, as on a lane controller without the extra.
BLOCKER = """
import importlib.abc, os, sys
BLOCK = set(os.environ["BLOCK"].split(","))
class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCK:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Blocked())
from portlane.edge.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def _run(*argv: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portlane.edge", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        input=stdin,
    )


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


@pytest.mark.parametrize(
    ("block", "argv", "extra"),
    [
        ("amqtt", ["demo", "--lanes", "1", "--vehicles", "1", "--json"], "demo"),
        ("aiohttp", ["console", "serve", "--site", str(SITE), "--users", "/nonexistent/users.yaml"], "console"),
    ],
)
def test_a_missing_extra_is_one_line_naming_the_pip_install(block: str, argv: list[str], extra: str) -> None:
    res = subprocess.run(
        [sys.executable, "-c", BLOCKER, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "BLOCK": block},
    )
    line = _one_line(res.stderr)
    assert res.returncode == 1
    assert f"'{block}'" in line and f"pip install 'portlane[{extra}]'" in line
    if "--json" in argv:  # stdout still holds exactly one JSON object
        assert json.loads(res.stdout) == {"error": line.removeprefix("portlane demo: "), "exit_code": 1}


def test_secure_without_mosquitto_says_what_to_install(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # a PATH with python but no mosquitto
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    res = _run("demo", "--secure", "--lanes", "1", "--vehicles", "1", env={"PATH": str(bin_dir)})
    line = _one_line(res.stderr)
    assert res.returncode == 1 and "apt-get install mosquitto" in line and "leave out --secure" in line


def test_a_bad_host_port_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--console", "127.0.0.1:99999", "--json"]) == 2  # was an OverflowError traceback
    err = capsys.readouterr().err
    assert "port 1-65535" in _one_line(err)
    with pytest.raises(SystemExit) as exit_:  # argparse's own usage error
        main(["console", "serve", "--site", str(SITE), "--http", "127.0.0.1:99999"])
    assert exit_.value.code == 2 and "port 1-65535" in capsys.readouterr().err


@pytest.mark.slow
def test_the_console_port_in_use_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = _run("demo", "--lanes", "1", "--vehicles", "1", "--console", f"127.0.0.1:{port}", "--json")
    line = _one_line(res.stderr)
    assert res.returncode == 2
    assert f"cannot serve the console on 127.0.0.1:{port}: Address already in use; choose another" in line
    assert json.loads(res.stdout)["exit_code"] == 2


def test_console_user_add_without_a_terminal_asks_for_password_stdin(tmp_path: Path) -> None:
    users = tmp_path / "users.yaml"
    res = _run("console", "user", "add", "li", "--role", "supervisor", "--users", str(users), stdin="")
    line = _one_line(res.stderr)
    assert res.returncode == 2 and "--password-stdin" in line and "EOFError" not in line
    assert not users.exists()
    res = _run(
        "console",
        "user",
        "add",
        "li",
        "--role",
        "supervisor",
        "--users",
        str(users),
        "--password-stdin",
        stdin="pw-12345678\n",
    )
    assert res.returncode == 0 and users.exists()


def test_an_unknown_option_shows_its_commands_usage_and_a_guess(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--lnaes", "3"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: portlane demo ") and "--lanes" in err.splitlines()[0]
    assert "unrecognized arguments: --lnaes 3 (did you mean --lanes?)" in err


def test_daemon_and_demo_options_have_help_texts(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["daemon", "lane", "--help"], ["daemon", "scanner", "--help"], ["demo", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        options = out.split("options:", 1)[1]
        for flag in ("--site", "--lane", "--scanner", "--broker", "--seed"):
            if f"  {flag} " in options:  # each option's line continues with its help text
                text = options.split(f"  {flag} ", 1)[1].split("\n", 1)[0].split(None, 1)
                assert len(text) == 2 and len(text[1]) > 10, f"{argv}: {flag} has no help"
    with pytest.raises(SystemExit):
        main(["daemon", "lane", "--help"])
    assert "PORTLANE_RUN_DIR" in capsys.readouterr().out  # where a daemon started by hand listens
