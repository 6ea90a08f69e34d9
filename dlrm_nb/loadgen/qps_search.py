"""The Server QPS search: the highest target QPS whose runs stay VALID under the latency bound."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dlrm_nb.exceptions import DlrmNbError
from dlrm_nb.fileio import write_json
from dlrm_nb.loadgen.benchmark import Benchmark
from dlrm_nb.loadgen.runner import metrics_line
from dlrm_nb.loadgen.settings import EARLY_STOPPING_QUERIES, LoadgenSettings
from dlrm_nb.progress import Progress, progress_bar

#: The search's record in its folder: best QPS, every probe, the bound.
QPS_SEARCH_RECORD = "qps_search.json"


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
    write_json(out / QPS_SEARCH_RECORD, record)
    return record


def _probe_seconds(qps: float, probe_s: float) -> float:
    return max(probe_s, EARLY_STOPPING_QUERIES / qps)
