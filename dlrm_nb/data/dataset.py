"""Reading preprocessed splits: the MLPerf ``.bin`` format (memory-mapped) and upstream's npz files.

Shapes: B rows in a batch; 13 dense features, 26 categorical features.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlrm_nb.data.criteo import (
    BIN_DTYPE,
    BIN_RECORD_BYTES,
    CAT_COLS,
    DATASETS,
    DENSE_COLS,
    LABEL_COL,
    N_CAT,
    N_DENSE,
    N_FIELDS,
    SPLITS,
    split_rows,
)
from dlrm_nb.exceptions import InputFileError


@dataclass(frozen=True)
class Batch:
    """Model-ready inputs: ``dense`` float32 [B, 13] = log(x + 1); ``cats`` int64 [B, 26]
    (dictionary ranks); ``labels`` float32 [B]."""

    dense: np.ndarray
    cats: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def records_to_batch(records: np.ndarray) -> Batch:
    """Turn records int32 [B, 40] into a :class:`Batch` (log computed in float32, as upstream)."""
    dense = records[:, DENSE_COLS].astype(np.float32)
    dense += np.float32(1.0)
    np.log(dense, out=dense)
    return Batch(
        dense=dense,
        cats=records[:, CAT_COLS].astype(np.int64),
        labels=records[:, LABEL_COL].astype(np.float32),
    )


class CriteoSplit:
    """The rows of one split as records int32 [N, 40], memory-mapped when read from a ``.bin``."""

    def __init__(self, records: np.ndarray, source: str) -> None:
        if records.ndim != 2 or records.shape[1] != N_FIELDS:
            raise InputFileError(f"{source}: records must be [N, {N_FIELDS}], not {list(records.shape)}")
        self.records = records
        self.source = source

    @classmethod
    def from_bin(cls, path: str | os.PathLike) -> CriteoSplit:
        """Memory-map an MLPerf ``.bin`` file (records of 40 little-endian int32, no header);
        an empty or truncated file is an :class:`InputFileError` naming it."""
        path = Path(path)
        if not path.is_file():
            raise InputFileError(f"{path} does not exist")
        size = path.stat().st_size
        if size % BIN_RECORD_BYTES:
            raise InputFileError(
                f"{path} has {size:,} bytes, not a multiple of {BIN_RECORD_BYTES} "
                f"(one record = {N_FIELDS} int32); it is truncated or not an MLPerf .bin file"
            )
        if size == 0:
            raise InputFileError(
                f"{path} is empty: it holds no records (was its day empty, or the write cut short?); "
                "prepare the data again"
            )
        rows = size // BIN_RECORD_BYTES
        return cls(np.memmap(path, dtype=BIN_DTYPE, mode="r", shape=(rows, N_FIELDS)), str(path))

    @classmethod
    def from_reordered_npz(cls, path: str | os.PathLike, split: str) -> CriteoSplit:
        """The ``split`` half of upstream's test-day ``*_reordered.npz`` (or ``_processed.npz``)."""
        path = Path(path)
        if not path.is_file():
            raise InputFileError(f"{path} does not exist")
        with np.load(path) as arrays:
            missing = {"X_cat", "X_int", "y"} - set(arrays.files)
            if missing:
                raise InputFileError(f"{path} lacks arrays {sorted(missing)}; is it upstream's day npz?")
            n = len(arrays["y"])
            start, end = split_rows(n, split)
            if end == start:
                raise InputFileError(
                    f"{path} holds no rows of the {split} split ({n} rows in all); prepare the data again"
                )
            records = np.empty((end - start, N_FIELDS), dtype=BIN_DTYPE)
            records[:, LABEL_COL] = arrays["y"][start:end]
            records[:, DENSE_COLS] = arrays["X_int"][start:end]
            records[:, CAT_COLS] = arrays["X_cat"][start:end]
        return cls(records, f"{path}[{split}]")

    def __len__(self) -> int:
        return len(self.records)

    def batch(self, rows: np.ndarray | slice) -> Batch:
        """The batch of the given row indices int [B] (any order, repeats allowed) or slice."""
        if isinstance(rows, slice):
            return records_to_batch(np.asarray(self.records[rows]))
        rows = np.asarray(rows)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            bad = rows[(rows < 0) | (rows >= len(self))][0]
            raise IndexError(f"row {bad} is outside {self.source} (0..{len(self) - 1})")
        return records_to_batch(self.records[rows])

    def labels(self) -> np.ndarray:
        """All labels, float32 [N]."""
        return np.asarray(self.records[:, LABEL_COL], dtype=np.float32)


def open_split(data_dir: str | os.PathLike, split: str = "test", dataset: str | None = None) -> CriteoSplit:
    """Open a split of a prepared folder: ``*_processed_{split}.bin``, else upstream's
    test-day ``*_reordered.npz`` (Terabyte ``day_23``, Kaggle ``train_day_6``)."""
    if split not in SPLITS:
        raise InputFileError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    data_dir = Path(data_dir)
    layouts = [DATASETS[dataset]] if dataset else list(DATASETS.values())
    for layout in layouts:
        path = data_dir / layout.bin_name(split)
        if path.exists():
            return CriteoSplit.from_bin(path)
    for layout in layouts:
        path = data_dir / layout.reordered_name(layout.test_day)
        if path.exists():
            return CriteoSplit.from_reordered_npz(path, split)
    names = [layout.bin_name(split) for layout in layouts] + [
        layout.reordered_name(layout.test_day) for layout in layouts
    ]
    raise InputFileError(f"{data_dir} holds none of {', '.join(names)}; run `dlrm-nb prepare` first")


def read_counts(data_dir: str | os.PathLike, dataset: str | None = None) -> np.ndarray:
    """Distinct values per categorical feature, int32 [26], from ``*_fea_count.npz``."""
    data_dir = Path(data_dir)
    layouts = [DATASETS[dataset]] if dataset else list(DATASETS.values())
    for layout in layouts:
        path = data_dir / layout.fea_count_name()
        if path.exists():
            with np.load(path) as arrays:
                counts = arrays["counts"]
            if counts.shape != (N_CAT,):
                raise InputFileError(f"{path}: counts has shape {list(counts.shape)}, expected [{N_CAT}]")
            return counts
    names = ", ".join(layout.fea_count_name() for layout in layouts)
    raise InputFileError(f"{data_dir} holds none of {names}; run `dlrm-nb prepare` first")


__all__ = ["N_DENSE", "Batch", "CriteoSplit", "open_split", "read_counts", "records_to_batch"]
