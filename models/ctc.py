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

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Decoded", "best_path", "best_paths", "fold_separators", "greedy", "search", "slip_weights"]

#: Cells (frames x pairs x positions x characters) one stacked search may hold: its arrays take
#: ~8 bytes per cell (a container frame can bring 200 pairs of 100+ frames; peak memory).
SEARCH_CELLS = 500_000
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
            row = logp[t : u + 1].max(axis=0)
            row[0] = logp[t : u + 1, 0].sum()
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


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the search needs of one template, computed once per template and dictionary."""

    full: np.ndarray  # [n, K] class index of each allowed character; padding -> 0 (blank)
    valid: np.ndarray  # [n, K]
    aliases: tuple[tuple[int, int, tuple[int, ...]], ...]  # (position, slot, look-alike classes)


_PLANS: dict[tuple[tuple[str, ...], int], tuple[dict[str, int], _Plan]] = {}


def _plan(template: Sequence[str], index: dict[str, int]) -> _Plan:
    key = (tuple(template), id(index))
    got = _PLANS.get(key)
    if got is not None and got[0] is index:
        return got[1]
    n_pos, K = len(template), max(len(s) for s in template)
    full = np.zeros((n_pos, K), dtype=np.int64)
    valid = np.zeros((n_pos, K), dtype=bool)
    aliases: list[tuple[int, int, tuple[int, ...]]] = []
    for j, allowed in enumerate(template):
        ids = [index[c] for c in allowed if c in index]
        full[j, : len(ids)] = ids
        valid[j, : len(ids)] = True
        for k, ch in enumerate(allowed):
            extra = tuple(index[a] for a in ALIASES.get(ch, "") if a not in allowed and a in index)
            if extra:
                aliases.append((j, k, extra))
    plan = _Plan(full, valid, tuple(aliases))
    if len(_PLANS) > 256:
        _PLANS.clear()
    _PLANS[key] = (index, plan)
    return plan


def best_path(
    probs: np.ndarray, template: Sequence[str], index: dict[str, int], *, folded: bool = False, n_alternatives: int = 3
) -> Decoded | None:
    """Best CTC path through ``template`` (see module docstring); None if T is too short."""
    return best_paths(probs, [template], index, folded=folded, n_alternatives=n_alternatives)[0]


def best_paths(
    probs: np.ndarray,
    templates: Sequence[Sequence[str]],
    index: dict[str, int],
    *,
    folded: bool = False,
    n_alternatives: int = 3,
) -> list[Decoded | None]:
    """:func:`best_path` of one matrix through each of ``templates``, searched together
    (:func:`search`)."""
    p = probs if folded else fold_separators(probs, index)
    return search([(p, t) for t in templates], index, folded=True, n_alternatives=n_alternatives)


def search(
    items: Sequence[tuple[np.ndarray, Sequence[str]]],
    index: dict[str, int],
    *,
    folded: bool = False,
    n_alternatives: int = 3,
) -> list[Decoded | None]:
    """:func:`best_path` of each (matrix, template) pair, all searched together.

    The pairs are stacked (templates padded with impossible positions and characters, matrices
    with frames after their end) and searched in one pass over the frames, so that forty pairs
    cost a few times one: the search's cost is the per-frame overhead of numpy, not the
    arithmetic. A pair's final state is taken at its own last frame; nothing after it, and no
    other pair, reaches its path. Only the matrix columns a template can use (blank, its
    characters and their look-alikes) are read. Every pair's result is the one it gets alone.
    """
    if not items:
        return []
    mats: dict[int, np.ndarray] = {}
    for probs, _t in items:
        if id(probs) not in mats:
            mats[id(probs)] = probs if folded else fold_separators(probs, index)
    plans = [_plan(t, index) for _p, t in items]
    ns = [len(t) for _p, t in items]
    cols = np.array(
        sorted(
            {
                0,
                *(int(c) for pl in plans for c in pl.full[pl.valid]),
                *(c for pl in plans for _j, _k, e in pl.aliases for c in e),
            }
        ),
        dtype=np.int64,
    )
    squeezed = {key: compress(p[:, cols]) for key, p in mats.items()}
    Ts = [len(squeezed[id(probs)][0]) for probs, _t in items]
    out: list[Decoded | None] = [None] * len(items)
    # pairs of similar length together (little padding), in chunks of bounded size (memory)
    live = sorted((m for m in range(len(items)) if ns[m] <= Ts[m]), key=lambda m: Ts[m])
    width = max((len(pl.valid) * pl.valid.shape[1] for pl in plans), default=1)
    while live:
        n = 1
        while n < len(live) and Ts[live[n]] * (n + 1) * width <= SEARCH_CELLS:
            n += 1
        _search_chunk(items, live[:n], plans, ns, Ts, cols, mats, squeezed, out, n_alternatives)
        live = live[n:]
    return out


def _search_chunk(
    items: Sequence[tuple[np.ndarray, Sequence[str]]],
    live: list[int],
    plans: list[_Plan],
    ns: list[int],
    Ts: list[int],
    cols: np.ndarray,
    mats: dict[int, np.ndarray],
    squeezed: dict[int, tuple[np.ndarray, np.ndarray]],
    out: list[Decoded | None],
    n_alternatives: int,
) -> None:
    """The search of :func:`search` for the pairs ``live``; results written into ``out``."""
    M = len(live)
    n_max, K = max(ns[m] for m in live), max(plans[m].full.shape[1] for m in live)
    T = max(Ts[m] for m in live)
    # each pair's (compressed) log-probabilities, zeros after its end; in the matrices' own dtype
    # (float32 from the recogniser): the look-alike sums must be computed exactly as alone
    dtype = np.result_type(*(v[0] for v in squeezed.values()))
    lp = np.zeros((T, M, len(cols)), dtype=dtype)
    valid = np.zeros((M, n_max, K), dtype=bool)
    cls = np.zeros((M, n_max, K), dtype=np.int64)  # column of ``lp`` (0 = blank for padding)
    for i, m in enumerate(live):
        got = squeezed[id(items[m][0])][0]
        lp[: len(got), i] = got
        n, k = plans[m].full.shape
        valid[i, :n, :k] = plans[m].valid
        cls[i, :n, :k] = np.where(plans[m].valid, np.searchsorted(cols, plans[m].full), 0)
    emit = lp[:, np.arange(M)[:, None, None], cls]  # [T, M, n, K]
    alias_lp: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}
    for i, m in enumerate(live):
        for j, k, extra in plans[m].aliases:
            key = (id(items[m][0]), extra)
            a = alias_lp.get(key)
            if a is None:
                a = alias_lp[key] = np.log(
                    np.maximum(np.exp(lp[:, i, np.searchsorted(cols, extra)]).sum(axis=1), 1e-12)
                )
            emit[:, i, j, k] = np.logaddexp(emit[:, i, j, k], a)
    emit[:, ~valid] = NEG
    lb = lp[:, :, 0]

    E = np.full((M, n_max, K), NEG)
    B = np.full((M, n_max + 1), NEG)
    B[:, 0] = lb[0]
    E[:, 0] = emit[0, :, 0]
    # back-pointers: E: 0 stay, 1 from blank B[j], 2 from E[j-1][k]; B: 0 stay, 1 from E[j][k]
    bpE = np.zeros((T, M, n_max, K), dtype=np.int8)
    bpEk = np.zeros((T, M, n_max, K), dtype=np.int16)
    bpB = np.zeros((T, M, n_max + 1), dtype=np.int8)
    bpBk = np.zeros((T, M, n_max + 1), dtype=np.int16)
    bpE[0, :, 0] = 1
    final: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # pair -> its E, B at its last frame
    ending: dict[int, list[int]] = {}
    for i, m in enumerate(live):
        ending.setdefault(Ts[m] - 1, []).append(i)
    for i in ending.get(0, []):
        final[i] = E[i].copy(), B[i].copy()
    nxt = cls[:, 1:]
    flat_cls = cls.reshape(-1, K)
    rows = np.arange(M * n_max)
    enter = np.empty((M, n_max, K))
    enter_src = np.ones((M, n_max, K), dtype=np.int8)
    enter_k = np.zeros((M, n_max, K), dtype=np.int16)
    for t in range(1, T):
        # best and second-best character of every position (for the "c' != c" rule)
        flat = E.reshape(-1, K)
        k1 = flat.argmax(1)
        v1 = flat[rows, k1]
        tmp = flat.copy()
        tmp[rows, k1] = NEG
        k2 = tmp.argmax(1)
        v2 = tmp[rows, k2]
        kb, eb = k1.reshape(M, n_max), v1.reshape(M, n_max)
        same = nxt == flat_cls[rows, k1].reshape(M, n_max)[:, :-1, None]
        from_char = np.where(same, v2.reshape(M, n_max)[:, :-1, None], eb[:, :-1, None])  # [M, n-1, K]
        from_blank = B[:, 1:-1, None]
        better = from_char > from_blank
        enter[:, 0] = B[:, :1]
        enter[:, 1:] = np.where(better, from_char, from_blank)
        enter_src[:, 1:] = better
        enter_src[:, 1:] += 1
        enter_k[:, 1:] = np.where(better, np.where(same, k2.reshape(M, n_max)[:, :-1, None], kb[:, :-1, None]), 0)
        stay = enter <= E
        newE = np.where(stay, E, enter)
        newE += emit[t]
        bpE[t] = np.where(stay, 0, enter_src)
        bpEk[t] = np.where(stay, 0, enter_k)
        stayB = B[:, 1:] >= eb
        newB = B.copy()
        newB[:, 1:] = np.where(stayB, B[:, 1:], eb)
        newB += lb[t][:, None]
        bpB[t, :, 1:] = ~stayB
        bpBk[t, :, 1:] = np.where(stayB, 0, kb)
        E, B = newE, newB
        for i in ending.get(t, []):
            final[i] = E[i].copy(), B[i].copy()
    for i, m in enumerate(live):
        probs, template = items[m]
        t_end = Ts[m]
        out[m] = _trace(
            mats[id(probs)],
            squeezed[id(probs)][1],
            template,
            plans[m],
            *final[i],
            bpE[:t_end, i],
            bpEk[:t_end, i],
            bpB[:t_end, i],
            bpBk[:t_end, i],
            n_alternatives,
        )


def _trace(
    p: np.ndarray,
    frames: np.ndarray,
    template: Sequence[str],
    plan: _Plan,
    E: np.ndarray,
    B: np.ndarray,
    bpE: np.ndarray,
    bpEk: np.ndarray,
    bpB: np.ndarray,
    bpBk: np.ndarray,
    n_alternatives: int,
) -> Decoded | None:
    """One template's best final state, its path back through the frames, and its characters."""
    n_pos = len(template)
    T = len(bpE)
    kend = int(E[n_pos - 1].argmax())
    state: tuple[str, int, int]
    if B[n_pos] >= E[n_pos - 1, kend]:
        total, state = float(B[n_pos]), ("B", n_pos, 0)
    else:
        total, state = float(E[n_pos - 1, kend]), ("E", n_pos - 1, kend)
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
    extras = {(j, k): list(e) for j, k, e in plan.aliases}
    for j in range(n_pos):
        seg = p[
            frames[span_start[j]] : frames[span_end[j]] + 1
            if span_end[j] + 1 >= len(frames)
            else frames[span_end[j] + 1]
        ]
        ids = plan.full[j, plan.valid[j]]
        segp = seg[:, ids].copy()
        for k in range(len(ids)):
            extra = extras.get((j, k))
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


def slip_weights(
    mat: np.ndarray,
    spans: Sequence[tuple[int, int]],
    text: str,
    template: Sequence[str],
    index: dict[str, int],
    valid: Callable[[int, str], bool],
    *,
    reach: bool = True,
) -> tuple[float, ...]:
    """Per position of ``template``, the highest probability ``mat`` gives to a *slip* of the
    character ``text`` has there: another character the position allows (``template``) with
    which the read is still valid (``valid(j, c)``), so that nothing downstream could tell the
    two readings apart.

    Measured over every frame the character could have come from: from the previous
    character's span to the next one's, both included (the decoder may give a frame of the true
    character to a neighbour), except a slip that is that neighbour's own character, in the
    neighbour's span. Look-alikes count with the slip as the decoder counts them (``ALIASES``:
    the digit 0 seen for an O, | for an I). Positions past ``spans`` (a character not read)
    weigh 0. ``reach=False``: over the character's own span only — a plate's separator dot
    between two characters is read as a faint ``1`` or ``I`` that no neighbour's span explains,
    and would count as a slip of the character after it."""
    out: list[float] = []
    n = len(spans)
    for j, allowed in enumerate(template):
        if j >= n:
            out.append(0.0)
            continue
        if reach:
            own = (spans[j - 1][1] + 1 if j > 0 else 0, spans[j + 1][0] if j + 1 < n else len(mat))
            sides = [(k, spans[k][0], spans[k][1] + 1) for k in (j - 1, j + 1) if 0 <= k < n]
        else:
            own, sides = (spans[j][0], spans[j][1] + 1), []
        best: float | None = None
        for c in allowed:
            if c == text[j] or c not in index or not valid(j, c):
                continue
            cols = [index[c], *(index[a] for a in ALIASES.get(c, "") if a not in allowed and a in index)]
            ranges = [own, *((lo, hi) for k, lo, hi in sides if not _same_glyph(c, text[k]))]
            seen = [float(mat[lo:hi][:, cols].sum(axis=1).max()) for lo, hi in ranges if hi > lo]
            w = max(seen) if seen else 1.0  # nothing to measure: as if it weighed
            best = w if best is None else max(best, w)
        out.append(0.0 if best is None else round(best, 4))
    return tuple(out)


def _same_glyph(a: str, b: str) -> bool:
    """``a`` is ``b`` or one of its look-alikes (``ALIASES``)."""
    return a == b or b in ALIASES.get(a, "") or a in ALIASES.get(b, "")
