"""What each notebook does, one function per step, so the notebooks stay a few lines long.

Every function takes the notebook's checked parameters (:mod:`dlrm_nb.workbook.params`), works in the
run folder (:mod:`dlrm_nb.workbook.runs`) and returns what the notebook shows; everything it makes is
also written to the run folder, which is where the next notebook and the report read it from.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from dlrm_nb.data.criteo import DATASETS
from dlrm_nb.data.dataset import open_split, read_counts
from dlrm_nb.data.manifest import MANIFEST_NAME
from dlrm_nb.exceptions import DlrmNbError, OutputExistsError
from dlrm_nb.loadgen.benchmark import Benchmark, open_benchmark
from dlrm_nb.loadgen.qps_search import run_qps_search
from dlrm_nb.loadgen.runner import metrics_line
from dlrm_nb.loadgen.settings import LoadgenSettings, requested_instances
from dlrm_nb.locks import folder_lock
from dlrm_nb.model.auto import AUTO, AutoChoice
from dlrm_nb.model.checkpoint import check_pair
from dlrm_nb.model.dlrm import DLRM
from dlrm_nb.model.settings import PredictorSettings
from dlrm_nb.progress import progress_bar
from dlrm_nb.workbook.params import (
    AccuracyParameters,
    LoadModelParameters,
    PrepareDataParameters,
    RunScenariosParameters,
    check_free_space,
    prepare_data_bytes,
)
from dlrm_nb.workbook.runs import (
    DATA_RECORD,
    METRICS_NAME,
    MODEL_RECORD,
    QPS_SEARCH_DIR,
    THROUGHPUT_RECORD,
    TRACE_NAME,
    open_run_dir,
    read_optional,
    read_record,
    write_record,
)

DEMO_CHECKPOINT = "demo_model.pt"

# ----------------------------------------------------------------------------- 01 prepare data


def prepare_data(params: PrepareDataParameters) -> Path:
    """Make (or adopt) the prepared data of the run, write ``data.json`` and return the run folder.

    ``synthetic``: raw day files with a planted signal into ``<run>/raw``, then prepared;
    ``raw``: the raw files in ``raw_dir`` prepared; ``prepared``: an existing prepared folder.
    Prepared output goes to ``prepared_dir`` (default ``<run>/prepared``); preparing is resumable.
    The prepared folder is locked while this writes it (one writer per folder).
    """
    run = open_run_dir(params.run_dir, create=True)
    record: dict[str, Any] = {"run_dir": str(run), "source": params.data_source, "dataset": params.dataset}
    if params.data_source == "prepared":
        prepared = Path(params.prepared_dir).resolve()
    else:
        prepared = Path(params.prepared_dir).resolve() if params.prepared_dir else run / "prepared"
        with folder_lock(prepared, f"01_prepare_data (run folder {run})"):
            raw = (
                _synthesize(params, run / "raw", record)
                if params.data_source == "synthetic"
                else Path(params.raw_dir).resolve()
            )
            _prepare(params, raw, prepared)
        record["raw_dir"] = str(raw)
    record.update(_describe_prepared(prepared, params))
    write_record(run, DATA_RECORD, record)
    return run


def _synthesize(params: PrepareDataParameters, raw: Path, record: dict[str, Any]) -> Path:
    from dlrm_nb.data.synthetic import SIDECAR_NAME, generate

    arguments: dict[str, Any] = {
        "dataset": params.dataset,
        "days": params.synthetic_days or DATASETS[params.dataset].days,
        "rows_per_day": params.synthetic_rows_per_day,
        "test_day_rows": params.synthetic_test_day_rows if params.dataset == "terabyte" else None,
        "seed": params.synthetic_seed,
        "gzip": params.synthetic_gzip,
    }
    sidecar = read_optional(raw, SIDECAR_NAME)
    if sidecar is not None:  # made by an earlier run of this notebook on this folder
        made = {key: sidecar["arguments"].get(key) for key in arguments}
        if made != arguments:
            raise DlrmNbError(
                f"{raw} already holds synthetic data made with {made}, not {arguments}; use a new run folder"
            )
    else:
        check_free_space(raw, prepare_data_bytes(params), "01_prepare_data (synthetic data, prepared)")
        try:
            sidecar = generate(raw, progress=params.progress, **arguments)
        except OutputExistsError:  # the sidecar comes last: an interrupted generation
            raise OutputExistsError(
                f"{raw} holds raw files but no {SIDECAR_NAME} (an interrupted generation, or files of "
                f"yours): delete {raw} to make them again, or use a new run folder"
            ) from None
    record["synthetic"] = {"arguments": arguments, "oracle_auc": sidecar["oracle_auc"], "ctr": sidecar["ctr"]}
    return raw


def _prepare(params: PrepareDataParameters, raw: Path, prepared: Path) -> None:
    from dlrm_nb.data.preprocess import PrepareSettings, prepare

    settings = PrepareSettings(
        max_ind_range=params.max_ind_range,
        sub_sample_rate=params.sub_sample_rate,
        dataset=params.dataset,
        days=(params.synthetic_days or None) if params.data_source == "synthetic" else None,
        write_train=params.write_train,
        skip_malformed=params.skip_malformed,
    )
    prepare(
        raw,
        prepared,
        settings,
        engine=params.engine,
        scheduler=params.dask_scheduler or None,
        workers=params.dask_workers,
        progress=params.progress,
    )


def _describe_prepared(prepared: Path, params: PrepareDataParameters) -> dict[str, Any]:
    """Where the prepared data is, its splits' sizes, its settings (from the manifest if any)."""
    if not prepared.is_dir():
        raise DlrmNbError(f"prepared folder {prepared} does not exist")
    test = open_split(prepared, "test")
    manifest = read_optional(prepared, MANIFEST_NAME)
    settings = manifest["settings"] if manifest else {}
    return {
        "prepared_dir": str(prepared),
        "test_pairs": len(test),
        "test_positive_rate": float(test.labels().mean()),
        "counts": [int(c) for c in read_counts(prepared)],
        "max_ind_range": settings.get("max_ind_range", params.max_ind_range),
        "sub_sample_rate": settings.get("sub_sample_rate", params.sub_sample_rate),
        "manifest": None if manifest is None else _manifest_summary(manifest),
    }


def _manifest_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    days = manifest.get("days", {}).values()
    return {
        "settings": manifest.get("settings"),
        "lines_read": sum(day["lines"] for day in days),
        "lines_kept": sum(day["kept"] for day in days),
        "malformed_lines_skipped": manifest.get("malformed_lines_skipped", 0),
        "seconds": manifest.get("seconds"),
    }


# ----------------------------------------------------------------------------- 02 load model


def load_model(params: LoadModelParameters) -> Path:
    """Train the demo model (``checkpoint == ""``) or take the given checkpoint; check that it
    fits the run's data, score the first ``score_pairs`` test pairs without LoadGen, and write
    ``model.json`` (what 03 and 04 load); return the run folder."""
    from dlrm_nb.model.checkpoint import load_checkpoint

    run = open_run_dir(params.run_dir)
    data = read_record(run, DATA_RECORD, made_by="01_prepare_data")
    record: dict[str, Any] = {"training": None}
    if params.checkpoint:
        checkpoint = Path(params.checkpoint).expanduser().resolve()
    else:
        checkpoint = run / DEMO_CHECKPOINT
        record["training"] = _train_demo(params, Path(data["prepared_dir"]), checkpoint, run)
    model, _ = load_checkpoint(checkpoint)
    check_pair(model.arch.table_sizes, read_counts(data["prepared_dir"]), data["prepared_dir"])
    table_cache = _make_table_cache(params, checkpoint, model)
    auto = _choose_precision(params, checkpoint, data) if params.precision == AUTO else None
    precision = auto.chosen if auto else params.precision
    record.update(
        checkpoint=str(checkpoint),
        arch=params.arch if not params.checkpoint else "from checkpoint",
        layers={"bottom": list(model.arch.bottom), "top": list(model.arch.top)},
        embedding_dim=model.arch.embedding_dim,
        table_rows=int(sum(model.arch.table_sizes)),
        parameters=int(sum(t.numel() for t in model.state_dict().values())),
        mflop_per_pair=round(model.arch.flops_per_pair / 1e6, 3),
        precision=precision,
        table_precision=params.table_precision,
        table_cache=table_cache,
        precision_auto=auto.record() if auto else None,
        device=params.device,
        compile=params.compile,
        aggregation=params.aggregation,
        aggregation_size=params.aggregation_size,
        max_pairs_in_split=params.max_pairs_in_split or None,
        max_pairs=params.max_pairs,
        score=_score(params, precision, checkpoint, data, auto),
    )
    write_record(run, MODEL_RECORD, record)
    return run


def _train_demo(params: LoadModelParameters, prepared: Path, checkpoint: Path, run: Path) -> dict[str, Any]:
    from dlrm_nb.model.train import TrainSettings, train_demo

    settings = TrainSettings(
        arch=params.arch,
        seed=params.train_seed,
        epochs=params.train_epochs,
        batch_size=params.train_batch_size,
        max_minutes=params.train_max_minutes,
    )
    if checkpoint.exists():  # this notebook ran before on this run folder: keep its model if it fits
        training = (read_optional(run, MODEL_RECORD) or {}).get("training") or {}
        if training.get("settings") != settings.__dict__:
            raise DlrmNbError(
                f"{checkpoint} was trained with {training.get('settings')}, not {settings.__dict__}; "
                "use a new run folder (or give it as checkpoint to use it as it is)"
            )
        return training
    return train_demo(prepared, checkpoint, settings, progress=params.progress)


def _predictor_settings(params: LoadModelParameters, precision: str = "fp32") -> PredictorSettings:
    return PredictorSettings(
        precision=precision,
        table_precision=params.table_precision,
        device=params.device,
        compile=params.compile,
        table_cache=params.table_cache,
        table_cache_dir=params.table_cache_dir,
    )


def _make_table_cache(params: LoadModelParameters, checkpoint: Path, model: DLRM) -> dict[str, Any]:
    """The converted-model cache's entry for this table precision, made now when the settings ask
    for it (with progress), so later loads (auto's candidates, every LoadGen process) map it."""
    from dlrm_nb.model.inference import tables_for

    record: dict[str, Any] = {"mode": params.table_cache, "dir": params.table_cache_dir, "entry": None}
    cached = tables_for(checkpoint, model, _predictor_settings(params), progress=params.progress)
    if cached is not None:
        record.update(entry=str(cached.folder), reused=cached.reused, seconds=round(cached.seconds, 2))
    return record


def _choose_precision(params: LoadModelParameters, checkpoint: Path, data: dict[str, Any]) -> AutoChoice:
    """``precision: auto``: each candidate timed at ``max_pairs`` and scored on ``score_pairs``."""
    from dlrm_nb.model.auto import AUTO_PAIRS, choose_precision

    return choose_precision(
        checkpoint,
        open_split(data["prepared_dir"], "test"),
        _predictor_settings(params),
        pairs=params.score_pairs or AUTO_PAIRS,
        batch_size=params.max_pairs,
    )


def _score(
    params: LoadModelParameters,
    precision: str,
    checkpoint: Path,
    data: dict[str, Any],
    auto: AutoChoice | None,
) -> dict[str, Any] | None:
    """AUC of the first ``score_pairs`` test pairs straight from the model (no LoadGen); with
    ``precision: auto`` the chosen candidate has scored exactly those pairs already."""
    if not params.score_pairs:
        return None
    oracle = (data.get("synthetic") or {}).get("oracle_auc", {}).get("test")
    if auto is not None:
        chosen = next(c for c in auto.candidates if c.precision == auto.chosen)
        return {"pairs": auto.pairs, "auc": chosen.auc, "oracle_auc": oracle}
    from dlrm_nb.model.inference import load_predictor, score_split

    split = open_split(data["prepared_dir"], "test")
    count = min(params.score_pairs, len(split))
    predictor = load_predictor(checkpoint, _predictor_settings(params, precision), progress=params.progress)
    score = score_split(predictor, split, count=count, progress=params.progress)
    return {"pairs": count, "auc": score.auc, "oracle_auc": oracle}


def measure_model_throughput(params: LoadModelParameters) -> Path:
    """Model-only pairs/s for each precision in ``throughput_precisions`` and batch size in
    ``throughput_batch_sizes`` (the forward alone, test-split inputs) into ``model_throughput.json``;
    return the run folder."""
    from dlrm_nb.model.inference import forward_rates, load_predictor

    run = open_run_dir(params.run_dir)
    model_record = read_record(run, MODEL_RECORD, made_by="02_load_model (its first cells)")
    data = read_record(run, DATA_RECORD, made_by="01_prepare_data")
    rows = []
    if params.throughput_seconds > 0:
        split = open_split(data["prepared_dir"], "test")
        for precision in params.throughput_precisions:
            settings = replace(
                _predictor_settings(params, precision),
                table_precision=model_record.get("table_precision", "fp32"),
            )
            predictor = load_predictor(model_record["checkpoint"], settings, progress=params.progress)
            rates = forward_rates(predictor, params.throughput_batch_sizes, params.throughput_seconds, split)
            rows += [{"precision": precision, "batch_size": b, "pairs_per_s": r} for b, r in rates.items()]
            del predictor  # one copy of the model on the device at a time
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    record = {
        "device": params.device,
        "compile": params.compile,
        "seconds_per_point": params.throughput_seconds,
        "rows": rows,
    }
    write_record(run, THROUGHPUT_RECORD, record)
    return run


# ----------------------------------------------------------------------------- 03 scenarios, 04 accuracy


def open_run_benchmark(run: Path) -> Benchmark:
    """The model and test split of a run, as ``model.json`` describes them, ready for LoadGen."""
    data = read_record(run, DATA_RECORD, made_by="01_prepare_data")
    model = read_record(run, MODEL_RECORD, made_by="02_load_model")
    return open_benchmark(
        model["checkpoint"],
        data["prepared_dir"],
        precision=model["precision"],
        table_precision=model.get("table_precision", "fp32"),
        table_cache=(model.get("table_cache") or {}).get("mode", "auto"),
        table_cache_dir=(model.get("table_cache") or {}).get("dir", ""),
        device=model["device"],
        compile=model["compile"],
        aggregation=model["aggregation"],
        aggregation_size=model["aggregation_size"],
        max_pairs_in_split=model["max_pairs_in_split"],
        trace_path=run / TRACE_NAME,
    )


def run_scenarios(params: RunScenariosParameters) -> Path:
    """Each scenario of ``params.scenarios`` in performance mode, Offline first (Server starts from its
    rate) and, with ``params.qps_search``, the Server QPS search right before Server, which then runs at
    the best QPS found (unless ``server_target_qps`` is set). Returns the run folder; each run's
    files are in ``<run>/<scenario>/performance/``, the search's in ``<run>/qps_search/``."""
    run = open_run_dir(params.run_dir)
    benchmark = open_run_benchmark(run)
    max_pairs = read_record(run, MODEL_RECORD, made_by="02_load_model")["max_pairs"]
    order = sorted(params.scenarios, key=lambda s: s != "Offline")
    done: dict[str, Any] = {}  # scenario -> metrics, and "qps_search" -> its record
    with progress_bar(params.progress, total=len(order), desc="LoadGen scenarios", unit="run") as bar:
        for scenario in order:
            bar.set_postfix_str(scenario)
            qps = None
            if scenario == "Server":
                if params.qps_search:
                    done["qps_search"] = _search(params, benchmark, run, max_pairs, done.get("Offline"))
                qps = params.server_target_qps or _server_qps(benchmark, done, max_pairs)
            settings = _loadgen_settings(params, scenario, "performance", qps, max_pairs)
            done[scenario] = benchmark.run(settings, run)
            bar.write(metrics_line(done[scenario]))
            bar.update()
    if params.qps_search and "qps_search" not in done:
        done["qps_search"] = _search(params, benchmark, run, max_pairs, done.get("Offline"))
    return run


def _search(
    params: RunScenariosParameters,
    benchmark: Benchmark,
    run: Path,
    max_pairs: int,
    offline: dict[str, Any] | None,
) -> dict[str, Any]:
    return run_qps_search(
        benchmark,
        _loadgen_settings(params, "Server", "performance", 1.0, max_pairs),
        run / QPS_SEARCH_DIR,
        budget_s=params.qps_search_budget_s,
        probe_ms=params.qps_search_probe_ms,
        offline_samples_per_s=offline["samples_per_s"] if offline else None,
        progress=params.progress,
    )


def _server_qps(benchmark: Benchmark, done: dict[str, Any], max_pairs: int) -> float:
    """Where the QPS search says to run Server, else half the Offline rate."""
    found = (done.get("qps_search") or {}).get("server_qps")
    return found or server_qps_guess(benchmark, done.get("Offline"), max_pairs)


def server_qps_guess(benchmark: Benchmark, offline: dict[str, Any] | None, max_pairs: int) -> float:
    """Half the Offline samples/s (measured, or estimated from a warm-up when Offline did not run)."""
    from dlrm_nb.loadgen.timing import warm_up

    rate = offline["samples_per_s"] if offline else None
    if not rate:
        rate = warm_up(
            benchmark.predictor, benchmark.split, benchmark.trace[:, 1] - benchmark.trace[:, 0], max_pairs
        )
    return round(max(rate / 2, 0.1), 2)


def _loadgen_settings(
    params: RunScenariosParameters | AccuracyParameters,
    scenario: str,
    mode: str,
    qps: float | None,
    max_pairs: int,
) -> LoadgenSettings:
    settings = LoadgenSettings(
        scenario=scenario,
        mode=mode,
        target_qps=qps,
        max_pairs=max_pairs,
        performance_sample_count=params.performance_sample_count or None,
    )
    if isinstance(params, AccuracyParameters):
        return settings
    return replace(
        settings,
        latency_ms=params.server_latency_ms,
        min_duration_ms=params.min_duration_ms,
        max_duration_ms=params.max_duration_ms,
        official=params.official,
        instances=requested_instances(params.instances),
    )


def run_accuracy(params: AccuracyParameters) -> Path:
    """LoadGen in accuracy mode over the whole (or capped) test split in ``params.scenario``; AUC
    from its ``mlperf_log_accuracy.json`` with the MLPerf targets and the ROC curve, all in
    ``<run>/<scenario>/accuracy/metrics.json``; return the run folder."""
    run = open_run_dir(params.run_dir)
    benchmark = open_run_benchmark(run)
    model = read_record(run, MODEL_RECORD, made_by="02_load_model")
    qps = None
    if params.scenario == "Server":
        offline = read_optional(run / "Offline" / "performance", METRICS_NAME)
        qps = server_qps_guess(benchmark, offline, model["max_pairs"])
    settings = _loadgen_settings(params, params.scenario, "accuracy", qps, model["max_pairs"])
    benchmark.run(settings, run)
    return run
