"""Run folders: ``results/<run-id>/`` and the small records the notebooks hand to each other.

A run folder holds everything one run made. The notebooks never share Python state; each writes
a record (``data.json``, ``model.json``) that the next ones read, so any notebook can run alone
against an existing run folder. The folder layout::

    results/<run-id>/
        run.json                  parameters, versions, git commit, machine, notebook timings
        data.json                 01: where the prepared data is and how it was made
        model.json                02: checkpoint, precision, device, aggregation, quick AUC
        model_throughput.json     02: model-only pairs/s per precision and batch size
        dlrm_trace_of_aggregated_samples.txt   02: the aggregation trace (upstream's format)
        <Scenario>/<mode>/        03, 04: user.conf, LoadGen logs, metrics.json, sut_latencies_ns.npy
        qps_search/               03: qps_search.json and one folder per probe
        NN_<name>.ipynb           executed notebooks (pipeline runs)
        report.html               05 rendered without code

This module names every file of that layout. The names inside a LoadGen run's folder belong to
the LoadGen layer that writes them (and cannot import from here); they are imported below, so
each name is spelled once and listed here.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlrm_nb.exceptions import DlrmNbError, ParameterError
from dlrm_nb.fileio import write_json

# the names inside LoadGen runs, re-exported (``X as X``) as part of this layout
from dlrm_nb.loadgen.aggregation import TRACE_NAME as TRACE_NAME
from dlrm_nb.loadgen.mlperf_logs import ACCURACY_LOG_NAME as ACCURACY_LOG_NAME
from dlrm_nb.loadgen.mlperf_logs import DETAIL_NAME as DETAIL_NAME
from dlrm_nb.loadgen.mlperf_logs import SUMMARY_NAME as SUMMARY_NAME
from dlrm_nb.loadgen.qps_search import QPS_SEARCH_RECORD as QPS_SEARCH_RECORD
from dlrm_nb.loadgen.runner import METRICS_NAME as METRICS_NAME
from dlrm_nb.loadgen.runner import SUT_LATENCIES_NAME as SUT_LATENCIES_NAME
from dlrm_nb.loadgen.runner import USER_CONF_NAME as USER_CONF_NAME
from dlrm_nb.loadgen.settings import MODES, SCENARIOS

RESULTS_README = "README.md"
DATA_RECORD = "data.json"
MODEL_RECORD = "model.json"
THROUGHPUT_RECORD = "model_throughput.json"
RUN_RECORD = "run.json"
QPS_SEARCH_DIR = "qps_search"
REPORT_NAME = "report.html"
INDEX_NAME = "index.html"


def results_root(start: str | os.PathLike | None = None) -> Path:
    """The project's ``results/`` folder: the nearest ``results/`` (with its README) at or above
    ``start`` (default: the current folder, e.g. ``notebooks/`` in JupyterLab), else the one
    beside the installed package."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "results" / RESULTS_README).is_file():
            return folder / "results"
    return Path(__file__).resolve().parents[2] / "results"


#: What a run id may hold: it names one folder directly inside ``results/``.
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
RUN_ID_RULE = "a run id is a single folder name of letters, digits, '-', '_' and '.' (not '.' or '..')"


def new_run_id(prefix: str = "run") -> str:
    """``<prefix>-YYYYmmdd-HHMMSS`` (local time); characters a run id may not hold become ``-``."""
    prefix = re.sub(r"[^A-Za-z0-9_.-]", "-", prefix).strip(".") or "run"
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_run_id(run_id: str) -> str:
    """``run_id`` when it is a single folder name (:data:`RUN_ID_RULE`); raises ParameterError."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id) or run_id in (".", ".."):
        raise ParameterError(f"run id {run_id!r} is not valid: {RUN_ID_RULE}")
    return run_id


def run_dir_in(root: str | os.PathLike, run_id: str) -> Path:
    """The folder of run ``run_id`` in the results folder ``root``, resolved; it always lies
    directly inside ``root`` (checked after resolving, so no link or name leads elsewhere)."""
    root = Path(root).expanduser().resolve()
    path = (root / check_run_id(run_id)).resolve()
    if path.parent != root:
        raise ParameterError(f"run id {run_id!r} leads to {path}, outside {root}: {RUN_ID_RULE}")
    return path


def create_run_dir(run_dir: str | os.PathLike) -> Path:
    """Make a new, empty run folder; an existing one is refused (runs are never overwritten)."""
    path = Path(run_dir)
    if path.exists():
        raise DlrmNbError(f"run folder {path} exists; runs are never overwritten: choose a new run id")
    path.mkdir(parents=True)
    return path


def list_runs(root: str | os.PathLike | None = None) -> list[Path]:
    """Run folders under ``root`` (default :func:`results_root`), oldest first: by the start time
    ``run.json`` records, else by when ``data.json`` was written (reruns of later notebooks do not
    reorder runs)."""
    root = Path(root) if root is not None else results_root()
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if (p / RUN_RECORD).is_file() or (p / DATA_RECORD).is_file()]
    return sorted(runs, key=lambda p: (_started(p), p.name))


def _started(run: Path) -> float:
    record = read_optional(run, RUN_RECORD) or {}
    if record.get("started"):
        return time.mktime(time.strptime(record["started"][:19], "%Y-%m-%dT%H:%M:%S"))
    return (run / DATA_RECORD).stat().st_mtime if (run / DATA_RECORD).exists() else 0.0


def open_run_dir(run_dir: str, *, create: bool = False) -> Path:
    """The run folder a notebook works in.

    ``run_dir`` given: that folder (made if ``create``, else it must exist); a bare name is a
    run id, the folder ``results/<run_id>``. ``""``: a new ``results/nb-<time>`` folder if
    ``create`` (01_prepare_data run alone), else the newest run under ``results/`` (the other
    notebooks, run alone in JupyterLab after 01).
    """
    if run_dir:
        path = _run_path(run_dir)
        if path.exists() and not path.is_dir():
            raise DlrmNbError(f"run_dir {run_dir!r} is a file, not a folder; give a results/<run-id> folder")
        if create:
            path.mkdir(parents=True, exist_ok=True)
        elif not path.is_dir():
            raise DlrmNbError(f"run_dir {run_dir!r} is not a folder; give a results/<run-id> folder")
        return path
    if create:
        return create_run_dir(results_root() / new_run_id("nb"))
    runs = list_runs()
    if not runs:
        raise DlrmNbError(
            f"run_dir is '' and {results_root()} holds no run yet; run 01_prepare_data first or set run_dir"
        )
    return runs[-1]


def _run_path(run_dir: str) -> Path:
    """A path (it holds a separator or ``~``) as it is; a bare name as a run id in ``results/``."""
    if os.sep in run_dir or (os.altsep and os.altsep in run_dir) or run_dir.startswith("~"):
        return Path(run_dir).expanduser().resolve()
    return run_dir_in(results_root(), run_dir)


def write_record(run_dir: str | os.PathLike, name: str, record: dict[str, Any]) -> Path:
    """Write one of the run's JSON records atomically."""
    path = Path(run_dir) / name
    write_json(path, record)
    return path


def read_record(run_dir: str | os.PathLike, name: str, *, made_by: str) -> dict[str, Any]:
    """Read a record another notebook wrote; a missing one names the notebook to run first."""
    path = Path(run_dir) / name
    if not path.is_file():
        raise DlrmNbError(f"{path} is missing: run {made_by} for this run folder first")
    return json.loads(path.read_text())


def read_optional(run_dir: str | os.PathLike, name: str) -> dict[str, Any] | None:
    path = Path(run_dir) / name
    return json.loads(path.read_text()) if path.is_file() else None


@dataclass
class LoadedRun:
    """Everything one run folder holds, read from its files (missing parts are None / empty)."""

    path: Path
    record: dict[str, Any] | None  # run.json (pipeline runs)
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


def load_run(run_dir: str | os.PathLike) -> LoadedRun:
    """Read a run folder (``""``: the newest under ``results/``)."""
    path = open_run_dir(str(run_dir))
    run = LoadedRun(
        path=path,
        record=read_optional(path, RUN_RECORD),
        data=read_optional(path, DATA_RECORD),
        model=read_optional(path, MODEL_RECORD),
        throughput=read_optional(path, THROUGHPUT_RECORD),
        qps_search=read_optional(path / QPS_SEARCH_DIR, QPS_SEARCH_RECORD),
    )
    for scenario in SCENARIOS:
        for mode in MODES:
            metrics = read_optional(path / scenario / mode, METRICS_NAME)
            if metrics is not None:
                run.metrics.setdefault(scenario, {})[mode] = metrics
        latencies = path / scenario / "performance" / SUT_LATENCIES_NAME
        if latencies.is_file():
            run.latencies_ns[scenario] = np.load(latencies)
    return run
