"""Hypothesis strategies shared by the hostile-input property tests: any JSON value, including
what strict parsers refuse (NaN, integers beyond 2^53, deep nesting)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

json_leaf: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=40),
)
json_value: st.SearchStrategy[Any] = st.recursive(
    json_leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=30
)
