"""The tables of a run: headline, scenarios, accuracy, data, model, system, parameters.

Each reads the files a run wrote (see :mod:`dlrm_nb.workbook.runs`), never notebook outputs."""

from __future__ import annotations

import html
from typing import Any

from dlrm_nb.data.criteo import REFERENCE_AUC
from dlrm_nb.workbook.blocks import Markup, Note, Table, format_value
from dlrm_nb.workbook.params import PIPELINE_PARAMETERS
from dlrm_nb.workbook.runs import LoadedRun

PERCENTILES = ("p50", "p90", "p99", "p99.9")
NO_RUN_RECORD = (
    "No run.json: this run was made notebook by notebook, not by dlrm-nb run "
    "(which records the system and the parameters)."
)


def ms_from_ns(ns: float | None) -> float | None:
    return None if ns is None else ns / 1e6


def _result_badge(metrics: dict[str, Any]) -> Markup:
    result = metrics.get("result") or ("accuracy run" if metrics.get("mode") == "AccuracyOnly" else "—")
    color = {"VALID": "#1a7f37", "INVALID": "#cf222e"}.get(result, "#57606a")
    return Markup(f'<b style="color:{color}">{html.escape(result)}</b>')


def scenario_table(run: LoadedRun) -> Table:
    """Per scenario and mode: validity, samples/s, pairs/s, p50/p90/p99/p99.9 latency (ms), queries."""
    rows = []
    for scenario, modes in run.metrics.items():
        for mode, m in modes.items():
            latency = m.get("latency_ns") or {}
            rows.append(
                [
                    scenario,
                    mode,
                    _result_badge(m),
                    m.get("samples_per_s"),
                    m.get("pairs_per_s"),
                    *[ms_from_ns(latency.get(p)) for p in PERCENTILES],
                    m.get("query_count"),
                    (m.get("settings") or {}).get("target_qps"),
                    "; ".join(m.get("invalid_reasons") or []) or "",
                ]
            )
    columns = [
        "scenario",
        "mode",
        "result",
        "samples/s",
        "pairs/s",
        *[f"{p} ms" for p in PERCENTILES],
        "queries",
        "target QPS",
        "why invalid",
    ]
    return Table(columns, rows, "LoadGen runs (samples = aggregated samples; latency per query)")


def accuracy_table(run: LoadedRun) -> Table | Note:
    """AUC of the accuracy run against MLPerf's 99% and 99.9% targets, with the direct score."""
    metrics = run.accuracy
    if metrics is None:
        return Note("No accuracy run in this folder (run 04_accuracy).")
    acc = metrics["accuracy"]
    rows = [
        ["AUC (LoadGen accuracy log, scikit-learn)", f"{100 * acc['auc']:.3f}%"],
        ["accuracy (threshold 0.5)", f"{100 * acc['accuracy']:.3f}%"],
        ["pairs / queries", f"{acc['total']:,} / {acc['queries']:,}"],
    ]
    for name, target in acc["targets"].items():
        verdict = "PASS" if target["passed"] else "FAIL"
        rows.append([f"MLPerf {name} target (≥ {100 * target['threshold']:.4f}%)", verdict])
    score = (run.model or {}).get("score") or {}
    if score.get("auc") is not None:
        rows.append(
            [
                f"AUC scored directly, first {score['pairs']:,} pairs (no LoadGen)",
                f"{100 * score['auc']:.3f}%",
            ]
        )
    oracle = ((run.data or {}).get("synthetic") or {}).get("oracle_auc", {}).get("test")
    if oracle is not None:
        rows.append(["oracle AUC of the synthetic data (planted signal, test half)", f"{100 * oracle:.3f}%"])
    return Table(
        ["", "value"], rows, f"Accuracy ({metrics.get('scenario')}, reference AUC {100 * REFERENCE_AUC}%)"
    )


def data_table(run: LoadedRun) -> Table | Note:
    """The prepared data: source, folder, test pairs, positive rate, lines read and kept."""
    data = run.data
    if not data:
        return Note("No data.json in this folder (run 01_prepare_data).")
    manifest = data.get("manifest") or {}
    rows: list[list[Any]] = [
        ["source", data.get("source")],
        ["dataset", data.get("dataset")],
        ["prepared folder", data.get("prepared_dir")],
        [
            "max_ind_range / sub-sample rate",
            f"{format_value(data.get('max_ind_range'))} / {data.get('sub_sample_rate')}",
        ],
        [
            "lines read / kept (all days)",
            f"{format_value(manifest.get('lines_read'))} / {format_value(manifest.get('lines_kept'))}",
        ],
        ["preparation time (s)", manifest.get("seconds")],
        ["test pairs", data.get("test_pairs")],
        ["positive rate of the test split", data.get("test_positive_rate")],
        ["largest table (distinct ids)", max(data.get("counts") or [0])],
    ]
    synthetic = data.get("synthetic")
    if synthetic:
        rows.append(["oracle AUC of the planted signal (test half)", synthetic["oracle_auc"].get("test")])
    return Table(["", ""], rows, "Data")


def model_table(run: LoadedRun) -> Table | Note:
    """The model: checkpoint, layers, size, precision, device, aggregation, training, quick AUC."""
    model = run.model
    if not model:
        return Note("No model.json in this folder (run 02_load_model).")
    training = model.get("training") or {}
    score = model.get("score") or {}
    rows = [
        ["checkpoint", model["checkpoint"]],
        ["architecture", model.get("arch")],
        ["bottom / top MLP", f"{model['layers']['bottom']} / {model['layers']['top']}"],
        ["embedding dim / table rows", f"{model['embedding_dim']} / {model['table_rows']:,}"],
        ["parameters", model.get("parameters")],
        ["MFLOP per pair", model.get("mflop_per_pair")],
        ["precision / device / compiled", f"{model['precision']} / {model['device']} / {model['compile']}"],
        ["table precision", model.get("table_precision", "fp32")],
        ["converted-model cache", _table_cache(model.get("table_cache") or {})],
        ["aggregation (pairs per sample)", f"{model['aggregation']} ({model['aggregation_size']} if fixed)"],
        ["max pairs per forward", model.get("max_pairs")],
    ]
    if training.get("steps"):
        rows.append(
            [
                "demo training",
                f"{training['steps']:,} steps, {training['seconds']:.0f} s, "
                f"test AUC {100 * training['test_auc']:.3f}%",
            ]
        )
    if score.get("auc") is not None:
        rows.append(
            [f"AUC of the first {score['pairs']:,} test pairs (no LoadGen)", f"{100 * score['auc']:.3f}%"]
        )
    return Table(["", ""], rows, "Model")


def precision_table(run: LoadedRun) -> Table | Note:
    """``precision: auto``: every candidate's pairs/s and AUC, and which one was chosen."""
    auto = (run.model or {}).get("precision_auto")
    if not auto:
        return Note("The precision was given, not chosen (precision: auto measures each candidate).")
    fp32 = next((c for c in auto["candidates"] if c["precision"] == "fp32"), None)
    rows = [
        [
            Markup(f"<b>{c['precision']}</b>") if c["precision"] == auto["chosen"] else c["precision"],
            c["pairs_per_s"],
            fp32 and fp32["pairs_per_s"] and c["pairs_per_s"] / fp32["pairs_per_s"],
            None if c["auc"] is None else f"{100 * c['auc']:.3f}%",
            "pass" if c["passes"] else "fail",
        ]
        for c in auto["candidates"]
    ]
    caption = (
        f"precision auto: {auto['chosen']} chosen, the fastest passing {auto['target']} of fp32's AUC "
        f"({auto['pairs']:,} test pairs scored, timed at batch {auto['batch_size']:,}, "
        f"tables {auto['table_precision']})"
    )
    return Table(["precision", "pairs/s", "x fp32", "AUC", auto["target"]], rows, caption)


def system_table(run: LoadedRun) -> Table | Note:
    """Machine and versions from ``run.json`` (pipeline runs)."""
    record = run.record
    if not record:
        return Note(NO_RUN_RECORD)
    machine, versions, git = record["machine"], record["versions"], record["git"]
    memory = machine.get("memory_bytes")
    gpus = (
        ", ".join(f"{g['name']} ({g['memory_bytes'] / 2**30:.0f} GiB)" for g in machine.get("gpus", []))
        or "none"
    )
    rows: list[list[Any]] = [
        ["CPU", f"{machine['cpu']} ({', '.join(machine.get('cpu_flags', []))})"],
        ["cores (usable / logical)", f"{machine.get('usable_cores')} / {machine.get('logical_cores')}"],
        ["memory", f"{memory / 2**30:.1f} GiB" if memory else None],
        ["GPU", gpus],
        ["OS / host", f"{machine.get('os')} / {machine.get('hostname')}"],
        [
            "git commit",
            f"{git.get('commit') or 'unknown'}{' (with local changes)' if git.get('dirty') else ''}",
        ],
        *[[name, version] for name, version in versions.items()],
    ]
    return Table(["", ""], rows, "System")


def parameters_table(run: LoadedRun) -> Table | Note:
    """The parameters each notebook ran with (``run.json``)."""
    record = run.record
    if not record:
        return Note(NO_RUN_RECORD)
    rows = [
        [notebook, name, value]
        for notebook, values in record["parameters"].items()
        for name, value in values.items()
        if name not in PIPELINE_PARAMETERS
    ]
    return Table(["notebook", "parameter", "value"], rows, f"Parameters ({record.get('params_file')})")


def title(run: LoadedRun, text: str = "") -> Markup:
    """The report's heading: ``text`` or the run's name, with its description and status."""
    record = run.record or {}
    heading = html.escape(text or f"DLRM run {run.name}")
    details = [record.get("description"), record.get("started") and f"started {record['started']}"]
    line = " · ".join(html.escape(str(d)) for d in details if d)
    return Markup(f"<h1>{heading}</h1><p>{line}</p>" if line else f"<h1>{heading}</h1>")


def headline(run: LoadedRun) -> Table:
    """One line per figure that matters most."""
    rows: list[list[Any]] = [["run", run.name]]
    offline = run.performance("Offline")
    if offline:
        rows.append(
            [
                "Offline samples/s (pairs/s)",
                f"{format_value(offline['samples_per_s'])} ({format_value(offline['pairs_per_s'])})",
            ]
        )
    single = run.performance("SingleStream")
    if single:
        rows.append(["SingleStream p90 latency (ms)", ms_from_ns(single["latency_ns"].get("p90"))])
    multi = run.performance("MultiStream")
    if multi:
        rows.append(["MultiStream p99 latency per query (ms)", ms_from_ns(multi["latency_ns"].get("p99"))])
    search = run.qps_search
    if search:
        best = search["best_qps"]
        rows.append(
            [
                f"highest valid Server QPS (p99 ≤ {search['latency_ms']:g} ms)",
                "none found" if best is None else f"{best:,.1f}",
            ]
        )
    accuracy = run.accuracy
    if accuracy:
        acc = accuracy["accuracy"]
        passed = [name for name, t in acc["targets"].items() if t["passed"]]
        rows.append(["AUC", f"{100 * acc['auc']:.3f}% (passes: {', '.join(passed) or 'none'})"])
    return Table(["", ""], rows, "Headline")


def _table_cache(cache: dict[str, Any]) -> str:
    """The cache mode and, when an entry serves the tables, where it lies and whether it was made now."""
    mode = cache.get("mode", "auto")
    if not cache.get("entry"):
        return f"{mode}: not used (tables converted at load)"
    made = "reused" if cache.get("reused") else f"made in {cache.get('seconds', 0):.1f} s"
    return f"{mode}: {cache['entry']} ({made})"
