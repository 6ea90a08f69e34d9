"""The pipeline: a params file -> every notebook through papermill -> ``results/<run-id>/``.

``dlrm-nb run params/demo.yaml`` checks every parameter against the notebooks first (a typo
stops it before anything runs), makes a new run folder (never an existing one), records
``run.json`` (parameters, versions, git commit, machine), executes the notebooks in order with
their output streamed to the terminal, renders ``report.html`` from the executed report notebook
and refreshes ``results/index.html``. A failing notebook stops the run with a non-zero exit that
names the notebook and cell; its executed copy, with papermill's error banner, stays in the
run folder.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from dlrm_nb.exceptions import DlrmNbError, NotebookFailed
from dlrm_nb.fileio import write_json
from dlrm_nb.model.inference import resolve_device
from dlrm_nb.progress import check_progress
from dlrm_nb.workbook.params import (
    NOTEBOOKS,
    absolute_paths,
    apply_overrides,
    load_params_file,
    notebook_path,
    resolve_parameters,
)
from dlrm_nb.workbook.runs import (
    DATA_RECORD,
    REPORT_NAME,
    RUN_RECORD,
    create_run_dir,
    new_run_id,
    read_optional,
    results_root,
)

KERNEL_NAME = "python3"


@dataclass(frozen=True)
class RunOutcome:
    run_dir: Path
    report: Path | None
    index: Path | None
    seconds: float


def run_pipeline(
    params_file: str | os.PathLike,
    overrides: Sequence[tuple[str, str]] = (),
    *,
    run_id: str | None = None,
    results: str | os.PathLike | None = None,
    progress: str = "text",
    notebooks: Sequence[str] = NOTEBOOKS,
    stream: TextIO | None = None,
) -> RunOutcome:
    """Run ``notebooks`` with the parameters of ``params_file`` (plus ``-p`` overrides) into a
    new ``<results>/<run_id>/``; see the module docstring. Raises :class:`NotebookFailed`."""
    stream = stream if stream is not None else sys.stdout
    check_progress(progress)
    params = absolute_paths(apply_overrides(load_params_file(params_file), list(overrides)))
    resolved = resolve_parameters(params, source=str(params_file))
    model = resolved["02_load_model"]
    resolve_device(model["device"])  # e.g. cuda asked for, none here (precisions: checked with the params)
    root = Path(results) if results is not None else results_root()
    run_dir = create_run_dir(root / (run_id or new_run_id(Path(params_file).stem))).resolve()
    for values in resolved.values():
        values.update(run_dir=str(run_dir), progress=progress)
    record = _run_record(params_file, params, overrides, resolved)
    write_json(run_dir / RUN_RECORD, record)
    started = time.perf_counter()
    print(f"run folder: {run_dir}", file=stream, flush=True)
    for number, notebook in enumerate(notebooks, 1):
        print(f"\n=== [{number}/{len(notebooks)}] {notebook}.ipynb", file=stream, flush=True)
        notebook_started = time.perf_counter()
        try:
            _execute(notebook, run_dir, resolved[notebook], stream)
        except BaseException as exc:  # a failed cell, a dead kernel, Ctrl-C: run.json says so
            status = "failed" if isinstance(exc, Exception) else "interrupted"
            record["notebooks"].append(_timing(notebook, notebook_started))
            _save(record, run_dir, started, status=status, failure=str(exc))
            raise
        record["notebooks"].append(_timing(notebook, notebook_started))
        _save(record, run_dir, started)
    report = index = None
    if "05_report" in notebooks:
        from dlrm_nb.workbook.report import render_report

        report = render_report(run_dir / "05_report.ipynb", run_dir / REPORT_NAME)
    _save(record, run_dir, started, status="done")
    if report is not None:
        from dlrm_nb.workbook.index import write_index

        index = write_index(root)
    return RunOutcome(run_dir, report, index, time.perf_counter() - started)


def _timing(notebook: str, notebook_started: float) -> dict[str, Any]:
    return {"notebook": notebook, "seconds": round(time.perf_counter() - notebook_started, 1)}


def _save(record: dict[str, Any], run_dir: Path, started: float, **update: str) -> None:
    """Write ``run.json`` with ``update`` (status, failure) and the seconds so far."""
    record.update(update, seconds=round(time.perf_counter() - started, 1))
    write_json(run_dir / RUN_RECORD, record)


def _run_record(
    params_file: str | os.PathLike,
    params: dict[str, Any],
    overrides: Sequence[tuple[str, str]],
    resolved: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    from dlrm_nb.workbook import sysinfo

    return {
        "params_file": str(params_file),
        "description": params.get("description", ""),
        "overrides": [list(pair) for pair in overrides],
        "parameters": resolved,
        "status": "running",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "notebooks": [],
        **sysinfo.describe(),
    }


def _execute(notebook: str, run_dir: Path, parameters: dict[str, Any], stream: TextIO) -> None:
    """One notebook through papermill into ``run_dir``, cell output streamed to ``stream``."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out = run_dir / f"{notebook}.ipynb"
    try:
        papermill.execute_notebook(
            str(notebook_path(notebook)),
            str(out),
            parameters=parameters,
            kernel_name=KERNEL_NAME,
            progress_bar=False,
            stdout_file=stream,
            stderr_file=stream,
            cwd=str(run_dir),
            kernel_manager_class=_local_kernel_manager(),
        )
    except PapermillExecutionError as exc:
        raise NotebookFailed(
            f"{notebook}.ipynb failed in cell {exc.cell_index} (execution count {exc.exec_count}): "
            f"{exc.ename}: {exc.evalue}\nthe executed notebook, with the traceback, is {out}"
        ) from None


def _local_kernel_manager() -> type:
    """A kernel manager for this machine and this Python: kernels run ``sys.executable`` (the
    interpreter that has ``dlrm_nb``, whatever kernel named python3 a user has installed) and talk
    over Unix sockets in Jupyter's runtime folder (no TCP ports, nothing for ipykernel to warn about)."""
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class LocalSocketKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self) -> str:
            return "ipc" if os.name == "posix" else "tcp"

        @property
        def kernel_spec(self) -> KernelSpec:
            return KernelSpec(
                argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                display_name=f"Python {sys.version.split()[0]} ({sys.executable})",
                language="python",
            )

    return LocalSocketKernelManager


def render_reports(
    run_dirs: Sequence[str | os.PathLike], results: str | os.PathLike | None = None
) -> list[Path]:
    """``dlrm-nb report``: run the report notebook again on each run folder (so it shows what the
    folder holds now) and render its ``report.html``, then the index page; returns the pages written."""
    from dlrm_nb.workbook.index import write_index
    from dlrm_nb.workbook.report import render_report

    written = []
    root = Path(results) if results is not None else results_root()
    for run_dir in run_dirs:
        run_dir = Path(run_dir).resolve()
        if not (run_dir / RUN_RECORD).is_file() and not (run_dir / DATA_RECORD).is_file():
            raise DlrmNbError(
                f"{run_dir} is not a run folder (it has neither {RUN_RECORD} nor {DATA_RECORD}); "
                "give a results/<run-id> folder"
            )
        record = read_optional(run_dir, RUN_RECORD) or {}
        title = record.get("parameters", {}).get("05_report", {}).get("title", "")
        parameters = {"run_dir": str(run_dir), "progress": "text", "title": title}
        _execute("05_report", run_dir, parameters, sys.stdout)
        written.append(render_report(run_dir / "05_report.ipynb", run_dir / REPORT_NAME))
    written.append(write_index(root))
    return written
