"""Deadline-aware Server batching on synthetic arrival times (no LoadGen, no torch)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlrm_nb.loadgen.batcher import DeadlineBatcher, Decision, ServiceModel

QUANTILES = np.array([100, 100] + [200] * 12 + [300, 300, 400, 500, 600, 700])  # MLPerf's sizes
FIXED, PER_PAIR = 1e-3, 10e-6  # 1 ms + 10 us a pair: 3.7 ms for a mean aggregated sample
BUDGET = 0.024  # 80% of a 30 ms bound


def exact_model(per_pair: float = PER_PAIR) -> ServiceModel:
    return ServiceModel(FIXED, per_pair)


def batcher(max_pairs: int = 4096, idle: float | None = 0.0, per_pair: float = PER_PAIR) -> DeadlineBatcher:
    return DeadlineBatcher(exact_model(per_pair), max_pairs=max_pairs, budget=BUDGET, idle=idle)


def simulate(
    arrivals: np.ndarray, pairs: np.ndarray, rule: DeadlineBatcher, workers: int = 1
) -> tuple[np.ndarray, list[list[int]]]:
    """Completion time of every item and the batches (item indices), served by ``workers`` that
    take exactly ``rule.model.predict(pairs)`` per forward: the obvious event loop."""
    done = np.full(len(arrivals), math.nan)
    batches: list[list[int]] = []
    free = [0.0] * workers  # when each worker is next free
    waiting: list[int] = []
    arrived, now = 0, 0.0
    while arrived < len(arrivals) or waiting:
        worker = int(np.argmin(free))
        now = max(now, free[worker])
        while arrived < len(arrivals) and arrivals[arrived] <= now:
            waiting.append(arrived)
            arrived += 1
        if not waiting:
            now = float(arrivals[arrived])
            continue
        decision = rule.decide(
            arrivals[waiting].tolist(), pairs[waiting].tolist(), now, flush=arrived == len(arrivals)
        )
        if decision.take:
            batch, waiting = waiting[: decision.take], waiting[decision.take :]
            free[worker] = done[batch] = now + rule.model.predict(int(pairs[batch].sum()))
            batches.append(batch)
        else:
            assert decision.wait_until is not None and decision.wait_until > now
            following = arrivals[arrived] if arrived < len(arrivals) else math.inf
            now = min(following, decision.wait_until)
    return done, batches


def poisson(qps: float, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.exponential(1 / qps, count)), QUANTILES[rng.integers(0, len(QUANTILES), count)]


def test_full_batch_closes_immediately() -> None:
    rule = batcher(max_pairs=600)
    assert rule.decide([0.0, 0.001], [300, 300], 0.001) == Decision(2, "size")
    assert rule.decide([0.0, 0.001, 0.002], [300, 200, 200], 0.002) == Decision(2, "size")


def test_batch_closes_when_its_forward_reaches_half_the_budget() -> None:
    rule = batcher()  # half the budget: 12 ms = 1100 pairs
    assert rule.decide([0.0] * 5, [300] * 5, 0.0) == Decision(3, "size")


def test_lone_sample_waits_at_most_until_its_deadline_minus_its_forward() -> None:
    rule = batcher(idle=1.0)  # the queue is never taken for done: only the deadline closes
    forward = FIXED + 300 * PER_PAIR
    decision = rule.decide([0.5], [300], 0.5)
    assert decision.take == 0 and decision.wait_until == pytest.approx(0.5 + BUDGET - forward)
    assert rule.decide([0.5], [300], decision.wait_until) == Decision(1, "deadline")
    assert rule.decide([0.5], [300], 0.6) == Decision(1, "deadline")  # already late: at once


def test_lone_sample_starts_at_once_by_default_or_waits_the_fixed_cost() -> None:
    assert batcher().decide([0.5], [300], 0.5) == Decision(1, "idle")
    rule = batcher(idle=None)  # the ski-rental rule: wait as long as merging saves
    assert rule.decide([0.5], [300], 0.5) == Decision(0, wait_until=pytest.approx(0.5 + FIXED))
    assert rule.decide([0.5], [300], 0.5 + FIXED) == Decision(1, "idle")


def test_an_arrival_that_would_make_the_oldest_late_waits_for_the_next_batch() -> None:
    rule = batcher(idle=1.0)
    now = BUDGET - FIXED - 400 * PER_PAIR  # the oldest (300 pairs, at 0) can take 100 more
    assert rule.decide([0.0, now - 1e-4], [300, 100], now) == Decision(2, "deadline")
    assert rule.decide([0.0, now - 1e-4], [300, 200], now) == Decision(1, "deadline")


def test_late_samples_do_not_shrink_the_batch() -> None:
    rule = batcher(idle=1.0)
    late = [0.0, 0.001, 0.002]  # all past their budget at 0.1 s: one batch, up to the size cap
    assert rule.decide(late, [200, 200, 200], 0.1) == Decision(3, "deadline")


def test_flush_closes_at_once() -> None:
    assert batcher(idle=1.0).decide([0.0], [100], 0.0, flush=True) == Decision(1, "flush")
    assert batcher().decide([], [], 0.0, flush=True) == Decision(0)


def test_oversized_sample_goes_alone() -> None:
    rule = batcher(max_pairs=256)
    assert rule.decide([0.0, 0.0], [700, 100], 0.0) == Decision(1, "size")


@pytest.mark.parametrize("workers", [1, 2])
def test_fifo_and_batch_sizes_on_a_poisson_sequence(workers: int) -> None:
    arrivals, pairs = poisson(qps=150 * workers, count=3000, seed=workers)
    pairs[::97] = 900  # some samples larger than max_pairs
    rule = batcher(max_pairs=800)
    done, batches = simulate(arrivals, pairs, rule, workers)
    assert sorted(i for b in batches for i in b) == list(range(len(arrivals)))  # each item once
    assert [b[0] for b in batches] == sorted(b[0] for b in batches)  # FIFO: batches in order,
    assert all(b == list(range(b[0], b[0] + len(b))) for b in batches)  # of consecutive items
    assert all(len(b) == 1 or pairs[b].sum() <= 800 for b in batches)
    assert any(len(b) == 1 and pairs[b[0]] > 800 for b in batches)
    assert (done >= arrivals).all()


@pytest.mark.parametrize("idle", [0.0, 1e-3, 1.0])  # start at once, the ski-rental wait, the deadline
@pytest.mark.parametrize(("qps", "workers"), [(100, 1), (300, 1), (450, 1), (600, 2)])
def test_no_deadline_missed_with_an_exact_model_and_feasible_load(
    qps: float, workers: int, idle: float
) -> None:
    # 1 ms + 4 us a pair: 2.1 ms for a mean sample, up to 63% busy at 300 QPS on one worker
    arrivals, pairs = poisson(qps, count=4000, seed=7)
    rule = batcher(idle=idle, per_pair=4e-6)
    done, batches = simulate(arrivals, pairs, rule, workers)
    assert (done <= arrivals + BUDGET + 1e-9).all()
    assert max(len(b) for b in batches) > 1  # it did batch
    if idle == 1.0:
        assert (done - arrivals).max() > BUDGET * 0.9  # and lone samples waited to the last moment


def test_taking_whatever_waits_misses_deadlines_where_the_batcher_does_not() -> None:
    arrivals, pairs = poisson(500, count=5000, seed=0)  # near the limit of one worker
    assert (simulate(arrivals, pairs, batcher(per_pair=4e-6))[0] <= arrivals + BUDGET + 1e-9).all()
    greedy = DeadlineBatcher(exact_model(4e-6), max_pairs=4096, budget=1e9, max_batch_fraction=1.0)
    done, _ = simulate(arrivals, pairs, greedy)
    assert (done > arrivals + BUDGET).any()


def test_service_model_learns_a_linear_cost_and_forgets_the_prior() -> None:
    model = ServiceModel(5e-3, 1e-6)
    assert model.predict(1000) == pytest.approx(6e-3)
    rng = np.random.default_rng(0)
    for pairs in rng.integers(100, 4000, 300):
        model.observe(pairs, 0.5e-3 + 20e-6 * pairs)
    assert model.fixed_s == pytest.approx(0.5e-3, abs=0.1e-3)  # the prior (5 ms) is forgotten
    assert model.per_pair_s == pytest.approx(20e-6, rel=0.02)


def test_service_model_with_one_batch_size_keeps_a_defined_fit() -> None:
    model = ServiceModel(1e-3, 10e-6)
    for _ in range(500):
        model.observe(270, 2e-3)  # all forwards the same size: only the level is known
    assert model.predict(270) == pytest.approx(2e-3, rel=0.02)
    assert model.fixed_s >= 0 and model.per_pair_s >= 0


def test_service_model_clips_a_stall() -> None:
    model = ServiceModel(1e-3, 10e-6)
    before = model.predict(270)
    model.observe(270, 10.0)  # a 10 s stall of a shared machine
    assert model.predict(270) < 3 * before


@pytest.mark.parametrize(
    "kwargs",
    [{"fixed_s": 0, "per_pair_s": 0}, {"fixed_s": -1, "per_pair_s": 1e-6}, {"memory": 0.5}, {"clip": 1}],
)
def test_service_model_refuses_bad_values(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ServiceModel(**{"fixed_s": 1e-3, "per_pair_s": 1e-6, **kwargs})
