"""Synthetic checkpoints: torch's format, the published shapes, deterministic; page_in."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dlrm_nb.exceptions import DlrmNbError, OutputExistsError
from dlrm_nb.model import synth_checkpoint
from dlrm_nb.model.checkpoint import SAFE_GLOBALS, load_checkpoint
from dlrm_nb.model.dlrm import DLRM, PUBLISHED_TABLE_SIZES, preset
from dlrm_nb.model.page_in import page_in
from dlrm_nb.model.synth_checkpoint import FULL_TABLE_SIZES, synthetic_table_sizes, write_synthetic_checkpoint

ROWS = 50


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("synth")
    return {
        arch: write_synthetic_checkpoint(folder / f"{arch}.pt", arch, rows=ROWS, progress=False)
        for arch in ("kaggle", "tb0875_10M")
    }


@pytest.mark.parametrize("arch", ["kaggle", "tb0875_10M"])
def test_loads_with_the_published_shapes(files: dict[str, Path], arch: str) -> None:
    model, metadata = load_checkpoint(files[arch])
    sizes = tuple(min(n, ROWS) for n in FULL_TABLE_SIZES[arch])
    assert model.arch == preset(arch).with_tables(sizes)
    expected = DLRM(preset(arch).with_tables(sizes), device="meta").state_dict()
    state = model.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in expected.items()}
    assert all(t.dtype == torch.float32 for t in state.values())
    assert metadata["synthetic"] == {"arch": arch, "rows": ROWS, "seed": 0}
    assert isinstance(metadata["test_acc"], float) and "nepochs" in metadata and "nbatches" in metadata
    bound = np.sqrt(1 / sizes[0])
    table = state["emb_l.0.weight"]
    assert float(table.abs().max()) <= bound and float(table.std()) > bound / 3  # U(-b, b)
    assert 0.5 < float(state["top_l.0.weight"].std()) / np.sqrt(2 / sum(preset(arch).top[:2])) < 1.5


def test_is_what_torch_save_writes_and_maps(files: dict[str, Path]) -> None:
    path = files["kaggle"]
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        mapped = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    assert isinstance(mapped["test_acc"], np.float64) and isinstance(mapped["train_loss"], np.float32)
    assert list(mapped["state_dict"])[:2] == ["emb_l.0.weight", "emb_l.1.weight"]  # upstream's order
    assert mapped["state_dict"]._metadata["emb_l.0"] == {"version": 1}
    saved = io.BytesIO()
    torch.save(mapped, saved)
    ours, torchs = zipfile.ZipFile(path), zipfile.ZipFile(saved)
    assert ours.namelist() == torchs.namelist()  # archive/data.pkl, .format_version, ..., data/0..N
    assert ours.testzip() is None
    for name in ours.namelist():
        if not name.endswith("serialization_id"):
            assert ours.read(name) == torchs.read(name), name
    raw = path.read_bytes()
    for info in ours.infolist():  # every record's data 64-byte aligned, as torch writes them
        name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
        assert (info.header_offset + 30 + name_len + extra_len) % 64 == 0, info.filename


def test_same_seed_same_bytes(files: dict[str, Path], tmp_path: Path) -> None:
    again = write_synthetic_checkpoint(tmp_path / "again.pt", "kaggle", rows=ROWS, progress=False)
    assert again.read_bytes() == files["kaggle"].read_bytes()
    other = write_synthetic_checkpoint(tmp_path / "other.pt", "kaggle", rows=ROWS, seed=1, progress=False)
    assert other.read_bytes() != again.read_bytes()


def test_chunk_size_does_not_change_the_values(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(synth_checkpoint, "CHUNK_VALUES", 1000)  # chunks end mid-row, many per tensor
    small_chunks = write_synthetic_checkpoint(tmp_path / "chunks.pt", "kaggle", rows=ROWS, progress=False)
    assert small_chunks.read_bytes() == files["kaggle"].read_bytes()


def test_refuses_to_overwrite(files: dict[str, Path]) -> None:
    before = files["kaggle"].read_bytes()
    with pytest.raises(OutputExistsError, match="exists"):
        write_synthetic_checkpoint(files["kaggle"], "kaggle", rows=ROWS, progress=False)
    assert files["kaggle"].read_bytes() == before
    assert [p.name for p in files["kaggle"].parent.iterdir() if p.name.startswith(".")] == []


def test_sizes_and_bad_arguments(tmp_path: Path) -> None:
    assert synthetic_table_sizes("tb00_40M") == PUBLISHED_TABLE_SIZES["tb00_40M"]
    assert (
        max(synthetic_table_sizes("tb0875_10M", 1000)) == 1000
        and min(synthetic_table_sizes("kaggle", 5)) == 3
    )
    with pytest.raises(DlrmNbError, match="not one of"):
        write_synthetic_checkpoint(tmp_path / "x.pt", "tb_unknown", rows=5, progress=False)
    with pytest.raises(DlrmNbError, match="rows 0"):
        write_synthetic_checkpoint(tmp_path / "x.pt", "kaggle", rows=0, progress=False)
    assert not (tmp_path / "x.pt").exists()


def test_page_in_leaves_values_unchanged(files: dict[str, Path]) -> None:
    model, _ = load_checkpoint(files["tb0875_10M"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seconds = page_in(model, progress=False)
    assert isinstance(seconds, float) and seconds >= 0
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert page_in(DLRM(preset("kaggle").with_tables([3] * 26), device="meta"), progress=False) >= 0
