"""Same inputs, same bytes: two `prepare` runs (training outputs included) give identical files."""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dlrm_nb.data.manifest import MANIFEST_NAME
from dlrm_nb.data.preprocess import PrepareSettings, prepare
from dlrm_nb.data.synthetic import generate

SETTINGS = PrepareSettings(max_ind_range=2000, sub_sample_rate=0.5, days=3, write_train=True)


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("raw")
    generate(
        folder, days=3, rows_per_day=300, test_day_rows=400, seed=5, cardinality_scale=0.05, progress=False
    )
    return folder


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_two_runs_give_the_same_bytes(raw: Path, tmp_path: Path) -> None:
    prepare(raw, tmp_path / "a", SETTINGS, progress=False)
    time.sleep(2.1)  # zip time stamps have 2 s steps: the second run's clock reads otherwise
    for path in raw.iterdir():  # and its inputs carry other modification times
        os.utime(path, (2e9, 2e9))
    prepare(raw, tmp_path / "b", SETTINGS, progress=False)
    a, b = files(tmp_path / "a"), files(tmp_path / "b")
    assert sorted(a) == sorted(b)
    assert {"day_0_processed.npz", "day_2_reordered.npz", "terabyte_processed_train.bin"} <= set(a)
    different = [name for name in a if name != MANIFEST_NAME and a[name] != b[name]]
    assert different == []
    # the manifest differs only in how long the run took
    manifests = [json.loads(m[MANIFEST_NAME]) for m in (a, b)]
    for manifest in manifests:
        assert manifest.pop("seconds") > 0
    assert manifests[0] == manifests[1]


def test_npz_files_are_what_np_savez_makes_of_their_arrays(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare(raw, out, SETTINGS, progress=False)
    npz = sorted(out.glob("*.npz"))
    assert len(npz) == 26 + 2 + 3 + 3  # dictionaries, counts, day counts, 3 processed, 3 reordered
    for path in npz:
        with np.load(path) as arrays:
            loaded = {name: arrays[name] for name in arrays.files}
        buffer = io.BytesIO()
        np.savez(buffer, **loaded)  # type: ignore[arg-type]
        assert path.read_bytes() == buffer.getvalue(), path.name
        with zipfile.ZipFile(path) as zf:
            assert {info.date_time for info in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}, path.name
    with np.load(out / "day_0_processed.npz") as arrays:
        assert arrays.files == ["X_cat", "X_int", "y"]
