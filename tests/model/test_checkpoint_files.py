"""Files that are not checkpoints, or not whole ones, and models that do not fit the data: one
CheckpointError naming the file or the table, and nothing converted or written."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dlrm_nb.data.dataset import read_counts
from dlrm_nb.exceptions import CheckpointError
from dlrm_nb.model.checkpoint import check_pair, load_checkpoint, load_state_dict

NOT_READABLE = "is not a readable torch checkpoint"


@pytest.fixture
def checkpoint(golden: Path) -> Path:
    return golden / "model_tiny" / "checkpoint.pt"


def _refused(path: Path, *, mmap: bool = True) -> str:
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path, mmap=mmap)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_random_bytes_are_refused_without_a_conversion(tmp_path: Path, capsys) -> None:
    path = tmp_path / "random.pt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert _refused(path) == (
        f"{path} {NOT_READABLE}: it is neither torch's zip format nor its old format (truncated, or a "
        "file of another kind); give a file torch.save wrote"
    )
    assert capsys.readouterr().err == ""  # nothing "converted"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["random.pt"]
    assert _refused(path, mmap=False).startswith(f"{path} {NOT_READABLE}: it is neither")


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    assert f"{path} {NOT_READABLE}: it is empty" in _refused(path)


def test_a_truncated_checkpoint_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.pt"
    path.write_bytes(checkpoint.read_bytes()[:5000])
    assert _refused(path) == (
        f"{path} {NOT_READABLE}: it starts like torch's zip format but its end is missing "
        "(truncated: an interrupted download or copy?); copy it again"
    )


def test_a_zip_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "archive.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("notes.txt", "hello")
    assert _refused(path) == (
        f"{path} {NOT_READABLE}: it is a zip file, but not one torch.save wrote (it has no data.pkl)"
    )


def test_a_folder_or_a_missing_file_is_named(tmp_path: Path) -> None:
    assert _refused(tmp_path) == f"checkpoint {tmp_path} is a folder, not a file; give a .pt file"
    assert _refused(tmp_path / "no.pt") == f"checkpoint {tmp_path / 'no.pt'} does not exist; give a .pt file"


def test_a_truncated_old_format_file_leaves_no_converted_file(checkpoint: Path, tmp_path: Path) -> None:
    state, _ = load_state_dict(checkpoint, mmap=False)
    legacy = tmp_path / "legacy.pt"
    torch.save({"state_dict": state}, legacy, _use_new_zipfile_serialization=False)
    whole = legacy.read_bytes()
    legacy.write_bytes(whole[: len(whole) // 2])
    assert _refused(legacy).startswith(f"{legacy} {NOT_READABLE} (truncated or damaged?): ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["legacy.pt"]  # no .mmap.pt, whole or half
    legacy.write_bytes(whole)  # the whole file converts and loads
    model, _ = load_checkpoint(legacy)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["legacy.pt", "legacy.pt.mmap.pt"]
    assert model.arch.table_sizes == load_checkpoint(checkpoint)[0].arch.table_sizes


def test_tables_smaller_than_the_data_name_the_table(golden: Path) -> None:
    counts = read_counts(golden / "prep_M1000_r0")
    sizes = [int(c) for c in counts]
    check_pair(sizes, counts, "data")  # exactly enough rows
    sizes[4] -= 1
    with pytest.raises(CheckpointError) as caught:
        check_pair(sizes, counts, "data")
    assert str(caught.value).startswith(
        f"the checkpoint does not fit data: feature C5 has {int(counts[4]):,} distinct values but embedding "
        f"table 4 only {sizes[4]:,} rows"
    )
    with pytest.raises(CheckpointError, match="it has 25 embedding tables, the data 26 categorical features"):
        check_pair(sizes[:25], counts, "data")
