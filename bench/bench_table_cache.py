"""Loading a large checkpoint at a converted table precision: in memory at every load, or from the
converted-model cache (made once, memory-mapped after).

    python bench/bench_table_cache.py CHECKPOINT [--table-precision int8] [--batch 1024] [--seconds 3]

Each way runs in a fresh process, one after the other (so every figure comes from the same run):

- ``convert``: ``table_cache: off``, the tables converted in memory at this load;
- ``make``: ``table_cache: on`` with no entry yet (the first load: converts into the cache);
- ``reuse``: ``table_cache: on`` with the entry made (every later load, e.g. each LoadGen process).

For each it prints the load time (checkpoint mapped, tables converted or mapped), the page-in
time, the bare forward pairs/s at ``--batch`` on random ids, and the process's peak RSS. The
cache entry is made in a temporary folder and removed at the end; the checkpoint is only read.
Make a full-size checkpoint with ``dlrm-nb synth-checkpoint OUT.pt --arch tb0875_10M --rows full``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WAYS = {"convert": "off", "make": "on", "reuse": "on"}


def measure(
    checkpoint: str, table_precision: str, table_cache: str, cache_dir: str, batch: int, seconds: float
) -> dict:
    """One load in this process: load, page-in and forward figures, and the peak RSS."""
    from dlrm_nb.model.inference import PredictorSettings, forward_rates, load_predictor
    from dlrm_nb.model.page_in import page_in

    started = time.perf_counter()
    settings = PredictorSettings(
        precision="fp32", table_precision=table_precision, table_cache=table_cache, table_cache_dir=cache_dir
    )
    predictor = load_predictor(checkpoint, settings, progress=False)
    load_s = time.perf_counter() - started
    page_in_s = page_in(predictor.engine, progress=False)
    predictor.warm_up()
    rate = forward_rates(predictor, [batch], seconds)[batch]
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"load_s": load_s, "page_in_s": page_in_s, "pairs_per_s": rate, "peak_rss_gib": peak_gib}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint")
    parser.add_argument("--table-precision", default="int8", choices=["fp32", "bf16", "int8"])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--one", nargs=2, metavar=("CACHE", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        figures = measure(args.checkpoint, args.table_precision, *args.one, args.batch, args.seconds)
        print(json.dumps(figures))
        return
    import torch

    flags = sorted(
        set(Path("/proc/cpuinfo").read_text().split()) & {"avx2", "avx512f", "avx512_bf16", "amx_tile"}
    )
    print(
        f"{Path(args.checkpoint).name}, table precision {args.table_precision}, MLPs fp32, batch {args.batch}"
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU flags: {' '.join(flags)}")
    with tempfile.TemporaryDirectory(prefix="table-cache-bench-") as cache_dir:
        rows = {}
        for way, mode in WAYS.items():
            command = [sys.executable, __file__, args.checkpoint, "--table-precision", args.table_precision]
            command += ["--batch", str(args.batch), "--seconds", str(args.seconds), "--one", mode, cache_dir]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            rows[way] = json.loads(out.strip().splitlines()[-1])
    print(f"{'way':<8} {'load s':>8} {'page-in s':>10} {'pairs/s':>10} {'peak RSS GiB':>13}")
    for way, row in rows.items():
        print(
            f"{way:<8} {row['load_s']:>8.1f} {row['page_in_s']:>10.2f} {row['pairs_per_s']:>10,.0f} "
            f"{row['peak_rss_gib']:>13.2f}"
        )
    print(f"reuse loads {rows['convert']['load_s'] / rows['reuse']['load_s']:.0f}x faster than convert")


if __name__ == "__main__":
    main()
