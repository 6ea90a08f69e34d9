"""The ``dlrm-nb`` command line: the same functions the notebooks call, from a terminal."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

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


def _train_demo(args: argparse.Namespace) -> None:
    from .train import TrainSettings, train_demo

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


def _score(args: argparse.Namespace) -> None:
    from sklearn.metrics import roc_auc_score

    from .checkpoint import load_model
    from .dataset import open_split
    from .fileio import atomic_output
    from .inference import Predictor, predict_split

    if Path(args.out).exists() and not args.overwrite:
        raise DlrmNbError(f"{args.out} exists; choose another name or pass --overwrite")
    split = open_split(args.data, args.split)
    model, _ = load_model(args.checkpoint)
    predictor = Predictor(model, precision=args.precision, device=args.device, compile=args.compile)
    predictions = predict_split(predictor, split, count=args.count, batch_size=args.batch_size)
    with atomic_output(args.out) as tmp, open(tmp, "wb") as f:
        np.save(f, predictions)
    labels = split.labels()[: len(predictions)]
    auc = roc_auc_score(labels, predictions) if 0 < labels.sum() < len(labels) else float("nan")
    print(f"AUC={100 * auc:.3f}%, pairs={len(predictions)}, predictions in {args.out}")


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

    train = commands.add_parser(
        "train-demo", help="train the demo DLRM on prepared data (upstream checkpoint)"
    )
    train.add_argument(
        "data_dir", metavar="DATA_DIR", help="prepared folder, made with prepare --write-train"
    )
    train.add_argument("out", metavar="OUT.pt", help="checkpoint to write (never overwritten)")
    train.add_argument("--arch", default="tb00_40M", help="architecture preset: tb00_40M, tb0875_10M, kaggle")
    train.add_argument("--seed", type=int, default=0, help="seed (same seed and settings, same checkpoint)")
    train.add_argument("--epochs", type=float, default=1.0, help="passes over the training split")
    train.add_argument("--batch-size", type=int, default=512, help="pairs per training step")
    train.add_argument("--minutes", type=float, default=10.0, help="stop training after this many minutes")
    train.set_defaults(run=_train_demo)

    score = commands.add_parser(
        "score", help="predictions and AUC straight from a checkpoint, without LoadGen"
    )
    score.add_argument("--checkpoint", required=True, help="upstream-format checkpoint or state_dict (.pt)")
    score.add_argument("--data", required=True, help="prepared folder (.bin splits or upstream's npz)")
    score.add_argument(
        "--out", required=True, help="where to write float32 predictions (.npy), in file order"
    )
    score.add_argument("--split", choices=("test", "val"), default="test", help="which half of the test day")
    score.add_argument("--count", type=int, default=None, help="only the first COUNT pairs")
    score.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32", help="arithmetic")
    score.add_argument("--device", default="cpu", help="cpu or cuda")
    score.add_argument("--batch-size", type=int, default=16384, help="pairs per forward")
    score.add_argument("--compile", action="store_true", help="torch.compile the model first")
    score.add_argument("--overwrite", action="store_true", help="replace an existing OUT file")
    score.set_defaults(run=_score)
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
