"""Every kind of bad input stops with an error naming the file, line, field and what is allowed."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dlrm_nb.data.dataset import CriteoSplit
from dlrm_nb.data.preprocess import PrepareSettings, prepare
from dlrm_nb.exceptions import (
    ForeignOutputError,
    InputFileError,
    MalformedLineError,
    SettingsMismatchError,
)

GOOD = "1\t5\t-2\t\t7\t0\t1\t2\t3\t4\t5\t6\t7\t8\t" + "\t".join(["8a4d2f1c"] * 25) + "\t\n"


def raw_days(tmp_path: Path, golden: Path) -> Path:
    raw = tmp_path / "raw"
    shutil.copytree(golden / "raw", raw)
    return raw


def corrupt_line(raw: Path, day: int, line_index: int, new_line: str) -> None:
    path = raw / f"day_{day}"
    lines = path.read_text().splitlines(keepends=True)
    lines[line_index] = new_line
    path.write_text("".join(lines))


BAD_LINES = {
    "too few fields": (GOOD.replace("\t5\t", "\t", 1), "(line)", "39 fields"),
    "non-hex categorical": (GOOD.replace("8a4d2f1c", "8a4z2f1c", 1), "C1", "8a4z2f1c"),
    "non-integer dense": (GOOD.replace("\t7\t", "\t7.5\t", 1), "I4", "7.5"),
    "dense beyond int32": (GOOD.replace("\t7\t", "\t2147483648\t", 1), "I4", "2147483648"),
    "label not 0/1": ("2" + GOOD[1:], "label", "2"),
    "empty line": ("\n", "(line)", "1 fields"),
    "hex id of 16 digits": (GOOD.replace("8a4d2f1c", "ffffffffffffffff", 1), "C1", "ffffffffffffffff"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_malformed_line_names_file_line_and_field(tmp_path: Path, golden: Path, case: str) -> None:
    raw = raw_days(tmp_path, golden)
    line, field, shown = BAD_LINES[case]
    corrupt_line(raw, 3, 41, line)
    with pytest.raises(MalformedLineError) as info:
        prepare(raw, tmp_path / "out", PrepareSettings(max_ind_range=1000), progress=False)
    error = info.value
    assert error.path.endswith("day_3") and error.line == 42 and error.field == field
    assert shown in str(error) and "--skip-malformed" in str(error)


def test_good_line_template_is_valid(tmp_path: Path, golden: Path) -> None:
    raw = raw_days(tmp_path, golden)
    corrupt_line(raw, 3, 41, GOOD)
    prepare(raw, tmp_path / "out", PrepareSettings(max_ind_range=1000), progress=False)


def test_skip_malformed_counts_lines_in_manifest(tmp_path: Path, golden: Path) -> None:
    raw = raw_days(tmp_path, golden)
    corrupt_line(raw, 3, 41, BAD_LINES["non-hex categorical"][0])
    corrupt_line(raw, 23, 900, BAD_LINES["too few fields"][0])
    manifest = prepare(
        raw, tmp_path / "out", PrepareSettings(max_ind_range=1000, skip_malformed=True), progress=False
    )
    assert manifest["malformed_lines_skipped"] == 2
    assert manifest["days"]["3"] == {"lines": 200, "kept": 199, "malformed": 1}
    assert manifest["days"]["23"] == {"lines": 1000, "kept": 999, "malformed": 1}
    on_disk = json.loads((tmp_path / "out" / "dlrm_nb_manifest.json").read_text())
    assert on_disk["malformed_lines_skipped"] == 2
    with np.load(tmp_path / "out" / "day_day_count.npz") as counts:
        assert counts["total_per_file"][3] == 199


def test_truncated_gzip_is_a_clear_error(tmp_path: Path, golden: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for path in (golden / "raw").iterdir():
        data = gzip.compress(path.read_bytes())
        if path.name == "day_5":
            data = data[: len(data) // 2]
        (raw / f"{path.name}.gz").write_bytes(data)
    with pytest.raises(InputFileError, match=r"day_5\.gz is truncated or corrupt"):
        prepare(raw, tmp_path / "out", PrepareSettings(max_ind_range=1000), progress=False)


def test_missing_day_files_are_named(tmp_path: Path, golden: Path) -> None:
    raw = raw_days(tmp_path, golden)
    (raw / "day_7").unlink()
    (raw / "day_19").unlink()
    with pytest.raises(InputFileError, match=r"lacks 2 of the 24 day files: day_7, day_19"):
        prepare(raw, tmp_path / "out", PrepareSettings(max_ind_range=1000), progress=False)


def test_bin_of_wrong_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "terabyte_processed_test.bin"
    path.write_bytes(b"\0" * (160 * 3 + 12))
    with pytest.raises(InputFileError, match=r"492 bytes, not a multiple of 160"):
        CriteoSplit.from_bin(path)


def test_folder_with_foreign_files_is_not_touched(tmp_path: Path, golden: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    theirs = out / "day_fea_count.npz"
    theirs.write_bytes(b"made by someone else")
    with pytest.raises(ForeignOutputError, match="not made by dlrm-nb"):
        prepare(golden / "raw", out, PrepareSettings(max_ind_range=1000), progress=False)
    assert theirs.read_bytes() == b"made by someone else"
    assert sorted(p.name for p in out.iterdir()) == ["day_fea_count.npz"]


def test_rerun_with_other_settings_is_refused(tmp_path: Path, golden: Path) -> None:
    out = tmp_path / "out"
    prepare(golden / "raw", out, PrepareSettings(max_ind_range=1000), progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(SettingsMismatchError, match=r"max_ind_range: 1000 -> 2000"):
        prepare(golden / "raw", out, PrepareSettings(max_ind_range=2000), progress=False)
    with pytest.raises(SettingsMismatchError, match=r"sub_sample_rate: 0.0 -> 0.5"):
        prepare(golden / "raw", out, PrepareSettings(max_ind_range=1000, sub_sample_rate=0.5), progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_bad_settings_name_the_value() -> None:
    from dlrm_nb.exceptions import DlrmNbError

    with pytest.raises(DlrmNbError, match=r"sub_sample_rate 1.5 is not valid: need 0 <= rate < 1"):
        PrepareSettings(max_ind_range=10, sub_sample_rate=1.5)
    with pytest.raises(DlrmNbError, match=r"dataset 'criteo' is not one of terabyte, kaggle"):
        PrepareSettings(max_ind_range=10, dataset="criteo")
