"""Byte-equality of our preprocessing with upstream's files in tests/golden/ (local and Dask engines)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dlrm_nb.data.preprocess import PrepareSettings, prepare

FOLDERS = {"prep_M1000_r0": 0.0, "prep_M1000_r0875": 0.875}


def assert_npz_equal(ours: Path, theirs: Path) -> None:
    with np.load(ours) as a, np.load(theirs) as b:
        assert sorted(a.files) == sorted(b.files), ours.name
        for key in b.files:
            assert a[key].dtype == b[key].dtype, (ours.name, key)
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{ours.name}:{key}")


def digest(array: np.ndarray) -> dict:
    return {
        "dtype": str(array.dtype),
        "shape": list(array.shape),
        "sha256": hashlib.sha256(array.tobytes()).hexdigest(),
    }


def assert_matches_golden(out: Path, golden_dir: Path, *, with_train: bool = False) -> None:
    """The .bin files, counts and dictionaries; with training outputs also day 23's npz stages."""
    names = ("day_23_processed.npz", "day_23_reordered.npz") if with_train else ()
    for path in sorted(golden_dir.iterdir()):
        if path.suffix == ".bin":
            assert (out / path.name).read_bytes() == path.read_bytes(), path.name
        elif path.name.startswith(("day_fea_", "day_day_count")) or path.name in names:
            assert_npz_equal(out / path.name, path)


@pytest.fixture(scope="module", params=["local", "dask"])
def engine(request) -> str:
    return request.param


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_terabyte_outputs_equal_upstream(tmp_path: Path, golden: Path, folder: str, engine: str) -> None:
    settings = PrepareSettings(max_ind_range=1000, sub_sample_rate=FOLDERS[folder], write_train=True)
    manifest = prepare(golden / "raw", tmp_path, settings, engine=engine, workers=2, progress=False)
    assert manifest["complete"]
    assert_matches_golden(tmp_path, golden / folder, with_train=True)
    # every processed day against upstream's digests (training days too)
    digests = json.loads((golden / folder / "digests.json").read_text())["days"]
    for day, stages in digests.items():
        for stage in ("processed", "reordered"):
            with np.load(tmp_path / f"{day}_{stage}.npz") as arrays:
                assert {k: digest(arrays[k]) for k in arrays.files} == stages[stage], (day, stage)
    # the training .bin is upstream's numpy_to_binary of the reordered training days
    train = np.fromfile(tmp_path / "terabyte_processed_train.bin", dtype="<i4").reshape(-1, 40)
    expected = []
    for day in range(23):
        with np.load(tmp_path / f"day_{day}_reordered.npz") as arrays:
            expected.append(np.concatenate([arrays["y"][:, None], arrays["X_int"], arrays["X_cat"]], 1))
    np.testing.assert_array_equal(train, np.concatenate(expected).astype(np.int32))


def test_required_outputs_without_training_files(tmp_path: Path, golden: Path) -> None:
    prepare(golden / "raw", tmp_path, PrepareSettings(max_ind_range=1000), progress=False)
    assert_matches_golden(tmp_path, golden / "prep_M1000_r0")
    assert not list(tmp_path.glob("day_*_processed.npz"))
    assert not (tmp_path / ".dlrm_nb_work").exists()


def test_kaggle_outputs_equal_upstream(tmp_path: Path, golden: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(golden / "kaggle" / "train.txt", raw / "train.txt")
    out = tmp_path / "out"
    prepare(raw, out, PrepareSettings(max_ind_range=-1, dataset="kaggle", write_train=True), progress=False)
    for path in sorted((golden / "kaggle").glob("*.npz")):
        assert_npz_equal(out / path.name, path)
    digests = json.loads((golden / "kaggle" / "digests.json").read_text())["days"]
    for day, stages in digests.items():
        with np.load(out / f"{day}_processed.npz") as arrays:
            assert {k: digest(arrays[k]) for k in arrays.files} == stages["processed"], day


def test_gzip_input_gives_the_same_files(tmp_path: Path, golden: Path) -> None:
    import gzip

    raw = tmp_path / "raw"
    raw.mkdir()
    for path in (golden / "raw").iterdir():
        (raw / f"{path.name}.gz").write_bytes(gzip.compress(path.read_bytes()))
    prepare(raw, tmp_path / "out", PrepareSettings(max_ind_range=1000, sub_sample_rate=0.875), progress=False)
    assert_matches_golden(tmp_path / "out", golden / "prep_M1000_r0875")
