"""The one rule for every output (temporary name, checked, flushed, renamed) and same arrays, same bytes."""

from __future__ import annotations

import errno
import io
import os
import pickle
import re
import resource
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dlrm_nb import fileio
from dlrm_nb.exceptions import DlrmNbError
from dlrm_nb.fileio import (
    OutputWriteError,
    atomic_output,
    check_npz,
    is_temp_name,
    save_npy,
    save_npz,
    save_npz_from_npy_files,
    write_error,
    write_json,
)

GOOD = b"a good file, made before\n"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if is_temp_name(p.name))


def savez_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


ARRAYS = {"X_cat": np.arange(12, dtype=np.int32).reshape(3, 4), "y": np.linspace(0, 1, 5)}


# ----------------------------------------------------------------------------- same bytes


def test_save_npz_makes_the_bytes_of_np_savez_every_time(tmp_path: Path) -> None:
    save_npz(tmp_path / "a.npz", **ARRAYS)
    save_npz(tmp_path / "b.npz", **ARRAYS)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes() == savez_bytes(**ARRAYS)
    with zipfile.ZipFile(tmp_path / "a.npz") as zf:
        infos = zf.infolist()
    assert [info.filename for info in infos] == ["X_cat.npy", "y.npy"]  # the order given
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {info.external_attr for info in infos} == {0o600 << 16}
    assert {info.compress_type for info in infos} == {zipfile.ZIP_STORED}
    with np.load(tmp_path / "a.npz") as loaded:
        np.testing.assert_array_equal(loaded["X_cat"], ARRAYS["X_cat"])
        np.testing.assert_array_equal(loaded["y"], ARRAYS["y"])


def test_npz_from_npy_files_is_np_savez_whatever_the_files_times(tmp_path: Path) -> None:
    files = {}
    for name, array in ARRAYS.items():
        files[name] = tmp_path / f"{name}.npy"
        memmap = np.lib.format.open_memmap(files[name], mode="w+", dtype=array.dtype, shape=array.shape)
        memmap[:] = array
        memmap.flush()
        del memmap
    save_npz_from_npy_files(tmp_path / "a.npz", files)
    for stamp, path in enumerate(files.values()):
        os.utime(path, (1e9 + stamp, 1e9 + stamp))  # other modification times, another mode
        path.chmod(0o644)
    save_npz_from_npy_files(tmp_path / "b.npz", files)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes() == savez_bytes(**ARRAYS)


def test_empty_and_zero_length_arrays(tmp_path: Path) -> None:
    save_npz(tmp_path / "none.npz")
    save_npz(tmp_path / "empty.npz", e=np.zeros((0, 26)))
    save_npy(tmp_path / "empty.npy", np.zeros(0, dtype=np.int64))
    assert (tmp_path / "none.npz").read_bytes() == savez_bytes()
    with np.load(tmp_path / "empty.npz") as loaded:
        assert loaded["e"].shape == (0, 26)
    assert np.load(tmp_path / "empty.npy").dtype == np.int64


def test_save_npy_writes_what_np_save_writes(tmp_path: Path) -> None:
    array = np.arange(1000, dtype=np.float32)
    save_npy(tmp_path / "p.npy", array)
    buffer = io.BytesIO()
    np.save(buffer, array)
    assert (tmp_path / "p.npy").read_bytes() == buffer.getvalue()
    assert leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- failures


def test_a_failing_body_leaves_the_good_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(GOOD)
    for error in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(error)), atomic_output(target) as tmp:
            tmp.write_bytes(b"half")
            raise error
        assert target.read_bytes() == GOOD and leftovers(tmp_path) == []


def test_commit_flushes_the_file_and_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[bool] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(fileio.os, "fsync", fsync)
    write_json(tmp_path / "x.json", {"a": 1})
    assert synced == [False, True]  # the file, then the folder that holds its new name


def test_disk_errors_name_the_file_and_say_what_to_do(tmp_path: Path) -> None:
    full = write_error(tmp_path / "p.npy", OSError(errno.ENOSPC, "No space left on device"))
    assert str(full) == (
        f"could not write {tmp_path / 'p.npy'}: No space left on device (the disk is full: free some "
        "space and rerun). Nothing was saved under that name (a file there before is untouched)."
    )
    assert full.errno == errno.ENOSPC and full.path == str(tmp_path / "p.npy")
    assert isinstance(full, DlrmNbError) and isinstance(full, OSError)
    again = pickle.loads(pickle.dumps(full))  # crosses to and from Dask workers
    assert type(again) is OutputWriteError and str(again) == str(full) and again.errno == errno.ENOSPC
    with pytest.raises(OutputWriteError, match=r"could not write .*missing/x\.json: No such file"):
        write_json(tmp_path / "missing" / "x.json", {})


def test_a_cut_npz_is_caught_before_it_is_renamed(tmp_path: Path) -> None:
    save_npz(tmp_path / "a.npz", **ARRAYS)
    data = (tmp_path / "a.npz").read_bytes()
    cut = tmp_path / "cut.npz"
    sizes = {name: array.nbytes for name, array in ARRAYS.items()}
    check_npz(tmp_path / "a.npz", sizes, cut)  # the whole file passes
    for length in (0, 100, len(data) - 10):
        cut.write_bytes(data[:length])
        with pytest.raises(OutputWriteError, match=r"cut\.npz: it does not read back as the zip"):
            check_npz(cut, sizes, cut)
    with pytest.raises(
        OutputWriteError, match=r"holds entries \['X_cat.npy', 'y.npy'\], expected \['y.npy'\]"
    ):
        check_npz(tmp_path / "a.npz", {"y": 40}, cut)


# ----------------------------------------------------------------------------- a real file size limit

CHILD = """
import sys
import numpy as np
from dlrm_nb.exceptions import DlrmNbError
from dlrm_nb.fileio import save_npy, save_npz, write_json

kind, path = sys.argv[1:3]
try:
    if kind == "npy-small":  # np.save loses this one's error (buffered by C's stdio)
        save_npy(path, np.arange(1000, dtype=np.float32))
    elif kind == "npy-large":
        save_npy(path, np.arange(100_000, dtype=np.float64))
    elif kind == "npz":
        save_npz(path, a=np.arange(1000, dtype=np.float32))
    else:
        write_json(path, list(range(1000)))
except DlrmNbError as exc:
    print(exc, file=sys.stderr)
    sys.exit(2)
"""
LIMITED = {
    "npy-small": r"p\.npy: 1,024 of its 4,128 bytes reached the disk \(is the disk full, or the file size",
    "npy-large": r"p\.npy: 100000 requested and \d+ written \(is the disk full, or the file size limit",
    "npz": r"p\.npy: File too large \(the file is larger than the file size limit \(ulimit -f\)",
    "json": r"p\.npy: File too large \(the file is larger than the file size limit \(ulimit -f\)",
}


@pytest.mark.parametrize("kind", sorted(LIMITED))
def test_a_file_size_limit_fails_the_write_and_keeps_the_good_file(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "p.npy"  # one name for every kind: only what it holds afterwards matters
    target.write_bytes(GOOD)

    def limit() -> None:  # ulimit -f 1 (1024 bytes), in the child only
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY))

    child = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(target)],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 2, child.stderr
    assert child.stderr.count("\n") == 1 and "Traceback" not in child.stderr
    assert "Nothing was saved under that name" in child.stderr
    assert re.search(LIMITED[kind], child.stderr), child.stderr
    assert target.read_bytes() == GOOD and leftovers(tmp_path) == []
