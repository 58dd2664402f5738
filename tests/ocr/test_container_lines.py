"""Container lines from detector boxes (issue 22): lines grouped only where a number can continue."""

from __future__ import annotations

import numpy as np
from portlane.models.container_lines import Piece, groups


def _piece(box: tuple[int, int, int, int], text: str) -> Piece:
    return Piece(box, np.zeros((2 * len(text), 4), np.float32), text)


def test_the_line_below_continues_a_number_only_if_it_lies_under_it() -> None:
    owner = _piece((100, 100, 180, 140), "TAKU")
    under = _piece((100, 150, 260, 190), "2473543")
    assert groups([owner, under]) == [[0, 1]]
    # the line below starting past the owner code's end (another marking, a weight) is not its serial
    aside = _piece((185, 150, 345, 190), "2473543")
    assert groups([owner, aside]) == []
