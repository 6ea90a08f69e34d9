"""Safe file writing: everything is written under a temporary name and renamed when complete."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import numpy as np

TEMP_MARK = ".tmp-"


def temp_name(path: str | os.PathLike) -> Path:
    """The temporary name ``path`` is written under before it is renamed into place."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and TEMP_MARK in name


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; rename it to ``path`` on success, delete it on failure."""
    final = Path(path)
    tmp = temp_name(final)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj: Any, *, sort_keys: bool = True) -> None:
    """Write ``obj`` as indented JSON (keys sorted unless ``sort_keys`` is false), atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n", encoding="utf-8")


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """``np.savez`` to ``path``, atomically."""
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        # the cast: mypy cannot tell that no array is named ``allow_pickle`` (savez's one keyword)
        np.savez(f, **cast("dict[str, Any]", arrays))


def save_npz_from_npy_files(path: str | os.PathLike, members: dict[str, Path]) -> None:
    """Build an uncompressed ``.npz`` (as ``np.savez`` makes) from ``.npy`` files on disk,
    streaming them, so arrays larger than memory can be stored."""
    with atomic_output(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, npy in members.items():
            zf.write(npy, arcname=f"{name}.npy")


def remove_stale_temps(folder: str | os.PathLike) -> list[str]:
    """Delete temporary files left by an interrupted run in ``folder``; return their names."""
    removed: list[str] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if entry.is_file() and is_temp_name(entry.name):
            entry.unlink()
            removed.append(entry.name)
    return removed
