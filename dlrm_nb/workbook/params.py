"""Notebook parameters: what each notebook takes, checked right after papermill injects them.

Each notebook's tagged ``parameters`` cell holds the defaults (``name: type = value  # help``);
the dataclasses here hold the types and the rules, and a test keeps the two in step. A params
file (``params/*.yaml``) has one section per notebook, named like the notebook without its
number::

    description: what this set is for
    prepare_data: {data_source: synthetic, synthetic_rows_per_day: 2000}
    load_model: {precision: int8}

The pipeline passes ``run_dir`` and ``progress`` to every notebook itself.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from dlrm_nb.data.criteo import DATASETS
from dlrm_nb.data.preprocess import ENGINES, check_sub_sample_rate
from dlrm_nb.exceptions import InvalidValueError, ParameterError
from dlrm_nb.loadgen.aggregation import TRACE_KINDS
from dlrm_nb.loadgen.settings import SCENARIOS, check_durations, check_latency_ms
from dlrm_nb.model.auto import check_precision_or_auto
from dlrm_nb.model.dlrm import PRESETS
from dlrm_nb.model.settings import check_device_name, check_precision, check_table_precision
from dlrm_nb.progress import PROGRESS_STYLES

#: The workbook's notebooks, in the order the pipeline runs them.
NOTEBOOKS = ("01_prepare_data", "02_load_model", "03_run_scenarios", "04_accuracy", "05_report")
NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
#: Parameters the pipeline sets in every notebook; params files may not set them.
PIPELINE_PARAMETERS = ("run_dir", "progress")
DATA_SOURCES = ("synthetic", "raw", "prepared")


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
        _at_least(self, "synthetic_days", 0)
        _at_least(self, "synthetic_rows_per_day", 1)
        _at_least(self, "synthetic_test_day_rows", 2)
        _at_least(self, "dask_workers", 1)
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
        for name in ("train_epochs", "train_max_minutes"):
            if not getattr(self, name) > 0:
                raise _bad(self, name, "need a number > 0")
        for name in ("train_batch_size", "aggregation_size", "max_pairs"):
            _at_least(self, name, 1)
        for name in ("max_pairs_in_split", "score_pairs"):
            _at_least(self, name, 0)
        if not self.throughput_seconds >= 0:
            raise _bad(self, "throughput_seconds", "need a number >= 0 (0 skips the measurement)")
        if any(size < 1 for size in self.throughput_batch_sizes):
            raise _bad(self, "throughput_batch_sizes", "every batch size must be >= 1")
        _delegate(self, "precision", lambda precision: check_precision_or_auto(precision, self.device))
        _delegate(self, "table_precision", check_table_precision)
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
        _at_least(self, "min_duration_ms", 0)
        _delegate(self, "max_duration_ms", lambda longest: check_durations(self.min_duration_ms, longest))
        _at_least(self, "performance_sample_count", 0)
        _at_least(self, "qps_search_probe_ms", 100)
        _at_least(self, "instances", 0)
        if not self.server_target_qps >= 0:
            allowed = "need a number >= 0 (0: the QPS search's best, else half the Offline rate)"
            raise _bad(self, "server_target_qps", allowed)
        _delegate(self, "server_latency_ms", check_latency_ms)
        if not self.qps_search_budget_s > 0:
            raise _bad(self, "qps_search_budget_s", "need a number of seconds > 0")


@dataclass(frozen=True)
class AccuracyParameters(CommonParameters):
    scenario: str
    performance_sample_count: int

    def check(self) -> None:
        super().check()
        _choice(self, "scenario", SCENARIOS)
        _at_least(self, "performance_sample_count", 0)


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


def _at_least(parameters: CommonParameters, name: str, minimum: int) -> None:
    if getattr(parameters, name) < minimum:
        raise _bad(parameters, name, f"need a whole number >= {minimum}")


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


def load_params_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a params file: ``{"description": str, <section>: {key: value}}``; checks its shape."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ParameterError(f"cannot read params file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ParameterError(f"{path} is not valid YAML: {exc}") from exc
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
    import yaml

    out = {key: dict(value) if isinstance(value, dict) else value for key, value in params.items()}
    for key, text in overrides:
        value = yaml.safe_load(text) if text.strip() else ""
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
