"""The query sample library at MLPerf's size: 204,800 aggregated samples of the real test split.

    python bench/bench_qsl.py [--pairs 89137319] [--samples 204800] [--folder /tmp]

The real test split (the second half of day 23, 89,137,319 pairs) is stood in for by a sparse
``.bin`` of that many records (holes read as zeros and take no disk); the records' values do
not matter here, only their count and layout. It times the MLPerf quantile trace, the QSL's
load of the first ``--samples`` samples (what LoadGen asks for before a performance run), and one
gather of a 1024-pair-sized batch of samples, and prints the process's peak RSS next to the
loaded block's size. The sparse file is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dlrm_nb.data.criteo import BIN_RECORD_BYTES
from dlrm_nb.data.dataset import CriteoSplit
from dlrm_nb.loadgen.aggregation import quantile_trace
from dlrm_nb.loadgen.qsl import AggregatedQSL
from dlrm_nb.loadgen.settings import MLPERF_PERFORMANCE_SAMPLES

REAL_TEST_PAIRS = 89_137_319


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=REAL_TEST_PAIRS)
    parser.add_argument("--samples", type=int, default=MLPERF_PERFORMANCE_SAMPLES)
    parser.add_argument("--folder", default=tempfile.gettempdir())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.folder, prefix="qsl-bench-") as folder:
        path = Path(folder) / "terabyte_processed_test.bin"
        with open(path, "wb") as f:
            f.truncate(args.pairs * BIN_RECORD_BYTES)  # sparse: no disk, zeros when read
        split = CriteoSplit.from_bin(path)
        started = time.perf_counter()
        trace = quantile_trace(len(split))
        trace_s = time.perf_counter() - started
        samples = np.arange(min(args.samples, len(trace)))
        qsl = AggregatedQSL(split, trace, torch.device("cpu"))
        before = peak_rss_gib()
        started = time.perf_counter()
        qsl.load(samples)
        load_s = time.perf_counter() - started
        records = qsl.loaded_records
        assert records is not None
        batch = samples[: max(1, 1024 // int(qsl.sizes.mean()))]
        started = time.perf_counter()
        dense, _, _ = qsl.gather(batch)
        gather_ms = (time.perf_counter() - started) * 1e3
        print(
            f"test split {len(split):,} pairs ({path.stat().st_size / 2**30:.1f} GiB, sparse), "
            f"{os.cpu_count()} CPUs"
        )
        print(f"quantile trace: {len(trace):,} samples in {trace_s * 1e3:.0f} ms")
        print(
            f"load {len(samples):,} samples = {len(records):,} pairs: {load_s:.1f} s, block "
            f"{records.nbytes / 2**30:.2f} GiB; peak RSS {before:.2f} GiB before, "
            f"{peak_rss_gib():.2f} GiB after"
        )
        print(f"gather {len(batch)} samples ({len(dense):,} pairs) into model inputs: {gather_ms:.2f} ms")


if __name__ == "__main__":
    main()
