"""Safe file writing, one rule for every output: write under a temporary name in the same
folder, check what was written, flush it to disk, then rename it into place.

A write that fails (disk full, file size limit, permission, interruption) never leaves a file
that looks finished and never replaces a good one: the temporary file is removed and the error
raised, as :class:`OutputWriteError` naming the file when the disk or a limit refused it.

The ``.npz`` files are byte-for-byte what ``np.savez`` makes (uncompressed, entries in the
order given, each dated 1980-01-01 00:00:00 with permissions ``rw-------``), so the same
arrays always give the same bytes.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

import numpy as np

from dlrm_nb.exceptions import DlrmNbError

TEMP_MARK = ".tmp-"
#: Fixed time stamp and attributes of every zip entry (np.savez's on Unix), for same-bytes outputs.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
ZIP_EXTERNAL_ATTR = 0o600 << 16
_ZIP_UNIX = 3  # ZipInfo.create_system of Unix: the same bytes whatever system writes the file
_COPY_BYTES = 1 << 20
_HINTS = {
    errno.ENOSPC: "the disk is full: free some space and rerun",
    errno.EDQUOT: "the disk quota is exhausted: free some space and rerun",
    errno.EFBIG: "the file is larger than the file size limit (ulimit -f) or the file system allows",
}
_UNKNOWN_HINT = "is the disk full, or the file size limit (ulimit -f) too small?"
_NOTHING_SAVED = "Nothing was saved under that name (a file there before is untouched)."


class OutputWriteError(DlrmNbError, OSError):
    """An output that could not be written completely (disk full, file size limit, a short
    write, a folder that refuses it); nothing was left under its name."""

    def __init__(self, path: str | os.PathLike, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.path = os.fspath(path)
        self.errno = code

    def __reduce__(self) -> tuple[Any, ...]:  # crosses process boundaries (Dask, multiprocessing)
        return (type(self), (self.path, str(self), self.errno))


def temp_name(path: str | os.PathLike) -> Path:
    """The temporary name ``path`` is written under before it is renamed into place."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and TEMP_MARK in name


# ----------------------------------------------------------------------------- the rule


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path (same folder) to write ``path`` under; when the body returns,
    fsync the temporary file, rename it to ``path`` and fsync the folder (best effort).

    On any error the temporary file is removed and the error raised again; disk-full and
    file-size-limit errors become :class:`OutputWriteError` naming ``path``.
    """
    final = Path(path)
    tmp = temp_name(final)
    try:
        try:
            yield tmp
        except OSError as exc:
            if exc.errno not in _HINTS or isinstance(exc, OutputWriteError):
                raise
            raise write_error(final, exc) from exc
        _commit(tmp, final)
    except BaseException:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def _commit(tmp: Path, final: Path) -> None:
    """fsync ``tmp``, rename it to ``final``, fsync the folder; errors name ``final``."""
    try:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except OSError as exc:
        raise write_error(final, exc) from exc
    _fsync_folder(final.parent)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (not every system can open a folder: best effort)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def _writing(final: Path) -> Iterator[None]:
    """Turn any ``OSError`` of the body (which only writes ``final``) into :func:`write_error`'s."""
    try:
        yield
    except OSError as exc:
        raise write_error(final, exc) from exc


def write_error(path: Path, exc: OSError) -> OutputWriteError:
    """The :class:`OutputWriteError` of an ``OSError`` met while writing ``path``."""
    if isinstance(exc, OutputWriteError):
        return exc
    reason = exc.strerror or str(exc)
    hint = _HINTS.get(exc.errno or 0) if exc.errno else _UNKNOWN_HINT
    message = f"could not write {path}: {reason}" + (f" ({hint})" if hint else "")
    return OutputWriteError(path, f"{message}. {_NOTHING_SAVED}", exc.errno)


def short_write(final: Path, what: str) -> OutputWriteError:
    """The error of an output that reads back other than it was written (``what`` says how)."""
    return OutputWriteError(
        final, f"could not write {final}: {what} ({_UNKNOWN_HINT}). {_NOTHING_SAVED}", errno.EIO
    )


def check_size(tmp: Path, expected: int, final: Path) -> None:
    """Raise :class:`OutputWriteError` (naming ``final``) unless ``tmp`` holds ``expected`` bytes."""
    actual = tmp.stat().st_size
    if actual != expected:
        raise short_write(final, f"{actual:,} of its {expected:,} bytes reached the disk")


# ----------------------------------------------------------------------------- text and bytes


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` under the rule (size checked)."""
    final = Path(path)
    with atomic_output(final) as tmp, _writing(final):
        with open(tmp, "wb") as f:
            f.write(data)
        check_size(tmp, len(data), final)


def write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` under the rule (size checked)."""
    write_bytes(path, text.encode(encoding))


def write_json(path: str | os.PathLike, obj: Any, *, sort_keys: bool = True) -> None:
    """Write ``obj`` as indented JSON (keys sorted unless ``sort_keys`` is false) under the rule."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n")


# ----------------------------------------------------------------------------- .npy


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """``np.save`` of ``array`` to ``path`` under the rule; the file is read back (its header
    and size) before it is renamed into place.

    ``np.save`` into an open file can lose a write error (a short array is buffered by C's
    stdio and the error of the final flush is not checked): without this check a full disk or
    ``ulimit -f`` leaves a truncated file that looks finished.
    """
    final = Path(path)
    array = np.asanyarray(array)
    with atomic_output(final) as tmp, _writing(final):
        with open(tmp, "wb") as f:
            np.lib.format.write_array(f, array, allow_pickle=False)
        check_npy(tmp, array, final)


def check_npy(tmp: Path, array: np.ndarray, final: Path) -> None:
    """Raise :class:`OutputWriteError` unless ``tmp`` is a complete ``.npy`` of ``array``'s
    shape and dtype."""
    with open(tmp, "rb") as f:
        try:
            shape, dtype = _read_npy_header(f)
        except (ValueError, EOFError) as exc:
            raise short_write(final, f"its header did not reach the disk whole ({exc})") from exc
        header_bytes = f.tell()
    if shape != array.shape or dtype != array.dtype:
        raise short_write(
            final, f"it reads back as {dtype} {list(shape)}, not {array.dtype} {list(array.shape)}"
        )
    check_size(tmp, header_bytes + array.nbytes, final)


def _read_npy_header(f: IO[bytes]) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the header of the ``.npy`` open in ``f``, leaving ``f`` just after
    it; ValueError or EOFError when it is short or not a ``.npy`` header."""
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = fmt.read_array_header_2_0(f)
    else:  # 3.0 (utf-8 field names, never ours): numpy's own reader, which leaves f after the data
        f.seek(0)
        loaded = np.load(f, allow_pickle=False)
        f.seek(f.tell() - loaded.nbytes)
        return loaded.shape, loaded.dtype
    return tuple(shape), dtype


# ----------------------------------------------------------------------------- .npz


def npz_entry(name: str) -> zipfile.ZipInfo:
    """The zip entry of array ``name``: ``name.npy``, uncompressed, fixed date and attributes."""
    info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE_TIME)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = ZIP_EXTERNAL_ATTR
    info.create_system = _ZIP_UNIX
    return info


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Uncompressed ``.npz`` of ``arrays`` (entries in the order given) under the rule; the
    bytes are ``np.savez``'s, the same for the same arrays, and the file is checked (size,
    entries, each entry's header and length) before it is renamed into place."""
    final = Path(path)
    values = {name: np.asanyarray(array) for name, array in arrays.items()}
    with atomic_output(final) as tmp, _writing(final):
        with open(tmp, "wb") as f:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                for name, array in values.items():
                    with zf.open(npz_entry(name), "w", force_zip64=True) as entry:
                        np.lib.format.write_array(entry, array, allow_pickle=False)
            written = f.tell()
        check_size(tmp, written, final)
        check_npz(tmp, {name: array.nbytes for name, array in values.items()}, final)


def save_npz_from_npy_files(path: str | os.PathLike, members: Mapping[str, Path]) -> None:
    """Build an uncompressed ``.npz`` (the bytes ``np.savez`` makes of the same arrays) from
    ``.npy`` files on disk, streaming them, so arrays larger than memory can be stored."""
    final = Path(path)
    sizes = {name: Path(npy).stat().st_size for name, npy in members.items()}
    with atomic_output(final) as tmp:
        with open(tmp, "wb") as f:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                for name, npy in members.items():
                    with zf.open(npz_entry(name), "w", force_zip64=True) as entry, open(npy, "rb") as src:
                        shutil.copyfileobj(src, entry, _COPY_BYTES)
            written = f.tell()
        check_size(tmp, written, final)
        check_npz(tmp, sizes, final, whole_entries=True)


def check_npz(tmp: Path, sizes: Mapping[str, int], final: Path, *, whole_entries: bool = False) -> None:
    """Raise :class:`OutputWriteError` unless the zip ``tmp`` holds exactly the entries of
    ``sizes``, in order, each a ``.npy`` of that many data bytes (or, ``whole_entries``, that
    many bytes in all). Reads the zip's directory and each entry's header only."""
    expected = [f"{name}.npy" for name in sizes]
    try:
        with zipfile.ZipFile(tmp) as zf:
            infos = zf.infolist()
            names = [info.filename for info in infos]
            if names != expected:
                raise zipfile.BadZipFile(f"holds entries {names}, expected {expected}")
            for info, size in zip(infos, sizes.values(), strict=True):
                _check_npz_entry(zf, info, size, whole_entries)
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as exc:
        if isinstance(exc, OutputWriteError):
            raise
        raise short_write(final, f"it does not read back as the zip that was written ({exc})") from exc


def _check_npz_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, size: int, whole_entries: bool) -> None:
    expected = size
    if not whole_entries:
        with zf.open(info) as entry:
            _read_npy_header(entry)
            expected += entry.tell()
    if info.file_size != expected:
        raise zipfile.BadZipFile(f"entry {info.filename} holds {info.file_size:,} bytes, not {expected:,}")


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
