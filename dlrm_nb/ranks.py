"""First-appearance dictionaries: each distinct value of a feature gets the rank of its first appearance."""

from __future__ import annotations

import numpy as np

#: Above this ``max_ind_range`` a dense lookup table would be too large; use sorted keys instead.
DENSE_TABLE_LIMIT = 1 << 27


class FirstSeenRanks:
    """Ranks of the distinct values of one feature, in order of first appearance.

    Fed chunk by chunk, it gives exactly the ranks a line-by-line scan would. Values are
    non-negative int64. When ``0 < max_ind_range <= DENSE_TABLE_LIMIT`` values are known to
    lie below ``max_ind_range`` and a dense table (zero-filled lazily by the OS, so memory
    grows only with the pages touched) maps value -> rank + 1; otherwise sorted keys with
    binary search are used.
    """

    def __init__(self, max_ind_range: int) -> None:
        self._dense = 0 < max_ind_range <= DENSE_TABLE_LIMIT
        self._table = np.zeros(max_ind_range, dtype=np.int32) if self._dense else None
        self._keys = np.zeros(0, dtype=np.int64)  # sorted keys (sparse mode)
        self._key_ranks = np.zeros(0, dtype=np.int32)
        self._chunks: list[np.ndarray] = []
        self.count = 0

    def reset(self) -> None:
        """Forget every value, touching only the entries in use (the table's memory is kept)."""
        if self._dense and self.count:
            self._table[self.uniques()] = 0
        self._keys = np.zeros(0, dtype=np.int64)
        self._key_ranks = np.zeros(0, dtype=np.int32)
        self._chunks = []
        self.count = 0

    def update(self, values: np.ndarray) -> np.ndarray:
        """Ranks int32 [N] of ``values`` int64 [N], assigning new ranks to unseen values in order."""
        ranks = self._lookup(values)
        missing = ranks < 0
        if missing.any():
            unseen = values[missing]
            uniq, first = np.unique(unseen, return_index=True)
            order = np.argsort(first, kind="stable")
            new_ranks = np.empty(uniq.size, dtype=np.int32)
            new_ranks[order] = np.arange(self.count, self.count + uniq.size, dtype=np.int32)
            self._insert(uniq, new_ranks)
            self._chunks.append(uniq[order])
            self.count += int(uniq.size)
            ranks[missing] = self._lookup(unseen)
        return ranks

    def uniques(self) -> np.ndarray:
        """The distinct values, int64 [count], in rank order."""
        if not self._chunks:
            return np.zeros(0, dtype=np.int64)
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0]

    def _lookup(self, values: np.ndarray) -> np.ndarray:
        if self._dense:
            return self._table[values] - 1
        if self._keys.size == 0:
            return np.full(values.shape, -1, dtype=np.int32)
        pos = np.minimum(np.searchsorted(self._keys, values), self._keys.size - 1)
        return np.where(self._keys[pos] == values, self._key_ranks[pos], np.int32(-1))

    def _insert(self, sorted_values: np.ndarray, ranks: np.ndarray) -> None:
        if self._dense:
            self._table[sorted_values] = ranks + 1
            return
        pos = np.searchsorted(self._keys, sorted_values)
        self._keys = np.insert(self._keys, pos, sorted_values)
        self._key_ranks = np.insert(self._key_ranks, pos, ranks)
