"""A model and a test split ready for LoadGen, each run in a fresh process."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlrm_nb.data.dataset import CriteoSplit
from dlrm_nb.exceptions import DlrmNbError
from dlrm_nb.loadgen.aggregation import DEFAULT_FIXED_SIZE, DEFAULT_UNIFORM_RANGE
from dlrm_nb.loadgen.runner import run_loadgen
from dlrm_nb.loadgen.settings import LoadgenSettings, usable_cores
from dlrm_nb.model.auto import AUTO, AutoChoice
from dlrm_nb.model.checkpoint import check_pair
from dlrm_nb.model.inference import (
    Predictor,
    PredictorSettings,
    check_precision_device,
    load_predictor,
    tables_for,
)
from dlrm_nb.model.settings import check_table_cache, check_table_precision


@dataclass(frozen=True)
class BenchmarkSource:
    """What a LoadGen process loads: plain values, so it crosses to a spawned process as is."""

    checkpoint: str
    data_dir: str
    precision: str
    table_precision: str
    device: str
    compile: bool
    threads: int  # torch intra-op threads
    table_cache: str = "auto"  # see dlrm_nb.model.settings.TABLE_CACHE_MODES
    table_cache_dir: str = ""

    @property
    def settings(self) -> PredictorSettings:
        return PredictorSettings(
            precision=self.precision,
            table_precision=self.table_precision,
            device=self.device,
            compile=self.compile,
            table_cache=self.table_cache,
            table_cache_dir=self.table_cache_dir,
        )

    def predictor(self) -> Predictor:
        """The checkpoint (memory-mapped) as a predictor at this precision on this device; its
        tables mapped from the converted-model cache when it serves them (made by
        :func:`open_benchmark`, so every LoadGen process maps the same entry)."""
        return load_predictor(self.checkpoint, self.settings, progress=False)


@dataclass
class Benchmark:
    """A model and a test split ready for LoadGen: the predictor, the split and its aggregation trace.

    LoadGen 6 treats every ``FromConfig`` after the first in a process as a second conf file and
    marks the run invalid for submission, so :meth:`run` starts each LoadGen test in a fresh
    process (spawned; the checkpoint is memory-mapped again there, which is cheap) unless
    ``isolate=False``. :attr:`predictor` (built on first use, so isolated runs never hold a second
    copy of the model on the device) serves in-process runs and model-only measurements.
    As with any ``multiprocessing`` spawn, a Python *script* calling :meth:`run` needs the usual
    ``if __name__ == "__main__":`` guard (notebooks and the ``dlrm-nb`` command need nothing).
    """

    split: CriteoSplit
    trace: np.ndarray  # int64 [S, 2]: (start, end) pairs of each aggregated sample
    source: BenchmarkSource
    auto: AutoChoice | None = None  # how ``precision: auto`` chose, when it was asked for

    @cached_property
    def predictor(self) -> Predictor:

        return self.source.predictor()

    def run(
        self, settings: LoadgenSettings, run_dir: str | os.PathLike, *, isolate: bool = True
    ) -> dict[str, Any]:
        """Run one scenario and mode into ``run_dir/<scenario>/<mode>/``; return its metrics."""
        settings.sample_count(len(self.trace))  # refuse bad counts before anything starts
        out = Path(run_dir) / settings.scenario / settings.mode
        if not isolate:
            return run_loadgen(self.predictor, self.split, self.trace, settings, out)
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        receive, send = context.Pipe(duplex=False)
        child = context.Process(
            target=_run_in_child,
            args=(self.source, self.trace, settings, str(out), send),
            name=f"dlrm-nb-{settings.scenario}",
        )
        child.start()
        send.close()
        try:
            outcome = receive.recv()
        except EOFError:
            outcome = ("error", f"the LoadGen process died (exit code {child.exitcode})")
        child.join()
        if outcome[0] == "error":
            raise DlrmNbError(outcome[1])
        return outcome[1]


def _run_in_child(
    source: BenchmarkSource, trace: np.ndarray, settings: LoadgenSettings, out: str, send
) -> None:
    """Body of the process that runs one LoadGen test (see :class:`Benchmark`)."""
    try:
        from dlrm_nb.data.dataset import open_split

        torch.set_num_threads(source.threads)
        split = open_split(source.data_dir, "test")
        send.send(("ok", run_loadgen(source.predictor(), split, trace, settings, out)))
    except BaseException as exc:
        send.send(("error", str(exc) if isinstance(exc, DlrmNbError) else repr(exc)))
    finally:
        send.close()


def open_benchmark(
    checkpoint: str | os.PathLike,
    data_dir: str | os.PathLike,
    *,
    precision: str = "fp32",
    table_precision: str = "fp32",
    device: str = "cpu",
    compile: bool = False,
    aggregation: str = "quantile",
    aggregation_size: int = DEFAULT_FIXED_SIZE,
    aggregation_range: tuple[int, int] = DEFAULT_UNIFORM_RANGE,
    seed: int = 123,
    max_pairs_in_split: int | None = None,
    trace_path: str | os.PathLike | None = None,
    table_cache: str = "auto",
    table_cache_dir: str = "",
) -> Benchmark:
    """Load a checkpoint and a prepared folder, check they fit, build the aggregation trace.

    ``max_pairs_in_split`` uses only the first pairs of the split (short runs on big data).
    With ``trace_path`` the trace is also written there in upstream's format. When
    ``table_cache`` serves the tables, the cache entry is made here, once, with progress.
    """
    from dlrm_nb.data.dataset import open_split, read_counts
    from dlrm_nb.loadgen.aggregation import make_trace, write_trace
    from dlrm_nb.model.checkpoint import load_checkpoint

    split = open_split(data_dir, "test")
    model, _ = load_checkpoint(checkpoint)
    check_pair(model.arch.table_sizes, read_counts(data_dir), data_dir)
    pairs = len(split) if max_pairs_in_split is None else min(len(split), max_pairs_in_split)
    trace = make_trace(
        pairs,
        kind=aggregation,
        size=aggregation_size,
        low=aggregation_range[0],
        high=aggregation_range[1],
        seed=seed,
    )
    if trace_path is not None:
        write_trace(trace_path, trace)
    threads = usable_cores()
    torch.set_num_threads(threads)  # one compute thread pool, no Python worker pools on top
    # fail here, not in the first LoadGen process
    check_precision_device("fp32" if precision == AUTO else precision, device)
    check_table_precision(table_precision)
    check_table_cache(table_cache)
    source = BenchmarkSource(
        str(checkpoint),
        str(data_dir),
        precision,
        table_precision,
        device,
        compile,
        threads,
        table_cache,
        table_cache_dir,
    )
    tables_for(checkpoint, model, source.settings)  # the cache entry, made once before any run
    auto = None
    if precision == AUTO:  # measured here, once, before any LoadGen process starts
        from dlrm_nb.model.auto import choose_precision

        auto = choose_precision(checkpoint, split, source.settings)
        source = replace(source, precision=auto.chosen)
    return Benchmark(split, trace, source, auto)
