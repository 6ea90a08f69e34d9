"""Tests of the synthetic Criteo generator: exact format, determinism, edge cases, sidecar."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest

from dlrm_nb.data.criteo import (
    CAT_NAMES,
    DENSE_NAMES,
    FIELD_NAMES,
    KAGGLE_RAW_NAME,
    N_CAT,
    N_DENSE,
    terabyte_raw_name,
)
from dlrm_nb.data.synthetic import INT32_MAX, SIDECAR_NAME, generate
from dlrm_nb.exceptions import OutputExistsError, ParameterError

DAYS, ROWS, TEST_ROWS, SEED = 3, 2000, 3001, 7
INT_RE = re.compile(rb"-?[0-9]+")
HEX_RE = re.compile(rb"[0-9a-f]{8}")


def _generate(out: Path, **kwargs: object) -> dict:
    args = {"days": DAYS, "rows_per_day": ROWS, "test_day_rows": TEST_ROWS, "seed": SEED, "progress": False}
    return generate(out, **{**args, **kwargs})


def _lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return data.split(b"\n")[:-1]


def _fields(lines: list[bytes]) -> list[list[bytes]]:
    return [line.split(b"\t") for line in lines]


def _column(rows: list[list[bytes]], name: str) -> list[bytes]:
    index = FIELD_NAMES.index(name)
    return [row[index] for row in rows]


@pytest.fixture(scope="module")
def terabyte(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("terabyte")
    return out, _generate(out)


@pytest.fixture(scope="module")
def days(terabyte: tuple[Path, dict]) -> list[list[list[bytes]]]:
    """Fields of every line of every day."""
    out, _ = terabyte
    return [_fields(_lines(out / terabyte_raw_name(day))) for day in range(DAYS)]


def test_files_and_line_counts(terabyte: tuple[Path, dict], days: list[list[list[bytes]]]) -> None:
    out, sidecar = terabyte
    names = [terabyte_raw_name(day) for day in range(DAYS)]
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, SIDECAR_NAME])  # no temporary files
    assert [len(rows) for rows in days] == [ROWS] * (DAYS - 1) + [TEST_ROWS]
    assert sidecar["files"] == [
        {"name": name, "lines": ROWS if day < DAYS - 1 else TEST_ROWS} for day, name in enumerate(names)
    ]
    assert json.loads((out / SIDECAR_NAME).read_text()) == sidecar


def test_exact_line_format(terabyte: tuple[Path, dict], days: list[list[list[bytes]]]) -> None:
    out, _ = terabyte
    for day, rows in enumerate(days):
        assert b"\r" not in (out / terabyte_raw_name(day)).read_bytes()
        for row in rows:
            assert len(row) == 1 + N_DENSE + N_CAT
            assert row[0] in (b"0", b"1")
            assert all(v == b"" or INT_RE.fullmatch(v) for v in row[1 : 1 + N_DENSE])
            assert all(v == b"" or HEX_RE.fullmatch(v) for v in row[1 + N_DENSE :])
    lines = _lines(out / terabyte_raw_name(0))
    assert any(line.endswith(b"\t") for line in lines)  # empty last field: the line ends "\t\n"
    assert any(not line.endswith(b"\t") for line in lines)


def test_deterministic_and_seed_dependent(tmp_path: Path, terabyte: tuple[Path, dict]) -> None:
    out, sidecar = terabyte
    assert _generate(tmp_path / "same") == sidecar
    for name in [terabyte_raw_name(day) for day in range(DAYS)] + [SIDECAR_NAME]:
        assert (tmp_path / "same" / name).read_bytes() == (out / name).read_bytes()
    _generate(tmp_path / "other", seed=SEED + 1)
    for day in range(DAYS):
        name = terabyte_raw_name(day)
        assert (tmp_path / "other" / name).read_bytes() != (out / name).read_bytes()


def test_day_does_not_depend_on_other_days(tmp_path: Path, terabyte: tuple[Path, dict]) -> None:
    out, _ = terabyte
    _generate(tmp_path, test_day_rows=500)
    for day in range(DAYS - 1):
        name = terabyte_raw_name(day)
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes()


def test_integer_edge_cases(days: list[list[list[bytes]]]) -> None:
    for rows in days:
        dense = [row[1 : 1 + N_DENSE] for row in rows]
        assert any(all(v == b"" for v in values) for values in dense), "a line with all integers empty"
        assert {b"-1", b"-2", b"-3"} <= set(_column(rows, "I2"))
        values = {v for values in dense for v in values}
        assert {b"1000000", b"5000000", str(INT32_MAX).encode()} <= values
        assert all(int(v) >= -3 for v in values if v)
        assert all(int(v) >= 0 for values in dense for v in values[:1] + values[2:] if v)
    rows = [row for day_rows in days for row in day_rows]
    empty = {name: np.mean([v == b"" for v in _column(rows, name)]) for name in DENSE_NAMES}
    assert empty["I2"] < 0.01 and 0.0 < empty["I5"] < 0.06 and 0.0 < empty["I9"] < 0.06
    assert 0.40 < empty["I1"] < 0.52 and 0.40 < empty["I10"] < 0.52 and 0.68 < empty["I12"] < 0.82


def test_categorical_edge_cases(days: list[list[list[bytes]]]) -> None:
    for rows in days:
        assert any(all(v == b"" for v in row[1 + N_DENSE :]) for row in rows), "a line with all ids empty"
        assert any(b"ffffffff" in row[1 + N_DENSE :] for row in rows)
    rows = [row for day_rows in days for row in day_rows]
    ids = [int(v, 16) for row in rows for v in row[1 + N_DENSE :] if v]
    assert 0.35 < np.mean(np.array(ids) >= 0x80000000) < 0.65
    empty = {name: np.mean([v == b"" for v in _column(rows, name)]) for name in CAT_NAMES}
    for name in ("C19", "C20", "C22", "C25", "C26"):
        assert 0.3 < empty[name] < 0.55, name
    for name in ("C3", "C4", "C10", "C12"):
        assert 0.005 < empty[name] < 0.08, name


def test_categorical_vocabularies(days: list[list[list[bytes]]]) -> None:
    rows = [row for day_rows in days for row in day_rows]
    distinct = {name: len(set(_column(rows, name)) - {b""}) for name in CAT_NAMES}
    assert distinct["C9"] <= 3 and distinct["C20"] <= 4 and distinct["C17"] <= 10
    assert distinct["C3"] > 1000 and distinct["C21"] > 1000  # big vocabularies
    # Zipf-like: a few frequent values and a long tail of rare ones.
    _, counts = np.unique([v for v in _column(rows, "C3") if v], return_counts=True)
    assert counts.max() > 0.03 * counts.sum() and np.mean(counts == 1) > 0.5
    # New ids keep appearing on later days.
    seen = {v for day_rows in days[:-1] for v in _column(day_rows, "C3")}
    assert len(set(_column(days[-1], "C3")) - seen) > 300


def test_sidecar(terabyte: tuple[Path, dict], days: list[list[list[bytes]]]) -> None:
    _, sidecar = terabyte
    assert sidecar["arguments"] == {
        "seed": SEED, "dataset": "terabyte", "days": DAYS, "rows_per_day": ROWS,
        "test_day_rows": TEST_ROWS, "gzip": False, "cardinality_scale": 1.0,
    }  # fmt: skip
    assert isinstance(sidecar["version"], int)
    assert sidecar["lines"] == 2 * ROWS + TEST_ROWS
    assert sidecar["test_day"] == {"first_line": 2 * ROWS, "lines": TEST_ROWS}
    labels = [int(row[0]) for rows in days for row in rows]
    assert sidecar["ctr"] == pytest.approx(np.mean(labels))
    assert 0.18 < sidecar["ctr"] < 0.32
    assert set(sidecar["oracle_auc"]) == {"all", "test_day", "test", "val"}
    for auc in sidecar["oracle_auc"].values():
        assert 0.6 < auc < 0.95


def test_gzip_same_content(tmp_path: Path, terabyte: tuple[Path, dict]) -> None:
    out, sidecar = terabyte
    packed = _generate(tmp_path, gzip=True)
    for day in range(DAYS):
        name = terabyte_raw_name(day)
        assert gzip.decompress((tmp_path / f"{name}.gz").read_bytes()) == (out / name).read_bytes()
    assert packed["arguments"]["gzip"] is True
    assert [f["name"] for f in packed["files"]] == [f"{f['name']}.gz" for f in sidecar["files"]]
    assert packed["oracle_auc"] == sidecar["oracle_auc"]
    first = (tmp_path / "day_0.gz").read_bytes()
    _generate(tmp_path, gzip=True, overwrite=True)
    assert (tmp_path / "day_0.gz").read_bytes() == first  # no time stamp in the gzip header


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    _generate(tmp_path, days=2, rows_per_day=50, test_day_rows=None)
    before = (tmp_path / "day_1").read_bytes()
    with pytest.raises(OutputExistsError, match="day_0"):
        _generate(tmp_path, days=2, rows_per_day=50, test_day_rows=None, seed=SEED + 1)
    assert (tmp_path / "day_1").read_bytes() == before
    (tmp_path / "day_0").unlink()
    with pytest.raises(OutputExistsError, match="day_1"):
        _generate(tmp_path, days=2, rows_per_day=50, test_day_rows=None)
    _generate(tmp_path, days=2, rows_per_day=50, test_day_rows=None, seed=SEED + 1, overwrite=True)
    assert (tmp_path / "day_1").read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["day_0", "day_1", SIDECAR_NAME]


def test_kaggle(tmp_path: Path) -> None:
    sidecar = generate(tmp_path / "seven", dataset="kaggle", rows_per_day=300, seed=1, progress=False)
    rows = _fields(_lines(tmp_path / "seven" / KAGGLE_RAW_NAME))
    assert len(rows) == 2100 and all(len(row) == len(FIELD_NAMES) for row in rows)
    assert sidecar["arguments"]["days"] == 7 and sidecar["arguments"]["test_day_rows"] is None
    assert sidecar["files"] == [{"name": KAGGLE_RAW_NAME, "lines": 2100}]
    assert sidecar["test_day"] == {"first_line": 1800, "lines": 300}
    # 1000 lines: divmod(1000, 7) = (142, 6), so the first 6 splits have 143 lines.
    sidecar = generate(
        tmp_path / "two", dataset="kaggle", days=2, rows_per_day=500, gzip=True, progress=False
    )
    assert gzip.decompress((tmp_path / "two" / f"{KAGGLE_RAW_NAME}.gz").read_bytes()).count(b"\n") == 1000
    assert sidecar["test_day"] == {"first_line": 858, "lines": 142}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataset": "avazu"}, "avazu"),
        ({"days": 1}, "days=1"),
        ({"days": 2.5}, "days=2.5"),
        ({"rows_per_day": 0}, "rows_per_day=0"),
        ({"test_day_rows": 0}, "test_day_rows=0"),
        ({"seed": -1}, "seed=-1"),
        ({"cardinality_scale": 0.0}, "cardinality_scale=0.0"),
        ({"cardinality_scale": float("nan")}, "cardinality_scale=nan"),
        ({"dataset": "kaggle", "test_day_rows": 10}, "test_day_rows=10"),
        ({"dataset": "kaggle", "days": 1, "rows_per_day": 3}, "at least 7 lines"),
    ],
)
def test_invalid_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=re.escape(message)):
        generate(tmp_path, progress=False, **kwargs)
    assert not any(tmp_path.iterdir())


def test_small_and_scaled(tmp_path: Path) -> None:
    sidecar = generate(tmp_path, days=2, rows_per_day=3, cardinality_scale=0.01, progress=True)
    assert [len(_lines(tmp_path / f["name"])) for f in sidecar["files"]] == [3, 3]
    assert min(sidecar["cardinality"]) == 2 and max(sidecar["cardinality"]) == 1000
