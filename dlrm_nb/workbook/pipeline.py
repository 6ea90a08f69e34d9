"""The pipeline: a params file -> every notebook through papermill -> ``results/<run-id>/``.

``dlrm-nb run params/demo.yaml`` checks every parameter against the notebooks first (a typo
stops it before anything runs), makes a new run folder (never an existing one), records
``run.json`` (parameters, versions, git commit, machine), executes the notebooks in order with
their output streamed to the terminal, renders ``report.html`` from the executed report notebook
and refreshes ``results/index.html``. A failing notebook stops the run with a non-zero exit that
names the notebook and cell; its executed copy, with papermill's error banner, stays in the
run folder.

The run id is one folder name and the run folder always lies inside the results folder; the
run holds the lock of its folder (:mod:`dlrm_nb.locks`) while it writes it. Ctrl-C or SIGTERM
stop the running notebook's cell (its ``finally`` blocks run: temporary files go, locks are
released), shut its kernel down and leave ``run.json`` saying ``interrupted``; the kernel's
connection file and sockets live in a temporary folder of their own, never in the run folder.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from dlrm_nb.exceptions import DlrmNbError, NotebookFailed, Terminated
from dlrm_nb.fileio import write_json
from dlrm_nb.locks import folder_lock
from dlrm_nb.model.inference import resolve_device
from dlrm_nb.progress import check_progress
from dlrm_nb.workbook.params import (
    NOTEBOOKS,
    absolute_paths,
    apply_overrides,
    check_free_space,
    check_parameters,
    load_params_file,
    notebook_path,
    prepare_data_bytes,
    resolve_parameters,
)
from dlrm_nb.workbook.runs import (
    DATA_RECORD,
    REPORT_NAME,
    RUN_RECORD,
    check_run_id,
    create_run_dir,
    new_run_id,
    read_optional,
    results_root,
    run_dir_in,
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
    run_id = check_run_id(run_id) if run_id is not None else new_run_id(Path(params_file).stem)
    params = absolute_paths(apply_overrides(load_params_file(params_file), list(overrides)))
    resolved = resolve_parameters(params, source=str(params_file))
    model = resolved["02_load_model"]
    resolve_device(model["device"])  # e.g. cuda asked for, none here (precisions: checked with the params)
    root = Path(results) if results is not None else results_root()
    run_dir = run_dir_in(root, run_id)
    if "01_prepare_data" in notebooks:
        data = check_parameters("01_prepare_data", {**resolved["01_prepare_data"], "progress": "text"})
        check_free_space(root, prepare_data_bytes(data), f"{params_file} (synthetic data, prepared)")
    with folder_lock(run_dir, f"dlrm-nb run {params_file} --run-id {run_id}"):
        create_run_dir(run_dir)
        for values in resolved.values():
            values.update(run_dir=str(run_dir), progress=progress)
        record = _run_record(params_file, params, overrides, resolved)
        write_json(run_dir / RUN_RECORD, record)
        started = time.perf_counter()
        print(f"run folder: {run_dir}", file=stream, flush=True)
        try:
            report = _run_notebooks(notebooks, run_dir, resolved, record, started, stream)
            _save(record, run_dir, started, status="done")
            index = None
            if report is not None:
                from dlrm_nb.workbook.index import write_index

                index = write_index(root)
        except BaseException as exc:  # a failed cell, a dead kernel, Ctrl-C, SIGTERM: run.json says so
            status = "failed" if isinstance(exc, Exception) else "interrupted"
            _save(record, run_dir, started, status=status, failure=_failure(exc))
            raise
    return RunOutcome(run_dir, report, index, time.perf_counter() - started)


def _run_notebooks(
    notebooks: Sequence[str],
    run_dir: Path,
    resolved: dict[str, dict[str, Any]],
    record: dict[str, Any],
    started: float,
    stream: TextIO,
) -> Path | None:
    """Execute ``notebooks`` in order, timing each in ``record``; render the report if 05 ran."""
    for number, notebook in enumerate(notebooks, 1):
        print(f"\n=== [{number}/{len(notebooks)}] {notebook}.ipynb", file=stream, flush=True)
        notebook_started = time.perf_counter()
        try:
            _execute(notebook, run_dir, resolved[notebook], stream)
        finally:
            record["notebooks"].append(_timing(notebook, notebook_started))
        _save(record, run_dir, started)
    if "05_report" not in notebooks:
        return None
    from dlrm_nb.workbook.report import render_report

    return render_report(run_dir / "05_report.ipynb", run_dir / REPORT_NAME)


def _failure(exc: BaseException) -> str:
    """What stopped a run, for ``run.json``."""
    if isinstance(exc, Terminated):
        return "interrupted by SIGTERM"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted by Ctrl-C (SIGINT)"
    return str(exc) or type(exc).__name__


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
    """One notebook through papermill into ``run_dir``, cell output streamed to ``stream``; the
    kernel's connection file and sockets go to a temporary folder removed afterwards. Ctrl-C or
    SIGTERM interrupt the running cell and start no other; the stop is raised (KeyboardInterrupt,
    :class:`Terminated`) once the kernel is shut down. A second one stops at once."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out = run_dir / f"{notebook}.ipynb"
    stop = _Stop()
    with tempfile.TemporaryDirectory(prefix="dlrm-nb-kernel-") as kernel_files, stop.handling_signals():
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
                kernel_manager_class=_local_kernel_manager(Path(kernel_files), stop.kernels),
                on_cell_execute=stop.before_cell,
            )
        except PapermillExecutionError as exc:
            stop.raise_if_asked()  # the interrupted cell failed with KeyboardInterrupt: that is the stop
            raise NotebookFailed(_failed_line(notebook, exc, out)) from None
        stop.raise_if_asked()


class _Stop:
    """A stop asked for (Ctrl-C, SIGTERM) while a notebook runs: the kernels' running cell is
    interrupted (SIGINT to the kernel's process group, as Jupyter does) and no cell starts after it."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.kernels: list[Any] = []  # the kernel managers of this execution

    @contextmanager
    def handling_signals(self) -> Iterator[None]:
        """SIGINT and SIGTERM handled by :meth:`handle` inside (in the main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.signal(signum, self.handle) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None or not self._interrupt_kernels():
            raise _stop_exception(signum)  # a second stop, or no kernel yet: stop at once
        self.signum = signum

    def _interrupt_kernels(self) -> bool:
        interrupted = False
        for manager in self.kernels:
            pgid = getattr(getattr(manager, "provisioner", None), "pgid", None)
            if pgid:
                with suppress(OSError):
                    os.killpg(pgid, signal.SIGINT)
                    interrupted = True
        return interrupted

    def before_cell(self, **_: Any) -> None:
        """nbclient's hook before each cell: no cell starts once a stop was asked for."""
        self.raise_if_asked()

    def raise_if_asked(self) -> None:
        if self.signum is not None:
            raise _stop_exception(self.signum)


def _stop_exception(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _failed_line(notebook: str, exc: Any, out: Path) -> str:
    """One line: the notebook, the cell, the error the cell raised and where the traceback is."""
    ours = exc.ename in _error_names(DlrmNbError)
    evalue = " ".join(str(exc.evalue).split())
    bug = (
        ""
        if ours
        else " (not an error dlrm-nb raises on purpose: if the inputs look right, please report it)"
    )
    return (
        f"{notebook}.ipynb failed in cell {exc.cell_index} (execution count {exc.exec_count}): "
        f"{exc.ename}: {evalue}; the executed notebook, with the traceback, is {out}{bug}"
    )


def _error_names(cls: type) -> set[str]:
    """The names of ``cls`` and of all its subclasses (the errors the package raises on purpose)."""
    names = {cls.__name__}
    subclasses: list[type] = cls.__subclasses__()
    for sub in subclasses:
        names |= _error_names(sub)
    return names


def _local_kernel_manager(kernel_files: Path, started: list[Any] | None = None) -> type:
    """A kernel manager for this machine and this Python: kernels run ``sys.executable`` (the
    interpreter that has ``dlrm_nb``, whatever kernel named python3 a user has installed) and talk
    over Unix sockets (no TCP ports, nothing for ipykernel to warn about) whose files, with the
    connection file, are in ``kernel_files``. A kernel is interrupted before it is shut down, so
    that a cell still running (the run was stopped) ends through its ``finally`` blocks. Each
    manager made is appended to ``started``."""
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class LocalSocketKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            if started is not None:
                started.append(self)

        @default("transport")
        def _transport_default(self) -> str:
            return "ipc" if os.name == "posix" else "tcp"

        @default("connection_file")
        def _connection_file_default(self) -> str:
            return str(kernel_files / "kernel.json")  # the ipc sockets: kernel-ipc-<n> beside it

        @property
        def kernel_spec(self) -> KernelSpec:
            return KernelSpec(
                argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                display_name=f"Python {sys.version.split()[0]} ({sys.executable})",
                language="python",
            )

        # async, as AsyncKernelManager's own (its base class, KernelManager, types it as sync)
        async def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:  # type: ignore[override]
            if not now and not restart:
                with suppress(Exception):  # a kernel gone already: nothing to interrupt
                    await self.interrupt_kernel()
            await super().shutdown_kernel(now=now, restart=restart)

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
