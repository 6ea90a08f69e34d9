"""Synthetic DLRM checkpoints at the published sizes, streamed to disk.

The published MLPerf checkpoints are large (``tb0875_10M`` 12.6 GB, ``tb00_40M`` 96 GB of fp32
tables) and not always at hand; a file of the same architecture and table sizes with random
weights exercises everything that depends on size (loading memory-mapped, paging in, memory
budgets, gathers from big tables) without them. Predictions from it mean nothing.

The file is what ``torch.save`` makes of an upstream checkpoint dict (``state_dict`` with upstream
key names plus training metadata: see DESIGN.md §4), so :func:`dlrm_nb.model.checkpoint.load_checkpoint`
and upstream code read it. ``torch.save`` needs every tensor in memory, so the archive is written
here instead, in torch's zip layout (``torch/serialization.py`` ``_save``; records
``archive/data.pkl``, ``.format_version``, ``.storage_alignment``, ``byteorder``,
``data/<key>``, ``version``, ``.data/serialization_id``; stored, not compressed; every record's
data 64-byte aligned so ``torch.load(..., mmap=True)`` maps the tables), each table generated
and written in chunks of :data:`CHUNK_VALUES` values: memory use stays near one chunk whatever
the file's size.

Weights as upstream's ``DLRM_Net`` initializes them: table rows U(-sqrt(1/n), sqrt(1/n)) for a
table of n rows; Linear weights N(0, sqrt(2/(fan_in + fan_out))), biases N(0, sqrt(1/fan_out)).
Every tensor draws from its own numpy PCG64 stream seeded by ``(seed, tensor number)``, so a
file is a function of (arch, rows, seed) alone: the same arguments give the same bytes.
"""

from __future__ import annotations

import collections
import hashlib
import io
import itertools
import os
import pickle
import struct
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlrm_nb.data.synthetic import CAT_BASE_CARDINALITY
from dlrm_nb.exceptions import DlrmNbError, OutputExistsError
from dlrm_nb.fileio import atomic_output
from dlrm_nb.model.dlrm import PUBLISHED_TABLE_SIZES, DlrmArch, preset
from dlrm_nb.progress import Progress, progress_bar

#: Values generated and written at a time (64 MiB of float32): the writer's memory high-water mark.
CHUNK_VALUES = 1 << 24
#: Alignment of every record's data in the archive (torch's ``_get_storage_alignment``).
ALIGNMENT = 64
#: The archive's folder name (what ``torch.save`` uses when writing to a file object).
ARCHIVE = "archive"
#: The pickle protocol ``torch.save`` uses.
PICKLE_PROTOCOL = 2
#: Zip extra-field id torch pads local headers with ("FB").
_PAD_ID = 0x4246

#: Table sizes used when ``rows`` is None: the published checkpoints' (DESIGN.md §4); for Kaggle,
#: which has no published MLPerf checkpoint, the distinct values per feature of the real Kaggle
#: data (upstream's table sizes without max_ind_range).
FULL_TABLE_SIZES: dict[str, tuple[int, ...]] = {**PUBLISHED_TABLE_SIZES, "kaggle": CAT_BASE_CARDINALITY}


def synthetic_table_sizes(arch: str, rows: int | None = None) -> tuple[int, ...]:
    """Rows per table of a synthetic ``arch`` checkpoint: the full sizes, each capped at ``rows``."""
    preset(arch)  # refuses unknown names, listing the known ones
    if arch not in FULL_TABLE_SIZES:
        raise DlrmNbError(f"no published table sizes for {arch!r}; known: {', '.join(FULL_TABLE_SIZES)}")
    if rows is not None and rows < 1:
        raise DlrmNbError(f"rows {rows} is not valid: at least 1 row per table, or None for the full sizes")
    full = FULL_TABLE_SIZES[arch]
    return full if rows is None else tuple(min(n, rows) for n in full)


def synthetic_arch(arch: str, rows: int | None = None) -> DlrmArch:
    """The architecture a synthetic ``arch`` checkpoint with ``rows`` has."""
    return preset(arch).with_tables(synthetic_table_sizes(arch, rows))


def write_synthetic_checkpoint(
    out: str | os.PathLike,
    arch: str,
    rows: int | None = None,
    seed: int = 0,
    progress: Progress = True,
) -> Path:
    """Write a checkpoint of architecture ``arch`` (a preset name) with random weights to ``out``.

    ``rows`` None gives the published table sizes (``tb0875_10M`` 12.6 GB, ``tb00_40M`` 96 GB);
    a number caps every table at that many rows (a small file with the published layer shapes).
    Streams to disk in chunks (memory stays near :data:`CHUNK_VALUES` x 4 bytes), with a progress
    bar in bytes; deterministic for a seed; written under a temporary name and renamed when
    complete. Refuses to replace an existing file (:class:`OutputExistsError`). Returns ``out``.
    """
    out = Path(out)
    if out.exists():
        raise OutputExistsError(f"{out} exists; remove it or choose another name")
    model_arch = synthetic_arch(arch, rows)
    tensors = _tensor_specs(model_arch)
    total = sum(t.nbytes for t in tensors)
    free = _free_bytes(out.parent)
    if free is not None and free < total + (1 << 20):
        raise DlrmNbError(
            f"{out.parent} has {free / 1e9:.1f} GB free; the {arch} checkpoint needs {total / 1e9:.1f} GB"
        )
    with atomic_output(out) as tmp:
        _write_archive(tmp, tensors, _record(tensors, arch, rows, seed), seed, progress, out.name)
    return out


@dataclass(frozen=True)
class _TensorSpec:
    """One fp32 tensor of the file: its state_dict key, shape and how its values are drawn."""

    key: str
    shape: tuple[int, ...]
    low_high: tuple[float, float] | None = None  # uniform(low, high); else normal(0, std)
    std: float = 0.0

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return 4 * self.numel

    def chunks(self, seed: int, number: int) -> Iterator[np.ndarray]:
        """The values, float32, in chunks of at most CHUNK_VALUES (row-major order)."""
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, number])))
        buffer = np.empty(min(self.numel, CHUNK_VALUES), dtype=np.float32)
        for start in range(0, self.numel, CHUNK_VALUES):
            chunk = buffer[: min(CHUNK_VALUES, self.numel - start)]
            if self.low_high is not None:
                low, high = self.low_high
                rng.random(out=chunk, dtype=np.float32)
                chunk *= np.float32(high - low)
                chunk += np.float32(low)
            else:
                rng.standard_normal(out=chunk, dtype=np.float32)
                chunk *= np.float32(self.std)
            yield chunk


def _tensor_specs(arch: DlrmArch) -> list[_TensorSpec]:
    """Upstream's state_dict order and names: emb_l.*, bot_l.*, top_l.* (Linear at even indices)."""
    specs = [
        _TensorSpec(
            f"emb_l.{j}.weight", (n, arch.embedding_dim), (-float(np.sqrt(1 / n)), float(np.sqrt(1 / n)))
        )
        for j, n in enumerate(arch.table_sizes)
    ]
    for prefix, widths in (("bot_l", arch.bottom), ("top_l", arch.top)):
        for k, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
            std_w = float(np.sqrt(2 / (fan_in + fan_out)))
            specs.append(_TensorSpec(f"{prefix}.{2 * k}.weight", (fan_out, fan_in), std=std_w))
            specs.append(_TensorSpec(f"{prefix}.{2 * k}.bias", (fan_out,), std=float(np.sqrt(1 / fan_out))))
    return specs


def _module_versions(arch: DlrmArch) -> collections.OrderedDict[str, dict[str, int]]:
    """The state_dict's ``_metadata`` as upstream's ``DLRM_Net`` has it (module -> version)."""
    names = ["", "emb_l", *(f"emb_l.{j}" for j in range(len(arch.table_sizes)))]
    for prefix, widths in (("bot_l", arch.bottom), ("top_l", arch.top)):
        names += [prefix, *(f"{prefix}.{k}" for k in range(2 * (len(widths) - 1)))]
    names.append("loss_fn")
    return collections.OrderedDict((name, {"version": 1}) for name in names)


class _StorageRef:
    """Stands for a tensor's storage in the pickle (written as torch's persistent id)."""

    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


class _TensorRef:
    """Pickles as ``torch.save`` pickles a contiguous CPU fp32 tensor, without holding its data."""

    def __init__(self, storage: _StorageRef, shape: tuple[int, ...]) -> None:
        self.storage, self.shape = storage, shape

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        strides = tuple(int(np.prod(self.shape[i + 1 :])) for i in range(len(self.shape)))
        args: tuple[Any, ...] = (self.storage, 0, self.shape, strides, False, collections.OrderedDict())
        return torch._utils._rebuild_tensor_v2, args


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _StorageRef):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def _record(tensors: Sequence[_TensorSpec], arch: str, rows: int | None, seed: int) -> dict[str, Any]:
    """The checkpoint dict, laid out as upstream's trainer saves it, tensors as references."""
    state: collections.OrderedDict[str, Any] = collections.OrderedDict(
        (spec.key, _TensorRef(_StorageRef(str(number), spec.numel), spec.shape))
        for number, spec in enumerate(tensors)
    )
    state._metadata = _module_versions(synthetic_arch(arch, rows))  # type: ignore[attr-defined]
    return {
        "nepochs": 0,
        "nbatches": 0,
        "nbatches_test": 0,
        "state_dict": state,
        "test_acc": np.float64(0.0),
        "epoch": 0,
        "iter": 0,
        "train_loss": np.float32(0.0),
        "total_loss": 0,
        "opt_state_dict": {"state": {}, "param_groups": []},
        "synthetic": {"arch": arch, "rows": rows, "seed": seed},
    }


def _pickled(record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=PICKLE_PROTOCOL).dump(record)
    return buffer.getvalue()


def _write_archive(
    path: Path,
    tensors: Sequence[_TensorSpec],
    record: dict[str, Any],
    seed: int,
    progress: Progress,
    label: str,
) -> None:
    total = sum(t.nbytes for t in tensors)
    crcs = hashlib.sha256()
    with (
        open(path, "wb") as f,
        zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf,
        progress_bar(progress, total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label) as bar,
    ):

        def write(name: str, chunks: Iterable[bytes | np.ndarray], size: int) -> None:
            info = _aligned_info(f.tell(), f"{ARCHIVE}/{name}", size)
            with zf.open(info, "w") as entry:
                if f.tell() % ALIGNMENT:  # only if zipfile changed how it writes headers
                    raise AssertionError(f"record {name} is not {ALIGNMENT}-byte aligned")
                for chunk in chunks:
                    view = (chunk.data if isinstance(chunk, np.ndarray) else memoryview(chunk)).cast("B")
                    entry.write(view)
                    if isinstance(chunk, np.ndarray):
                        bar.update(len(view))
            crcs.update(f"{name}:{info.CRC:08x};".encode())

        def small(name: str, data: bytes) -> None:
            write(name, [data], len(data))

        small("data.pkl", _pickled(record))
        small(".format_version", b"1")
        small(".storage_alignment", str(ALIGNMENT).encode())
        small("byteorder", sys.byteorder.encode())
        for number, spec in enumerate(tensors):
            write(f"data/{number}", spec.chunks(seed, number), spec.nbytes)
        small("version", b"3\n")
        # torch's id is 40 digits derived from the records' names and CRCs: so is this one
        small(
            ".data/serialization_id", f"{int.from_bytes(crcs.digest()[:17], 'little') % 10**40:040d}".encode()
        )


def _aligned_info(offset: int, name: str, size: int) -> zipfile.ZipInfo:
    """A ZipInfo whose local header is padded (torch's "FB" extra field) so the data it precedes
    starts at a multiple of ALIGNMENT (``offset``: where the header goes); the date is fixed, so
    the bytes depend on the content only."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.file_size, info.compress_size, info.CRC = size, 0, 0  # the CRC is filled in on close
    info.external_attr = 0o644 << 16
    zip64 = size * 1.05 > zipfile.ZIP64_LIMIT  # as ZipFile.open(mode="w") decides
    header = len(info.FileHeader(zip64))
    pad = (-(offset + header + 4)) % ALIGNMENT
    info.extra = struct.pack("<HH", _PAD_ID, pad) + b"Z" * pad
    return info


def _free_bytes(folder: Path) -> int | None:
    try:
        stat = os.statvfs(folder)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize
