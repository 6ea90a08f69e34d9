"""MLPerf's aggregation of consecutive user-item pairs into LoadGen samples.

One LoadGen sample ("aggregated sample") is a run of consecutive user-item pairs of the test
split. A *trace* lists them as an int64 array ``[S, 2]`` of ``(start, end)`` pair offsets,
contiguous from 0 to ``N``; the last sample may be shorter than drawn.

Three ways to cut the split, as in the MLPerf reference (``criteo.Criteo``):

* ``quantile``: sizes drawn from MLPerf's quantile list (``tools/dist_quantile.txt``) with a
  fresh ``np.random.RandomState(seed)``: ``size = quantiles[rng.randint(0, 20)]`` per sample.
  Byte-exact with the official trace (seed 123; md5 ``3db90209564316f2506c99cc994ad0b2`` for
  the real test split).
* ``fixed``: every sample ``size`` pairs.
* ``uniform``: sizes drawn uniformly from ``[low, high]`` (``RandomState(seed).randint``; the
  reference draws them with Python's unseeded ``random`` module, so it is not reproducible there).

The trace file format is upstream's ``dlrm_trace_of_aggregated_samples.txt``: one line
``"start, end, size"`` per sample, each ended by ``\\n``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlrm_nb.data.criteo import DEFAULT_SEED
from dlrm_nb.exceptions import AggregationError
from dlrm_nb.fileio import write_bytes

MLPERF_QUANTILES: tuple[int, ...] = (100, 100, *([200] * 12), 300, 300, 400, 500, 600, 700)
TRACE_KINDS = ("quantile", "fixed", "uniform")
#: The trace file of a run, under the name upstream's harness gives it.
TRACE_NAME = "dlrm_trace_of_aggregated_samples.txt"
#: Pairs per sample of the ``fixed`` kind by default: the mean of MLPerf's quantile list.
DEFAULT_FIXED_SIZE = 270
#: Pairs per sample of the ``uniform`` kind by default: the range of MLPerf's quantile list.
DEFAULT_UNIFORM_RANGE = (100, 700)
_MIN_BLOCK = 64  # fewest sizes drawn at a time


# ----------------------------------------------------------------------------- building traces


def quantile_trace(
    n_pairs: int, seed: int = DEFAULT_SEED, quantiles: Sequence[int] = MLPERF_QUANTILES
) -> np.ndarray:
    """MLPerf's quantile aggregation of ``n_pairs`` pairs: int64 ``[S, 2]`` of ``(start, end)``.

    Same draws as the reference loop ``size = quantiles[rng.randint(0, len(quantiles))]`` with a
    fresh ``RandomState(seed)``, one draw per sample; drawn in blocks (legacy ``randint`` gives
    the same stream drawn one by one or as arrays), so the real split (89 M pairs) takes ~10 ms.
    """
    n_pairs = _check_pairs(n_pairs)
    table = _check_quantiles(quantiles)
    rng = np.random.RandomState(_check_seed(seed))
    return _from_ends(_draw_ends(n_pairs, lambda k: table[rng.randint(0, len(table), size=k)], table.mean()))


def fixed_trace(n_pairs: int, size: int) -> np.ndarray:
    """Samples of ``size`` consecutive pairs (the last one may be shorter): int64 ``[S, 2]``."""
    n_pairs = _check_pairs(n_pairs)
    size = _check_size("size", size)
    starts = np.arange(0, n_pairs, size, dtype=np.int64)
    return np.stack([starts, np.minimum(starts + size, n_pairs)], axis=1)


def uniform_trace(n_pairs: int, low: int, high: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Sample sizes drawn uniformly from ``[low, high]`` (both included) with a fresh
    ``RandomState(seed)``: int64 ``[S, 2]``."""
    n_pairs = _check_pairs(n_pairs)
    low, high = _check_size("low", low), _check_size("high", high)
    if low > high:
        raise AggregationError(f"uniform aggregation: low {low} is above high {high}; need 1 <= low <= high")
    rng = np.random.RandomState(_check_seed(seed))
    return _from_ends(_draw_ends(n_pairs, lambda k: rng.randint(low, high + 1, size=k), (low + high) / 2))


def _draw_ends(n_pairs: int, draw: Callable[[int], np.ndarray], mean_size: float) -> np.ndarray:
    """Sample ends: running sums of drawn sizes, cut at the first that reaches ``n_pairs``.

    ``draw(k)`` returns k sizes (int64 [k]); blocks are sized to need about one draw call.
    """
    blocks: list[np.ndarray] = []
    total = 0
    while total < n_pairs:
        k = max(int((n_pairs - total) / mean_size * 1.05) + 1, _MIN_BLOCK)
        ends = np.cumsum(draw(k), dtype=np.int64) + total
        blocks.append(ends)
        total = int(ends[-1])
    ends = np.concatenate(blocks)
    ends = ends[: int(np.searchsorted(ends, n_pairs, side="left")) + 1]
    ends[-1] = n_pairs
    return ends


def _from_ends(ends: np.ndarray) -> np.ndarray:
    """int64 ``[S, 2]`` trace from sample ends int64 ``[S]`` (starts at 0)."""
    starts = np.concatenate([np.zeros(1, np.int64), ends[:-1]])
    return np.stack([starts, ends], axis=1)


def _check_pairs(n_pairs: int) -> int:
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, (int, np.integer)) or n_pairs < 1:
        raise AggregationError(f"number of pairs {n_pairs!r} is not valid; need an integer >= 1")
    return int(n_pairs)


def _check_size(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise AggregationError(f"aggregation {name} {value!r} is not valid; need an integer >= 1")
    return int(value)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise AggregationError(f"seed {seed!r} is not valid; need an integer in [0, 2**32)")
    return int(seed)


def _check_quantiles(quantiles: Sequence[int]) -> np.ndarray:
    table = np.asarray(quantiles)
    if table.ndim != 1 or table.size == 0 or table.dtype.kind not in "iu" or (table < 1).any():
        raise AggregationError(
            f"quantiles {list(quantiles)!r} are not valid; need a non-empty list of integers >= 1"
        )
    return table.astype(np.int64)


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class AggregationSpec:
    """How the test split is cut into LoadGen samples (validated on creation).

    ``kind``: ``quantile`` (MLPerf, uses ``seed``), ``fixed`` (uses ``size``) or ``uniform``
    (uses ``low``, ``high``, ``seed``).
    """

    kind: str = "quantile"
    size: int | None = None
    low: int | None = None
    high: int | None = None
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        if self.kind not in TRACE_KINDS:
            raise AggregationError(
                f"aggregation kind {self.kind!r} is not valid; choose one of {TRACE_KINDS}"
            )
        _check_seed(self.seed)
        used = {"quantile": (), "fixed": ("size",), "uniform": ("low", "high")}[self.kind]
        for name in ("size", "low", "high"):
            value = getattr(self, name)
            if name in used and value is None:
                raise AggregationError(
                    f"aggregation kind {self.kind!r} needs {name}; give it as an integer >= 1"
                )
            if name not in used and value is not None:
                raise AggregationError(
                    f"aggregation {name}={value!r} does not apply to kind {self.kind!r} (only to "
                    f"{'fixed' if name == 'size' else 'uniform'}); leave it out"
                )
        if self.kind == "uniform":
            assert self.low is not None and self.high is not None  # checked just above
            uniform_trace(1, self.low, self.high, self.seed)  # validates low <= high

    def trace(self, n_pairs: int) -> np.ndarray:
        """The trace of ``n_pairs`` pairs: int64 ``[S, 2]`` of ``(start, end)``."""
        if self.kind == "fixed":
            assert self.size is not None  # __post_init__: fixed needs size
            return fixed_trace(n_pairs, self.size)
        if self.kind == "uniform":
            assert self.low is not None and self.high is not None  # __post_init__: uniform needs both
            return uniform_trace(n_pairs, self.low, self.high, self.seed)
        return quantile_trace(n_pairs, self.seed)

    def describe(self) -> str:
        """A short human-readable description, e.g. ``quantile (MLPerf), seed 123``."""
        if self.kind == "fixed":
            return f"fixed, {self.size} pairs"
        if self.kind == "uniform":
            return f"uniform {self.low}..{self.high} pairs, seed {self.seed}"
        return f"quantile (MLPerf), seed {self.seed}"


def make_trace(
    n_pairs: int,
    kind: str = "quantile",
    *,
    size: int | None = None,
    low: int | None = None,
    high: int | None = None,
    seed: int = DEFAULT_SEED,
) -> np.ndarray:
    """Build the trace of ``n_pairs`` pairs for ``kind``: int64 ``[S, 2]`` of ``(start, end)``.

    Settings that do not apply to ``kind`` are ignored (callers may pass all their defaults);
    :class:`AggregationSpec` is the strict form that rejects them.
    """
    if kind not in TRACE_KINDS:
        raise AggregationError(f"aggregation kind {kind!r} is not valid; choose one of {TRACE_KINDS}")
    spec = AggregationSpec(
        kind,
        size=size if kind == "fixed" else None,
        low=low if kind == "uniform" else None,
        high=high if kind == "uniform" else None,
        seed=seed,
    )
    return spec.trace(n_pairs)


def sample_lengths(trace: np.ndarray) -> np.ndarray:
    """Pairs per sample: int64 ``[S]``."""
    return trace[:, 1] - trace[:, 0]


# ----------------------------------------------------------------------------- trace files


def format_trace(trace: np.ndarray) -> str:
    """Upstream's text: one ``"start, end, size\\n"`` line per row of ``trace`` int ``[S, 2]``."""
    trace = _check_trace_array(trace)
    rows = np.column_stack([trace, trace[:, 1] - trace[:, 0]])
    return ("%d, %d, %d\n" * len(rows)) % tuple(rows.ravel().tolist())


def write_trace(path: str | os.PathLike, trace: np.ndarray) -> None:
    """Write ``trace`` int ``[S, 2]`` in upstream's format to ``path``, atomically."""
    write_bytes(path, format_trace(trace).encode("ascii"))


def read_trace(path: str | os.PathLike) -> np.ndarray:
    """Read an upstream trace file: int64 ``[S, 2]`` of ``(start, end)``.

    Every line must be ``start, end, size`` with ``size == end - start >= 1`` and the samples
    contiguous from 0 (what the reference writes and what its accuracy tool assumes).
    """
    path = Path(path)
    if not path.is_file():
        raise AggregationError(
            f"trace file {path} does not exist; write one with write_trace or use upstream's"
        )
    text = path.read_text(encoding="ascii", errors="replace")
    rows = _parse_rows(path, text)
    _check_rows(path, rows)
    return np.ascontiguousarray(rows[:, :2])


def _parse_rows(path: Path, text: str) -> np.ndarray:
    """int64 ``[S, 3]`` from the text, or an error naming the first bad line."""
    lines = text.splitlines()
    try:
        rows = np.array(text.replace(",", " ").split(), dtype=np.int64).reshape(-1, 3)
        if rows.shape[0] == len(lines) and rows.shape[0] > 0:
            return rows
    except (ValueError, OverflowError):
        pass
    if not lines:
        raise AggregationError(f"trace file {path} is empty; need one 'start, end, size' line per sample")
    for number, line in enumerate(lines, 1):
        fields = line.split(",")
        if len(fields) != 3 or not all(f.strip().lstrip("-").isdigit() for f in fields):
            raise AggregationError(
                f"{path}, line {number}: {line!r} is not valid; need 'start, end, size' (three integers)"
            )
    raise AggregationError(f"trace file {path} could not be read as 'start, end, size' lines")


def _check_rows(path: Path, rows: np.ndarray) -> None:
    starts, ends, sizes = rows[:, 0], rows[:, 1], rows[:, 2]
    expected_starts = np.concatenate([[0], ends[:-1]])
    problems = [
        (sizes != ends - starts, "size is not end - start"),
        (sizes < 1, "size is below 1"),
        (starts != expected_starts, "start is not the previous end (the first start must be 0)"),
    ]
    for bad, what in problems:
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            line = f"{starts[k]}, {ends[k]}, {sizes[k]}"
            raise AggregationError(f"{path}, line {k + 1}: {line!r} is not valid: {what}")


def _check_trace_array(trace: np.ndarray) -> np.ndarray:
    trace = np.asarray(trace)
    if trace.ndim != 2 or trace.shape[1] != 2 or trace.dtype.kind not in "iu" or trace.shape[0] == 0:
        raise AggregationError(
            f"trace of shape {trace.shape} and dtype {trace.dtype} is not valid; need integers [S, 2], S >= 1"
        )
    return trace
