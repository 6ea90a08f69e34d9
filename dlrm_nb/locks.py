"""One writer per folder: a lock file beside the folder, holding the writer's pid and command.

``prepare`` and ``run`` hold the lock of their output folder while they write it. The lock is the
file ``.<folder name>.dlrm-nb.lock`` in the folder's parent (beside the folder, not in it: an
output folder holds only what the tool made), created with ``O_CREAT | O_EXCL`` so that exactly
one process gets it. A second writer is refused with the holder's pid and command; a lock whose
process is gone (killed, machine restarted) is taken over with a one-line message. The lock is
removed when the writer ends, on errors and interruptions too.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from dlrm_nb.exceptions import DlrmNbError, FolderLockedError

LOCK_SUFFIX = ".dlrm-nb.lock"
#: A lock file still empty or unreadable after this many seconds was left by a process that died
#: while writing it (younger ones may be being written right now).
UNREADABLE_LOCK_GRACE_S = 10.0
_ATTEMPTS = 3


def lock_path(folder: str | os.PathLike) -> Path:
    """The lock file of ``folder``: ``.<name>.dlrm-nb.lock`` beside it (the same for every
    spelling of the folder's path)."""
    resolved = Path(folder).expanduser().resolve()
    if resolved == resolved.parent:
        raise DlrmNbError(f"{resolved} is the root of the file system; give an output folder below it")
    return resolved.parent / f".{resolved.name}{LOCK_SUFFIX}"


@contextmanager
def folder_lock(folder: str | os.PathLike, command: str) -> Iterator[Path]:
    """Hold the lock of ``folder`` (which need not exist yet) while the body runs; yield the lock
    file. Raises :class:`FolderLockedError` naming the live process that holds it."""
    resolved = Path(folder).expanduser().resolve()
    if resolved.exists() and not resolved.is_dir():
        raise DlrmNbError(f"{resolved} is a file, not a folder; give a folder for the output")
    lock = lock_path(resolved)
    lock.parent.mkdir(parents=True, exist_ok=True)
    _acquire(lock, resolved, command)
    try:
        yield lock
    finally:
        _release(lock)


def _acquire(lock: Path, folder: Path, command: str) -> None:
    for _ in range(_ATTEMPTS):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_holder(lock)
            if holder is None:  # released between our open and our read: try again
                continue
            if holder_alive(holder, lock):
                raise FolderLockedError(_held_message(folder, lock, holder)) from None
            _take_over(lock, folder, holder)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(_record(command), f)
        return
    raise FolderLockedError(
        f"could not take the lock {lock} of {folder}: other processes keep taking it; retry"
    )


def _record(command: str) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def read_holder(lock: Path) -> dict[str, Any] | None:
    """What the lock file says (``{}`` when empty or unreadable); None when there is none."""
    try:
        text = lock.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else {}


def holder_alive(holder: dict[str, Any], lock: Path) -> bool:
    """Whether the process the lock names may still run (a lock from another machine: assumed so)."""
    if not holder:  # being written right now, or left half-written long ago
        try:
            return time.time() - lock.stat().st_mtime < UNREADABLE_LOCK_GRACE_S
        except FileNotFoundError:
            return False
    if holder.get("host") != socket.gethostname():
        return True
    return pid_alive(int(holder["pid"]))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a zombie, dead but not yet reaped, does not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    with suppress(OSError, IndexError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    return True


def _held_message(folder: Path, lock: Path, holder: dict[str, Any]) -> str:
    if not holder:
        return f"{folder} is being locked by another process right now ({lock}); retry in a few seconds"
    where = "" if holder.get("host") == socket.gethostname() else f" on host {holder.get('host')}"
    return (
        f"{folder} is being written by another process: pid {holder['pid']}{where} "
        f"({holder.get('command', '?')}, since {holder.get('started', '?')}) holds the lock {lock}; "
        f"wait for it to end or stop it (if no such process runs, delete {lock})"
    )


def _take_over(lock: Path, folder: Path, holder: dict[str, Any]) -> None:
    """Remove a stale lock, unless it changed since it was read (another process took it over)."""
    if read_holder(lock) != holder:
        return
    with suppress(FileNotFoundError):
        lock.unlink()
    who = f"pid {holder['pid']} ({holder.get('command', '?')})" if holder else "a process that died"
    print(
        f"dlrm-nb: took over the lock of {folder}: its holder, {who}, is no longer running", file=sys.stderr
    )


def _release(lock: Path) -> None:
    """Remove the lock if it is still this process's (never one another process took over)."""
    holder = read_holder(lock)
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        with suppress(FileNotFoundError):
            lock.unlink()
