"""The converted-model cache: made once, reused, rebuilt when stale, and the checkpoint untouched."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from dlrm_nb.data.criteo import N_CAT, N_DENSE
from dlrm_nb.exceptions import DlrmNbError, InvalidValueError
from dlrm_nb.model.checkpoint import load_checkpoint, save_checkpoint
from dlrm_nb.model.dlrm import DLRM, preset
from dlrm_nb.model.inference import Predictor, PredictorSettings, load_predictor
from dlrm_nb.model.settings import TABLE_PRECISIONS
from dlrm_nb.model.table_cache import (
    CACHE_SUFFIX,
    SOURCE_NAME,
    WEIGHTS_NAME,
    cached_tables,
    entry_folder,
    table_bytes,
    wants_cache,
)


def fingerprint(path: Path) -> tuple[str, int, int]:
    """Content hash, size and mtime: what 'never changed' means for the original checkpoint."""
    stat = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), stat.st_size, stat.st_mtime_ns


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = DLRM(preset("tb00_40M").with_tables([40 + 3 * j for j in range(N_CAT)])).eval()
    path = tmp_path / "models" / "small.pt"
    path.parent.mkdir()
    save_checkpoint(model, path)
    return path


def inputs(sizes: tuple[int, ...], batch: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    dense = torch.rand(batch, N_DENSE, generator=generator).mul(4)
    ids = torch.stack([torch.randint(0, n, (batch,), generator=generator) for n in sizes], dim=1)
    return dense, ids


@pytest.mark.parametrize("table_precision", TABLE_PRECISIONS)
def test_cached_tables_predict_exactly_as_tables_converted_in_memory(
    checkpoint: Path, table_precision: str
) -> None:
    model, _ = load_checkpoint(checkpoint)
    cached = cached_tables(checkpoint, model, table_precision, progress=False)
    assert not cached.reused
    assert cached.folder == checkpoint.parent / f"small.pt{CACHE_SUFFIX}" / table_precision
    dense, ids = inputs(model.arch.table_sizes)
    from_cache = Predictor(model, precision="fp32", table_precision=table_precision, tables=cached.tables)
    in_memory = Predictor(model, precision="fp32", table_precision=table_precision)
    torch.testing.assert_close(from_cache.predict(dense, ids), in_memory.predict(dense, ids), rtol=0, atol=0)


def test_second_load_reuses_the_entry_and_the_checkpoint_is_never_changed(checkpoint: Path) -> None:
    before = fingerprint(checkpoint)
    model, _ = load_checkpoint(checkpoint)
    first = cached_tables(checkpoint, model, "int8", progress=False)
    weights = first.folder / WEIGHTS_NAME
    made = weights.stat().st_mtime_ns, weights.stat().st_ino
    second = cached_tables(checkpoint, load_checkpoint(checkpoint)[0], "int8", progress=False)
    assert (first.reused, second.reused) == (False, True)
    assert (weights.stat().st_mtime_ns, weights.stat().st_ino) == made
    # fused int8 rows: D values + an fp32 scale and bias per row, memory-mapped from the file
    assert tuple(second.tables.weights.shape) == (sum(model.arch.table_sizes), model.arch.embedding_dim + 8)
    assert second.tables.weights.dtype == torch.uint8
    assert fingerprint(checkpoint) == before
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["small.pt", f"small.pt{CACHE_SUFFIX}"]
    assert sorted(p.name for p in first.folder.iterdir()) == [SOURCE_NAME, WEIGHTS_NAME]
    source = json.loads((first.folder / SOURCE_NAME).read_text())
    assert source["checkpoint_bytes"] == checkpoint.stat().st_size
    assert source["layout"]["precision"] == "int8" and source["layout"]["fused"] is True


def test_a_changed_checkpoint_or_a_damaged_entry_is_made_again(checkpoint: Path) -> None:
    model, _ = load_checkpoint(checkpoint)
    folder = cached_tables(checkpoint, model, "bf16", progress=False).folder
    stat = checkpoint.stat()
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # e.g. a new download
    assert not cached_tables(checkpoint, model, "bf16", progress=False).reused
    assert cached_tables(checkpoint, model, "bf16", progress=False).reused
    weights = folder / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:1000])  # cut short (a full disk, a copy interrupted)
    again = cached_tables(checkpoint, model, "bf16", progress=False)
    assert not again.reused
    assert weights.stat().st_size > 1000


def test_a_left_over_temporary_entry_is_ignored_and_replaced(checkpoint: Path) -> None:
    folder = entry_folder(checkpoint, "int8")
    leftover = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    leftover.mkdir(parents=True)
    (leftover / WEIGHTS_NAME).write_bytes(b"half")
    cached = cached_tables(checkpoint, load_checkpoint(checkpoint)[0], "int8", progress=False)
    assert not cached.reused and not leftover.exists()
    assert sorted(p.name for p in folder.parent.iterdir()) == ["int8"]


def test_cache_dir_keeps_the_checkpoint_folder_as_it_was(checkpoint: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cached = cached_tables(
        checkpoint, load_checkpoint(checkpoint)[0], "int8", cache_dir=cache, progress=False
    )
    assert cached.folder == cache / f"small.pt{CACHE_SUFFIX}" / "int8"
    assert [p.name for p in checkpoint.parent.iterdir()] == ["small.pt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_cache_folder_names_the_ways_out(checkpoint: Path) -> None:
    checkpoint.parent.chmod(0o555)
    try:
        with pytest.raises(DlrmNbError, match=r"table_cache_dir .*table_cache to off"):
            cached_tables(checkpoint, load_checkpoint(checkpoint)[0], "int8", progress=False)
    finally:
        checkpoint.parent.chmod(0o755)


def test_an_entry_that_would_not_fit_the_disk_is_refused_before_writing(checkpoint: Path) -> None:
    free = np.int64(os.statvfs(checkpoint.parent).f_bavail) * os.statvfs(checkpoint.parent).f_frsize
    huge = DLRM(preset("tb00_40M").with_tables([int(free // 64) + 1] * N_CAT), device="meta")
    with pytest.raises(DlrmNbError, match=r"needs [\d.]+ GiB in .* GiB free"):
        cached_tables(checkpoint, huge, "fp32", progress=False)
    assert not entry_folder(checkpoint, "fp32").exists()


def test_auto_caches_converted_tables_above_the_pack_limit_on_the_cpu_only(checkpoint: Path) -> None:
    model, _ = load_checkpoint(checkpoint)
    small, large = table_bytes(model) + 1, table_bytes(model) - 1  # limits around this model's size
    assert not wants_cache("auto", "int8", "cpu", model, limit_bytes=small)
    assert wants_cache("auto", "int8", "cpu", model, limit_bytes=large)
    assert wants_cache("auto", "bf16", "cpu", model, limit_bytes=large)
    assert not wants_cache("auto", "fp32", "cpu", model, limit_bytes=large)  # used where it lies
    assert not wants_cache("auto", "int8", "cuda", model, limit_bytes=large)
    assert wants_cache("on", "fp32", "cpu", model, limit_bytes=small)
    assert not wants_cache("off", "int8", "cpu", model, limit_bytes=large)
    with pytest.raises(InvalidValueError, match=r"table_cache.*'sometimes'.*auto, on, off"):
        wants_cache("sometimes", "int8", "cpu", model)


def test_load_predictor_uses_the_cache_when_asked(checkpoint: Path) -> None:
    settings = PredictorSettings(precision="bf16", table_precision="int8", table_cache="on")
    cached = load_predictor(checkpoint, settings, progress=False)
    assert entry_folder(checkpoint, "int8").is_dir()
    plain = load_predictor(
        checkpoint, PredictorSettings(precision="bf16", table_precision="int8"), progress=False
    )
    dense, ids = inputs(cached.arch.table_sizes)
    torch.testing.assert_close(cached.predict(dense, ids), plain.predict(dense, ids), rtol=0, atol=0)
