"""Timing before LoadGen starts: warm-up forwards and the rates and latencies LoadGen plans with."""

from __future__ import annotations

import time

import numpy as np
import torch

from dlrm_nb.data.dataset import CriteoSplit
from dlrm_nb.model.inference import Predictor


def warm_up(predictor: Predictor, split: CriteoSplit, sizes: np.ndarray, max_pairs: int) -> float:
    """Run a few forwards before LoadGen starts (first calls pay for allocations and, on CUDA,
    kernel loading) and return the measured aggregated samples/s at ``max_pairs`` pairs per forward."""
    pairs = int(min(max_pairs, len(split)))
    dense, ids = first_pairs(split, pairs)
    for _ in range(2):
        predictor.predict(dense, ids).cpu()
    started, runs = time.perf_counter(), 0
    while runs < 3 or time.perf_counter() - started < 0.5:
        predictor.predict(dense, ids).cpu()
        runs += 1
    pairs_per_s = runs * pairs / (time.perf_counter() - started)
    return pairs_per_s / float(np.mean(sizes))


def first_pairs(split: CriteoSplit, pairs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense float32 [P, 13] and ids int64 [P, 26] of the split's first P pairs (timing inputs)."""
    batch = split.batch(slice(0, pairs))
    return torch.from_numpy(batch.dense), torch.from_numpy(batch.cats)


def query_latency_ms(predictor: Predictor, split: CriteoSplit, sizes: np.ndarray, samples: int) -> float:
    """Median ms of a forward over ``samples`` aggregated samples of mean size (5 tries)."""
    dense, ids = first_pairs(split, int(min(len(split), max(1, round(samples * float(np.mean(sizes)))))))
    times = []
    for _ in range(5):
        started = time.perf_counter()
        predictor.predict(dense, ids).cpu()
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times))
