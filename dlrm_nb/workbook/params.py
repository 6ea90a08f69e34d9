"""Notebook parameters: what each notebook takes, checked right after papermill injects them.

Each notebook's tagged ``parameters`` cell holds the defaults (``name: type = value  # help``);
the dataclasses here hold the types and the rules, and a test keeps the two in step. A params
file (``params/*.yaml``) has one section per notebook, named like the notebook without its
number::

    description: what this set is for
    prepare_data: {data_source: synthetic, synthetic_rows_per_day: 2000}
    load_model: {precision: int8}

The pipeline passes ``run_dir`` and ``progress`` to every notebook itself. A key given twice
in a params file is an error (YAML would keep the last one silently); every number has bounds,
and a synthetic data set that would not fit on the disk is refused before anything is written.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import shutil
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from dlrm_nb.data.criteo import DATASETS
from dlrm_nb.data.preprocess import ENGINES, check_sub_sample_rate
from dlrm_nb.exceptions import DlrmNbError, InvalidValueError, ParameterError
from dlrm_nb.loadgen.aggregation import TRACE_KINDS
from dlrm_nb.loadgen.settings import SCENARIOS, check_durations, check_latency_ms
from dlrm_nb.model.auto import check_precision_or_auto
from dlrm_nb.model.dlrm import PRESETS
from dlrm_nb.model.settings import (
    check_device_name,
    check_precision,
    check_table_cache,
    check_table_precision,
)
from dlrm_nb.progress import PROGRESS_STYLES

#: The workbook's notebooks, in the order the pipeline runs them.
NOTEBOOKS = ("01_prepare_data", "02_load_model", "03_run_scenarios", "04_accuracy", "05_report")
NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
#: Parameters the pipeline sets in every notebook; params files may not set them.
PIPELINE_PARAMETERS = ("run_dir", "progress")
DATA_SOURCES = ("synthetic", "raw", "prepared")

# Bounds of the numeric parameters: beyond them a value is a typo, not a setting.
#: Criteo Terabyte has 24 days (the last is the test day); Kaggle is cut into 7.
MAX_DAYS = 24
#: A Criteo Terabyte day has at most about 200 million lines.
MAX_ROWS_PER_DAY = 200_000_000
MAX_SEED = 2**32 - 1
#: Ids are int32 in the prepared files.
MAX_IND_RANGE = 2**31 - 1
MAX_WORKERS = 256
MAX_PAIRS = 1_000_000_000  # pairs of a split (the Terabyte test day has 89 million)
MAX_BATCH = 2**20  # pairs per forward or training step
MAX_SAMPLES = 100_000_000  # LoadGen samples (MLPerf's performance_sample_count is 204,800)
MAX_DURATION_MS = 86_400_000  # a day
MAX_SECONDS = 86_400.0
MAX_QPS = 10_000_000.0
MAX_LATENCY_MS = 60_000.0
MAX_INSTANCES = 1024
MAX_EPOCHS = 1000.0
MAX_MINUTES = 10_080.0  # a week
MAX_THROUGHPUT_SECONDS = 600.0


def section_name(notebook: str) -> str:
    """``02_load_model`` -> ``load_model``: the params-file section of a notebook."""
    return notebook.split("_", 1)[1]


# ----------------------------------------------------------------------------- per notebook


@dataclass(frozen=True)
class CommonParameters:
    run_dir: str
    progress: str

    def check(self) -> None:
        _choice(self, "progress", PROGRESS_STYLES)


@dataclass(frozen=True)
class PrepareDataParameters(CommonParameters):
    data_source: str
    raw_dir: str
    prepared_dir: str
    dataset: str
    synthetic_days: int
    synthetic_rows_per_day: int
    synthetic_test_day_rows: int
    synthetic_seed: int
    synthetic_gzip: bool
    max_ind_range: int
    sub_sample_rate: float
    write_train: bool
    engine: str
    dask_workers: int
    dask_scheduler: str
    skip_malformed: bool

    def check(self) -> None:
        super().check()
        _choice(self, "data_source", DATA_SOURCES)
        _choice(self, "dataset", tuple(DATASETS))
        _choice(self, "engine", ENGINES)
        _whole(
            self, "synthetic_days", 0, MAX_DAYS, "0: the dataset's own, 24 Terabyte days or 7 Kaggle splits"
        )
        _whole(self, "synthetic_rows_per_day", 1, MAX_ROWS_PER_DAY)
        _whole(self, "synthetic_test_day_rows", 2, MAX_ROWS_PER_DAY)
        _whole(self, "synthetic_seed", 0, MAX_SEED)
        _whole(self, "max_ind_range", -1, MAX_IND_RANGE, "-1 or 0: no hashing")
        _whole(self, "dask_workers", 1, MAX_WORKERS)
        _delegate(self, "sub_sample_rate", check_sub_sample_rate)
        if self.data_source == "raw":
            _existing_folder(self, "raw_dir", "the folder holding day_0..day_23 or train.txt")
        if self.data_source == "prepared":
            _existing_folder(self, "prepared_dir", "a folder made by 01_prepare_data or `dlrm-nb prepare`")


@dataclass(frozen=True)
class LoadModelParameters(CommonParameters):
    checkpoint: str
    arch: str
    train_epochs: float
    train_batch_size: int
    train_max_minutes: float
    train_seed: int
    precision: str
    table_precision: str
    table_cache: str
    table_cache_dir: str
    device: str
    compile: bool
    aggregation: str
    aggregation_size: int
    max_pairs_in_split: int
    max_pairs: int
    score_pairs: int
    throughput_batch_sizes: list[int]
    throughput_precisions: list[str]
    throughput_seconds: float

    def check(self) -> None:
        super().check()
        if self.checkpoint and not Path(self.checkpoint).expanduser().is_file():
            raise _bad(self, "checkpoint", "no such file; give a .pt file, or '' to train the demo model")
        _choice(self, "arch", tuple(PRESETS))
        _choice(self, "aggregation", TRACE_KINDS)
        _delegate(self, "device", check_device_name)
        _number(self, "train_epochs", 0.0, MAX_EPOCHS)
        _number(self, "train_max_minutes", 0.0, MAX_MINUTES)
        _whole(self, "train_seed", 0, MAX_SEED)
        for name in ("train_batch_size", "aggregation_size", "max_pairs"):
            _whole(self, name, 1, MAX_BATCH)
        _whole(self, "max_pairs_in_split", 0, MAX_PAIRS, "0: the whole split")
        _whole(self, "score_pairs", 0, MAX_PAIRS, "0: no quick score")
        _number(self, "throughput_seconds", 0.0, MAX_THROUGHPUT_SECONDS, "0 skips the measurement", zero=True)
        if not all(1 <= size <= MAX_BATCH for size in self.throughput_batch_sizes):
            raise _bad(
                self,
                "throughput_batch_sizes",
                f"every batch size must be a whole number from 1 to {MAX_BATCH:,}",
            )
        _delegate(self, "precision", lambda precision: check_precision_or_auto(precision, self.device))
        _delegate(self, "table_precision", check_table_precision)
        _delegate(self, "table_cache", check_table_cache)
        _delegate(
            self, "throughput_precisions", lambda names: [check_precision(n, self.device) for n in names]
        )


@dataclass(frozen=True)
class RunScenariosParameters(CommonParameters):
    scenarios: list[str]
    min_duration_ms: int
    max_duration_ms: int
    server_target_qps: float
    server_latency_ms: float
    performance_sample_count: int
    official: bool
    instances: int
    qps_search: bool
    qps_search_budget_s: float
    qps_search_probe_ms: int

    def check(self) -> None:
        super().check()
        for scenario in self.scenarios:
            if scenario not in SCENARIOS:
                raise _bad(self, "scenarios", f"{scenario!r} is not one of {', '.join(SCENARIOS)}")
        if len(set(self.scenarios)) != len(self.scenarios):
            raise _bad(self, "scenarios", "name each scenario once")
        _whole(self, "min_duration_ms", 0, MAX_DURATION_MS)
        _delegate(self, "max_duration_ms", lambda longest: check_durations(self.min_duration_ms, longest))
        _whole(self, "max_duration_ms", 1, MAX_DURATION_MS)
        _whole(self, "performance_sample_count", 0, MAX_SAMPLES, "0: MLPerf's count capped by the data")
        _whole(self, "qps_search_probe_ms", 100, MAX_DURATION_MS)
        _whole(self, "instances", 0, MAX_INSTANCES, "0: automatic")
        allowed = "0: the QPS search's best, else half the Offline rate"
        _number(self, "server_target_qps", 0.0, MAX_QPS, allowed, zero=True)
        _delegate(self, "server_latency_ms", check_latency_ms)
        _number(self, "server_latency_ms", 0.0, MAX_LATENCY_MS)
        _number(self, "qps_search_budget_s", 0.0, MAX_SECONDS)


@dataclass(frozen=True)
class AccuracyParameters(CommonParameters):
    scenario: str
    performance_sample_count: int

    def check(self) -> None:
        super().check()
        _choice(self, "scenario", SCENARIOS)
        _whole(self, "performance_sample_count", 0, MAX_SAMPLES, "0: MLPerf's count capped by the data")


@dataclass(frozen=True)
class ReportParameters(CommonParameters):
    title: str


PARAMETERS: Mapping[str, type[CommonParameters]] = MappingProxyType(
    {
        "01_prepare_data": PrepareDataParameters,
        "02_load_model": LoadModelParameters,
        "03_run_scenarios": RunScenariosParameters,
        "04_accuracy": AccuracyParameters,
        "05_report": ReportParameters,
    }
)


def check_parameters(notebook: str, namespace: Mapping[str, Any]) -> Any:
    """The parameters of ``notebook`` taken from ``namespace`` (a notebook's ``globals()``),
    type-checked and validated; raises :class:`ParameterError` naming the bad value."""
    if notebook not in PARAMETERS:
        raise ParameterError(f"notebook {notebook!r} is not one of {', '.join(NOTEBOOKS)}")
    cls = PARAMETERS[notebook]
    hints = typing.get_type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):
        if field.name not in namespace:
            raise ParameterError(f"{notebook}: parameter {field.name!r} is missing from the parameters cell")
        values[field.name] = _typed(notebook, field.name, namespace[field.name], hints[field.name])
    parameters = cls(**values)
    parameters.check()
    return parameters


def _typed(notebook: str, name: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ParameterError(
                f"{notebook}: parameter {name} = {value!r} is a {type(value).__name__}; need a list of "
                f"{item.__name__}"
            )
        return [_typed(notebook, f"{name}[{i}]", v, item) for i, v in enumerate(value)]
    ok = (
        isinstance(value, bool)
        if hint is bool
        else isinstance(value, (int, float)) and not isinstance(value, bool)
        if hint is float
        else isinstance(value, hint) and not isinstance(value, bool)
    )
    if not ok:
        raise ParameterError(
            f"{notebook}: parameter {name} = {value!r} is a {type(value).__name__}; need a {hint.__name__}"
        )
    return float(value) if hint is float else value


def _bad(parameters: CommonParameters, name: str, allowed: str) -> ParameterError:
    notebook = next(nb for nb, cls in PARAMETERS.items() if cls is type(parameters))
    value = getattr(parameters, name)
    return ParameterError(f"{notebook}: parameter {name} = {value!r} is not valid: {allowed}")


def _delegate(parameters: CommonParameters, name: str, check: Callable[[Any], object]) -> None:
    """Apply the rule the package itself uses for this value; name the notebook and parameter."""
    try:
        check(getattr(parameters, name))
    except InvalidValueError as exc:
        raise _bad(parameters, name, exc.allowed) from None


def _choice(parameters: CommonParameters, name: str, allowed: tuple[str, ...]) -> None:
    if getattr(parameters, name) not in allowed:
        raise _bad(parameters, name, f"use one of {', '.join(allowed)}")


def _whole(parameters: CommonParameters, name: str, low: int, high: int, note: str = "") -> None:
    """A whole number from ``low`` to ``high`` (``note`` says what special values mean)."""
    if not low <= getattr(parameters, name) <= high:
        raise _bad(
            parameters, name, f"need a whole number from {low:,} to {high:,}" + (f" ({note})" if note else "")
        )


def _number(
    parameters: CommonParameters, name: str, low: float, high: float, note: str = "", *, zero: bool = False
) -> None:
    """A number above ``low`` (or equal to it with ``zero``) and at most ``high``; NaN never passes."""
    value = getattr(parameters, name)
    ok = (low <= value if zero else low < value) and value <= high
    if not ok:
        bound = ">=" if zero else ">"
        raise _bad(
            parameters,
            name,
            f"need a number {bound} {low:g} and <= {high:,g}" + (f" ({note})" if note else ""),
        )


def _existing_folder(parameters: CommonParameters, name: str, what: str) -> None:
    value = getattr(parameters, name)
    if not value or not Path(value).expanduser().is_dir():
        raise _bad(parameters, name, f"not an existing folder; give {what}")


# ----------------------------------------------------------------------------- notebooks and params files


def notebook_path(notebook: str) -> Path:
    return NOTEBOOK_DIR / f"{notebook}.ipynb"


def notebook_defaults(notebook: str) -> dict[str, Any]:
    """The defaults of a notebook's ``parameters`` cell, as Python values."""
    import papermill

    found = papermill.inspect_notebook(str(notebook_path(notebook)))
    return {name: ast.literal_eval(info["default"]) for name, info in found.items()}


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping that gives a key twice (plain YAML keeps the last one without a word)."""

    def __init__(self, key: object, first_line: int, second_line: int) -> None:
        self.key, self.first_line, self.second_line = key, first_line, second_line
        super().__init__(problem=f"{key!r} is given twice, on line {first_line} and line {second_line}")


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key given twice in one mapping, naming both lines."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKeyError(key, seen[key], line)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(text: str, source: str) -> Any:
    """``text`` read as YAML with :class:`UniqueKeyLoader`; errors are one ParameterError line
    naming ``source`` and the line."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except DuplicateKeyError as exc:
        raise ParameterError(
            f"{source}: {exc.key!r} is given twice, on line {exc.first_line} and line {exc.second_line}; "
            "keep one (YAML would silently use the last)"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ParameterError(f"{source} is not valid YAML{where}: {problem}") from None


def load_params_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a params file: ``{"description": str, <section>: {key: value}}``; checks its shape."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ParameterError(f"cannot read params file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ParameterError(
            f"params file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    data = read_yaml(text, str(path))
    data = {} if data is None else data
    if not isinstance(data, dict):
        found = type(data).__name__
        raise ParameterError(f"{path}: need a mapping of sections ({_sections()}), found a {found}")
    for section, values in data.items():
        if section == "description":
            if not isinstance(values, str):
                raise ParameterError(f"{path}: description must be text")
            continue
        if section not in [section_name(nb) for nb in NOTEBOOKS]:
            raise ParameterError(f"{path}: section {section!r} is not one of: description, {_sections()}")
        if values is None:
            data[section] = {}
        elif not isinstance(values, dict):
            raise ParameterError(f"{path}: section {section} must map parameter names to values")
    return data


def _sections() -> str:
    return ", ".join(section_name(nb) for nb in NOTEBOOKS)


def apply_overrides(params: dict[str, Any], overrides: list[tuple[str, str]]) -> dict[str, Any]:
    """``-p KEY VALUE`` on top of a params file. ``KEY`` is ``section.name`` or a bare ``name``
    (every notebook declaring it); ``VALUE`` is read as YAML (``4``, ``true``, ``[a, b]``)."""
    out = {key: dict(value) if isinstance(value, dict) else value for key, value in params.items()}
    for key, text in overrides:
        value = read_yaml(text, f"-p {key} {text}") if text.strip() else ""
        if "." in key:
            section, name = key.split(".", 1)
            if section not in [section_name(nb) for nb in NOTEBOOKS]:
                raise ParameterError(f"-p {key}: section {section!r} is not one of {_sections()}")
            targets = [section]
        else:
            name = key
            targets = [section_name(nb) for nb in NOTEBOOKS if name in _field_names(nb)]
        if name in PIPELINE_PARAMETERS:
            raise ParameterError(f"-p {key}: {name} is set by the pipeline (use --run-id / --progress)")
        if not targets:
            raise ParameterError(f"-p {key}: no notebook has a parameter {name!r}")
        for section in targets:
            out.setdefault(section, {})[name] = value
    return out


def _field_names(notebook: str) -> list[str]:
    return [field.name for field in dataclasses.fields(PARAMETERS[notebook])]


def resolve_parameters(params: dict[str, Any], source: str = "params") -> dict[str, dict[str, Any]]:
    """Every notebook's full parameters (defaults, then ``params``), checked before anything runs.

    Raises :class:`ParameterError` for a key no notebook declares (papermill would only warn) and
    for values that do not pass the notebook's checks. ``run_dir`` stays as given (``""``).
    """
    resolved = {}
    for notebook in NOTEBOOKS:
        defaults = notebook_defaults(notebook)
        given = params.get(section_name(notebook), {})
        for name in given:
            if name in PIPELINE_PARAMETERS:
                raise ParameterError(f"{source}: {section_name(notebook)}.{name} is set by the pipeline")
            if name not in defaults:
                raise ParameterError(
                    f"{source}: {section_name(notebook)}.{name} is not a parameter of {notebook}.ipynb; "
                    f"its parameters are: {', '.join(n for n in defaults if n not in PIPELINE_PARAMETERS)}"
                )
        values = {**defaults, **given}
        check_parameters(notebook, {**values, "progress": "text"})
        resolved[notebook] = values
    _check_across_notebooks(resolved, source)
    return resolved


def _check_across_notebooks(resolved: dict[str, dict[str, Any]], source: str) -> None:
    """What only shows when two notebooks' parameters meet: refused before anything runs."""
    data, model = resolved["01_prepare_data"], resolved["02_load_model"]
    if not model["checkpoint"] and data["data_source"] != "prepared" and not data["write_train"]:
        raise ParameterError(
            f"{source}: load_model.checkpoint is '' (train the demo model) but prepare_data.write_train is "
            "false, so there is no training split: set write_train: true or give a checkpoint"
        )


#: Parameters holding paths; the pipeline makes them absolute (notebooks run in the run folder).
PATH_PARAMETERS = ("raw_dir", "prepared_dir", "checkpoint")


def absolute_paths(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with every non-empty path parameter expanded (``~``) and made absolute against
    the current folder, which is where the user typed them."""
    out = {}
    for section, values in params.items():
        if isinstance(values, dict):
            values = {
                name: str(Path(value).expanduser().resolve())
                if name in PATH_PARAMETERS and isinstance(value, str) and value
                else value
                for name, value in values.items()
            }
        out[section] = values
    return out


# ----------------------------------------------------------------------------- disk space

#: Bytes of one synthetic raw line (measured: about 245 plain, 100 gzip-compressed).
RAW_LINE_BYTES = 240
GZIP_LINE_BYTES = 100
#: Bytes of one prepared pair in each file that holds it (40 int32: label, 13 dense, 26 ids).
PREPARED_PAIR_BYTES = 160
#: Copies of a training pair that preparing with write_train keeps (processed, reordered, .bin).
TRAIN_COPIES = 3


def synthetic_lines(dataset: str, days: int, rows_per_day: int, test_day_rows: int) -> tuple[int, int]:
    """(training lines, test lines) of a synthetic set (``days`` 0: the dataset's own)."""
    days = days or DATASETS[dataset].days
    if dataset == "terabyte":
        return (days - 1) * rows_per_day, test_day_rows
    total = days * rows_per_day  # Kaggle: train.txt cut into `days` parts, the last one tested
    return total - total // days, total // days


def synthetic_raw_bytes(dataset: str, days: int, rows_per_day: int, test_day_rows: int, gzip: bool) -> int:
    """About how many bytes the raw files of a synthetic set take."""
    train, test = synthetic_lines(dataset, days, rows_per_day, test_day_rows)
    return (train + test) * (GZIP_LINE_BYTES if gzip else RAW_LINE_BYTES)


def prepare_data_bytes(params: PrepareDataParameters) -> int:
    """About how many bytes 01_prepare_data writes for synthetic data: the raw files and the
    prepared splits (0 for other sources: their size follows from files that exist already)."""
    if params.data_source != "synthetic":
        return 0
    days, rows, test_rows = (
        params.synthetic_days,
        params.synthetic_rows_per_day,
        params.synthetic_test_day_rows,
    )
    train, test = synthetic_lines(params.dataset, days, rows, test_rows)
    prepared = test + (train * TRAIN_COPIES if params.write_train else 0)
    raw = synthetic_raw_bytes(params.dataset, days, rows, test_rows, params.synthetic_gzip)
    return raw + prepared * PREPARED_PAIR_BYTES


def check_free_space(folder: str | os.PathLike, need: int, what: str) -> None:
    """Refuse, before anything is written, an output of about ``need`` bytes that the disk
    holding ``folder`` (or its nearest existing parent) has no room for."""
    existing = Path(folder).expanduser().resolve()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if need > free:
        raise DlrmNbError(
            f"{what} would write about {_size(need)} into {folder}, but only {_size(free)} is free there; "
            "make it smaller (fewer days or rows) or free some space"
        )


def _size(n_bytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n_bytes < 1000:
            return f"{n_bytes:,.0f} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    return f"{n_bytes:,.1f} TB"


# ------------------------------------------------------------ the parameter reference (docs/parameters.md)

REFERENCE_BEGIN = (
    "<!-- parameter reference: made by `dlrm-nb params --write docs/parameters.md`; edit the notebooks -->"
)
REFERENCE_END = "<!-- end of parameter reference -->"


def parameter_reference() -> str:
    """Markdown tables of every notebook's parameters (name, type, default, help), read from the
    notebooks' ``parameters`` cells with papermill, as ``papermill --help-notebook`` shows them."""
    import papermill

    parts = []
    for notebook in NOTEBOOKS:
        found = papermill.inspect_notebook(str(notebook_path(notebook)))
        parts += [
            f"#### `{notebook}.ipynb` (params section `{section_name(notebook)}`)",
            "",
            "| parameter | type | default | meaning |",
            "| --- | --- | --- | --- |",
        ]
        parts += [
            f"| `{name}` | {info['inferred_type_name']} | `{info['default']}` | {_cell(info['help'])} |"
            for name, info in found.items()
        ]
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def with_reference(readme_text: str) -> str:
    """``readme_text`` with the block between the reference markers replaced by a fresh reference."""
    start, end = readme_text.find(REFERENCE_BEGIN), readme_text.find(REFERENCE_END)
    if start < 0 or end < start:
        raise ParameterError(f"the file has no block between {REFERENCE_BEGIN!r} and {REFERENCE_END!r}")
    head = readme_text[: start + len(REFERENCE_BEGIN)]
    return f"{head}\n\n{parameter_reference()}\n{readme_text[end:]}"
