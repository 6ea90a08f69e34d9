"""Preprocessing throughput, side by side in one run, on synthetic Terabyte files.

    python bench/bench_prepare.py [--rows-per-day 80000] [--test-day-rows 160000] [--python-lines 100000]

Compares, on the same files (24 days, about 2 million lines by default):
  ours      `dlrm-nb prepare` (local engine), in a subprocess, with its peak RSS
  dask      `dlrm-nb prepare --engine dask --workers 2`
  per-line  (a) upstream's approach written out (per line: split, numpy int32 conversions,
            int(hex, 16) % M; then a dict lookup per value) and (a') a lean per-line Python parse,
            each timed on the first --python-lines lines
  bare      pyarrow's CSV reader turning the same files into string columns: no conversion,
            no hashing, no remap
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dlrm_nb.data.criteo import FIELD_NAMES, N_CAT, N_DENSE, terabyte_raw_name
from dlrm_nb.data.synthetic import generate

MAX_IND_RANGE = 40_000_000


def per_line_upstream(raw: Path, days: int, limit: int) -> tuple[int, float]:
    """Upstream's approach (data_utils.process_one_file + processCriteoAdData), written out:
    per line, split, empty -> "0", numpy int32 conversions into preallocated arrays and
    int(hex, 16) % M; then a Python dict lookup per categorical value."""
    started = time.perf_counter()
    y = np.zeros(limit, dtype=np.int32)
    x_int = np.zeros((limit, N_DENSE), dtype=np.int32)
    x_cat = np.zeros((limit, N_CAT), dtype=np.int32)
    lines = 0
    for day in range(days):
        with open(raw / terabyte_raw_name(day)) as f:
            for line in f:
                fields = line.split("\t")
                fields = ["0" if field in ("", "\n") else field for field in fields]
                y[lines] = np.int32(fields[0])
                x_int[lines] = np.array(fields[1 : 1 + N_DENSE], dtype=np.int32)
                x_cat[lines] = np.array(
                    [int(x, 16) % MAX_IND_RANGE for x in fields[1 + N_DENSE :]], dtype=np.int32
                )
                lines += 1
                if lines >= limit:
                    break
        if lines >= limit:
            break
    dictionaries: list[dict[int, int]] = [{} for _ in range(N_CAT)]
    for j in range(N_CAT):
        for i in range(lines):
            dictionaries[j].setdefault(int(x_cat[i, j]), len(dictionaries[j]))
        for i in range(lines):
            x_cat[i, j] = dictionaries[j][int(x_cat[i, j])]
    return lines, time.perf_counter() - started


def per_line_lean(raw: Path, days: int, limit: int) -> tuple[int, float]:
    """A lean per-line Python parse: split, int(), int(hex, 16) % M, one dict per feature."""
    started = time.perf_counter()
    dictionaries: list[dict[int, int]] = [{} for _ in range(N_CAT)]
    lines = 0
    for day in range(days):
        with open(raw / terabyte_raw_name(day)) as f:
            for line in f:
                fields = ["0" if field in ("", "\n") else field for field in line.split("\t")]
                label = int(fields[0])
                dense = [max(int(x), 0) for x in fields[1 : 1 + N_DENSE]]
                cats = [int(x, 16) % MAX_IND_RANGE for x in fields[1 + N_DENSE :]]
                ranks = [d.setdefault(v, len(d)) for d, v in zip(dictionaries, cats, strict=True)]
                del label, dense, ranks
                lines += 1
                if lines >= limit:
                    return lines, time.perf_counter() - started
    return lines, time.perf_counter() - started


def bare_arrow(raw: Path, days: int) -> tuple[int, float]:
    read = pacsv.ReadOptions(column_names=list(FIELD_NAMES), block_size=4 << 20)
    parse = pacsv.ParseOptions(delimiter="\t", quote_char=False, double_quote=False, escape_char=False)
    convert = pacsv.ConvertOptions(column_types={name: pa.string() for name in FIELD_NAMES})
    started = time.perf_counter()
    lines = 0
    for day in range(days):
        lines += pacsv.read_csv(raw / terabyte_raw_name(day), read, parse, convert).num_rows
    return lines, time.perf_counter() - started


def run_cli(raw: Path, out: Path, *extra: str) -> tuple[float, float]:
    """Run `dlrm-nb prepare` in a subprocess; return (seconds, peak RSS of its process tree in GiB)."""
    if out.exists():
        shutil.rmtree(out)
    command = [
        sys.executable,
        "-m",
        "dlrm_nb.cli",
        "prepare",
        str(raw),
        str(out),
        "--max-ind-range",
        str(MAX_IND_RANGE),
        *extra,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows-per-day", type=int, default=80_000)
    parser.add_argument("--test-day-rows", type=int, default=160_000)
    parser.add_argument(
        "--python-lines", type=int, default=100_000, help="lines timed for the per-line parse"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(tempfile.gettempdir()) / "dlrm-nb-bench-raw",
        help="where the synthetic raw files are kept between runs",
    )
    args = parser.parse_args()
    days = 24
    raw = args.data / f"r{args.rows_per_day}_t{args.test_day_rows}"
    if not (raw / "synthetic.json").exists():
        print(f"generating synthetic raw data in {raw} ...", flush=True)
        generate(
            raw, rows_per_day=args.rows_per_day, test_day_rows=args.test_day_rows, seed=11, overwrite=True
        )
    total = args.rows_per_day * (days - 1) + args.test_day_rows
    size = sum((raw / terabyte_raw_name(d)).stat().st_size for d in range(days))
    print(
        f"data: {total:,} lines, {size / 2**20:,.0f} MiB, {days} day files; cores: {os.cpu_count()}",
        flush=True,
    )

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        bare_arrow(raw, days)  # warm the page cache so every contender reads from memory
        rows = {}
        seconds, rss = run_cli(raw, scratch / "ours")
        rows["ours (local engine)"] = (total, seconds, rss)
        seconds, rss = run_cli(raw, scratch / "dask", "--engine", "dask", "--workers", "2")
        rows["ours (dask, 2 workers)"] = (total, seconds, rss)
        lines, seconds = bare_arrow(raw, days)
        rows["bare pyarrow parse (b)"] = (lines, seconds, float("nan"))
        lines, seconds = per_line_upstream(raw, days, args.python_lines)
        rows["per-line, upstream's way (a)"] = (lines, seconds, float("nan"))
        lines, seconds = per_line_lean(raw, days, args.python_lines)
        rows["per-line, lean Python (a')"] = (lines, seconds, float("nan"))
        same = (scratch / "ours" / "terabyte_processed_test.bin").read_bytes() == (
            scratch / "dask" / "terabyte_processed_test.bin"
        ).read_bytes()

    rate = {name: lines / seconds for name, (lines, seconds, _) in rows.items()}
    print(f"\n{'contender':30s} {'lines':>12s} {'seconds':>9s} {'lines/s':>12s} {'peak RSS':>9s}")
    for name, (lines, seconds, rss) in rows.items():
        shown_rss = f"{rss:.2f} GiB" if rss == rss else ""
        print(f"{name:30s} {lines:12,d} {seconds:9.2f} {rate[name]:12,.0f} {shown_rss:>9s}")
    ours = rate["ours (local engine)"]
    upstream_way = rate["per-line, upstream's way (a)"]
    lean = rate["per-line, lean Python (a')"]
    print(f"\nours / per-line upstream (a): {ours / upstream_way:6.1f}x   (target >= 50x)")
    print(f"ours / per-line lean (a'):    {ours / lean:6.1f}x")
    print(f"ours / bare pyarrow (b):      {ours / rate['bare pyarrow parse (b)']:6.1%}   (target >= 40%)")
    print(f"dask 2 workers / local:       {rate['ours (dask, 2 workers)'] / ours:6.2f}x")
    print(f"dask output byte-equal to local: {same}")


if __name__ == "__main__":
    main()
