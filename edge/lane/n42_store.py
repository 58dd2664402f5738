"""The lane's ANSI N42.42-2012 documents: one file per radiation portal occupancy, bounded.

    <state_dir>/n42/<lane>/<ended, UTC>-<occupancy>.n42      e.g. n42/c1/20261207T094105Z-000123.n42

Each occupancy the portal reports is written as one ``RadInstrumentData`` document
(``portlane.edge.contract.n42``) before its ``rpm.occupancy`` is published, which names it
(``n42``, relative to the state directory): the platform's radiation analysts, a technician
(``portlane diag bundle``) or any N42.42 reader (SpecUtils, InterSpec, becquerel) takes it from
there. A file is written whole or not at all (a temporary name renamed into place); beyond
``keep`` documents the oldest are removed, so a lane's store stays bounded (``N42_KEEP`` × ~7 KB).
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from pathlib import Path

from portlane.edge.contract.events import RpmOccupancyEvent
from portlane.edge.contract.n42 import PortalInfo, occupancy_document
from portlane.edge.contract.times import parse_rfc3339

__all__ = ["N42_DIR", "N42_KEEP", "N42Store"]

#: Under the state directory.
N42_DIR = "n42"
#: Documents kept per lane: a busy cargo lane sees ~2,000 trucks a day, so about five days, ~70 MB.
N42_KEEP = 10_000


class N42Store:
    """The documents of one lane's portal. ``write`` raises ``OSError`` when the file cannot be
    written (the caller publishes the occupancy without a document rather than lose it)."""

    def __init__(self, state_dir: Path, lane: str, portal: PortalInfo, *, version: str = "", keep: int = N42_KEEP):
        if keep < 1:
            raise ValueError("an N42 store keeps at least one document")
        self.state_dir = Path(state_dir)
        self.directory = self.state_dir / N42_DIR / lane
        self.portal = portal
        self.version = version
        self.keep = keep
        self._files: deque[str] | None = None  # names on disk, oldest first (listed on first write)

    def _listed(self) -> deque[str]:
        if self._files is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._files = deque(sorted(p.name for p in self.directory.glob("*.n42")))
        return self._files

    def write(self, occ: RpmOccupancyEvent) -> str:
        """Write ``occ``'s document; returns its path relative to the state directory."""
        files = self._listed()
        ended = parse_rfc3339(occ.ended)
        name = f"{ended:%Y%m%dT%H%M%S}Z-{occ.occupancy:06d}.n42"
        path = self.directory / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_bytes(occupancy_document(occ, self.portal, version=self.version))
        os.replace(tmp, path)
        if name not in files:
            files.append(name)
        while len(files) > self.keep:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / files.popleft()).unlink()
        return str(path.relative_to(self.state_dir))
