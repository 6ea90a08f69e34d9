"""LoadGen log parsing, on logs of real (tiny, bounded) LoadGen runs with a trivial SUT."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlrm_nb.exceptions import DlrmNbError
from dlrm_nb.loadgen.mlperf_logs import (
    DETAIL_NAME,
    LATENCY_KEYS,
    SUMMARY_NAME,
    LoadgenLogError,
    pairs_per_s,
    parse_detail,
    parse_run,
    parse_summary,
)

lg = pytest.importorskip("mlperf_loadgen")

USER_CONF = """\
dlrm.Offline.target_qps = 500
*.*.min_duration = 1000
*.*.max_duration = 3000
*.*.min_query_count = 10
*.*.max_query_count = 200
dlrm.*.performance_sample_count_override = 100
dlrm.Server.target_qps = 40
dlrm.Server.target_latency = 30
dlrm.SingleStream.target_latency = 5
dlrm.MultiStream.target_latency = 20
"""
SCENARIOS = ("Offline", "Server", "SingleStream", "MultiStream")


def run_loadgen(
    out: Path, user_conf: Path, scenario: str, *, accuracy: bool = False, twice: bool = False
) -> Path:
    """One LoadGen test with a SUT that answers every sample at once with 2 float32 values."""
    out.mkdir(parents=True)
    response = np.array([0.25, 1.0], dtype=np.float32)  # kept alive until the test ends

    def issue(queries) -> None:
        lg.QuerySamplesComplete(
            [lg.QuerySampleResponse(q.id, response.ctypes.data, response.nbytes) for q in queries]
        )

    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(1000, 100, lambda samples: None, lambda samples: None)
    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, scenario)
    settings.mode = lg.TestMode.AccuracyOnly if accuracy else lg.TestMode.PerformanceOnly
    settings.FromConfig(str(user_conf), "dlrm", scenario)
    if twice:  # LoadGen logs an error for a second conf file
        settings.FromConfig(str(user_conf), "dlrm", scenario)
    output = lg.LogOutputSettings()
    output.outdir = str(out)
    output.copy_summary_to_stdout = False
    log_settings = lg.LogSettings()
    log_settings.log_output = output
    log_settings.enable_trace = False
    try:
        lg.StartTestWithLogSettings(sut, qsl, settings, log_settings)
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run folders of the four scenarios, an accuracy run and a run with two conf files.

    Each run is a process of its own, all at once (~1.5 s): LoadGen 6 counts conf files per
    process, so a second test in one process logs "Multiple conf files are used" as an error.
    """
    base = tmp_path_factory.mktemp("loadgen")
    conf = base / "user.conf"
    conf.write_text(USER_CONF)
    plan = {s: (s, "") for s in SCENARIOS} | {
        "accuracy": ("Offline", "accuracy"),
        "twice": ("Offline", "twice"),
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, __file__, str(base / name), str(conf), scenario, option],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, (scenario, option) in plan.items()
    }
    for name, proc in procs.items():
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"LoadGen run {name} failed:\n{output}"
    return {name: base / name for name in plan}


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_scenario(runs: dict[str, Path], scenario: str):
    metrics = parse_run(runs[scenario], mean_pairs_per_sample=270)
    json.dumps(metrics, allow_nan=False)  # JSON-ready
    assert metrics["scenario"] == scenario and metrics["mode"] == "PerformanceOnly"
    assert metrics["sut_name"] == "PySUT"
    assert isinstance(metrics["valid"], bool) and metrics["result"] in ("VALID", "INVALID")
    assert metrics["valid"] == (not metrics["invalid_reasons"])
    assert set(metrics["constraints"]) >= {"Min duration", "Min queries", "Early stopping"}
    assert all(isinstance(ok, bool) for ok in metrics["constraints"].values())
    assert tuple(metrics["latency_ns"]) == LATENCY_KEYS
    latency = metrics["latency_ns"]
    assert all(is_number(v) and v > 0 for v in latency.values())
    assert (
        latency["min"]
        <= latency["p50"]
        <= latency["p90"]
        <= latency["p99"]
        <= latency["p99.9"]
        <= latency["max"]
    )
    assert is_number(metrics["metric"]["value"])
    assert is_number(metrics["query_count"]) and metrics["query_count"] >= 1
    effective = metrics["effective_settings"]
    assert effective["scenario"] == scenario and effective["performance_sample_count"] == 100
    assert effective["min_duration_ms"] == 1000 and effective["max_duration_ms"] == 3000
    assert is_number(effective["target_qps"]) and is_number(effective["target_latency_ns"])
    assert metrics["test_parameters"]["performance_sample_count"] == 100
    assert metrics["error_count"] == len(metrics["errors"]) and metrics["warning_count"] == len(
        metrics["warnings"]
    )
    assert "summary_text" not in metrics
    assert is_number(metrics["samples_per_s"]) and metrics["samples_per_s"] > 0
    assert isinstance(metrics["samples_per_s_source"], str)
    assert metrics["pairs_per_s"] == pytest.approx(270 * metrics["samples_per_s"])
    if scenario == "MultiStream":  # prints no rate: derived from the mean query latency
        assert metrics["metric"]["name"] == "99.0th percentile latency (ns)"
        assert effective["samples_per_query"] == 8
        assert metrics["samples_per_s"] == pytest.approx(8e9 / latency["mean"])
    else:
        assert metrics["samples_per_s"] == metrics["stats"].get(
            metrics["samples_per_s_source"], metrics["metric"]["value"]
        )


def test_offline(runs: dict[str, Path]):
    metrics = parse_run(runs["Offline"])
    assert metrics["metric"]["name"] == "Samples per second"
    assert metrics["samples_per_s"] == float(metrics["metric"]["value"])
    assert metrics["effective_settings"]["target_qps"] == 500
    assert metrics["pairs_per_s"] is None and metrics["mean_pairs_per_sample"] is None


def test_server_at_tiny_qps_fails_early_stopping(runs: dict[str, Path]):
    metrics = parse_run(runs["Server"], with_summary_text=True)
    assert metrics["valid"] is False and metrics["result"] == "INVALID"
    assert "Early stopping not satisfied" in metrics["invalid_reasons"]
    assert metrics["constraints"]["Performance constraints"] is True
    assert metrics["constraints"]["Early stopping"] is False
    assert any("more queries" in note for note in metrics["early_stopping"])
    assert metrics["metric"]["name"] == "Completed samples per second"
    assert metrics["samples_per_s"] == pytest.approx(40, rel=0.5)
    assert metrics["stats"]["Scheduled samples per second"] == pytest.approx(40, rel=0.5)
    assert metrics["effective_settings"]["target_qps"] == 40
    assert metrics["effective_settings"]["target_latency_ns"] == 30_000_000
    assert "MLPerf Results Summary" in metrics["summary_text"]


def test_single_stream(runs: dict[str, Path]):
    metrics = parse_run(runs["SingleStream"])
    assert metrics["metric"]["name"] == "90.0th percentile latency (ns)"
    assert metrics["metric"]["value"] == metrics["latency_ns"]["p90"]
    assert metrics["samples_per_s"] == metrics["stats"]["QPS w/ loadgen overhead"]


def test_accuracy_run_has_no_result(runs: dict[str, Path]):
    metrics = parse_run(runs["accuracy"])
    assert metrics["scenario"] == "Offline" and metrics["mode"] == "AccuracyOnly"  # from the detail log
    assert metrics["valid"] is None and metrics["result"] is None and metrics["invalid_reasons"] == []
    assert metrics["samples_per_s"] is None and metrics["samples_per_s_source"] is None
    assert all(v is None for v in metrics["latency_ns"].values())
    assert metrics["error_count"] == 0 and metrics["errors"] == []
    json.dumps(metrics, allow_nan=False)


def test_errors_from_the_detail_log(runs: dict[str, Path]):
    assert parse_run(runs["Offline"])["errors"] == []
    metrics = parse_run(runs["twice"])
    assert metrics["errors"] == [
        {
            "key": "error_invalid_config",
            "value": "Multiple conf files are used. This is not valid for official submission.",
        }
    ]
    assert metrics["error_count"] == 1


def test_parse_detail_errors_warnings_and_bad_lines():
    def line(key: str, value, *, error: bool = False, warning: bool = False) -> str:
        meta = {"is_error": error, "is_warning": warning, "file": "x.cc", "line_no": 1}
        return ":::MLLOG " + json.dumps({"key": key, "value": value, "time_ms": 1.0, "metadata": meta})

    text = "\n".join(
        [
            line("effective_target_qps", 123.5),
            line("effective_scenario", "Server"),
            line("requested_target_qps", 1),
            line("result_validity", "VALID"),
            line("warning_generic_message", "careful", warning=True),
            line("error_runtime", "broken", error=True),
            "some other line",
            ':::MLLOG {"key": "truncated", "val',
        ]
    )
    detail = parse_detail(text)
    assert detail["effective_settings"] == {"target_qps": 123.5, "scenario": "Server"}
    assert detail["results"] == {"result_validity": "VALID"}
    assert detail["warnings"] == [{"key": "warning_generic_message", "value": "careful"}]
    assert detail["errors"] == [{"key": "error_runtime", "value": "broken"}]
    assert detail["entries"] == 6 and detail["unparsed_lines"] == 1


def test_parse_summary_counts_and_valid_result():
    text = """\
================================================
MLPerf Results Summary
================================================
SUT name : X
Scenario : Offline
Mode     : PerformanceOnly
Samples per second: 1234.5
Result is : VALID
  Min duration satisfied : Yes
  Min queries satisfied : Yes
  Early stopping satisfied: Yes

================================================
Additional Stats
================================================
Min latency (ns)                : 10
99.90 percentile latency (ns)   : 99

2 warnings encountered. See detailed log.

1 ERROR encountered. See detailed log.
"""
    summary = parse_summary(text)
    assert summary["result"] == "VALID" and all(summary["constraints"].values())
    assert summary["results"] == {"Samples per second": 1234.5}
    assert summary["warning_count"] == 2 and summary["error_count"] == 1
    assert summary["stats"] == {"Min latency (ns)": 10, "99.90 percentile latency (ns)": 99}


def test_pairs_per_s():
    assert pairs_per_s(10.0, 270) == 2700.0
    assert pairs_per_s(None, 270) is None and pairs_per_s(10.0, None) is None
    for bad in (0, -1, float("nan"), True):
        with pytest.raises(LoadgenLogError, match="mean pairs per sample"):
            pairs_per_s(10.0, bad)


def test_missing_or_foreign_logs(tmp_path: Path, runs: dict[str, Path]):
    with pytest.raises(LoadgenLogError, match="does not exist") as info:
        parse_run(tmp_path / "nope")
    assert isinstance(info.value, DlrmNbError)
    folder = tmp_path / "run"
    folder.mkdir()
    with pytest.raises(LoadgenLogError, match=SUMMARY_NAME):
        parse_run(folder)
    (folder / SUMMARY_NAME).write_text((runs["Offline"] / SUMMARY_NAME).read_text())
    with pytest.raises(LoadgenLogError, match=DETAIL_NAME):
        parse_run(folder)
    (folder / SUMMARY_NAME).write_text("hello\n")
    (folder / DETAIL_NAME).write_text("world\n")
    with pytest.raises(LoadgenLogError, match="are not LoadGen logs"):
        parse_run(folder)


def cut_copy(tmp_path: Path, run: Path, name: str, cut) -> Path:
    """A copy of a real run folder with the log ``name`` replaced by ``cut(its bytes)``."""
    folder = tmp_path / "cut"
    shutil.copytree(run, folder)
    (folder / name).write_bytes(cut((run / name).read_bytes()))
    return folder


def first_lines(count: int):
    return lambda data: b"".join(data.splitlines(keepends=True)[:count])


def without_last_lines(count: int):
    return lambda data: b"".join(data.splitlines(keepends=True)[:-count])


TRUNCATED = {  # run, log, how it is cut, what the message says
    "detail cut mid-line (ulimit -f 1)": (
        "Offline",
        DETAIL_NAME,
        lambda data: data[:1024],
        r"mlperf_log_detail\.txt is truncated: its last line \(line \d+\) is cut short \(':::MLLOG",
    ),
    "empty detail": (
        "Offline",
        DETAIL_NAME,
        lambda data: b"",
        r"mlperf_log_detail\.txt is empty: LoadGen did not",
    ),
    "empty summary": ("Server", SUMMARY_NAME, lambda data: b"", r"mlperf_log_summary\.txt is empty"),
    "detail without its results": (
        "Offline",
        DETAIL_NAME,
        without_last_lines(12),
        r"mlperf_log_detail\.txt is incomplete: it lacks result_query_count, result_mean_latency_ns "
        r"\(\d+ entries read\)",
    ),
    "detail without its settings": (
        "Server",
        DETAIL_NAME,
        first_lines(20),
        r"mlperf_log_detail\.txt is incomplete: it lacks effective_scenario, effective_test_mode "
        r"\(20 entries read\)",
    ),
    "accuracy detail without its settings": (
        "accuracy",
        DETAIL_NAME,
        first_lines(30),
        r"lacks effective_scenario, effective_test_mode",
    ),
    "entry that does not parse": (
        "Offline",
        DETAIL_NAME,
        lambda data: data.replace(b'{"key": "result_query_count"', b'{"key": result_query_count"'),
        r"mlperf_log_detail\.txt, line \d+: not a LoadGen log entry \(JSON with a key\) "
        r"\(':::MLLOG \{\"key\": result_query_count",
    ),
    "summary cut before its counts": (
        "Server",
        SUMMARY_NAME,
        lambda data: data[: data.index(b"Additional Stats")],
        r"mlperf_log_summary\.txt is incomplete: it lacks the warning count, the error count; LoadGen",
    ),
    "summary cut in its results": (
        "SingleStream",
        SUMMARY_NAME,
        lambda data: data[: data.index(b"Result is")],
        r"mlperf_log_summary\.txt is incomplete: it lacks Result is, the warning count, the error count",
    ),
    "accuracy summary cut": (
        "accuracy",
        SUMMARY_NAME,
        lambda data: data[: data.index(b"No errors")],
        r"mlperf_log_summary\.txt is incomplete: it lacks the error count",
    ),
}


@pytest.mark.parametrize("case", sorted(TRUNCATED))
def test_incomplete_logs_are_refused(tmp_path: Path, runs: dict[str, Path], case: str):
    run, name, cut, message = TRUNCATED[case]
    parse_run(runs[run])  # whole, the run's logs pass
    folder = cut_copy(tmp_path, runs[run], name, cut)
    with pytest.raises(LoadgenLogError, match=message) as info:
        parse_run(folder)
    assert str(folder / name) in str(info.value)


def test_complete_detail_logs_end_in_a_newline(runs: dict[str, Path]):
    for folder in runs.values():
        detail = parse_detail((folder / DETAIL_NAME).read_text())
        assert detail["cut_last_line"] is False and detail["first_unparsed_line"] is None


if __name__ == "__main__":  # one LoadGen run: OUT USER_CONF SCENARIO [accuracy|twice]
    out_dir, conf_path, scenario_name, option = sys.argv[1:5]
    run_loadgen(
        Path(out_dir), Path(conf_path), scenario_name, accuracy=option == "accuracy", twice=option == "twice"
    )
