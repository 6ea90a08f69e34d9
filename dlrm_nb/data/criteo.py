"""Criteo constants and file formats: the one place that defines them.

Raw line (Terabyte ``day_N`` and Kaggle ``train.txt``): 40 tab-separated fields
``label, I1..I13, C1..C26``; integers may be empty or negative, categoricals are
hex ids (usually 8 lowercase digits) and may be empty. Empty means 0.

MLPerf binary record (``*_processed_{train,test,val}.bin``): 40 little-endian int32,
``label, I1..I13 (negatives zeroed), C1..C26 (dictionary ranks)``, no header.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_DENSE = 13
N_CAT = 26
N_FIELDS = 1 + N_DENSE + N_CAT
DENSE_NAMES = tuple(f"I{i}" for i in range(1, N_DENSE + 1))
CAT_NAMES = tuple(f"C{i}" for i in range(1, N_CAT + 1))
FIELD_NAMES = ("label", *DENSE_NAMES, *CAT_NAMES)

#: Record layout of the MLPerf binary format.
BIN_DTYPE = np.dtype("<i4")
BIN_RECORD_BYTES = N_FIELDS * BIN_DTYPE.itemsize  # 160
LABEL_COL = 0
DENSE_COLS = slice(1, 1 + N_DENSE)
CAT_COLS = slice(1 + N_DENSE, N_FIELDS)

#: Upstream's default seed for ``np.random.seed`` before preprocessing.
DEFAULT_SEED = 123
#: The MLPerf calibration set: the first rows of the validation half.
CALIBRATION_ROWS = 128_000
#: Real sizes, for documentation and sanity checks.
TERABYTE_TEST_PAIRS = 89_137_319


@dataclass(frozen=True)
class DatasetLayout:
    """File naming and day structure of one Criteo dataset."""

    name: str
    days: int  # number of day files (Terabyte) or line-count splits (Kaggle)
    prefix: str  # upstream's prefix of the count and dictionary files: "day" or "train"
    day_prefix: str  # upstream's prefix of per-day array files: "day" or "train_day"
    bin_prefix: str  # prefix of the MLPerf .bin files

    @property
    def test_day(self) -> int:
        return self.days - 1

    def fea_count_name(self) -> str:
        return f"{self.prefix}_fea_count.npz"

    def fea_dict_name(self, feature: int) -> str:
        return f"{self.prefix}_fea_dict_{feature}.npz"

    def day_count_name(self) -> str:
        return f"{self.prefix}_day_count.npz"

    def processed_name(self, day: int) -> str:
        return f"{self.day_prefix}_{day}_processed.npz"

    def reordered_name(self, day: int) -> str:
        return f"{self.day_prefix}_{day}_reordered.npz"

    def bin_name(self, split: str) -> str:
        if split not in (*SPLITS, "train"):
            raise ValueError(f"split {split!r} is not one of train, test, val")
        return f"{self.bin_prefix}_processed_{split}.bin"


SPLITS = ("test", "val")

TERABYTE = DatasetLayout(name="terabyte", days=24, prefix="day", day_prefix="day", bin_prefix="terabyte")
KAGGLE = DatasetLayout(name="kaggle", days=7, prefix="train", day_prefix="train_day", bin_prefix="kaggle")
DATASETS = {layout.name: layout for layout in (TERABYTE, KAGGLE)}

#: Raw input names.
KAGGLE_RAW_NAME = "train.txt"


def terabyte_raw_name(day: int) -> str:
    """Upstream's raw file name of Terabyte day ``day`` (``.gz`` may follow)."""
    return f"day_{day}"


def split_rows(n_rows: int, split: str) -> tuple[int, int]:
    """Row range ``[start, end)`` of ``split`` within the ``n_rows`` kept rows of the test day.

    Test is the first ceil(n/2) rows, validation the rest (upstream's numpy_to_binary).
    """
    half = (n_rows + 1) // 2
    if split == "test":
        return 0, half
    if split == "val":
        return half, n_rows
    raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")


def table_sizes(counts: np.ndarray, max_ind_range: int) -> list[int]:
    """Embedding rows per feature: ``min(counts[j], max_ind_range)`` (counts alone when no hashing)."""
    if max_ind_range > 0:
        return [int(min(c, max_ind_range)) for c in counts]
    return [int(c) for c in counts]


#: MLPerf DLRM accuracy rule: the reference AUC and the fractions of it a submission must reach.
REFERENCE_AUC = 0.8025
ACCURACY_TARGETS = {"99%": 0.99, "99.9%": 0.999}
