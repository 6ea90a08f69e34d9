"""Upstream's "Fisher-Yates-Rao" shuffle of the training days, bit-exact and vectorized.

facebookresearch/dlrm (``data_utils.concatCriteoAdData`` with ``memory_map=True``) mixes the
rows of the training days before it writes ``day_{j}_reordered.npz``. With ``D = days - 1``
training days and ``n_j`` kept rows on day ``j``, it draws from the global legacy
``RandomState`` (the one preprocessing's sub-sampling used, see :func:`upstream_rng`):

* **Pass 1**, for every day ``i = 0 .. days - 1`` in order: ``rand_u = randint(0, D, size=n_i)``
  (drawn for the last day too, where it is unused). For a training day, row ``k`` goes to day
  ``rand_u[k]``; while that day already holds ``n_j`` rows (its capacity), a new destination is
  drawn with the scalar ``randint(0, D)``. Rows sent from day ``i`` to day ``j`` are appended in
  ``k`` order after those already there. The last (test) day's rows stay where they are.
* **Pass 2**, for ``j = 0 .. D - 1``: the rows gathered on day ``j`` are reordered by
  ``permutation(n_j)`` (``X[perm]``). The last day keeps its order.

:func:`plan_shuffle` replays these draws and returns a :class:`ShufflePlan`: for every training
day, the source day and source row of each of its rows in final order. :func:`reorder_days`
applies a plan to processed arrays. The plan depends only on the row counts and the random
state, never on the data.

How the per-row loop is avoided: the set of full days only grows, and it changes at most once
per training day. While it is fixed, every row whose first draw hits a full day consumes
redraws until one lands outside that set, so the redraws of a whole run of rows are found with
one vectorized draw (peeked, then replayed on the real generator for exactly the draws used).
Rows are processed in chunks; a chunk is split only where some day becomes full.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ShufflePlan", "plan_shuffle", "reorder_days", "upstream_rng"]

DEFAULT_CHUNK_ROWS = 1 << 20
_DRAW_BLOCK = 1 << 22

Allocate = Callable[[str, int, int, np.dtype], np.ndarray]


@dataclass(frozen=True)
class ShufflePlan:
    """Where every row of every training day comes from, after both passes.

    ``src_day[j][s]`` and ``src_row[j][s]`` name the processed row (day, row index within that
    day) that ends up in slot ``s`` of ``day_{j}_reordered``, for training days
    ``j = 0 .. days - 2``. ``src_day`` is int8 (int16 beyond 127 days), ``src_row`` int64; both
    have ``day_rows[j]`` entries. The last day (the test day) is not in the plan: its reordered
    rows are its processed rows, in order.
    """

    day_rows: tuple[int, ...]
    src_day: tuple[np.ndarray, ...]
    src_row: tuple[np.ndarray, ...]

    @property
    def days(self) -> int:
        """Number of days, the test day included."""
        return len(self.day_rows)

    @property
    def test_day(self) -> int:
        """The last day, which the shuffle leaves alone."""
        return self.days - 1

    def sources(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        """``(src_day, src_row)`` of training day ``day``, in final row order."""
        if not 0 <= day < self.test_day:
            raise IndexError(f"day {day} is not a training day (0 .. {self.test_day - 1})")
        return self.src_day[day], self.src_row[day]


def upstream_rng(seed: int, sub_sample_rate: float, raw_lines: Sequence[int]) -> np.random.RandomState:
    """The global RandomState as upstream's shuffle finds it after preprocessing.

    Upstream seeds with ``seed`` and, only when ``sub_sample_rate > 0``, draws one uniform per raw
    line of every day (``raw_lines``: lines per day, before sub-sampling) before the shuffle.
    """
    rng = np.random.RandomState(seed)
    if sub_sample_rate > 0.0:
        remaining = int(sum(raw_lines))
        while remaining > 0:
            step = min(remaining, _DRAW_BLOCK)
            rng.random_sample(step)
            remaining -= step
    return rng


def plan_shuffle(
    day_rows: Sequence[int],
    rng: np.random.RandomState,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    allocate: Allocate | None = None,
) -> ShufflePlan:
    """Replay upstream's shuffle draws for days with ``day_rows`` kept rows; see the module doc.

    ``rng`` is advanced exactly as upstream advances the global RandomState (pass 1 for all
    days, then pass 2), so it can be used for whatever upstream draws next.

    ``allocate(name, day, length, dtype)`` makes the plan's arrays (``name`` is ``"src_day"`` or
    ``"src_row"``), e.g. ``np.lib.format.open_memmap`` files for data larger than memory;
    default ``np.empty``.

    Cost, for ``N`` training rows over ``D`` training days: memory 9 bytes per row for the plan
    (int64 + int8) plus, for one day at a time, ~17 bytes per row of that day (pass 1: int8
    destinations and the int64 order of a stable sort; pass 2: the int64 permutation and a
    gathered copy). Time: O(N) vectorized numpy work plus O(chunk_rows) per moment a day
    becomes full (at most ``D`` of them), plus the draws themselves: upstream's ``randint``
    calls (one per row and one per redraw) and ``permutation`` of every training day, the
    latter dominating (a legacy Fisher-Yates shuffle, random memory access). Redraws peeked
    past the last one used are drawn again: a few hundred per chunk, and up to ~``chunk_rows``
    more per moment a day becomes full. About 2-5 s for 23 days of 1M rows.
    """
    rows = tuple(int(n) for n in day_rows)
    if len(rows) < 2:
        raise ValueError("need at least one training day and the test day")
    if min(rows) < 0:
        raise ValueError(f"negative row count in {rows}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows {chunk_rows} must be positive")
    train = len(rows) - 1
    make = allocate if allocate is not None else _allocate_empty
    day_dtype = _day_dtype(train)
    src_day = tuple(make("src_day", j, rows[j], day_dtype) for j in range(train))
    src_row = tuple(make("src_row", j, rows[j], np.dtype(np.int64)) for j in range(train))
    capacity = np.array(rows[:train], dtype=np.int64)
    filled = np.zeros(train, dtype=np.int64)
    for day, n in enumerate(rows):
        dest = _draw_destinations(rng, n, train, day_dtype)
        if day == train:
            continue  # the test day's draws are made and unused
        before = filled.copy()
        _route_day(dest, filled, capacity, rng, chunk_rows)
        _scatter_day(day, dest, before, src_day, src_row)
    for j in range(train):
        perm = rng.permutation(rows[j])
        src_day[j][:] = src_day[j][perm]
        src_row[j][:] = src_row[j][perm]
    return ShufflePlan(rows, src_day, src_row)


def reorder_days(
    plan: ShufflePlan, load_day: Callable[[int], dict[str, np.ndarray]]
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yield ``(day, arrays)`` of upstream's ``day_{day}_reordered.npz`` for every day in order.

    ``load_day(i)`` returns day ``i``'s processed arrays (``X_cat``, ``X_int``, ``y``); it is
    called once per (destination, source) pair, so cache it if loading is expensive. The
    arrays yielded are float64, as upstream stores them; the test day comes last, unshuffled.
    Holds one destination day in memory (in float64) at a time.
    """
    for day in range(plan.test_day):
        src_day, src_row = plan.sources(day)
        out: dict[str, np.ndarray] = {}
        for source in np.unique(src_day):
            arrays = load_day(int(source))
            slots = np.flatnonzero(src_day == source)
            picked = src_row[slots]
            for name, array in arrays.items():
                if name not in out:
                    out[name] = np.empty((plan.day_rows[day], *array.shape[1:]), dtype=np.float64)
                out[name][slots] = array[picked]
        yield day, out
    last = load_day(plan.test_day)
    yield plan.test_day, {name: np.asarray(array, dtype=np.float64) for name, array in last.items()}


# ----------------------------------------------------------------------------- pass 1


def _allocate_empty(name: str, day: int, length: int, dtype: np.dtype) -> np.ndarray:
    return np.empty(length, dtype=dtype)


def _day_dtype(train_days: int) -> np.dtype:
    return np.dtype(np.int8 if train_days <= np.iinfo(np.int8).max else np.int16)


def _draw_destinations(rng: np.random.RandomState, n: int, train: int, dtype: np.dtype) -> np.ndarray:
    """``rng.randint(0, train, size=n)``, drawn in blocks (same draws) into a small dtype.

    The default int64 dtype is kept for the draw itself: a smaller ``dtype=`` argument would
    change which random words numpy uses.
    """
    out = np.empty(n, dtype=dtype)
    for start in range(0, n, _DRAW_BLOCK):
        stop = min(start + _DRAW_BLOCK, n)
        out[start:stop] = rng.randint(0, train, size=stop - start)
    return out


def _route_day(
    dest: np.ndarray, filled: np.ndarray, capacity: np.ndarray, rng: np.random.RandomState, chunk: int
) -> None:
    """Turn one day's first draws ``dest`` into final destinations (in place), drawing redraws.

    ``filled`` (rows per destination so far) is updated; ``rng`` is left after this day's redraws.
    """
    for start in range(0, len(dest), chunk):
        end = min(start + chunk, len(dest))
        pos = start
        while pos < end:
            full = filled >= capacity
            eff = dest[pos:end].copy()
            over = np.flatnonzero(full[eff])
            redraws = None
            if over.size:
                redraws = _peek_redraws(rng, full, over.size)
                eff[over] = redraws.values
            accept = _rows_until_a_day_fills(eff, capacity - filled, full)
            if redraws is not None:
                redraws.keep(rng, int(np.searchsorted(over, accept)))
            dest[pos : pos + accept] = eff[:accept]
            filled += np.bincount(eff[:accept], minlength=len(filled))
            pos += accept


@dataclass
class _Redraws:
    """Peeked redraw results, and how to put the generator right after any number of them."""

    train: int
    values: np.ndarray  # the redraw results, one per overflowing row
    used: np.ndarray  # scalar draws used up to and including each result
    block_starts: list[int]  # scalar draws before each block drawn while peeking
    block_states: list[tuple]  # the generator's state before each block

    def keep(self, rng: np.random.RandomState, results: int) -> None:
        """Leave ``rng`` just after the draws of the first ``results`` results."""
        draws = int(self.used[results - 1]) if results else 0
        block = bisect.bisect_right(self.block_starts, draws) - 1
        rng.set_state(self.block_states[block])
        _skip_draws(rng, draws - self.block_starts[block], self.train)


def _peek_redraws(rng: np.random.RandomState, full: np.ndarray, count: int) -> _Redraws:
    """The next ``count`` redraw results while the days in ``full`` stay full.

    Each redraw takes scalar draws until one is not full. ``rng`` is left after the draws
    peeked; :meth:`_Redraws.keep` rewinds it to the draws actually used.
    """
    train = len(full)
    open_share = 1.0 - full.mean()
    dtype = _day_dtype(train)
    peek = _Redraws(train, np.empty(0, dtype), np.empty(0, np.int64), [], [])
    values: list[np.ndarray] = []
    used: list[np.ndarray] = []
    found = drawn = 0
    while found < count:
        size = _undershooting_block(count - found, open_share)
        peek.block_starts.append(drawn)
        # numpy's stubs say get_state() is a dict: it is the legacy tuple unless legacy=False
        peek.block_states.append(rng.get_state())  # type: ignore[arg-type]
        block = rng.randint(0, train, size=size)
        ok = np.flatnonzero(~full[block])
        values.append(block[ok].astype(dtype))
        used.append(ok + (drawn + 1))
        found += ok.size
        drawn += size
    peek.values = np.concatenate(values)[:count]
    peek.used = np.concatenate(used)[:count]
    return peek


def _undershooting_block(results: int, open_share: float) -> int:
    """Draws that most likely give fewer than ``results`` results (3 standard deviations short).

    Peeking in blocks that fall short, then in small ones, keeps the draws made past the last
    one needed (which :meth:`_Redraws.keep` has to draw again) few.
    """
    mean = results / open_share
    spread = math.sqrt(results * (1.0 - open_share)) / open_share
    return int(min(max(mean - 3.0 * spread, 64.0), _DRAW_BLOCK))


def _skip_draws(rng: np.random.RandomState, count: int, train: int) -> None:
    """Advance ``rng`` by ``count`` scalar ``randint(0, train)`` draws (same words as an array draw)."""
    for start in range(0, count, _DRAW_BLOCK):
        rng.randint(0, train, size=min(_DRAW_BLOCK, count - start))


def _rows_until_a_day_fills(eff: np.ndarray, room: np.ndarray, full: np.ndarray) -> int:
    """How many leading rows of ``eff`` can be placed before some open day becomes full.

    The row that fills a day is included; rows after it must be re-examined.
    """
    counts = np.bincount(eff, minlength=len(room))
    filling = np.flatnonzero(~full & (counts >= room))
    if filling.size == 0:
        return len(eff)
    return 1 + min(int(np.flatnonzero(eff == j)[room[j] - 1]) for j in filling)


def _scatter_day(
    day: int,
    dest: np.ndarray,
    before: np.ndarray,
    src_day: tuple[np.ndarray, ...],
    src_row: tuple[np.ndarray, ...],
) -> None:
    """Append day ``day``'s rows, in row order, to each destination after ``before[j]`` rows."""
    order = np.argsort(dest, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(dest, minlength=len(src_day)))))
    for j in range(len(src_day)):
        first, last = bounds[j], bounds[j + 1]
        if first == last:
            continue
        slots = slice(int(before[j]), int(before[j] + last - first))
        src_row[j][slots] = order[first:last]
        src_day[j][slots] = day
