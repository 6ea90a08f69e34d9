"""Shared fixtures: the golden files and small data made on the fly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

GOLDEN = Path(os.environ.get("DLRM_NB_GOLDEN", Path(__file__).resolve().parents[2] / "shared" / "golden"))


@pytest.fixture(scope="session")
def golden() -> Path:
    if not GOLDEN.is_dir():
        pytest.fail(f"golden files not found at {GOLDEN}; set DLRM_NB_GOLDEN to ../shared/golden")
    return GOLDEN
