"""Grammar-constrained CTC decoding over the recogniser's full probability matrix.

For a template (one allowed-character set per position) :func:`best_path` finds the single
most probable CTC alignment of the ``[T, C]`` posterior matrix that spells a string accepted by
the template — a Viterbi search over states "inside character j (which one of its allowed set)"
and "blank after character j". Repeated characters must be separated by a blank, as in CTC.

Separator glyphs (space, ``·``, ``-``, ``.``) are folded into the blank class first: plates print
them (``苏A·36E80``, ``MX-12-34``) but the canonical text drops them.

Runs of frames that are almost certainly blank are collapsed to one frame first (their
log-probabilities summed), which typically halves T without changing the best path.

Returns the text, the path's log-probability (comparable across templates of the same matrix),
per-position confidences (the best frame probability of the chosen character) and per-position
alternatives (other allowed characters ranked by their best frame probability) which the ISO
6346 check-digit search uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Decoded", "best_path", "fold_separators", "greedy"]

SEPARATORS = (" ", "·", "-", ".", "•", "_", ":")
NEG = -1e30


@dataclass(frozen=True, slots=True)
class Decoded:
    text: str
    logp: float
    char_conf: tuple[float, ...]
    alternatives: tuple[tuple[str, ...], ...]
    spans: tuple[tuple[int, int], ...] = ()

    @property
    def confidence(self) -> float:
        return min(self.char_conf) if self.char_conf else 0.0


#: Glyphs that are the same shape in plate and container fonts: when a position does not allow
#: the character the network preferred, its look-alike collects that mass (``O`` in a mainland
#: serial, which never has O, is the digit ``0``). Any other substitution must be paid for.
ALIASES: dict[str, str] = {"0": "OQD", "1": "IL|", "O": "0Q", "I": "1L|"}


def fold_separators(probs: np.ndarray, index: dict[str, int]) -> np.ndarray:
    """Copy of ``probs`` with separators folded into blank and lower case into upper case."""
    p = probs.copy()
    for s in SEPARATORS:
        i = index.get(s)
        if i is not None:
            p[:, 0] += p[:, i]
            p[:, i] = 0.0
    for lo in "abcdefghijklmnopqrstuvwxyz":
        i, j = index.get(lo), index.get(lo.upper())
        if i is not None and j is not None:
            p[:, j] += p[:, i]
            p[:, i] = 0.0
    return p


def compress(probs: np.ndarray, *, blank_min: float = 0.995) -> tuple[np.ndarray, np.ndarray]:
    """Collapse runs of near-certain blank frames; returns (log-probs, original frame index)."""
    sure = probs[:, 0] >= blank_min
    keep: list[int] = []
    rows: list[np.ndarray] = []
    logp = np.log(np.maximum(probs, 1e-12))
    t = 0
    n = len(probs)
    while t < n:
        if sure[t]:
            u = t
            while u + 1 < n and sure[u + 1]:
                u += 1
            row = logp[t:u + 1].max(axis=0)
            row[0] = logp[t:u + 1, 0].sum()
            rows.append(row)
            keep.append(t)
            t = u + 1
        else:
            rows.append(logp[t])
            keep.append(t)
            t += 1
    return np.stack(rows) if rows else logp[:0], np.array(keep, dtype=np.int64)


def greedy(probs: np.ndarray, classes: Sequence[str]) -> tuple[str, float]:
    best = probs.argmax(1)
    out, scores, prev = [], [], 0
    for t, c in enumerate(best):
        if c != prev and c != 0:
            out.append(classes[c])
            scores.append(float(probs[t, c]))
        prev = int(c)
    return "".join(out), (sum(scores) / len(scores) if scores else 0.0)


def best_path(probs: np.ndarray, template: Sequence[str], index: dict[str, int], *,
              folded: bool = False, n_alternatives: int = 3) -> Decoded | None:
    """Best CTC path through ``template`` (see module docstring); None if T is too short."""
    p = probs if folded else fold_separators(probs, index)
    lp, frames = compress(p)
    n_pos = len(template)
    T = len(lp)
    if n_pos > T:
        return None
    K = max(len(s) for s in template)
    cls = np.zeros((n_pos, K), dtype=np.int64)
    valid = np.zeros((n_pos, K), dtype=bool)
    for j, allowed in enumerate(template):
        ids = [index[c] for c in allowed if c in index]
        cls[j, : len(ids)] = ids
        valid[j, : len(ids)] = True
    emit = lp[:, cls]  # [T, n, K]
    for j, allowed in enumerate(template):
        for k, ch in enumerate(allowed):
            extra = [index[a] for a in ALIASES.get(ch, "") if a not in allowed and a in index]
            if extra:
                emit[:, j, k] = np.logaddexp(emit[:, j, k], np.log(np.maximum(
                    np.exp(lp[:, extra]).sum(axis=1), 1e-12)))
    emit[:, ~valid] = NEG
    lb = lp[:, 0]

    E = np.full((n_pos, K), NEG)
    B = np.full(n_pos + 1, NEG)
    B[0] = lb[0]
    E[0] = emit[0, 0]
    # back-pointers: E: 0 stay, 1 from blank B[j], 2 from E[j-1][k]; B: 0 stay, 1 from E[j][k]
    bpE = np.zeros((T, n_pos, K), dtype=np.int8)
    bpEk = np.zeros((T, n_pos, K), dtype=np.int16)
    bpB = np.zeros((T, n_pos + 1), dtype=np.int8)
    bpBk = np.zeros((T, n_pos + 1), dtype=np.int16)
    bpE[0, 0] = 1
    rows = np.arange(n_pos - 1)
    for t in range(1, T):
        # best and second-best character of the previous position (for the "c' != c" rule)
        Eprev = E[:-1]
        k1 = Eprev.argmax(1)
        v1 = Eprev[rows, k1]
        tmp = Eprev.copy()
        tmp[rows, k1] = NEG
        v2 = tmp.max(1)
        c1 = cls[rows, k1]
        from_char = np.where(cls[1:] == c1[:, None], v2[:, None], v1[:, None])  # [n-1, K]
        from_blank = np.broadcast_to(B[:-1, None], (n_pos, K))
        enter = from_blank.copy()
        enter_src = np.ones((n_pos, K), dtype=np.int8)
        enter_k = np.zeros((n_pos, K), dtype=np.int16)
        better = from_char > enter[1:]
        enter[1:] = np.where(better, from_char, enter[1:])
        enter_src[1:] = np.where(better, 2, 1)
        alt_k = np.where(cls[1:] == c1[:, None], tmp.argmax(1)[:, None], k1[:, None])
        enter_k[1:] = np.where(better, alt_k, 0)
        stay = enter <= E
        newE = np.where(stay, E, enter) + emit[t]
        bpE[t] = np.where(stay, 0, enter_src)
        bpEk[t] = np.where(stay, 0, enter_k)
        kb = E.argmax(1)
        eb = E[np.arange(n_pos), kb]
        newB = B.copy()
        stayB = np.ones(n_pos + 1, dtype=bool)
        stayB[1:] = B[1:] >= eb
        newB[1:] = np.where(stayB[1:], B[1:], eb)
        newB += lb[t]
        bpB[t] = np.where(stayB, 0, 1)
        bpBk[t, 1:] = np.where(stayB[1:], 0, kb)
        E, B = newE, newB
    kend = int(E[-1].argmax())
    if B[-1] >= E[-1, kend]:
        total, state = float(B[-1]), ("B", n_pos, 0)
    else:
        total, state = float(E[-1, kend]), ("E", n_pos - 1, kend)
    if total <= NEG / 2:
        return None
    chars: list[int] = [-1] * n_pos
    span_end = [0] * n_pos
    span_start = [0] * n_pos
    for t in range(T - 1, -1, -1):
        kind, j, k = state
        if kind == "B":
            if bpB[t, j] == 1:
                state = ("E", j - 1, int(bpBk[t, j]))
            continue
        if chars[j] == -1:
            chars[j] = k
            span_end[j] = t
        span_start[j] = t
        src = bpE[t, j, k]
        if src == 1:
            state = ("B", j, 0)
        elif src == 2:
            state = ("E", j - 1, int(bpEk[t, j, k]))
    if any(c < 0 for c in chars):
        return None
    text, conf, alts, spans = [], [], [], []
    for j in range(n_pos):
        seg = p[frames[span_start[j]]: frames[span_end[j]] + 1 if span_end[j] + 1 >= len(frames)
                else frames[span_end[j] + 1]]
        ids = cls[j, valid[j]]
        segp = seg[:, ids].copy()
        for k, ch in enumerate(template[j]):
            extra = [index[a] for a in ALIASES.get(ch, "") if a not in template[j] and a in index]
            if extra:
                segp[:, k] += seg[:, extra].sum(axis=1)
        best = segp.max(axis=0)
        order = np.argsort(-best)
        ch = template[j][chars[j]] if chars[j] < len(template[j]) else "?"
        text.append(ch)
        conf.append(float(best[chars[j]]))
        alts.append(tuple(template[j][i] for i in order[: n_alternatives + 1] if i != chars[j])[:n_alternatives])
        spans.append((int(frames[span_start[j]]), int(frames[span_end[j]])))
    return Decoded("".join(text), total, tuple(conf), tuple(alts), tuple(spans))
