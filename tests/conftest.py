"""Shared fixtures: the golden files and small data made on the fly.

The golden files are outputs of the upstream reference (see tests/golden/README.md). The small set
lives in tests/golden and comes with every clone. The large set, ``model_40M_arch`` (14 MB), does
not: the tests that need it take the ``golden_large`` fixture, which looks in $DLRM_NB_GOLDEN, else
in ../shared/golden next to the clone, and skips (saying where to get it) when neither holds it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
GOLDEN_LARGE = Path(
    os.environ.get("DLRM_NB_GOLDEN") or Path(__file__).resolve().parents[2] / "shared" / "golden"
)
LARGE_SETS = ("model_40M_arch",)


@pytest.fixture(scope="session")
def golden() -> Path:
    """The small golden set, part of the repository."""
    if not (GOLDEN / "README.md").is_file():
        pytest.fail(f"the golden files are missing from the clone: {GOLDEN} (they are tracked in git)")
    return GOLDEN


@pytest.fixture(scope="session")
def golden_large() -> Path:
    """The developer golden folder, which holds the large set (model_40M_arch) too; else a skip
    that says where to get it."""
    if not all((GOLDEN_LARGE / name).is_dir() for name in LARGE_SETS):
        pytest.skip(
            "the large golden set (model_40M_arch, 14 MB) is not in this clone: set DLRM_NB_GOLDEN to the "
            f"developer golden folder, e.g. ../shared/golden (looked in {GOLDEN_LARGE})"
        )
    return GOLDEN_LARGE


def synthetic_prepared(root: Path, *, rows_per_day: int, test_day_rows: int, max_ind_range: int) -> Path:
    """Three synthetic Terabyte days (seed 5, small vocabularies) prepared with a training split
    into ``root/prep``: the tiny data the training and engine tests run on."""
    from dlrm_nb.data.preprocess import PrepareSettings, prepare
    from dlrm_nb.data.synthetic import generate

    generate(
        root / "raw",
        days=3,
        rows_per_day=rows_per_day,
        test_day_rows=test_day_rows,
        seed=5,
        cardinality_scale=0.05,
        progress=False,
    )
    settings = PrepareSettings(max_ind_range=max_ind_range, days=3, write_train=True)
    prepare(root / "raw", root / "prep", settings, progress=False)
    return root / "prep"
