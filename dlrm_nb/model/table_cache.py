"""The converted-model cache: a checkpoint's tables converted once, memory-mapped at every load.

Converting the published tables (12.6 or 96 GB of fp32) to bf16 or int8 row-wise takes minutes
and a second copy in memory, and every LoadGen process loads the model again. The cache writes
the converted tables once, with progress, to::

    <cache_dir, or the checkpoint's folder>/<checkpoint name>.tables/<precision>/
        weights.npy   fp32 or bf16 (stored as uint16) [R, D], or int8 rows fused: uint8 [R, D + 8]
        source.json   what it was made from: the checkpoint's size and mtime, table sizes, format

and memory-maps them afterwards, so the page cache holds them once for every process. The
checkpoint itself is only read. An entry whose ``source.json`` does not match the checkpoint
(changed since, another format version) or whose arrays do not load is made again; an entry is
written under a temporary name and renamed when complete, so a half-made one is never used.
The cache serves CPU engines (int8 rows in the fused layout of
:func:`~dlrm_nb.model.engine.fuse_rows`); CUDA engines convert at load.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlrm_nb.exceptions import DlrmNbError
from dlrm_nb.fileio import temp_name, write_json
from dlrm_nb.model.dlrm import DLRM
from dlrm_nb.model.engine import PACK_LIMIT_BYTES, PackedLayout, PackedTables, fill_packed, packed_layout
from dlrm_nb.model.settings import check_table_cache, check_table_precision
from dlrm_nb.progress import Progress, progress_bar

#: Bumped whenever what an entry holds changes; entries of another version are made again.
CACHE_FORMAT = 1
CACHE_SUFFIX = ".tables"
SOURCE_NAME = "source.json"
WEIGHTS_NAME = "weights.npy"
#: numpy has no bfloat16: bf16 rows are stored as their raw 16 bits.
_NUMPY_DTYPES = {torch.float32: np.float32, torch.bfloat16: np.uint16, torch.uint8: np.uint8}


@dataclass(frozen=True)
class CachedTables:
    """Packed tables read from (or just written to) a cache entry."""

    tables: PackedTables
    folder: Path
    reused: bool  # False when this load made the entry
    seconds: float  # to make or open it


def table_bytes(model: DLRM) -> int:
    """Bytes of the model's embedding tables as they are (fp32 in a checkpoint)."""
    return sum(t.weight.numel() * t.weight.element_size() for t in model.emb_l)


def wants_cache(
    mode: str,
    table_precision: str,
    device: torch.device | str,
    model: DLRM,
    limit_bytes: int = PACK_LIMIT_BYTES,
) -> bool:
    """Whether tables at ``table_precision`` on ``device`` come from the cache in ``mode`` (see
    :data:`~dlrm_nb.model.settings.TABLE_CACHE_MODES`; ``auto``: converted tables whose fp32 size
    is above ``limit_bytes``)."""
    check_table_cache(mode)
    if mode == "off" or torch.device(device).type != "cpu":
        return False
    return mode == "on" or (table_precision != "fp32" and table_bytes(model) > limit_bytes)


def entry_folder(
    checkpoint: str | os.PathLike, table_precision: str, cache_dir: str | os.PathLike | None = None
) -> Path:
    """The cache entry of ``checkpoint``'s tables at ``table_precision``."""
    checkpoint = Path(checkpoint).resolve()
    base = Path(cache_dir).expanduser().resolve() if cache_dir else checkpoint.parent
    return base / f"{checkpoint.name}{CACHE_SUFFIX}" / check_table_precision(table_precision)


def cached_tables(
    checkpoint: str | os.PathLike,
    model: DLRM,
    table_precision: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: Progress = True,
) -> CachedTables:
    """``model``'s tables (loaded from ``checkpoint``) packed at ``table_precision`` for the CPU,
    from the cache entry, made first when it is missing or stale. Float32 outputs; the engine
    picks its own activation dtype."""
    started = time.perf_counter()
    folder = entry_folder(checkpoint, table_precision, cache_dir)
    layout = packed_layout(model.arch.table_sizes, model.arch.embedding_dim, table_precision, fused=True)
    source = _source_record(Path(checkpoint), layout)
    tables = _open_entry(folder, layout, source)
    reused = tables is not None
    if tables is None:
        _make_entry(folder, model, layout, source, progress)
        tables = _open_entry(folder, layout, source)
        if tables is None:
            raise DlrmNbError(f"the converted-model cache {folder} was written but does not read back")
    return CachedTables(tables, folder, reused, time.perf_counter() - started)


def _source_record(checkpoint: Path, layout: PackedLayout) -> dict[str, Any]:
    stat = checkpoint.resolve().stat()
    return {
        "format": CACHE_FORMAT,
        "checkpoint": str(checkpoint.resolve()),
        "checkpoint_bytes": stat.st_size,
        "checkpoint_mtime_ns": stat.st_mtime_ns,
        "layout": {**asdict(layout), "sizes": list(layout.sizes)},
    }


def _open_entry(folder: Path, layout: PackedLayout, source: dict[str, Any]) -> PackedTables | None:
    """The entry's tables, memory-mapped; None when it is missing, stale or unreadable."""
    try:
        recorded = json.loads((folder / SOURCE_NAME).read_text(encoding="utf-8"))
        if recorded != source:
            return None
        # copy-on-write mapping: reads share the page cache, and torch gets a writable array
        weights = np.load(folder / WEIGHTS_NAME, mmap_mode="c")
    except (OSError, ValueError):
        return None
    expected = np.dtype(_NUMPY_DTYPES[layout.weights_dtype])
    if weights.shape != layout.weights_shape or weights.dtype != expected:
        return None
    tensor = torch.from_numpy(weights).view(layout.weights_dtype)
    return PackedTables.from_packed(tensor, None, layout.offsets())


def _make_entry(
    folder: Path, model: DLRM, layout: PackedLayout, source: dict[str, Any], progress: Progress
) -> None:
    """Write the entry under a temporary name, then rename it into place (replacing a stale one)."""
    needed = int(np.prod(layout.weights_shape)) * layout.weights_dtype.itemsize
    tmp = temp_name(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        _check_space(folder.parent, needed)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        _write_weights(tmp / WEIGHTS_NAME, model, layout, progress)
        write_json(tmp / SOURCE_NAME, source)
        if folder.exists():  # stale: ours to replace (the cache is made by this package only)
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except PermissionError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DlrmNbError(
            f"cannot write the converted-model cache {folder} ({exc.strerror}); set table_cache_dir to a "
            "writable folder, or table_cache to off (tables are then converted in memory at each load)"
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DlrmNbError(
            f"the converted-model cache needs {needed / 2**30:.1f} GiB in {folder}, which has "
            f"{free / 2**30:.1f} GiB free; set table_cache_dir to a folder with room, or table_cache to off"
        )


def _write_weights(path: Path, model: DLRM, layout: PackedLayout, progress: Progress) -> None:
    """Convert the tables straight into a memory-mapped ``.npy``, then flush it to disk."""
    dtype = _NUMPY_DTYPES[layout.weights_dtype]
    mapped = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=layout.weights_shape)
    weights = torch.from_numpy(mapped).view(layout.weights_dtype)
    tables = [table.weight for table in model.emb_l]
    with progress_bar(
        progress, total=layout.rows, unit=" rows", unit_scale=True, desc=f"cache {layout.precision} tables"
    ) as bar:
        fill_packed(tables, weights, None, layout.precision, on_rows=bar.update)
    mapped.flush()
    del weights, mapped
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
