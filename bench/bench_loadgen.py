"""The LoadGen harness against the model's own speed, side by side in one run.

    python bench/bench_loadgen.py [--work /tmp/dlrm-nb-bench-loadgen] [--precisions fp32 int8] [--search-s 60]

On synthetic data with the demo model (tb00_40M MLPs, trained here first), for each precision:
  Offline     samples/s and pairs/s against a bare forward at the same batch size (target >= 85%)
  Server      the highest VALID target QPS at a 30 ms p99 bound (the reference has none on 2 cores)
  SingleStream p90 latency against the p90 of bare forwards of single aggregated samples (target <= 1.2x)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dlrm_nb.data.preprocess import PrepareSettings, prepare
from dlrm_nb.data.synthetic import generate
from dlrm_nb.loadgen.benchmark import open_benchmark
from dlrm_nb.loadgen.qps_search import search_server_qps
from dlrm_nb.loadgen.settings import LoadgenSettings
from dlrm_nb.model.train import TrainSettings, train_demo


def demo_checkpoint(work: Path, device: str) -> tuple[Path, Path]:
    """Synthetic data and the demo model, made once and kept in ``work``."""
    prepared, checkpoint = work / "prep", work / "demo.pt"
    if not checkpoint.exists():
        generate(
            work / "raw",
            rows_per_day=4000,
            test_day_rows=200_000,
            seed=5,
            cardinality_scale=0.05,
            overwrite=True,
        )
        prepare(work / "raw", prepared, PrepareSettings(max_ind_range=1_000_000, write_train=True))
        train_demo(prepared, checkpoint, TrainSettings(seed=1))
    return checkpoint, prepared


def bare_forward_rate(bench, pairs: int, seconds: float = 3.0) -> float:
    batch = bench.split.batch(slice(0, pairs))
    dense, ids = torch.from_numpy(batch.dense), torch.from_numpy(batch.cats)
    bench.predictor.predict(dense, ids)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        bench.predictor.predict(dense, ids)
        runs += 1
    return runs * pairs / (time.perf_counter() - started)


def bare_sample_latency_ms(bench, repeats: int = 300) -> float:
    """p90 of bare forwards of single aggregated samples, taken in trace order (sizes 100..700
    pairs, as SingleStream sees them), in this thread, without LoadGen."""
    times = []
    for start, end in bench.trace[:repeats]:
        batch = bench.split.batch(slice(int(start), int(end)))
        dense, ids = torch.from_numpy(batch.dense), torch.from_numpy(batch.cats)
        started = time.perf_counter()
        bench.predictor.predict(dense, ids)
        times.append(time.perf_counter() - started)
    return statistics.quantiles(times, n=10)[8] * 1000  # p90, as SingleStream reports


def run_precision(
    checkpoint: Path,
    prepared: Path,
    work: Path,
    precision: str,
    device: str,
    search_s: float,
    max_pairs: int,
    latency_bounds: list[float],
) -> dict:
    bench = open_benchmark(checkpoint, prepared, precision=precision, device=device)
    runs = work / "runs" / precision
    row = {"precision": precision}
    offline = bench.run(
        LoadgenSettings(
            scenario="Offline", min_duration_ms=10_000, max_duration_ms=30_000, max_pairs=max_pairs
        ),
        runs,
    )
    bare = bare_forward_rate(bench, int(offline["sut"]["mean_batch_pairs"]))
    row.update(
        offline_samples_per_s=offline["samples_per_s"],
        offline_pairs_per_s=offline["pairs_per_s"],
        batch_pairs=offline["sut"]["mean_batch_pairs"],
        bare_pairs_per_s=bare,
    )

    for bound in latency_bounds:

        def probe(qps: float, final: bool, bound=bound) -> dict:
            settings = LoadgenSettings(
                scenario="Server",
                target_qps=qps,
                latency_ms=bound,
                max_pairs=max_pairs,
                min_duration_ms=5000,
                max_duration_ms=20_000,
            )
            return bench.run(
                settings, runs / f"server_{bound:g}ms" / ("confirm" if final else f"probe_{qps:.1f}")
            )

        search = search_server_qps(
            probe, low=1.0, high=offline["samples_per_s"], budget_s=search_s, probe_s=6.5
        )
        row[f"server_qps_{bound:g}"] = search.best_qps
        row[f"server_probes_{bound:g}"] = [
            (round(p["qps"], 1), round(p["p99_ms"] or 0, 1), p["valid"]) for p in search.probes
        ]
    single = bench.run(
        LoadgenSettings(
            scenario="SingleStream", min_duration_ms=8000, max_duration_ms=20_000, max_pairs=max_pairs
        ),
        runs,
    )
    row.update(single_p90_ms=single["latency_ns"]["p90"] / 1e6, bare_sample_ms=bare_sample_latency_ms(bench))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/dlrm-nb-bench-loadgen"))
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--search-s", type=float, default=100.0, help="time budget of each Server QPS search")
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[30.0, 60.0], help="Server p99 bounds")
    parser.add_argument("--max-pairs", type=int, default=4096, help="pairs per forward in the SUT")
    args = parser.parse_args()
    checkpoint, prepared = demo_checkpoint(args.work, args.device)
    rows = [
        run_precision(
            checkpoint, prepared, args.work, p, args.device, args.search_s, args.max_pairs, args.latency_ms
        )
        for p in args.precisions
    ]
    bounds = "".join(f"{'Server QPS@' + format(b, 'g') + 'ms':>18s}" for b in args.latency_ms)
    print(
        f"\n{'precision':10s}{'Offline samples/s':>19s}{'pairs/s':>10s}{'bare fwd':>10s}{'ratio':>7s}{bounds}"
        f"{'SS p90 ms':>11s}{'bare p90':>10s}{'ratio':>7s}"
    )
    for r in rows:
        qps = "".join(
            f"{r[f'server_qps_{b:g}']:18.1f}" if r[f"server_qps_{b:g}"] else f"{'none':>18s}"
            for b in args.latency_ms
        )
        print(
            f"{r['precision']:10s}{r['offline_samples_per_s']:19,.1f}{r['offline_pairs_per_s']:10,.0f}"
            f"{r['bare_pairs_per_s']:10,.0f}{r['offline_pairs_per_s'] / r['bare_pairs_per_s']:7.0%}{qps}"
            f"{r['single_p90_ms']:11.2f}{r['bare_sample_ms']:10.2f}"
            f"{r['single_p90_ms'] / r['bare_sample_ms']:7.2f}"
        )
    for r in rows:
        for b in args.latency_ms:
            print(
                f"{r['precision']} Server probes at {b:g} ms (QPS, p99 ms, valid):",
                r[f"server_probes_{b:g}"],
            )
    print(
        "targets: Offline >= 85% of a bare forward at the same batch; SingleStream p90 <= 1.2x the bare p90"
    )


if __name__ == "__main__":
    main()
