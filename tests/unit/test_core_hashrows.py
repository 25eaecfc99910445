"""`HashRows` finds what a dict finds, over keys that crowd into the same slots of its table."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.hashrows import HashRows

# Keys of the whole int64 range, and keys with equal low bits: these all start probing at the
# same slot, so lookups walk long runs; from the last slot, runs wrap around the table's end.
hashes = st.integers(-(2**63), 2**63 - 1).filter(lambda key: key != -1)
crowded = st.builds(
    lambda high, low: (high << 33) | low,
    st.integers(-(2**29), 2**29),
    st.sampled_from([5, 2**33 - 1]),
).filter(lambda key: key != -1)
keys = st.lists(hashes | crowded, max_size=300)


@settings(max_examples=300, deadline=None)
@given(added=keys, asked=keys)
def test_a_batch_of_lookups_finds_what_a_dict_finds(added: list[int], asked: list[int]) -> None:
    table, oracle = HashRows(), dict[int, int]()
    for row, key in enumerate(added):
        table.add(key, row)
        oracle.setdefault(key, row)  # a repeated key keeps its first row
    queries = asked + added
    found = table.find(np.array(queries, dtype=np.int64))
    assert found.tolist() == [oracle.get(key, -1) for key in queries]
    assert table.distinct == (len(oracle) == len(added))
    assert len(table) == len(oracle)


def test_minus_one_is_refused_as_a_key() -> None:
    with pytest.raises(ValueError, match="never a hash"):
        HashRows().add(-1, 0)
