"""The hash-chained audit log: append/verify, every kind of tampering, torn tails, the CLI."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from portlane.edge.errors import AuditError, OperatorError
from portlane.edge.trust.audit import AuditLog, require_operator
from portlane.edge.trust.audit_chain import GENESIS, AuditProblem, verify_log

T0 = datetime(2026, 11, 23, 18, 0, 0, tzinfo=UTC)


class StepClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=250)
        return self.now


def write_log(path: Path, count: int = 5) -> list[dict[str, Any]]:
    with AuditLog(path, clock=StepClock()) as log:
        for i in range(count):
            if i % 2:
                log.append(
                    "override",
                    actor=f"tech:{i}",
                    reason="barrier jammed, opened by hand",
                    lane="c01",
                    data={"gate": "open", "weight_kg": 31250.5},
                )
            else:
                log.append(
                    "command_rejected",
                    actor="platform:k1",
                    reason="bad_signature",
                    lane="c02",
                    data={"nonce": f"n{i}", "detail": "signature does not verify"},
                )
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# -- append and verify --------------------------------------------------------------------------


def test_append_then_verify(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    entries = write_log(path, 5)
    assert [e["n"] for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0]["prev"] == GENESIS
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(entries))
    report = verify_log(path)
    assert report.ok and report.entries == 5 and report.head == entries[-1]["hash"]
    assert AuditLog.verify(path) == report


def test_entry_fields(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "a.jsonl", clock=lambda: T0) as log:
        e = log.append("override", actor="  tech:li.wei ", reason="photocell   faulty, manual release", lane="c01")
    assert (e.n, e.ts, e.kind, e.actor, e.lane, e.data) == (
        1,
        "2026-11-23T18:00:00.000Z",
        "override",
        "tech:li.wei",
        "c01",
        {},
    )
    assert e.reason == "photocell faulty, manual release"
    assert e.hash == e.compute_hash() and len(e.hash) == 64


def test_empty_log_verifies(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    AuditLog(path).close()
    assert verify_log(path).ok and verify_log(path).entries == 0 and verify_log(path).head == GENESIS


def test_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    entries = write_log(path, 3)
    with AuditLog(path) as log:
        assert log.entries == 3 and log.head == entries[-1]["hash"]
        e = log.append("lane_closed", actor="platform:k1", reason="night closure", lane="c03")
    assert e.n == 4 and e.prev == entries[-1]["hash"]
    assert verify_log(path).ok and verify_log(path).entries == 4


def test_two_writers_on_one_file_keep_one_chain(tmp_path: Path) -> None:
    """Two lane daemons share the site's file: each catches up with the other's appends."""
    path = tmp_path / "a.jsonl"
    with AuditLog(path) as a, AuditLog(path) as b:
        for i in range(6):
            (a if i % 2 else b).append("command_accepted", actor="platform:k1", reason="release", lane=f"c0{i}")
    assert verify_log(path).entries == 6 and verify_log(path).ok


def test_threads_do_not_interleave(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    with AuditLog(path) as log:

        def work(k: int) -> None:
            for i in range(25):
                log.append("command_accepted", actor=f"t{k}", reason="x" * 200, data={"i": i})

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    report = verify_log(path)
    assert report.ok and report.entries == 100


def test_append_rejects_bad_input(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "a.jsonl") as log:
        with pytest.raises(ValueError):
            log.append("Not A Kind", actor="x", reason="y")
        with pytest.raises(ValueError):
            log.append("note", actor="x", reason="y", data={"w": float("nan")})
        with pytest.raises(OperatorError):
            log.append("override", actor="", reason="opened the gate by hand")
        with pytest.raises(OperatorError):
            log.append("correction", actor="officer:7", reason="typo")
        with pytest.raises(AuditError):
            log.append("note", actor="x", reason="y", data={"blob": "x" * 70_000})
        assert log.entries == 0
    log.close()  # idempotent
    with pytest.raises(AuditError, match="closed"):
        log.append("note", actor="x", reason="y")


# -- tampering ----------------------------------------------------------------------------------

FIELDS = ["n", "ts", "kind", "actor", "reason", "lane", "data", "prev", "hash"]


def _altered(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return "x"
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value[:-1] + ("0" if value[-1:] != "0" else "1")
    if isinstance(value, dict):
        return {**value, "added": 1}
    raise AssertionError(value)


@pytest.mark.parametrize("line_no", [1, 3, 5])
@pytest.mark.parametrize("field", FIELDS)
def test_editing_any_field_of_any_line_is_caught(tmp_path: Path, field: str, line_no: int) -> None:
    from portlane.edge.contract.canonical import canonical_json

    path = tmp_path / "a.jsonl"
    entries = write_log(path, 5)
    lines = lines_of(path)
    entry = dict(entries[line_no - 1])
    entry[field] = _altered(entry[field])
    lines[line_no - 1] = canonical_json(entry) + b"\n"  # a careful forger keeps the canonical form
    path.write_bytes(b"".join(lines))
    report = verify_log(path)
    assert not report.ok and report.tampered
    assert report.line == line_no
    assert report.entries == line_no - 1
    assert report.problem in (AuditProblem.HASH_MISMATCH, AuditProblem.UNPARSEABLE)


def test_rehashing_an_edited_entry_breaks_the_next_link(tmp_path: Path) -> None:
    from portlane.edge.contract.canonical import canonical_json

    path = tmp_path / "a.jsonl"
    entries = write_log(path, 4)
    forged = dict(entries[1], actor="tech:nobody")
    forged["hash"] = (
        __import__("hashlib").sha256(canonical_json({k: v for k, v in forged.items() if k != "hash"})).hexdigest()
    )
    lines = lines_of(path)
    lines[1] = canonical_json(forged) + b"\n"
    path.write_bytes(b"".join(lines))
    report = verify_log(path)
    assert (report.line, report.problem) == (3, AuditProblem.BROKEN_LINK)


@pytest.mark.parametrize("line_no", [1, 3, 4])
def test_deleting_a_line_is_caught(tmp_path: Path, line_no: int) -> None:
    path = tmp_path / "a.jsonl"
    write_log(path, 5)
    lines = lines_of(path)
    del lines[line_no - 1]
    path.write_bytes(b"".join(lines))
    report = verify_log(path)
    assert (report.ok, report.line, report.problem) == (False, line_no, AuditProblem.BAD_SEQUENCE)


def test_reordering_lines_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    write_log(path, 5)
    lines = lines_of(path)
    lines[2], lines[3] = lines[3], lines[2]
    path.write_bytes(b"".join(lines))
    report = verify_log(path)
    assert (report.ok, report.line, report.problem) == (False, 3, AuditProblem.BAD_SEQUENCE)


def test_whitespace_edit_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    entries = write_log(path, 3)
    lines = lines_of(path)
    lines[1] = json.dumps(entries[1]).encode() + b"\n"  # same content, different spelling
    path.write_bytes(b"".join(lines))
    report = verify_log(path)
    assert (report.line, report.problem) == (2, AuditProblem.NOT_CANONICAL)


def test_garbage_line_is_unparseable(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    write_log(path, 3)
    lines = lines_of(path)
    lines.insert(1, b"hello\n")
    path.write_bytes(b"".join(lines))
    report = verify_log(path)
    assert (report.line, report.problem) == (2, AuditProblem.UNPARSEABLE)


def test_truncation_needs_the_recorded_head(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    entries = write_log(path, 4)
    head = entries[-1]["hash"]
    path.write_bytes(b"".join(lines_of(path)[:-1]))
    assert verify_log(path).ok  # a chain alone cannot see its newest entries vanish...
    report = verify_log(path, expected_head=head)  # ...a head recorded elsewhere can
    assert (report.ok, report.problem) == (False, AuditProblem.HEAD_MISMATCH)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_single_byte_change_is_caught(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    path = tmp_path_factory.mktemp("mut") / "a.jsonl"
    write_log(path, 3)
    raw = path.read_bytes()
    pos = data.draw(st.integers(0, len(raw) - 1), label="position")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != raw[pos]), label="byte")
    path.write_bytes(raw[:pos] + bytes([new]) + raw[pos + 1 :])
    report = verify_log(path)
    assert not report.ok
    assert report.line == raw[:pos].count(b"\n") + 1 or (new == 0x0A and report.line is not None)


# -- torn tail ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tail", [b'{"actor":"tech:1","da', b"\0" * 37, b"x"])
def test_torn_last_line_is_reported_as_torn(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "a.jsonl"
    write_log(path, 3)
    with open(path, "ab") as f:
        f.write(tail)
    report = verify_log(path)
    assert (report.ok, report.torn, report.tampered) == (False, True, False)
    assert (report.line, report.problem, report.entries) == (4, AuditProblem.TORN_TAIL, 3)


def test_complete_entry_missing_its_newline_is_torn(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    write_log(path, 2)
    path.write_bytes(path.read_bytes()[:-1])
    report = verify_log(path)
    assert (report.torn, report.line, report.entries) == (True, 2, 1)


def test_reopening_recovers_a_torn_tail_and_keeps_the_evidence(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    entries = write_log(path, 3)
    size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b'{"actor":"tech:1"')
    with AuditLog(path) as log:
        assert log.entries == 4  # the recovery entry
        log.append("lane_opened", actor="platform:k1", reason="morning", lane="c01")
    report = verify_log(path)
    assert report.ok and report.entries == 5
    recovered = json.loads(lines_of(path)[3])
    assert recovered["kind"] == "log_recovered" and recovered["prev"] == entries[-1]["hash"]
    assert recovered["data"]["offset"] == size and recovered["data"]["bytes"] == 17
    assert (tmp_path / recovered["data"]["saved_to"]).read_bytes() == b'{"actor":"tech:1"'


def test_opening_a_log_whose_newest_entry_was_edited_refuses(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    write_log(path, 3)
    lines = lines_of(path)
    lines[-1] = lines[-1].replace(b"bad_signature", b"all_good_sig!")
    path.write_bytes(b"".join(lines))
    with pytest.raises(AuditError, match="tampered"):
        AuditLog(path)


# -- require_operator ---------------------------------------------------------------------------


def test_require_operator() -> None:
    assert require_operator(" tech:li.wei ", "  barrier   stuck half open ") == (
        "tech:li.wei",
        "barrier stuck half open",
    )
    for actor, reason in [
        ("", "a good long reason"),
        ("   ", "a good long reason"),
        ("li wei", "a good long reason"),
        ("tech:li", "short"),
        ("tech:li", "        "),
        ("tech:li", "bad\x00reason here"),
        ("x" * 65, "a good long reason"),
    ]:
        with pytest.raises(OperatorError):
            require_operator(actor, reason)


# -- CLI ----------------------------------------------------------------------------------------


def portlane(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portlane.edge", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_cli_verify_intact(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 3)
    r = portlane("audit", "verify", str(path))
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout and "3 entries" in r.stdout
    r = portlane("audit", "verify", "--json", env={"PORTLANE_STATE_DIR": str(tmp_path)})
    assert r.returncode == 0
    assert json.loads(r.stdout)["entries"] == 3


def test_cli_verify_tampered_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 4)
    lines = lines_of(path)
    del lines[1]
    path.write_bytes(b"".join(lines))
    r = portlane("audit", "verify", str(path))
    assert r.returncode == 1
    assert "TAMPERED" in r.stderr and "line 2" in r.stderr and "bad_sequence" in r.stderr
    out = json.loads(portlane("audit", "verify", "--json", str(path)).stdout)
    assert (out["ok"], out["line"], out["problem"]) == (False, 2, "bad_sequence")


def test_cli_verify_torn(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 2)
    with open(path, "ab") as f:
        f.write(b'{"n":3')
    r = portlane("audit", "verify", str(path))
    assert r.returncode == 1
    assert "torn" in r.stderr and "line 3" in r.stderr and "TAMPERED" not in r.stderr


def test_cli_missing_file_and_usage(tmp_path: Path) -> None:
    assert portlane("audit", "verify", str(tmp_path / "nope.jsonl")).returncode == 2
    assert portlane("audit", "verify", env={"PORTLANE_STATE_DIR": str(tmp_path)}).returncode == 2
    assert portlane("audit", "show", "--last", "0", str(tmp_path / "x")).returncode == 2


def test_cli_show(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    entries = write_log(path, 5)
    r = portlane("audit", "show", str(path), "--last", "2", "--json")
    assert r.returncode == 0
    assert [e["n"] for e in json.loads(r.stdout)] == [4, 5]
    r = portlane("audit", "show", str(path), env={"COLUMNS": "200"})
    assert r.returncode == 0 and "command_rejected" in r.stdout and entries[1]["actor"] in r.stdout


def test_cli_keys_generate_makes_a_working_pair() -> None:
    from portlane.edge.trust.commands import CommandSigner

    r = portlane("keys", "generate", "--id", "site-2027", "--json")
    assert r.returncode == 0
    out = json.loads(r.stdout)
    assert out["key_id"] == "site-2027"
    assert CommandSigner(out["key_id"], out["private_key"]).public_key_b64 == out["public_key"]
    r = portlane("keys", "generate")
    assert r.returncode == 0 and "platform:" in r.stdout and "public_key:" in r.stdout
    assert portlane("keys", "generate", "--id", "Bad Id").returncode == 2
