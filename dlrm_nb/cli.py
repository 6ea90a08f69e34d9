"""The ``dlrm-nb`` command line: the same functions the notebooks call, from a terminal.

Exit codes: 0 done; 2 a user error (a bad argument or file, a model that does not fit the data,
a full disk, a permission, a missing package), told in one line that names the value or file
and what to do; 1 a bug of ours (the traceback, then a line asking for a report); 130 Ctrl-C and
143 SIGTERM, told in one line that says what was kept and how to go on.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import inspect
import shlex
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import numpy as np

from dlrm_nb.data.criteo import DATASETS, DEFAULT_SEED, SPLITS
from dlrm_nb.data.preprocess import ENGINES, PrepareSettings
from dlrm_nb.data.synthetic import generate
from dlrm_nb.exceptions import (
    AccuracyLogError,
    DlrmNbError,
    OutputExistsError,
    ParameterError,
    Terminated,
)
from dlrm_nb.loadgen.aggregation import DEFAULT_FIXED_SIZE, TRACE_KINDS, TRACE_NAME
from dlrm_nb.loadgen.settings import (
    MLPERF_PERFORMANCE_SAMPLES,
    MODES,
    QPS_SEARCH_BUDGET_S,
    QPS_SEARCH_PROBE_MS,
    SCENARIOS,
    LoadgenSettings,
    requested_instances,
)
from dlrm_nb.model.auto import AUTO
from dlrm_nb.model.settings import (
    DEVICES,
    PRECISIONS,
    SCORE_BATCH_PAIRS,
    TABLE_CACHE_MODES,
    TABLE_PRECISIONS,
    PredictorSettings,
    TrainSettings,
)
from dlrm_nb.progress import PROGRESS_STYLES
from dlrm_nb.workbook.params import MAX_DAYS, MAX_ROWS_PER_DAY

#: What a stopped command leaves and how to go on (one line after "interrupted; ").
INTERRUPTED = {
    "synth": "day files written completely are kept, no partial one; "
    "rerun into a new folder or with --overwrite",
    "prepare": "finished days are kept, rerun the same command to resume",
    "train-demo": "no checkpoint was written; rerun the same command",
    "score": "no predictions file was written (an existing one is untouched); rerun the same command",
    "synth-checkpoint": "no checkpoint was written; rerun the same command",
    "loadgen": "LoadGen runs that finished are kept in the run folder; "
    "rerun the same command to measure again",
    "qps-search": "probes that finished are kept in the run folder; rerun the same command to search again",
    "run": "run.json says interrupted and the run folder keeps the notebooks that finished; "
    "start a new run (another --run-id)",
    "report": "pages written completely are kept; rerun the same command",
}
_NOTHING_WRITTEN = "nothing was written; rerun the same command"
#: OSErrors that are the machine's answer to the user's files, not our bugs.
_DISK_FULL = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "the file is larger than the file size limit (ulimit -f) or the file system allows",
}
_NOT_PERMITTED = {errno.EACCES, errno.EPERM, errno.EROFS}
#: A path that does not lead where it should (a missing file, a file where a folder should be).
_BAD_PATH = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR}
BUG_LINE = "this is a bug in dlrm-nb; please report it with the command and the traceback above"


def _default(settings: Any, name: str) -> Any:
    """The default of ``name``: a field of a settings dataclass or a parameter of a function
    (each default is stated once, where the work is done)."""
    if dataclasses.is_dataclass(settings):
        return next(f.default for f in dataclasses.fields(settings) if f.name == name)
    return inspect.signature(settings).parameters[name].default


def _synth(args: argparse.Namespace) -> None:
    from dlrm_nb.workbook.params import check_free_space, synthetic_raw_bytes

    _check_output_folder(args.out_dir)
    days = _synth_days(args.dataset, args.days)
    for name, rows in (("rows_per_day", args.rows_per_day), ("test_day_rows", args.test_day_rows)):
        if rows is not None and not 1 <= rows <= MAX_ROWS_PER_DAY:
            raise ParameterError(
                f"{name}={rows} is not valid: use a whole number from 1 to {MAX_ROWS_PER_DAY:,}"
            )
    test_rows = args.test_day_rows or args.rows_per_day
    need = synthetic_raw_bytes(args.dataset, days, args.rows_per_day, test_rows, args.gzip)
    check_free_space(args.out_dir, need, f"synth ({days} days of {args.rows_per_day:,} lines)")
    try:
        sidecar = generate(
            args.out_dir,
            dataset=args.dataset,
            days=days,
            rows_per_day=args.rows_per_day,
            test_day_rows=args.test_day_rows,
            seed=args.seed,
            gzip=args.gzip,
            overwrite=args.overwrite,
        )
    except OutputExistsError as exc:  # its advice is for Python callers (overwrite=True)
        head = str(exc).split(": choose", 1)[0]
        raise OutputExistsError(
            f"{head}: choose another output folder, or pass --overwrite to replace them"
        ) from None
    oracle = sidecar.get("oracle_auc", {})
    print(f"wrote synthetic {args.dataset} data to {args.out_dir} (oracle AUC: {oracle})")


def _check_output_folder(folder: str) -> None:
    """An output folder must be a folder (or not exist yet)."""
    if Path(folder).exists() and not Path(folder).is_dir():
        raise DlrmNbError(f"{folder} is a file, not a folder; give a folder for the output")


def _check_output_file(path: str) -> None:
    """An output file's folder must exist (checked before any work, not when writing at the end)."""
    folder = Path(path).expanduser().absolute().parent
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise DlrmNbError(f"cannot write {path}: {folder} {what}; create the folder or choose another path")
    if Path(path).is_dir():
        raise DlrmNbError(f"cannot write {path}: it is a folder; give a file name")


def _synth_days(dataset: str, days: int | None) -> int:
    """``--days``, or the dataset's own number, within what the dataset allows."""
    layout = DATASETS[dataset]
    if days is None:
        return layout.days
    low = 2 if dataset == "terabyte" else 1
    why = (
        "training days + the test day"
        if dataset == "terabyte"
        else "train.txt holds days * rows-per-day lines"
    )
    if not low <= days <= MAX_DAYS:
        raise ParameterError(
            f"days={days} is not valid: {dataset} needs a whole number from {low} to {MAX_DAYS} ({why}; "
            f"Criteo Terabyte has {MAX_DAYS} days)"
        )
    return days


def _prepare(args: argparse.Namespace) -> None:
    from dlrm_nb.data.preprocess import output_summary, prepare
    from dlrm_nb.locks import folder_lock

    settings = PrepareSettings(
        max_ind_range=args.max_ind_range,
        sub_sample_rate=args.sub_sample_rate,
        seed=args.seed,
        dataset=args.dataset,
        days=args.days,
        write_train=args.write_train,
        skip_malformed=args.skip_malformed,
    )
    with folder_lock(args.out_dir, _command(args)):  # one writer per folder
        manifest = prepare(
            args.raw_dir,
            args.out_dir,
            settings,
            engine=args.engine,
            scheduler=args.scheduler,
            workers=args.workers,
        )
    print(f"prepared {args.out_dir}: {output_summary(manifest)}")
    if manifest.get("malformed_lines_skipped"):
        print(f"skipped {manifest['malformed_lines_skipped']:,} malformed lines (see the manifest)")


def _train_demo(args: argparse.Namespace) -> None:
    from dlrm_nb.model.train import train_demo

    _check_output_file(args.out)
    settings = TrainSettings(
        arch=args.arch,
        seed=args.seed,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_minutes=args.minutes,
    )
    summary = train_demo(args.data_dir, args.out, settings)
    print(
        f"wrote {args.out}: {summary['steps']} steps in {summary['seconds']:.0f} s "
        f"({summary['pairs_per_s']:,.0f} pairs/s), test AUC={100 * summary['test_auc']:.3f}%"
    )


def _predictor(args: argparse.Namespace, progress: bool = True) -> Any:
    """The checkpoint as a predictor with the precisions, device, compile flag and converted-model
    cache the command got."""
    from dlrm_nb.model.inference import load_predictor

    return load_predictor(args.checkpoint, _predictor_settings(args), progress=progress)


def _predictor_settings(args: argparse.Namespace) -> PredictorSettings:
    return PredictorSettings(
        precision=args.precision,
        table_precision=args.table_precision,
        device=args.device,
        compile=args.compile,
        table_cache=args.table_cache,
        table_cache_dir=args.table_cache_dir,
    )


def _score(args: argparse.Namespace) -> None:
    from dlrm_nb.data.dataset import open_split, read_counts
    from dlrm_nb.fileio import save_npy
    from dlrm_nb.model.checkpoint import check_pair, load_checkpoint
    from dlrm_nb.model.inference import score_split

    _check_output_file(args.out)
    if Path(args.out).exists() and not args.overwrite:
        raise OutputExistsError(f"{args.out} exists; choose another name or pass --overwrite")
    split = open_split(args.data, args.split)
    model, _ = load_checkpoint(args.checkpoint)
    check_pair(model.arch.table_sizes, read_counts(args.data), args.data)  # before any scoring
    predictor = _predictor(args)
    score = score_split(predictor, split, count=args.count, batch_size=args.batch_size)
    save_npy(args.out, np.asarray(score.predictions))
    auc = float("nan") if score.auc is None else score.auc
    print(f"AUC={100 * auc:.3f}%, pairs={len(score.predictions)}, predictions in {args.out}")


def _synth_checkpoint(args: argparse.Namespace) -> None:
    from dlrm_nb.model.synth_checkpoint import write_synthetic_checkpoint

    _check_output_file(args.out)
    path = write_synthetic_checkpoint(args.out, args.arch, rows=args.rows, seed=args.seed)
    print(
        f"wrote {path} ({path.stat().st_size / 2**30:.2f} GiB, {args.arch}, rows {args.rows or 'published'})"
    )


def _forward_bench(args: argparse.Namespace) -> None:
    import json

    from dlrm_nb.data.dataset import open_split, read_counts
    from dlrm_nb.model.checkpoint import check_pair, load_checkpoint
    from dlrm_nb.model.inference import forward_rates
    from dlrm_nb.model.page_in import page_in

    model, _ = load_checkpoint(args.checkpoint)
    split = None
    if args.data:  # real inputs: they must fit the tables (a clear error, not an index error)
        check_pair(model.arch.table_sizes, read_counts(args.data), args.data)
        split = open_split(args.data, "test")
    predictor = _predictor(args, progress=not args.json)  # converted tables: from the cache
    page_in_s = page_in(predictor.engine, progress=not args.json)  # mapped tables into RAM, timed apart
    warm_s = predictor.warm_up()
    rates = forward_rates(predictor, args.batch, args.seconds, split)
    rows = [
        {
            "precision": args.precision,
            "table_precision": args.table_precision,
            "device": args.device,
            "compile": args.compile,
            "batch_size": batch,
            "pairs_per_s": round(rate, 1),
            "gflop_per_s": round(rate * model.arch.flops_per_pair / 1e9, 2),
        }
        for batch, rate in rates.items()
    ]
    if args.json:
        print(
            json.dumps(
                {"page_in_s": round(page_in_s, 3), "warm_up_s": round(warm_s, 3), "rows": rows}, indent=2
            )
        )
        return
    for row in rows:
        print(
            f"{row['precision']} (tables {row['table_precision']}) on {row['device']}, batch "
            f"{row['batch_size']:,}: {row['pairs_per_s']:,.0f} pairs/s, {row['gflop_per_s']:,.1f} GFLOP/s"
        )


def _benchmark(args: argparse.Namespace):
    from dlrm_nb.loadgen.benchmark import open_benchmark

    _check_output_folder(args.run_dir)
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    benchmark = open_benchmark(
        args.checkpoint,
        args.data,
        precision=args.precision,
        table_precision=args.table_precision,
        table_cache=args.table_cache,
        table_cache_dir=args.table_cache_dir,
        device=args.device,
        compile=args.compile,
        aggregation=args.aggregation,
        aggregation_size=args.aggregation_size,
        max_pairs_in_split=args.max_pairs_in_split,
        trace_path=run_dir / TRACE_NAME,
    )
    if benchmark.auto is not None:
        print(_auto_line(benchmark.auto))
    return benchmark


def _add_table_cache_arguments(parser: argparse.ArgumentParser) -> None:
    """--table-cache and --table-cache-dir: the converted-model cache (dlrm_nb.model.table_cache)."""
    parser.add_argument(
        "--table-cache",
        choices=TABLE_CACHE_MODES,
        default=_default(PredictorSettings, "table_cache"),
        help="converted tables written once and memory-mapped at each load: auto (bf16/int8 tables "
        "over 1 GiB on the CPU), on, off",
    )
    parser.add_argument(
        "--table-cache-dir",
        default=_default(PredictorSettings, "table_cache_dir"),
        help="folder of the converted-model cache (default: beside the checkpoint)",
    )


def _auto_line(auto: Any) -> str:
    """``precision auto -> bf16 (fp32 45,000 pairs/s AUC 80.1%, bf16 ... )``: one line for people."""
    figures = ", ".join(
        f"{c.precision} {c.pairs_per_s:,.0f} pairs/s"
        + ("" if c.auc is None else f" AUC {100 * c.auc:.3f}%")
        + ("" if c.passes else " (fails 99.9%)")
        for c in auto.candidates
    )
    return f"precision auto -> {auto.chosen} ({figures})"


def _settings(args: argparse.Namespace, **overrides):
    values = dict(
        scenario=args.scenario,
        mode=args.mode,
        target_qps=args.target_qps,
        latency_ms=args.latency_ms,
        min_duration_ms=args.min_duration_ms,
        max_duration_ms=args.max_duration_ms,
        max_query_count=args.max_query_count,
        performance_sample_count=args.samples,
        max_pairs=args.max_pairs,
        official=args.official,
        instances=requested_instances(args.instances),
        threads_per_instance=args.threads or None,
    )
    values.update(overrides)
    return LoadgenSettings(**values)


def _loadgen(args: argparse.Namespace) -> None:
    from dlrm_nb.loadgen.runner import metrics_line

    settings = _settings(args)  # validated before anything is loaded
    metrics = _benchmark(args).run(settings, args.run_dir)
    print(f"{metrics_line(metrics)} -> {Path(args.run_dir) / settings.scenario / settings.mode}")


def _qps_search(args: argparse.Namespace) -> None:
    from dlrm_nb.loadgen.qps_search import run_qps_search

    base = _settings(args, scenario="Server", target_qps=1.0)  # validated before anything is loaded
    record = run_qps_search(
        _benchmark(args), base, args.run_dir, budget_s=args.budget_s, probe_ms=args.probe_ms
    )
    verdict = {
        None: "not confirmed (no time left)",
        True: "confirmed VALID",
        False: "confirmation run INVALID",
    }
    print(
        f"highest valid Server QPS at {args.latency_ms:g} ms: {record['best_qps']} "
        f"({len(record['probes'])} probes, {record['seconds']:.0f} s; {verdict[record['confirmed_valid']]}) "
        f"-> {Path(args.run_dir) / 'qps_search.json'}"
    )


def _accuracy(args: argparse.Namespace) -> None:
    from dlrm_nb.loadgen.accuracy import evaluate_log

    if (args.aggregation_trace_file is None) != (args.day_23_file is None):
        raise AccuracyLogError(
            "--day-23-file and --aggregation-trace-file go together (a log of predictions only); "
            "give both, or neither for a log of [prediction, label] pairs"
        )
    result = evaluate_log(args.log, trace=args.aggregation_trace_file, day23_labels=args.day_23_file)
    print(result["line"])


def _run(args: argparse.Namespace) -> None:
    from dlrm_nb.workbook.pipeline import run_pipeline

    outcome = run_pipeline(
        args.params,
        [tuple(pair) for pair in args.param],
        run_id=args.run_id,
        results=args.results,
        progress=args.progress,
    )
    print(f"\ndone in {outcome.seconds:.0f} s: {_shown(outcome.run_dir)}")
    if outcome.report and outcome.index:
        print(f"report: {_shown(outcome.report)}")
        print(f"all runs: {_shown(outcome.index)}")


def _shown(path: Path) -> str:
    """``path`` relative to the current folder when it lies below it (what people can paste)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _report(args: argparse.Namespace) -> None:
    from dlrm_nb.workbook.pipeline import render_reports

    for page in render_reports(args.runs, results=args.results):
        print(f"wrote {page}")


def _params(args: argparse.Namespace) -> None:
    from dlrm_nb.workbook.params import parameter_reference, with_reference

    if args.write is None:
        print(parameter_reference(), end="")
        return
    from dlrm_nb.fileio import write_text

    readme = Path(args.write)
    if not readme.is_file():
        what = "is a folder" if readme.is_dir() else "does not exist"
        raise DlrmNbError(
            f"{readme} {what}; give the Markdown file that holds the reference block (docs/parameters.md)"
        )
    write_text(readme, with_reference(readme.read_text(encoding="utf-8")))
    print(f"updated the parameter reference in {readme}")


def _add_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="DLRM checkpoint (upstream format or state_dict)")
    parser.add_argument("--data", required=True, help="prepared folder holding the test split")
    parser.add_argument("--run-dir", required=True, help="output folder: <scenario>/<mode>/ go below it")
    parser.add_argument(
        "--precision",
        choices=(*PRECISIONS, AUTO),
        default=PRECISIONS[0],
        help="MLP and interaction arithmetic; auto: the fastest here that passes 99.9%% of fp32's AUC",
    )
    parser.add_argument(
        "--table-precision",
        choices=TABLE_PRECISIONS,
        default=TABLE_PRECISIONS[0],
        help="embedding tables: int8 is row-wise (a scale per row)",
    )
    _add_table_cache_arguments(parser)
    parser.add_argument("--device", default=DEVICES[0], help="cpu, cuda or cuda:N")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument(
        "--aggregation",
        choices=TRACE_KINDS,
        default=TRACE_KINDS[0],
        help="samples per query: MLPerf's quantile list, a fixed size, or uniform 100..700",
    )
    parser.add_argument(
        "--aggregation-size", type=int, default=DEFAULT_FIXED_SIZE, help="pairs per sample (fixed)"
    )
    parser.add_argument("--max-pairs-in-split", type=int, default=None, help="use only the first pairs")
    parser.add_argument(
        "--mode", choices=tuple(MODES), default=_default(LoadgenSettings, "mode"), help="LoadGen mode"
    )
    parser.add_argument("--target-qps", type=float, default=None, help="Server rate / Offline expected rate")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=_default(LoadgenSettings, "latency_ms"),
        help="Server p99 bound (30 v1, 60 today)",
    )
    parser.add_argument(
        "--min-duration-ms",
        type=int,
        default=_default(LoadgenSettings, "min_duration_ms"),
        help="shortest run",
    )
    parser.add_argument(
        "--max-duration-ms",
        type=int,
        default=_default(LoadgenSettings, "max_duration_ms"),
        help="longest run",
    )
    parser.add_argument("--max-query-count", type=int, default=None, help="stop after this many queries")
    parser.add_argument(
        "--samples",
        type=int,
        default=None,
        help=f"performance_sample_count (default {MLPERF_PERFORMANCE_SAMPLES} capped by the data)",
    )
    parser.add_argument(
        "--max-pairs", type=int, default=_default(LoadgenSettings, "max_pairs"), help="pairs per forward"
    )
    parser.add_argument(
        "--instances",
        type=int,
        default=0,
        help="SUT workers for Offline and Server, each with its own threads (0: auto from the cores)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="intra-op threads of each instance (0: auto; Server on a small machine leaves LoadGen a core)",
    )
    parser.add_argument("--official", action="store_true", help="MLPerf's durations and counts (600 s runs)")


def _full_or_int(text: str) -> int | None:
    """``full`` (None: the published table sizes) or a whole number of rows."""
    if text == "full":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not 'full' or a whole number") from None


class _HelpWithDefaults(argparse.HelpFormatter):
    """Option help ends with the default it falls back on (when there is one to show)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.option_strings and not any(
            action.default is v for v in (None, False, argparse.SUPPRESS)
        )
        return f"{text} (default: %(default)s)" if shown and "default" not in text else text


def _add_command(commands: Any, name: str, help: str) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=help, formatter_class=_HelpWithDefaults)


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors in one line (exit 2), as every other refusal."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dlrm-nb", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = _add_command(commands, "synth", help="write synthetic raw Criteo files with a planted signal")
    synth.add_argument("out_dir", metavar="OUT_DIR", help="folder for the raw files and synthetic.json")
    synth.add_argument(
        "--dataset",
        choices=sorted(DATASETS),
        default=_default(generate, "dataset"),
        help="file layout to write",
    )
    synth.add_argument(
        "--days",
        type=int,
        default=None,
        help=f"day files, at most {MAX_DAYS} (default: 24 Terabyte, 7 Kaggle splits)",
    )
    synth.add_argument(
        "--rows-per-day", type=int, default=_default(generate, "rows_per_day"), help="lines per training day"
    )
    synth.add_argument("--test-day-rows", type=int, default=None, help="lines of the last (test) day")
    synth.add_argument(
        "--seed", type=int, default=_default(generate, "seed"), help="generator seed (same seed, same bytes)"
    )
    synth.add_argument("--gzip", action="store_true", help="write day_N.gz / train.txt.gz")
    synth.add_argument("--overwrite", action="store_true", help="replace day files OUT_DIR holds already")
    synth.set_defaults(run=_synth)

    prep = _add_command(
        commands, "prepare", help="raw day files -> upstream's preprocessed npz and .bin files"
    )
    prep.add_argument(
        "raw_dir", metavar="RAW_DIR", help="folder with day_0..day_23 (or train.txt), plain or .gz"
    )
    prep.add_argument("out_dir", metavar="OUT_DIR", help="output folder (new, or one this tool started)")
    prep.add_argument(
        "--max-ind-range",
        type=int,
        required=True,
        help="hash ids modulo this (40000000 for tb00_40M, 10000000 for tb0875_10M; <= 0: no hashing)",
    )
    prep.add_argument(
        "--sub-sample-rate",
        type=float,
        default=_default(PrepareSettings, "sub_sample_rate"),
        help="drop label-0 lines with this probability (0.875 for tb0875_10M)",
    )
    prep.add_argument("--seed", type=int, default=DEFAULT_SEED, help="numpy RandomState seed (upstream: 123)")
    prep.add_argument(
        "--dataset", choices=sorted(DATASETS), default=_default(PrepareSettings, "dataset"), help="raw layout"
    )
    prep.add_argument(
        "--days", type=int, default=None, help="number of days (default: 24 Terabyte, 7 Kaggle)"
    )
    prep.add_argument("--engine", choices=ENGINES, default=ENGINES[0], help="run days in-process or on Dask")
    prep.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler (engine dask)")
    prep.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (engine dask)")
    prep.add_argument(
        "--write-train",
        action="store_true",
        help="also write day_N_processed.npz (and training outputs) for training",
    )
    prep.add_argument(
        "--skip-malformed",
        action="store_true",
        help="skip malformed lines (counted in the manifest) instead of stopping",
    )
    prep.set_defaults(run=_prepare)

    train = _add_command(
        commands, "train-demo", help="train the demo DLRM on prepared data (upstream checkpoint)"
    )
    train.add_argument(
        "data_dir", metavar="DATA_DIR", help="prepared folder, made with prepare --write-train"
    )
    train.add_argument("out", metavar="OUT.pt", help="checkpoint to write (never overwritten)")
    train.add_argument(
        "--arch",
        default=_default(TrainSettings, "arch"),
        help="architecture preset: tb00_40M, tb0875_10M, kaggle",
    )
    train.add_argument(
        "--seed",
        type=int,
        default=_default(TrainSettings, "seed"),
        help="seed (same seed and settings, same checkpoint)",
    )
    train.add_argument(
        "--epochs",
        type=float,
        default=_default(TrainSettings, "epochs"),
        help="passes over the training split",
    )
    train.add_argument(
        "--batch-size",
        type=int,
        default=_default(TrainSettings, "batch_size"),
        help="pairs per training step",
    )
    train.add_argument(
        "--minutes",
        type=float,
        default=_default(TrainSettings, "max_minutes"),
        help="stop training after this many minutes",
    )
    train.set_defaults(run=_train_demo)

    score = _add_command(
        commands, "score", help="predictions and AUC straight from a checkpoint, without LoadGen"
    )
    score.add_argument("--checkpoint", required=True, help="upstream-format checkpoint or state_dict (.pt)")
    score.add_argument("--data", required=True, help="prepared folder (.bin splits or upstream's npz)")
    score.add_argument(
        "--out", required=True, help="where to write float32 predictions (.npy), in file order"
    )
    score.add_argument("--split", choices=SPLITS, default=SPLITS[0], help="which half of the test day")
    score.add_argument("--count", type=int, default=None, help="only the first COUNT pairs")
    score.add_argument("--precision", choices=PRECISIONS, default=PRECISIONS[0], help="arithmetic")
    score.add_argument(
        "--table-precision", choices=TABLE_PRECISIONS, default=TABLE_PRECISIONS[0], help="embedding tables"
    )
    _add_table_cache_arguments(score)
    score.add_argument("--device", default=DEVICES[0], help="cpu, cuda or cuda:N")
    score.add_argument("--batch-size", type=int, default=SCORE_BATCH_PAIRS, help="pairs per forward")
    score.add_argument("--compile", action="store_true", help="torch.compile the model first")
    score.add_argument("--overwrite", action="store_true", help="replace an existing OUT file")
    score.set_defaults(run=_score)

    synth_ckpt = _add_command(
        commands, "synth-checkpoint", help="random weights at the published sizes, in upstream's format"
    )
    synth_ckpt.add_argument("out", metavar="OUT.pt", help="checkpoint to write (never overwritten)")
    synth_ckpt.add_argument("--arch", required=True, help="architecture preset: tb00_40M, tb0875_10M, kaggle")
    synth_ckpt.add_argument(
        "--rows",
        type=_full_or_int,
        default=None,
        help="rows per table: full (published) or a cap N",
    )
    synth_ckpt.add_argument("--seed", type=int, default=0, help="generator seed (same seed, same bytes)")
    synth_ckpt.set_defaults(run=_synth_checkpoint)

    forward = _add_command(
        commands, "forward-bench", help="model-only pairs/s at a batch size (the forward alone, no LoadGen)"
    )
    forward.add_argument("--checkpoint", required=True, help="upstream-format checkpoint or state_dict (.pt)")
    forward.add_argument(
        "--data", default=None, help="prepared folder: inputs are its first test pairs (default: random ids)"
    )
    forward.add_argument("--precision", choices=PRECISIONS, default=PRECISIONS[0], help="arithmetic")
    forward.add_argument(
        "--table-precision", choices=TABLE_PRECISIONS, default=TABLE_PRECISIONS[0], help="embedding tables"
    )
    _add_table_cache_arguments(forward)
    forward.add_argument(
        "--batch", type=int, nargs="+", default=[SCORE_BATCH_PAIRS], help="pairs per forward"
    )
    forward.add_argument("--seconds", type=float, default=2.0, help="timing per batch size")
    forward.add_argument("--device", default=DEVICES[0], help="cpu, cuda or cuda:N")
    forward.add_argument("--compile", action="store_true", help="torch.compile the model first")
    forward.add_argument("--json", action="store_true", help="print the figures as JSON")
    forward.set_defaults(run=_forward_bench)

    loadgen = _add_command(
        commands, "loadgen", help="one MLPerf LoadGen run (scenario, mode) with metrics.json"
    )
    _add_benchmark_arguments(loadgen)
    loadgen.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default=_default(LoadgenSettings, "scenario"),
        help="LoadGen scenario",
    )
    loadgen.set_defaults(run=_loadgen)

    search = _add_command(commands, "qps-search", help="highest valid Server QPS under the latency bound")
    _add_benchmark_arguments(search)
    search.add_argument(
        "--budget-s", type=float, default=QPS_SEARCH_BUDGET_S, help="total time for the search"
    )
    search.add_argument("--probe-ms", type=int, default=QPS_SEARCH_PROBE_MS, help="duration of each probe")
    search.set_defaults(run=_qps_search, scenario="Server")

    accuracy = _add_command(commands, "accuracy", help="AUC from a LoadGen accuracy log (upstream's line)")
    accuracy.add_argument("log", metavar="LOG.json", help="mlperf_log_accuracy.json")
    accuracy.add_argument(
        "--day-23-file", default=None, help="labels from this raw day file (predictions-only logs)"
    )
    accuracy.add_argument(
        "--aggregation-trace-file", default=None, help="trace of the run, with --day-23-file"
    )
    accuracy.set_defaults(run=_accuracy)

    run = _add_command(
        commands,
        "run",
        help="the whole workbook: every notebook through papermill into a new results/<run-id>/",
    )
    run.add_argument("params", metavar="PARAMS.yaml", help="parameter set, e.g. params/demo.yaml")
    run.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        default=[],
        metavar=("KEY", "VALUE"),
        help="override one parameter: section.name or name, VALUE read as YAML (repeatable)",
    )
    run.add_argument("--run-id", default=None, help="name of the run folder (default <params>-<time>)")
    run.add_argument("--results", default=None, help="results folder (default: the project's results/)")
    run.add_argument(
        "--progress",
        choices=PROGRESS_STYLES[1:],
        default=PROGRESS_STYLES[1],
        help="progress bars in the notebooks",
    )
    run.set_defaults(run=_run)

    report = _add_command(commands, "report", help="(re)render report.html of runs and results/index.html")
    report.add_argument("runs", nargs="*", metavar="RUN_DIR", help="run folders (none: only the index)")
    report.add_argument("--results", default=None, help="results folder (default: the project's results/)")
    report.set_defaults(run=_report)

    params = _add_command(
        commands, "params", help="the notebooks' parameters as Markdown (docs/parameters.md)"
    )
    params.add_argument(
        "--write",
        metavar="FILE.md",
        default=None,
        help="replace the reference block in it (docs/parameters.md)",
    )
    params.set_defaults(run=_params)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the exit code (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    with _sigterm_raises():
        try:
            args.run(args)
        except BaseException as exc:
            return _stopped(args, exc)
    return 0


def _stopped(args: argparse.Namespace, exc: BaseException) -> int:
    """Tell why ``args.command`` stopped in one line (a traceback too for our bugs); the exit code."""
    prefix = f"dlrm-nb {args.command}"
    if isinstance(exc, KeyboardInterrupt):  # Ctrl-C, and SIGTERM (Terminated)
        print(f"{prefix}: interrupted; {INTERRUPTED.get(args.command, _NOTHING_WRITTEN)}", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
    message = _user_error(exc, args)
    if message is not None:
        print(f"{prefix}: error: {message}", file=sys.stderr)
        return 2
    if not isinstance(exc, Exception):  # SystemExit, GeneratorExit: not ours to answer
        raise exc
    traceback.print_exception(exc)
    print(f"{prefix}: {BUG_LINE}", file=sys.stderr)
    return 1


def _user_error(exc: BaseException, args: argparse.Namespace) -> str | None:
    """The one-line message of a user error (ours, or the machine refusing the user's files); None
    for anything else."""
    if isinstance(exc, DlrmNbError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in {*_DISK_FULL, *_NOT_PERMITTED, *_BAD_PATH}:
        return _os_error_line(exc, args)
    if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] != "dlrm_nb":
        return (
            f"the Python package {exc.name!r} is missing: install the project's environment "
            "(pip install -e . or environment.yml)"
        )
    return None


def _os_error_line(exc: OSError, args: argparse.Namespace) -> str:
    """``cannot write FILE: the disk is full; ...`` or ``permission denied: FILE; ...``."""
    name = exc.filename if exc.filename is not None else _output_of(args)
    if exc.errno in _DISK_FULL:
        return (
            f"cannot write {name}: {_DISK_FULL[exc.errno]}; free some space (or raise the limit) or write to "
            "another folder, then rerun"
        )
    if exc.errno in _BAD_PATH:
        return f"{exc.strerror or 'no such file or folder'}: {name}; check the path, then rerun"
    what = "read-only file system" if exc.errno == errno.EROFS else "permission denied"
    return f"{what}: {name}; use files and folders you may read and write, then rerun"


def _output_of(args: argparse.Namespace) -> str:
    """Where the command writes, to name when the system did not say which file failed."""
    for name in ("out", "out_dir", "run_dir", "write"):
        value = getattr(args, name, None)
        if value:
            return f"a file under {value}" if name in ("out_dir", "run_dir") else str(value)
    return "an output file"


def _command(args: argparse.Namespace) -> str:
    """The command line as typed, for lock files."""
    return shlex.join(["dlrm-nb", *args.argv])


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While the command runs, SIGTERM raises :class:`Terminated` (cleanup as for Ctrl-C)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum: int, frame: FrameType | None) -> NoReturn:
    raise Terminated()


if __name__ == "__main__":
    sys.exit(main())
