"""The dlrm-nb command line, end to end on the golden files and tiny synthetic data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import synthetic_prepared

from dlrm_nb.cli import main
from dlrm_nb.exceptions import Terminated
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


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--days", "0"], "days=0 is not valid: terabyte needs a whole number from 2 to 24"),
        (["--days", "25"], "days=25 is not valid: terabyte needs a whole number from 2 to 24"),
        (
            ["--days", "0", "--dataset", "kaggle"],
            "days=0 is not valid: kaggle needs a whole number from 1 to 24",
        ),
        (["--rows-per-day", "0"], "rows_per_day=0 is not valid: use a whole number from 1 to 200,000,000"),
        (["--test-day-rows", "10000000000"], "test_day_rows=10000000000 is not valid: use a whole number"),
    ],
)
def test_synth_refuses_sizes_out_of_range(tmp_path: Path, capsys, argv: list[str], message: str) -> None:
    assert main(["synth", str(tmp_path / "raw"), *argv]) == 2
    assert message in _one_error_line(capsys.readouterr().err, "synth")
    assert not (tmp_path / "raw").exists()


def test_synth_refuses_more_than_the_disk_holds(tmp_path: Path, capsys, monkeypatch) -> None:
    from collections import namedtuple

    from dlrm_nb.workbook import params

    monkeypatch.setattr(
        params.shutil, "disk_usage", lambda path: namedtuple("u", "total used free")(0, 0, 10**6)
    )
    assert main(["synth", str(tmp_path / "raw"), "--days", "24", "--rows-per-day", "1000"]) == 2
    line = _one_error_line(capsys.readouterr().err, "synth")
    assert line.endswith(
        f"synth (24 days of 1,000 lines) would write about 5.8 MB into {tmp_path / 'raw'}, but only "
        "1.0 MB is free there; make it smaller (fewer days or rows) or free some space"
    )
    assert not (tmp_path / "raw").exists()


def test_synth_refuses_a_folder_holding_day_files_unless_overwrite(tmp_path: Path, capsys) -> None:
    (tmp_path / "day_0").write_text("mine\n")
    assert main(["synth", str(tmp_path), "--days", "2", "--rows-per-day", "10"]) == 2
    line = _one_error_line(capsys.readouterr().err, "synth")
    assert line == (
        f"dlrm-nb synth: error: {tmp_path / 'day_0'} already exists: choose another output folder, or pass "
        "--overwrite to replace them"
    )
    assert (tmp_path / "day_0").read_text() == "mine\n"  # nothing of the user's is overwritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["day_0"]
    assert main(["synth", str(tmp_path), "--days", "2", "--rows-per-day", "10", "--overwrite"]) == 0
    assert len((tmp_path / "day_0").read_text().splitlines()) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["day_0", "day_1", "synthetic.json"]


def test_prepare_refuses_an_output_that_is_a_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "out").write_text("mine")
    assert main(["prepare", str(tmp_path), str(tmp_path / "out"), "--max-ind-range", "10"]) == 2
    line = _one_error_line(capsys.readouterr().err, "prepare")
    assert (
        line
        == f"dlrm-nb prepare: error: {tmp_path / 'out'} is a file, not a folder; give a folder for the output"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (tmp_path / "out").read_text() == "mine"


def test_prepare_refuses_a_folder_another_process_writes(tmp_path: Path, capsys) -> None:
    import subprocess
    import sys

    from dlrm_nb.locks import lock_path

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = lock_path(tmp_path / "out")
        lock.write_text(
            json.dumps({"pid": holder.pid, "host": __import__("socket").gethostname(), "command": "x"})
        )
        assert main(["prepare", str(tmp_path / "raw"), str(tmp_path / "out"), "--max-ind-range", "10"]) == 2
        line = _one_error_line(capsys.readouterr().err, "prepare")
        assert (
            f"{tmp_path / 'out'} is being written by another process: pid {holder.pid} (x, since ?)" in line
        )
        assert lock.exists() and not (tmp_path / "out").exists()
    finally:
        holder.kill()
        holder.wait()


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


def test_forward_bench_maps_tables_from_the_cache_folder_it_is_given(
    golden: Path, tmp_path: Path, capsys
) -> None:
    checkpoint = golden / "model_tiny" / "checkpoint.pt"
    cache = tmp_path / "cache"
    argv = ["forward-bench", "--checkpoint", str(checkpoint), "--data", str(golden / "prep_M1000_r0")]
    argv += ["--batch", "64", "--seconds", "0.05", "--table-precision", "int8", "--json"]
    argv += ["--table-cache", "on", "--table-cache-dir", str(cache)]
    before = checkpoint.stat().st_mtime_ns
    assert main(argv) == 0 and main(argv) == 0
    entry = cache / "checkpoint.pt.tables" / "int8"
    assert sorted(p.name for p in entry.iterdir()) == ["source.json", "weights.npy"]
    assert checkpoint.stat().st_mtime_ns == before  # the golden checkpoint is only read
    with pytest.raises(SystemExit) as stopped:
        main([("sometimes" if arg == "on" else arg) for arg in argv])
    assert stopped.value.code == 2
    assert "invalid choice: 'sometimes'" in capsys.readouterr().err


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


def test_params_write_names_a_missing_file(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "no" / "parameters.md"
    assert main(["params", "--write", str(missing)]) == 2
    assert _one_error_line(capsys.readouterr().err, "params") == (
        f"dlrm-nb params: error: {missing} does not exist; give the Markdown file that holds the reference "
        "block (docs/parameters.md)"
    )
    assert not (tmp_path / "no").exists()


def test_score_checks_the_tables_against_the_data_before_scoring(
    golden: Path, tmp_path: Path, capsys
) -> None:
    small = tmp_path / "small.pt"
    assert main(["synth-checkpoint", str(small), "--arch", "kaggle", "--rows", "3"]) == 0
    capsys.readouterr()
    out = tmp_path / "p.npy"
    args = ["score", "--checkpoint", str(small), "--data", str(golden / "prep_M1000_r0"), "--out", str(out)]
    assert main(args) == 2
    line = _one_error_line(capsys.readouterr().err, "score")
    assert line.startswith(
        f"dlrm-nb score: error: the checkpoint does not fit {golden / 'prep_M1000_r0'}: feature C1 has 215 "
        "distinct values but embedding table 0 only 3 rows"
    )
    assert not out.exists()


def test_score_refuses_a_file_that_is_not_a_checkpoint(golden: Path, tmp_path: Path, capsys) -> None:
    noise = tmp_path / "noise.pt"
    noise.write_bytes(bytes(range(256)) * 4)
    out = tmp_path / "p.npy"
    args = ["score", "--checkpoint", str(noise), "--data", str(golden / "prep_M1000_r0"), "--out", str(out)]
    assert main(args) == 2
    assert f"{noise} is not a readable torch checkpoint" in _one_error_line(capsys.readouterr().err, "score")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noise.pt"]


def test_accuracy_points_a_predictions_only_log_at_the_day_23_file(golden: Path, capsys) -> None:
    log = golden / "accuracy" / "mlperf_log_accuracy_predictions_only.json"
    assert main(["accuracy", str(log)]) == 2
    line = _one_error_line(capsys.readouterr().err, "accuracy")
    assert line.startswith(f"dlrm-nb accuracy: error: accuracy log {log}: ")
    assert "values where labels belong are not 0 or 1 (the first: " in line
    assert line.endswith(
        "it looks like a log of predictions only: give trace and day23_labels "
        "(dlrm-nb accuracy: --aggregation-trace-file and --day-23-file)"
    )
    assert main(["accuracy", str(log), "--day-23-file", str(golden / "raw" / "day_23")]) == 2
    assert "--day-23-file and --aggregation-trace-file go together" in _one_error_line(
        capsys.readouterr().err, "accuracy"
    )


def test_usage_errors_are_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["synth", "out", "--days", "three"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (
        "dlrm-nb synth: error: argument --days: invalid int value: 'three' (see dlrm-nb synth --help)\n"
    )


def _raising(exc: BaseException):
    def run(args) -> None:
        raise exc

    return run


@pytest.mark.parametrize(
    ("command", "exc", "code", "line"),
    [
        (
            "prepare",
            PermissionError(13, "Permission denied", "/data/prepared/day_fea_count.npz"),
            2,
            "dlrm-nb prepare: error: permission denied: /data/prepared/day_fea_count.npz; use files and "
            "folders you may read and write, then rerun",
        ),
        (
            "prepare",
            OSError(30, "Read-only file system", "/mnt/ro/x"),
            2,
            "dlrm-nb prepare: error: read-only file system: /mnt/ro/x; use files and folders you may read "
            "and write, then rerun",
        ),
        (
            "score",
            OSError(28, "No space left on device"),
            2,
            "dlrm-nb score: error: cannot write p.npy: the disk is full; free some space (or raise the "
            "limit) or write to another folder, then rerun",
        ),
        (
            "prepare",
            OSError(27, "File too large", "/out/day_0.records"),
            2,
            "dlrm-nb prepare: error: cannot write /out/day_0.records: the file is larger than the file size "
            "limit (ulimit -f) or the file system allows; free some space (or raise the limit) or write to "
            "another folder, then rerun",
        ),
        (
            "prepare",
            NotADirectoryError(20, "Not a directory", "/data/raw.gz/day_0"),
            2,
            "dlrm-nb prepare: error: Not a directory: /data/raw.gz/day_0; check the path, then rerun",
        ),
        (
            "prepare",
            ModuleNotFoundError("No module named 'distributed'", name="distributed"),
            2,
            "dlrm-nb prepare: error: the Python package 'distributed' is missing: install the project's "
            "environment (pip install -e . or environment.yml)",
        ),
        (
            "prepare",
            KeyboardInterrupt(),
            130,
            "dlrm-nb prepare: interrupted; finished days are kept, rerun the same command to resume",
        ),
        (
            "score",
            Terminated(),
            143,
            "dlrm-nb score: interrupted; no predictions file was written (an existing one is untouched); "
            "rerun the same command",
        ),
    ],
)
def test_each_way_a_command_stops_has_its_exit_code_and_one_line(
    monkeypatch, capsys, command: str, exc: BaseException, code: int, line: str
) -> None:
    from dlrm_nb import cli

    monkeypatch.setattr(cli, f"_{command}", _raising(exc))
    argv = {
        "prepare": ["prepare", "raw", "out", "--max-ind-range", "10"],
        "score": ["score", "--checkpoint", "c.pt", "--data", "d", "--out", "p.npy"],
    }[command]
    assert main(argv) == code
    assert capsys.readouterr().err == line + "\n"


def test_our_bugs_show_the_traceback_and_ask_for_a_report(monkeypatch, capsys) -> None:
    from dlrm_nb import cli

    monkeypatch.setattr(cli, "_prepare", _raising(IndexError("index out of range in self")))
    assert main(["prepare", "raw", "out", "--max-ind-range", "10"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):\n")
    assert err.endswith(
        "IndexError: index out of range in self\n"
        "dlrm-nb prepare: this is a bug in dlrm-nb; please report it with the command and the traceback "
        "above\n"
    )
