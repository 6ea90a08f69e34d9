"""The LoadGen harness with the real mlperf_loadgen on tiny data (golden model and split)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from dlrm_nb.exceptions import DlrmNbError
from dlrm_nb.loadgen.benchmark import open_benchmark
from dlrm_nb.loadgen.qps_search import search_server_qps
from dlrm_nb.loadgen.settings import LoadgenSettings, auto_instances, auto_threads
from dlrm_nb.model.checkpoint import load_state_dict

SHORT = {"min_duration_ms": 300, "max_duration_ms": 1500, "max_pairs": 256}


@pytest.fixture(scope="module")
def bench(golden: Path):
    return open_benchmark(
        golden / "model_tiny" / "checkpoint.pt",
        golden / "prep_M1000_r0",
        aggregation="fixed",
        aggregation_size=5,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scenario", "extra"),
    [("SingleStream", {}), ("MultiStream", {}), ("Server", {"target_qps": 50}), ("Offline", {})],
)
def test_each_scenario_yields_parsed_metrics(bench, tmp_path: Path, scenario: str, extra: dict) -> None:
    settings = LoadgenSettings(scenario=scenario, **SHORT, **extra)
    metrics = bench.run(settings, tmp_path)
    folder = tmp_path / scenario / "performance"
    assert json.loads((folder / "metrics.json").read_text())["scenario"] == scenario
    assert (folder / "mlperf_log_summary.txt").exists() and (folder / "user.conf").exists()
    assert metrics["scenario"] == metrics["settings"]["scenario"] == scenario
    assert metrics["mode"] == "PerformanceOnly"
    assert metrics["valid"] == (metrics["result"] == "VALID") and metrics["result"] in ("VALID", "INVALID")
    assert metrics["valid"] or metrics["invalid_reasons"]  # an INVALID run says why
    latency = metrics["latency_ns"]
    assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert metrics["samples_per_s"] > 0 and metrics["query_count"] > 0
    sut = metrics["sut"]
    assert sut["samples"] > 0 and sut["forwards"] > 0 and sut["model_seconds"] > 0
    assert sut["pairs"] == sut["samples"] * 5  # fixed aggregation: 5 pairs per sample
    assert 0 < sut["mean_batch_pairs"] <= SHORT["max_pairs"]
    if scenario == "Offline":  # one query holding every sample
        assert metrics["query_count"] == 1
    else:  # LoadGen's samples per query: 8 in MultiStream, 1 otherwise
        assert sut["samples"] == metrics["query_count"] * (8 if scenario == "MultiStream" else 1)
    assert metrics["mean_pairs_per_sample"] == 5
    assert metrics["pairs_per_s"] == pytest.approx(metrics["samples_per_s"] * 5)
    sut_latencies = np.load(folder / "sut_latencies_ns.npy")
    assert len(sut_latencies) == sut["samples"] and (sut_latencies > 0).all()


@pytest.mark.slow
def test_accuracy_mode_auc_equals_direct_predictions(bench, tmp_path: Path) -> None:
    metrics = bench.run(LoadgenSettings(scenario="Offline", mode="accuracy", **SHORT), tmp_path)
    batch = bench.split.batch(slice(0, int(bench.trace[-1, 1])))
    direct = bench.predictor.predict(torch.from_numpy(batch.dense), torch.from_numpy(batch.cats)).numpy()
    expected = roc_auc_score(batch.labels, direct)
    assert metrics["accuracy"]["auc"] == pytest.approx(expected, abs=1e-6)
    assert metrics["accuracy"]["total"] == len(direct)


def test_failure_inside_predict_fails_the_run(bench, tmp_path: Path) -> None:
    original = bench.predictor.predict

    def broken(dense, ids):  # fine for the warm-up, fails inside the SUT's worker thread
        if threading.current_thread() is threading.main_thread():
            return original(dense, ids)
        raise RuntimeError("out of memory, pretend")

    bench.predictor.predict = broken
    try:
        with pytest.raises(
            DlrmNbError, match=r"the model failed during the Offline run.*out of memory, pretend"
        ):
            bench.run(LoadgenSettings(scenario="Offline", **SHORT), tmp_path, isolate=False)
    finally:
        bench.predictor.predict = original


@pytest.mark.slow
def test_qps_search_stops_within_its_budget(bench, tmp_path: Path) -> None:
    calls = []

    def probe(qps: float, final: bool):
        calls.append(qps)
        settings = LoadgenSettings(
            scenario="Server", target_qps=qps, min_duration_ms=400, max_duration_ms=800, max_pairs=256
        )
        return bench.run(settings, tmp_path / f"p{len(calls)}")

    started = time.perf_counter()
    result = search_server_qps(probe, low=10, high=400, budget_s=20, probe_s=1.0)
    assert time.perf_counter() - started <= 20
    # every call is a probe, plus the confirming run when it fitted the budget
    assert result.probes and len(calls) == len(result.probes) + (result.confirmed is not None)
    assert all({"qps", "p99_ms", "valid"} <= set(row) for row in result.probes)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scenario": "Batch"}, "scenario 'Batch' is not one of SingleStream, MultiStream, Server, Offline"),
        ({"mode": "submission"}, "mode 'submission' is not one of performance, accuracy"),
        ({"scenario": "Server", "target_qps": 0}, "target_qps 0 must be > 0"),
        (
            {"scenario": "Server", "target_qps": 10, "latency_ms": -1},
            "latency_ms -1 is not valid: need a number > 0",
        ),
        ({"scenario": "Server"}, "scenario Server needs target_qps"),
    ],
)
def test_bad_settings_fail_before_loadgen(kwargs: dict, message: str) -> None:
    with pytest.raises(DlrmNbError, match=message.replace("(", r"\(")):
        LoadgenSettings(**kwargs)


def test_sample_count_above_the_data_is_refused(bench, tmp_path: Path) -> None:
    with pytest.raises(DlrmNbError, match=r"performance_sample_count 5000 is more than the 100 aggregated"):
        bench.run(LoadgenSettings(performance_sample_count=5000, **SHORT), tmp_path)
    assert not (tmp_path / "Offline" / "performance" / "mlperf_log_summary.txt").exists()


def test_mismatched_checkpoint_and_data(golden: Path, tmp_path: Path) -> None:
    state, _ = load_state_dict(golden / "model_tiny" / "checkpoint.pt", mmap=False)
    state["emb_l.3.weight"] = state["emb_l.3.weight"][:10].clone()
    torch.save({"state_dict": state}, tmp_path / "small.pt")
    with pytest.raises(
        DlrmNbError, match=r"feature C4 has [\d,]+ distinct values but embedding table 3 only 10 rows"
    ):
        open_benchmark(tmp_path / "small.pt", golden / "prep_M1000_r0")
    with pytest.raises(DlrmNbError, match="holds none of"):
        open_benchmark(golden / "model_tiny" / "checkpoint.pt", tmp_path)


def test_trace_is_written_in_upstream_format(golden: Path, golden_large: Path, tmp_path: Path) -> None:
    path = tmp_path / "trace.txt"
    open_benchmark(
        golden_large / "model_40M_arch" / "checkpoint.pt", golden / "prep_M1000_r0", trace_path=path
    )
    assert path.read_text() == (golden / "accuracy" / "dlrm_trace_of_aggregated_samples.txt").read_text()
    assert np.array_equal(np.loadtxt(path, delimiter=",", dtype=int)[:, :2][-1], [400, 500])


@pytest.mark.slow
def test_server_with_two_instances(bench, tmp_path: Path) -> None:
    settings = LoadgenSettings(
        scenario="Server", target_qps=200, instances=2, threads_per_instance=1, **SHORT
    )
    metrics = bench.run(settings, tmp_path)
    sut = metrics["sut"]
    assert sut["instances"] == 2 and sut["threads_per_instance"] == 1
    assert sut["samples"] == metrics["query_count"] > 0 and sut["pairs"] == sut["samples"] * 5
    closed = sum(sut[f"closed_on_{reason}"] for reason in ("size", "deadline", "idle", "flush"))
    assert closed == sut["forwards"]  # every batch closed for one reason (5-pair samples: none split)
    assert sut["budget_ms"] == pytest.approx(0.8 * settings.latency_ms)
    assert sut["forward_fixed_ms"] >= 0 and sut["forward_us_per_pair"] >= 0
    assert len(np.load(tmp_path / "Server" / "performance" / "sut_latencies_ns.npy")) == sut["samples"]


def test_offline_with_two_instances_answers_every_sample_once(bench, tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    settings = LoadgenSettings(
        scenario="Offline", mode="accuracy", instances=2, threads_per_instance=1, **SHORT
    )
    metrics = bench.run(settings, tmp_path, isolate=False)
    assert metrics["sut"]["instances"] == 2 and metrics["sut"]["threads_per_instance"] == 1
    pairs = int(bench.trace[-1, 1])
    batch = bench.split.batch(slice(0, pairs))
    direct = bench.predictor.predict(torch.from_numpy(batch.dense), torch.from_numpy(batch.cats)).numpy()
    assert metrics["accuracy"]["total"] == metrics["sut"]["pairs"] == pairs  # each sample once
    assert metrics["accuracy"]["auc"] == pytest.approx(roc_auc_score(batch.labels, direct), abs=1e-6)
    assert torch.get_num_threads() == threads  # the workers' thread settings do not leak


@pytest.mark.parametrize(
    ("cores", "scenario", "layout"),
    [
        (1, "Server", (1, 1)),
        (2, "Server", (1, 1)),  # LoadGen's issue thread keeps a core (DESIGN §7)
        (2, "Offline", (1, 2)),
        (2, "SingleStream", (1, 2)),
        (4, "Server", (1, 3)),
        (8, "Server", (2, 4)),
        (8, "Offline", (2, 4)),
        (16, "Offline", (4, 4)),
        (56, "Server", (14, 4)),
    ],
)
def test_thread_layout_by_core_count(cores: int, scenario: str, layout: tuple[int, int]) -> None:
    instances = auto_instances(cores)
    assert (instances, auto_threads(cores, instances, scenario)) == layout


def test_instances_settings() -> None:
    server = LoadgenSettings(scenario="Server", target_qps=10, instances=3)
    assert server.thread_layout(16) == (3, 5)
    assert LoadgenSettings(instances=2, threads_per_instance=1).thread_layout(2) == (2, 1)
    assert LoadgenSettings(scenario="SingleStream", instances=4).thread_layout(8) == (1, 8)
    with pytest.raises(DlrmNbError, match="instances 0 is not valid: need a whole number >= 1"):
        LoadgenSettings(instances=0)
    with pytest.raises(DlrmNbError, match="threads_per_instance 0 is not valid"):
        LoadgenSettings(threads_per_instance=0)


def test_cut_logs_fail_the_run_and_leave_no_metrics(
    bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real LoadGen run whose detail log is then cut as a 1 KiB file size limit cuts it: the
    run fails naming the log, and no metrics.json is left (not even one of an earlier run)."""
    import mlperf_loadgen as lg

    from dlrm_nb.loadgen.mlperf_logs import DETAIL_NAME
    from dlrm_nb.loadgen.runner import METRICS_NAME

    real = lg.StartTestWithLogSettings
    folder = tmp_path / "Offline" / "performance"

    def then_cut(*args) -> None:
        real(*args)
        detail = folder / DETAIL_NAME
        detail.write_bytes(detail.read_bytes()[:1024])

    monkeypatch.setattr(lg, "StartTestWithLogSettings", then_cut)
    folder.mkdir(parents=True)
    (folder / METRICS_NAME).write_text('{"from": "an earlier run"}\n')
    with pytest.raises(DlrmNbError, match=rf"{DETAIL_NAME} is truncated: its last line \(line \d+\) is cut"):
        bench.run(LoadgenSettings(scenario="Offline", **SHORT), tmp_path, isolate=False)
    assert not (folder / METRICS_NAME).exists() and (folder / DETAIL_NAME).stat().st_size == 1024
