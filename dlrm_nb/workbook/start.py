"""The start page (``notebooks/00_start_here.ipynb``): the runs under ``results/``, links to their
reports and to the page that compares them, and which notebook to run next.

The start page is not part of the pipeline and takes one parameter of its own, checked here."""

from __future__ import annotations

import html
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlrm_nb.exceptions import ParameterError
from dlrm_nb.workbook.blocks import Markup, Note, Plot, Table
from dlrm_nb.workbook.runs import (
    DATA_RECORD,
    REPORT_NAME,
    LoadedRun,
    list_runs,
    load_run,
    results_root,
)

START_NOTEBOOK = "00_start_here"
#: The workbook's notebooks with what each leaves in a run folder (how the page tells what is done).
STEPS = (
    ("01_prepare_data", "prepared data"),
    ("02_load_model", "model"),
    ("03_run_scenarios", "LoadGen performance runs"),
    ("04_accuracy", "accuracy run"),
    ("05_report", "report"),
)


@dataclass(frozen=True)
class StartParameters:
    results_dir: str

    def check(self) -> None:
        if self.results_dir and not Path(self.results_dir).expanduser().is_dir():
            raise ParameterError(
                f"{START_NOTEBOOK}: parameter results_dir = {self.results_dir!r} is not valid: not an "
                "existing folder; give a results folder, or '' for the project's results/"
            )


def check_parameters(notebook: str, namespace: Mapping[str, Any]) -> StartParameters:
    """The start page's parameters from ``namespace`` (its ``globals()``), checked like the other
    notebooks' (:func:`dlrm_nb.workbook.params.check_parameters`)."""
    if notebook != START_NOTEBOOK:
        raise ParameterError(f"notebook {notebook!r} is not the start page {START_NOTEBOOK}")
    if "results_dir" not in namespace:
        raise ParameterError(f"{notebook}: parameter 'results_dir' is missing from the parameters cell")
    value = namespace["results_dir"]
    if not isinstance(value, str):
        raise ParameterError(
            f"{notebook}: parameter results_dir = {value!r} is a {type(value).__name__}; need a str"
        )
    parameters = StartParameters(results_dir=value)
    parameters.check()
    return parameters


@dataclass(frozen=True)
class Results:
    """A results folder and its runs, oldest first."""

    root: Path
    runs: list[LoadedRun]


def load_results(params: StartParameters) -> Results:
    """The runs of the results folder ``params`` names (``""``: the project's ``results/``)."""
    root = Path(params.results_dir).expanduser().resolve() if params.results_dir else results_root()
    return Results(root, [load_run(path) for path in list_runs(root)])


def steps_done(run: LoadedRun) -> list[str]:
    """The notebooks whose records are in the run folder (05: its rendered report)."""
    present = {
        "01_prepare_data": run.data is not None,
        "02_load_model": run.model is not None,
        "03_run_scenarios": any("performance" in modes for modes in run.metrics.values()),
        "04_accuracy": run.accuracy is not None,
        "05_report": (run.path / REPORT_NAME).is_file(),
    }
    return [notebook for notebook, _ in STEPS if present[notebook]]


def next_notebook(run: LoadedRun) -> str | None:
    """The first notebook whose part is missing from ``run`` (None: the run has everything)."""
    done = steps_done(run)
    return next((notebook for notebook, _ in STEPS if notebook not in done), None)


def runs_table(results: Results) -> Table | Note:
    """One row per run, newest first: what it holds, its headline figures, its report and what next."""
    if not results.runs:
        return Note(f"No runs yet in {results.root}.")
    rows = [
        [
            _link(run.path, run.name),
            _started(run),
            (run.record or {}).get("status"),
            " ".join(notebook[:2] for notebook in steps_done(run)) or None,
            (run.performance("Offline") or {}).get("samples_per_s"),
            run.accuracy and f"{100 * run.accuracy['accuracy']['auc']:.3f}%",
            _link(run.path / REPORT_NAME, "report") if (run.path / REPORT_NAME).is_file() else None,
            _next_link(run),
        ]
        for run in reversed(results.runs)
    ]
    columns = ["run", "started", "status", "notebooks done", "Offline samples/s", "AUC", "report", "next"]
    caption = f"Runs in {results.root}, newest first (02 to 05 work in the newest when run_dir is '')"
    return Table(columns, rows, caption)


def comparison(results: Results) -> Markup | Note:
    """A link to ``results/index.html``, the page that compares every run (written afresh here)."""
    if not results.runs:
        return Note("The comparison of runs (results/index.html) comes with the first run.")
    from dlrm_nb.workbook.index import write_index

    page = write_index(results.root)
    return Markup(
        f"<p>Every run side by side, a comparison plot and the parameters that differ: "
        f"{_link(page, page.name).text} (refreshed now; <code>dlrm-nb report</code> does the same).</p>"
    )


def comparison_figure(results: Results) -> Plot | Note:
    """Offline samples/s and AUC of every run as bars, once there are two runs to compare."""
    if len(results.runs) < 2:
        return Note("The comparison plot needs two runs.")
    from dlrm_nb.workbook.index import comparison_figure as figure

    return figure(results.runs)


def next_step(results: Results) -> Markup:
    """What to run next, for the newest run (the one notebooks 02 to 05 pick up by default)."""
    if not results.runs:
        return _next(
            "01_prepare_data",
            "there is no run yet. With its defaults it makes synthetic data in a new run folder "
            "under results/ (set <code>data_source</code> for your own Criteo files).",
        )
    run = results.runs[-1]
    notebook = next_notebook(run)
    name = f"<b>{html.escape(run.name)}</b>"
    if notebook is None:
        report = _link(run.path / REPORT_NAME, "its report").text
        return Markup(
            f"<p>The newest run, {name}, is complete: open {report}. A new run starts with "
            f"{_notebook_link('01_prepare_data').text} (<code>run_dir</code> '' makes a new folder).</p>"
        )
    if notebook == "05_report":
        return _next(
            notebook,
            f"it shows everything the newest run, {name}, holds (<code>dlrm-nb report</code> renders it "
            "to report.html). Or start a new run with 01_prepare_data.",
        )
    what = dict(STEPS)[notebook]
    return _next(notebook, f"the newest run, {name}, has no {what} yet.")


def _next(notebook: str, why: str) -> Markup:
    link = _notebook_link(notebook).text
    return Markup(
        f"<p><b>Next:</b> open {link} and run all its cells (<i>Run ▸ Run All Cells</i>): {why}</p>"
    )


def _next_link(run: LoadedRun) -> Markup | None:
    notebook = next_notebook(run)
    return None if notebook is None else _notebook_link(notebook)


def _notebook_link(notebook: str) -> Markup:
    """A link to a notebook of the workbook: it lies beside the start page."""
    return Markup(f'<a href="{html.escape(notebook)}.ipynb">{html.escape(notebook)}</a>')


def _link(target: Path, text: str) -> Markup:
    """A link to ``target`` relative to the current folder (the notebook's, in JupyterLab, which
    opens such links in its own tabs), absolute when it is on another drive."""
    try:
        href = Path(os.path.relpath(target, Path.cwd())).as_posix()
    except ValueError:  # another drive (Windows)
        href = target.resolve().as_uri()
    return Markup(f'<a href="{html.escape(href)}">{html.escape(text)}</a>')


def _started(run: LoadedRun) -> str | None:
    """When the run started (``run.json``) or its data was made (``data.json``), to the minute."""
    started = (run.record or {}).get("started")
    if started:
        return str(started)[:16].replace("T", " ")
    data = run.path / DATA_RECORD
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(data.stat().st_mtime)) if data.is_file() else None
