"""The notebooks as committed: clean, thin, and in step with the params files and the package."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import typing
from pathlib import Path

import nbformat
import papermill
import pytest

from dlrm_nb.workbook.params import (
    NOTEBOOKS,
    PARAMETERS,
    PIPELINE_PARAMETERS,
    REFERENCE_BEGIN,
    REFERENCE_END,
    ParameterError,
    apply_overrides,
    check_parameters,
    load_params_file,
    notebook_defaults,
    notebook_path,
    parameter_reference,
    resolve_parameters,
    section_name,
)
from dlrm_nb.workbook.start import START_NOTEBOOK

ROOT = Path(__file__).resolve().parents[2]
PARAMS_FILES = sorted((ROOT / "params").glob("*.yaml"))
#: Every notebook in notebooks/: the start page (JupyterLab only) and the pipeline's five.
ALL_NOTEBOOKS = (START_NOTEBOOK, *NOTEBOOKS)
#: The kernel the notebooks name: the kernelspec `make setup` installs inside .venv.
KERNEL = "dlrm-nb"
#: Keys holding paths to the user's data: replaced by existing stand-ins before values are checked.
PATH_KEYS = {"raw_dir": "dir", "prepared_dir": "dir", "checkpoint": "file"}


def _parameters_cell(notebook: str) -> nbformat.NotebookNode:
    nb = nbformat.read(notebook_path(notebook), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{notebook}: need exactly one cell tagged 'parameters'"
    return cells[0]


def test_every_workbook_notebook_exists_and_nothing_else() -> None:
    found = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert found == sorted(ALL_NOTEBOOKS)


@pytest.mark.parametrize("notebook", ALL_NOTEBOOKS)
def test_notebook_is_committed_clean(notebook: str) -> None:
    """No outputs, no execution counts, no volatile metadata, no machine paths (nbdev-style)."""
    raw = notebook_path(notebook).read_text()
    nb = nbformat.reads(raw, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{notebook}: cell {cell.id} has outputs"
            assert cell.execution_count is None, f"{notebook}: cell {cell.id} has an execution count"
        assert set(cell.metadata) <= {"tags"}, f"{notebook}: cell {cell.id} metadata {dict(cell.metadata)}"
    assert set(nb.metadata) == {"kernelspec", "language_info"}
    assert nb.metadata.kernelspec.name == KERNEL
    assert not re.search(r"/(home|root|tmp|work)/", raw), f"{notebook} holds a machine path"


def test_git_tracks_clean_notebooks_only() -> None:
    """What git holds is what the test above read (no stale executed copy committed)."""
    tracked = subprocess.run(
        ["git", "ls-files", "--", "*.ipynb"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout (or notebooks not committed yet)")
    assert sorted(tracked) == sorted(f"notebooks/{nb}.ipynb" for nb in ALL_NOTEBOOKS)


@pytest.mark.parametrize("notebook", ALL_NOTEBOOKS)
def test_notebook_is_thin(notebook: str) -> None:
    """Imports, the parameters, one validation call, then short calls: no loops or branches."""
    nb = nbformat.read(notebook_path(notebook), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[1].metadata.get("tags", [])
    assert code[2].source == f'params = check_parameters("{notebook}", globals())'
    for cell in code[3:]:
        lines = cell.source.splitlines()
        assert len(lines) <= 5, f"{notebook}: cell {cell.id} is {len(lines)} lines"
        assert not re.search(r"^\s*(for|while|if|def|class|with|try)\b", cell.source, re.M), cell.source


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_parameter_has_a_type_a_default_and_help(notebook: str) -> None:
    source = _parameters_cell(notebook).source
    found = papermill.inspect_notebook(str(notebook_path(notebook)))
    assert len(found) == len(source.splitlines()), "papermill could not read every line"
    hints = typing.get_type_hints(PARAMETERS[notebook])
    for name, info in found.items():
        assert info["help"], f"{notebook}.{name} has no help comment"
        assert info["inferred_type_name"] == _type_name(hints[name]), name


def _type_name(hint: object) -> str:
    if typing.get_origin(hint) is list:
        return f"list[{typing.get_args(hint)[0].__name__}]"
    return hint.__name__


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_parameters_are_the_checked_ones(notebook: str) -> None:
    """The notebook's parameters cell and the dataclass that checks it name the same parameters."""
    names = list(papermill.inspect_notebook(str(notebook_path(notebook))))
    assert names == [field.name for field in dataclasses.fields(PARAMETERS[notebook])]
    assert names[: len(PIPELINE_PARAMETERS)] == list(PIPELINE_PARAMETERS)


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_defaults_pass_their_own_checks(notebook: str) -> None:
    check_parameters(notebook, notebook_defaults(notebook))


@pytest.mark.parametrize("params_file", PARAMS_FILES, ids=lambda p: p.name)
def test_every_params_key_exists_in_the_notebook_that_receives_it(params_file: Path) -> None:
    params = load_params_file(params_file)
    for notebook in NOTEBOOKS:
        declared = papermill.inspect_notebook(str(notebook_path(notebook)))
        for key in params.get(section_name(notebook), {}):
            assert key in declared, f"{params_file.name}: {section_name(notebook)}.{key} is not in {notebook}"
            assert key not in PIPELINE_PARAMETERS


@pytest.mark.parametrize("params_file", PARAMS_FILES, ids=lambda p: p.name)
def test_every_params_file_passes_the_checks(params_file: Path, tmp_path: Path) -> None:
    """Values, not only keys: with stand-ins for the user's data paths, every set is accepted."""
    params = load_params_file(params_file)
    (tmp_path / "data").mkdir()
    (tmp_path / "model.pt").write_bytes(b"")
    for values in params.values():
        if isinstance(values, dict):
            for key, kind in PATH_KEYS.items():
                if values.get(key):
                    values[key] = str(tmp_path / ("data" if kind == "dir" else "model.pt"))
    resolved = resolve_parameters(params, source=params_file.name)
    assert list(resolved) == list(NOTEBOOKS)


def test_the_demo_and_smoke_sets_cover_every_scenario() -> None:
    for name in ("demo.yaml", "smoke.yaml"):
        resolved = resolve_parameters(load_params_file(ROOT / "params" / name))
        assert set(resolved["03_run_scenarios"]["scenarios"]) == {
            "SingleStream",
            "MultiStream",
            "Server",
            "Offline",
        }
        assert resolved["03_run_scenarios"]["qps_search"] is True
        assert resolved["01_prepare_data"]["data_source"] == "synthetic"
        assert resolved["02_load_model"]["checkpoint"] == ""


def test_a_typo_in_a_params_file_stops_before_anything_runs(tmp_path: Path) -> None:
    bad = tmp_path / "typo.yaml"
    bad.write_text("load_model:\n  precison: int8\n")
    with pytest.raises(
        ParameterError, match=r"typo.yaml: load_model.precison is not a parameter of 02_load_model"
    ):
        resolve_parameters(load_params_file(bad), source=str(bad))
    bad.write_text("load_modle:\n  precision: int8\n")
    with pytest.raises(ParameterError, match="section 'load_modle' is not one of"):
        load_params_file(bad)


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("load_model", {"precision": "fp16"}, "precision = 'fp16' is not valid: use one of fp32, bf16, int8"),
        ("load_model", {"precision": "int8", "device": "cuda"}, "int8 .* CPU only"),
        ("load_model", {"max_pairs": "8k"}, r"max_pairs = '8k' is a str; need a int"),
        ("load_model", {"throughput_batch_sizes": 64}, "is a int; need a list of int"),
        ("run_scenarios", {"scenarios": ["Offline", "Batch"]}, "'Batch' is not one of SingleStream"),
        ("run_scenarios", {"max_duration_ms": 10, "min_duration_ms": 100}, "max_duration_ms = 10 .* >= 100"),
        ("prepare_data", {"data_source": "raw", "raw_dir": "/nonexistent/criteo"}, "raw_dir = '/nonexistent"),
        ("prepare_data", {"sub_sample_rate": 1.0}, "sub_sample_rate = 1.0 is not valid"),
        ("accuracy", {"scenario": "offline"}, "scenario = 'offline' is not valid"),
    ],
)
def test_bad_values_name_the_notebook_value_and_what_is_allowed(
    section: str, values: dict, message: str
) -> None:
    with pytest.raises(ParameterError, match=message):
        resolve_parameters({section: values})


def test_overrides_read_yaml_and_reach_every_notebook_declaring_the_name() -> None:
    params = apply_overrides(
        {"load_model": {"precision": "fp32"}},
        [("precision", "int8"), ("run_scenarios.scenarios", "[Offline]"), ("performance_sample_count", "64")],
    )
    assert params["load_model"]["precision"] == "int8"
    assert params["run_scenarios"]["scenarios"] == ["Offline"]
    assert params["run_scenarios"]["performance_sample_count"] == 64
    assert params["accuracy"]["performance_sample_count"] == 64
    with pytest.raises(ParameterError, match="no notebook has a parameter 'precison'"):
        apply_overrides({}, [("precison", "int8")])
    with pytest.raises(ParameterError, match="run_dir is set by the pipeline"):
        apply_overrides({}, [("run_dir", "/tmp/x")])


def test_docs_parameter_reference_matches_the_notebooks() -> None:
    page = (ROOT / "docs" / "parameters.md").read_text()
    start, end = page.index(REFERENCE_BEGIN) + len(REFERENCE_BEGIN), page.index(REFERENCE_END)
    assert page[start:end].strip() == parameter_reference().strip(), (
        "docs/parameters.md is stale: run `dlrm-nb params --write docs/parameters.md`"
    )


def test_a_misspelled_section_in_an_override_is_refused() -> None:
    with pytest.raises(ParameterError, match="section 'load' is not one of prepare_data, load_model"):
        apply_overrides({}, [("load.precision", "int8")])


def test_training_the_demo_model_needs_the_training_split() -> None:
    with pytest.raises(ParameterError, match="write_train is false, so there is no training split"):
        resolve_parameters({"prepare_data": {"write_train": False}, "load_model": {"checkpoint": ""}})


def test_paths_become_absolute_against_the_folder_they_were_typed_in(tmp_path: Path, monkeypatch) -> None:
    from dlrm_nb.workbook.params import absolute_paths

    monkeypatch.chdir(tmp_path)
    out = absolute_paths(
        {"prepare_data": {"raw_dir": "raw", "prepared_dir": ""}, "load_model": {"arch": "kaggle"}}
    )
    assert out["prepare_data"] == {"raw_dir": str(tmp_path / "raw"), "prepared_dir": ""}
    assert out["load_model"] == {"arch": "kaggle"}
