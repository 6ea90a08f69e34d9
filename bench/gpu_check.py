"""The CUDA path, end to end, in one short command (where a GPU is lent):

    python3 bench/gpu_check.py [--work /tmp/dlrm-nb-gpu] [--seconds 0.5]

1. makes small synthetic Criteo data, prepares it and trains the demo model (tb00_40M) on the CPU;
2. loads the checkpoint on CUDA in fp32 and bf16, compares predictions with the CPU's and applies
   MLPerf's 99% / 99.9% rule to each precision's AUC against CPU fp32;
3. prints the model-only throughput table of bench/bench_model.py on CUDA;
4. runs a short LoadGen Offline and Server test on CUDA (fp32, bf16) and prints their metrics.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_model import run as throughput_table

from dlrm_nb.data.dataset import open_split
from dlrm_nb.data.preprocess import PrepareSettings, prepare
from dlrm_nb.data.synthetic import generate
from dlrm_nb.model.checkpoint import load_checkpoint
from dlrm_nb.model.inference import Predictor, accuracy_rule, score_split
from dlrm_nb.model.train import TrainSettings, train_demo


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/dlrm-nb-gpu"))
    parser.add_argument("--seconds", type=float, default=0.5, help="timing per throughput cell")
    parser.add_argument("--table-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: nothing to check")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, CUDA {torch.version.cuda}")
    shutil.rmtree(args.work, ignore_errors=True)
    started = time.perf_counter()
    sidecar = generate(
        args.work / "raw",
        rows_per_day=4000,
        test_day_rows=20000,
        seed=5,
        cardinality_scale=0.05,
        progress=False,
    )
    prepare(
        args.work / "raw",
        args.work / "prep",
        PrepareSettings(max_ind_range=1_000_000, write_train=True),
        progress=False,
    )
    summary = train_demo(args.work / "prep", args.work / "demo.pt", TrainSettings(seed=1), progress=False)
    print(
        f"data + training on CPU: {time.perf_counter() - started:.0f} s, test AUC {summary['test_auc']:.4f} "
        f"(oracle {sidecar['oracle_auc']['test']:.4f})"
    )

    test = open_split(args.work / "prep", "test")
    reference = None
    print(f"\n{'device/precision':18s} {'AUC':>8s} {'max |p - p_cpu|':>16s}  MLPerf rule vs CPU fp32")
    for device, precision in [("cpu", "fp32"), ("cuda", "fp32"), ("cuda", "bf16")]:
        model, _ = load_checkpoint(args.work / "demo.pt")
        score = score_split(Predictor(model, precision=precision, device=device), test, progress=False)
        predictions, auc = score.predictions, score.auc
        if reference is None:
            reference = (predictions, auc)
        difference = float(np.abs(predictions - reference[0]).max())
        rule = accuracy_rule(auc, reference[1])
        print(f"{device + ' ' + precision:18s} {auc:8.5f} {difference:16.2e}  {rule}")
    print()
    throughput_table("cuda", args.table_rows, args.seconds, compile_too=True)
    loadgen_on_cuda(args.work)


def loadgen_on_cuda(work: Path) -> None:
    """A short Offline and Server run of the real LoadGen with the model on CUDA."""
    from dlrm_nb.loadgen.benchmark import open_benchmark
    from dlrm_nb.loadgen.settings import LoadgenSettings

    print("\nLoadGen on CUDA (demo model, fp32 and bf16):")
    for precision in ("fp32", "bf16"):
        bench = open_benchmark(work / "demo.pt", work / "prep", precision=precision, device="cuda")
        offline = bench.run(
            LoadgenSettings(
                scenario="Offline", min_duration_ms=3000, max_duration_ms=10_000, max_pairs=65536
            ),
            work / "runs" / precision,
        )
        qps = max(1.0, 0.5 * offline["samples_per_s"])
        server = bench.run(
            LoadgenSettings(
                scenario="Server",
                target_qps=qps,
                latency_ms=30.0,
                min_duration_ms=5000,
                max_duration_ms=15_000,
                max_pairs=65536,
            ),
            work / "runs" / precision,
        )
        for name, metrics in (("Offline", offline), ("Server", server)):
            print(
                f"  {precision} {name:8s} {'VALID' if metrics['valid'] else 'INVALID':8s} "
                f"{metrics['samples_per_s']:10,.1f} samples/s {metrics['pairs_per_s']:12,.0f} pairs/s "
                f"p99 {metrics['latency_ns']['p99'] / 1e6:7.2f} ms  {metrics['invalid_reasons'] or ''}"
            )


if __name__ == "__main__":
    main()
