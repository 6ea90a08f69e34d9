"""First-appearance dictionaries against a plain Python dict scan."""

from __future__ import annotations

import numpy as np
import pytest

from dlrm_nb.data.dictionaries import FirstSeenRanks


def python_ranks(values: np.ndarray) -> tuple[list[int], list[int]]:
    seen: dict[int, int] = {}
    ranks = [seen.setdefault(int(v), len(seen)) for v in values]
    return ranks, list(seen)


@pytest.mark.parametrize("max_ind_range", [-1, 0, 50, 3000, 10**9])
@pytest.mark.parametrize("chunks", [1, 7, 60])
def test_ranks_equal_a_line_by_line_scan(max_ind_range: int, chunks: int) -> None:
    rng = np.random.default_rng(max_ind_range % 97 + chunks)
    high = max_ind_range if max_ind_range > 0 else 2**32
    # a Zipf-like mix: frequent values and a long tail, so new values keep appearing
    values = np.concatenate([rng.integers(0, min(high, 40), 3000), rng.integers(0, high, 9000)])
    values = rng.permutation(values).astype(np.int64)
    table = FirstSeenRanks(max_ind_range)
    got = np.concatenate([table.update(part) for part in np.array_split(values, chunks)])
    expected, order = python_ranks(values)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(table.uniques(), order)
    assert table.count == len(order)


def test_dense_switch_and_reset_keep_ranks_right() -> None:
    table = FirstSeenRanks(max_ind_range=600)
    values = np.random.default_rng(1).integers(0, 600, 5000).astype(np.int64)
    first = table.update(values[:2500])
    assert table._dense is not None  # more than 1/6 of the range is in use
    table.reset()
    assert table.count == 0
    np.testing.assert_array_equal(table.update(values[2500:]), python_ranks(values[2500:])[0])
    np.testing.assert_array_equal(first, python_ranks(values[:2500])[0])


def test_colliding_values_are_told_apart() -> None:
    # multiples of a large power of two share their low bits; the hash must still separate them
    values = (np.arange(5000, dtype=np.int64) << 32)[::-1].copy()
    table = FirstSeenRanks(max_ind_range=-1)
    np.testing.assert_array_equal(table.update(values), np.arange(5000))
    np.testing.assert_array_equal(table.update(values[::7]), np.arange(5000)[::7])
