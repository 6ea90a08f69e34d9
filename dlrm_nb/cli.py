"""The ``dlrm-nb`` command line: the same functions the notebooks call, from a terminal."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .criteo import DATASETS, DEFAULT_SEED
from .exceptions import DlrmNbError


def _synth(args: argparse.Namespace) -> None:
    from .synthetic import generate

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
    from .preprocess import PrepareSettings, output_summary, prepare

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dlrm-nb", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = commands.add_parser("synth", help="write synthetic raw Criteo files with a planted signal")
    synth.add_argument("out_dir", metavar="OUT_DIR", help="folder for the raw files and synthetic.json")
    synth.add_argument("--dataset", choices=sorted(DATASETS), default="terabyte", help="file layout to write")
    synth.add_argument(
        "--days", type=int, default=None, help="day files (default: 24 Terabyte, 7 Kaggle splits)"
    )
    synth.add_argument("--rows-per-day", type=int, default=2000, help="lines per training day")
    synth.add_argument("--test-day-rows", type=int, default=None, help="lines of the last (test) day")
    synth.add_argument("--seed", type=int, default=0, help="generator seed (same seed, same bytes)")
    synth.add_argument("--gzip", action="store_true", help="write day_N.gz / train.txt.gz")
    synth.set_defaults(run=_synth)

    prep = commands.add_parser("prepare", help="raw day files -> upstream's preprocessed npz and .bin files")
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
        default=0.0,
        help="drop label-0 lines with this probability (0.875 for tb0875_10M)",
    )
    prep.add_argument("--seed", type=int, default=DEFAULT_SEED, help="numpy RandomState seed (upstream: 123)")
    prep.add_argument("--dataset", choices=sorted(DATASETS), default="terabyte", help="raw layout")
    prep.add_argument(
        "--days", type=int, default=None, help="number of days (default: 24 Terabyte, 7 Kaggle)"
    )
    prep.add_argument(
        "--engine", choices=("local", "dask"), default="local", help="run days in-process or on Dask"
    )
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "days", None) is None and args.command == "synth":
        args.days = DATASETS[args.dataset].days
    try:
        args.run(args)
    except DlrmNbError as exc:
        print(f"dlrm-nb {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
