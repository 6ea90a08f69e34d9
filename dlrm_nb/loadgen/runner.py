"""One LoadGen run in this process: settings to ``user.conf``, QSL and SUT, logs to ``metrics.json``."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from dlrm_nb.data.dataset import CriteoSplit
from dlrm_nb.exceptions import DlrmNbError
from dlrm_nb.fileio import save_npy, write_json, write_text
from dlrm_nb.loadgen.batcher import CLOSE_REASONS
from dlrm_nb.loadgen.qsl import AggregatedQSL
from dlrm_nb.loadgen.settings import MODEL_NAME, MODES, STREAM_SAMPLES, LoadgenSettings
from dlrm_nb.loadgen.sut import DlrmSUT, allowed_cores
from dlrm_nb.loadgen.timing import query_latency_ms, warm_up
from dlrm_nb.model.inference import Predictor

#: Per-sample latencies (int64 ns, the SUT's view: issue -> complete) beside LoadGen's logs.
#: Offline's expected rate over the warm-up's measured one (see run_loadgen).
OFFLINE_RATE_MARGIN = 2.5

#: What a LoadGen run writes into its folder besides LoadGen's own logs (see mlperf_logs).
USER_CONF_NAME = "user.conf"
METRICS_NAME = "metrics.json"
#: Per-sample latencies (int64 ns, the SUT's view: issue -> complete).
SUT_LATENCIES_NAME = "sut_latencies_ns.npy"


def run_loadgen(
    predictor: Predictor,
    split: CriteoSplit,
    trace: np.ndarray,
    settings: LoadgenSettings,
    out_dir: str | os.PathLike,
) -> dict[str, Any]:
    """One LoadGen run into ``out_dir``: ``user.conf``, LoadGen's logs and ``metrics.json``.

    Returns the metrics (parsed from LoadGen's summary and detail logs, plus the SUT's own
    counters and, in accuracy mode, the AUC). LoadGen's logs are checked first: logs that are
    incomplete or do not parse raise :class:`~dlrm_nb.exceptions.LoadgenLogError` and no
    ``metrics.json`` is written (one from an earlier run in ``out_dir`` is removed at the start).
    """
    import mlperf_loadgen as lg

    from dlrm_nb.loadgen.mlperf_logs import ACCURACY_LOG_NAME, parse_run

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in (METRICS_NAME, SUT_LATENCIES_NAME):  # never beside the logs of another run
        (out / stale).unlink(missing_ok=True)
    qsl = AggregatedQSL(split, trace, predictor.device)
    try:
        if settings.scenario in STREAM_SAMPLES or predictor.compiled:
            # every batch shape, built here for LoadGen's thread (same thread count) and compiled
            # once before any worker runs; Offline and Server workers warm up in their own threads
            predictor.warm_up()
        rate = warm_up(predictor, split, qsl.sizes, settings.max_pairs)
    except Exception as exc:
        raise DlrmNbError(f"the model failed during the {settings.scenario} run (warm-up): {exc!r}") from exc
    if settings.scenario == "Offline" and settings.target_qps is None:
        # LoadGen issues expected_qps x min_duration samples in Offline: too few and the run ends before
        # min_duration (INVALID). The warm-up runs in this thread before the workers warm their own
        # threads, and has measured half the rate they then reach: aim high (a longer run, never an
        # invalid one)
        settings = replace(settings, target_qps=round(OFFLINE_RATE_MARGIN * rate, 2))
    if settings.scenario in STREAM_SAMPLES and settings.expected_latency_ms is None:
        # LoadGen plans min_duration / expected latency queries: an estimate on the low side keeps
        # it from running out of queries before min_duration (which makes the run INVALID)
        latency = query_latency_ms(predictor, split, qsl.sizes, STREAM_SAMPLES[settings.scenario])
        settings = replace(settings, expected_latency_ms=round(0.8 * latency, 3))
    conf = out / USER_CONF_NAME
    write_text(conf, settings.user_conf(len(qsl)))
    test = lg.TestSettings()
    test.scenario = getattr(lg.TestScenario, settings.scenario)
    test.mode = getattr(lg.TestMode, MODES[settings.mode])
    if test.FromConfig(str(conf), MODEL_NAME, settings.scenario) != 0:
        raise DlrmNbError(f"LoadGen refused {conf}; see its log")
    log_output = lg.LogOutputSettings()
    log_output.outdir = str(out)
    log_output.copy_summary_to_stdout = False
    log_settings = lg.LogSettings()
    log_settings.log_output = log_output
    log_settings.enable_trace = False
    instances, threads = settings.thread_layout(len(allowed_cores()))
    try:  # the workers start and warm up in their own threads here
        sut = DlrmSUT(
            predictor,
            qsl,
            settings.scenario,
            settings.max_pairs,
            latency_ms=settings.latency_ms,
            instances=instances,
            threads_per_instance=threads,
        )
    except Exception as exc:
        raise DlrmNbError(
            f"the model failed during the {settings.scenario} run (warm-up of the SUT's workers): {exc!r}"
        ) from exc
    qsl_handle = lg.ConstructQSL(len(qsl), settings.sample_count(len(qsl)), qsl.load, qsl.unload)
    started = time.perf_counter()
    try:
        lg.StartTestWithLogSettings(sut.handle, qsl_handle, test, log_settings)
    finally:
        wall = time.perf_counter() - started
        sut.close()
        lg.DestroyQSL(qsl_handle)
    if sut.error is not None:
        raise DlrmNbError(
            f"the model failed during the {settings.scenario} run: {sut.error!r}"
        ) from sut.error
    stats = sut.stats
    mean_pairs = stats.pairs / stats.samples if stats.samples else None
    metrics = parse_run(out, mean_pairs_per_sample=mean_pairs)
    save_npy(out / SUT_LATENCIES_NAME, stats.sample_latencies_ns())
    metrics.update(
        settings=asdict(settings),
        wall_seconds=round(wall, 3),
        sut={
            "forwards": stats.forwards,
            "pairs": stats.pairs,
            "samples": stats.samples,
            "model_seconds": round(stats.model_seconds, 3),
            "mean_batch_pairs": float(np.mean(stats.batch_pairs)) if stats.batch_pairs else 0.0,
            "instances": stats.instances,
            "threads_per_instance": stats.threads_per_instance,
            "pinned": stats.pinned,
            # Server: batches by why they closed (see dlrm_nb.loadgen.batcher); 0 elsewhere
            **{f"closed_on_{reason}": stats.closed[reason] for reason in CLOSE_REASONS},
            **_forward_model(sut),
        },
        precision=predictor.precision,
        device=str(predictor.device),
    )
    if settings.mode == "accuracy":
        from dlrm_nb.loadgen.accuracy import (
            evaluate_log,  # scikit-learn takes 2 s to import: only when needed
        )

        metrics["accuracy"] = evaluate_log(out / ACCURACY_LOG_NAME)
    write_json(out / METRICS_NAME, metrics)
    return metrics


def _forward_model(sut: DlrmSUT) -> dict[str, float | None]:
    """Server: the batcher's budget and its learnt model of a forward; None elsewhere."""
    batcher = sut.batcher
    if batcher is None:
        return {"budget_ms": None, "forward_fixed_ms": None, "forward_us_per_pair": None}
    return {
        "budget_ms": round(batcher.budget * 1e3, 3),
        "forward_fixed_ms": round(batcher.model.fixed_s * 1e3, 4),
        "forward_us_per_pair": round(batcher.model.per_pair_s * 1e6, 4),
    }


def metrics_line(metrics: dict[str, Any]) -> str:
    """One line for people: scenario, mode, validity, samples/s, pairs/s, p99 (ms)."""
    settings = metrics.get("settings") or {}
    latency = (metrics.get("latency_ns") or {}).get("p99")
    result = metrics.get("result") or "done"
    scenario = settings.get("scenario", metrics.get("scenario"))
    parts = [
        f"{scenario} {settings.get('mode', metrics.get('mode'))}: {result}",
        f"{_number(metrics.get('samples_per_s'), ',.1f')} samples/s",
        f"{_number(metrics.get('pairs_per_s'), ',.0f')} pairs/s",
    ]
    if latency is not None:
        parts.append(f"p99 {latency / 1e6:.2f} ms")
    if settings.get("scenario") == "Server":
        parts.append(f"at {settings.get('target_qps'):g} QPS (bound {settings.get('latency_ms'):g} ms)")
    if "accuracy" in metrics:
        parts.append(metrics["accuracy"]["line"])
    return ", ".join(parts)


def _number(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)
