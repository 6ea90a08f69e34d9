"""The workbook in JupyterLab, driven in headless Chromium the way a person uses it.

JupyterLab runs from this environment on a free loopback port with a token, on a copy of the
notebooks in a temporary project folder (its own ``results/``; Jupyter's config, data and runtime
folders are temporary too, so nothing is written anywhere else). Playwright drives Debian's
Chromium (no browser download): each notebook is opened, tiny values are typed into its
parameters cell, *Run ▸ Run All Cells* is clicked, the kernel goes idle, the notebook is saved,
and what the cells show is checked: no error or warning output, progress widgets, the tables and
plots, the run folder. The start page comes last, then a notebook with a bad parameter value,
whose cell must show the one-line message. A screenshot of each notebook's end state is saved in
a temporary folder, printed at the start.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
KERNEL = "dlrm-nb"
KERNEL_DISPLAY_NAME = "DLRM workbook (.venv)"
CHROMIUM_NAMES = ("chromium", "chromium-browser")
#: The tiniest values that still go through every notebook (params/smoke.yaml, and shorter).
TINY = {
    "01_prepare_data": {"synthetic_days": 3, "synthetic_rows_per_day": 400, "synthetic_test_day_rows": 2000},
    "02_load_model": {
        "arch": "kaggle",
        "train_max_minutes": 1.0,
        "precision": "auto",
        "score_pairs": 1000,
        "throughput_batch_sizes": [1, 64],
        "throughput_precisions": ["fp32"],
        "throughput_seconds": 0.05,
    },
    "03_run_scenarios": {
        "min_duration_ms": 200,
        "max_duration_ms": 1000,
        "qps_search_budget_s": 6.0,
        "qps_search_probe_ms": 300,
    },
    "04_accuracy": {},
    "05_report": {},
    "00_start_here": {},
}
RUN_SECONDS = 240  # one notebook's Run All, at most
OUTPUT = ".jp-OutputArea-output"

#: The browser tests start JupyterLab and a kernel per notebook: about two minutes in all.
slow = pytest.mark.slow


def _chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


# ----------------------------------------------------------------------------- JupyterLab


@dataclass
class Lab:
    url: str
    token: str
    project: Path
    log: Path

    def api(self, method: str, path: str) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            body = answer.read()
        return json.loads(body) if body else None

    def shut_down_kernels(self) -> None:
        """What closing a notebook and shutting its kernel down does: the next one starts fresh."""
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")

    def runs(self) -> list[Path]:
        return sorted(p for p in (self.project / "results").iterdir() if p.is_dir())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _project_copy(root: Path) -> Path:
    """The notebooks and an empty results folder, as in a fresh clone."""
    project = root / "project"
    (project / "notebooks").mkdir(parents=True)
    for notebook in (ROOT / "notebooks").glob("*.ipynb"):
        shutil.copy(notebook, project / "notebooks")
    (project / "results").mkdir()
    shutil.copy(ROOT / "results" / "README.md", project / "results")
    return project


def _jupyter_env(root: Path) -> dict[str, str]:
    """Jupyter's and IPython's folders under ``root``; settings that keep the screen quiet."""
    env = dict(os.environ)
    for name, folder in {
        "JUPYTER_CONFIG_DIR": "config",
        "JUPYTER_DATA_DIR": "data",
        "JUPYTER_RUNTIME_DIR": "runtime",
        "IPYTHONDIR": "ipython",
    }.items():
        env[name] = str(root / folder)
    settings = root / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    return env


def _kernel_spec() -> dict[str, Any] | None:
    """The workbook's kernelspec as ``make setup`` installs it: inside this environment."""
    spec = Path(sys.prefix) / "share" / "jupyter" / "kernels" / KERNEL / "kernel.json"
    return json.loads(spec.read_text()) if spec.is_file() else None


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if _chromium() is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed: make setup")
    spec = _kernel_spec()
    if spec is None:
        pytest.fail(f"the {KERNEL} kernelspec is not installed in {sys.prefix}: run make setup")
    assert Path(spec["argv"][0]) == Path(sys.executable), "the kernel must run this environment's Python"
    assert spec["display_name"] == KERNEL_DISPLAY_NAME
    root = tmp_path_factory.mktemp("lab")
    project, env = _project_copy(root), _jupyter_env(root)
    port, token, log = _free_port(), secrets.token_hex(16), root / "jupyterlab.log"
    command = [
        *(sys.executable, "-m", "jupyterlab", "--no-browser", "--ip", "127.0.0.1", "--port", str(port)),
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={project}",
        f"--MappingKernelManager.default_kernel_name={KERNEL}",
        *(["--allow-root"] if os.geteuid() == 0 else []),
    ]
    with log.open("w") as out:
        server = subprocess.Popen(command, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT)
    running = Lab(f"http://127.0.0.1:{port}", token, project, log)
    try:
        _wait_until_up(running, server)
        yield running
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_until_up(lab: Lab, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab stopped (exit {server.returncode}):\n{lab.log.read_text()[-3000:]}")
        try:
            lab.api("GET", "/api/status")
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within 90 s:\n{lab.log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lab-screenshots")


@pytest.fixture(scope="module")
def page(lab: Lab) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium())
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


# ----------------------------------------------------------------------------- a person's steps


@dataclass
class Outcome:
    """A notebook after Run All: its saved file and what its outputs show."""

    notebook: nbformat.NotebookNode
    text: str  # every output's visible text
    widgets: int  # progress widgets rendered
    tables: list[str]  # captions of the workbook's tables
    images: int  # plots
    screenshot: Path


def run_in_lab(page: Any, lab: Lab, name: str, values: dict[str, Any], screenshots: Path) -> Outcome:
    """Open ``notebooks/<name>.ipynb`` (a fresh workspace), type ``values`` into its parameters
    cell, Run All, wait for the kernel to go idle, save; screenshot of the end state."""
    page.goto(f"{lab.url}/lab/workspaces/{name}/tree/notebooks/{name}.ipynb?token={lab.token}")
    panel = page.locator(".jp-NotebookPanel").first
    _wait_for_the_kernel(page, panel)
    if values:
        _type_parameters(page, lab.project / "notebooks" / f"{name}.ipynb", values)
    _menu(page, "Run", "runmenu:run-all")
    page.wait_for_function(_FINISHED, timeout=RUN_SECONDS * 1000, polling=250)
    _menu(page, "File", "docmanager:save")
    page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty").wait_for(state="detached", timeout=30_000)
    shot = screenshots / f"{name}.png"
    _screenshot_whole_notebook(page, shot)
    outputs = panel.locator(OUTPUT)
    return Outcome(
        notebook=nbformat.read(lab.project / "notebooks" / f"{name}.ipynb", as_version=4),
        text="\n".join(outputs.all_text_contents()),
        widgets=panel.locator(f"{OUTPUT}:not(.lm-mod-hidden) .widget-hprogress").count(),
        tables=panel.locator(f"{OUTPUT} table.dlrm-nb caption").all_text_contents(),
        images=panel.locator(f"{OUTPUT} img").count(),
        screenshot=shot,
    )


def _wait_for_the_kernel(page: Any, panel: Any) -> None:
    """The notebook's own kernel (named in its metadata) started, no kernel chooser, and idle."""
    from playwright.sync_api import TimeoutError as Timeout

    name = panel.locator(".jp-KernelName").first
    try:
        panel.locator(".jp-KernelName", has_text=KERNEL_DISPLAY_NAME).first.wait_for(timeout=90_000)
    except Timeout:  # say what the toolbar and any dialog show instead
        dialog = page.locator(".jp-Dialog").all_inner_texts()
        pytest.fail(f"the notebook's kernel is {name.inner_text()!r}, not {KERNEL_DISPLAY_NAME!r}; {dialog}")
    panel.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=90_000)


#: Run All is over: the first cell has run, no cell waits or runs ([*]), the kernel is idle.
_FINISHED = """() => {
  const prompts = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')]
    .map(p => p.textContent.trim());
  const status = document.querySelector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator');
  return prompts.length > 0 && /\\[\\d+\\]/.test(prompts[0]) && !prompts.some(p => p.includes('*'))
    && status !== null && status.dataset.status === 'idle';
}"""


def _menu(page: Any, menu: str, command: str) -> None:
    page.locator(".lm-MenuBar-item", has_text=re.compile(f"^{menu}$")).click()
    page.locator(f".lm-Menu-item[data-command='{command}']").first.click()


def _type_parameters(page: Any, path: Path, values: dict[str, Any]) -> None:
    """Select the parameters cell's text and type it anew with ``values`` changed, as a person
    editing those lines would leave it."""
    cell = next(
        c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", [])
    )
    source = cell.source
    literals = {
        name: json.dumps(value) if isinstance(value, (str, list)) else repr(value)
        for name, value in values.items()
    }
    for name, literal in literals.items():
        source, found = re.subn(
            rf"^({name}: [^=]+= )(.*?)(  #.*)?$", rf"\g<1>{literal}\g<3>", source, flags=re.M
        )
        assert found == 1, f"{path.name}: no parameter {name}"
    editor = page.locator(".jp-CodeCell", has_text=cell.source.splitlines()[0]).locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(source)
    page.keyboard.press("Escape")
    shown = editor.inner_text()
    for name, literal in literals.items():
        assert re.search(rf"^{name}: [^=]+= {re.escape(literal)}  #", shown, re.M), shown


def _screenshot_whole_notebook(page: Any, path: Path) -> None:
    """The notebook from its top, the page made as tall as its cells (at most 8000 px), so one
    picture shows every cell as a person scrolling through it sees them."""
    height = page.evaluate(_CELLS_HEIGHT)
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": min(8000, max(size["height"], height))})
    page.evaluate("() => document.querySelectorAll('.jp-WindowedPanel-outer').forEach(e => e.scrollTo(0, 0))")
    page.wait_for_timeout(500)
    page.screenshot(path=path)
    page.set_viewport_size(size)


#: How tall the page must be to show every cell: the notebook's top plus its cells, and a margin.
_CELLS_HEIGHT = """() => {
  const outer = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer');
  const cells = [...outer.querySelectorAll('.jp-Cell')];
  const last = cells[cells.length - 1];
  return Math.ceil(outer.getBoundingClientRect().top + last.offsetTop + last.offsetHeight + 80);
}"""


def _errors_and_warnings(notebook: nbformat.NotebookNode) -> list[str]:
    """Every error output and every text written to stderr (tracebacks, library warnings)."""
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                found.append(f"{cell.id}: {output.ename}: {output.evalue}")
            elif output.output_type == "stream" and output.name == "stderr":
                found.append(f"{cell.id}: stderr: {output.text[:500]}")
    return found


def _every_cell_ran(notebook: nbformat.NotebookNode) -> bool:
    return all(c.execution_count for c in notebook.cells if c.cell_type == "code")


# ----------------------------------------------------------------------------- the tests, in order


@slow
def test_screenshots_folder(screenshots: Path, lab: Lab, capsys: pytest.CaptureFixture) -> None:
    with capsys.disabled():
        print(f"\nJupyterLab screenshots: {screenshots}\nJupyterLab project: {lab.project}")
    assert screenshots.is_dir()


@slow
def test_01_prepare_data_makes_the_run_folder(page, lab: Lab, screenshots: Path) -> None:
    outcome = run_in_lab(page, lab, "01_prepare_data", TINY["01_prepare_data"], screenshots)
    assert _errors_and_warnings(outcome.notebook) == []
    assert _every_cell_ran(outcome.notebook)
    assert outcome.widgets >= 1, "no progress widget was rendered"
    assert "Data" in outcome.tables
    assert "synthetic" in outcome.text and "test pairs" in outcome.text
    runs = lab.runs()
    assert len(runs) == 1 and runs[0].name.startswith("nb-")
    data = json.loads((runs[0] / "data.json").read_text())
    assert data["source"] == "synthetic" and data["test_pairs"] == 1000
    lab.shut_down_kernels()


@slow
def test_02_load_model_trains_and_scores(page, lab: Lab, screenshots: Path) -> None:
    outcome = run_in_lab(page, lab, "02_load_model", TINY["02_load_model"], screenshots)
    assert _errors_and_warnings(outcome.notebook) == []
    assert _every_cell_ran(outcome.notebook)
    assert outcome.widgets >= 1, "no progress widget was rendered"
    assert "Model" in outcome.tables and any(c.startswith("precision auto") for c in outcome.tables)
    assert outcome.images == 1  # model-only throughput
    (run,) = lab.runs()
    assert (run / "model.json").is_file() and (run / "model_throughput.json").is_file()
    lab.shut_down_kernels()


@slow
def test_03_run_scenarios_in_every_scenario(page, lab: Lab, screenshots: Path) -> None:
    outcome = run_in_lab(page, lab, "03_run_scenarios", TINY["03_run_scenarios"], screenshots)
    assert _errors_and_warnings(outcome.notebook) == []
    assert _every_cell_ran(outcome.notebook)
    assert outcome.widgets >= 1, "no progress widget was rendered"
    assert any(c.startswith("LoadGen runs") for c in outcome.tables)
    for scenario in ("SingleStream", "MultiStream", "Server", "Offline"):
        assert scenario in outcome.text
    assert outcome.images == 2  # latency, QPS search
    (run,) = lab.runs()
    assert (run / "Offline" / "performance" / "metrics.json").is_file()
    lab.shut_down_kernels()


@slow
def test_04_accuracy_against_the_targets(page, lab: Lab, screenshots: Path) -> None:
    outcome = run_in_lab(page, lab, "04_accuracy", TINY["04_accuracy"], screenshots)
    assert _errors_and_warnings(outcome.notebook) == []
    assert _every_cell_ran(outcome.notebook)
    assert any(c.startswith("Accuracy (Offline") for c in outcome.tables)
    assert "MLPerf 99.9% target" in outcome.text and outcome.images == 1
    (run,) = lab.runs()
    assert (run / "Offline" / "accuracy" / "metrics.json").is_file()
    lab.shut_down_kernels()


@slow
def test_05_report_shows_everything(page, lab: Lab, screenshots: Path) -> None:
    outcome = run_in_lab(page, lab, "05_report", TINY["05_report"], screenshots)
    assert _errors_and_warnings(outcome.notebook) == []
    assert _every_cell_ran(outcome.notebook)
    for caption in ("Headline", "Data", "Model"):
        assert caption in outcome.tables
    assert outcome.images == 4  # latency, QPS search, ROC, throughput
    lab.shut_down_kernels()


@slow
def test_00_start_here_lists_the_run_and_says_what_next(page, lab: Lab, screenshots: Path) -> None:
    outcome = run_in_lab(page, lab, "00_start_here", TINY["00_start_here"], screenshots)
    assert _errors_and_warnings(outcome.notebook) == []
    assert _every_cell_ran(outcome.notebook)
    (run,) = lab.runs()
    assert any(c.startswith("Runs in") for c in outcome.tables)
    assert run.name in outcome.text and "01 02 03 04" in outcome.text
    assert "Next:" in outcome.text and "05_report" in outcome.text
    assert (lab.project / "results" / "index.html").is_file()
    link = page.locator(f"{OUTPUT} a", has_text="index.html").first
    assert link.get_attribute("href").split("?")[0] == f"{lab.url}/files/results/index.html"
    link.click()  # JupyterLab opens the page in a tab of its own
    page.locator(".lm-TabBar-tab", has_text="index.html").first.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    page.screenshot(path=screenshots / "00_start_here-index.png")
    lab.shut_down_kernels()


@slow
def test_a_bad_parameter_shows_one_line_not_a_traceback(page, lab: Lab, screenshots: Path) -> None:
    bad = lab.project / "notebooks" / "04_accuracy_bad_value.ipynb"
    shutil.copy(ROOT / "notebooks" / "04_accuracy.ipynb", bad)
    outcome = run_in_lab(page, lab, bad.stem, {"scenario": "offline"}, screenshots)
    errors = [o for c in outcome.notebook.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert len(errors) == 1 and errors[0].ename == "ParameterError"
    shown = page.locator(f"{OUTPUT}[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
    assert len(shown) == 1, shown
    lines = shown[0].strip().splitlines()
    assert lines == [
        "ParameterError: 04_accuracy: parameter scenario = 'offline' is not valid: use one of "
        "SingleStream, MultiStream, Server, Offline"
    ], shown[0]
    assert "Traceback" not in outcome.text
    lab.shut_down_kernels()


# ----------------------------------------------------------------------------- the start page alone


def _fake_run(root: Path, name: str, *, model: bool = False) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "data.json").write_text(json.dumps({"source": "synthetic", "test_pairs": 10}))
    if model:
        (run / "model.json").write_text(json.dumps({"precision": "fp32", "device": "cpu"}))
    return run


def test_the_start_page_parameters_are_checked(tmp_path: Path) -> None:
    import papermill

    from dlrm_nb.exceptions import ParameterError
    from dlrm_nb.workbook import start

    found = papermill.inspect_notebook(str(ROOT / "notebooks" / "00_start_here.ipynb"))
    assert list(found) == ["results_dir"] and found["results_dir"]["help"]
    assert start.check_parameters("00_start_here", {"results_dir": ""}).results_dir == ""
    assert start.check_parameters("00_start_here", {"results_dir": str(tmp_path)}).results_dir
    with pytest.raises(ParameterError, match=r"results_dir = 3 is a int; need a str"):
        start.check_parameters("00_start_here", {"results_dir": 3})
    with pytest.raises(ParameterError, match=r"results_dir = '/nonexistent/results' is not valid"):
        start.check_parameters("00_start_here", {"results_dir": "/nonexistent/results"})
    with pytest.raises(ParameterError, match="'results_dir' is missing"):
        start.check_parameters("00_start_here", {})
    with pytest.raises(ParameterError, match="is not the start page"):
        start.check_parameters("01_prepare_data", {"results_dir": ""})


def test_the_start_page_without_runs_says_to_begin_with_01(tmp_path: Path) -> None:
    from dlrm_nb.workbook import start

    results = start.load_results(start.check_parameters("00_start_here", {"results_dir": str(tmp_path)}))
    assert "No runs yet" in start.runs_table(results)._repr_html_()
    assert "comes with the first run" in start.comparison(results)._repr_html_()
    assert 'href="01_prepare_data.ipynb"' in start.next_step(results).text
    assert not (tmp_path / "index.html").exists()


def test_the_start_page_lists_runs_newest_first_with_what_comes_next(tmp_path: Path, monkeypatch) -> None:
    from dlrm_nb.workbook import start

    _fake_run(tmp_path, "older", model=True)
    time.sleep(0.01)
    newest = _fake_run(tmp_path, "newest")
    (newest / "report.html").write_text("<html></html>")
    monkeypatch.chdir(tmp_path)
    results = start.load_results(start.StartParameters(results_dir=str(tmp_path)))
    assert [start.steps_done(run) for run in results.runs] == [
        ["01_prepare_data", "02_load_model"],
        ["01_prepare_data", "05_report"],
    ]
    table = start.runs_table(results)
    assert [str(row[0].text) for row in table.rows] == [
        '<a href="newest">newest</a>',
        '<a href="older">older</a>',
    ]
    assert table.rows[0][6].text == '<a href="newest/report.html">report</a>'
    assert table.rows[1][7].text == '<a href="03_run_scenarios.ipynb">03_run_scenarios</a>'
    assert "the newest run, <b>newest</b>, has no model yet" in start.next_step(results).text
    assert 'href="02_load_model.ipynb"' in start.next_step(results).text
    assert 'href="index.html"' in start.comparison(results).text and (tmp_path / "index.html").is_file()
    assert start.comparison_figure(results).__class__.__name__ == "Note"  # no results to plot yet
