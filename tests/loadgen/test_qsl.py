"""The QSL keeps loaded samples as int32 records and gathers exactly what the split's batches hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dlrm_nb.data.criteo import BIN_RECORD_BYTES, N_FIELDS
from dlrm_nb.data.dataset import CriteoSplit
from dlrm_nb.exceptions import DlrmNbError
from dlrm_nb.loadgen.aggregation import quantile_trace, uniform_trace
from dlrm_nb.loadgen.qsl import AggregatedQSL, rows_of

PAIRS = 6_000


def random_records(rng: np.random.Generator, n: int) -> np.ndarray:
    records = rng.integers(0, 5000, size=(n, N_FIELDS), dtype=np.int32)
    records[:, 0] = rng.integers(0, 2, size=n)
    return records


@pytest.fixture(params=["bin", "memory"])
def split(request, tmp_path: Path) -> CriteoSplit:
    """The same records memory-mapped from a .bin (read with preadv) and held in memory."""
    records = random_records(np.random.default_rng(0), PAIRS)
    if request.param == "memory":
        return CriteoSplit(records, "memory")
    path = tmp_path / "terabyte_processed_test.bin"
    records.astype("<i4").tofile(path)
    return CriteoSplit.from_bin(path)


def expected(split: CriteoSplit, trace: np.ndarray, samples: np.ndarray) -> tuple[np.ndarray, ...]:
    """What the QSL built before: ``split.batch`` of the samples' rows, in order."""
    sizes = trace[:, 1] - trace[:, 0]
    batch = split.batch(rows_of(trace[samples, 0], sizes[samples]))
    return batch.dense, batch.cats, batch.labels


@pytest.mark.parametrize("kind", ["quantile", "uniform"])
def test_gather_equals_the_split_batches(split: CriteoSplit, kind: str) -> None:
    trace = quantile_trace(PAIRS) if kind == "quantile" else uniform_trace(PAIRS, 1, 40)
    qsl = AggregatedQSL(split, trace, torch.device("cpu"))
    rng = np.random.default_rng(1)
    loaded = rng.choice(len(qsl), size=max(2, len(qsl) * 2 // 3), replace=False)
    qsl.load(list(loaded))
    for _ in range(25):
        samples = rng.choice(loaded, size=int(rng.integers(1, 12)))  # any order, repeats allowed
        got = qsl.gather(samples)
        for tensor, want, dtype in zip(
            got, expected(split, trace, samples), (torch.float32, torch.int64, torch.float32), strict=True
        ):
            assert tensor.dtype == dtype
            np.testing.assert_array_equal(tensor.numpy(), want)


def test_load_keeps_one_int32_block(split: CriteoSplit) -> None:
    trace = uniform_trace(PAIRS, 1, 60)
    qsl = AggregatedQSL(split, trace, torch.device("cpu"))
    samples = np.arange(0, len(qsl), 3)
    qsl.load(samples[::-1])  # the order LoadGen asks in does not matter
    block = qsl.loaded_records
    pairs = int(qsl.sizes[samples].sum())
    assert block is not None and block.dtype == np.int32 and block.flags.c_contiguous
    assert block.shape == (pairs, N_FIELDS) and block.nbytes == pairs * BIN_RECORD_BYTES
    assert not isinstance(block, np.memmap) and block.base is None  # a copy of its own, not a view
    np.testing.assert_array_equal(
        block, np.asarray(split.records)[rows_of(trace[samples, 0], qsl.sizes[samples])]
    )


def test_unload_and_reload(split: CriteoSplit) -> None:
    trace = quantile_trace(PAIRS)
    qsl = AggregatedQSL(split, trace, torch.device("cpu"))
    qsl.load([0, 1])
    with pytest.raises(DlrmNbError, match="not loaded"):
        qsl.gather(np.array([2]))
    qsl.load([2])  # a new load replaces the old one
    np.testing.assert_array_equal(
        qsl.gather(np.array([2]))[1].numpy(), expected(split, trace, np.array([2]))[1]
    )
    with pytest.raises(DlrmNbError, match="not loaded"):
        qsl.gather(np.array([0]))
    qsl.unload([2])
    assert qsl.loaded_records is None
    with pytest.raises(DlrmNbError, match="not loaded"):
        qsl.gather(np.array([2]))
    qsl.load([])
    assert qsl.loaded_records is not None and len(qsl.loaded_records) == 0


def test_load_refuses_samples_and_traces_outside_the_split(split: CriteoSplit) -> None:
    qsl = AggregatedQSL(split, quantile_trace(PAIRS), torch.device("cpu"))
    with pytest.raises(DlrmNbError, match="outside"):
        qsl.load([len(qsl)])
    too_long = AggregatedQSL(split, np.array([[0, 10], [10, PAIRS + 5]]), torch.device("cpu"))
    with pytest.raises(DlrmNbError, match="reaches past"):
        too_long.load([1])
