"""The query sample library (QSL) over aggregated samples.

One LoadGen sample is one *aggregated sample*: a run of consecutive user-item pairs of the test
split (see :mod:`dlrm_nb.loadgen.aggregation`). Shapes: S samples, P pairs in them. When LoadGen
asks the QSL to load samples it builds batch-ready tensors for all their pairs at once; a batch of
samples is then one ``index_select``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dlrm_nb.data.dataset import CriteoSplit
from dlrm_nb.exceptions import DlrmNbError


class AggregatedQSL:
    """The query sample library over a split: sample i = pairs ``trace[i, 0] .. trace[i, 1] - 1``."""

    def __init__(self, split: CriteoSplit, trace: np.ndarray, device: torch.device) -> None:
        self.split, self.trace, self.device = split, np.asarray(trace, dtype=np.int64), device
        self.sizes = self.trace[:, 1] - self.trace[:, 0]
        self._loaded: dict[str, torch.Tensor] | None = None
        self._first_row = np.full(
            len(self.trace), -1, dtype=np.int64
        )  # sample -> first row in loaded tensors

    def __len__(self) -> int:
        return len(self.trace)

    def load(self, samples: Sequence[int]) -> None:
        """Build tensors for every pair of ``samples`` once: dense [P, 13], ids [P, 26], labels [P]."""
        unique = np.unique(np.asarray(samples, dtype=np.int64))
        rows = rows_of(self.trace[unique, 0], self.sizes[unique])
        batch = self.split.batch(rows)
        self._first_row[:] = -1
        self._first_row[unique] = run_starts(self.sizes[unique])
        pin = self.device.type == "cuda"
        tensors = {
            "dense": torch.from_numpy(batch.dense),
            "ids": torch.from_numpy(batch.cats),
            "labels": torch.from_numpy(batch.labels),
        }
        self._loaded = {k: (v.pin_memory() if pin else v) for k, v in tensors.items()}

    def unload(self, samples: Sequence[int]) -> None:
        self._loaded = None
        self._first_row[:] = -1

    def gather(self, samples: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Dense [P, 13], ids [P, 26], labels [P] of the pairs of loaded ``samples`` int [S], in order."""
        if self._loaded is None or (self._first_row[samples] < 0).any():
            raise DlrmNbError("LoadGen asked for samples that were not loaded")
        index = torch.from_numpy(rows_of(self._first_row[samples], self.sizes[samples]))
        dense, ids, labels = (self._loaded[k].index_select(0, index) for k in ("dense", "ids", "labels"))
        return dense, ids, labels


def run_starts(sizes: np.ndarray) -> np.ndarray:
    """Where each of back-to-back runs of ``sizes`` int [S] starts: int64 [S]."""
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


def rows_of(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Row indices int64 [sum(sizes)] of consecutive runs ``starts[i] .. starts[i] + sizes[i] - 1``."""
    total = int(sizes.sum())
    offsets = np.repeat(starts - run_starts(sizes), sizes)
    return offsets + np.arange(total, dtype=np.int64)
