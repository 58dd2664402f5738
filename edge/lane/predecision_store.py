"""The lane's pre-decisions on disk: the book survives a restart (``kill -9``, a power cut).

One SQLite file per lane (``predecisions-{lane}.db`` in the state directory; WAL,
``synchronous=FULL``), one JSON record per pre-decision (``p:{id}``) and per control order
(``o:{nonce}``), written through ``edge/journal.py``'s :class:`~portlane.edge.journal.RecordFile`.
Only what changed since the last write is written (the book keeps the list), in one transaction.

How a daemon uses it::

    store = PredecisionStore(clock=clock)          # store.book exists at once (empty)
    logic = LaneLogic(..., predecisions=store.book)
    store.open(state_dir / f"predecisions-{lane}.db")   # before the first input reaches the logic
    ...
    apply(actions); store.sync()                   # after every batch of the logic's actions,
                                                   # in the same synchronous step (before the
                                                   # executor's task can send an open frame)
    store.close()

``sync`` after the logic marked a pre-decision used and before the gate can move makes "one
pre-decision, one passage" hold across a restart; the passage journal names the pre-decisions a
passage used as a second record (``LaneLogic.start``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from portlane.edge.errors import StateError
from portlane.edge.journal import RecordFile

from .predecisions import DEFAULT_CAPACITY, PredecisionBook

__all__ = ["PredecisionStore"]

log = logging.getLogger(__name__)


class PredecisionStore:
    """Keeps :attr:`book` on disk. ``open`` / ``close`` bracket its use; ``sync`` writes."""

    def __init__(self, *, clock: Callable[[], float] = time.time, capacity: int = DEFAULT_CAPACITY) -> None:
        self.clock = clock
        self.book = PredecisionBook(capacity=capacity)
        self.path: Path | None = None
        self.unreadable = 0  # records dropped at open (not JSON, or not a pre-decision)
        self._file: RecordFile | None = None

    @property
    def is_open(self) -> bool:
        return self._file is not None

    def open(self, path: str | Path) -> PredecisionBook:
        """Open (or create) the file and load it into :attr:`book` (the same object the logic
        holds); expired entries are dropped at once. ``StateError`` if the file is unusable."""
        if self._file is not None:
            raise StateError(str(path), "the pre-decision store is already open", "open it once, close it once")
        f = RecordFile(path, what="pre-decision store")
        try:
            bodies, records = f.read()
        except StateError:
            f.close()
            raise
        self._file, self.path = f, f.path
        bad = [k for k in bodies if k not in records] + self.book.restore(records, self.clock())
        self.unreadable = len(bad)
        if bad:
            log.warning("%s: %d unreadable pre-decision records dropped", self.path, len(bad))
            self._file.write(dict.fromkeys(bad))
        self.sync()  # what the purge dropped
        return self.book

    def sync(self) -> int:
        """Write what changed in the book since the last ``sync``, in one transaction; returns
        the number of records written. ``StateError`` on a failed write: nothing is lost, the
        next ``sync`` writes the same changes again."""
        if self._file is None:
            raise StateError("pre-decision store", "not open", "call open(path) before sync()")
        pending = self.book.pending()
        if not pending:
            return 0
        self._file.write({k: None if v is None else json.dumps(v, sort_keys=True) for k, v in pending.items()})
        self.book.saved(pending)
        return len(pending)

    def close(self) -> None:
        """Idempotent."""
        if self._file is not None:
            self._file.close()
            self._file = None
