"""Running a DLRM for inference: precisions (MLPs and tables), device (cpu, cuda), batched prediction."""

from __future__ import annotations

import bisect
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch

from dlrm_nb.data.auc import auc_or_none
from dlrm_nb.data.criteo import ACCURACY_TARGETS, N_CAT, N_DENSE
from dlrm_nb.data.dataset import Batch, CriteoSplit
from dlrm_nb.exceptions import DlrmNbError
from dlrm_nb.model.checkpoint import load_checkpoint
from dlrm_nb.model.dlrm import DLRM
from dlrm_nb.model.engine import InferenceEngine, PackedTables
from dlrm_nb.model.settings import (
    SCORE_BATCH_PAIRS,
    PredictorSettings,
    check_device_name,
    check_precision,
    check_table_precision,
)
from dlrm_nb.model.table_cache import CachedTables, cached_tables, wants_cache
from dlrm_nb.progress import Progress, progress_bar

#: Batch sizes a forward runs at on the CPU: 16, 32, then multiples of 64 up to 1024. A forward's
#: time grows about linearly from 32 pairs on, so padding costs at most 63 pairs' worth; batches
#: above 1024 run as pieces of 1024 (no faster per pair when larger, and their activations stay
#: in cache).
CPU_BUCKETS = (16, 32, *range(64, 1025, 64))
#: Batch sizes a forward runs at on a GPU: powers of two from 128 to 65536.
CUDA_BUCKETS = tuple(2**k for k in range(7, 17))

Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def resolve_device(device: str) -> torch.device:
    """``cpu`` or ``cuda`` (``cuda:N``); a clear error when CUDA is asked for and absent."""
    if check_device_name(device) != "cpu" and not torch.cuda.is_available():
        raise DlrmNbError(
            f"device {device!r} was asked for but CUDA is not available (torch {torch.__version__}, "
            f"built with CUDA {torch.version.cuda or 'none'}); "
            "use device 'cpu' or install a CUDA build of torch"
        )
    return torch.device(device)


def check_precision_device(precision: str, device: str) -> torch.device:
    """The device, once ``precision`` is known and runs there (int8 is CPU-only)."""
    check_precision(precision, device)
    return resolve_device(device)


def load_predictor(
    checkpoint: str | os.PathLike, settings: PredictorSettings, *, progress: Progress = True
) -> Predictor:
    """The checkpoint, memory-mapped, as a :class:`Predictor`; its tables from the converted-model
    cache when ``settings.table_cache`` asks for it (made on the first load, with progress)."""
    model, _ = load_checkpoint(checkpoint)
    cached = tables_for(checkpoint, model, settings, progress=progress)
    return Predictor(
        model,
        precision=settings.precision,
        table_precision=settings.table_precision,
        device=settings.device,
        compile=settings.compile,
        tables=cached.tables if cached is not None else None,
    )


def tables_for(
    checkpoint: str | os.PathLike, model: DLRM, settings: PredictorSettings, *, progress: Progress = True
) -> CachedTables | None:
    """The model's tables from the converted-model cache (made now if missing or stale) when
    ``settings`` ask for the cache; None when they are converted at load instead."""
    if not wants_cache(settings.table_cache, settings.table_precision, settings.device, model):
        return None
    cache_dir = settings.table_cache_dir or None
    return cached_tables(checkpoint, model, settings.table_precision, cache_dir=cache_dir, progress=progress)


class Predictor:
    """A DLRM ready to predict: ``predictor(batch) -> float32 [B]`` click probabilities.

    Runs an :class:`~dlrm_nb.model.engine.InferenceEngine` built from ``model`` (which is left
    unchanged). ``precision`` of the MLPs and the interaction: ``fp32`` as trained; ``bf16``
    weights and activations in bfloat16; ``int8`` dynamic quantization of every Linear (CPU
    only). ``table_precision`` of the embedding tables: ``fp32``, ``bf16`` or ``int8`` row-wise.
    ``compile``: ``torch.compile`` the engine (fp32 and bf16; int8 runs eager). ``tables``:
    the tables already packed at ``table_precision`` (from the converted-model cache).

    Every forward runs at a batch size in :attr:`buckets` (fixed shapes: oneDNN primitives,
    inductor kernels and CUDA graphs are built per shape); :meth:`warm_up` builds them all.
    """

    def __init__(
        self,
        model: DLRM,
        *,
        precision: str = "fp32",
        table_precision: str = "fp32",
        device: str = "cpu",
        compile: bool = False,
        tables: PackedTables | None = None,
    ) -> None:
        self.device = check_precision_device(precision, device)
        self.precision = precision
        self.table_precision = check_table_precision(table_precision)
        self.arch = model.arch
        self.engine = InferenceEngine(
            model, precision=precision, table_precision=table_precision, device=self.device, tables=tables
        )
        self.buckets: tuple[int, ...] = CPU_BUCKETS if self.device.type == "cpu" else CUDA_BUCKETS
        # int8 (torch.ao dynamic quantization) gains nothing from inductor here: it runs eager
        self.compiled = compile and precision != "int8"
        self.module: Forward = _compiled(self.engine) if self.compiled else self.engine
        self._warm: set[int] = set()  # buckets that have run (compiled: whose first call is done)

    @torch.inference_mode()
    def predict(self, dense: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Dense float32 [B, 13] and ids int64 [B, 26] (any device) -> float32 [B] on the model's device.

        The batch runs as pieces of the largest bucket; the last piece is padded (dense 0,
        ids 0) to the smallest bucket that holds it, and the padding's outputs are dropped."""
        dense = dense.to(self.device, torch.float32, non_blocking=True)
        ids = ids.to(self.device, torch.int64, non_blocking=True)
        largest = self.buckets[-1]
        if len(dense) <= largest:
            return self._forward(dense, ids)
        return torch.cat(
            [self._forward(d, i) for d, i in zip(dense.split(largest), ids.split(largest), strict=True)]
        )

    def _forward(self, dense: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """One forward at the bucket that holds ``len(dense)`` pairs (at most the largest)."""
        size = len(dense)
        if size == 0:
            return torch.empty(0, device=self.device)
        bucket = self.buckets[bisect.bisect_left(self.buckets, size)]
        if bucket > size:
            dense = torch.cat([dense, dense.new_zeros(bucket - size, dense.shape[1])])
            ids = torch.cat([ids, ids.new_zeros(bucket - size, ids.shape[1])])
        return self._run(dense, ids)[:size]

    def _run(self, dense: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if len(dense) in self._warm:
            return self.module(dense, ids)
        with warnings.catch_warnings():  # a first call compiles; inductor's imports warn
            warnings.simplefilter("ignore")
            out = self.module(dense, ids)
        self._warm.add(len(dense))
        return out

    @torch.inference_mode()
    def warm_up(self) -> float:
        """Run every bucket's shape twice (builds its kernels; compiles, when compiled) and
        return the seconds it took."""
        started = time.perf_counter()
        for size in self.buckets:
            # through predict(), as real batches go (inference mode), both as a full bucket and as a
            # padded one: a compiled predictor sees every input kind here, none for the first time later
            for pairs in sorted({size, max(1, size - 1)}):
                dense = torch.zeros(pairs, N_DENSE, device=self.device)
                ids = torch.zeros(pairs, N_CAT, dtype=torch.int64, device=self.device)
                for _ in range(2):
                    self.predict(dense, ids)
        synchronize(self.device)
        return time.perf_counter() - started

    def __call__(self, batch: Batch) -> np.ndarray:
        dense, ids = torch.from_numpy(batch.dense), torch.from_numpy(batch.cats)
        if self.device.type == "cuda":
            dense, ids = dense.pin_memory(), ids.pin_memory()
        return self.predict(dense, ids).cpu().numpy()


def _compiled(engine: InferenceEngine) -> Forward:
    """``torch.compile`` of the engine (inductor) with a dynamic batch size: one graph serves
    every bucket (compiled once, about 15 s here, where one graph per bucket took 7 s each) and
    runs as fast as the per-shape graphs did."""
    with warnings.catch_warnings():  # importing inductor warns about torch.jit deprecations
        warnings.simplefilter("ignore")
        return cast(Forward, torch.compile(engine, dynamic=True))


def predict_split(
    predictor: Predictor,
    split: CriteoSplit,
    *,
    count: int | None = None,
    batch_size: int = SCORE_BATCH_PAIRS,
    progress: Progress = True,
) -> np.ndarray:
    """Predictions float32 [count] of the first ``count`` rows of ``split`` (default all), in file order."""
    total = len(split) if count is None else count
    if not 0 < total <= len(split):
        raise DlrmNbError(f"count {count} is outside 1..{len(split)} (rows of {split.source})")
    out = np.empty(total, dtype=np.float32)
    with progress_bar(
        progress,
        total=total,
        desc=f"predict {predictor.precision}",
        unit=" pairs",
        unit_scale=True,
    ) as bar:
        for start, end in _ranges(total, batch_size):
            out[start:end] = predictor(split.batch(slice(start, end)))
            bar.update(end - start)
    return out


@dataclass(frozen=True)
class SplitScore:
    """Predictions float32 [N] of a split's first N pairs, their labels [N] and the AUC (None
    when the labels hold one class)."""

    predictions: np.ndarray
    labels: np.ndarray
    auc: float | None


def score_split(
    predictor: Predictor,
    split: CriteoSplit,
    *,
    count: int | None = None,
    batch_size: int = SCORE_BATCH_PAIRS,
    progress: Progress = True,
) -> SplitScore:
    """Predict the first ``count`` pairs of ``split`` (default all) and score them, no LoadGen."""
    predictions = predict_split(predictor, split, count=count, batch_size=batch_size, progress=progress)
    labels = split.labels()[: len(predictions)]
    return SplitScore(predictions, labels, auc_or_none(labels, predictions))


def _ranges(total: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, size):
        yield start, min(start + size, total)


def accuracy_rule(auc: float, reference_auc: float) -> dict[str, bool]:
    """MLPerf's rule: pass when ``auc`` reaches each target fraction of the reference AUC."""
    return {name: auc >= fraction * reference_auc for name, fraction in ACCURACY_TARGETS.items()}


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work (a no-op on the CPU), so a timer sees finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_rate(step, work: float, device: torch.device, seconds: float) -> float:
    """``work`` units per second of ``step()``, after one warm-up call, over about ``seconds``."""
    step()
    synchronize(device)
    runs, started = 0, time.perf_counter()
    while True:
        step()
        runs += 1
        if runs % 4 == 0 or device.type == "cpu":
            synchronize(device)
            elapsed = time.perf_counter() - started
            if elapsed >= seconds:
                return runs * work / elapsed


def forward_rates(
    predictor: Predictor,
    batch_sizes: Sequence[int],
    seconds: float,
    split: CriteoSplit | None = None,
) -> dict[int, float]:
    """Model-only pairs/s at each batch size B: the forward alone, inputs already on the device.

    Inputs are the first B rows of ``split`` (repeated if it is shorter), else random ids
    within the model's tables and random dense features.
    """
    rates = {}
    generator = torch.Generator().manual_seed(1)
    for size in batch_sizes:
        if split is not None:
            batch = split.batch(np.arange(size) % len(split))
            dense, ids = torch.from_numpy(batch.dense), torch.from_numpy(batch.cats)
        else:
            dense = torch.rand(size, N_DENSE, generator=generator).mul(5)
            ids = torch.stack(
                [torch.randint(0, n, (size,), generator=generator) for n in predictor.arch.table_sizes], dim=1
            )
        dense, ids = dense.to(predictor.device), ids.to(predictor.device)
        rates[size] = timed_rate(
            lambda d=dense, i=ids: predictor.predict(d, i), size, predictor.device, seconds
        )
    return rates
