"""What each notebook does, one function per step, so the notebooks stay a few lines long.

Every function takes the notebook's checked parameters (:mod:`dlrm_nb.workbook.params`), works in the
run folder (:mod:`dlrm_nb.workbook.runs`) and returns what the notebook shows; everything it makes is
also written to the run folder, which is where the next notebook and the report read it from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dlrm_nb.data.criteo import DATASETS
from dlrm_nb.data.dataset import open_split, read_counts
from dlrm_nb.data.manifest import MANIFEST_NAME
from dlrm_nb.exceptions import DlrmNbError
from dlrm_nb.loadgen.benchmark import Benchmark, open_benchmark
from dlrm_nb.loadgen.qps_search import run_qps_search
from dlrm_nb.loadgen.runner import metrics_line
from dlrm_nb.loadgen.settings import LoadgenSettings
from dlrm_nb.model.checkpoint import check_pair
from dlrm_nb.progress import progress_bar
from dlrm_nb.workbook.params import (
    AccuracyParameters,
    LoadModelParameters,
    PrepareDataParameters,
    RunScenariosParameters,
)
from dlrm_nb.workbook.runs import (
    DATA_RECORD,
    MODEL_RECORD,
    QPS_SEARCH_DIR,
    THROUGHPUT_RECORD,
    open_run_dir,
    read_optional,
    read_record,
    write_record,
)

DEMO_CHECKPOINT = "demo_model.pt"
TRACE_NAME = "dlrm_trace_of_aggregated_samples.txt"

# ----------------------------------------------------------------------------- 01 prepare data


def prepare_data(p: PrepareDataParameters) -> dict[str, Any]:
    """Make (or adopt) the prepared data of the run and write ``data.json``.

    ``synthetic``: raw day files with a planted signal into ``<run>/raw``, then prepared;
    ``raw``: the raw files in ``raw_dir`` prepared; ``prepared``: an existing prepared folder.
    Prepared output goes to ``prepared_dir`` (default ``<run>/prepared``); preparing is resumable.
    """
    run = open_run_dir(p.run_dir, create=True)
    record: dict[str, Any] = {"run_dir": str(run), "source": p.data_source, "dataset": p.dataset}
    if p.data_source == "prepared":
        prepared = Path(p.prepared_dir).resolve()
    else:
        raw = (
            _synthesize(p, run / "raw", record) if p.data_source == "synthetic" else Path(p.raw_dir).resolve()
        )
        prepared = Path(p.prepared_dir).resolve() if p.prepared_dir else run / "prepared"
        _prepare(p, raw, prepared)
        record["raw_dir"] = str(raw)
    record.update(_describe_prepared(prepared, p))
    write_record(run, DATA_RECORD, record)
    return record


def _synthesize(p: PrepareDataParameters, raw: Path, record: dict[str, Any]) -> Path:
    from dlrm_nb.data.synthetic import SIDECAR_NAME, generate

    arguments = {
        "dataset": p.dataset,
        "days": p.synthetic_days or DATASETS[p.dataset].days,
        "rows_per_day": p.synthetic_rows_per_day,
        "test_day_rows": p.synthetic_test_day_rows if p.dataset == "terabyte" else None,
        "seed": p.synthetic_seed,
        "gzip": p.synthetic_gzip,
    }
    sidecar = read_optional(raw, SIDECAR_NAME)
    if sidecar is not None:  # made by an earlier run of this notebook on this folder
        made = {key: sidecar["arguments"].get(key) for key in arguments}
        if made != arguments:
            raise DlrmNbError(
                f"{raw} already holds synthetic data made with {made}, not {arguments}; use a new run folder"
            )
    else:
        sidecar = generate(raw, progress=p.progress, **arguments)
    record["synthetic"] = {"arguments": arguments, "oracle_auc": sidecar["oracle_auc"], "ctr": sidecar["ctr"]}
    return raw


def _prepare(p: PrepareDataParameters, raw: Path, prepared: Path) -> None:
    from dlrm_nb.data.preprocess import PrepareSettings, prepare

    settings = PrepareSettings(
        max_ind_range=p.max_ind_range,
        sub_sample_rate=p.sub_sample_rate,
        dataset=p.dataset,
        days=(p.synthetic_days or None) if p.data_source == "synthetic" else None,
        write_train=p.write_train,
        skip_malformed=p.skip_malformed,
    )
    prepare(
        raw,
        prepared,
        settings,
        engine=p.engine,
        scheduler=p.dask_scheduler or None,
        workers=p.dask_workers,
        progress=p.progress,
    )


def _describe_prepared(prepared: Path, p: PrepareDataParameters) -> dict[str, Any]:
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
        "max_ind_range": settings.get("max_ind_range", p.max_ind_range),
        "sub_sample_rate": settings.get("sub_sample_rate", p.sub_sample_rate),
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


def load_model(p: LoadModelParameters) -> dict[str, Any]:
    """Train the demo model (``checkpoint == ""``) or take the given checkpoint; check that it
    fits the run's data, score the first ``score_pairs`` test pairs without LoadGen, and write
    ``model.json`` (what 03 and 04 load)."""
    from dlrm_nb.model.checkpoint import load_checkpoint

    run = open_run_dir(p.run_dir)
    data = read_record(run, DATA_RECORD, made_by="01_prepare_data")
    record: dict[str, Any] = {"training": None}
    if p.checkpoint:
        checkpoint = Path(p.checkpoint).expanduser().resolve()
    else:
        checkpoint = run / DEMO_CHECKPOINT
        record["training"] = _train_demo(p, Path(data["prepared_dir"]), checkpoint, run)
    model, _ = load_checkpoint(checkpoint)
    check_pair(model.arch.table_sizes, read_counts(data["prepared_dir"]), data["prepared_dir"])
    record.update(
        checkpoint=str(checkpoint),
        arch=p.arch if not p.checkpoint else "from checkpoint",
        layers={"bottom": list(model.arch.bottom), "top": list(model.arch.top)},
        embedding_dim=model.arch.embedding_dim,
        table_rows=int(sum(model.arch.table_sizes)),
        parameters=int(sum(t.numel() for t in model.state_dict().values())),
        mflop_per_pair=round(model.arch.flops_per_pair / 1e6, 3),
        precision=p.precision,
        device=p.device,
        compile=p.compile,
        aggregation=p.aggregation,
        aggregation_size=p.aggregation_size,
        max_pairs_in_split=p.max_pairs_in_split or None,
        max_pairs=p.max_pairs,
        score=_score(p, model, data),
    )
    write_record(run, MODEL_RECORD, record)
    return record


def _train_demo(p: LoadModelParameters, prepared: Path, checkpoint: Path, run: Path) -> dict[str, Any]:
    from dlrm_nb.model.train import TrainSettings, train_demo

    settings = TrainSettings(
        arch=p.arch,
        seed=p.train_seed,
        epochs=p.train_epochs,
        batch_size=p.train_batch_size,
        max_minutes=p.train_max_minutes,
    )
    if checkpoint.exists():  # this notebook ran before on this run folder: keep its model if it fits
        training = (read_optional(run, MODEL_RECORD) or {}).get("training") or {}
        if training.get("settings") != settings.__dict__:
            raise DlrmNbError(
                f"{checkpoint} was trained with {training.get('settings')}, not {settings.__dict__}; "
                "use a new run folder (or give it as checkpoint to use it as it is)"
            )
        return training
    return train_demo(prepared, checkpoint, settings, progress=p.progress)


def _score(p: LoadModelParameters, model, data: dict[str, Any]) -> dict[str, Any] | None:
    """AUC of the first ``score_pairs`` test pairs straight from the model (no LoadGen)."""
    if not p.score_pairs:
        return None
    from sklearn.metrics import roc_auc_score

    from dlrm_nb.model.inference import Predictor, predict_split

    split = open_split(data["prepared_dir"], "test")
    count = min(p.score_pairs, len(split))
    predictor = Predictor(model, precision=p.precision, device=p.device, compile=p.compile)
    predictions = predict_split(predictor, split, count=count, progress=p.progress)
    labels = split.labels()[:count]
    auc = float(roc_auc_score(labels, predictions)) if 0 < labels.sum() < count else None
    oracle = (data.get("synthetic") or {}).get("oracle_auc", {}).get("test")
    return {"pairs": count, "auc": auc, "oracle_auc": oracle}


def measure_model_throughput(p: LoadModelParameters) -> dict[str, Any]:
    """Model-only pairs/s for each precision in ``throughput_precisions`` and batch size in
    ``throughput_batch_sizes`` (the forward alone, test-split inputs); ``model_throughput.json``."""
    from dlrm_nb.model.checkpoint import load_checkpoint
    from dlrm_nb.model.inference import Predictor, forward_rates

    run = open_run_dir(p.run_dir)
    model_record = read_record(run, MODEL_RECORD, made_by="02_load_model (its first cells)")
    data = read_record(run, DATA_RECORD, made_by="01_prepare_data")
    rows = []
    if p.throughput_seconds > 0:
        split = open_split(data["prepared_dir"], "test")
        for precision in p.throughput_precisions:
            model, _ = load_checkpoint(model_record["checkpoint"])
            predictor = Predictor(model, precision=precision, device=p.device, compile=p.compile)
            rates = forward_rates(predictor, p.throughput_batch_sizes, p.throughput_seconds, split)
            rows += [{"precision": precision, "batch_size": b, "pairs_per_s": r} for b, r in rates.items()]
            del model, predictor  # one copy of the model on the device at a time
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    record = {
        "device": p.device,
        "compile": p.compile,
        "seconds_per_point": p.throughput_seconds,
        "rows": rows,
    }
    write_record(run, THROUGHPUT_RECORD, record)
    return record


# ----------------------------------------------------------------------------- 03 scenarios, 04 accuracy


def open_run_benchmark(run: Path) -> Benchmark:
    """The model and test split of a run, as ``model.json`` describes them, ready for LoadGen."""
    data = read_record(run, DATA_RECORD, made_by="01_prepare_data")
    model = read_record(run, MODEL_RECORD, made_by="02_load_model")
    return open_benchmark(
        model["checkpoint"],
        data["prepared_dir"],
        precision=model["precision"],
        device=model["device"],
        compile=model["compile"],
        aggregation=model["aggregation"],
        aggregation_size=model["aggregation_size"],
        max_pairs_in_split=model["max_pairs_in_split"],
        trace_path=run / TRACE_NAME,
    )


def run_scenarios(p: RunScenariosParameters) -> dict[str, Any]:
    """Each scenario of ``p.scenarios`` in performance mode, Offline first (Server starts from its
    rate) and, with ``p.qps_search``, the Server QPS search right before Server, which then runs at
    the best QPS found (unless ``server_target_qps`` is set). Returns ``{scenario: metrics}`` plus
    ``qps_search`` and ``run_dir``; each run's files are in ``<run>/<scenario>/performance/``."""
    run = open_run_dir(p.run_dir)
    benchmark = open_run_benchmark(run)
    max_pairs = read_record(run, MODEL_RECORD, made_by="02_load_model")["max_pairs"]
    order = sorted(p.scenarios, key=lambda s: s != "Offline")
    results: dict[str, Any] = {"run_dir": str(run)}
    with progress_bar(p.progress, total=len(order), desc="LoadGen scenarios", unit="run") as bar:
        for scenario in order:
            bar.set_postfix_str(scenario)
            qps = None
            if scenario == "Server":
                if p.qps_search:
                    results["qps_search"] = _search(p, benchmark, run, max_pairs, results.get("Offline"))
                qps = p.server_target_qps or _server_qps(benchmark, results, max_pairs)
            settings = _loadgen_settings(p, scenario, "performance", qps, max_pairs)
            results[scenario] = benchmark.run(settings, run)
            bar.write(metrics_line(results[scenario]))
            bar.update()
    if p.qps_search and "qps_search" not in results:
        results["qps_search"] = _search(p, benchmark, run, max_pairs, results.get("Offline"))
    return results


def _search(
    p: RunScenariosParameters, benchmark: Benchmark, run: Path, max_pairs: int, offline: dict[str, Any] | None
) -> dict[str, Any]:
    return run_qps_search(
        benchmark,
        _loadgen_settings(p, "Server", "performance", 1.0, max_pairs),
        run / QPS_SEARCH_DIR,
        budget_s=p.qps_search_budget_s,
        probe_ms=p.qps_search_probe_ms,
        offline_samples_per_s=offline["samples_per_s"] if offline else None,
        progress=p.progress,
    )


def _server_qps(benchmark: Benchmark, results: dict[str, Any], max_pairs: int) -> float:
    """Where the QPS search says to run Server, else half the Offline rate."""
    found = (results.get("qps_search") or {}).get("server_qps")
    return found or server_qps_guess(benchmark, results.get("Offline"), max_pairs)


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
    p: RunScenariosParameters | AccuracyParameters,
    scenario: str,
    mode: str,
    qps: float | None,
    max_pairs: int,
) -> LoadgenSettings:
    common = {
        "scenario": scenario,
        "mode": mode,
        "target_qps": qps,
        "max_pairs": max_pairs,
        "performance_sample_count": p.performance_sample_count or None,
    }
    if isinstance(p, AccuracyParameters):
        return LoadgenSettings(**common)
    return LoadgenSettings(
        **common,
        latency_ms=p.server_latency_ms,
        min_duration_ms=p.min_duration_ms,
        max_duration_ms=p.max_duration_ms,
        official=p.official,
    )


def run_accuracy(p: AccuracyParameters) -> dict[str, Any]:
    """LoadGen in accuracy mode over the whole (or capped) test split in ``p.scenario``; AUC
    from its ``mlperf_log_accuracy.json`` with the MLPerf targets and the ROC curve; the metrics
    also land in ``<run>/<scenario>/accuracy/metrics.json``."""
    run = open_run_dir(p.run_dir)
    benchmark = open_run_benchmark(run)
    model = read_record(run, MODEL_RECORD, made_by="02_load_model")
    qps = None
    if p.scenario == "Server":
        offline = read_optional(run / "Offline" / "performance", "metrics.json")
        qps = server_qps_guess(benchmark, offline, model["max_pairs"])
    settings = _loadgen_settings(p, p.scenario, "accuracy", qps, model["max_pairs"])
    metrics = benchmark.run(settings, run)
    return {**metrics, "run_dir": str(run)}
