"""Aggregation traces: byte-exact with upstream's (golden files), fast, validated."""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from pathlib import Path

import numpy as np
import pytest

from dlrm_nb.data.criteo import TERABYTE_TEST_PAIRS
from dlrm_nb.exceptions import DlrmNbError
from dlrm_nb.loadgen.aggregation import (
    MLPERF_QUANTILES,
    AggregationError,
    AggregationSpec,
    fixed_trace,
    format_trace,
    make_trace,
    quantile_trace,
    read_trace,
    sample_lengths,
    uniform_trace,
    write_trace,
)


def reference_loop(n_pairs: int, seed: int, quantiles) -> list[list[int]]:
    """The reference's scalar loop (criteo.Criteo), one randint per sample."""
    rng = np.random.RandomState(seed)
    offsets, qo = [0], 0
    while qo < n_pairs:
        qo = min(qo + quantiles[rng.randint(0, len(quantiles))], n_pairs)
        offsets.append(qo)
    return [[s, e] for s, e in itertools.pairwise(offsets)]


def test_quantiles_are_upstreams():
    upstream = (100, 100, *[200] * 12, 300, 300, 400, 500, 600, 700)  # tools/dist_quantile.txt
    assert upstream == MLPERF_QUANTILES
    assert len(MLPERF_QUANTILES) == 20 and sum(MLPERF_QUANTILES) / 20 == 270


@pytest.mark.parametrize("name", ["trace_N500.txt", "trace_N165.txt"])
def test_golden_trace_files(golden: Path, tmp_path: Path, name: str):
    expected = (golden / "traces" / name).read_bytes()
    n_pairs = int(name.removeprefix("trace_N").removesuffix(".txt"))
    write_trace(tmp_path / name, quantile_trace(n_pairs))
    assert (tmp_path / name).read_bytes() == expected
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary left behind


def test_accuracy_run_trace(golden: Path, tmp_path: Path):
    expected = golden / "accuracy" / "dlrm_trace_of_aggregated_samples.txt"
    write_trace(tmp_path / "t.txt", make_trace(500))
    assert (tmp_path / "t.txt").read_bytes() == expected.read_bytes()
    assert read_trace(expected).tolist() == [[0, 200], [200, 400], [400, 500]]


def test_small_n_golden(golden: Path):
    table = json.loads((golden / "traces" / "traces_small_N.json").read_text())
    assert len(table) >= 5
    for n, rows in table.items():
        trace = quantile_trace(int(n))
        assert trace.dtype == np.int64 and trace.shape == (len(rows), 2)
        assert np.column_stack([trace, sample_lengths(trace)]).tolist() == rows, n


def test_real_trace_md5_size_head_tail(golden: Path):
    traces = golden / "traces"
    meta = json.loads((traces / "real_day23_N89137319.json").read_text())
    assert meta["N"] == TERABYTE_TEST_PAIRS
    started = time.perf_counter()
    trace = quantile_trace(TERABYTE_TEST_PAIRS)
    assert time.perf_counter() - started < 2.0  # ~0.05 s here; the loop takes minutes
    text = format_trace(trace).encode()
    assert trace.shape == (meta["lines"], 2) == (330_067, 2)
    assert len(text) == meta["bytes"] and text.count(b"\n") == meta["lines"]
    assert hashlib.md5(text).hexdigest() == meta["md5"] == "3db90209564316f2506c99cc994ad0b2"
    lines = text.splitlines(keepends=True)
    assert b"".join(lines[:2000]) == (traces / "real_day23_N89137319_head2000.txt").read_bytes()
    assert b"".join(lines[-2000:]) == (traces / "real_day23_N89137319_tail2000.txt").read_bytes()
    assert lines[0].decode().strip() == meta["first_line"] and lines[-1].decode().strip() == meta["last_line"]
    lengths = np.load(traces / "real_day23_N89137319_lengths.npy")
    assert np.array_equal(sample_lengths(trace), lengths) and int(lengths.sum()) == meta["sum_of_lengths"]


@pytest.mark.parametrize("seed", [0, 123, 2**32 - 1])
@pytest.mark.parametrize("quantiles", [MLPERF_QUANTILES, (3, 5, 7, 11, 13, 17, 19), (1,), (1000, 1)])
def test_block_draws_equal_scalar_loop(seed: int, quantiles: tuple[int, ...]):
    """Legacy RandomState.randint gives the same stream drawn one by one or in blocks."""
    for n_pairs in (1, 7, 271, 50_021):
        assert quantile_trace(n_pairs, seed, quantiles).tolist() == reference_loop(n_pairs, seed, quantiles)


def test_fixed_trace():
    trace = fixed_trace(1000, 300)
    assert trace.tolist() == [[0, 300], [300, 600], [600, 900], [900, 1000]]
    assert fixed_trace(5, 10).tolist() == [[0, 5]]
    assert fixed_trace(600, 300).tolist() == [[0, 300], [300, 600]]
    assert make_trace(1000, "fixed", size=300).tolist() == trace.tolist()


def test_uniform_trace():
    trace = uniform_trace(100_000, 50, 60, seed=7)
    lengths = sample_lengths(trace)
    assert trace[0, 0] == 0 and trace[-1, 1] == 100_000
    assert np.array_equal(trace[1:, 0], trace[:-1, 1])
    assert (
        lengths[:-1].min() >= 50 and lengths.max() <= 60 and set(lengths[:-1].tolist()) == set(range(50, 61))
    )
    assert np.array_equal(trace, uniform_trace(100_000, 50, 60, seed=7))
    assert not np.array_equal(trace[:100], uniform_trace(100_000, 50, 60, seed=8)[:100])
    rng = np.random.RandomState(7)  # same as a scalar loop of randint(low, high + 1)
    ends, qo = [], 0
    while qo < 100_000:
        qo = min(qo + rng.randint(50, 61), 100_000)
        ends.append(qo)
    assert trace[:, 1].tolist() == ends
    assert uniform_trace(10, 4, 4).tolist() == [[0, 4], [4, 8], [8, 10]]


def test_read_write_round_trip(tmp_path: Path):
    for trace in (quantile_trace(123_457), fixed_trace(10, 3), uniform_trace(999, 1, 9)):
        write_trace(tmp_path / "t.txt", trace)
        assert np.array_equal(read_trace(tmp_path / "t.txt"), trace)
        assert read_trace(tmp_path / "t.txt").dtype == np.int64


def test_make_trace_ignores_settings_of_other_kinds():
    """A caller may pass all its defaults; only those of the kind count."""
    every = {"size": 270, "low": 100, "high": 700, "seed": 123}
    assert np.array_equal(make_trace(500, "quantile", **every), quantile_trace(500))
    assert np.array_equal(make_trace(500, "fixed", **every), fixed_trace(500, 270))
    assert np.array_equal(make_trace(5000, "uniform", **every), uniform_trace(5000, 100, 700))
    with pytest.raises(AggregationError, match="size 0 is not valid"):
        make_trace(500, "fixed", size=0, low=-5)


def test_spec():
    spec = AggregationSpec()
    assert spec.kind == "quantile" and spec.seed == 123 and "quantile" in spec.describe()
    assert np.array_equal(spec.trace(500), quantile_trace(500))
    assert AggregationSpec("fixed", size=5).describe() == "fixed, 5 pairs"
    assert np.array_equal(
        AggregationSpec("uniform", low=2, high=3, seed=1).trace(9), uniform_trace(9, 2, 3, 1)
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: make_trace(100, "random"), "kind 'random' is not valid"),
        (lambda: make_trace(100, "fixed"), "needs size"),
        (lambda: make_trace(100, "uniform", low=3), "needs high"),
        (lambda: AggregationSpec("quantile", size=3), "size=3 does not apply"),
        (lambda: AggregationSpec("fixed", size=3, low=1), "low=1 does not apply"),
        (lambda: make_trace(100, "uniform", low=5, high=4), "low 5 is above high 4"),
        (lambda: make_trace(100, "fixed", size=0), "size 0 is not valid"),
        (lambda: make_trace(0), "number of pairs 0 is not valid"),
        (lambda: make_trace(True), "number of pairs True is not valid"),
        (lambda: make_trace(10.5), "number of pairs 10.5 is not valid"),
        (lambda: make_trace(100, seed=-1), "seed -1 is not valid"),
        (lambda: quantile_trace(100, quantiles=()), "quantiles [] are not valid"),
        (lambda: quantile_trace(100, quantiles=(100, 0)), "quantiles [100, 0] are not valid"),
        (lambda: format_trace(np.zeros((3, 3), np.int64)), "need integers [S, 2]"),
    ],
)
def test_bad_settings(call, message: str):
    with pytest.raises(AggregationError) as info:
        call()
    assert message in str(info.value)
    assert isinstance(info.value, DlrmNbError)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("0, 200, 200\n200, 400\n", "line 2: '200, 400' is not valid"),
        ("0, 200, 200\n200, x, 1\n", "line 2"),
        ("0, 200, 100\n", "size is not end - start"),
        (
            "0, 200, 200\n300, 400, 100\n",
            "line 2: '300, 400, 100' is not valid: start is not the previous end",
        ),
        ("5, 10, 5\n", "the first start must be 0"),
        ("0, 0, 0\n", "size is below 1"),
    ],
)
def test_bad_trace_files(tmp_path: Path, text: str, message: str):
    path = tmp_path / "trace.txt"
    path.write_text(text)
    with pytest.raises(AggregationError) as info:
        read_trace(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_missing_trace_file(tmp_path: Path):
    with pytest.raises(AggregationError, match="does not exist"):
        read_trace(tmp_path / "nope.txt")
