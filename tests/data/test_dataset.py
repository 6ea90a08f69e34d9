"""The .bin reader's batches against a slow, obvious per-row reading of the same bytes."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest

from dlrm_nb.data.dataset import open_split, read_counts


def slow_rows(path: Path, rows: list[int]) -> tuple[list, list, list]:
    """Read records one by one with struct, apply log(x + 1) in float32 per value."""
    dense, cats, labels = [], [], []
    data = path.read_bytes()
    for row in rows:
        values = struct.unpack_from("<40i", data, row * 160)
        labels.append(float(values[0]))
        dense.append([np.float32(math.log(np.float32(x) + np.float32(1))) for x in values[1:14]])
        cats.append(list(values[14:]))
    return dense, cats, labels


@pytest.mark.parametrize("folder", ["prep_M1000_r0", "prep_M1000_r0875"])
@pytest.mark.parametrize("split", ["test", "val"])
def test_batches_equal_per_row_reading(golden: Path, folder: str, split: str) -> None:
    data = open_split(golden / folder, split)
    rng = np.random.default_rng(5)
    rows = rng.integers(0, len(data), size=64)
    batch = data.batch(rows)
    dense, cats, labels = slow_rows(golden / folder / f"terabyte_processed_{split}.bin", rows.tolist())
    assert batch.dense.dtype == np.float32 and batch.dense.shape == (64, 13)
    assert batch.cats.dtype == np.int64 and batch.cats.shape == (64, 26)
    assert batch.labels.dtype == np.float32 and batch.labels.shape == (64,)
    np.testing.assert_allclose(batch.dense, np.array(dense, np.float32), rtol=1e-7, atol=0)
    np.testing.assert_array_equal(batch.cats, np.array(cats))
    np.testing.assert_array_equal(batch.labels, np.array(labels, np.float32))


def test_reordered_npz_gives_the_same_split_as_the_bin(golden: Path) -> None:
    from dlrm_nb.data.dataset import CriteoSplit

    for split in ("test", "val"):
        from_npz = CriteoSplit.from_reordered_npz(golden / "prep_M1000_r0" / "day_23_reordered.npz", split)
        from_bin = open_split(golden / "prep_M1000_r0", split)
        np.testing.assert_array_equal(from_npz.records, from_bin.records)


def test_int32_max_dense_becomes_log_2_31(golden: Path) -> None:
    data = open_split(golden / "prep_M1000_r0", "val")
    rows = np.flatnonzero((np.asarray(data.records[:, 1:14]) == 2**31 - 1).any(axis=1))
    assert rows.size == 2  # two INT32_MAX entries on day 23, both in the validation half
    assert np.isclose(data.batch(rows).dense.max(), np.float32(math.log(2.0**31)))


def test_counts_and_out_of_range_rows(golden: Path) -> None:
    counts = read_counts(golden / "prep_M1000_r0")
    assert counts.dtype == np.int32 and counts.shape == (26,)
    data = open_split(golden / "kaggle", "test")
    assert len(data) == 75
    with pytest.raises(IndexError, match="row 75 is outside"):
        data.batch(np.array([0, 75]))
