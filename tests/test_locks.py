"""One writer per folder: the lock file beside an output folder, its holder, stale locks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dlrm_nb.exceptions import DlrmNbError, FolderLockedError
from dlrm_nb.locks import folder_lock, lock_path, pid_alive, read_holder


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The pid of a process that runs while the test does (a sleeping child)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def _dead_pid() -> int:
    """The pid of a process that has ended (and was reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _write_lock(folder: Path, pid: int, host: str | None = None) -> Path:
    lock = lock_path(folder)
    record = {"pid": pid, "host": host or socket.gethostname(), "command": "dlrm-nb prepare raw out"}
    lock.write_text(json.dumps({**record, "started": "2024-01-02T03:04:05+0000"}))
    return lock


def test_the_lock_lies_beside_the_folder_holds_the_pid_and_goes_at_the_end(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with folder_lock(tmp_path / "." / "out", "dlrm-nb prepare raw out") as lock:
        assert lock == tmp_path / ".out.dlrm-nb.lock" == lock_path(out)
        holder = read_holder(lock)
        assert holder is not None
        assert holder["pid"] == os.getpid() and holder["command"] == "dlrm-nb prepare raw out"
        assert not out.exists()  # the folder itself is left to the writer
    assert not lock.exists()


def test_the_lock_goes_on_errors_and_interruptions_too(tmp_path: Path) -> None:
    for stop in (ValueError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(stop)), folder_lock(tmp_path / "out", "test"):
            raise stop
        assert not lock_path(tmp_path / "out").exists()


def test_a_live_holder_is_named_and_keeps_its_lock(tmp_path: Path, live_pid: int) -> None:
    lock = _write_lock(tmp_path / "out", live_pid)
    before = lock.read_text()
    with pytest.raises(FolderLockedError) as caught, folder_lock(tmp_path / "out", "test"):
        pass
    message = str(caught.value)
    assert f"{tmp_path / 'out'} is being written by another process: pid {live_pid}" in message
    assert "(dlrm-nb prepare raw out, since 2024-01-02T03:04:05+0000)" in message
    assert f"if no such process runs, delete {lock}" in message
    assert lock.read_text() == before


def test_a_lock_of_this_process_is_held_too(tmp_path: Path) -> None:
    held = pytest.raises(FolderLockedError, match=f"pid {os.getpid()}")
    with folder_lock(tmp_path / "out", "first"), held, folder_lock(tmp_path / "out", "second"):
        pass


def test_a_stale_lock_is_taken_over_with_one_line(tmp_path: Path, capsys) -> None:
    dead = _dead_pid()
    assert not pid_alive(dead)
    lock = _write_lock(tmp_path / "out", dead)
    with folder_lock(tmp_path / "out", "second") as taken:
        holder = read_holder(taken)
        assert holder is not None and holder["pid"] == os.getpid() and holder["command"] == "second"
    err = capsys.readouterr().err
    assert err == (
        f"dlrm-nb: took over the lock of {tmp_path / 'out'}: its holder, pid {dead} "
        "(dlrm-nb prepare raw out), is no longer running\n"
    )
    assert not lock.exists()


def test_a_lock_from_another_machine_is_not_taken_over(tmp_path: Path) -> None:
    _write_lock(tmp_path / "out", _dead_pid(), host="another-machine.example")
    with (
        pytest.raises(FolderLockedError, match=r"on host another-machine\.example"),
        folder_lock(tmp_path / "out", "test"),
    ):
        pass


def test_an_empty_lock_is_young_or_stale(tmp_path: Path) -> None:
    lock = lock_path(tmp_path / "out")
    lock.write_text("")
    with (
        pytest.raises(FolderLockedError, match="being locked by another process right now"),
        folder_lock(tmp_path / "out", "test"),
    ):
        pass
    os.utime(lock, (0, 0))  # written long ago by a process that died before filling it in
    with folder_lock(tmp_path / "out", "test"):
        pass
    assert not lock.exists()


def test_a_file_is_not_a_folder_to_lock(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("mine")
    refused = pytest.raises(DlrmNbError, match=r"out is a file, not a folder; give a folder for the output")
    with refused, folder_lock(tmp_path / "out", "test"):
        pass
    assert not lock_path(tmp_path / "out").exists()
