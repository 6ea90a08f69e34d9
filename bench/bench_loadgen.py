"""The LoadGen harness against the model's own speed and the machine's matmul peak, in one run.

    python bench/bench_loadgen.py [--precisions fp32 bf16 int8] [--table-precision fp32]
                                  [--search-s 60] [--latency-ms 30] [--json OUT.json]
                                  [--checkpoint C.pt --random-pairs N]

On synthetic data with the demo model (tb00_40M MLPs, trained once into --work), per precision;
with --checkpoint (e.g. a full-size one from ``dlrm-nb synth-checkpoint``) on a test split of N
records whose ids are drawn uniformly over each of its tables (so gathers touch all of them, as
real traffic over real-size tables does; the demo data's ids sit in the tables' first rows):
  bare        model-only pairs/s at the SUT's batch size, and its share of this machine's measured
              matmul peak in that precision (one pair is 4.92 MFLOP)
  Offline     LoadGen samples/s and pairs/s, and their ratio to the bare forward   (target >= 90%)
  Server      the highest VALID target QPS at the p99 bound, and its ratio to Offline (target >= 50%)
  SingleStream p90 latency against the p90 of bare forwards of single samples      (target <= 1.1x)
The CPU model and its vector flags head the table: figures from different machines do not compare.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_model import peak_matmul

from dlrm_nb.data.criteo import BIN_DTYPE, CAT_COLS, DATASETS, DENSE_COLS, LABEL_COL, N_DENSE, N_FIELDS
from dlrm_nb.data.preprocess import PrepareSettings, prepare
from dlrm_nb.data.synthetic import generate
from dlrm_nb.loadgen.benchmark import Benchmark, open_benchmark
from dlrm_nb.loadgen.qps_search import search_server_qps
from dlrm_nb.loadgen.settings import LoadgenSettings
from dlrm_nb.model.checkpoint import load_checkpoint
from dlrm_nb.model.page_in import page_in
from dlrm_nb.model.train import TrainSettings, train_demo
from dlrm_nb.workbook.sysinfo import cpu_flags, cpu_model

#: The dtype whose matmul peak bounds each MLP precision (int8 is dynamic quantization: its
#: products run on int8 kernels, compared here with the fp32 peak as the reference's "arithmetic").
PEAK_DTYPE = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.float32}


def demo_checkpoint(work: Path) -> tuple[Path, Path]:
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


def random_prepared(work: Path, table_sizes: tuple[int, ...], pairs: int, seed: int = 7) -> Path:
    """A prepared folder whose test split holds ``pairs`` records with ids uniform over each table
    (labels and dense values random), and counts equal to the table sizes; made once."""
    folder = work / f"random-{pairs}-{seed}-{zlib.crc32(np.asarray(table_sizes).tobytes()):08x}"
    split = folder / DATASETS["terabyte"].bin_name("test")
    if split.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    records = np.empty((pairs, N_FIELDS), dtype=BIN_DTYPE)
    records[:, LABEL_COL] = rng.integers(0, 2, pairs)
    records[:, DENSE_COLS] = rng.integers(0, 100, (pairs, N_DENSE))
    for j, rows in enumerate(table_sizes):
        records[:, CAT_COLS.start + j] = rng.integers(0, rows, pairs)
    np.savez(folder / DATASETS["terabyte"].fea_count_name(), counts=np.asarray(table_sizes, dtype=np.int32))
    records.tofile(split)
    return folder


def bare_forward_rate(bench: Benchmark, pairs: int, seconds: float = 3.0) -> float:
    """Pairs/s of the predictor alone on the split's first ``pairs`` pairs (inputs prebuilt)."""
    batch = bench.split.batch(slice(0, pairs))
    dense, ids = torch.from_numpy(batch.dense), torch.from_numpy(batch.cats)
    bench.predictor.predict(dense, ids)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        bench.predictor.predict(dense, ids)
        runs += 1
    return runs * pairs / (time.perf_counter() - started)


def bare_sample_p90_ms(bench: Benchmark, repeats: int = 300) -> float:
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


def run_precision(args: argparse.Namespace, precision: str, peaks: dict[str, float]) -> dict:
    if args.checkpoint:
        checkpoint = args.checkpoint
        table_sizes = load_checkpoint(checkpoint)[0].arch.table_sizes
        prepared = random_prepared(args.work, table_sizes, args.random_pairs)
    else:
        checkpoint, prepared = demo_checkpoint(args.work)
    started = time.perf_counter()
    bench = open_benchmark(
        checkpoint, prepared, precision=precision, table_precision=args.table_precision, device=args.device
    )
    load_s = time.perf_counter() - started
    page_in_s = page_in(bench.predictor.engine, progress=False)
    precision = bench.source.precision  # auto: the one it chose
    runs = args.work / "runs" / f"{Path(checkpoint).stem}-{precision}-{args.table_precision}"
    offline = bench.run(
        LoadgenSettings(
            scenario="Offline", min_duration_ms=10_000, max_duration_ms=30_000, max_pairs=args.max_pairs
        ),
        runs,
    )
    batch = int(offline["sut"]["mean_batch_pairs"])
    bare = bare_forward_rate(bench, batch)
    gflops = bare * bench.predictor.arch.flops_per_pair / 1e9
    row = {
        "checkpoint": str(checkpoint),
        "load_s": load_s,
        "page_in_s": page_in_s,
        "precision": precision,
        "table_precision": args.table_precision,
        "batch_pairs": batch,
        "bare_pairs_per_s": bare,
        "bare_gflop_per_s": gflops,
        "peak_gflop_per_s": peaks[precision],
        "bare_of_peak": gflops / peaks[precision],
        "offline_samples_per_s": offline["samples_per_s"],
        "offline_pairs_per_s": offline["pairs_per_s"],
        "offline_of_bare": offline["pairs_per_s"] / bare,
        "auto": None if bench.auto is None else bench.auto.record(),
    }
    for bound in args.latency_ms:

        def probe(qps: float, final: bool, bound: float = bound) -> dict:
            settings = LoadgenSettings(
                scenario="Server",
                target_qps=qps,
                latency_ms=bound,
                max_pairs=args.max_pairs,
                min_duration_ms=5000,
                max_duration_ms=20_000,
            )
            folder = runs / f"server_{bound:g}ms" / ("confirm" if final else f"probe_{qps:.1f}")
            return bench.run(settings, folder)

        search = search_server_qps(
            probe, low=1.0, high=offline["samples_per_s"], budget_s=args.search_s, probe_s=6.5
        )
        row[f"server_qps_{bound:g}ms"] = search.best_qps
        row[f"server_of_offline_{bound:g}ms"] = (search.best_qps or 0.0) / offline["samples_per_s"]
        row[f"server_probes_{bound:g}ms"] = [
            (round(p["qps"], 1), round(p["p99_ms"] or 0, 1), p["valid"]) for p in search.probes
        ]
    single = bench.run(
        LoadgenSettings(
            scenario="SingleStream", min_duration_ms=8000, max_duration_ms=20_000, max_pairs=args.max_pairs
        ),
        runs,
    )
    row["single_p90_ms"] = single["latency_ns"]["p90"] / 1e6
    row["bare_sample_p90_ms"] = bare_sample_p90_ms(bench)
    row["single_of_bare"] = row["single_p90_ms"] / row["bare_sample_p90_ms"]
    return row


def print_table(machine: dict, rows: list[dict], bounds: list[float]) -> None:
    print(f"\nCPU: {machine['cpu']} ({', '.join(machine['cpu_flags']) or 'no AVX-512/AMX flags'})")
    print(f"torch threads: {machine['threads']}; matmul peaks GFLOP/s: {machine['peaks']}")
    server = "".join(f"{'Server@' + format(b, 'g') + 'ms':>14s}{'/Off':>6s}" for b in bounds)
    print(
        f"{'precision':10s}{'tables':>7s}{'bare pairs/s':>13s}{'of peak':>8s}{'Offline smp/s':>14s}"
        f"{'/bare':>6s}{server}{'SS p90 ms':>10s}{'bare p90':>9s}{'ratio':>6s}"
    )
    for r in rows:
        qps = "".join(
            f"{r[f'server_qps_{b:g}ms'] or 0:14.1f}{r[f'server_of_offline_{b:g}ms']:6.0%}" for b in bounds
        )
        print(
            f"{r['precision']:10s}{r['table_precision']:>7s}{r['bare_pairs_per_s']:13,.0f}"
            f"{r['bare_of_peak']:8.0%}{r['offline_samples_per_s']:14,.1f}{r['offline_of_bare']:6.0%}{qps}"
            f"{r['single_p90_ms']:10.2f}{r['bare_sample_p90_ms']:9.2f}{r['single_of_bare']:6.2f}"
        )
    for r in rows:
        print(
            f"{r['precision']}, {r['table_precision']} tables of {Path(r['checkpoint']).name}: open "
            f"{r['load_s']:.1f} s (tables converted or mapped from the cache), "
            f"page-in {r['page_in_s']:.2f} s"
        )
        for b in bounds:
            print(
                f"{r['precision']} Server probes at {b:g} ms (QPS, p99 ms, valid):",
                r[f"server_probes_{b:g}ms"],
            )
    print("targets: Offline >= 90% of bare; Server >= 50% of Offline at 30 ms; SingleStream p90 <= 1.1x bare")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/dlrm-nb-bench-loadgen"))
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "int8"])
    parser.add_argument("--table-precision", default="fp32", help="fp32, bf16 or int8 (row-wise)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--search-s", type=float, default=60.0, help="time budget of each Server QPS search")
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[30.0], help="Server p99 bounds")
    parser.add_argument("--max-pairs", type=int, default=4096, help="pairs per forward in the SUT")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--checkpoint", type=Path, default=None, help="instead of the demo model")
    parser.add_argument("--random-pairs", type=int, default=2_000_000, help="test pairs with --checkpoint")
    args = parser.parse_args()
    if args.checkpoint is None:
        demo_checkpoint(args.work)
    device = torch.device(args.device)
    peaks = {name: peak_matmul(dtype, device, 1.0) for name, dtype in PEAK_DTYPE.items()}
    machine = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "threads": torch.get_num_threads(),
        "peaks": {name: round(value, 1) for name, value in peaks.items()},
    }
    rows = [run_precision(args, precision, peaks) for precision in args.precisions]
    print_table(machine, rows, args.latency_ms)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
