"""The index page across runs: one row per run, a comparison plot, the parameters that differ."""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from dlrm_nb.data.criteo import ACCURACY_TARGETS, REFERENCE_AUC
from dlrm_nb.fileio import atomic_output
from dlrm_nb.workbook.blocks import Markup, Note, Plot, Table, format_value
from dlrm_nb.workbook.params import PIPELINE_PARAMETERS
from dlrm_nb.workbook.runs import (
    INDEX_NAME,
    REPORT_NAME,
    LoadedRun,
    list_runs,
    load_run,
)
from dlrm_nb.workbook.tables import ms_from_ns


def index_rows(runs: Iterable[LoadedRun]) -> Table:
    """One row per run: the figures that matter, side by side."""
    rows = []
    for run in runs:
        offline, single = run.performance("Offline"), run.performance("SingleStream")
        multi, server = run.performance("MultiStream"), run.performance("Server")
        accuracy = run.accuracy
        link = f'<a href="{html.escape(run.name)}/{REPORT_NAME}">{html.escape(run.name)}</a>'
        record = run.record or {}
        rows.append(
            [
                Markup(link) if (run.path / REPORT_NAME).exists() else run.name,
                record.get("status"),
                Path(record.get("params_file") or "").name or None,
                f"{(run.model or {}).get('precision', '—')} / {(run.model or {}).get('device', '—')}",
                offline and offline.get("samples_per_s"),
                offline and offline.get("pairs_per_s"),
                single and ms_from_ns(single["latency_ns"]["p90"]),
                multi and ms_from_ns(multi["latency_ns"]["p99"]),
                server and f"{server.get('result')} @ {format_value(server['settings'].get('target_qps'))}",
                run.qps_search and run.qps_search.get("best_qps"),
                accuracy and f"{100 * accuracy['accuracy']['auc']:.3f}%",
                ((record.get("git") or {}).get("commit") or "")[:10] or None,
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


def differing_parameters(runs: Sequence[LoadedRun]) -> Table:
    """Parameters whose values differ between the runs (from their ``run.json``)."""
    flat = [_flat_parameters(r) for r in runs]
    keys = sorted({key for f in flat for key in f})
    rows = [
        [key, *[f.get(key) for f in flat]] for key in keys if len({json.dumps(f.get(key)) for f in flat}) > 1
    ]
    return Table(["parameter", *[r.name for r in runs]], rows, "Parameters that differ between runs")


def _flat_parameters(run: LoadedRun) -> dict[str, Any]:
    parameters = (run.record or {}).get("parameters", {})
    return {
        f"{notebook}.{name}": value
        for notebook, values in parameters.items()
        for name, value in values.items()
        if name not in PIPELINE_PARAMETERS
    }


def comparison_figure(runs: Sequence[LoadedRun]) -> Plot | Note:
    """Offline samples/s and AUC of every run, as bars."""
    named = [(r.name, r.performance("Offline"), r.accuracy) for r in runs]
    if not any(offline or accuracy for _, offline, accuracy in named):
        return Note("No run has Offline or accuracy results yet.")
    figure = Figure(figsize=(11, 0.5 * len(runs) + 1.8), layout="constrained")
    rate_ax, auc_ax = figure.subplots(1, 2, sharey=True)
    names = [name for name, _, _ in named]
    rates = [(offline or {}).get("samples_per_s") or 0 for _, offline, _ in named]
    aucs = [100 * accuracy["accuracy"]["auc"] if accuracy else 0 for _, _, accuracy in named]
    rate_ax.barh(names, rates, color="#2ca02c", height=0.6)
    rate_ax.set(xlabel="Offline samples/s", title="Offline throughput")
    auc_ax.barh(names, aucs, color="#1f77b4", height=0.6)
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
table.dlrm-nb td:first-child { white-space: nowrap; }
div.dlrm-nb-wide { overflow-x: auto; }
img.dlrm-nb-plot { max-width: 100%; }
"""


def _wide(table: str) -> str:
    """A table that scrolls sideways on its own when it is wider than the window."""
    return f'<div class="dlrm-nb-wide">{table}</div>'


def write_index(root: str | os.PathLike | None = None) -> Path:
    """``results/index.html``: every run side by side, a comparison plot and the parameters that differ."""
    from dlrm_nb.workbook.runs import results_root

    root = Path(root) if root is not None else results_root()
    runs = [load_run(path) for path in list_runs(root)]
    count = f"{len(runs)} run" if len(runs) == 1 else f"{len(runs)} runs"
    parts = [
        "<h1>DLRM inference workbook: runs</h1>",
        f"<p>{count} in {html.escape(str(root))}; the name of a run with a report links to it.</p>",
        _wide(index_rows(runs).to_html()),
        comparison_figure(runs).to_html(),
        _wide(differing_parameters(runs).to_html()) if len(runs) > 1 else "",
    ]
    page = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>DLRM runs</title>'
        f"<style>{PAGE_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )
    out = root / INDEX_NAME
    with atomic_output(out) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return out
