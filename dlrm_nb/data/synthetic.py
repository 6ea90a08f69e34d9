"""Synthetic Criteo data: raw Terabyte ``day_N`` / Kaggle ``train.txt`` files with a planted signal.

The files are in the exact raw text format (see :mod:`dlrm_nb.data.criteo`): one line per sample,
40 tab-separated fields ``label, I1..I13, C1..C26``, each line ending in ``\\n``. Integers are
decimal or empty (``I2`` may be -1, -2 or -3; a few counts are huge, up to INT32_MAX);
categoricals are 8 lowercase hex digits or empty.

Realism: per-feature empty rates, correlated emptiness of C19/C20/C25/C26, lines with all
integers or all categoricals empty, per-feature vocabularies of very different sizes with
Zipf-like value frequencies (new ids keep appearing on later days), and a label drawn from a
known click probability ``p = sigmoid(b + sum_k w_k log1p(I_k) + sum_j effect_j[C_j])``. The
ROC AUC of ``p`` itself (the "oracle AUC") is written to the sidecar ``synthetic.json``.

Every edge case is also planted at least once into every day (a few lines each), so that
tests of readers can rely on them even for small files.

Determinism: the same arguments give byte-identical files. Every day draws from its own
random stream (``SeedSequence(seed, spawn_key=(dataset, day))``), so a day's content does not
depend on the other days' line counts. The model (vocabularies, effects, bias) depends on the
seed, ``cardinality_scale`` and the largest file's line count (which caps the vocabulary sizes
at ``max(100_000, lines)``).
"""

from __future__ import annotations

import gzip as gzip_module
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import BufferedIOBase
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from tqdm.std import tqdm

from dlrm_nb.data.auc import auc_or_none
from dlrm_nb.data.criteo import (
    DATASETS,
    FIELD_NAMES,
    KAGGLE,
    KAGGLE_RAW_NAME,
    N_CAT,
    N_DENSE,
    SPLITS,
    TERABYTE,
    split_rows,
    terabyte_raw_name,
)
from dlrm_nb.exceptions import OutputExistsError, ParameterError
from dlrm_nb.fileio import atomic_output, write_json
from dlrm_nb.progress import Progress, progress_bar

GENERATOR_VERSION = 1
SIDECAR_NAME = "synthetic.json"
#: Lines generated, formatted and written at a time (bounds memory).
CHUNK_ROWS = 100_000
#: gzip level of .gz output: fast; readers do not care.
GZIP_LEVEL = 1
INT32_MAX = 2**31 - 1
#: Huge counts that real data contains now and then.
BIG_COUNTS = (1_000_000, 5_000_000, INT32_MAX)
BIG_COUNT_RATE = 2e-5
#: Natural (lognormal) counts stay below this, so huge values come only from BIG_COUNTS.
COUNT_CLIP = 100_000_000
#: Log-logistic shape per lognormal sigma (matches the spread of log-counts: sqrt(3) / pi).
LOGLOGISTIC_SHAPE = math.sqrt(3.0) / math.pi
#: Row-level events: all 13 integers empty, all 26 categoricals empty.
ALL_DENSE_EMPTY_RATE = 0.004
ALL_CAT_EMPTY_RATE = 0.0005
#: I2 (index 1) takes these negative values at these rates.
I2_NEGATIVES = ((-1, 0.06), (-2, 0.004), (-3, 0.002))
I2_INDEX = 1
#: Minimum vocabulary cap; the cap is max(this, largest file's line count).
MIN_VOCAB_CAP = 100_000
#: Upper bound of cardinality_scale (the signal features' effect tables grow with it).
MAX_CARDINALITY_SCALE = 100.0
TARGET_CTR = 0.25
CALIBRATION_ROWS = 50_000
KAGGLE_SPLITS = KAGGLE.days  # train.txt is cut into 7 line-count splits
_DATASET_CODES = {TERABYTE.name: 0, KAGGLE.name: 1}
_PURPOSE_MODEL, _PURPOSE_CALIBRATION, _PURPOSE_DAY = 0, 1, 2


@dataclass(frozen=True)
class DenseSpec:
    """Distribution of one integer feature: empty rate, zero rate, lognormal median and sigma."""

    empty: float
    zero: float
    median: float
    sigma: float


#: Loosely modelled on the real Kaggle statistics of I1..I13.
DENSE_SPECS = (
    DenseSpec(0.45, 0.35, 2.0, 1.0),  # I1
    DenseSpec(0.00, 0.15, 3.0, 1.8),  # I2 (also negative, see I2_NEGATIVES)
    DenseSpec(0.21, 0.05, 6.0, 1.5),  # I3
    DenseSpec(0.22, 0.05, 4.0, 0.9),  # I4
    DenseSpec(0.03, 0.02, 2800.0, 1.6),  # I5
    DenseSpec(0.22, 0.10, 33.0, 1.6),  # I6
    DenseSpec(0.04, 0.20, 3.0, 1.4),  # I7
    DenseSpec(0.0005, 0.05, 7.0, 1.0),  # I8
    DenseSpec(0.04, 0.02, 38.0, 1.4),  # I9
    DenseSpec(0.45, 0.40, 1.0, 0.5),  # I10
    DenseSpec(0.04, 0.25, 1.5, 1.0),  # I11
    DenseSpec(0.75, 0.60, 1.0, 1.0),  # I12
    DenseSpec(0.22, 0.05, 4.0, 1.0),  # I13
)
#: Real Kaggle cardinalities of C1..C26 (capped and scaled per run).
CAT_BASE_CARDINALITY = (
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194,
    27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572,
)  # fmt: skip
#: Independent empty rate of C1..C26.
CAT_EMPTY = (
    0.0, 0.0, 0.03, 0.03, 0.0, 0.12, 0.0, 0.0, 0.0, 0.03, 0.03, 0.03, 0.03,
    0.0, 0.03, 0.03, 0.0, 0.03, 0.03, 0.03, 0.03, 0.40, 0.03, 0.03, 0.03, 0.03,
)  # fmt: skip
#: C19, C20, C25, C26 are empty together on about 40% of lines (as in the real data).
CAT_GROUP_EMPTY = (18, 19, 24, 25)
CAT_GROUP_EMPTY_RATE = 0.40
#: Zipf exponent of the value frequencies (a few frequent values, a long tail).
ZIPF_EXPONENT = 1.15
#: The id ffffffff replaces this vocabulary rank of this feature (C5, a frequent-ish value).
FFFF_FEATURE, FFFF_RANK = 4, 5
#: Features carrying the planted signal and their contribution's standard deviation (logits).
SIGNAL_DENSE = (0, 3, 5, 10)  # I1, I4, I6, I11
SIGNAL_DENSE_STD = 0.35
SIGNAL_CAT = (1, 5, 8, 12, 13, 16, 23)  # C2, C6, C9, C13, C14, C17, C24
SIGNAL_CAT_STD = 0.45


@dataclass(frozen=True)
class Model:
    """Everything that maps features to ids and click probabilities; fixed per generate() call."""

    cardinality: np.ndarray  # int64 [26]
    id_key: np.ndarray  # uint32 [26], per-feature key of the rank -> id hash
    dense_weight: np.ndarray  # float64 [13], zero outside SIGNAL_DENSE
    #: Per SIGNAL_CAT feature: the logit effect of each vocabulary rank, float64 [cardinality + 1];
    #: the extra last entry is 0, the effect of an empty field (rank -1).
    cat_effects: dict[int, np.ndarray]
    bias: float


@dataclass
class Chunk:
    """Features of a block of lines: integers, their empty mask, and categorical ranks (-1 = empty)."""

    dense: np.ndarray  # int32 [13, n]
    dense_empty: np.ndarray  # bool [13, n]
    ranks: np.ndarray  # int64 [26, n]

    @property
    def rows(self) -> int:
        return self.ranks.shape[1]


@dataclass(frozen=True)
class FilePlan:
    """One output file and the day segments (line counts) it is made of."""

    name: str
    segments: tuple[tuple[int, int], ...]  # (day index, lines)

    @property
    def lines(self) -> int:
        return sum(n for _, n in self.segments)


# ---------------------------------------------------------------------------------------------
# Validation and planning


def _check_int(name: str, value: object, minimum: int, allowed: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ParameterError(f"{name}={value!r} is not valid: {allowed}")
    return int(value)


def _validate(
    dataset: str, days: int | None, rows_per_day: int, test_day_rows: int | None, seed: int,
    cardinality_scale: float,
) -> tuple[str, int, int, int | None, int]:  # fmt: skip
    """Check the arguments; return (dataset, days, rows_per_day, test_day_rows, seed) resolved."""
    if dataset not in DATASETS:
        raise ParameterError(f"dataset={dataset!r} is not valid: use one of {', '.join(DATASETS)}")
    layout = DATASETS[dataset]
    if days is None:
        days = layout.days
    if dataset == TERABYTE.name:
        days = _check_int("days", days, 2, "terabyte needs an integer >= 2 (training days + test day)")
    else:
        days = _check_int(
            "days", days, 1, "kaggle needs an integer >= 1 (train.txt has days * rows_per_day lines)"
        )
    rows_per_day = _check_int("rows_per_day", rows_per_day, 1, "use an integer >= 1")
    if dataset == KAGGLE.name:
        if test_day_rows is not None:
            raise ParameterError(
                f"test_day_rows={test_day_rows!r} is not valid for kaggle: leave it None "
                "(the test day is the last of 7 line-count splits of train.txt)"
            )
        if days * rows_per_day < KAGGLE_SPLITS:
            raise ParameterError(
                f"days * rows_per_day = {days * rows_per_day} is too small for kaggle: "
                f"train.txt needs at least {KAGGLE_SPLITS} lines (one per split)"
            )
    elif test_day_rows is None:
        test_day_rows = rows_per_day
    else:
        test_day_rows = _check_int("test_day_rows", test_day_rows, 1, "use an integer >= 1 or None")
    seed = _check_int("seed", seed, 0, "use an integer >= 0")
    if (
        isinstance(cardinality_scale, bool)
        or not isinstance(cardinality_scale, (int, float))
        or not 0 < cardinality_scale <= MAX_CARDINALITY_SCALE
    ):
        raise ParameterError(
            f"cardinality_scale={cardinality_scale!r} is not valid: use a number > 0 and "
            f"<= {MAX_CARDINALITY_SCALE} (it multiplies every vocabulary size)"
        )
    return dataset, days, rows_per_day, test_day_rows, seed


def plan_files(
    dataset: str, days: int, rows_per_day: int, test_day_rows: int | None, gzip: bool
) -> list[FilePlan]:
    """The files that :func:`generate` writes, with their day segments, for resolved arguments."""
    suffix = ".gz" if gzip else ""
    if dataset == KAGGLE.name:
        return [FilePlan(KAGGLE_RAW_NAME + suffix, tuple((d, rows_per_day) for d in range(days)))]
    assert test_day_rows is not None
    return [
        FilePlan(terabyte_raw_name(d) + suffix, ((d, rows_per_day if d < days - 1 else test_day_rows),))
        for d in range(days)
    ]


def _refuse_existing(out_dir: Path, names: list[str]) -> None:
    existing = [name for name in names if (out_dir / name).exists()]
    if existing:
        raise OutputExistsError(
            f"{out_dir / existing[0]} already exists"
            + (f" (and {len(existing) - 1} more output files)" if len(existing) > 1 else "")
            + ": choose another output folder, or replace them (dlrm-nb synth --overwrite; "
            "from Python generate(..., overwrite=True))"
        )


# ---------------------------------------------------------------------------------------------
# Model: vocabularies, effects and bias


def _stream(dataset: str, purpose: int, index: int, seed: int) -> np.random.Generator:
    """An independent random stream for (dataset, purpose, index)."""
    sequence = np.random.SeedSequence(seed, spawn_key=(_DATASET_CODES[dataset], purpose, index))
    return np.random.default_rng(sequence)


def cardinalities(cap_lines: int, cardinality_scale: float = 1.0) -> np.ndarray:
    """Vocabulary sizes of C1..C26: real sizes capped at max(100_000, cap_lines), times the scale."""
    cap = max(MIN_VOCAB_CAP, cap_lines)
    base = np.minimum(np.array(CAT_BASE_CARDINALITY, dtype=np.float64), cap)
    return np.maximum(2, np.round(base * cardinality_scale)).astype(np.int64)


def _fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser: a bijection on uint32 (modifies and returns ``values``)."""
    values ^= values >> np.uint32(16)
    values *= np.uint32(0x85EBCA6B)
    values ^= values >> np.uint32(13)
    values *= np.uint32(0xC2B2AE35)
    values ^= values >> np.uint32(16)
    return values


def _hash_ranks(ranks: np.ndarray, key: np.uint32) -> np.ndarray:
    """uint32 hash of each rank under ``key``; distinct ranks (< 2**32) give distinct hashes."""
    return _fmix32(ranks.astype(np.uint32) + key)


def _ids(ranks: np.ndarray, feature: int, model: Model) -> np.ndarray:
    """uint32 ids of the ranks of one feature (garbage where rank is -1)."""
    ids = _hash_ranks(ranks, model.id_key[feature])
    if feature == FFFF_FEATURE:  # swap ffffffff into rank FFFF_RANK, keeping ids distinct
        swapped = _hash_ranks(np.array([FFFF_RANK]), model.id_key[feature])[0]
        natural = ids == np.uint32(0xFFFFFFFF)
        ids[natural] = swapped
        ids[ranks == FFFF_RANK] = np.uint32(0xFFFFFFFF)
    return ids


def _dense_signal(chunk: Chunk, feature: int) -> np.ndarray:
    """log1p of one integer feature (empty and negative count as 0), float64 [n]."""
    values = np.maximum(chunk.dense[feature], 0).astype(np.float64)
    values[chunk.dense_empty[feature]] = 0.0
    return np.log1p(values)


def _logits(chunk: Chunk, model: Model) -> np.ndarray:
    """Click logits of the lines of ``chunk`` under ``model`` (bias included)."""
    logits = np.full(chunk.rows, model.bias)
    for k in SIGNAL_DENSE:
        logits += model.dense_weight[k] * _dense_signal(chunk, k)
    for j, effects in model.cat_effects.items():
        logits += effects[chunk.ranks[j]]
    return logits


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _solve_bias(logits: np.ndarray, target: float) -> float:
    """The bias b with mean(sigmoid(b + logits)) == target (bisection)."""
    low, high = -20.0, 20.0
    for _ in range(60):
        mid = (low + high) / 2
        if _sigmoid(mid + logits).mean() < target:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def build_model(dataset: str, seed: int, cap_lines: int, cardinality_scale: float = 1.0) -> Model:
    """Draw the vocabulary keys and the planted signal, and calibrate the bias to a CTR of about 25%.

    Categorical effects are N(0, sigma) per vocabulary entry. Each signal feature's contribution
    is scaled to a fixed standard deviation on a calibration sample (sigma is set so), which keeps
    the oracle AUC near 0.8 whatever the seed.
    """
    rng = _stream(dataset, _PURPOSE_MODEL, 0, seed)
    card = cardinalities(cap_lines, cardinality_scale)
    id_key = rng.integers(0, 2**32, size=N_CAT, dtype=np.uint32)
    dense_sign = rng.choice(np.array([-1.0, 1.0]), size=N_DENSE)
    raw_effects = {j: np.append(rng.standard_normal(int(card[j])), 0.0) for j in SIGNAL_CAT}
    unscaled = Model(card, id_key, np.zeros(N_DENSE), raw_effects, 0.0)
    sample = _draw_chunk(_stream(dataset, _PURPOSE_CALIBRATION, 0, seed), CALIBRATION_ROWS, unscaled)
    dense_weight = np.zeros(N_DENSE)
    for k in SIGNAL_DENSE:
        dense_weight[k] = dense_sign[k] * SIGNAL_DENSE_STD / max(_dense_signal(sample, k).std(), 1e-9)
    cat_effects = {
        j: effects * (SIGNAL_CAT_STD / max(effects[sample.ranks[j]].std(), 1e-9))
        for j, effects in raw_effects.items()
    }
    scaled = Model(card, id_key, dense_weight, cat_effects, 0.0)
    bias = _solve_bias(_logits(sample, scaled), TARGET_CTR)
    return Model(card, id_key, dense_weight, cat_effects, bias)


# ---------------------------------------------------------------------------------------------
# Feature generation


def _zipf_ranks(rng: np.random.Generator, n: int, cardinality: int) -> np.ndarray:
    """Ranks in [0, cardinality) with P(rank r) roughly proportional to (r + 1) ** -ZIPF_EXPONENT.

    Inverse CDF of the continuous power law on [1, cardinality + 1); the base is rounded to
    float32 only after the float64 uniform is scaled, so even the rarest ranks stay reachable.
    """
    one_minus_s = 1.0 - ZIPF_EXPONENT
    span = (cardinality + 1.0) ** one_minus_s - 1.0
    base = (span * rng.random(n) + 1.0).astype(np.float32)
    x = np.power(base, np.float32(1.0 / one_minus_s))
    ranks = x.astype(np.int64)
    ranks -= 1
    np.clip(ranks, 0, cardinality - 1, out=ranks)
    return ranks


def _rare_lines(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """Line indices of a rare event (Binomial(n, rate) draws, repeats possible)."""
    return rng.integers(0, n, size=rng.binomial(n, rate))


def _counts(rng: np.random.Generator, n: int, spec: DenseSpec) -> np.ndarray:
    """Heavy-tailed non-negative counts (log-logistic, close to lognormal), int32 [n]."""
    u = rng.random(n, dtype=np.float32)
    odds = u / (np.float32(1.0) - u)
    counts = np.float32(spec.median) * np.power(odds, np.float32(LOGLOGISTIC_SHAPE * spec.sigma))
    np.minimum(counts, np.float32(COUNT_CLIP), out=counts)
    return counts.astype(np.int32)


def _draw_dense(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer features int32 [13, n] and their empty mask."""
    dense = np.empty((N_DENSE, n), dtype=np.int32)
    empty = np.empty((N_DENSE, n), dtype=bool)
    for k, spec in enumerate(DENSE_SPECS):
        dense[k] = _counts(rng, n, spec)
        u = rng.random(n, dtype=np.float32)
        np.less(u, spec.empty, out=empty[k])
        dense[k, u >= 1.0 - spec.zero * (1.0 - spec.empty)] = 0  # zero rate among non-empty lines
        big = _rare_lines(rng, n, BIG_COUNT_RATE)
        dense[k, big] = rng.choice(np.array(BIG_COUNTS, dtype=np.int32), size=big.size)
    u = rng.random(n, dtype=np.float32)
    threshold = 0.0
    for value, rate in I2_NEGATIVES:
        dense[I2_INDEX, (u >= threshold) & (u < threshold + rate)] = value
        threshold += rate
    empty[:, _rare_lines(rng, n, ALL_DENSE_EMPTY_RATE)] = True
    return dense, empty


def _draw_ranks(rng: np.random.Generator, n: int, model: Model) -> np.ndarray:
    """Categorical vocabulary ranks int64 [26, n], -1 where empty."""
    ranks = np.empty((N_CAT, n), dtype=np.int64)
    for j in range(N_CAT):
        ranks[j] = _zipf_ranks(rng, n, int(model.cardinality[j]))
        if CAT_EMPTY[j] > 0:
            ranks[j, rng.random(n, dtype=np.float32) < CAT_EMPTY[j]] = -1
    group = rng.random(n, dtype=np.float32) < CAT_GROUP_EMPTY_RATE
    for j in CAT_GROUP_EMPTY:
        ranks[j, group] = -1
    ranks[:, _rare_lines(rng, n, ALL_CAT_EMPTY_RATE)] = -1
    return ranks


def _draw_chunk(rng: np.random.Generator, n: int, model: Model) -> Chunk:
    dense, empty = _draw_dense(rng, n)
    return Chunk(dense, empty, _draw_ranks(rng, n, model))


#: Planted edge cases, one line each: name -> how it changes the line.
EDGE_CASES = (
    "all_dense_empty", "all_cat_empty", "i2_minus_1", "i2_minus_2", "i2_minus_3",
    "count_1000000", "count_5000000", "count_int32_max", "id_ffffffff",
)  # fmt: skip


def _planted_counts() -> dict[str, tuple[int, int]]:
    """Edge case name -> (integer feature index, huge value): I5, I9 and I6."""
    return {
        "count_1000000": (4, 1_000_000),
        "count_5000000": (8, 5_000_000),
        "count_int32_max": (5, INT32_MAX),
    }


def _plant_edge_cases(rng: np.random.Generator, chunk: Chunk) -> None:
    """Put every edge case into distinct random lines of ``chunk`` (as many as fit)."""
    count = min(len(EDGE_CASES), chunk.rows)
    lines = rng.choice(chunk.rows, size=count, replace=False)
    for case, line in zip(EDGE_CASES[:count], lines, strict=True):
        if case == "all_dense_empty":
            chunk.dense_empty[:, line] = True
        elif case == "all_cat_empty":
            chunk.ranks[:, line] = -1
        elif case.startswith("i2_minus_"):
            chunk.dense[I2_INDEX, line] = -int(case[-1])
            chunk.dense_empty[I2_INDEX, line] = False
        elif case.startswith("count_"):
            feature, value = _planted_counts()[case]
            chunk.dense[feature, line] = value
            chunk.dense_empty[feature, line] = False
        else:  # id_ffffffff
            chunk.ranks[FFFF_FEATURE, line] = FFFF_RANK


def _day_chunks(rng: np.random.Generator, lines: int, model: Model) -> Iterator[Chunk]:
    """The chunks of one day: CHUNK_ROWS lines at a time, edge cases planted into the first."""
    for start in range(0, lines, CHUNK_ROWS):
        chunk = _draw_chunk(rng, min(CHUNK_ROWS, lines - start), model)
        if start == 0:
            _plant_edge_cases(rng, chunk)
        yield chunk


# ---------------------------------------------------------------------------------------------
# Formatting and writing


def _hex_digits(ids: np.ndarray) -> np.ndarray:
    """``%08x`` of each uint32 id as uint8 [8 * n] (SWAR: one nibble per byte, then to ASCII)."""
    x = ids.astype(np.uint64)
    x = ((x & np.uint64(0xFFFF0000)) << np.uint64(16)) | (x & np.uint64(0x0000FFFF))
    x = ((x & np.uint64(0x0000FF000000FF00)) << np.uint64(8)) | (x & np.uint64(0x000000FF000000FF))
    x = ((x & np.uint64(0x00F000F000F000F0)) << np.uint64(4)) | (x & np.uint64(0x000F000F000F000F))
    letters = ((x + np.uint64(0x0606060606060606)) >> np.uint64(4)) & np.uint64(0x0101010101010101)
    x += np.uint64(0x3030303030303030) + letters * np.uint64(ord("a") - ord("0") - 10)
    # Byte i of x (least significant first) holds nibble i; text wants the most significant first.
    return x.astype(">u8").view(np.uint8)


def _hex_column(ids: np.ndarray, empty: np.ndarray) -> pa.Array:
    """A string array of ``%08x`` of each uint32 id, null where ``empty``."""
    n = ids.shape[0]
    offsets = np.arange(0, 8 * n + 1, 8, dtype=np.int32)
    validity = np.packbits(~empty, bitorder="little")
    return pa.StringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(_hex_digits(ids)), pa.py_buffer(validity), int(empty.sum())
    )


def format_lines(labels: np.ndarray, chunk: Chunk, model: Model) -> memoryview:
    """The raw Criteo text of the lines of ``chunk`` with ``labels`` (exact format, see module doc)."""
    columns = [pa.array(labels.astype(np.int8))]
    # Casting to strings first is faster than letting the CSV writer format the integers.
    columns += [
        pc.cast(pa.array(chunk.dense[k], mask=chunk.dense_empty[k]), pa.string()) for k in range(N_DENSE)
    ]
    for j in range(N_CAT):
        empty = chunk.ranks[j] < 0
        columns.append(_hex_column(_ids(chunk.ranks[j], j, model), empty))
    batch = pa.RecordBatch.from_arrays(columns, names=list(FIELD_NAMES))
    sink = pa.BufferOutputStream()
    # pyarrow writes "\n" line ends and nulls as empty fields by default (older versions lack the options)
    options = pa_csv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    pa_csv.write_csv(batch, sink, options)
    return memoryview(sink.getvalue())


@contextmanager
def _open_output(path: Path, gzip: bool) -> Iterator[BufferedIOBase]:
    """A binary stream to ``path``; gzip output has no name or time stamp, for reproducibility."""
    with open(path, "wb") as raw:
        if not gzip:
            yield raw
            return
        with gzip_module.GzipFile(
            filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0
        ) as packed:
            yield packed


def _write_file(
    path: Path, plan: FilePlan, model: Model, args: tuple[str, int], gzip: bool, bar: tqdm
) -> tuple[np.ndarray, np.ndarray]:
    """Write one file atomically; return its labels (uint8) and true click probabilities (float32)."""
    dataset, seed = args
    labels: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    with atomic_output(path) as tmp, _open_output(tmp, gzip) as stream:
        for day, lines in plan.segments:
            rng = _stream(dataset, _PURPOSE_DAY, day, seed)
            for chunk in _day_chunks(rng, lines, model):
                p = _sigmoid(_logits(chunk, model))
                label = (rng.random(chunk.rows) < p).astype(np.uint8)
                stream.write(format_lines(label, chunk, model))
                labels.append(label)
                probs.append(p.astype(np.float32))
                bar.update(chunk.rows)
    return np.concatenate(labels), np.concatenate(probs)


# ---------------------------------------------------------------------------------------------
# Sidecar


def kaggle_test_range(total: int) -> tuple[int, int]:
    """Line range [start, end) of the last of 7 line-count splits of a Kaggle train.txt."""
    base, extras = divmod(total, KAGGLE_SPLITS)
    start = sum(base + (i < extras) for i in range(KAGGLE_SPLITS - 1))
    return start, total


def _oracle_aucs(labels: np.ndarray, probs: np.ndarray, test_start: int) -> dict[str, float | None]:
    """Oracle AUC of all lines, of the test day and of its test / val halves."""
    test_labels, test_probs = labels[test_start:], probs[test_start:]
    aucs = {"all": auc_or_none(labels, probs), "test_day": auc_or_none(test_labels, test_probs)}
    for split in SPLITS:
        start, end = split_rows(test_labels.size, split)
        aucs[split] = auc_or_none(test_labels[start:end], test_probs[start:end])
    return aucs


# ---------------------------------------------------------------------------------------------
# Entry point


def generate(
    out_dir: str | os.PathLike,
    *,
    dataset: str = "terabyte",
    days: int | None = None,
    rows_per_day: int = 2000,
    test_day_rows: int | None = None,
    seed: int = 0,
    gzip: bool = False,
    overwrite: bool = False,
    cardinality_scale: float = 1.0,
    progress: Progress = True,
) -> dict:
    """Write synthetic raw Criteo files and the sidecar ``synthetic.json`` into ``out_dir``.

    Args:
        out_dir: output folder (created if missing).
        dataset: ``"terabyte"`` (files ``day_0`` .. ``day_{days-1}``) or ``"kaggle"`` (``train.txt``).
        days: number of days; default 24 for terabyte (>= 2: the last is the test day) and 7 for
            kaggle (>= 1; train.txt has ``days * rows_per_day`` lines).
        rows_per_day: lines per day (terabyte: except the test day).
        test_day_rows: lines of the terabyte test day; default ``rows_per_day``. Kaggle: None.
        seed: random seed (>= 0); the same arguments give byte-identical files.
        gzip: write ``.gz`` files (same content, gzip-compressed).
        overwrite: replace existing output files instead of raising ``OutputExistsError``.
        cardinality_scale: factor on all vocabulary sizes.
        progress: show a progress bar.

    Returns:
        The sidecar dictionary (also written to ``out_dir/synthetic.json``).
    """
    dataset, days, rows_per_day, test_day_rows, seed = _validate(
        dataset, days, rows_per_day, test_day_rows, seed, cardinality_scale
    )
    out = Path(out_dir)
    plans = plan_files(dataset, days, rows_per_day, test_day_rows, bool(gzip))
    if not overwrite:
        _refuse_existing(out, [plan.name for plan in plans] + [SIDECAR_NAME])
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(dataset, seed, max(plan.lines for plan in plans), cardinality_scale)
    total = sum(plan.lines for plan in plans)
    labels: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    with progress_bar(
        progress, total=total, unit=" lines", unit_scale=True, desc=f"synthetic {dataset}"
    ) as bar:
        for plan in plans:
            file_labels, file_probs = _write_file(
                out / plan.name, plan, model, (dataset, seed), bool(gzip), bar
            )
            labels.append(file_labels)
            probs.append(file_probs)
    all_labels, all_probs = np.concatenate(labels), np.concatenate(probs)
    test_start = total - plans[-1].lines if dataset == TERABYTE.name else kaggle_test_range(total)[0]
    sidecar = {
        "generator": "dlrm_nb.synthetic",
        "version": GENERATOR_VERSION,
        "arguments": {
            "seed": seed,
            "dataset": dataset,
            "days": days,
            "rows_per_day": rows_per_day,
            "test_day_rows": test_day_rows,
            "gzip": bool(gzip),
            "cardinality_scale": float(cardinality_scale),
        },
        "files": [{"name": plan.name, "lines": plan.lines} for plan in plans],
        "lines": total,
        "test_day": {"first_line": test_start, "lines": total - test_start},
        "ctr": float(all_labels.mean()),
        "mean_p": float(all_probs.mean(dtype=np.float64)),
        "oracle_auc": _oracle_aucs(all_labels, all_probs, test_start),
        "cardinality": [int(c) for c in model.cardinality],
        "edge_cases_per_day": list(EDGE_CASES),
    }
    write_json(out / SIDECAR_NAME, sidecar, sort_keys=False)
    return sidecar
