"""User errors in notebooks and runs: one line in JupyterLab and papermill (no traceback wall),
``dlrm-nb run`` refusing bad parameters, a locked run folder and a set too large for the disk."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace

import nbformat
import papermill
import pytest
from papermill.exceptions import PapermillExecutionError

from dlrm_nb.cli import main
from dlrm_nb.exceptions import ParameterError
from dlrm_nb.locks import lock_path
from dlrm_nb.workbook.pipeline import _failed_line, _local_kernel_manager

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "params" / "smoke.yaml"


def test_our_errors_render_as_one_line_in_ipython() -> None:
    error = ParameterError("01_prepare_data: parameter synthetic_days = 99 is not valid: need 0 to 24")
    assert error._render_traceback_() == [
        "ParameterError: 01_prepare_data: parameter synthetic_days = 99 is not valid: need 0 to 24"
    ]


def test_a_notebook_cell_raising_our_error_shows_one_line_and_papermill_names_it(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    code = "from dlrm_nb.exceptions import CheckpointError\nraise CheckpointError('model.pt is not readable')"
    notebook.cells = [nbformat.v4.new_code_cell(code)]
    nbformat.write(notebook, tmp_path / "in.ipynb")
    kernel_files = tmp_path / "kernel"
    kernel_files.mkdir()
    with pytest.raises(PapermillExecutionError) as caught:
        papermill.execute_notebook(
            str(tmp_path / "in.ipynb"),
            str(tmp_path / "out.ipynb"),
            kernel_name="python3",
            progress_bar=False,
            kernel_manager_class=_local_kernel_manager(kernel_files),
        )
    assert (caught.value.ename, caught.value.evalue) == ("CheckpointError", "model.pt is not readable")
    (error,) = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[-1].outputs
    assert error.traceback == ["CheckpointError: model.pt is not readable"]  # not a traceback wall
    assert list(kernel_files.iterdir()) == []  # connection file and sockets gone with the kernel
    line = _failed_line("02_load_model", caught.value, tmp_path / "out.ipynb")
    assert line == (
        "02_load_model.ipynb failed in cell 0 (execution count 1): CheckpointError: model.pt is not "
        f"readable; the executed notebook, with the traceback, is {tmp_path / 'out.ipynb'}"
    )


def test_a_notebook_failing_with_another_error_asks_for_a_report(tmp_path: Path) -> None:
    failed = SimpleNamespace(cell_index=3, exec_count=2, ename="IndexError", evalue="index out of\nrange")
    assert _failed_line("03_run_scenarios", failed, tmp_path / "x.ipynb") == (
        "03_run_scenarios.ipynb failed in cell 3 (execution count 2): IndexError: index out of range; the "
        f"executed notebook, with the traceback, is {tmp_path / 'x.ipynb'} (not an error dlrm-nb raises on "
        "purpose: if the inputs look right, please report it)"
    )


def _one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_run_with_a_bad_parameter_prints_one_line_and_exits_2(tmp_path: Path, capsys) -> None:
    argv = ["run", str(SMOKE), "-p", "synthetic_days", "99999", "--results", str(tmp_path), "--run-id", "bad"]
    assert main(argv) == 2
    assert _one_line(capsys.readouterr().err) == (
        "dlrm-nb run: error: 01_prepare_data: parameter synthetic_days = 99999 is not valid: need a whole "
        "number from 0 to 24 (0: the dataset's own, 24 Terabyte days or 7 Kaggle splits)"
    )
    assert list(tmp_path.iterdir()) == []


def test_run_refuses_a_run_id_outside_results(tmp_path: Path, capsys) -> None:
    results = tmp_path / "results"
    for run_id in ("../../x", str(tmp_path / "x")):
        assert main(["run", str(SMOKE), "--results", str(results), "--run-id", run_id]) == 2
        assert f"run id {run_id!r} is not valid" in _one_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


def test_run_refuses_a_synthetic_set_larger_than_the_disk(tmp_path: Path, capsys, monkeypatch) -> None:
    from dlrm_nb.workbook import params

    monkeypatch.setattr(
        params.shutil, "disk_usage", lambda path: namedtuple("u", "total used free")(0, 0, 10**6)
    )
    assert main(["run", str(SMOKE), "--results", str(tmp_path / "results"), "--run-id", "big"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(
        f"dlrm-nb run: error: {SMOKE} (synthetic data, prepared) would write about 1.4 MB into "
    )
    assert line.endswith(
        "but only 1.0 MB is free there; make it smaller (fewer days or rows) or free some space"
    )
    assert list(tmp_path.iterdir()) == []


def test_run_refuses_a_run_folder_another_process_holds(tmp_path: Path, capsys) -> None:
    results = tmp_path / "results"
    results.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = lock_path(results / "busy")
        lock.write_text(
            json.dumps({"pid": holder.pid, "host": socket.gethostname(), "command": "dlrm-nb run x"})
        )
        assert main(["run", str(SMOKE), "--results", str(results), "--run-id", "busy"]) == 2
        line = _one_line(capsys.readouterr().err)
        assert f"{results.resolve() / 'busy'} is being written by another process: pid {holder.pid}" in line
        assert sorted(p.name for p in results.iterdir()) == [".busy.dlrm-nb.lock"]
    finally:
        holder.kill()
        holder.wait()


def _prepare_parameters(run_dir: Path, **values):
    from dlrm_nb.workbook.params import check_parameters, notebook_defaults

    defaults = notebook_defaults("01_prepare_data")
    return check_parameters(
        "01_prepare_data", {**defaults, "run_dir": str(run_dir), "progress": "off", **values}
    )


def test_the_prepare_step_refuses_a_prepared_folder_another_process_writes(tmp_path: Path) -> None:
    from dlrm_nb.exceptions import FolderLockedError
    from dlrm_nb.workbook.steps import prepare_data

    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run.mkdir()
        lock = lock_path(run / "prepared")
        lock.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "command": "dlrm-nb x"}))
        with pytest.raises(
            FolderLockedError, match=f"prepared is being written by another process: pid {holder.pid}"
        ):
            prepare_data(_prepare_parameters(run, synthetic_days=2, synthetic_rows_per_day=10))
        assert sorted(p.name for p in run.iterdir()) == [".prepared.dlrm-nb.lock"]  # nothing written
    finally:
        holder.kill()
        holder.wait()


def test_the_prepare_step_refuses_a_synthetic_set_larger_than_the_disk(tmp_path: Path, monkeypatch) -> None:
    from dlrm_nb.exceptions import DlrmNbError
    from dlrm_nb.locks import lock_path as lock_of
    from dlrm_nb.workbook import params
    from dlrm_nb.workbook.steps import prepare_data

    monkeypatch.setattr(
        params.shutil, "disk_usage", lambda path: namedtuple("u", "total used free")(0, 0, 1000)
    )
    run = tmp_path / "run"
    with pytest.raises(
        DlrmNbError, match=r"01_prepare_data \(synthetic data, prepared\) would write about 4\.0 MB"
    ):
        prepare_data(_prepare_parameters(run, synthetic_days=2, synthetic_rows_per_day=10))
    assert sorted(p.name for p in run.iterdir()) == []  # no raw files, the lock released
    assert not lock_of(run / "prepared").exists()
