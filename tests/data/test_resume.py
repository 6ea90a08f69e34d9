"""A run killed in the middle of a day, rerun, gives the same files as an uninterrupted run."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlrm_nb.data.manifest import MANIFEST_NAME, WORK_DIR_NAME
from dlrm_nb.data.preprocess import PrepareSettings, prepare
from dlrm_nb.data.synthetic import generate
from dlrm_nb.fileio import is_temp_name

SETTINGS = PrepareSettings(max_ind_range=5000, sub_sample_rate=0.5)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("raw")
    generate(folder, rows_per_day=12000, test_day_rows=20000, seed=3, progress=False)
    return folder


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != MANIFEST_NAME}


def kill_mid_day(raw: Path, out: Path) -> list[str]:
    """Start `dlrm-nb prepare` and SIGKILL it while a day after the first is half written."""
    command = [
        sys.executable,
        "-m",
        "dlrm_nb.cli",
        "prepare",
        str(raw),
        str(out),
        "--max-ind-range",
        str(SETTINGS.max_ind_range),
        "--sub-sample-rate",
        str(SETTINGS.sub_sample_rate),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = out / WORK_DIR_NAME
    deadline = time.monotonic() + 120
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if work.is_dir():
                names = [p.name for p in work.iterdir()]
                finished = [n for n in names if n.endswith(".json")]
                if len(finished) >= 3 and any(is_temp_name(n) for n in names):
                    process.kill()
                    process.wait()
                    return names
            time.sleep(0.001)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    pytest.fail("the run ended before it could be interrupted mid-day")


def test_killed_run_resumes_to_identical_files(raw: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    prepare(raw, reference, SETTINGS, progress=False)
    out = tmp_path / "out"
    left = kill_mid_day(raw, out)
    assert any(is_temp_name(name) for name in left)
    assert not (out / "terabyte_processed_test.bin").exists()  # nothing looks finished
    manifest = prepare(raw, out, SETTINGS, progress=False)
    assert manifest["complete"]
    assert outputs(out) == outputs(reference)
    assert not (out / WORK_DIR_NAME).exists()


def test_finished_run_is_skipped_and_unchanged(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = prepare(raw, out, SETTINGS, progress=False)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = prepare(raw, out, SETTINGS, progress=False)
    assert again == first
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps


def test_dask_engine_resumes_a_local_run(raw: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    prepare(raw, reference, SETTINGS, progress=False)
    out = tmp_path / "out"
    kill_mid_day(raw, out)
    prepare(raw, out, SETTINGS, engine="dask", workers=2, progress=False)
    assert outputs(out) == outputs(reference)
