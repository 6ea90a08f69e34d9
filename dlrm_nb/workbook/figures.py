"""The plots of a run: latency CDFs and histograms, the QPS search, ROC and AUC, model throughput."""

from __future__ import annotations

from types import MappingProxyType

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter, NullLocator, ScalarFormatter

from dlrm_nb.data.criteo import ACCURACY_TARGETS, REFERENCE_AUC
from dlrm_nb.loadgen.settings import SCENARIOS
from dlrm_nb.workbook.blocks import Note, Plot
from dlrm_nb.workbook.runs import LoadedRun
from dlrm_nb.workbook.tables import PERCENTILES

COLORS = MappingProxyType(
    {"SingleStream": "#1f77b4", "MultiStream": "#9467bd", "Server": "#d62728", "Offline": "#2ca02c"}
)


def latency_figure(run: LoadedRun) -> Plot | Note:
    """Per scenario: CDF and histogram of per-sample latency (SUT view), LoadGen's percentiles marked."""
    scenarios = [s for s in SCENARIOS if s in run.latencies_ns and len(run.latencies_ns[s])]
    if not scenarios:
        return Note("No performance runs with latencies in this folder (run 03_run_scenarios).")
    figure = Figure(figsize=(11, 2.8 * len(scenarios)), layout="constrained")
    axes = figure.subplots(len(scenarios), 2, squeeze=False)
    for (cdf, hist), scenario in zip(axes, scenarios, strict=True):
        ms = np.sort(run.latencies_ns[scenario]) / 1e6
        color = COLORS[scenario]
        cdf.plot(ms, np.arange(1, len(ms) + 1) / len(ms), color=color, lw=1.6, label="per sample (SUT)")
        metrics = run.performance(scenario) or {}
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


def qps_search_figure(run: LoadedRun) -> Plot | Note:
    """The Server QPS search: each probe's p99 against its QPS, the bound and the valid region."""
    search = run.qps_search
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


def accuracy_figure(run: LoadedRun) -> Plot | Note:
    """ROC curve of the accuracy run, and its AUC against the 99% / 99.9% target lines."""
    metrics = run.accuracy
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
    score = (run.model or {}).get("score") or {}
    if score.get("auc") is not None:
        names.append("direct score (no LoadGen)")
        values.append(100 * score["auc"])
    oracle = ((run.data or {}).get("synthetic") or {}).get("oracle_auc", {}).get("test")
    if oracle is not None:
        names.append("oracle (planted signal)")
        values.append(100 * oracle)
    bars.barh(names, values, color=["#1f77b4", "#8fb8de", "#cccccc"][: len(names)])
    for i, value in enumerate(values):
        bars.annotate(
            f"{value:.3f}%",
            (value, i),
            textcoords="offset points",
            xytext=(3, -3),
            fontsize=8,
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85},
            zorder=3,
        )
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


def throughput_figure(run: LoadedRun) -> Plot | Note:
    """Model-only pairs/s against batch size, one line per precision (and LoadGen Offline, dashed)."""
    record = run.throughput
    if not record or not record.get("rows"):
        return Note("No model-only throughput measured (02_load_model with throughput_seconds > 0).")
    figure = Figure(figsize=(8, 4), layout="constrained")
    ax = figure.subplots()
    for precision in dict.fromkeys(row["precision"] for row in record["rows"]):
        rows = [r for r in record["rows"] if r["precision"] == precision]
        ax.plot([r["batch_size"] for r in rows], [r["pairs_per_s"] for r in rows], "o-", label=precision)
    offline = run.performance("Offline")
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
    sizes = sorted({row["batch_size"] for row in record["rows"]})
    ax.set_xticks(sizes, [f"{size:,}" for size in sizes])  # the measured batch sizes, as numbers
    ax.xaxis.set_minor_locator(NullLocator())
    plain = FuncFormatter(lambda value, _: f"{value:,.0f}")
    ax.yaxis.set_major_formatter(plain)
    low, high = ax.get_ylim()
    ax.yaxis.set_minor_formatter(plain if high < 20 * low else NullFormatter())  # under a decade or so
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set(
        xlabel="batch size (pairs per forward)",
        ylabel="pairs/s",
        title=f"Model-only throughput on {record['device']}",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return Plot(figure)
