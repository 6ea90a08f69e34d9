"""First-appearance dictionaries: each distinct value of a feature gets the rank of its first appearance."""

from __future__ import annotations

import numpy as np

_EMPTY = np.int64(-1)  # values are >= 0
_FIBONACCI = np.uint64(0x9E3779B97F4A7C15)
_MIN_CAPACITY = 1 << 12


class FirstSeenRanks:
    """Ranks of the distinct values of one feature, in order of first appearance.

    Fed chunk by chunk, it gives exactly the ranks a line-by-line scan would. Values are
    non-negative int64. Values live in an open-addressing hash table (linear probing, load
    at most 1/2, probed for whole arrays at once), compact and cache-friendly while a
    feature has few distinct values. When ``0 < max_ind_range`` and the table would take
    more memory than a dense value -> rank table of ``max_ind_range`` entries, it switches
    to the dense table (4 bytes per possible value; the most a feature ever needs).
    """

    def __init__(self, max_ind_range: int) -> None:
        self._max_ind_range = max_ind_range
        self._dense: np.ndarray | None = None  # rank + 1 per value, 0 = unseen
        self._keys = np.full(_MIN_CAPACITY, _EMPTY, dtype=np.int64)
        self._slot_ranks = np.zeros(_MIN_CAPACITY, dtype=np.int32)
        self._chunks: list[np.ndarray] = []
        self.count = 0

    def reset(self) -> None:
        """Forget every value, keeping the tables' memory (only entries in use are cleared)."""
        if self._dense is not None:
            self._dense[self.uniques()] = 0
        else:
            self._keys.fill(_EMPTY)
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
            self._chunks.append(uniq[order])
            self.count += int(uniq.size)
            self._insert(uniq, new_ranks)
            ranks[missing] = self._lookup(unseen)
        return ranks

    def uniques(self) -> np.ndarray:
        """The distinct values, int64 [count], in rank order."""
        if not self._chunks:
            return np.zeros(0, dtype=np.int64)
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0]

    # -- lookups

    def _lookup(self, values: np.ndarray) -> np.ndarray:
        if self._dense is not None:
            return self._dense[values] - 1
        mask = len(self._keys) - 1
        slots = self._home_slots(values)
        keys = self._keys[slots]
        ranks = np.where(keys == values, self._slot_ranks[slots], np.int32(-1))
        pending = np.flatnonzero((keys != values) & (keys != _EMPTY))
        slots = slots[pending]
        while pending.size:  # collisions: walk on, for the few values that need it
            slots = (slots + 1) & mask
            keys = self._keys[slots]
            found = keys == values[pending]
            ranks[pending[found]] = self._slot_ranks[slots[found]]
            walk_on = ~found & (keys != _EMPTY)
            pending, slots = pending[walk_on], slots[walk_on]
        return ranks

    def _home_slots(self, values: np.ndarray) -> np.ndarray:
        bits = np.uint64(64 - (len(self._keys).bit_length() - 1))
        return ((values.view(np.uint64) * _FIBONACCI) >> bits).astype(np.int64)

    # -- inserts

    def _insert(self, keys: np.ndarray, ranks: np.ndarray) -> None:
        """Add distinct, unseen ``keys`` with their ``ranks``."""
        if self._dense is None and self._max_ind_range > 0 and 12 * 2 * self.count > 4 * self._max_ind_range:
            self._to_dense()
        if self._dense is not None:
            self._dense[keys] = ranks + 1
            return
        if 2 * self.count > len(self._keys):
            self._grow()  # places every value, the new ones included
            return
        self._place(keys, ranks)

    def _place(self, keys: np.ndarray, ranks: np.ndarray) -> None:
        mask = len(self._keys) - 1
        slots = self._home_slots(keys)
        pending = np.arange(keys.size)
        while pending.size:
            free = self._keys[slots] == _EMPTY
            # of the keys aiming at one free slot, the first takes it; the rest walk on
            taken, first = np.unique(slots[free], return_index=True)
            winners = pending[free][first]
            self._keys[taken] = keys[winners]
            self._slot_ranks[taken] = ranks[winners]
            placed = np.zeros(pending.size, dtype=bool)
            placed[np.flatnonzero(free)[first]] = True
            pending, slots = pending[~placed], (slots[~placed] + 1) & mask

    def _grow(self) -> None:
        """Rebuild the table at twice the size needed for every value so far."""
        capacity = len(self._keys)
        while capacity < 2 * self.count:
            capacity *= 2
        self._keys = np.full(capacity, _EMPTY, dtype=np.int64)
        self._slot_ranks = np.zeros(capacity, dtype=np.int32)
        everything = self.uniques()
        self._place(everything, np.arange(self.count, dtype=np.int32))

    def _to_dense(self) -> None:
        """Move every value (the new ones included) to a dense table of ``max_ind_range`` entries."""
        self._dense = np.zeros(self._max_ind_range, dtype=np.int32)
        self._dense[self.uniques()] = np.arange(1, self.count + 1, dtype=np.int32)
        self._keys = np.zeros(0, dtype=np.int64)
        self._slot_ranks = np.zeros(0, dtype=np.int32)
