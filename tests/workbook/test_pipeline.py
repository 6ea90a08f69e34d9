"""The workbook end to end: every notebook through papermill in a real kernel with params/smoke.yaml,
the run folder it leaves, the HTML report and index, failures, and a Chromium screenshot."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
from chromium import find_chromium, screenshot

from dlrm_nb.exceptions import DlrmNbError
from dlrm_nb.workbook.blocks import format_value
from dlrm_nb.workbook.params import NOTEBOOKS
from dlrm_nb.workbook.pipeline import RunOutcome, render_reports, run_pipeline

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "params" / "smoke.yaml"
SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunOutcome, str]:
    results = tmp_path_factory.mktemp("results")
    log = io.StringIO()
    outcome = run_pipeline(SMOKE, run_id="smoke", results=results, stream=log)
    return outcome, log.getvalue()


def test_every_notebook_ran_in_a_kernel_into_the_run_folder(smoke) -> None:
    outcome, log = smoke
    run = outcome.run_dir
    assert run.name == "smoke"
    for notebook in NOTEBOOKS:
        executed = nbformat.read(run / f"{notebook}.ipynb", as_version=4)
        papermill = executed.metadata["papermill"]
        assert papermill["exception"] is None, notebook
        assert papermill["parameters"]["run_dir"] == str(run)
        assert all(c.execution_count for c in executed.cells if c.cell_type == "code" and c.source)
        assert f"[{NOTEBOOKS.index(notebook) + 1}/5] {notebook}.ipynb" in log
    # the cell output was streamed while it ran: progress text and one line per LoadGen run
    assert "prepare: 100%" in log
    assert "Offline performance: VALID" in log
    # no kernel connection files or sockets in the run folder, no lock left beside it or its data
    assert [p for p in run.rglob("*") if p.name.startswith("kernel") or p.is_socket()] == []
    assert list(run.parent.glob(".*.dlrm-nb.lock")) == list(run.glob(".*.dlrm-nb.lock")) == []


def test_run_json_records_parameters_versions_commit_and_machine(smoke) -> None:
    outcome, _ = smoke
    record = json.loads((outcome.run_dir / "run.json").read_text())
    assert record["status"] == "done"
    assert record["params_file"] == str(SMOKE)
    assert record["parameters"]["02_load_model"]["arch"] == "kaggle"
    for package in ("python", "torch", "numpy", "mlcommons-loadgen", "papermill"):
        assert record["versions"][package], package
    assert len(record["git"]["commit"]) == 40
    machine = record["machine"]
    assert machine["cpu"] and machine["logical_cores"] >= 1 and machine["memory_bytes"] > 2**30
    assert machine["gpus"] == [] or machine["gpus"][0]["name"]
    assert [n["notebook"] for n in record["notebooks"]] == list(NOTEBOOKS)


def test_every_scenario_left_metrics_logs_and_latencies(smoke) -> None:
    run = smoke[0].run_dir
    for scenario in SCENARIOS:
        folder = run / scenario / "performance"
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["scenario"] == scenario
        assert (folder / "mlperf_log_summary.txt").exists()
        latencies = np.load(folder / "sut_latencies_ns.npy")
        assert len(latencies) == metrics["sut"]["samples"] > 0
        assert (latencies > 0).all()
    search = json.loads((run / "qps_search" / "qps_search.json").read_text())
    assert search["probes"] and search["latency_ms"] == 30.0


def test_accuracy_run_agrees_with_direct_scoring(smoke) -> None:
    """The smoke test split has 1,000 pairs and 02 scores the first 1,000 without LoadGen:
    LoadGen's accuracy log must give the same AUC."""
    run = smoke[0].run_dir
    accuracy = json.loads((run / "Offline" / "accuracy" / "metrics.json").read_text())["accuracy"]
    model = json.loads((run / "model.json").read_text())
    assert accuracy["total"] == model["score"]["pairs"] == 1000
    assert accuracy["auc"] == pytest.approx(model["score"]["auc"], abs=1e-6)
    assert set(accuracy["targets"]) == {"99%", "99.9%"}


def test_report_html_has_the_plots_and_the_figures_of_metrics_json(smoke) -> None:
    outcome, _ = smoke
    page = outcome.report.read_text()
    assert outcome.report == outcome.run_dir / "report.html"
    assert page.count("data:image/png;base64,") >= 4  # latency, QPS search, accuracy, throughput
    assert "check_parameters" not in page and "runs.load_run" not in page  # code is hidden
    for scenario in SCENARIOS:
        metrics = json.loads((outcome.run_dir / scenario / "performance" / "metrics.json").read_text())
        assert f"<td>{format_value(metrics['samples_per_s'])}</td>" in page, scenario
        assert f"<td>{format_value(metrics['pairs_per_s'])}</td>" in page, scenario
        assert f"<td>{format_value(metrics['latency_ns']['p99'] / 1e6)}</td>" in page, scenario
        assert metrics["result"] in page
    accuracy = json.loads((outcome.run_dir / "Offline" / "accuracy" / "metrics.json").read_text())["accuracy"]
    assert f"{100 * accuracy['auc']:.3f}%" in page
    assert "MLPerf 99.9% target" in page
    record = json.loads((outcome.run_dir / "run.json").read_text())
    assert record["machine"]["cpu"] in page and record["versions"]["mlcommons-loadgen"] in page


def test_index_compares_runs(smoke) -> None:
    outcome, _ = smoke
    page = outcome.index.read_text()
    offline = json.loads((outcome.run_dir / "Offline" / "performance" / "metrics.json").read_text())
    assert 'href="smoke/report.html"' in page
    assert format_value(offline["samples_per_s"]) in page
    assert "data:image/png;base64," in page


def test_report_notebook_runs_alone_against_an_existing_run(smoke) -> None:
    outcome, _ = smoke
    executed = outcome.run_dir / "05_report.ipynb"
    executed.rename(outcome.run_dir / "05_report.first.ipynb")
    pages = render_reports([outcome.run_dir], results=outcome.run_dir.parent)
    assert pages == [outcome.run_dir / "report.html", outcome.run_dir.parent / "index.html"]
    assert executed.exists() and "data:image/png;base64," in pages[0].read_text()


def test_a_run_never_overwrites_an_earlier_one(smoke) -> None:
    outcome, _ = smoke
    before = (outcome.run_dir / "run.json").read_text()
    with pytest.raises(DlrmNbError, match="exists; runs are never overwritten"):
        run_pipeline(SMOKE, run_id="smoke", results=outcome.run_dir.parent, stream=io.StringIO())
    assert (outcome.run_dir / "run.json").read_text() == before


def test_a_failing_notebook_exits_non_zero_and_keeps_its_executed_copy(tmp_path: Path) -> None:
    empty = tmp_path / "no-data"
    empty.mkdir()
    params = tmp_path / "broken.yaml"
    params.write_text(f"prepare_data:\n  data_source: raw\n  raw_dir: {empty}\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dlrm_nb.cli",
            "run",
            str(params),
            "--results",
            str(tmp_path),
            "--run-id",
            "broken",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    executed = tmp_path / "broken" / "01_prepare_data.ipynb"
    line = done.stderr.strip().splitlines()[-1]  # one line: the notebook, the cell, our message, the copy
    assert line.startswith("dlrm-nb run: error: 01_prepare_data.ipynb failed in cell ")
    assert "day_0" in line  # the package's own message: which file is missing
    assert line.endswith(f"; the executed notebook, with the traceback, is {executed}")
    text = executed.read_text()
    assert "An Exception was encountered" in text  # papermill's error banner
    assert not (tmp_path / "broken" / "02_load_model.ipynb").exists()
    record = json.loads((tmp_path / "broken" / "run.json").read_text())
    assert record["status"] == "failed" and "01_prepare_data" in record["failure"]


def _processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line holds ``text``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            pass
    return found


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stopped_run_says_interrupted_and_leaves_no_kernel_files(
    tmp_path: Path, signum: int, code: int
) -> None:
    """Stopped while 01 writes its synthetic data: one line, exit 130/143, run.json says so, the
    kernel is shut down, and neither its connection file nor its sockets are left anywhere."""
    from dlrm_nb.fileio import is_temp_name
    from dlrm_nb.locks import lock_path

    params = tmp_path / "long.yaml"
    params.write_text("prepare_data:\n  synthetic_days: 3\n  synthetic_rows_per_day: 2000000\n")
    kernel_tmp = tmp_path / "tmp"  # the kernel's temporary folder (its connection file and sockets)
    kernel_tmp.mkdir()
    results = tmp_path / "results"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dlrm_nb.cli",
            "run",
            str(params),
            "--results",
            str(results),
            "--run-id",
            "long",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(kernel_tmp)},
    )
    raw = results / "long" / "raw"
    deadline = time.monotonic() + 120
    while not (raw.is_dir() and any(is_temp_name(p.name) for p in raw.iterdir())):  # 01 is writing day_0
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        time.sleep(0.05)
    child.send_signal(signum)
    _, err = child.communicate(timeout=120)
    assert child.returncode == code, err
    assert err.strip().splitlines()[-1] == (
        "dlrm-nb run: interrupted; run.json says interrupted and the run folder keeps the notebooks that "
        "finished; start a new run (another --run-id)"
    )
    run = results / "long"
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "interrupted"
    assert record["failure"] == (
        "interrupted by SIGTERM" if signum == signal.SIGTERM else "interrupted by Ctrl-C (SIGINT)"
    )
    assert [n["notebook"] for n in record["notebooks"]] == ["01_prepare_data"]
    left = [p for p in run.rglob("*") if p.name.startswith("kernel") or p.is_socket() or is_temp_name(p.name)]
    assert left == []
    assert list(kernel_tmp.glob("dlrm-nb-kernel-*")) == []
    assert not lock_path(run).exists() and not lock_path(run / "prepared").exists()
    assert _processes_mentioning(str(kernel_tmp)) == []  # the kernel is gone too


def test_report_screenshot_in_headless_chromium_shows_the_plots(smoke, tmp_path: Path) -> None:
    if find_chromium() is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    from matplotlib.image import imread

    png = screenshot(smoke[0].report, tmp_path / "report.png", width=1280, height=2400)
    pixels = imread(png)
    assert pixels.shape[:2] == (2400, 1280)
    colors = np.unique((pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colors) > 200  # text alone is a few grey levels; plots bring their colours
    red = (pixels[..., 0] > 0.7) & (pixels[..., 1] < 0.35) & (pixels[..., 2] < 0.35)
    green = (pixels[..., 1] > 0.45) & (pixels[..., 0] < 0.35) & (pixels[..., 2] < 0.35)
    assert red.sum() > 100 and green.sum() > 100  # e.g. the Server (red) and Offline (green) latency plots
