"""The installed ``dlrm-nb`` as a user meets it, in child processes: a table of bad invocations
(exit 2, one line, no traceback, nothing left behind), real signals (exit 130 / 143, one line,
no partial file) and a full disk (``ulimit -f`` set in the child)."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dlrm_nb.fileio import is_temp_name

DLRM_NB = Path(sys.executable).parent / "dlrm-nb"
ROOT = Path(__file__).resolve().parents[1]


def run_cli(
    *argv: str, file_size_limit: int | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """``dlrm-nb argv`` in a child process (with RLIMIT_FSIZE ``file_size_limit`` bytes, if given)."""

    def limit() -> None:
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run(
        [str(DLRM_NB), *argv], capture_output=True, text=True, timeout=timeout, preexec_fn=limit, cwd=ROOT
    )


def last_line(err: str) -> str:
    """The last line of stderr (progress lines may come before it)."""
    assert "Traceback" not in err, err
    return err.replace("\r", "\n").strip().splitlines()[-1]


# ----------------------------------------------------------------------------- bad invocations

Case = Callable[[Path, Path], tuple[list[str], str]]


def _random_pt(tmp: Path) -> str:
    (tmp / "random.pt").write_bytes(np.random.default_rng(1).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    return str(tmp / "random.pt")


def _truncated_pt(tmp: Path, golden: Path) -> str:
    (tmp / "cut.pt").write_bytes((golden / "model_tiny" / "checkpoint.pt").read_bytes()[:4096])
    return str(tmp / "cut.pt")


def _zip_pt(tmp: Path) -> str:
    with zipfile.ZipFile(tmp / "archive.pt", "w") as zf:
        zf.writestr("readme.txt", "not a model")
    return str(tmp / "archive.pt")


def _small_tables_pt(tmp: Path) -> str:
    from dlrm_nb.model.synth_checkpoint import write_synthetic_checkpoint

    return str(write_synthetic_checkpoint(tmp / "small.pt", "kaggle", rows=3, seed=0))


def _params(tmp: Path, text: str) -> str:
    (tmp / "p.yaml").write_text(text)
    return str(tmp / "p.yaml")


def _score(checkpoint: str, golden: Path, tmp: Path) -> list[str]:
    return [
        "score",
        "--checkpoint",
        checkpoint,
        "--data",
        str(golden / "prep_M1000_r0"),
        "--out",
        str(tmp / "p.npy"),
    ]


def _folder_with_day_0(tmp: Path) -> str:
    (tmp / "raw").mkdir()
    (tmp / "raw" / "day_0").write_text("mine\n")
    return str(tmp / "raw")


def _a_file(tmp: Path) -> str:
    (tmp / "out").write_text("mine\n")
    return str(tmp / "out")


def _run(tmp: Path, *argv: str) -> list[str]:
    return ["run", *argv, "--results", str(tmp / "results")]


CASES: dict[str, Case] = {
    "no command": lambda tmp, golden: ([], "the following arguments are required: COMMAND"),
    "synth --days 0": lambda tmp, golden: (
        ["synth", str(tmp / "raw"), "--days", "0"],
        "days=0 is not valid: terabyte needs a whole number from 2 to 24",
    ),
    "synth --days 99": lambda tmp, golden: (["synth", str(tmp / "raw"), "--days", "99"], "from 2 to 24"),
    "synth --days three": lambda tmp, golden: (["synth", str(tmp / "raw"), "--days", "three"], "invalid int"),
    "synth into day files": lambda tmp, golden: (
        ["synth", _folder_with_day_0(tmp), "--days", "2"],
        "day_0 already exists: choose another output folder, or pass --overwrite to replace them",
    ),
    "synth into a file": lambda tmp, golden: (
        ["synth", _a_file(tmp), "--days", "2"],
        "out is a file, not a folder; give a folder for the output",
    ),
    "score into a missing folder": lambda tmp, golden: (
        ["score", "--checkpoint", "c.pt", "--data", "d", "--out", str(tmp / "no" / "p.npy")],
        "no does not exist; create the folder or choose another path",
    ),
    "prepare into a file": lambda tmp, golden: (
        ["prepare", str(tmp), _a_file(tmp), "--max-ind-range", "10"],
        "out is a file, not a folder",
    ),
    "prepare a missing folder": lambda tmp, golden: (
        ["prepare", str(tmp / "nope"), str(tmp / "prep"), "--max-ind-range", "10"],
        "nope does not exist",
    ),
    "params --write missing": lambda tmp, golden: (
        ["params", "--write", str(tmp / "missing.md")],
        "missing.md does not exist",
    ),
    "score random bytes": lambda tmp, golden: (
        _score(_random_pt(tmp), golden, tmp),
        "random.pt is not a readable torch checkpoint: it is neither torch's zip format nor its old format",
    ),
    "score truncated": lambda tmp, golden: (
        _score(_truncated_pt(tmp, golden), golden, tmp),
        "cut.pt is not a readable torch checkpoint: it starts like torch's zip format but its end is missing",
    ),
    "score a zip": lambda tmp, golden: (
        _score(_zip_pt(tmp), golden, tmp),
        "archive.pt is not a readable torch checkpoint: it is a zip file, but not one torch.save wrote",
    ),
    "score small tables": lambda tmp, golden: (
        _score(_small_tables_pt(tmp), golden, tmp),
        "feature C1 has 215 distinct values but embedding table 0 only 3 rows",
    ),
    "score no data": lambda tmp, golden: (
        ["score", "--checkpoint", _random_pt(tmp), "--data", str(tmp / "nope"), "--out", str(tmp / "p.npy")],
        "nope holds none of",
    ),
    "accuracy predictions only": lambda tmp, golden: (
        ["accuracy", str(golden / "accuracy" / "mlperf_log_accuracy_predictions_only.json")],
        "it looks like a log of predictions only: give trace and day23_labels",
    ),
    "run --run-id ../../x": lambda tmp, golden: (
        _run(tmp, "params/smoke.yaml", "--run-id", "../../x"),
        "run id '../../x' is not valid: a run id is a single folder name",
    ),
    "run --run-id /tmp/x": lambda tmp, golden: (
        _run(tmp, "params/smoke.yaml", "--run-id", str(tmp / "x")),
        "is not valid: a run id is a single folder name",
    ),
    "run duplicate key": lambda tmp, golden: (
        _run(tmp, _params(tmp, "prepare_data:\n  synthetic_days: 3\n  synthetic_days: 99999\n")),
        "'synthetic_days' is given twice, on line 2 and line 3",
    ),
    "run 99999 days": lambda tmp, golden: (
        _run(tmp, _params(tmp, "prepare_data:\n  synthetic_days: 99999\n")),
        "parameter synthetic_days = 99999 is not valid: need a whole number from 0 to 24",
    ),
    "run bad parameter": lambda tmp, golden: (
        _run(tmp, "params/smoke.yaml", "-p", "precision", "fp16"),
        "precision = 'fp16' is not valid",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_invocations_exit_2_with_one_line(case: str, tmp_path: Path, golden: Path) -> None:
    argv, fragment = CASES[case](tmp_path, golden)
    before = sorted(p.name for p in tmp_path.iterdir())
    done = run_cli(*argv)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    prefix = f"dlrm-nb {argv[0]}" if argv else "dlrm-nb"
    assert lines[0].startswith(f"{prefix}: error: "), lines[0]
    assert fragment in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing made, nothing removed
    assert not (tmp_path.parent / "x").exists()


# ----------------------------------------------------------------------------- signals


def _wait_for(condition: Callable[[], bool], child: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert child.poll() is None, f"the command ended first: {child.communicate()}"
        assert time.monotonic() < deadline, "timed out waiting for the command"
        time.sleep(0.02)


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if is_temp_name(p.name))


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_synth_leaves_no_partial_file(tmp_path: Path, signum: int, code: int) -> None:
    out = tmp_path / "raw"
    rows = 1_000_000
    child = subprocess.Popen(
        [str(DLRM_NB), "synth", str(out), "--days", "3", "--rows-per-day", str(rows)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(lambda: out.is_dir() and bool(_temps(out)), child)  # writing has started
    child.send_signal(signum)
    _, err = child.communicate(timeout=60)
    assert child.returncode == code
    assert last_line(err) == (
        "dlrm-nb synth: interrupted; day files written completely are kept, no partial one; rerun into a new "
        "folder or with --overwrite"
    )
    assert _temps(out) == []
    for day in out.iterdir():  # whatever is there is complete
        assert day.name.startswith("day_") and len(day.read_bytes().splitlines()) == rows
    assert not (out / "synthetic.json").exists()


@pytest.mark.slow
def test_sigterm_during_prepare_keeps_finished_days_and_the_same_command_resumes(tmp_path: Path) -> None:
    from dlrm_nb.data.synthetic import generate
    from dlrm_nb.locks import lock_path

    generate(tmp_path / "raw", days=3, rows_per_day=600_000, test_day_rows=20_000, seed=3, progress=False)
    argv = [
        "prepare",
        str(tmp_path / "raw"),
        str(tmp_path / "prep"),
        "--max-ind-range",
        "100000",
        "--days",
        "3",
    ]
    child = subprocess.Popen([str(DLRM_NB), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (tmp_path / "prep" / ".dlrm_nb_work").is_dir(), child)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 143, err
    assert (
        last_line(err)
        == "dlrm-nb prepare: interrupted; finished days are kept, rerun the same command to resume"
    )
    assert not lock_path(tmp_path / "prep").exists()
    assert not json.loads((tmp_path / "prep" / "dlrm_nb_manifest.json").read_text()).get("complete")
    done = run_cli(*argv)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "prep" / "dlrm_nb_manifest.json").read_text())["complete"] is True


# ----------------------------------------------------------------------------- a full disk


def test_a_full_disk_keeps_the_good_predictions_file(golden: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.npy"
    argv = ["score", "--checkpoint", str(golden / "model_tiny" / "checkpoint.pt")]
    argv += ["--data", str(golden / "prep_M1000_r0"), "--out", str(out)]
    assert run_cli(*argv).returncode == 0
    good = out.read_bytes()
    done = run_cli(*argv, "--overwrite", "--count", "400", file_size_limit=1024)
    assert done.returncode == 2
    assert last_line(done.stderr).startswith(f"dlrm-nb score: error: could not write {out}: ")
    assert out.read_bytes() == good and len(np.load(out)) == 500
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npy"]


def test_a_full_disk_during_prepare_is_one_line_and_releases_the_lock(tmp_path: Path) -> None:
    from dlrm_nb.data.synthetic import generate
    from dlrm_nb.locks import lock_path

    generate(tmp_path / "raw", days=3, rows_per_day=3000, seed=3, progress=False)
    argv = [
        "prepare",
        str(tmp_path / "raw"),
        str(tmp_path / "prep"),
        "--max-ind-range",
        "1000",
        "--days",
        "3",
    ]
    done = run_cli(*argv, file_size_limit=100_000)
    assert done.returncode == 2
    line = last_line(done.stderr)
    assert line.startswith(f"dlrm-nb prepare: error: could not write {tmp_path / 'prep'}"), line
    assert not lock_path(tmp_path / "prep").exists()
    assert run_cli(*argv).returncode == 0  # with room again, the same command finishes
