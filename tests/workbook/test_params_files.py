"""Params files and run ids: duplicate keys, bounds of every number, the disk space a synthetic
set needs, run ids that stay single folder names inside results/."""

from __future__ import annotations

import os
from collections import namedtuple
from pathlib import Path

import pytest

from dlrm_nb.exceptions import DlrmNbError, ParameterError
from dlrm_nb.workbook import params as params_module
from dlrm_nb.workbook.params import (
    apply_overrides,
    check_free_space,
    check_parameters,
    load_params_file,
    notebook_defaults,
    prepare_data_bytes,
    resolve_parameters,
    synthetic_lines,
)
from dlrm_nb.workbook.runs import RUN_ID_RULE, check_run_id, new_run_id, open_run_dir, run_dir_in


def test_a_key_given_twice_names_the_key_and_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text("prepare_data:\n  synthetic_days: 3\n  write_train: true\n  synthetic_days: 99999\n")
    with pytest.raises(ParameterError) as caught:
        load_params_file(path)
    assert str(caught.value) == (
        f"{path}: 'synthetic_days' is given twice, on line 2 and line 4; keep one (YAML would silently use "
        "the last)"
    )
    path.write_text("load_model: {arch: kaggle}\nreport: {title: x}\nload_model:\n  arch: tb00_40M\n")
    with pytest.raises(ParameterError, match="'load_model' is given twice, on line 1 and line 3"):
        load_params_file(path)


def test_the_same_key_in_two_sections_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "run_scenarios: {performance_sample_count: 64}\naccuracy: {performance_sample_count: 64}\n"
    )
    assert load_params_file(path)["accuracy"] == {"performance_sample_count": 64}


def test_broken_yaml_is_one_line_with_its_place(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("prepare_data:\n  synthetic_days: [3\n")
    with pytest.raises(ParameterError) as caught:
        load_params_file(path)
    assert str(caught.value).startswith(f"{path} is not valid YAML, line 3 column 1: ")
    assert "\n" not in str(caught.value)
    with pytest.raises(ParameterError, match=r"-p synthetic_days \[1 is not valid YAML, line 1 column 3"):
        apply_overrides({}, [("synthetic_days", "[1")])
    with pytest.raises(ParameterError, match="'a' is given twice, on line 1 and line 1"):
        apply_overrides({}, [("scenarios", "{a: 1, a: 2}")])


@pytest.mark.parametrize(
    ("section", "name", "value", "allowed"),
    [
        ("prepare_data", "synthetic_days", 99999, "from 0 to 24 (0: the dataset's own"),
        ("prepare_data", "synthetic_days", -1, "from 0 to 24"),
        ("prepare_data", "synthetic_rows_per_day", 10**12, "from 1 to 200,000,000"),
        ("prepare_data", "synthetic_test_day_rows", 1, "from 2 to 200,000,000"),
        ("prepare_data", "synthetic_seed", -5, "from 0 to 4,294,967,295"),
        ("prepare_data", "max_ind_range", 2**40, "from -1 to 2,147,483,647 (-1 or 0: no hashing)"),
        ("prepare_data", "dask_workers", 10_000, "from 1 to 256"),
        ("load_model", "train_epochs", float("nan"), "need a number > 0 and <= 1,000"),
        ("load_model", "train_max_minutes", float("inf"), "need a number > 0 and <= 10,080"),
        ("load_model", "train_batch_size", 0, "from 1 to 1,048,576"),
        ("load_model", "max_pairs", 2**30, "from 1 to 1,048,576"),
        ("load_model", "score_pairs", -1, "from 0 to 1,000,000,000 (0: no quick score)"),
        (
            "load_model",
            "throughput_seconds",
            3600.0,
            "need a number >= 0 and <= 600 (0 skips the measurement)",
        ),
        (
            "load_model",
            "throughput_batch_sizes",
            [64, 2**21],
            "every batch size must be a whole number from 1",
        ),
        ("run_scenarios", "min_duration_ms", 10**12, "from 0 to 86,400,000"),
        ("run_scenarios", "qps_search_probe_ms", 10, "from 100 to 86,400,000"),
        ("run_scenarios", "server_target_qps", -1.0, "need a number >= 0 and <= 1e+07"),
        ("run_scenarios", "server_latency_ms", 1e9, "need a number > 0 and <= 60,000"),
        ("run_scenarios", "qps_search_budget_s", 0.0, "need a number > 0 and <= 86,400"),
        ("run_scenarios", "instances", 5000, "from 0 to 1,024 (0: automatic)"),
        ("accuracy", "performance_sample_count", 10**9, "from 0 to 100,000,000"),
    ],
)
def test_every_number_has_bounds_that_the_message_names(section: str, name: str, value, allowed: str) -> None:
    with pytest.raises(ParameterError) as caught:
        resolve_parameters({section: {name: value}})
    message = str(caught.value)
    assert f"parameter {name} = {value!r} is not valid: " in message and allowed in message, message


def test_the_published_params_files_stay_within_the_bounds() -> None:
    root = Path(__file__).resolve().parents[2] / "params"
    for path in sorted(root.glob("*.yaml")):
        params = load_params_file(path)
        params["prepare_data"] = {**params.get("prepare_data", {}), "data_source": "synthetic"}
        params["load_model"] = {**params.get("load_model", {}), "checkpoint": "", "device": "cpu"}
        params["load_model"]["precision"] = "fp32"
        params["load_model"]["throughput_precisions"] = ["fp32"]
        params["prepare_data"]["write_train"] = True
        resolve_parameters(params, source=str(path))


def _prepare_parameters(**values) -> params_module.PrepareDataParameters:
    defaults = notebook_defaults("01_prepare_data")
    return check_parameters("01_prepare_data", {**defaults, "progress": "text", **values})


def test_the_disk_estimate_of_a_synthetic_set() -> None:
    assert synthetic_lines("terabyte", 3, 400, 2000) == (800, 2000)
    assert synthetic_lines("terabyte", 0, 10, 5) == (230, 5)  # 0: the 24 Terabyte days
    assert synthetic_lines("kaggle", 7, 100, 2) == (600, 100)
    params = _prepare_parameters(synthetic_days=3, synthetic_rows_per_day=400, synthetic_test_day_rows=2000)
    assert prepare_data_bytes(params) == 2800 * 240 + (2000 + 3 * 800) * 160
    gz = _prepare_parameters(
        synthetic_days=3, synthetic_rows_per_day=400, synthetic_gzip=True, write_train=False
    )
    assert prepare_data_bytes(gz) == (800 + 10_000) * 100 + 10_000 * 160
    assert prepare_data_bytes(_prepare_parameters(data_source="prepared", prepared_dir="/")) == 0


def test_a_set_larger_than_the_free_space_is_refused_up_front(tmp_path: Path, monkeypatch) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(params_module.shutil, "disk_usage", lambda path: usage(10**9, 0, 5_000_000))
    check_free_space(tmp_path / "new" / "folder", 4_000_000, "synth")  # fits
    with pytest.raises(DlrmNbError) as caught:
        check_free_space(
            tmp_path / "new" / "folder", 4_600_000_000, "params/x.yaml (synthetic data, prepared)"
        )
    assert str(caught.value) == (
        "params/x.yaml (synthetic data, prepared) would write about 4.6 GB into "
        f"{tmp_path / 'new' / 'folder'}, but only 5.0 MB is free there; make it smaller (fewer days or rows) "
        "or free some space"
    )
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("run_id", ["../../x", "/tmp/x", ".", "..", "", "a/b", "a b", "x\n", "ü"])
def test_a_run_id_is_a_single_folder_name(run_id: str) -> None:
    with pytest.raises(ParameterError) as caught:
        check_run_id(run_id)
    assert str(caught.value) == f"run id {run_id!r} is not valid: {RUN_ID_RULE}"


def test_run_folders_always_lie_inside_the_results_folder(tmp_path: Path) -> None:
    root = tmp_path / "results"
    root.mkdir()
    assert run_dir_in(root, "smoke-1.a_b") == root.resolve() / "smoke-1.a_b"
    (root / "escape").symlink_to(tmp_path)  # a link in results/ that leads out of it
    with pytest.raises(ParameterError, match=r"run id 'escape' leads to .*, outside .*results"):
        run_dir_in(root, "escape")
    with pytest.raises(ParameterError, match="not valid"):
        run_dir_in(root, "../x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_new_run_ids_follow_the_rule() -> None:
    assert check_run_id(new_run_id("my params (v2)")).startswith("my-params--v2--")
    assert check_run_id(new_run_id("..")).startswith("run-")


def test_a_bare_run_dir_in_a_notebook_is_a_run_id_in_results(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "README.md").write_text("runs\n")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")  # where JupyterLab runs the notebooks
    assert open_run_dir("my-run", create=True) == tmp_path / "results" / "my-run"
    with pytest.raises(ParameterError, match=r"run id '\.\.' is not valid"):
        open_run_dir("..", create=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DlrmNbError, match="is a file, not a folder"):
        open_run_dir(str(tmp_path / "file"), create=True)
    assert sorted(os.listdir(tmp_path / "results")) == ["README.md", "my-run"]
