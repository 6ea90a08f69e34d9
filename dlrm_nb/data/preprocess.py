"""Raw Criteo day files -> upstream's preprocessed arrays, exactly as facebookresearch/dlrm makes them.

The work is split so that it is resumable and can run in parallel:

1. **Day tasks** (:func:`process_day`, one per day, any order, any process): parse the day,
   sub-sample it with upstream's random numbers, hash ids with ``max_ind_range`` and record,
   per feature, the day's distinct values in order of first appearance. Days whose rows
   are needed later (the test day; every day with ``write_train``) also keep their rows,
   with ids as day-local ranks. Results go to a work folder, each file renamed into place
   when complete.
2. **Merge** (:func:`finalize`, in day order): feeding each day's first-appearance values
   into one global dictionary per feature reproduces upstream's line-by-line ranks; day-local
   ranks then map to global ranks with one gather per feature.

Memory is bounded by the dictionaries (at most ``max_ind_range`` entries per feature), never
by the number of lines.
"""

from __future__ import annotations

import errno
import gzip
import itertools
import json
import math
import os
import shutil
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast, overload

import numpy as np
from tqdm.std import tqdm  # what progress_bar returns (tqdm.auto's bars derive from it)

from dlrm_nb.data.criteo import (
    BIN_DTYPE,
    BIN_RECORD_BYTES,
    CAT_COLS,
    DATASETS,
    DEFAULT_SEED,
    DENSE_COLS,
    KAGGLE_RAW_NAME,
    LABEL_COL,
    N_CAT,
    N_FIELDS,
    DatasetLayout,
    split_rows,
    terabyte_raw_name,
)
from dlrm_nb.data.dictionaries import FirstSeenRanks
from dlrm_nb.data.manifest import WORK_DIR_NAME, input_record, open_output_folder, save_manifest
from dlrm_nb.data.rawtext import ParsedBlock, block_parsers, call, count_lines, ordered_map
from dlrm_nb.data.shuffle import plan_shuffle
from dlrm_nb.exceptions import DlrmNbError, InputFileError, InvalidValueError
from dlrm_nb.fileio import (
    atomic_output,
    check_size,
    remove_stale_temps,
    save_npz,
    save_npz_from_npy_files,
    write_error,
    write_json,
)
from dlrm_nb.progress import Progress, progress_bar

ENGINES = ("local", "dask")
PARSE_THREADS = 2  # local engine: blocks parsed ahead, in parallel, while the main thread ranks ids
_ROWS_PER_WRITE = 1 << 20


class EmptyInputWarning(UserWarning):
    """A raw training day without a single line (it adds no rows; the run goes on)."""


def check_sub_sample_rate(rate: float) -> float:
    """``rate`` when it is a probability of dropping a label-0 line: 0 <= rate < 1."""
    if not 0.0 <= rate < 1.0:
        raise InvalidValueError("sub_sample_rate", rate, "need 0 <= rate < 1 (0.875 for tb0875_10M)")
    return rate


@dataclass(frozen=True)
class PrepareSettings:
    """What decides the content of the outputs (recorded in the manifest)."""

    max_ind_range: int
    sub_sample_rate: float = 0.0
    seed: int = DEFAULT_SEED
    dataset: str = "terabyte"
    days: int | None = None  # default: the dataset's (24 Terabyte days, 7 Kaggle splits)
    write_train: bool = False
    skip_malformed: bool = False

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise DlrmNbError(f"dataset {self.dataset!r} is not one of {', '.join(DATASETS)}")
        check_sub_sample_rate(self.sub_sample_rate)
        if self.days is not None and self.days < 2:
            raise DlrmNbError(f"days {self.days} is too few: at least one training day and the test day")
        if not isinstance(self.max_ind_range, int):
            raise DlrmNbError(
                f"max_ind_range {self.max_ind_range!r} is not an integer (<= 0 means no hashing)"
            )

    @property
    def layout(self) -> DatasetLayout:
        base = DATASETS[self.dataset]
        if self.days is None or self.days == base.days:
            return base
        return DatasetLayout(base.name, self.days, base.prefix, base.day_prefix, base.bin_prefix)

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["days"] = self.layout.days
        return record


@dataclass(frozen=True)
class DaySource:
    """Where one day's lines are: a file, a starting offset and line, and a line limit."""

    day: int
    path: str
    byte_offset: int = 0
    first_line: int = 1
    max_lines: int | None = None


# ----------------------------------------------------------------------------- planning


def plan_sources(raw_dir: str | os.PathLike, settings: PrepareSettings) -> list[DaySource]:
    """Find the raw files of every day; name every missing one."""
    raw_dir = Path(raw_dir)
    layout = settings.layout
    if not raw_dir.is_dir():
        raise InputFileError(f"raw data folder {raw_dir} does not exist")
    if layout.name == "kaggle":
        return _kaggle_sources(raw_dir, layout.days)
    sources: list[DaySource] = []
    missing = []
    for day in range(layout.days):
        path = _existing(raw_dir, terabyte_raw_name(day))
        if path is None:
            missing.append(terabyte_raw_name(day))
        else:
            sources.append(DaySource(day, str(path)))
    if missing:
        raise InputFileError(
            f"{raw_dir} lacks {len(missing)} of the {layout.days} day files: {', '.join(missing)} "
            "(plain or .gz); download them, or pass the number of days present"
        )
    _check_not_empty(sources, layout.test_day)
    return sources


def _check_not_empty(sources: list[DaySource], test_day: int) -> None:
    """Refuse an empty test day; warn (:class:`EmptyInputWarning`) of each empty training day."""
    for source in sources:
        if not _is_empty(Path(source.path)):
            continue
        if source.day == test_day:
            raise InputFileError(
                f"{source.path} (day {source.day}, the test day) is empty: the test and validation splits "
                "would have no rows; download or decompress it again"
            )
        warnings.warn(
            f"{source.path} (training day {source.day}) is empty: it adds no rows; if that is not "
            "intended, download or decompress it again",
            EmptyInputWarning,
            stacklevel=4,  # the caller of prepare()
        )


def _is_empty(path: Path) -> bool:
    """True when the raw file holds no text (a ``.gz`` is opened to see; a corrupt one is
    reported when it is read, not here)."""
    if path.stat().st_size == 0:
        return True
    if path.suffix != ".gz":
        return False
    try:
        with gzip.open(path, "rb") as f:
            return f.read(1) == b""
    except (OSError, EOFError, zlib.error):
        return False


def _existing(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _kaggle_sources(raw_dir: Path, days: int) -> list[DaySource]:
    path = _existing(raw_dir, KAGGLE_RAW_NAME)
    if path is None:
        raise InputFileError(f"{raw_dir} has no {KAGGLE_RAW_NAME} (plain or .gz)")
    total, _ = count_lines(path)
    if total < days:
        raise InputFileError(
            f"{path} holds {total:,} lines: too few for {days} line-count splits (the last, the test "
            "day, would be empty); download or decompress it again"
        )
    per_day, extras = divmod(total, days)  # upstream: the first `extras` splits get one more line
    sizes = [per_day + (1 if day < extras else 0) for day in range(days)]
    starts = [sum(sizes[:day]) for day in range(days)]
    _, offsets = count_lines(path, boundaries=starts)
    return [DaySource(day, str(path), offsets[day], starts[day] + 1, sizes[day]) for day in range(days)]


# ----------------------------------------------------------------------------- day tasks


def _summary_path(work_dir: Path, day: int) -> Path:
    return work_dir / f"day_{day}.json"


def _uniques_path(work_dir: Path, day: int) -> Path:
    return work_dir / f"day_{day}.uniques.npz"


def _records_path(work_dir: Path, day: int) -> Path:
    return work_dir / f"day_{day}.records"


def process_day(
    source: DaySource,
    settings: PrepareSettings,
    work_dir: str,
    rng_state: dict[str, Any] | None,
    emit_records: bool,
    progress: Progress = True,
    dictionaries: list[FirstSeenRanks] | None = None,
    blocks: Iterator[ParsedBlock] | None = None,
) -> dict[str, Any]:
    """Parse, sub-sample and hash one day; write its first-appearance values (and rows).

    With ``dictionaries`` (the global ones, holding exactly the days before this one: the
    local engine) ids get their final ranks at once; without, day-local ranks (any order,
    any process: the Dask engine). Writes ``day_{d}.uniques.npz`` (per feature ``f{j}``:
    int64 values in order of first appearance; only the new ones with ``dictionaries``),
    with ``emit_records`` also ``day_{d}.records`` (int32 [kept, 40]: label, dense with
    negatives zeroed, ranks), then the summary ``day_{d}.json`` that marks the day as
    done. ``blocks`` are the day's parsed blocks when the caller reads ahead (default: read
    here, with the next block parsed while this one is ranked). Returns the summary.
    """
    work = Path(work_dir)
    rng = _rng_from_state(rng_state, settings)
    ranks = dictionaries if dictionaries is not None else _day_tables(settings.max_ind_range)
    known = [table.count for table in ranks]
    lines = kept = malformed = 0
    records_file = _records_path(work, source.day)
    if blocks is None:
        blocks = ordered_map(call, _day_parsers(source, settings), workers=1)
    bar = progress_bar(progress, desc=f"day {source.day}", unit=" lines", unit_scale=True, leave=False)
    with atomic_output(records_file) as tmp_records, open(tmp_records, "wb") as out:
        for block in blocks:
            keep = _sub_sample(block.labels, block.n_lines, block.kept_mask, rng, settings.sub_sample_rate)
            rows = _hashed_rows(block, keep, settings.max_ind_range, ranks, emit_records)
            if emit_records:
                out.write(rows.tobytes())
            lines += block.n_lines
            kept += len(rows)
            malformed += block.malformed
            bar.update(block.n_lines)
        out.flush()
        check_size(tmp_records, kept * BIN_RECORD_BYTES if emit_records else 0, records_file)
    bar.close()
    if not emit_records:
        records_file.unlink()
    save_npz(
        _uniques_path(work, source.day), **{f"f{j}": ranks[j].uniques()[known[j] :] for j in range(N_CAT)}
    )
    summary = {
        "day": source.day,
        "lines": lines,
        "kept": kept,
        "malformed": malformed,
        "records": emit_records,
        "ranks": "global" if dictionaries is not None else "local",
        "rng_state_end": _rng_state_dict(rng),
    }
    write_json(_summary_path(work, source.day), summary)
    return summary


def _day_tables(max_ind_range: int) -> list[FirstSeenRanks]:
    """Day-local dictionaries. Inside a Dask worker they are kept on the worker and reset
    between days, so the dense tables' pages are zero-filled once per worker, not per day."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return [FirstSeenRanks(max_ind_range) for _ in range(N_CAT)]
    cache = worker.__dict__.setdefault("_dlrm_nb_rank_tables", {})
    tables = cache.setdefault(max_ind_range, [FirstSeenRanks(max_ind_range) for _ in range(N_CAT)])
    for table in tables:
        table.reset()
    return tables


def _day_parsers(source: DaySource, settings: PrepareSettings) -> Iterator[Callable[[], ParsedBlock]]:
    """The day's blocks, each as a call that parses it."""
    return block_parsers(
        source.path,
        byte_offset=source.byte_offset,
        first_line=source.first_line,
        max_lines=source.max_lines,
        skip_malformed=settings.skip_malformed,
    )


def _sub_sample(
    labels: np.ndarray,
    n_lines: int,
    parsed_mask: np.ndarray | None,
    rng: np.random.RandomState | None,
    rate: float,
) -> np.ndarray | None:
    """Upstream's rule: one uniform draw per line read; drop a line iff label 0 and draw < rate."""
    if rng is None:
        return None
    draws = rng.uniform(low=0.0, high=1.0, size=n_lines)
    if parsed_mask is not None:
        draws = draws[parsed_mask]
    return ~((labels == 0) & (draws < rate))


def _hashed_rows(
    block: ParsedBlock, keep: np.ndarray | None, max_ind_range: int, ranks: list[FirstSeenRanks], rows: bool
) -> np.ndarray:
    """Rank the kept lines' ids; with ``rows``, return them as int32 [K, 40]: label, dense
    (negatives zeroed), ranks; otherwise only update the dictionaries (and return [K, 0])."""
    labels, dense, cats = block.labels, block.dense, block.cats
    if keep is not None and not keep.all():
        labels, dense, cats = labels[keep], dense[keep], cats[:, keep]
    out = np.empty((len(labels), N_FIELDS if rows else 0), dtype=BIN_DTYPE)
    if rows:
        out[:, LABEL_COL] = labels
        np.maximum(dense, 0, out=out[:, DENSE_COLS])
    modulo = np.uint64(max_ind_range) if max_ind_range > 0 else None
    for j in range(N_CAT):
        values = cats[j] % modulo if modulo is not None else cats[j]
        feature_ranks = ranks[j].update(values.view(np.int64))
        if rows:
            out[:, CAT_COLS.start + j] = feature_ranks
    return out


def _rng_from_state(state: dict[str, Any] | None, settings: PrepareSettings) -> np.random.RandomState | None:
    if settings.sub_sample_rate == 0.0:
        return None  # upstream draws nothing without sub-sampling
    rng = np.random.RandomState(settings.seed)
    if state is not None:
        rng.set_state(_state_tuple(state))
    return rng


@overload
def _rng_state_dict(rng: np.random.RandomState) -> dict[str, Any]: ...
@overload
def _rng_state_dict(rng: None) -> None: ...
@overload
def _rng_state_dict(rng: np.random.RandomState | None) -> dict[str, Any] | None: ...
def _rng_state_dict(rng: np.random.RandomState | None) -> dict[str, Any] | None:
    if rng is None:
        return None
    # numpy's stubs say get_state() is a dict: it is the legacy tuple unless legacy=False
    legacy = cast("tuple[str, np.ndarray, int, int, float]", rng.get_state())
    name, keys, pos, has_gauss, cached = legacy
    return {
        "name": name,
        "keys": keys.tolist(),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _state_tuple(state: dict[str, Any]) -> tuple:
    return (
        state["name"],
        np.array(state["keys"], dtype=np.uint32),
        state["pos"],
        state["has_gauss"],
        state["cached"],
    )


def advance_rng_state(state: dict[str, Any] | None, seed: int, draws: int) -> dict[str, Any]:
    """The RandomState state after ``draws`` more uniform draws (upstream draws one per line)."""
    rng = np.random.RandomState(seed)
    if state is not None:
        rng.set_state(_state_tuple(state))
    while draws > 0:
        step = min(draws, _ROWS_PER_WRITE * 4)
        rng.random_sample(step)
        draws -= step
    return _rng_state_dict(rng)


# ----------------------------------------------------------------------------- engines


def _load_done(work_dir: Path, days: int) -> dict[int, dict[str, Any]]:
    done = {}
    for day in range(days):
        path = _summary_path(work_dir, day)
        if path.exists():
            done[day] = json.loads(path.read_text())
    return done


def _run_local(
    sources: list[DaySource],
    settings: PrepareSettings,
    work_dir: Path,
    done: dict[int, dict[str, Any]],
    emit: dict[int, bool],
    bar: tqdm,
    progress: Progress,
) -> list[FirstSeenRanks]:
    """Days in order in this process, ranking ids with the global dictionaries directly;
    returns the dictionaries, complete."""
    dictionaries = [FirstSeenRanks(settings.max_ind_range) for _ in range(N_CAT)]
    todo = [source for source in sources if source.day not in done]
    # one reader thread runs ahead across day boundaries; None ends a day
    ahead = ordered_map(
        call,
        itertools.chain.from_iterable(
            itertools.chain(_day_parsers(source, settings), [None]) for source in todo
        ),
        workers=PARSE_THREADS,
    )
    state = None
    for source in sources:
        if source.day in done:
            _feed(dictionaries, work_dir, source.day)
        else:
            blocks = iter(ahead.__next__, None)
            done[source.day] = process_day(
                source, settings, str(work_dir), state, emit[source.day], progress, dictionaries, blocks
            )
            _tick(bar, done[source.day])
        state = done[source.day]["rng_state_end"]
    return dictionaries


def _feed(dictionaries: list[FirstSeenRanks], work_dir: Path, day: int) -> list[np.ndarray]:
    """Add a finished day's first-appearance values to the dictionaries; return their ranks."""
    with np.load(_uniques_path(work_dir, day)) as uniques:
        return [dictionaries[j].update(uniques[f"f{j}"]) for j in range(N_CAT)]


def _tick(bar: tqdm, summary: dict[str, Any]) -> None:
    """Advance the overall bar by one finished day and show the lines/s so far."""
    bar.update(1)
    lines = getattr(bar, "postfix_lines", 0) + summary["lines"]
    bar.postfix_lines = lines  # type: ignore[attr-defined]  # this module's running total, kept on the bar
    elapsed = max(bar.format_dict["elapsed"], 1e-9)
    bar.set_postfix(lines=f"{lines:,}", lines_per_s=f"{lines / elapsed:,.0f}")


def _start_states(
    sources: list[DaySource],
    settings: PrepareSettings,
    done: dict[int, dict[str, Any]],
    line_counts: dict[int, int],
) -> dict[int, dict[str, Any] | None]:
    """RandomState state at the start of each day not yet done (None without sub-sampling)."""
    if settings.sub_sample_rate == 0.0:
        return {source.day: None for source in sources}
    starts: dict[int, dict[str, Any] | None] = {}
    state = _rng_state_dict(np.random.RandomState(settings.seed))
    for source in sources:
        if source.day not in done:
            starts[source.day] = state
        if source.day in done:
            state = done[source.day]["rng_state_end"]
        else:
            state = advance_rng_state(state, settings.seed, line_counts[source.day])
    return starts


def _run_dask(
    sources: list[DaySource],
    settings: PrepareSettings,
    work_dir: Path,
    done: dict[int, dict[str, Any]],
    emit: dict[int, bool],
    bar: tqdm,
    scheduler: str | None,
    workers: int,
) -> None:
    from dlrm_nb.data.dask_engine import dask_client

    todo = [source for source in sources if source.day not in done]
    if not todo:
        return
    with dask_client(scheduler, workers) as client:
        from dask.distributed import as_completed

        line_counts: dict[int, int] = {}
        if settings.sub_sample_rate > 0.0:
            # the random numbers of day d depend on how many lines days < d hold
            counted = client.map(_count_day, todo, pure=False)
            line_counts = dict(client.gather(counted))
        starts = _start_states(sources, settings, done, line_counts)
        futures = [
            client.submit(
                process_day,
                source,
                settings,
                str(work_dir),
                starts[source.day],
                emit[source.day],
                False,
                pure=False,
            )
            for source in todo
        ]
        for future in as_completed(futures):
            summary = future.result()
            done[summary["day"]] = summary
            _tick(bar, summary)


def _count_day(source: DaySource) -> tuple[int, int]:
    if source.max_lines is not None:
        return source.day, source.max_lines
    return source.day, count_lines(source.path)[0]


# ----------------------------------------------------------------------------- entry point


def prepare(
    raw_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    settings: PrepareSettings,
    *,
    engine: str = "local",
    scheduler: str | None = None,
    workers: int = 2,
    progress: Progress = True,
) -> dict[str, Any]:
    """Preprocess the raw files in ``raw_dir`` into upstream's files in ``out_dir``.

    Resumable: rerun the same call after an interruption and finished work is skipped.
    Returns the manifest (settings, per-day line counts, outputs, timing).
    """
    if engine not in ENGINES:
        raise DlrmNbError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
    if engine == "dask" and scheduler is None and workers < 1:
        raise DlrmNbError(f"workers {workers} must be at least 1")
    out = Path(out_dir)
    sources = plan_sources(raw_dir, settings)
    inputs = [input_record(path) for path in dict.fromkeys(source.path for source in sources)]
    manifest = open_output_folder(out, settings.as_dict(), inputs)
    if manifest.get("complete") and all((out / name).exists() for name in manifest["outputs"]):
        return manifest
    work = out / WORK_DIR_NAME
    work.mkdir(exist_ok=True)
    remove_stale_temps(work)
    remove_stale_temps(out)
    layout = settings.layout
    emit = {day: settings.write_train or day == layout.test_day for day in range(layout.days)}
    done = _load_done(work, layout.days)
    resumed = set(done)  # days an earlier, interrupted run finished
    started = time.perf_counter()
    with progress_bar(progress, total=layout.days, initial=len(done), desc="prepare", unit="day") as bar:
        dictionaries = None
        if engine == "local":
            dictionaries = _run_local(sources, settings, work, done, emit, bar, progress)
        else:
            _run_dask(sources, settings, work, done, emit, bar, scheduler, workers)
    _check_test_day_kept(sources[layout.test_day], done[layout.test_day])
    manifest["days"] = {
        str(day): {key: done[day][key] for key in ("lines", "kept", "malformed")} for day in sorted(done)
    }
    manifest["malformed_lines_skipped"] = sum(summary["malformed"] for summary in done.values())
    # what this run read (a resumed run reads only the days left), for its lines/s
    manifest["lines_read_this_run"] = sum(done[day]["lines"] for day in done if day not in resumed)
    save_manifest(out, manifest)
    finalize(out, work, settings, done, manifest, progress, dictionaries)
    manifest["complete"] = True
    manifest["seconds"] = round(time.perf_counter() - started, 3)
    save_manifest(out, manifest)
    shutil.rmtree(work)
    return manifest


def _check_test_day_kept(source: DaySource, summary: dict[str, Any]) -> None:
    """Refuse a test day of which no row was kept (every line skipped as malformed)."""
    if summary["kept"] == 0:
        raise InputFileError(
            f"{source.path}: the test day (day {source.day}) kept no rows ({summary['lines']:,} lines read, "
            f"{summary['malformed']:,} skipped as malformed), so the test and validation splits would be "
            "empty; fix the file and prepare into a new folder"
        )


# ----------------------------------------------------------------------------- merge and outputs


def finalize(
    out: Path,
    work: Path,
    settings: PrepareSettings,
    done: dict[int, dict[str, Any]],
    manifest: dict[str, Any],
    progress: Progress = True,
    dictionaries: list[FirstSeenRanks] | None = None,
) -> None:
    """Merge the days' first-appearance values in day order (unless the complete
    ``dictionaries`` are given) and write every output file."""
    layout = settings.layout
    merged = dictionaries is not None
    if dictionaries is None:
        dictionaries = [FirstSeenRanks(settings.max_ind_range) for _ in range(N_CAT)]
    day_maps: dict[int, list[np.ndarray] | None] = {}
    days = progress_bar(
        progress, iterable=range(layout.days), desc="merge dictionaries", unit="day", leave=False
    )
    for day in days:
        local_ranks = done[day]["records"] and done[day]["ranks"] == "local"
        maps = _feed(dictionaries, work, day) if not merged or local_ranks else None
        if done[day]["records"]:
            day_maps[day] = maps if local_ranks else None  # None: the rows hold final ranks

    def output(name: str, write) -> None:
        if name in manifest["outputs"] and (out / name).exists():
            return
        write(out / name)
        manifest["outputs"].append(name)
        save_manifest(out, manifest)

    counts = np.array([d.count for d in dictionaries], dtype=np.int32)
    output(layout.fea_count_name(), lambda p: save_npz(p, counts=counts))
    for j, dictionary in enumerate(dictionaries):
        # ids >= 2^31 (only without hashing) wrap to int32, as upstream stored them on numpy 1
        output(
            layout.fea_dict_name(j), lambda p, d=dictionary: save_npz(p, unique=d.uniques().astype(np.int32))
        )
    kept = np.array([done[day]["kept"] for day in range(layout.days)], dtype=np.int64)
    output(layout.day_count_name(), lambda p: save_npz(p, total_per_file=kept))
    test_day = layout.test_day
    records = _mapped_records(work, test_day, done[test_day]["kept"], day_maps[test_day])
    for split in ("test", "val"):
        start, end = split_rows(len(records), split)
        output(layout.bin_name(split), lambda p, s=start, e=end: _write_bin(p, records, s, e))
    if layout.name == "kaggle" or settings.write_train:
        output(layout.reordered_name(test_day), lambda p: _write_day_npz(p, work, records, reordered=True))
    if settings.write_train:
        _write_training_outputs(work, settings, done, day_maps, output)


def _write_training_outputs(
    work: Path, settings: PrepareSettings, done: dict, day_maps: dict, output
) -> None:
    """``_processed.npz`` of every day, and upstream's shuffled ``_reordered.npz`` of the
    training days with their concatenation as the training ``.bin``."""
    layout = settings.layout
    days = {day: _mapped_records(work, day, done[day]["kept"], day_maps[day]) for day in range(layout.days)}
    for day, records in days.items():
        output(layout.processed_name(day), lambda p, r=records: _write_day_npz(p, work, r, reordered=False))
    # the shuffle continues upstream's RandomState after the sub-sampling draws of every day
    rng = _rng_from_state(done[layout.test_day]["rng_state_end"], settings) or np.random.RandomState(
        settings.seed
    )
    plan = plan_shuffle(
        [done[day]["kept"] for day in range(layout.days)],
        rng,
        allocate=lambda name, day, length, dtype: _disk_array(
            work / f"shuffle_{name}_{day}.npy", length, dtype
        ),
    )
    shuffled = [_ShuffledRecords(days, *plan.sources(day)) for day in range(layout.test_day)]
    for day, records in enumerate(shuffled):
        output(layout.reordered_name(day), lambda p, r=records: _write_day_npz(p, work, r, reordered=True))
    output(layout.bin_name("train"), lambda p: _write_bins(p, shuffled))


def _disk_array(path: Path, length: int, dtype: np.dtype) -> np.ndarray:
    """A 1-D array backed by a file (the shuffle plan takes 9 bytes per training row: 38 GB
    for the real data, too much for memory)."""
    if length == 0:
        return np.empty(0, dtype=dtype)
    return _allocated_memmap(path, dtype, (length,))


def _allocated_memmap(path: Path, dtype: Any, shape: tuple[int, ...]) -> np.memmap:
    """``open_memmap(path, "w+")`` with its blocks allocated on disk first, so a full disk is an
    error here (naming the file) rather than a crash (SIGBUS) when a page is written later."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    if hasattr(os, "posix_fallocate"):
        try:
            with open(path, "r+b") as f:
                os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system that cannot allocate
                del array
                path.unlink(missing_ok=True)
                raise write_error(path, exc) from exc
    return array


class _MappedRecords:
    """The rows of one day with day-local ranks mapped to global ranks, read in slices."""

    def __init__(self, path: Path, rows: int, maps: list[np.ndarray] | None) -> None:
        self._rows = np.memmap(path, dtype=BIN_DTYPE, mode="r", shape=(rows, N_FIELDS)) if rows else None
        self._n = rows
        self._maps = maps

    def __len__(self) -> int:
        return self._n

    def slice(self, start: int, end: int) -> np.ndarray:
        """Rows int32 [end - start, 40] with global ranks."""
        assert self._rows is not None  # only a day with no rows has none, and it is never sliced
        return self._mapped(np.array(self._rows[start:end]))

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows int32 [len(rows), 40] at the given indices, with global ranks."""
        assert self._rows is not None  # only a day with no rows has none, and no row is taken from it
        return self._mapped(self._rows[rows])

    def _mapped(self, rows: np.ndarray) -> np.ndarray:
        for j, mapping in enumerate(self._maps or ()):
            rows[:, CAT_COLS.start + j] = mapping[rows[:, CAT_COLS.start + j]]
        return rows

    def chunks(self, start: int, end: int):
        for first in range(start, end, _ROWS_PER_WRITE):
            yield self.slice(first, min(first + _ROWS_PER_WRITE, end))


class _ShuffledRecords(_MappedRecords):
    """A training day after upstream's shuffle: row ``s`` is row ``src_row[s]`` of day ``src_day[s]``."""

    def __init__(self, days: dict[int, _MappedRecords], src_day: np.ndarray, src_row: np.ndarray) -> None:
        self._days, self._src_day, self._src_row = days, src_day, src_row
        self._n = len(src_day)

    def slice(self, start: int, end: int) -> np.ndarray:
        from_day, from_row = self._src_day[start:end], self._src_row[start:end]
        rows = np.empty((end - start, N_FIELDS), dtype=BIN_DTYPE)
        for day in np.unique(from_day):
            here = from_day == day
            rows[here] = self._days[int(day)].take(from_row[here])
        return rows


def _mapped_records(work: Path, day: int, rows: int, maps: list[np.ndarray] | None) -> _MappedRecords:
    return _MappedRecords(_records_path(work, day), rows, maps)


def _write_bin(path: Path, records: _MappedRecords, start: int, end: int) -> None:
    """The MLPerf ``.bin`` of rows ``[start, end)`` of one day."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            for rows in records.chunks(start, end):
                f.write(rows.astype(BIN_DTYPE, copy=False).tobytes())
        check_size(tmp, (end - start) * BIN_RECORD_BYTES, path)


def _write_bins(path: Path, parts: Sequence[_MappedRecords]) -> None:
    """The MLPerf ``.bin`` of several days' rows, back to back."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            for records in parts:
                for rows in records.chunks(0, len(records)):
                    f.write(rows.astype(BIN_DTYPE, copy=False).tobytes())
        check_size(tmp, sum(len(records) for records in parts) * BIN_RECORD_BYTES, path)


def _write_day_npz(path: Path, work: Path, records: _MappedRecords, *, reordered: bool) -> None:
    """Upstream's per-day arrays: ``_processed`` (X_cat float64, X_int/y int32) or
    ``_reordered`` (all float64), built on disk so a day larger than memory fits."""
    n = len(records)
    dtypes = {
        "X_cat": np.float64,
        "X_int": np.float64 if reordered else np.int32,
        "y": np.float64 if reordered else np.int32,
    }
    shapes = {"X_cat": (n, N_CAT), "X_int": (n, DENSE_COLS.stop - DENSE_COLS.start), "y": (n,)}
    files = {name: work / f"{path.name}.{name}.npy" for name in dtypes}
    arrays = {name: _allocated_memmap(files[name], dtypes[name], shapes[name]) for name in dtypes}
    first = 0
    for rows in records.chunks(0, n):
        last = first + len(rows)
        arrays["X_cat"][first:last] = rows[:, CAT_COLS]
        arrays["X_int"][first:last] = rows[:, DENSE_COLS]
        arrays["y"][first:last] = rows[:, LABEL_COL]
        first = last
    for array in arrays.values():
        array.flush()
    del arrays
    save_npz_from_npy_files(path, files)
    for file in files.values():
        file.unlink()


def output_summary(manifest: dict[str, Any]) -> str:
    """One line for people: lines read and kept, seconds, lines/s (of the lines read in the
    run that finished the folder: a resumed run reads only the days left)."""
    lines = sum(day["lines"] for day in manifest["days"].values())
    kept = sum(day["kept"] for day in manifest["days"].values())
    seconds = manifest.get("seconds") or math.nan
    this_run = manifest.get("lines_read_this_run", lines)
    head = f"{lines:,} lines read, {kept:,} kept"
    if this_run == lines:
        return f"{head}, in {seconds:.1f} s ({lines / seconds:,.0f} lines/s)"
    if this_run == 0:
        return f"{head} (all by an earlier, interrupted run); this run merged them in {seconds:.1f} s"
    return (
        f"{head}; this run read the {this_run:,} lines an earlier, interrupted run had left, "
        f"in {seconds:.1f} s ({this_run / seconds:,.0f} lines/s)"
    )
