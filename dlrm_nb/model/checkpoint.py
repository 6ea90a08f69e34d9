"""DLRM checkpoints: loaded safely and memory-mapped, saved in upstream's layout.

Upstream files (``tb00_40M.pt``, ``tb0875_10M.pt``, what ``dlrm_s_pytorch.py`` writes) are a
``torch.save``'d dict with ``state_dict`` and training metadata holding numpy scalars; a bare
``state_dict`` is accepted too. Loading never runs code from the file: ``torch.load`` with
``weights_only=True`` and exactly the numpy types such files need allowed. Zip-format files are
memory-mapped (a 96 GB checkpoint loads in a few hundred MB of RAM); old-format files (a pickle
that starts with torch's magic number) are converted once, beside the original, to a format that
maps. Anything else (a truncated file, a zip that is not a checkpoint, another kind of file) is
refused with one message naming the file, before anything is converted or written.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlrm_nb.exceptions import CheckpointError
from dlrm_nb.fileio import atomic_output
from dlrm_nb.model.dlrm import DLRM, DlrmArch

#: Globals upstream checkpoints pickle besides tensors (numpy scalars in the metadata), under
#: numpy 2 names and the numpy 1 names older files carry.
_NUMPY_SCALAR = getattr(np, "_core", np).multiarray.scalar
SAFE_GLOBALS = [
    _NUMPY_SCALAR,
    (_NUMPY_SCALAR, "numpy.core.multiarray.scalar"),
    np.dtype,
    np.dtypes.Float64DType,
    np.dtypes.Float32DType,
    np.dtypes.Int64DType,
    np.dtypes.Int32DType,
]
CONVERTED_SUFFIX = ".mmap.pt"
#: torch's old (non-zip) format: a pickle (protocol byte 0x80) whose first object is this number.
_LEGACY_MAGIC = b"\x8a\x0a" + torch.serialization.MAGIC_NUMBER.to_bytes(10, "little")
_ZIP_LOCAL_HEADER = b"PK\x03\x04"
_NOT_READABLE = "is not a readable torch checkpoint"


def load_state_dict(path: str | os.PathLike, *, mmap: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint's tensors (memory-mapped when possible) and its metadata.

    Returns ``(state_dict, metadata)``: metadata holds the other top-level entries of an
    upstream checkpoint (numpy scalars as Python numbers), empty for a bare state_dict.
    Raises :class:`CheckpointError` naming the file when it is not a torch checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise CheckpointError(f"checkpoint {path} {what}; give a .pt file")
    if file_format(path) == "legacy" and mmap:
        path = _converted_to_zip(path)
    return _split(path, _torch_load(path, mmap=mmap))


def file_format(path: Path) -> str:
    """``"zip"`` (torch's format) or ``"legacy"`` (torch's old format); anything else raises
    :class:`CheckpointError` saying what the file looks like."""
    with open(path, "rb") as f:
        head = f.read(64)
    if zipfile.is_zipfile(path):
        _check_torch_zip(path)
        return "zip"
    if head.startswith(_ZIP_LOCAL_HEADER):
        raise CheckpointError(
            f"{path} {_NOT_READABLE}: it starts like torch's zip format but its end is missing "
            "(truncated: an interrupted download or copy?); copy it again"
        )
    if head[:1] == b"\x80" and _LEGACY_MAGIC in head[:32]:
        return "legacy"
    what = "it is empty" if not head else "it is neither torch's zip format nor its old format"
    raise CheckpointError(
        f"{path} {_NOT_READABLE}: {what} (truncated, or a file of another kind); give a file torch.save wrote"
    )


def _check_torch_zip(path: Path) -> None:
    """A zip file torch.save wrote holds ``<name>/data.pkl``."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} {_NOT_READABLE}: a damaged zip file ({exc})") from None
    if not any(name.endswith("/data.pkl") for name in names):
        raise CheckpointError(
            f"{path} {_NOT_READABLE}: it is a zip file, but not one torch.save wrote (it has no data.pkl)"
        )


def _torch_load(path: Path, *, mmap: bool) -> Any:
    """``torch.load`` of tensors and the numpy scalars upstream checkpoints carry, nothing else;
    a file that does not load is one CheckpointError naming it."""
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise CheckpointError(f"{path} {_NOT_READABLE} (truncated?): {_first_line(exc)}") from None
        raise CheckpointError(
            f"refused to load {path}: it holds objects other than tensors and the numpy scalars "
            f"upstream checkpoints carry, and unpickling them could run code ({_first_line(exc)}). "
            "Only load checkpoints from sources you trust, converted to plain tensors."
        ) from None
    except (RuntimeError, EOFError, ValueError, KeyError, zipfile.BadZipFile, struct.error) as exc:
        raise CheckpointError(f"{path} {_NOT_READABLE} (truncated or damaged?): {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    for line in text:
        if "GLOBAL" in line or "Unsupported" in line:
            return line.strip()
    return text[0] if text else type(exc).__name__


def _split(path: Path, obj: Any) -> tuple[dict[str, torch.Tensor], dict]:
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        metadata = {k: _plain(v) for k, v in obj.items() if k not in ("state_dict", "opt_state_dict")}
        state = obj["state_dict"]
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        metadata, state = {}, obj
    else:
        raise CheckpointError(
            f"{path} is neither an upstream checkpoint (a dict with 'state_dict') nor a state_dict"
        )
    return dict(state), metadata


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _converted_to_zip(path: Path) -> Path:
    """Old (non-zip) torch files cannot be memory-mapped: convert once, beside the original
    (written under a temporary name and renamed when complete; a file that does not load is
    refused before anything is written)."""
    target = path.with_name(path.name + CONVERTED_SUFFIX)
    if target.exists() and target.stat().st_mtime >= path.stat().st_mtime:
        return target
    print(
        f"{path} is in torch's old file format, which cannot be memory-mapped: converting it once to "
        f"{target} (this reads the whole file into memory one time)",
        file=sys.stderr,
    )
    obj = _torch_load(path, mmap=False)
    with atomic_output(target) as tmp:
        torch.save(obj, tmp)
    return target


def infer_arch(state: dict[str, torch.Tensor]) -> DlrmArch:
    """The architecture a state_dict describes (upstream key names)."""
    tables: list[torch.Tensor] = []
    while f"emb_l.{len(tables)}.weight" in state:
        tables.append(state[f"emb_l.{len(tables)}.weight"])
    if not tables:
        raise CheckpointError("the checkpoint has no emb_l.0.weight: not a DLRM state_dict")
    return DlrmArch(
        embedding_dim=int(tables[0].shape[1]),
        bottom=_mlp_widths(state, "bot_l"),
        top=_mlp_widths(state, "top_l"),
        table_sizes=tuple(int(t.shape[0]) for t in tables),
    )


def _mlp_widths(state: dict[str, torch.Tensor], prefix: str) -> tuple[int, ...]:
    weights = sorted(
        (int(key.split(".")[1]), tensor)
        for key, tensor in state.items()
        if key.startswith(prefix + ".") and key.endswith(".weight")
    )
    if not weights:
        raise CheckpointError(f"the checkpoint has no {prefix}.*.weight")
    return (int(weights[0][1].shape[1]), *(int(w.shape[0]) for _, w in weights))


def check_fits(state: dict[str, torch.Tensor], arch: DlrmArch) -> None:
    """Every key the model has, with the same shape, and nothing else; errors name the key."""
    expected = {key: tuple(t.shape) for key, t in DLRM(arch, device="meta").state_dict().items()}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing:
        raise CheckpointError(
            f"the checkpoint lacks {missing[0]} (shape {list(expected[missing[0]])})"
            + (f" and {len(missing) - 1} more keys" if len(missing) > 1 else "")
        )
    if extra:
        raise CheckpointError(
            f"the checkpoint has {extra[0]} (shape {list(state[extra[0]].shape)}), "
            "which this architecture does not have"
        )
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise CheckpointError(
                f"checkpoint key {key} has shape {list(state[key].shape)}, the model expects {list(shape)}"
            )


def load_checkpoint(
    path: str | os.PathLike, arch: DlrmArch | None = None, *, mmap: bool = True
) -> tuple[DLRM, dict]:
    """Build a DLRM from a checkpoint without copying its tensors (they stay memory-mapped).

    ``arch`` (e.g. a preset with the data's table sizes) is checked against the file;
    without it the architecture is inferred from the tensors' shapes.
    """
    state, metadata = load_state_dict(path, mmap=mmap)
    arch = arch if arch is not None else infer_arch(state)
    check_fits(state, arch)
    model = DLRM(arch, device="meta")
    model.load_state_dict(state, assign=True)  # the file's (mapped) tensors become the parameters
    return model.eval(), metadata


def save_checkpoint(
    model: DLRM, path: str | os.PathLike, *, overwrite: bool = False, **metadata: Any
) -> None:
    """Save in upstream's layout (a dict with ``state_dict`` and training metadata), atomically,
    so upstream code loads it too. An existing file is replaced only with ``overwrite``."""
    if Path(path).exists() and not overwrite:
        raise CheckpointError(f"{path} exists; choose another name or pass overwrite=True")
    record = {
        "nepochs": int(metadata.pop("nepochs", 1)),
        "nbatches": int(metadata.pop("nbatches", 0)),
        "nbatches_test": int(metadata.pop("nbatches_test", 0)),
        "state_dict": {
            key: t.detach().to("cpu", torch.float32).contiguous() for key, t in model.state_dict().items()
        },
        "test_acc": np.float64(metadata.pop("test_acc", 0.0)),
        "epoch": int(metadata.pop("epoch", 0)),
        "iter": int(metadata.pop("iter", 0)),
        "train_loss": np.float32(metadata.pop("train_loss", 0.0)),
        "total_loss": int(metadata.pop("total_loss", 0)),
        "opt_state_dict": {"state": {}, "param_groups": []},
    }
    record.update(metadata)
    with atomic_output(path) as tmp:
        torch.save(record, tmp)


def check_pair(table_sizes: Sequence[int], counts: np.ndarray, data_dir: str | os.PathLike) -> None:
    """Every id the data holds must have a row in the model's table (ranks < counts[j]); the
    error names the first table that is too small."""
    if len(table_sizes) != len(counts):
        raise CheckpointError(
            f"the checkpoint does not fit {data_dir}: it has {len(table_sizes)} embedding tables, "
            f"the data {len(counts)} categorical features"
        )
    for j, (rows, count) in enumerate(zip(table_sizes, counts, strict=True)):
        if count > rows:
            raise CheckpointError(
                f"the checkpoint does not fit {data_dir}: feature C{j + 1} has {int(count):,} distinct "
                "values "
                f"but embedding table {j} only {int(rows):,} rows (was the data prepared with another "
                "max_ind_range or sub-sampling rate than the model?)"
            )
