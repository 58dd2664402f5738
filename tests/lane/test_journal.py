"""The passage journal on a full disk: a write that fails is a named one-line error, leaves the
journal as it was, and the next sync writes the difference.

SQLite's ``max_page_count`` makes the database "full" the way ENOSPC does (SQLITE_FULL,
"database or disk is full"), without a filesystem of its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from portlane.edge.errors import StateError
from portlane.edge.journal import Journal


def _fill_up(j: Journal) -> None:
    pages = j._file._db.execute("PRAGMA page_count").fetchone()[0]
    j._file._db.execute(f"PRAGMA max_page_count = {pages}")


def test_a_failed_write_leaves_the_journal_as_it_was_and_is_written_later(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.db")
    try:
        j.sync({"p1": {"stage": "released"}})
        _fill_up(j)
        big = {"p1": {"stage": "exiting"}, "p2": {"stage": "arrived", "pad": "x" * 20_000}}
        with pytest.raises(StateError, match=r"journal\.db: cannot write the journal \(.*full.*\); free space"):
            j.sync(big)
        j._file._db.execute("PRAGMA max_page_count = 1000000")  # space comes back
        j.sync(big)  # the whole difference, although p1 looked written before the failure
    finally:
        j.close()
    again = Journal(tmp_path / "journal.db")
    try:
        assert again.records() == big
    finally:
        again.close()


def test_a_record_added_or_removed_is_flushed_even_when_not_asked(tmp_path: Path) -> None:
    """``flush=False`` spares the fsync of a change to a record only: the work a restart must
    resolve (a new record) and its end (a removed one) are always on disk."""
    j = Journal(tmp_path / "journal.db")
    try:
        j.sync({"p1": {"stage": "arrived"}}, flush=False)  # added
        j.sync({"p1": {"stage": "identified"}}, flush=False)  # changed
        j.sync({"p1": {"stage": "released"}})  # changed, flush asked for
        j.sync({}, flush=False)  # removed
        assert (j.flushed, j.unflushed) == (3, 1)
    finally:
        j.close()
    again = Journal(tmp_path / "journal.db")
    try:
        assert again.records() == {}
    finally:
        again.close()
