"""The MLPerf LoadGen harness: query sample library (QSL), system under test (SUT), settings, runs.

One LoadGen sample is one *aggregated sample*: a run of consecutive user-item pairs of the test
split (see :mod:`dlrm_nb.aggregation`). Shapes: S samples in a query or batch, P pairs in them.

* The QSL memory-maps the split and, when LoadGen asks it to load samples, builds batch-ready
  tensors for all their pairs at once; a batch of samples is then one ``index_select``.
* The SUT batches samples across queries up to ``max_pairs`` pairs per forward. SingleStream and
  MultiStream predict in LoadGen's own thread (no hand-off); Offline and Server hand queries to
  one worker thread through a ``queue.Queue``; Server takes whatever is waiting when the worker
  is free (dynamic batching). Responses are float32 ``[p, y]`` per pair, kept alive until
  ``QuerySamplesComplete`` has copied them. An exception in the worker fails the run.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from .dataset import CriteoSplit
from .exceptions import DlrmNbError
from .fileio import atomic_output, write_json
from .inference import Predictor, check_precision_device
from .progress import Progress, progress_bar

SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline")
MODES = {"performance": "PerformanceOnly", "accuracy": "AccuracyOnly"}
MLPERF_PERFORMANCE_SAMPLES = 204_800
MODEL_NAME = "dlrm"
#: LoadGen's early-stopping rule needs about 460 queries, all within the bound, before a p99 can be
#: VALID; a Server run shorter than that is INVALID whatever its latencies.
EARLY_STOPPING_QUERIES = 500
#: The fewest queries with which early stopping can report each scenario's percentile (p90 for
#: SingleStream, p99 otherwise); short runs are stretched to them, within max_duration_ms
#: (Server runs are given the time they need).
EARLY_STOPPING_MIN_QUERIES = MappingProxyType(
    {"SingleStream": 64, "MultiStream": 662, "Server": EARLY_STOPPING_QUERIES}
)
#: Per-sample latencies (int64 ns, the SUT's view: issue -> complete) beside LoadGen's logs.
SUT_LATENCIES_NAME = "sut_latencies_ns.npy"


@dataclass(frozen=True)
class LoadgenSettings:
    """What a LoadGen run does; turned into a ``user.conf`` for the run folder.

    Defaults keep a run bounded (at most ``max_duration_ms``, 60 s); ``official`` applies
    MLPerf's own durations and counts from LoadGen's built-in ``mlperf.conf`` instead.
    """

    scenario: str = "Offline"
    mode: str = "performance"
    target_qps: float | None = None  # Server: the arrival rate; Offline: the expected rate
    latency_ms: float = 30.0  # Server p99 bound (30 ms: DLRM v1 rules; 60 ms in today's mlperf.conf)
    # SingleStream / MultiStream: the latency LoadGen plans its queries with (None: measured at warm-up)
    expected_latency_ms: float | None = None
    min_duration_ms: int = 5_000
    max_duration_ms: int = 60_000
    min_query_count: int = 1  # raised to EARLY_STOPPING_MIN_QUERIES of the scenario
    max_query_count: int | None = None
    performance_sample_count: int | None = None  # default: MLPerf's 204,800 capped by the data
    max_pairs: int = 8192  # pairs per forward, batching across samples and queries
    official: bool = False

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise DlrmNbError(f"scenario {self.scenario!r} is not one of {', '.join(SCENARIOS)}")
        if self.mode not in MODES:
            raise DlrmNbError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.target_qps is not None and not self.target_qps > 0:
            raise DlrmNbError(f"target_qps {self.target_qps} must be > 0")
        if not self.latency_ms > 0:
            raise DlrmNbError(f"latency_ms {self.latency_ms} must be > 0")
        if self.expected_latency_ms is not None and not self.expected_latency_ms > 0:
            raise DlrmNbError(
                f"expected_latency_ms {self.expected_latency_ms} must be > 0 (or None: measured)"
            )
        if (
            self.min_duration_ms < 0
            or self.max_duration_ms <= 0
            or self.max_duration_ms < self.min_duration_ms
        ):
            raise DlrmNbError(
                f"durations min {self.min_duration_ms} ms, max {self.max_duration_ms} ms: "
                "need 0 <= min <= max and max > 0"
            )
        if self.max_pairs < 1:
            raise DlrmNbError(f"max_pairs {self.max_pairs} must be >= 1")
        if self.scenario == "Server" and self.target_qps is None:
            raise DlrmNbError("scenario Server needs target_qps (queries per second to issue)")

    def sample_count(self, total_samples: int) -> int:
        count = self.performance_sample_count or min(MLPERF_PERFORMANCE_SAMPLES, total_samples)
        if not 0 < count <= total_samples:
            raise DlrmNbError(
                f"performance_sample_count {count} is more than the {total_samples} aggregated samples "
                "the data holds"
            )
        return count

    def user_conf(self, total_samples: int) -> str:
        """The ``user.conf`` lines for model ``dlrm`` (LoadGen reads durations in ms)."""
        scenario = f"{MODEL_NAME}.{self.scenario}"
        lines = [f"{MODEL_NAME}.*.performance_sample_count_override = {self.sample_count(total_samples)}"]
        if self.target_qps is not None:
            lines.append(f"{scenario}.target_qps = {self.target_qps:g}")
        if self.scenario == "Server":
            lines.append(f"{scenario}.target_latency = {self.latency_ms:g}")
        if self.scenario in ("SingleStream", "MultiStream"):
            lines.append(f"{scenario}.target_latency = {self.expected_latency_ms:g}")
        if not self.official:
            queries = max(self.min_query_count, EARLY_STOPPING_MIN_QUERIES.get(self.scenario, 1))
            longest = self.max_duration_ms
            if self.scenario == "Server":  # leave time for the early-stopping queries at this rate
                longest = max(longest, math.ceil(1500 * queries / self.target_qps))
            lines += [
                f"{scenario}.min_duration = {self.min_duration_ms}",
                f"{scenario}.max_duration = {longest}",
                f"{scenario}.min_query_count = {queries}",
            ]
            if self.max_query_count is not None:
                lines.append(f"{scenario}.max_query_count = {self.max_query_count}")
        return "\n".join(lines) + "\n"


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
        samples = np.unique(np.asarray(samples, dtype=np.int64))
        rows = _rows_of(self.trace[samples, 0], self.sizes[samples])
        batch = self.split.batch(rows)
        self._first_row[:] = -1
        self._first_row[samples] = _run_starts(self.sizes[samples])
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
        index = torch.from_numpy(_rows_of(self._first_row[samples], self.sizes[samples]))
        return tuple(self._loaded[k].index_select(0, index) for k in ("dense", "ids", "labels"))


def warm_up(predictor: Predictor, split: CriteoSplit, sizes: np.ndarray, max_pairs: int) -> float:
    """Run a few forwards before LoadGen starts (first calls pay for allocations and, on CUDA,
    kernel loading) and return the measured aggregated samples/s at ``max_pairs`` pairs per forward."""
    pairs = int(min(max_pairs, len(split)))
    dense, ids = _first_pairs(split, pairs)
    for _ in range(2):
        predictor.predict(dense, ids).cpu()
    started, runs = time.perf_counter(), 0
    while runs < 3 or time.perf_counter() - started < 0.5:
        predictor.predict(dense, ids).cpu()
        runs += 1
    pairs_per_s = runs * pairs / (time.perf_counter() - started)
    return pairs_per_s / float(np.mean(sizes))


def _first_pairs(split: CriteoSplit, pairs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense float32 [P, 13] and ids int64 [P, 26] of the split's first P pairs (timing inputs)."""
    batch = split.batch(slice(0, pairs))
    return torch.from_numpy(batch.dense), torch.from_numpy(batch.cats)


#: Samples per query of the streaming scenarios (LoadGen's defaults for MultiStream).
STREAM_SAMPLES = MappingProxyType({"SingleStream": 1, "MultiStream": 8})


def query_latency_ms(predictor: Predictor, split: CriteoSplit, sizes: np.ndarray, samples: int) -> float:
    """Median ms of a forward over ``samples`` aggregated samples of mean size (5 tries)."""
    dense, ids = _first_pairs(split, int(min(len(split), max(1, round(samples * float(np.mean(sizes)))))))
    times = []
    for _ in range(5):
        started = time.perf_counter()
        predictor.predict(dense, ids).cpu()
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times))


def _run_starts(sizes: np.ndarray) -> np.ndarray:
    """Where each of back-to-back runs of ``sizes`` int [S] starts: int64 [S]."""
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


def _rows_of(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Row indices int64 [sum(sizes)] of consecutive runs ``starts[i] .. starts[i] + sizes[i] - 1``."""
    total = int(sizes.sum())
    run_starts = np.repeat(starts - _run_starts(sizes), sizes)
    return run_starts + np.arange(total, dtype=np.int64)


@dataclass
class _Work:
    ids: np.ndarray  # LoadGen response ids, uint64 [S]
    samples: np.ndarray  # QSL indices, int64 [S]
    issued_ns: np.ndarray  # perf_counter_ns when LoadGen handed each sample to the SUT, int64 [S]


@dataclass
class SutStats:
    """What the SUT did: forwards, pairs, and time in the model."""

    forwards: int = 0
    pairs: int = 0
    samples: int = 0
    model_seconds: float = 0.0
    batch_pairs: list[int] = field(default_factory=list)
    latencies_ns: list[np.ndarray] = field(default_factory=list)  # per sample: issue -> complete

    def sample_latencies_ns(self) -> np.ndarray:
        """int64 [S]: for every completed sample, ns from the SUT receiving it to its completion."""
        return np.concatenate(self.latencies_ns) if self.latencies_ns else np.zeros(0, np.int64)


class DlrmSUT:
    """The system under test: batches samples, predicts, answers LoadGen."""

    def __init__(self, predictor: Predictor, qsl: AggregatedQSL, scenario: str, max_pairs: int) -> None:
        import mlperf_loadgen as lg

        self.lg, self.predictor, self.qsl, self.scenario, self.max_pairs = (
            lg,
            predictor,
            qsl,
            scenario,
            max_pairs,
        )
        self.stats = SutStats()
        self.error: BaseException | None = None
        self._queue: queue.Queue[_Work | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        if scenario in ("Offline", "Server"):
            self._worker = threading.Thread(target=self._serve, name="dlrm-nb-sut", daemon=True)
            self._worker.start()
        self.handle = lg.ConstructSUT(self._issue, self._flush)

    # -- LoadGen callbacks

    def _issue(self, query_samples) -> None:
        now = time.perf_counter_ns()
        ids = np.fromiter((q.id for q in query_samples), dtype=np.uint64, count=len(query_samples))
        samples = np.fromiter((q.index for q in query_samples), dtype=np.int64, count=len(query_samples))
        work = _Work(ids, samples, np.full(len(ids), now, dtype=np.int64))
        if self._worker is None:
            self._run(work)  # SingleStream / MultiStream: no hand-off
        else:
            self._queue.put(work)

    def _flush(self) -> None:
        pass

    # -- work

    def _serve(self) -> None:
        while True:
            work = self._queue.get()
            if work is None:
                return
            waiting = [work]
            pairs = int(self.qsl.sizes[work.samples].sum())
            while pairs < self.max_pairs:  # take whatever else has arrived (Server: dynamic batching)
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                waiting.append(more)
                pairs += int(self.qsl.sizes[more.samples].sum())
            self._run(
                _Work(
                    np.concatenate([w.ids for w in waiting]),
                    np.concatenate([w.samples for w in waiting]),
                    np.concatenate([w.issued_ns for w in waiting]),
                )
            )

    def _run(self, work: _Work) -> None:
        for batch in _batches(work, self.qsl.sizes, self.max_pairs):
            ids, samples = batch.ids, batch.samples
            if self.error is not None:
                self._complete_empty(ids)
                continue
            try:
                self._predict_and_complete(ids, samples, batch.issued_ns)
            except BaseException as exc:  # the run must fail, loudly, but LoadGen must be able to finish
                self.error = exc
                self._complete_empty(ids)

    def _predict_and_complete(self, ids: np.ndarray, samples: np.ndarray, issued_ns: np.ndarray) -> None:
        started = time.perf_counter()
        dense, cats, labels = self.qsl.gather(samples)
        predictions = self.predictor.predict(dense, cats).cpu()
        self.stats.model_seconds += time.perf_counter() - started
        response = torch.stack([predictions, labels.to(predictions.dtype)], dim=1).numpy()  # [P, 2] float32
        sizes = self.qsl.sizes[samples]
        offsets = _run_starts(sizes) * 8  # bytes: 2 float32 per pair
        base = response.ctypes.data
        responses = [
            self.lg.QuerySampleResponse(int(i), base + int(o), int(n) * 8)
            for i, o, n in zip(ids, offsets, sizes, strict=True)
        ]
        self.lg.QuerySamplesComplete(responses)  # copies the data: `response` may go after this
        self.stats.latencies_ns.append(time.perf_counter_ns() - issued_ns)
        self.stats.forwards += 1
        self.stats.pairs += int(sizes.sum())
        self.stats.samples += len(samples)
        self.stats.batch_pairs.append(int(sizes.sum()))

    def _complete_empty(self, ids: np.ndarray) -> None:
        self.lg.QuerySamplesComplete([self.lg.QuerySampleResponse(int(i), 0, 0) for i in ids])

    def close(self) -> None:
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join()
        self.lg.DestroySUT(self.handle)


def _batches(work: _Work, sizes: np.ndarray, max_pairs: int):
    """Split a query's samples into consecutive batches of at most ``max_pairs`` pairs (>= 1 sample each)."""
    pairs = np.cumsum(sizes[work.samples])
    start = 0
    while start < len(work.samples):
        limit = (pairs[start - 1] if start else 0) + max_pairs
        end = max(start + 1, int(np.searchsorted(pairs, limit, side="right")))
        yield _Work(work.ids[start:end], work.samples[start:end], work.issued_ns[start:end])
        start = end


def run_loadgen(
    predictor: Predictor,
    split: CriteoSplit,
    trace: np.ndarray,
    settings: LoadgenSettings,
    out_dir: str | os.PathLike,
) -> dict[str, Any]:
    """One LoadGen run into ``out_dir``: ``user.conf``, LoadGen's logs and ``metrics.json``.

    Returns the metrics (parsed from LoadGen's summary and detail logs, plus the SUT's own
    counters and, in accuracy mode, the AUC).
    """
    import mlperf_loadgen as lg

    from .mlperf_logs import parse_run

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    qsl = AggregatedQSL(split, trace, predictor.device)
    try:
        rate = warm_up(predictor, split, qsl.sizes, settings.max_pairs)
    except Exception as exc:
        raise DlrmNbError(f"the model failed during the {settings.scenario} run (warm-up): {exc!r}") from exc
    if settings.scenario == "Offline" and settings.target_qps is None:
        # LoadGen issues expected_qps x min_duration samples in Offline: too few and the run ends early
        settings = replace(settings, target_qps=round(1.2 * rate, 2))
    if settings.scenario in STREAM_SAMPLES and settings.expected_latency_ms is None:
        # LoadGen plans min_duration / expected latency queries: an estimate on the low side keeps
        # it from running out of queries before min_duration (which makes the run INVALID)
        latency = query_latency_ms(predictor, split, qsl.sizes, STREAM_SAMPLES[settings.scenario])
        settings = replace(settings, expected_latency_ms=round(0.8 * latency, 3))
    conf = out / "user.conf"
    conf.write_text(settings.user_conf(len(qsl)))
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
    sut = DlrmSUT(predictor, qsl, settings.scenario, settings.max_pairs)
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
    with atomic_output(out / SUT_LATENCIES_NAME) as tmp, open(tmp, "wb") as f:
        np.save(f, stats.sample_latencies_ns())
    metrics.update(
        settings=asdict(settings),
        wall_seconds=round(wall, 3),
        sut={
            "forwards": stats.forwards,
            "pairs": stats.pairs,
            "samples": stats.samples,
            "model_seconds": round(stats.model_seconds, 3),
            "mean_batch_pairs": float(np.mean(stats.batch_pairs)) if stats.batch_pairs else 0.0,
        },
        precision=predictor.precision,
        device=str(predictor.device),
    )
    if settings.mode == "accuracy":
        from .accuracy import evaluate_log  # scikit-learn takes 2 s to import: only when needed

        metrics["accuracy"] = evaluate_log(out / "mlperf_log_accuracy.json")
    write_json(out / "metrics.json", metrics)
    return metrics


def check_pair(table_sizes: Sequence[int], counts: np.ndarray, data_dir: str | os.PathLike) -> None:
    """Every id the data holds must have a row in the model's table (ranks < counts[j])."""
    for j, (rows, count) in enumerate(zip(table_sizes, counts, strict=True)):
        if count > rows:
            raise DlrmNbError(
                f"the checkpoint does not fit {data_dir}: feature C{j + 1} has {int(count):,} distinct "
                "values "
                f"but embedding table {j} only {int(rows):,} rows (was the data prepared with another "
                "max_ind_range or sub-sampling rate than the model?)"
            )


@dataclass(frozen=True)
class SearchResult:
    """Server QPS search: the highest valid target QPS found and every probe (QPS, p99, valid)."""

    best_qps: float | None
    probes: list[dict[str, Any]]
    confirmed: dict[str, Any] | None
    seconds: float


def search_server_qps(
    probe, low: float, high: float, *, budget_s: float, probe_s: float, tolerance: float = 0.05
) -> SearchResult:
    """Bisect the target QPS of Server runs for the highest VALID one, within ``budget_s`` seconds.

    ``probe(qps, final)`` runs one Server test and returns its metrics (``valid``,
    ``latency_ns``...). Starts at ``high`` (e.g. the Offline rate); stops when the bracket is
    narrower than ``tolerance`` of its top or the next probe would not fit the budget; then
    runs one confirming probe at the best QPS when time allows. A probe lasts at least
    ``probe_s`` and long enough for :data:`EARLY_STOPPING_QUERIES` queries at its QPS.
    """
    if not 0 < low <= high:
        raise DlrmNbError(f"QPS search bracket [{low}, {high}] must satisfy 0 < low <= high")
    started = time.perf_counter()
    probes: list[dict[str, Any]] = []
    best: float | None = None
    candidate = high
    lo, hi = 0.0, high
    overhead = 0.0  # process start-up and draining, learnt from the probes
    while time.perf_counter() - started + 1.2 * (_probe_seconds(candidate, probe_s) + overhead) <= budget_s:
        probe_started = time.perf_counter()
        metrics = probe(candidate, False)
        overhead = max(overhead, time.perf_counter() - probe_started - _probe_seconds(candidate, probe_s))
        row = {
            "qps": candidate,
            "p99_ms": metrics["latency_ns"]["p99"] / 1e6,
            "valid": bool(metrics["valid"]),
            "reasons": metrics.get("invalid_reasons", []),
        }
        probes.append(row)
        if row["valid"]:
            best, lo = candidate, candidate
        else:
            hi = candidate
        if hi - lo <= tolerance * hi:
            break
        candidate = (lo + hi) / 2 if lo > 0 else max(low, hi / 2)
        if lo == 0 and candidate <= low and probes[-1]["qps"] <= low:
            break
    confirmed = None
    if (
        best is not None
        and time.perf_counter() - started + 1.2 * (_probe_seconds(best, probe_s) + overhead) <= budget_s
    ):
        confirmed = probe(best, True)
    return SearchResult(best, probes, confirmed, time.perf_counter() - started)


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


def run_qps_search(
    benchmark: Benchmark,
    base: LoadgenSettings,
    out_dir: str | os.PathLike,
    *,
    budget_s: float,
    probe_ms: int,
    offline_samples_per_s: float | None = None,
    progress: Progress = True,
) -> dict[str, Any]:
    """Search the highest VALID Server QPS under ``base.latency_ms`` and record it.

    Starts from ``offline_samples_per_s`` (measured here with a short Offline run when not
    given); probes go to ``out_dir/probe_<qps>/`` and the confirming run to ``out_dir/confirm/``.
    Writes and returns ``out_dir/qps_search.json``: best QPS, whether its confirming run was
    valid, the QPS to run Server at, every probe (QPS, p99, valid) and the bound.
    """
    out = Path(out_dir)
    base = replace(base, official=False)  # probes are short by design, whatever the scenario runs used

    def short(scenario: str, qps: float | None, duration_ms: int) -> LoadgenSettings:
        return replace(
            base,
            scenario=scenario,
            mode="performance",
            target_qps=qps,
            min_duration_ms=duration_ms,
            max_duration_ms=4 * duration_ms,
        )

    if offline_samples_per_s is None:
        offline_samples_per_s = benchmark.run(short("Offline", None, probe_ms), out / "offline")[
            "samples_per_s"
        ]

    def probe(qps: float, final: bool) -> dict[str, Any]:
        settings = short("Server", qps, probe_ms * (2 if final else 1))
        metrics = benchmark.run(settings, out / ("confirm" if final else f"probe_{qps:.2f}"))
        bar.write(("confirm " if final else "probe ") + metrics_line(metrics))
        bar.update(round(time.perf_counter() - started) - bar.n)
        return metrics

    high = max(float(offline_samples_per_s or 0.0), 1.0)
    started = time.perf_counter()
    # leave=False: it may run inside the scenarios bar; text mode shows only its lines then
    with progress_bar(
        progress, total=round(budget_s), desc="Server QPS search", unit="s", leave=False
    ) as bar:
        result = search_server_qps(
            probe, low=max(high / 64, 0.5), high=high, budget_s=budget_s, probe_s=probe_ms / 1000 * 1.3
        )
    confirmed = None if result.confirmed is None else bool(result.confirmed["valid"])
    record = {
        "best_qps": result.best_qps,
        # where to run Server: the best QPS, or 10% below it when its confirming run failed (the
        # p99 sits at the bound there, and a rerun is as likely to pass as not)
        "server_qps": None
        if result.best_qps is None
        else round(result.best_qps * (0.9 if confirmed is False else 1.0), 2),
        "confirmed_valid": confirmed,
        "confirmed_p99_ms": None if result.confirmed is None else result.confirmed["latency_ns"]["p99"] / 1e6,
        "probes": result.probes,
        "seconds": result.seconds,
        "budget_s": budget_s,
        "offline_samples_per_s": offline_samples_per_s,
        "latency_ms": base.latency_ms,
    }
    write_json(out / "qps_search.json", record)
    return record


def _probe_seconds(qps: float, probe_s: float) -> float:
    return max(probe_s, EARLY_STOPPING_QUERIES / qps)


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
    source: dict[str, Any]  # checkpoint, data_dir, precision, device, compile, threads

    @cached_property
    def predictor(self) -> Predictor:
        from .checkpoint import load_model

        model, _ = load_model(self.source["checkpoint"])
        return Predictor(
            model,
            precision=self.source["precision"],
            device=self.source["device"],
            compile=self.source["compile"],
        )

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
    source: dict[str, Any], trace: np.ndarray, settings: LoadgenSettings, out: str, send
) -> None:
    """Body of the process that runs one LoadGen test (see :class:`Benchmark`)."""
    try:
        from .checkpoint import load_model
        from .dataset import open_split

        torch.set_num_threads(source["threads"])
        model, _ = load_model(source["checkpoint"])
        predictor = Predictor(
            model, precision=source["precision"], device=source["device"], compile=source["compile"]
        )
        send.send(
            ("ok", run_loadgen(predictor, open_split(source["data_dir"], "test"), trace, settings, out))
        )
    except BaseException as exc:
        send.send(("error", str(exc) if isinstance(exc, DlrmNbError) else repr(exc)))
    finally:
        send.close()


def open_benchmark(
    checkpoint: str | os.PathLike,
    data_dir: str | os.PathLike,
    *,
    precision: str = "fp32",
    device: str = "cpu",
    compile: bool = False,
    aggregation: str = "quantile",
    aggregation_size: int = 270,
    aggregation_range: tuple[int, int] = (100, 700),
    seed: int = 123,
    max_pairs_in_split: int | None = None,
    trace_path: str | os.PathLike | None = None,
) -> Benchmark:
    """Load a checkpoint and a prepared folder, check they fit, build the aggregation trace.

    ``max_pairs_in_split`` uses only the first pairs of the split (short runs on big data).
    With ``trace_path`` the trace is also written there in upstream's format.
    """
    from .aggregation import make_trace, write_trace
    from .checkpoint import load_model
    from .dataset import open_split, read_counts

    split = open_split(data_dir, "test")
    model, _ = load_model(checkpoint)
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
    source = {
        "checkpoint": str(checkpoint),
        "data_dir": str(data_dir),
        "precision": precision,
        "device": device,
        "compile": compile,
        "threads": threads,
    }
    check_precision_device(precision, device)  # fail here, not in the first LoadGen process
    return Benchmark(split, trace, source)


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
