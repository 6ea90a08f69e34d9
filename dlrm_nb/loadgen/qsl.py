"""The query sample library (QSL) over aggregated samples.

One LoadGen sample is one *aggregated sample*: a run of consecutive user-item pairs of the test
split (see :mod:`dlrm_nb.loadgen.aggregation`). Shapes: S samples, P pairs in them. When LoadGen
asks the QSL to load samples it copies their pairs' records (int32 [P, 40], as in the ``.bin``:
160 bytes a pair) into one contiguous block, read from the file without mapping it (so the page
cache, not this process, holds what was read); :meth:`AggregatedQSL.gather` turns the records of
a batch of samples into model inputs. MLPerf's 204,800 performance samples (55 M pairs) take
8.8 GB this way; batch-ready float32 + int64 tensors for all of them took 23.8 GB at the peak.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Sequence

import numpy as np
import torch

from dlrm_nb.data.criteo import BIN_DTYPE, BIN_RECORD_BYTES, N_FIELDS
from dlrm_nb.data.dataset import CriteoSplit, records_to_batch
from dlrm_nb.exceptions import DlrmNbError


class AggregatedQSL:
    """The query sample library over a split: sample i = pairs ``trace[i, 0] .. trace[i, 1] - 1``."""

    def __init__(self, split: CriteoSplit, trace: np.ndarray, device: torch.device) -> None:
        self.split, self.trace, self.device = split, np.asarray(trace, dtype=np.int64), device
        self.sizes = self.trace[:, 1] - self.trace[:, 0]
        self._records: np.ndarray | None = None  # int32 [P, 40], the loaded samples' pairs
        self._first_row = np.full(len(self.trace), -1, dtype=np.int64)  # sample -> first row in _records

    def __len__(self) -> int:
        return len(self.trace)

    @property
    def loaded_records(self) -> np.ndarray | None:
        """The loaded pairs' records, int32 [P, 40] (samples in increasing order), or None."""
        return self._records

    def load(self, samples: Sequence[int]) -> None:
        """Copy the records of every pair of ``samples`` into one block (replacing what was loaded)."""
        unique = np.unique(np.asarray(samples, dtype=np.int64))
        if unique.size and (unique[0] < 0 or unique[-1] >= len(self)):
            raise DlrmNbError(
                f"LoadGen asked to load sample {unique[0] if unique[0] < 0 else unique[-1]}, "
                f"outside 0..{len(self) - 1}"
            )
        starts, sizes = self.trace[unique, 0], self.sizes[unique]
        if sizes.size and (starts.min() < 0 or (starts + sizes).max() > len(self.split)):
            raise DlrmNbError(f"the trace reaches past the {len(self.split):,} pairs of {self.split.source}")
        self.unload(samples)  # the old block goes before the new one is made
        self._records = copy_runs(self.split.records, starts, sizes)
        self._first_row[unique] = run_starts(sizes)

    def unload(self, samples: Sequence[int]) -> None:
        self._records = None
        self._first_row[:] = -1

    def gather(self, samples: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Dense float32 [P, 13] (log(x + 1)), ids int64 [P, 26], labels float32 [P] of the pairs
        of loaded ``samples`` int [S], in order."""
        if self._records is None or (self._first_row[samples] < 0).any():
            raise DlrmNbError("LoadGen asked for samples that were not loaded")
        index = rows_of(self._first_row[samples], self.sizes[samples])
        batch = records_to_batch(self._records.take(index, axis=0))
        return torch.from_numpy(batch.dense), torch.from_numpy(batch.cats), torch.from_numpy(batch.labels)


def copy_runs(records: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Rows ``starts[i] .. starts[i] + sizes[i] - 1`` of ``records`` [N, 40] for each i, back to
    back in one new int32 [sum(sizes), 40] block. Runs that continue one another are copied as
    one; from a memory-mapped ``.bin`` the bytes are read with ``preadv`` rather than through the
    mapping, so the pages read are not counted (nor kept) in this process's memory."""
    out = np.empty((int(sizes.sum()), N_FIELDS), dtype=BIN_DTYPE)
    if not len(out):
        return out
    first = np.concatenate([[0], np.flatnonzero(starts[1:] != starts[:-1] + sizes[:-1]) + 1])
    run_start, run_size = starts[first], np.add.reduceat(sizes, first)
    destination = run_starts(run_size)
    backing = _backing_file(records)
    if backing is None:
        for source, n, to in zip(run_start.tolist(), run_size.tolist(), destination.tolist(), strict=True):
            out[to : to + n] = records[source : source + n]
        return out
    path, offset = backing
    fd = os.open(path, os.O_RDONLY)
    try:
        for source, n, to in zip(run_start.tolist(), run_size.tolist(), destination.tolist(), strict=True):
            _read_exactly(fd, out[to : to + n].data.cast("B"), offset + source * BIN_RECORD_BYTES, path)
    finally:
        os.close(fd)
    return out


def _backing_file(records: np.ndarray) -> tuple[str, int] | None:
    """(path, byte offset of row 0) when ``records`` is a whole memory-mapped little-endian file
    of records (what :meth:`CriteoSplit.from_bin` opens); else None."""
    if not (
        isinstance(records, np.memmap)
        and records.filename is not None
        and isinstance(records.base, mmap.mmap)  # the mapping itself, not a view of a memmap
        and records.dtype == BIN_DTYPE
        and records.flags.c_contiguous
        and hasattr(os, "preadv")
    ):
        return None
    return str(records.filename), int(records.offset)


def _read_exactly(fd: int, buffer: memoryview, position: int, path: str) -> None:
    done = 0
    while done < len(buffer):
        got = os.preadv(fd, [buffer[done:]], position + done)
        if got <= 0:
            raise DlrmNbError(f"{path} ended at byte {position + done:,} while loading samples (truncated?)")
        done += got


def run_starts(sizes: np.ndarray) -> np.ndarray:
    """Where each of back-to-back runs of ``sizes`` int [S] starts: int64 [S]."""
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


def rows_of(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Row indices int64 [sum(sizes)] of consecutive runs ``starts[i] .. starts[i] + sizes[i] - 1``."""
    total = int(sizes.sum())
    offsets = np.repeat(starts - run_starts(sizes), sizes)
    return offsets + np.arange(total, dtype=np.int64)
