"""The grammar-constrained CTC search (models/ctc.py): several templates searched together give
each template the path it gets alone, and that path is the best one (brute force on tiny cases)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from portlane.models import ctc

#: A tiny dictionary: blank, three letters, a digit that aliases the letter O.
CLASSES = ["", "A", "B", "C", "0"]
INDEX = {c: i for i, c in enumerate(CLASSES) if c}


def _matrix(rng: np.random.Generator, frames: int) -> np.ndarray:
    # peaked rows (like a recogniser's), blank never near-certain so no frames are collapsed
    p = rng.dirichlet(np.full(len(CLASSES), 0.6), size=frames).astype(np.float32)
    p[:, 0] = np.minimum(p[:, 0], 0.9)
    return p / p.sum(axis=1, keepdims=True)


def _brute_force(probs: np.ndarray, template: tuple[str, ...]) -> tuple[str, float] | None:
    """Every CTC alignment over the template's characters and blank: the best one it accepts."""
    chars = sorted({c for allowed in template for c in allowed})
    ids = [0, *(INDEX[c] for c in chars)]
    lp = np.log(np.maximum(probs.astype(np.float64), 1e-12))
    best: tuple[str, float] | None = None
    for path in itertools.product(ids, repeat=len(probs)):
        text = "".join(CLASSES[c] for c, _ in itertools.groupby(path) if c)
        if len(text) != len(template) or any(ch not in allowed for ch, allowed in zip(text, template, strict=True)):
            continue
        score = float(sum(lp[t, c] for t, c in enumerate(path)))
        if best is None or score > best[1]:
            best = (text, score)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_search_finds_the_best_alignment(seed: int) -> None:
    rng = np.random.default_rng(seed)
    probs = _matrix(rng, 7)
    for template in [("AB", "ABC"), ("A", "A"), ("ABC", "B", "AC")]:
        got = ctc.best_path(probs, template, INDEX, folded=True)
        want = _brute_force(probs, template)
        assert (got is None) == (want is None)
        if got is not None and want is not None:
            assert got.text == want[0]
            assert math.isclose(got.logp, want[1], rel_tol=1e-5)


@pytest.mark.parametrize("seed", range(12))
def test_templates_searched_together_get_the_path_they_get_alone(seed: int) -> None:
    """Templates of different lengths and widths are padded into one search: the padding must
    never leak into a template's result (text, score, confidences, alternatives, spans)."""
    rng = np.random.default_rng(100 + seed)
    probs = _matrix(rng, int(rng.integers(3, 30)))
    templates = [("ABC", "0"), ("A", "B", "C", "ABC0"), ("B",), ("ABC0",) * 6, ("C", "AB", "0A", "B", "C")]
    together = ctc.best_paths(probs, templates, INDEX, folded=True)
    alone = [ctc.best_path(probs, t, INDEX, folded=True) for t in templates]
    assert together == alone
    assert any(d is not None for d in alone)
    assert ctc.best_paths(probs, [], INDEX) == []


def test_templates_longer_than_the_matrix_have_no_path() -> None:
    probs = _matrix(np.random.default_rng(7), 3)
    short, long = ("A", "B"), ("A", "B", "C", "A", "B")
    got = ctc.best_paths(probs, [long, short, long], INDEX, folded=True)
    assert got[0] is None and got[2] is None and got[1] == ctc.best_path(probs, short, INDEX, folded=True)


def test_pairs_of_different_lengths_searched_together_get_what_they_get_alone() -> None:
    """``search``: matrices of different lengths (and a window of one of them) in one pass; a
    pair's final state is taken at its own last frame, not at the longest matrix's."""
    rng = np.random.default_rng(42)
    mats = [_matrix(rng, n) for n in (4, 11, 23, 2)]
    mats.append(mats[2][5:17])  # a window of another matrix, as the container columns are decoded
    templates = [("ABC0",) * 3, ("A", "B", "C"), ("ABC0",) * 8]
    items = [(m, t) for m in mats for t in templates]
    got = ctc.search(items, INDEX, folded=True)
    assert got == [ctc.best_path(m, t, INDEX, folded=True) for m, t in items]
    assert got[-1] is not None and got[2] is None  # 8 characters fit 12 frames, not 4
    # the result of a short matrix does not depend on what it is searched with
    assert ctc.search(items[:3], INDEX, folded=True) == got[:3]


def test_search_in_small_chunks_gives_the_same_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pairs are searched in chunks of bounded size (memory): the chunking changes nothing."""
    rng = np.random.default_rng(5)
    items = [(_matrix(rng, int(n)), t) for n in rng.integers(2, 25, 12) for t in (("ABC",) * 2, ("AB0",) * 5)]
    whole = ctc.search(items, INDEX, folded=True)
    monkeypatch.setattr(ctc, "SEARCH_CELLS", 40)
    assert ctc.search(items, INDEX, folded=True) == whole
    assert whole == [ctc.best_path(m, t, INDEX, folded=True) for m, t in items]
