"""The dlrm-nb command line, end to end on the golden files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlrm_nb.cli import main


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
