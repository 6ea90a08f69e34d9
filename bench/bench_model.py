"""Model-only forward throughput of the tb00_40M architecture, against this machine's matmul peak.

    python bench/bench_model.py [--device cpu|cuda] [--table-rows 500000] [--seconds 1.5] [--no-compile]

For each precision and table precision (fp32, bf16, bf16 over int8 tables, int8 on the CPU;
compiled fp32 and bf16 where torch.compile works) and batch size (1, 64, 512, 4096, 16384), after
warming every shape bucket, it times the forward alone (inputs already built, no data loading)
and prints user-item pairs/s and GFLOP/s as a fraction of the measured peak matmul rate in that
precision (fp32 peak for fp32 and int8). One pair costs about 4.92 MFLOP.
Tables have the published rows capped at --table-rows (the real ones take 96 GB).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dlrm_nb.model.dlrm import DLRM, PUBLISHED_TABLE_SIZES, preset
from dlrm_nb.model.inference import Predictor, forward_rates, synchronize, timed_rate

BATCHES = (1, 64, 512, 4096, 16384)


def peak_matmul(dtype: torch.dtype, device: torch.device, seconds: float) -> float:
    """Measured GFLOP/s of a square matrix product, as large as takes ~0.1 s (at most 2048 on
    the CPU, 8192 on a GPU): a CPU without native bf16 runs bf16 products 100x slower."""
    n = 256
    while True:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        torch.mm(a, b)
        synchronize(device)
        started = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        if time.perf_counter() - started > 0.1 or n >= (2048 if device.type == "cpu" else 8192):
            return timed_rate(lambda a=a, b=b: torch.mm(a, b), 2 * n**3 / 1e9, device, seconds)
        n *= 2


def bench_model(table_rows: int, seed: int = 0) -> DLRM:
    torch.manual_seed(seed)
    sizes = [min(rows, table_rows) for rows in PUBLISHED_TABLE_SIZES["tb00_40M"]]
    model = DLRM(preset("tb00_40M").with_tables(sizes))
    with torch.no_grad():
        for table in model.emb_l:
            table.weight.uniform_(-0.01, 0.01)
    return model.eval()


def run(device_name: str, table_rows: int, seconds: float, compile_too: bool) -> None:
    device = torch.device(device_name)
    flops = preset("tb00_40M").flops_per_pair
    print(
        f"device {device_name}: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    peaks = {
        "fp32": peak_matmul(torch.float32, device, seconds),
        "bf16": peak_matmul(torch.bfloat16, device, seconds),
    }
    print(
        f"peak matmul: fp32 {peaks['fp32']:,.0f} GFLOP/s, bf16 {peaks['bf16']:,.0f} GFLOP/s; "
        f"{flops / 1e6:.2f} MFLOP per pair\n"
    )
    header = "".join(f"{b:>16,d}" for b in BATCHES)
    print(f"{'pairs/s (fraction of peak)':28s}{header}")
    for precision, table_precision, compiled in variants(device, compile_too):
        name = f"{precision}, {table_precision} tables" + (" compiled" if compiled else "")
        try:
            predictor = Predictor(
                bench_model(table_rows),
                precision=precision,
                table_precision=table_precision,
                device=device_name,
                compile=compiled,
            )
            predictor.warm_up()
            rates = forward_rates(predictor, BATCHES, seconds)
        except Exception as exc:  # torch.compile needs a working compiler toolchain
            print(f"{name:28s}not available here: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
            continue
        peak = peaks["bf16" if precision == "bf16" else "fp32"]
        cells = "".join(f"{rates[b]:>9,.0f} ({rates[b] * flops / 1e9 / peak:4.0%})" for b in BATCHES)
        print(f"{name:28s}{cells}")


def variants(device: torch.device, compile_too: bool) -> list[tuple[str, str, bool]]:
    """(precision, table precision, compiled) to measure: each precision with its own tables,
    bf16 MLPs over int8 tables (the real-size choice), and the compiled fp32 and bf16."""
    chosen = [("fp32", "fp32", False), ("bf16", "bf16", False), ("bf16", "int8", False)]
    if device.type == "cpu":
        chosen.append(("int8", "int8", False))
    if compile_too:
        chosen += [("fp32", "fp32", True), ("bf16", "bf16", True)]
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--table-rows", type=int, default=500_000, help="cap on the rows of each table")
    parser.add_argument("--seconds", type=float, default=1.5, help="timing per measurement")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    args = parser.parse_args()
    run(args.device, args.table_rows, args.seconds, not args.no_compile)


if __name__ == "__main__":
    main()
