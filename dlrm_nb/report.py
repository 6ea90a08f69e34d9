"""Reports: tables and plots of a run folder, the HTML report, and the index across runs.

Everything here reads the files a run wrote (``run.json``, ``data.json``, ``model.json``,
``<Scenario>/<mode>/metrics.json``, ``sut_latencies_ns.npy``, ``qps_search/qps_search.json``),
never notebook outputs. Tables and plots are small objects that show themselves in a notebook
(``_repr_html_`` / ``_repr_png_``) and render into the index page (``to_html``).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from .criteo import ACCURACY_TARGETS, REFERENCE_AUC
from .fileio import atomic_output
from .harness import MODES, SCENARIOS, SUT_LATENCIES_NAME
from .params import PIPELINE_PARAMETERS
from .runs import (
    DATA_RECORD,
    INDEX_NAME,
    MODEL_RECORD,
    QPS_SEARCH_DIR,
    QPS_SEARCH_RECORD,
    REPORT_NAME,
    RUN_RECORD,
    THROUGHPUT_RECORD,
    list_runs,
    open_run_dir,
    read_optional,
)

PERCENTILES = ("p50", "p90", "p99", "p99.9")
COLORS = MappingProxyType(
    {"SingleStream": "#1f77b4", "MultiStream": "#9467bd", "Server": "#d62728", "Offline": "#2ca02c"}
)
DPI = 100

# ----------------------------------------------------------------------------- reading a run


@dataclass
class RunResults:
    """Everything one run folder holds, read from its files (missing parts are None / empty)."""

    path: Path
    run: dict[str, Any] | None
    data: dict[str, Any] | None
    model: dict[str, Any] | None
    throughput: dict[str, Any] | None
    metrics: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # scenario -> mode -> metrics
    latencies_ns: dict[str, np.ndarray] = field(default_factory=dict)  # scenario -> int64 [S] (performance)
    qps_search: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def accuracy(self) -> dict[str, Any] | None:
        """The accuracy-mode metrics (the first scenario that has them)."""
        for modes in self.metrics.values():
            if "accuracy" in modes and "accuracy" in modes["accuracy"]:
                return modes["accuracy"]
        return None

    def performance(self, scenario: str) -> dict[str, Any] | None:
        return self.metrics.get(scenario, {}).get("performance")


def load_run(run_dir: str | os.PathLike) -> RunResults:
    """Read a run folder (``""``: the newest under ``results/``)."""
    path = open_run_dir(str(run_dir))
    results = RunResults(
        path=path,
        run=read_optional(path, RUN_RECORD),
        data=read_optional(path, DATA_RECORD),
        model=read_optional(path, MODEL_RECORD),
        throughput=read_optional(path, THROUGHPUT_RECORD),
        qps_search=read_optional(path / QPS_SEARCH_DIR, QPS_SEARCH_RECORD),
    )
    for scenario in SCENARIOS:
        for mode in MODES:
            metrics = read_optional(path / scenario / mode, "metrics.json")
            if metrics is not None:
                results.metrics.setdefault(scenario, {})[mode] = metrics
        latencies = path / scenario / "performance" / SUT_LATENCIES_NAME
        if latencies.is_file():
            results.latencies_ns[scenario] = np.load(latencies)
    return results


# ----------------------------------------------------------------------------- displayable pieces


@dataclass
class Table:
    """A small HTML table: shows itself in a notebook and renders into a page."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    caption: str = ""

    def to_html(self) -> str:
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{_cell(value)}</td>" for value in row) + "</tr>" for row in self.rows
        )
        caption = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return f'<table class="dlrm-nb">{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'

    def _repr_html_(self) -> str:
        return self.to_html()


def _cell(value: Any) -> str:
    if isinstance(value, Markup):
        return value.text
    return html.escape(format_value(value))


@dataclass(frozen=True)
class Markup:
    """HTML shown as is: in a table cell (links, badges) or on its own in a notebook."""

    text: str

    def _repr_html_(self) -> str:
        return self.text


def format_value(value: Any) -> str:
    """Numbers for people: thousands separators, 3 significant decimals, ``—`` for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0 or abs(value) >= 100:
            return f"{value:,.0f}" if abs(value) >= 100 else "0"
        return f"{value:,.3g}" if abs(value) >= 0.01 else f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    return str(value)


@dataclass
class Plot:
    """A matplotlib figure that shows itself as PNG in a notebook and embeds into a page."""

    figure: Figure

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
        return buffer.getvalue()

    def _repr_png_(self) -> bytes:
        return self.png()

    def to_html(self) -> str:
        data = base64.b64encode(self.png()).decode("ascii")
        return f'<img class="dlrm-nb-plot" src="data:image/png;base64,{data}"/>'


@dataclass
class Note:
    """A line of text in a notebook (for 'nothing to show')."""

    text: str

    def _repr_html_(self) -> str:
        return f"<p><em>{html.escape(self.text)}</em></p>"

    def to_html(self) -> str:
        return self._repr_html_()


# ----------------------------------------------------------------------------- tables


def _ms(ns: float | None) -> float | None:
    return None if ns is None else ns / 1e6


def _result_badge(metrics: dict[str, Any]) -> Markup:
    result = metrics.get("result") or ("accuracy run" if metrics.get("mode") == "AccuracyOnly" else "—")
    color = {"VALID": "#1a7f37", "INVALID": "#cf222e"}.get(result, "#57606a")
    return Markup(f'<b style="color:{color}">{html.escape(result)}</b>')


def scenario_table(results: RunResults) -> Table:
    """Per scenario and mode: validity, samples/s, pairs/s, p50/p90/p99/p99.9 latency (ms), queries."""
    rows = []
    for scenario, modes in results.metrics.items():
        for mode, m in modes.items():
            latency = m.get("latency_ns") or {}
            rows.append(
                [
                    scenario,
                    mode,
                    _result_badge(m),
                    m.get("samples_per_s"),
                    m.get("pairs_per_s"),
                    *[_ms(latency.get(p)) for p in PERCENTILES],
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


def accuracy_table(results: RunResults) -> Table | Note:
    """AUC of the accuracy run against MLPerf's 99% and 99.9% targets, with the direct score."""
    metrics = results.accuracy
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
    score = (results.model or {}).get("score") or {}
    if score.get("auc") is not None:
        rows.append(
            [
                f"AUC scored directly, first {score['pairs']:,} pairs (no LoadGen)",
                f"{100 * score['auc']:.3f}%",
            ]
        )
    oracle = ((results.data or {}).get("synthetic") or {}).get("oracle_auc", {}).get("test")
    if oracle is not None:
        rows.append(["oracle AUC of the synthetic data (planted signal, test half)", f"{100 * oracle:.3f}%"])
    return Table(
        ["", "value"], rows, f"Accuracy ({metrics.get('scenario')}, reference AUC {100 * REFERENCE_AUC}%)"
    )


def data_table(results_or_record: RunResults | dict[str, Any]) -> Table | Note:
    """The prepared data: source, folder, test pairs, positive rate, lines read and kept."""
    data = results_or_record.data if isinstance(results_or_record, RunResults) else results_or_record
    if not data:
        return Note("No data.json in this folder (run 01_prepare_data).")
    manifest = data.get("manifest") or {}
    rows = [
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


def model_table(results_or_record: RunResults | dict[str, Any]) -> Table | Note:
    """The model: checkpoint, layers, size, precision, device, aggregation, training, quick AUC."""
    model = results_or_record.model if isinstance(results_or_record, RunResults) else results_or_record
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


def system_table(results: RunResults) -> Table | Note:
    """Machine and versions from ``run.json`` (pipeline runs)."""
    run = results.run
    if not run:
        return Note("No run.json (this folder was not made by `dlrm-nb run`).")
    machine, versions, git = run["machine"], run["versions"], run["git"]
    memory = machine.get("memory_bytes")
    gpus = (
        ", ".join(f"{g['name']} ({g['memory_bytes'] / 2**30:.0f} GiB)" for g in machine.get("gpus", []))
        or "none"
    )
    rows = [
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


def parameters_table(results: RunResults) -> Table | Note:
    """The parameters each notebook ran with (``run.json``)."""
    run = results.run
    if not run:
        return Note("No run.json (this folder was not made by `dlrm-nb run`).")
    rows = [
        [notebook, name, value]
        for notebook, values in run["parameters"].items()
        for name, value in values.items()
        if name not in PIPELINE_PARAMETERS
    ]
    return Table(["notebook", "parameter", "value"], rows, f"Parameters ({run.get('params_file')})")


def title(results: RunResults, text: str = "") -> Markup:
    """The report's heading: ``text`` or the run's name, with its description and status."""
    run = results.run or {}
    heading = html.escape(text or f"DLRM run {results.name}")
    details = [run.get("description"), run.get("started") and f"started {run['started']}"]
    line = " · ".join(html.escape(str(d)) for d in details if d)
    return Markup(f"<h1>{heading}</h1><p>{line}</p>" if line else f"<h1>{heading}</h1>")


def headline(results: RunResults) -> Table:
    """One line per figure that matters most."""
    rows = [["run", results.name]]
    offline = results.performance("Offline")
    if offline:
        rows.append(
            [
                "Offline samples/s (pairs/s)",
                f"{format_value(offline['samples_per_s'])} ({format_value(offline['pairs_per_s'])})",
            ]
        )
    single = results.performance("SingleStream")
    if single:
        rows.append(["SingleStream p90 latency (ms)", _ms(single["latency_ns"].get("p90"))])
    multi = results.performance("MultiStream")
    if multi:
        rows.append(["MultiStream p99 latency per query (ms)", _ms(multi["latency_ns"].get("p99"))])
    search = results.qps_search
    if search:
        best = search["best_qps"]
        rows.append(
            [
                f"highest valid Server QPS (p99 ≤ {search['latency_ms']:g} ms)",
                "none found" if best is None else f"{best:,.1f}",
            ]
        )
    accuracy = results.accuracy
    if accuracy:
        acc = accuracy["accuracy"]
        passed = [name for name, t in acc["targets"].items() if t["passed"]]
        rows.append(["AUC", f"{100 * acc['auc']:.3f}% (passes: {', '.join(passed) or 'none'})"])
    return Table(["", ""], rows, "Headline")


# ----------------------------------------------------------------------------- plots


def latency_figure(results: RunResults) -> Plot | Note:
    """Per scenario: CDF and histogram of per-sample latency (SUT view), LoadGen's percentiles marked."""
    scenarios = [s for s in SCENARIOS if s in results.latencies_ns and len(results.latencies_ns[s])]
    if not scenarios:
        return Note("No performance runs with latencies in this folder (run 03_run_scenarios).")
    figure = Figure(figsize=(11, 2.8 * len(scenarios)), layout="constrained")
    axes = figure.subplots(len(scenarios), 2, squeeze=False)
    for (cdf, hist), scenario in zip(axes, scenarios, strict=True):
        ms = np.sort(results.latencies_ns[scenario]) / 1e6
        color = COLORS[scenario]
        cdf.plot(ms, np.arange(1, len(ms) + 1) / len(ms), color=color, lw=1.6, label="per sample (SUT)")
        metrics = results.performance(scenario) or {}
        marks = metrics.get("latency_ns") or {}
        for p in PERCENTILES:
            if marks.get(p) is not None:
                q = float(p[1:]) / 100
                cdf.plot(marks[p] / 1e6, q, "o", color="black", ms=4)
                cdf.annotate(p, (marks[p] / 1e6, q), textcoords="offset points", xytext=(5, -9), fontsize=8)
        bound = (metrics.get("settings") or {}).get("latency_ms") if scenario == "Server" else None
        for ax in (cdf, hist):
            if bound:
                ax.axvline(bound, color="#cf222e", ls="--", lw=1, label=f"bound {bound:g} ms")
        cdf.set(
            title=f"{scenario}: latency CDF",
            xlabel="latency (ms)",
            ylabel="fraction of samples",
            ylim=(0, 1.02),
        )
        cdf.grid(alpha=0.3)
        cdf.legend(loc="lower right", fontsize=8, title="dots: LoadGen percentiles", title_fontsize=7)
        hist.hist(ms, bins=min(60, max(10, len(ms) // 20)), color=color, alpha=0.8)
        hist.set(
            title=f"{scenario}: latency histogram ({len(ms):,} samples)",
            xlabel="latency (ms)",
            ylabel="samples",
        )
        hist.grid(alpha=0.3)
    return Plot(figure)


def qps_search_figure(results: RunResults) -> Plot | Note:
    """The Server QPS search: each probe's p99 against its QPS, the bound and the valid region."""
    search = results.qps_search
    if not search or not search["probes"]:
        return Note("No Server QPS search in this folder (03_run_scenarios with qps_search: true).")
    figure = Figure(figsize=(8, 4), layout="constrained")
    ax = figure.subplots()
    probes = search["probes"]
    bound = search["latency_ms"]
    qps = np.array([p["qps"] for p in probes])
    p99 = np.array([p["p99_ms"] for p in probes])
    valid = np.array([p["valid"] for p in probes])
    top = max(p99.max(), bound) * 1.15
    ax.axhspan(0, bound, color="#1a7f37", alpha=0.08, label=f"p99 within the {bound:g} ms bound")
    ax.axhline(bound, color="#cf222e", ls="--", lw=1)
    ax.plot(qps, p99, color="#888888", lw=0.8, zorder=1)
    ax.scatter(qps[valid], p99[valid], color="#1a7f37", marker="o", s=40, label="VALID probe", zorder=2)
    ax.scatter(qps[~valid], p99[~valid], color="#cf222e", marker="x", s=40, label="INVALID probe", zorder=2)
    for i, (x, y) in enumerate(zip(qps, p99, strict=True)):
        ax.annotate(str(i + 1), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if search["best_qps"] is not None:
        ax.axvline(search["best_qps"], color="#1a7f37", lw=1, label=f"best {search['best_qps']:,.1f} QPS")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(ScalarFormatter())
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set(
        xlabel="Server target QPS (aggregated samples/s)",
        ylabel="p99 latency (ms)",
        ylim=(0, top),
        title=f"Server QPS search ({len(probes)} probes in {search['seconds']:.0f} s; numbers: probe order)",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left")
    return Plot(figure)


def accuracy_figure(results: RunResults) -> Plot | Note:
    """ROC curve of the accuracy run, and its AUC against the 99% / 99.9% target lines."""
    metrics = results.accuracy
    if metrics is None:
        return Note("No accuracy run in this folder (run 04_accuracy).")
    acc = metrics["accuracy"]
    figure = Figure(figsize=(11, 4), layout="constrained")
    roc, bars = figure.subplots(1, 2, width_ratios=(1, 1.2))
    roc.plot(
        acc["roc"]["fpr"], acc["roc"]["tpr"], color="#1f77b4", lw=1.8, label=f"AUC {100 * acc['auc']:.3f}%"
    )
    roc.plot([0, 1], [0, 1], color="#999999", ls=":", lw=1, label="chance")
    roc.set(
        xlabel="false positive rate", ylabel="true positive rate", title="ROC curve", xlim=(0, 1), ylim=(0, 1)
    )
    roc.set_aspect("equal")
    roc.grid(alpha=0.3)
    roc.legend(loc="lower right", fontsize=8)
    names, values = ["LoadGen accuracy run"], [100 * acc["auc"]]
    score = (results.model or {}).get("score") or {}
    if score.get("auc") is not None:
        names.append("direct score (no LoadGen)")
        values.append(100 * score["auc"])
    oracle = ((results.data or {}).get("synthetic") or {}).get("oracle_auc", {}).get("test")
    if oracle is not None:
        names.append("oracle (planted signal)")
        values.append(100 * oracle)
    bars.barh(names, values, color=["#1f77b4", "#8fb8de", "#cccccc"][: len(names)])
    for i, value in enumerate(values):
        bars.annotate(f"{value:.3f}%", (value, i), textcoords="offset points", xytext=(3, -3), fontsize=8)
    styles = {"99%": ("#d29922", "--"), "99.9%": ("#cf222e", "-.")}
    for name, fraction in ACCURACY_TARGETS.items():
        color, ls = styles.get(name, ("black", ":"))
        bars.axvline(
            100 * fraction * REFERENCE_AUC, color=color, ls=ls, lw=1.2, label=f"MLPerf {name} target"
        )
    bars.axvline(100 * REFERENCE_AUC, color="black", lw=0.8, label=f"reference {100 * REFERENCE_AUC}%")
    low = min([*values, 100 * min(ACCURACY_TARGETS.values()) * REFERENCE_AUC]) - 2
    bars.set(
        xlim=(max(50, low), 100 * REFERENCE_AUC + 3), xlabel="AUC (%)", title="AUC against the MLPerf targets"
    )
    bars.legend(fontsize=8, loc="lower right")
    bars.grid(alpha=0.3, axis="x")
    return Plot(figure)


def throughput_figure(results_or_record: RunResults | dict[str, Any]) -> Plot | Note:
    """Model-only pairs/s against batch size, one line per precision (and LoadGen Offline, dashed)."""
    results = results_or_record if isinstance(results_or_record, RunResults) else None
    record = results.throughput if results else results_or_record
    if not record or not record.get("rows"):
        return Note("No model-only throughput measured (02_load_model with throughput_seconds > 0).")
    figure = Figure(figsize=(8, 4), layout="constrained")
    ax = figure.subplots()
    for precision in dict.fromkeys(row["precision"] for row in record["rows"]):
        rows = [r for r in record["rows"] if r["precision"] == precision]
        ax.plot([r["batch_size"] for r in rows], [r["pairs_per_s"] for r in rows], "o-", label=precision)
    offline = results.performance("Offline") if results else None
    if offline and offline.get("pairs_per_s"):
        ax.axhline(
            offline["pairs_per_s"],
            color="#2ca02c",
            ls="--",
            lw=1,
            label=f"LoadGen Offline ({offline.get('precision', '')})",
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set(
        xlabel="batch size (pairs per forward)",
        ylabel="pairs/s",
        title=f"Model-only throughput on {record['device']}",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return Plot(figure)


# ----------------------------------------------------------------------------- HTML


def render_report(executed_notebook: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """HTML of an executed report notebook, code hidden, written atomically (default:
    ``report.html`` beside the notebook)."""
    import nbformat
    from nbconvert import HTMLExporter

    executed_notebook = Path(executed_notebook)
    out = Path(out) if out else executed_notebook.parent / REPORT_NAME
    notebook = nbformat.read(executed_notebook, as_version=4)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(notebook)
    with atomic_output(out) as tmp:
        Path(tmp).write_text(body, encoding="utf-8")
    return out


def index_rows(runs: Iterable[RunResults]) -> Table:
    """One row per run: the figures that matter, side by side."""
    rows = []
    for r in runs:
        offline, single = r.performance("Offline"), r.performance("SingleStream")
        multi, server = r.performance("MultiStream"), r.performance("Server")
        accuracy = r.accuracy
        link = f'<a href="{html.escape(r.name)}/{REPORT_NAME}">{html.escape(r.name)}</a>'
        run = r.run or {}
        rows.append(
            [
                Markup(link) if (r.path / REPORT_NAME).exists() else r.name,
                run.get("status"),
                Path(run.get("params_file") or "").name or None,
                f"{(r.model or {}).get('precision', '—')} / {(r.model or {}).get('device', '—')}",
                offline and offline.get("samples_per_s"),
                offline and offline.get("pairs_per_s"),
                single and _ms(single["latency_ns"]["p90"]),
                multi and _ms(multi["latency_ns"]["p99"]),
                server and f"{server.get('result')} @ {format_value(server['settings'].get('target_qps'))}",
                r.qps_search and r.qps_search.get("best_qps"),
                accuracy and f"{100 * accuracy['accuracy']['auc']:.3f}%",
                ((run.get("git") or {}).get("commit") or "")[:10] or None,
            ]
        )
    columns = [
        "run",
        "status",
        "params",
        "precision / device",
        "Offline samples/s",
        "Offline pairs/s",
        "SingleStream p90 ms",
        "MultiStream p99 ms",
        "Server (QPS)",
        "best Server QPS",
        "AUC",
        "commit",
    ]
    return Table(columns, rows, "Runs side by side")


def differing_parameters(runs: Sequence[RunResults]) -> Table:
    """Parameters whose values differ between the runs (from their ``run.json``)."""
    flat = [_flat_parameters(r) for r in runs]
    keys = sorted({key for f in flat for key in f})
    rows = [
        [key, *[f.get(key) for f in flat]] for key in keys if len({json.dumps(f.get(key)) for f in flat}) > 1
    ]
    return Table(["parameter", *[r.name for r in runs]], rows, "Parameters that differ between runs")


def _flat_parameters(run: RunResults) -> dict[str, Any]:
    parameters = (run.run or {}).get("parameters", {})
    return {
        f"{notebook}.{name}": value
        for notebook, values in parameters.items()
        for name, value in values.items()
        if name not in PIPELINE_PARAMETERS
    }


def comparison_figure(runs: Sequence[RunResults]) -> Plot | Note:
    """Offline samples/s and AUC of every run, as bars."""
    named = [(r.name, r.performance("Offline"), r.accuracy) for r in runs]
    if not any(offline or accuracy for _, offline, accuracy in named):
        return Note("No run has Offline or accuracy results yet.")
    figure = Figure(figsize=(11, 0.5 * len(runs) + 1.8), layout="constrained")
    rate_ax, auc_ax = figure.subplots(1, 2, sharey=True)
    names = [name for name, _, _ in named]
    rates = [(offline or {}).get("samples_per_s") or 0 for _, offline, _ in named]
    aucs = [100 * accuracy["accuracy"]["auc"] if accuracy else 0 for _, _, accuracy in named]
    rate_ax.barh(names, rates, color="#2ca02c")
    rate_ax.set(xlabel="Offline samples/s", title="Offline throughput")
    auc_ax.barh(names, aucs, color="#1f77b4")
    for name, fraction in ACCURACY_TARGETS.items():
        auc_ax.axvline(100 * fraction * REFERENCE_AUC, ls="--", lw=1, color="#cf222e", label=f"{name} target")
    auc_ax.set(
        xlabel="AUC (%)", title="Accuracy", xlim=(max(0, min([a for a in aucs if a] or [50]) - 5), 100)
    )
    auc_ax.legend(fontsize=8)
    for ax in (rate_ax, auc_ax):
        ax.grid(alpha=0.3, axis="x")
    return Plot(figure)


PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #1f2328; }
table.dlrm-nb { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
table.dlrm-nb caption { text-align: left; font-weight: 600; padding: 0.3em 0; }
table.dlrm-nb th, table.dlrm-nb td { border: 1px solid #d0d7de; padding: 0.3em 0.6em; text-align: left; }
table.dlrm-nb th { background: #f6f8fa; }
img.dlrm-nb-plot { max-width: 100%; }
"""


def write_index(root: str | os.PathLike | None = None) -> Path:
    """``results/index.html``: every run side by side, a comparison plot and the parameters that differ."""
    from .runs import results_root

    root = Path(root) if root is not None else results_root()
    runs = [load_run(path) for path in list_runs(root)]
    parts = [
        "<h1>DLRM inference workbook: runs</h1>",
        f"<p>{len(runs)} runs in {html.escape(str(root))}; each name links to its report.</p>",
        index_rows(runs).to_html(),
        comparison_figure(runs).to_html(),
        differing_parameters(runs).to_html() if len(runs) > 1 else "",
    ]
    page = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>DLRM runs</title>'
        f"<style>{PAGE_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )
    out = root / INDEX_NAME
    with atomic_output(out) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return out


# ----------------------------------------------------------------------------- screenshots

#: Headless Chromium flags for a machine without a screen, a GPU or network access.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """The path of a Chromium (Debian's ``chromium`` package) or Chrome binary, if installed."""
    import shutil

    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


def screenshot(
    page: str | os.PathLike,
    png: str | os.PathLike,
    *,
    width: int = 1280,
    height: int = 2400,
    timeout_s: float = 120,
) -> Path:
    """Render ``page`` (an HTML file) in headless Chromium and save the top ``width`` x ``height``
    pixels as ``png``."""
    import subprocess

    from .exceptions import DlrmNbError

    chromium = find_chromium()
    if chromium is None:
        raise DlrmNbError(
            f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)}): apt-get install chromium"
        )
    png = Path(png).resolve()
    tmp = png.with_name(f".{png.stem}.partial-{os.getpid()}.png")  # Chromium picks the format by suffix
    try:
        done = subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--window-size={width},{height}",
                f"--screenshot={tmp}",
                Path(page).resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if done.returncode != 0 or not tmp.exists():
            raise DlrmNbError(f"Chromium could not render {page}: {done.stderr.strip()[-500:]}")
        os.replace(tmp, png)
    finally:
        tmp.unlink(missing_ok=True)
    return png
