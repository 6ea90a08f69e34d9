"""Bring a model's memory-mapped tensors into RAM before anything is timed.

A checkpoint loaded memory-mapped (:func:`dlrm_nb.model.checkpoint.load_checkpoint`) reads its
tables from disk on first touch: without paging them in, the first timed pass measures the disk.
:func:`page_in` reads one byte of every page of every CPU tensor of the model, in large chunks,
asking the kernel to read the next chunk ahead (``madvise(MADV_WILLNEED)``, where there is one)
while it touches the current one. Tensors already in RAM cost a quick pass over their pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import mmap
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from dlrm_nb.progress import Progress, progress_bar

#: Bytes touched between progress updates (and read ahead at a time).
CHUNK_BYTES = 256 << 20
PAGE = mmap.PAGESIZE
_MADV_WILLNEED = getattr(mmap, "MADV_WILLNEED", 3)


def page_in(model: torch.nn.Module, progress: Progress = True) -> float:
    """Touch every page of the model's CPU parameters and buffers (each storage once), so
    memory-mapped tables are resident; returns the seconds it took. Values are not changed."""
    started = time.perf_counter()
    storages = _cpu_storages(model)
    total = sum(nbytes for _, nbytes in storages)
    advise = _madvise()
    with progress_bar(
        progress, total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="page in"
    ) as bar:
        for address, nbytes in storages:
            memory = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(address))
            chunks = [(start, min(start + CHUNK_BYTES, nbytes)) for start in range(0, nbytes, CHUNK_BYTES)]
            if chunks and advise is not None:
                advise(address + chunks[0][0], chunks[0][1] - chunks[0][0])
            for k, (start, end) in enumerate(chunks):
                if advise is not None and k + 1 < len(chunks):
                    advise(address + chunks[k + 1][0], chunks[k + 1][1] - chunks[k + 1][0])
                _touch(memory[start:end])
                bar.update(end - start)
    return time.perf_counter() - started


def _cpu_storages(model: torch.nn.Module) -> list[tuple[int, int]]:
    """(address, bytes) of each distinct CPU storage behind the model's parameters and buffers."""
    seen: dict[int, int] = {}
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.device.type != "cpu":
            continue
        storage = tensor.untyped_storage()
        address, nbytes = storage.data_ptr(), storage.nbytes()
        if address and nbytes:
            seen[address] = max(nbytes, seen.get(address, 0))
    return sorted(seen.items())


def _touch(memory: np.ndarray) -> int:
    """Read one byte in every page of ``memory`` uint8 [n] (and its last byte)."""
    return int(memory[::PAGE].sum(dtype=np.uint64)) + int(memory[-1])


def _madvise() -> Callable[[int, int], None] | None:
    """``madvise(address, length, MADV_WILLNEED)`` for any range (rounded out to pages), or None
    where libc has no madvise. Advice only: failures are ignored."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int

    def advise(address: int, length: int) -> None:
        first = address - address % PAGE
        function(first, address + length - first, _MADV_WILLNEED)

    return advise
