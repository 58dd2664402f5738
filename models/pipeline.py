"""The recognition pipeline: find → rectify → recognise → grammar decode → validate → confidence.

One import for callers (CLI, worker, bench): plates in ``plates.py``, container numbers in
``containers.py`` (vertical codes: ``columns.py``), shared image helpers in ``imaging.py``.
"""

from __future__ import annotations

from .containers import ContainerReader
from .imaging import decode_image
from .plates import PlateReader

__all__ = ["ContainerReader", "PlateReader", "decode_image"]
