"""The ``dlrm-nb`` command line: the same functions the notebooks call, from a terminal."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlrm_nb.data.criteo import DATASETS, DEFAULT_SEED, SPLITS
from dlrm_nb.data.preprocess import ENGINES, PrepareSettings
from dlrm_nb.data.synthetic import generate
from dlrm_nb.exceptions import DlrmNbError
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
from dlrm_nb.model.settings import DEVICES, PRECISIONS, SCORE_BATCH_PAIRS, TABLE_PRECISIONS, TrainSettings
from dlrm_nb.progress import PROGRESS_STYLES


def _default(settings: Any, name: str) -> Any:
    """The default of ``name``: a field of a settings dataclass or a parameter of a function
    (each default is stated once, where the work is done)."""
    if dataclasses.is_dataclass(settings):
        return next(f.default for f in dataclasses.fields(settings) if f.name == name)
    return inspect.signature(settings).parameters[name].default


def _synth(args: argparse.Namespace) -> None:
    sidecar = generate(
        args.out_dir,
        dataset=args.dataset,
        days=args.days,
        rows_per_day=args.rows_per_day,
        test_day_rows=args.test_day_rows,
        seed=args.seed,
        gzip=args.gzip,
    )
    oracle = sidecar.get("oracle_auc", {})
    print(f"wrote synthetic {args.dataset} data to {args.out_dir} (oracle AUC: {oracle})")


def _prepare(args: argparse.Namespace) -> None:
    from dlrm_nb.data.preprocess import output_summary, prepare

    settings = PrepareSettings(
        max_ind_range=args.max_ind_range,
        sub_sample_rate=args.sub_sample_rate,
        seed=args.seed,
        dataset=args.dataset,
        days=args.days,
        write_train=args.write_train,
        skip_malformed=args.skip_malformed,
    )
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


def _predictor(model: Any, args: argparse.Namespace) -> Any:
    """The model as a predictor with the precisions, device and compile flag the command got."""
    from dlrm_nb.model.inference import Predictor

    return Predictor(
        model,
        precision=args.precision,
        table_precision=args.table_precision,
        device=args.device,
        compile=args.compile,
    )


def _score(args: argparse.Namespace) -> None:
    from dlrm_nb.data.dataset import open_split
    from dlrm_nb.fileio import atomic_output
    from dlrm_nb.model.checkpoint import load_checkpoint
    from dlrm_nb.model.inference import score_split

    if Path(args.out).exists() and not args.overwrite:
        raise DlrmNbError(f"{args.out} exists; choose another name or pass --overwrite")
    split = open_split(args.data, args.split)
    model, _ = load_checkpoint(args.checkpoint)
    predictor = _predictor(model, args)
    score = score_split(predictor, split, count=args.count, batch_size=args.batch_size)
    with atomic_output(args.out) as tmp, open(tmp, "wb") as f:
        np.save(f, score.predictions)
    auc = float("nan") if score.auc is None else score.auc
    print(f"AUC={100 * auc:.3f}%, pairs={len(score.predictions)}, predictions in {args.out}")


def _synth_checkpoint(args: argparse.Namespace) -> None:
    from dlrm_nb.model.synth_checkpoint import write_synthetic_checkpoint

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
    page_in_s = page_in(model, progress=not args.json)  # memory-mapped tables into RAM, timed apart
    predictor = _predictor(model, args)
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

    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    benchmark = open_benchmark(
        args.checkpoint,
        args.data,
        precision=args.precision,
        table_precision=args.table_precision,
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
    readme = Path(args.write)
    readme.write_text(with_reference(readme.read_text(encoding="utf-8")), encoding="utf-8")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dlrm-nb", description=__doc__)
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
        "--days", type=int, default=None, help="day files (default: 24 Terabyte, 7 Kaggle splits)"
    )
    synth.add_argument(
        "--rows-per-day", type=int, default=_default(generate, "rows_per_day"), help="lines per training day"
    )
    synth.add_argument("--test-day-rows", type=int, default=None, help="lines of the last (test) day")
    synth.add_argument(
        "--seed", type=int, default=_default(generate, "seed"), help="generator seed (same seed, same bytes)"
    )
    synth.add_argument("--gzip", action="store_true", help="write day_N.gz / train.txt.gz")
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
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except DlrmNbError as exc:
        print(f"dlrm-nb {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
