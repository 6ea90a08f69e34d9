"""The dlrm-nb command line, end to end on the golden files and tiny synthetic data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import synthetic_prepared

from dlrm_nb.cli import main
from dlrm_nb.model.checkpoint import load_checkpoint
from dlrm_nb.workbook.params import REFERENCE_BEGIN, REFERENCE_END, parameter_reference


def _one_error_line(err: str, command: str) -> str:
    """stderr of a refused command: one line ``dlrm-nb <command>: error: ...``, no traceback."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"dlrm-nb {command}: error: "), err
    return lines[0]


def test_accuracy_prints_upstreams_line(golden: Path, capsys) -> None:
    folder = golden / "accuracy"
    assert main(["accuracy", str(folder / "mlperf_log_accuracy.json")]) == 0
    assert capsys.readouterr().out.strip() == (folder / "accuracy_dlrm_output.txt").read_text().strip()
    assert (
        main(
            [
                "accuracy",
                str(folder / "mlperf_log_accuracy_predictions_only.json"),
                "--day-23-file",
                str(golden / "raw" / "day_23"),
                "--aggregation-trace-file",
                str(folder / "dlrm_trace_of_aggregated_samples.txt"),
            ]
        )
        == 0
    )
    assert (
        capsys.readouterr().out.strip()
        == (folder / "accuracy_dlrm_output_day23_mode.txt").read_text().strip()
    )


def test_score_prints_the_auc_and_refuses_to_overwrite(golden: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "p.npy"
    args = [
        "score",
        "--checkpoint",
        str(golden / "model_tiny" / "checkpoint.pt"),
        "--data",
        str(golden / "prep_M1000_r0"),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("AUC=77.003%, pairs=500")
    assert main(args) == 2
    assert "exists; choose another name or pass --overwrite" in capsys.readouterr().err


@pytest.mark.slow
def test_loadgen_offline_run(golden: Path, tmp_path: Path, capsys) -> None:
    assert (
        main(
            [
                "loadgen",
                "--checkpoint",
                str(golden / "model_tiny" / "checkpoint.pt"),
                "--data",
                str(golden / "prep_M1000_r0"),
                "--run-dir",
                str(tmp_path),
                "--scenario",
                "Offline",
                "--aggregation",
                "fixed",
                "--aggregation-size",
                "5",
                "--min-duration-ms",
                "300",
                "--max-duration-ms",
                "2000",
            ]
        )
        == 0
    )
    assert "Offline performance:" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "Offline" / "performance" / "metrics.json").read_text())
    assert metrics["scenario"] == "Offline" and metrics["samples_per_s"] > 0
    assert (tmp_path / "dlrm_trace_of_aggregated_samples.txt").read_text().startswith("0, 5, 5\n")


def test_bad_loadgen_arguments_exit_before_loading(golden: Path, tmp_path: Path, capsys) -> None:
    code = main(
        [
            "loadgen",
            "--checkpoint",
            "missing.pt",
            "--data",
            str(tmp_path),
            "--run-dir",
            str(tmp_path),
            "--scenario",
            "Server",
            "--target-qps",
            "-3",
        ]
    )
    assert code == 2 and "target_qps -3.0 must be > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["loadgen", "--checkpoint", "x", "--data", "y", "--run-dir", "z", "--scenario", "Batch"])


def test_synth_writes_the_days_and_the_sidecar(tmp_path: Path, capsys) -> None:
    out = tmp_path / "raw"
    args = ["synth", str(out), "--days", "3", "--rows-per-day", "40", "--test-day-rows", "60", "--seed", "7"]
    assert main(args) == 0
    printed = capsys.readouterr().out.strip()
    sidecar = json.loads((out / "synthetic.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["day_0", "day_1", "day_2", "synthetic.json"]
    assert [len((out / f"day_{d}").read_bytes().splitlines()) for d in range(3)] == [40, 40, 60]
    assert sidecar["arguments"]["seed"] == 7 and sidecar["lines"] == 140
    assert printed == f"wrote synthetic terabyte data to {out} (oracle AUC: {sidecar['oracle_auc']})"
    assert 0.5 < sidecar["oracle_auc"]["test_day"] <= 1.0
    again = tmp_path / "again"  # same seed, same bytes
    assert main(["synth", str(again), *args[2:]]) == 0
    assert (again / "day_2").read_bytes() == (out / "day_2").read_bytes()


def test_synth_refuses_zero_days(tmp_path: Path, capsys) -> None:
    assert main(["synth", str(tmp_path / "raw"), "--days", "0"]) == 2
    line = _one_error_line(capsys.readouterr().err, "synth")
    assert "days=0" in line
    assert not (tmp_path / "raw").exists()


def test_synth_refuses_a_folder_holding_day_files(tmp_path: Path, capsys) -> None:
    (tmp_path / "day_0").write_text("mine\n")
    assert main(["synth", str(tmp_path), "--days", "2", "--rows-per-day", "10"]) == 2
    line = _one_error_line(capsys.readouterr().err, "synth")
    assert "day_0 already exists" in line
    assert (tmp_path / "day_0").read_text() == "mine\n"  # nothing of the user's is overwritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["day_0"]


@pytest.fixture(scope="module")
def tiny_prepared(tmp_path_factory) -> Path:
    """Prepared data with a training split, as tests/model/test_train.py makes it, but tiny: 3 days."""
    root = tmp_path_factory.mktemp("tiny")
    return synthetic_prepared(root, rows_per_day=300, test_day_rows=400, max_ind_range=10_000)


@pytest.mark.slow
def test_train_demo_writes_a_checkpoint_and_prints_the_auc(
    tiny_prepared: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "demo.pt"
    args = ["train-demo", str(tiny_prepared), str(out), "--arch", "kaggle", "--batch-size", "64"]
    assert main([*args, "--minutes", "1", "--seed", "2"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    found = re.fullmatch(
        rf"wrote {re.escape(str(out))}: (\d+) steps in \d+ s \([\d,]+ pairs/s\), test AUC=([\d.]+)%", line
    )
    assert found, line
    model, metadata = load_checkpoint(out)
    assert int(found[1]) == metadata["nbatches"] > 0  # every step ran: --minutes 1 is plenty
    assert float(found[2]) == pytest.approx(100 * metadata["test_auc"], abs=0.0005)
    assert model.arch.embedding_dim == 16 and isinstance(
        next(iter(model.state_dict().values())), torch.Tensor
    )
    assert main([*args, "--minutes", "1"]) == 2  # a checkpoint is never overwritten
    assert "exists" in _one_error_line(capsys.readouterr().err, "train-demo")


@pytest.mark.slow
def test_qps_search_prints_the_best_qps_and_records_the_probes(golden: Path, tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "search"
    args = [
        "qps-search",
        "--checkpoint",
        str(golden / "model_tiny" / "checkpoint.pt"),
        "--data",
        str(golden / "prep_M1000_r0"),
        "--run-dir",
        str(run_dir),
        "--aggregation",
        "fixed",
        "--aggregation-size",
        "5",
        "--budget-s",
        "10",
        "--probe-ms",
        "500",
    ]
    assert main(args) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    found = re.fullmatch(
        r"highest valid Server QPS at 30 ms: (\S+) \((\d+) probes, (\d+) s; (.+)\) -> (.+)", line
    )
    assert found, line
    assert found[5] == str(run_dir / "qps_search.json")
    record = json.loads((run_dir / "qps_search.json").read_text())
    assert record["probes"] and int(found[2]) == len(record["probes"])
    assert found[1] == str(record["best_qps"])
    assert record["budget_s"] == 10 and record["latency_ms"] == 30 and record["offline_samples_per_s"] > 0
    for probe in record["probes"]:
        assert probe["qps"] > 0 and probe["p99_ms"] > 0 and isinstance(probe["valid"], bool)
        assert (run_dir / f"probe_{probe['qps']:.2f}" / "Server" / "performance" / "metrics.json").exists()
    valid = [p["qps"] for p in record["probes"] if p["valid"]]
    assert record["best_qps"] == (max(valid) if valid else None)
    assert (run_dir / "offline" / "Offline" / "performance" / "metrics.json").exists()


def test_params_prints_the_reference(capsys) -> None:
    assert main(["params"]) == 0
    printed = capsys.readouterr().out
    assert printed == parameter_reference()
    assert "#### `01_prepare_data.ipynb`" in printed and "| `data_source` | str |" in printed


def test_params_write_updates_the_block_between_the_markers(tmp_path: Path, capsys) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nintro\n\n{REFERENCE_BEGIN}\nstale table\n{REFERENCE_END}\n\n## After\n")
    assert main(["params", "--write", str(readme)]) == 0
    assert capsys.readouterr().out.strip() == f"updated the parameter reference in {readme}"
    text = readme.read_text()
    assert "stale table" not in text
    assert (
        text
        == f"# Title\n\nintro\n\n{REFERENCE_BEGIN}\n\n{parameter_reference()}\n{REFERENCE_END}\n\n## After\n"
    )
    assert main(["params", "--write", str(readme)]) == 0  # a second write changes nothing
    assert readme.read_text() == text
    capsys.readouterr()
    plain = tmp_path / "plain.md"
    plain.write_text("no markers here\n")
    assert main(["params", "--write", str(plain)]) == 2
    assert "has no block between" in _one_error_line(capsys.readouterr().err, "params")
    assert plain.read_text() == "no markers here\n"


def test_forward_bench_prints_pairs_per_second_as_json(golden: Path, capsys) -> None:
    checkpoint = str(golden / "model_tiny" / "checkpoint.pt")
    argv = ["forward-bench", "--checkpoint", checkpoint, "--data", str(golden / "prep_M1000_r0")]
    argv += ["--batch", "64", "300", "--seconds", "0.05", "--table-precision", "int8", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert [row["batch_size"] for row in report["rows"]] == [64, 300]
    assert all(row["pairs_per_s"] > 0 and row["table_precision"] == "int8" for row in report["rows"])
    assert report["page_in_s"] >= 0 and report["warm_up_s"] > 0


def test_forward_bench_refuses_data_beyond_the_tables(golden: Path, tmp_path: Path, capsys) -> None:
    small = tmp_path / "small.pt"
    assert main(["synth-checkpoint", str(small), "--arch", "kaggle", "--rows", "3"]) == 0
    assert main(["forward-bench", "--checkpoint", str(small), "--data", str(golden / "prep_M1000_r0")]) == 2
    error = capsys.readouterr().err
    assert "does not fit" in error and "Traceback" not in error
    assert main(["synth-checkpoint", str(small), "--arch", "kaggle", "--rows", "3"]) == 2  # never overwritten


def test_instances_and_threads_reach_the_loadgen_settings() -> None:
    from dlrm_nb.cli import _settings, build_parser

    argv = ["loadgen", "--checkpoint", "c.pt", "--data", "d", "--run-dir", "r", "--instances", "2"]
    settings = _settings(build_parser().parse_args([*argv, "--threads", "3"]))
    assert (settings.instances, settings.threads_per_instance) == (2, 3)
    settings = _settings(build_parser().parse_args(argv))
    assert settings.threads_per_instance is None  # 0: the automatic layout
