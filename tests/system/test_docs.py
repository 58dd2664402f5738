"""The docs are executed (issue 24): a drift between what README.md, docs/operations.md,
docs/security.md and docs/deployment.md show and what the program does fails here.

* Every ``sh`` block runs, unless the line before it says why not
  (``<!-- docs-test: not run — REASON -->``: root, systemd, a controller's journal, minutes).
  The runnable blocks — the walkthrough on simulators, operations.md §8 — run in document
  order as one shell session in a fresh directory, each command checked against the exit
  code its comment states (``# exit N``; none means 0).
* Every ``portlane`` command in any ``sh`` block, run or not, is parsed by the real parser.
* Every ``portlane …`` synopsis (tables, inline code) names a command that exists, and only
  options that command has.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from portlane.edge.cli import _parse, build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *(ROOT / "docs" / n for n in ("operations.md", "security.md", "deployment.md"))]
NOT_RUN = re.compile(r"<!-- docs-test: not run[^-]*?— (?P<reason>.+?) -->")
EXPECT = re.compile(r"#\s*exit (\d+)")
BACKGROUND = re.compile(r"&\s*(?:\w+=\$!)?\s*(?:#.*)?$")
#: The walkthrough starts daemons, waits for traffic and reconfigures twice: a few minutes on a
#: busy 2-core machine.
WALKTHROUGH_TIMEOUT_S = 900
#: No command of the walkthrough takes longer than this (the longest waits are 60 s): a command
#: that does (a `wait` for a daemon that will not stop) ends the run, named.
COMMAND_TIMEOUT_S = 180


@dataclass(frozen=True)
class Command:
    doc: str
    line: int  # 1-based line of the command in the document
    text: str  # as shown, continuations joined
    expected: int | None  # None: a background command, not checked

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    not_run: str | None  # the reason, when the block is not run
    commands: tuple[Command, ...]


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a markdown file, with their commands."""
    lines = path.read_text(encoding="utf-8").splitlines()
    doc = str(path.relative_to(ROOT))
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)", lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        marker = NOT_RUN.search(lines[i - 1]) if i else None
        i += 1
        body: list[tuple[int, str]] = []
        while not lines[i].startswith("```"):
            body.append((i + 1, lines[i]))
            i += 1
        i += 1
        commands: list[Command] = []
        pending: tuple[int, str] | None = None
        for n, text in body:
            if pending is not None:
                n, text = pending[0], pending[1] + " " + text.strip()
                pending = None
            if text.rstrip().endswith("\\"):
                pending = (n, text.rstrip()[:-1].rstrip())
                continue
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            expect = EXPECT.search(text)
            code = None if BACKGROUND.search(text) else int(expect.group(1)) if expect else 0
            commands.append(Command(doc, n, text, code))
        out.append(Block(doc, start + 1, lang, marker.group("reason") if marker else None, tuple(commands)))
    return out


ALL_BLOCKS = [b for path in DOCS for b in blocks(path)]
RUN = [b for b in ALL_BLOCKS if b.lang == "sh" and b.not_run is None]


def portlane_argv(text: str) -> list[str] | None:
    """The ``portlane`` arguments of a shell command as shown (up to its first redirection,
    ``&`` or pipe; a ``$VARIABLE`` stands for a value), or None for another command."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:
        return None
    words: list[str] = []
    for tok in tokens:
        if tok and all(ch in "();<>|&" for ch in tok):
            if words and words[-1].isdigit():
                words.pop()  # the descriptor of a redirection (2>>)
            break
        words.append("1" if "$" in tok else tok)
    words = [w for w in words if not re.fullmatch(r"[A-Z_]\w*=.*", w)]
    if words[:2] == ["python3", "dev.py"]:
        if words[2:3] == ["demo"]:
            return words[2:]
        return words[3:] if words[2:3] == ["portlane"] else None
    if words and Path(words[0]).name == "portlane":
        return words[1:]
    return None


# ------------------------------------------------------------------------------ the blocks


def test_every_sh_block_runs_or_says_why_not() -> None:
    shell = [b for b in ALL_BLOCKS if b.lang == "sh"]
    assert RUN, "no runnable block: the walkthrough (operations.md §8) is gone"
    assert all(b.doc == "docs/operations.md" for b in RUN), [f"{b.doc}:{b.line}" for b in RUN]
    assert all(b.not_run is None or len(b.not_run) > 20 for b in shell)


@pytest.mark.parametrize(
    "command",
    [c for b in ALL_BLOCKS if b.lang == "sh" for c in b.commands if portlane_argv(c.text) is not None],
    ids=lambda c: c.where,
)
def test_every_portlane_command_in_a_block_parses(command: Command) -> None:
    argv = portlane_argv(command.text)
    assert argv is not None
    try:
        args = _parse(build_parser(), argv)
    except SystemExit as exc:
        raise AssertionError(f"{command.where}: `{command.text}` does not parse (exit {exc.code})") from None
    assert getattr(args, "func", None) is not None, f"{command.where}: `{command.text}` names no command"


# ------------------------------------------------------------------------------ synopses


def _tree(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], set[str]]:
    out: dict[tuple[str, ...], set[str]] = {prefix: {o for a in parser._actions for o in a.option_strings}}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.update(_tree(sub, (*prefix, name)))
    return out


def synopses() -> list[tuple[str, str]]:
    """(where, text) of every inline ``portlane …`` code span of the documents."""
    out = []
    for path in DOCS:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for span in re.findall(r"`(portlane [^`]+)`", line):
                out.append((f"{path.relative_to(ROOT)}:{n}", span))
    return out


@pytest.mark.parametrize(("where", "text"), synopses(), ids=[w for w, _ in synopses()])
def test_every_synopsis_names_a_command_and_its_options(where: str, text: str) -> None:
    tree = _tree(build_parser())
    words = re.split(r"[\s|()\[\]]+", text.removeprefix("portlane "))
    path: tuple[str, ...] = ()
    for w in words:
        if (*path, w) in tree:
            path = (*path, w)
        elif not w.startswith("-"):
            continue  # an argument (FILE, L, TEXT) or a placeholder
    assert path or text.split()[1:2] == ["--help"], f"{where}: `{text}` names no command"
    # Options of the sub-commands a synopsis lists together (`lane close|open`) count too.
    options = set().union(*(opts for p, opts in tree.items() if p[: len(path)] == path))
    unknown = sorted({f for f in re.findall(r"(?<![\w-])--[a-z][a-z-]*", text)} - options)
    assert unknown == [], f"{where}: `{text}`: {' '.join(path)} has no {', '.join(unknown)}"


# ------------------------------------------------------------------------------ the walkthrough


def _script(results: Path) -> str:
    """The runnable blocks as one bash session: each command verbatim, its exit code recorded."""
    lines = ["exec 9>" + shlex.quote(str(results))]
    for block in RUN:
        for c in block.commands:
            lines.append(c.text)
            if c.expected is not None:
                lines.append(f'echo "{c.where} {c.expected} $?" >&9')
    return "\n".join(lines) + "\n"


@pytest.mark.slow
@pytest.mark.timeout(WALKTHROUGH_TIMEOUT_S + 60)
def test_the_walkthrough_on_simulators_runs_as_written(tmp_path: Path) -> None:
    """operations.md §8, command by command, in a fresh directory: each exits as its comment says."""
    # a short directory: the daemons' control sockets go to ./run, and an AF_UNIX path is at most
    # 107 bytes (pytest's tmp_path under a worker of pytest-xdist is longer than that allows)
    work = Path(tempfile.mkdtemp(prefix="pl-walk-", dir="/tmp"))
    try:
        _walk(tmp_path, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _walk(tmp_path: Path, work: Path) -> None:
    results = tmp_path / "results.txt"
    (tmp_path / "walkthrough.sh").write_text(_script(results), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTLANE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # this checkout's portlane
    env["PYTHONWARNINGS"] = "ignore"
    log = tmp_path / "walkthrough.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", str(tmp_path / "walkthrough.sh")],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the daemons it starts stay in its process group
        )
        stuck = False
        try:
            stuck = _run_while_progressing(proc, results)
        finally:
            _stop_everything(proc, work)
    ran = {}
    for line in results.read_text(encoding="utf-8").splitlines():
        where, want, got = line.rsplit(" ", 2)
        ran[where] = (int(want), int(got))
    expected = [c.where for b in RUN for c in b.commands if c.expected is not None]
    drift = [f"{w}: exit {got}, the docs say {want}" for w, (want, got) in ran.items() if want != got]
    if stuck:
        drift.append(f"stuck for {COMMAND_TIMEOUT_S} s after {next(reversed(ran), 'the start')}")
    missing = [w for w in expected if w not in ran]
    tail = log.read_text(encoding="utf-8", errors="replace")[-6000:]
    assert not drift and not missing, "\n".join([*drift, *(f"{w}: not reached" for w in missing), tail])


def _run_while_progressing(proc: subprocess.Popen[bytes], results: Path) -> bool:
    """Wait for the session while each command ends within COMMAND_TIMEOUT_S (and the whole
    within WALKTHROUGH_TIMEOUT_S); True when it got stuck."""
    done = 0
    deadline = time.monotonic() + WALKTHROUGH_TIMEOUT_S
    while True:
        try:
            proc.wait(timeout=COMMAND_TIMEOUT_S)
            return False
        except subprocess.TimeoutExpired:
            now_done = len(results.read_text(encoding="utf-8").splitlines()) if results.exists() else 0
            if now_done == done or time.monotonic() > deadline:
                return True
            done = now_done


def _stop_everything(proc: subprocess.Popen[bytes], work: Path) -> None:
    """Whatever the session left running: its process group (daemons), and the simulator."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)  # daemons the shell left behind when it ended
    pid_file = work / "sim.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
