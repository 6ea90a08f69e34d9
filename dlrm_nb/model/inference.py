"""Running a DLRM for inference: precision (fp32, bf16, int8), device (cpu, cuda), batched prediction."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torch import nn

from dlrm_nb.data.auc import auc_or_none
from dlrm_nb.data.criteo import ACCURACY_TARGETS, N_DENSE
from dlrm_nb.data.dataset import Batch, CriteoSplit
from dlrm_nb.exceptions import DlrmNbError
from dlrm_nb.model.dlrm import DLRM
from dlrm_nb.model.settings import SCORE_BATCH_PAIRS, check_device_name, check_precision
from dlrm_nb.progress import Progress, progress_bar

CPU_SLICE = 1024  # pairs per forward on the CPU: larger batches run as slices of this size


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


class Predictor:
    """A DLRM ready to predict: ``predictor(batch) -> float32 [B]`` click probabilities.

    ``fp32``: as trained. ``bf16``: MLPs and interaction in bfloat16, embeddings read in fp32
    (memory-mapped tables stay as they are) and cast after the gather. ``int8``: dynamic
    quantization of every Linear layer (CPU only). ``compile``: ``torch.compile`` the model.
    """

    def __init__(
        self, model: DLRM, *, precision: str = "fp32", device: str = "cpu", compile: bool = False
    ) -> None:
        self.device = check_precision_device(precision, device)
        self.precision = precision
        self.arch = model.arch
        self.input_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self.module = _with_precision(model.to(self.device), precision).eval()
        if compile:
            self.module = cast(nn.Module, torch.compile(self.module, dynamic=True))

    @torch.inference_mode()
    def predict(self, dense: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Dense float32 [B, 13] and ids int64 [B, 26] (any device) -> float32 [B] on the model's device.

        On the CPU a large batch runs as slices of ``CPU_SLICE`` pairs, whose activations stay
        in cache (measured here: about 1.5x the pairs/s of one 16384-pair forward)."""
        dense = dense.to(self.device, self.input_dtype, non_blocking=True)
        ids = ids.to(self.device, non_blocking=True)
        if self.device.type != "cpu" or len(dense) <= CPU_SLICE:
            return self.module(dense, ids).float()
        return torch.cat(
            [
                self.module(d, i).float()
                for d, i in zip(dense.split(CPU_SLICE), ids.split(CPU_SLICE), strict=True)
            ]
        )

    def __call__(self, batch: Batch) -> np.ndarray:
        dense, ids = torch.from_numpy(batch.dense), torch.from_numpy(batch.cats)
        if self.device.type == "cuda":
            dense, ids = dense.pin_memory(), ids.pin_memory()
        return self.predict(dense, ids).cpu().numpy()


def _with_precision(model: DLRM, precision: str) -> nn.Module:
    if precision == "bf16":
        model.bot_l.to(torch.bfloat16)
        model.top_l.to(torch.bfloat16)
        return model
    if precision == "int8":
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():
            # torch.ao's dynamic quantization is deprecated in favour of torchao, and still works
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*", category=UserWarning)
            return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    return model


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
