"""The vectorized Fisher-Yates-Rao shuffle plan against upstream's digests and a per-row replay."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import GOLDEN

from dlrm_nb.data.preprocess import PrepareSettings, prepare
from dlrm_nb.data.shuffle import ShufflePlan, plan_shuffle, reorder_days, upstream_rng

DAYS = 24
SEED = 123


def slow_plan(day_rows: list[int], rng: np.random.RandomState) -> list[np.ndarray]:
    """The rules, row by row: per training day j, int64 [n_j, 2] of (source day, source row)."""
    train = len(day_rows) - 1
    gathered: list[list[tuple[int, int]]] = [[] for _ in range(train)]
    for day, n in enumerate(day_rows):
        rand_u = rng.randint(0, train, size=n)
        if day == train:
            continue
        for row in range(n):
            dest = int(rand_u[row])
            while len(gathered[dest]) >= day_rows[dest]:
                dest = int(rng.randint(0, train))
            gathered[dest].append((day, row))
    plan = []
    for j in range(train):
        perm = rng.permutation(day_rows[j])
        plan.append(np.array(gathered[j], dtype=np.int64).reshape(-1, 2)[perm])
    return plan


def assert_same_plan(plan: ShufflePlan, expected: list[np.ndarray]) -> None:
    assert plan.test_day == len(expected)
    for j, pairs in enumerate(expected):
        src_day, src_row = plan.sources(j)
        np.testing.assert_array_equal(src_day, pairs[:, 0], err_msg=f"src_day of day {j}")
        np.testing.assert_array_equal(src_row, pairs[:, 1], err_msg=f"src_row of day {j}")
        assert src_row.dtype == np.int64 and src_day.dtype == np.int8


def random_day_rows(gen: np.random.Generator) -> list[int]:
    days = int(gen.integers(2, 10))
    kind = int(gen.integers(3))
    if kind == 0:  # similar sizes: days fill only near the end
        rows = gen.integers(150, 250, size=days)
    elif kind == 1:  # very different sizes, empty days included: redraws most of the time
        rows = gen.choice([0, 1, 3, 40, 400, 1500], size=days)
    else:
        rows = gen.integers(0, 600, size=days)
    return [int(n) for n in rows]


@pytest.mark.parametrize("case", range(60))
def test_plan_equals_per_row_rules(case: int) -> None:
    gen = np.random.default_rng(1000 + case)
    rows = random_day_rows(gen)
    seed = int(gen.integers(2**31))
    chunk = int(gen.choice([1, 7, 64, 1 << 20]))
    fast_rng, slow_rng = np.random.RandomState(seed), np.random.RandomState(seed)
    assert_same_plan(plan_shuffle(rows, fast_rng, chunk_rows=chunk), slow_plan(rows, slow_rng))
    assert fast_rng.randint(0, 2**31) == slow_rng.randint(0, 2**31), "generator left in another state"


def test_many_redraws_and_the_allocate_hook(tmp_path: Path) -> None:
    rows = [20_000] + [300] * 21 + [9_000, 50]  # day 0's rows overflow the small days almost at once
    made: list[str] = []

    def allocate(name: str, day: int, length: int, dtype: np.dtype) -> np.ndarray:
        made.append(f"{name}_{day}")
        path = tmp_path / f"{name}_{day}.npy"
        return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(length,))

    fast_rng, slow_rng = np.random.RandomState(5), np.random.RandomState(5)
    plan = plan_shuffle(rows, fast_rng, chunk_rows=4096, allocate=allocate)
    assert_same_plan(plan, slow_plan(rows, slow_rng))
    assert fast_rng.randint(0, 2**31) == slow_rng.randint(0, 2**31)
    assert sorted(made) == sorted(f"{name}_{j}" for name in ("src_day", "src_row") for j in range(23))
    assert isinstance(plan.src_row[0], np.memmap)


def test_plan_is_a_permutation_of_all_training_rows() -> None:
    rows = [5_000, 100, 0, 7_000, 2_500, 3]
    plan = plan_shuffle(rows, np.random.RandomState(0))
    keys = np.concatenate([plan.src_day[j].astype(np.int64) * 10**6 + plan.src_row[j] for j in range(5)])
    expected = np.concatenate([day * 10**6 + np.arange(n) for day, n in enumerate(rows[:-1])])
    np.testing.assert_array_equal(np.sort(keys), expected)
    with pytest.raises(IndexError):
        plan.sources(5)
    with pytest.raises(ValueError):
        plan_shuffle([10], np.random.RandomState(0))


def assert_digest(array: np.ndarray, expected: dict, what: str) -> None:
    assert str(array.dtype) == expected["dtype"], what
    assert list(array.shape) == expected["shape"], what
    assert hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest() == expected["sha256"], what


@pytest.mark.parametrize(("folder", "rate"), [("prep_M1000_r0", 0.0), ("prep_M1000_r0875", 0.875)])
def test_reordered_days_match_upstream_digests(tmp_path: Path, folder: str, rate: float) -> None:
    settings = PrepareSettings(max_ind_range=1000, sub_sample_rate=rate, write_train=True)
    manifest = prepare(GOLDEN / "raw", tmp_path, settings, progress=False)
    digests = json.loads((GOLDEN / folder / "digests.json").read_text())["days"]
    processed = {}
    for day in range(DAYS):
        with np.load(tmp_path / f"day_{day}_processed.npz") as npz:
            processed[day] = {name: npz[name] for name in ("X_cat", "X_int", "y")}
        for name, array in processed[day].items():  # the shuffle's input must be upstream's
            assert_digest(array, digests[f"day_{day}"]["processed"][name], f"processed day {day} {name}")
    rows = [len(processed[day]["y"]) for day in range(DAYS)]
    rng = upstream_rng(SEED, rate, [manifest["days"][str(day)]["lines"] for day in range(DAYS)])

    plan = plan_shuffle(rows, rng)

    seen = []
    for day, arrays in reorder_days(plan, processed.__getitem__):
        seen.append(day)
        assert sorted(arrays) == ["X_cat", "X_int", "y"]
        for name, array in arrays.items():
            assert_digest(array, digests[f"day_{day}"]["reordered"][name], f"reordered day {day} {name}")
            if day == DAYS - 1:
                np.testing.assert_array_equal(array, processed[day][name].astype(np.float64))
    assert seen == list(range(DAYS))
