"""Words the contract's commands and events share, each defined once.

``Verdict`` — what an agency answers about a passage: the ``verdict`` of the ``decision``
command and the ``decision`` of the ``passage.decided`` event; the lane's logic accepts exactly
these (``VERDICTS``).

``LOW_CONFIDENCE`` — an identification below this confidence goes to an officer: the lane
flags it ``low_confidence`` in ``vehicle.identified`` and the console raises an ``identity``
alarm for it (the console's own ``low_confidence`` setting, console.yaml, defaults to it).
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["LOW_CONFIDENCE", "VERDICTS", "Verdict"]

Verdict = Literal["release", "inspect", "hold", "divert"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)

LOW_CONFIDENCE = 0.8
