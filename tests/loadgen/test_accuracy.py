"""Accuracy from LoadGen logs: upstream's line exactly, both modes, dedupe, encoding, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dlrm_nb.data.criteo import BIN_DTYPE, N_FIELDS, REFERENCE_AUC
from dlrm_nb.exceptions import DlrmNbError, InputFileError, MalformedLineError
from dlrm_nb.loadgen.accuracy import (
    ROC_POINTS,
    AccuracyLogError,
    AccuracyResult,
    accuracy_from_log,
    decode_data,
    encode_response,
    evaluate,
    evaluate_log,
    read_accuracy_log,
    read_log_entries,
    read_raw_labels,
)
from dlrm_nb.loadgen.aggregation import quantile_trace


@pytest.fixture
def acc(golden: Path) -> Path:
    return golden / "accuracy"


def day23_args(golden: Path) -> dict:
    return {
        "trace": golden / "accuracy" / "dlrm_trace_of_aggregated_samples.txt",
        "day23_labels": golden / "raw" / "day_23",
    }


def write_log(path: Path, entries: list) -> Path:
    path.write_text(json.dumps(entries))
    return path


def test_golden_line(acc: Path):
    result = accuracy_from_log(acc / "mlperf_log_accuracy.json")
    assert result.line() == (acc / "accuracy_dlrm_output.txt").read_text().strip()
    assert result.line() == "AUC=72.205%, accuracy=76.800%, good=384, total=500, queries=3"
    assert (result.good, result.total, result.queries) == (384, 500, 3)
    assert result.reference_auc == REFERENCE_AUC
    as_dict = evaluate_log(acc / "mlperf_log_accuracy.json")
    assert as_dict["line"] == result.line() and as_dict["auc"] == result.auc
    assert json.loads(json.dumps(as_dict, allow_nan=False)) == as_dict


def test_golden_line_day23_mode(golden: Path, acc: Path):
    log = acc / "mlperf_log_accuracy_predictions_only.json"
    result = accuracy_from_log(log, **day23_args(golden))
    assert result.line() == (acc / "accuracy_dlrm_output_day23_mode.txt").read_text().strip()
    full = accuracy_from_log(acc / "mlperf_log_accuracy.json")
    assert result.auc == full.auc and result.good == full.good


def test_day23_mode_with_arrays(golden: Path, acc: Path):
    """Labels from an array (the test split's label column) and the trace as an array."""
    records = np.fromfile(golden / "prep_M1000_r0" / "terabyte_processed_test.bin", dtype=BIN_DTYPE)
    labels = records.reshape(-1, N_FIELDS)[:, 0]
    log = acc / "mlperf_log_accuracy_predictions_only.json"
    p1, y1, q1 = read_accuracy_log(log, trace=quantile_trace(500), day23_labels=labels)
    p2, y2, q2 = read_accuracy_log(acc / "mlperf_log_accuracy.json")
    assert q1 == q2 == 3 and y1.dtype == y2.dtype == np.float32
    assert np.array_equal(p1, p2) and np.array_equal(y1, y2)


def test_predictions_match_the_model(golden: Path, golden_large: Path, acc: Path):
    predictions, labels, queries = read_accuracy_log(acc / "mlperf_log_accuracy.json")
    assert queries == 3
    assert predictions.dtype == labels.dtype == np.float32 and predictions.shape == labels.shape == (500,)
    trace = quantile_trace(500)
    order = [q for q, _ in read_log_entries(acc / "mlperf_log_accuracy.json")]
    assert order == [2, 0, 1]
    rows = np.concatenate([np.arange(*trace[q]) for q in order])
    model = np.load(golden_large / "model_40M_arch" / "predictions.npy")
    np.testing.assert_allclose(predictions, model[rows], rtol=0, atol=1e-6)
    assert np.array_equal(labels, read_raw_labels(golden / "raw" / "day_23", 500)[rows])


def test_dedupe_by_qsl_idx(acc: Path, tmp_path: Path):
    log = json.loads((acc / "mlperf_log_accuracy.json").read_text())
    first = dict(log[1], seq_id=3)  # a repeat of qsl_idx 0 with other values: ignored
    first["data"] = encode_response(np.ones(200), np.zeros(200)).tobytes().hex().upper()
    duplicated = write_log(tmp_path / "dup.json", [*log, first, dict(log[0], seq_id=4, token_count=7)])
    result = accuracy_from_log(duplicated)
    assert result.line() == accuracy_from_log(acc / "mlperf_log_accuracy.json").line()
    assert len(read_log_entries(duplicated)) == 3


def test_reencode_gives_the_same_hex(acc: Path):
    for _, data in read_log_entries(acc / "mlperf_log_accuracy.json"):
        predictions, labels = decode_data(data)
        assert encode_response(predictions, labels).tobytes().hex().upper() == data
    for _, data in read_log_entries(acc / "mlperf_log_accuracy_predictions_only.json"):
        predictions, labels = decode_data(data, with_labels=False)
        assert labels is None and predictions.tobytes().hex().upper() == data


def test_encode_response_layout():
    out = encode_response(np.array([0.25, 0.75]), np.array([0, 1]))
    assert out.dtype == np.float32 and out.tolist() == [0.25, 0.0, 0.75, 1.0]
    assert encode_response(np.zeros(0, np.float32), np.zeros(0, np.float32)).shape == (0,)
    with pytest.raises(AccuracyLogError, match="same length"):
        encode_response(np.zeros(3), np.zeros(2))


def test_rounding_is_half_to_even():
    """upstream compares np.float32.round() with the label: 0.5 rounds to 0."""
    result = evaluate(np.array([0.5, 0.5, 0.2, 0.9], np.float32), np.array([0, 1, 0, 1], np.float32), 1)
    assert result.good == 3 and result.total == 4 and result.accuracy == 0.75


def test_targets_and_dict():
    result = AccuracyResult(auc=0.80, accuracy=0.9, good=9, total=10, queries=2)
    targets = result.targets()
    assert targets["99%"]["passed"] and not targets["99.9%"]["passed"]
    assert targets["99%"]["threshold"] == pytest.approx(0.794475)
    assert result.passed("99%") and not result.passed("99.9%")
    assert AccuracyResult(0.8017, 0, 0, 1, 1).passed("99.9%")
    assert not AccuracyResult(0.80, 0, 0, 1, 1, reference_auc=0.9).passed()
    with pytest.raises(AccuracyLogError, match="target '98%' is not valid"):
        result.passed("98%")
    json.dumps(result.to_dict(), allow_nan=False)


def test_roc_points_are_subsampled():
    rng = np.random.default_rng(0)
    labels = (rng.random(100_000) < 0.25).astype(np.float32)
    predictions = np.clip(labels * 0.2 + rng.random(100_000) * 0.8, 0, 1).astype(np.float32)
    result = evaluate(predictions, labels, 400)
    assert 2 <= len(result.fpr) == len(result.tpr) <= ROC_POINTS
    assert result.fpr[0] == 0 and result.fpr[-1] == 1 and result.tpr[-1] == 1
    assert np.all(np.diff(result.fpr) >= 0)
    data = result.to_dict()
    assert len(data["roc"]["fpr"]) == len(result.fpr) and data["line"] == result.line()


# ----------------------------------------------------------------------------- bad inputs

GOOD_DATA = "0000003F0000803F"  # [0.5, 1.0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"qsl_idx": 0}', "holds a JSON dict, not a list"),
        ("[\n]\n", "holds no entries"),
        ('["x"]', "entry 0 is a str"),
        ('[{"qsl_idx": 0}]', "entry 0 (qsl_idx 0) has no data"),
        ('[{"data": "00"}]', "qsl_idx None is not valid"),
        ('[{"qsl_idx": -1, "data": "00"}]', "qsl_idx -1 is not valid"),
        (f'[{{"qsl_idx": 0, "data": "{GOOD_DATA}"}}, {{"qsl_idx": 1, "data": "0000003F"}}]', "odd number"),
        ('[{"qsl_idx": 0, "data": "0000003F00"}]', "not a whole number of float32"),
        ('[{"qsl_idx": 0, "data": "ZZ00003F0000803F"}]', "data is not hex"),
    ],
)
def test_bad_logs(tmp_path: Path, content: str, message: str):
    path = tmp_path / "mlperf_log_accuracy.json"
    path.write_text(content)
    with pytest.raises(AccuracyLogError) as info:
        read_accuracy_log(path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert isinstance(info.value, DlrmNbError)


def test_missing_log(tmp_path: Path):
    with pytest.raises(AccuracyLogError, match="does not exist"):
        read_accuracy_log(tmp_path / "mlperf_log_accuracy.json")


def test_decode_errors():
    with pytest.raises(AccuracyLogError, match="odd number"):
        decode_data("0000003F")
    with pytest.raises(AccuracyLogError, match="not hex"):
        decode_data("XX00003F")
    with pytest.raises(AccuracyLogError, match="whole number"):
        decode_data("000000")


def test_day23_mode_errors(golden: Path, acc: Path, tmp_path: Path):
    log = acc / "mlperf_log_accuracy_predictions_only.json"
    with pytest.raises(AccuracyLogError, match="need both trace and day23_labels"):
        read_accuracy_log(log, trace=quantile_trace(500))
    with pytest.raises(AccuracyLogError, match="holds 100 predictions but its trace row"):
        read_accuracy_log(log, trace=quantile_trace(600), day23_labels=np.zeros(600))
    with pytest.raises(AccuracyLogError, match="qsl_idx 2 is beyond the trace's 2 samples"):
        read_accuracy_log(log, trace=quantile_trace(400), day23_labels=np.zeros(400))
    with pytest.raises(AccuracyLogError, match="need 1-D with at least 500 labels"):
        read_accuracy_log(log, trace=quantile_trace(500), day23_labels=np.zeros(499))
    with pytest.raises(AccuracyLogError, match="trace array of shape"):
        read_accuracy_log(log, trace=np.zeros((3, 3), np.int64), day23_labels=np.zeros(500))
    with pytest.raises(AccuracyLogError, match="does not exist"):
        read_accuracy_log(log, trace=tmp_path / "none.txt", day23_labels=np.zeros(500))
    short = tmp_path / "day_23"
    short.write_bytes(b"".join((golden / "raw" / "day_23").read_bytes().splitlines(keepends=True)[:450]))
    with pytest.raises(InputFileError, match="has 450 lines but the trace covers 500 pairs"):
        read_accuracy_log(log, trace=quantile_trace(500), day23_labels=short)


def test_raw_labels(golden: Path, tmp_path: Path):
    raw = golden / "raw" / "day_23"
    expected = [int(line.split(b"\t")[0]) for line in raw.read_bytes().splitlines()[:700]]
    assert read_raw_labels(raw, 700).tolist() == expected
    bad = tmp_path / "day_23"
    bad.write_bytes(b"1\t2\t3\n0\n2\t5\n")
    assert read_raw_labels(bad, 2).tolist() == [1, 0]
    with pytest.raises(MalformedLineError, match=r"line 3, field label: '2' is not valid \(0 or 1\)"):
        read_raw_labels(bad, 3)
    bad.write_bytes(b"1\t2\n\n0\t1\n")
    with pytest.raises(MalformedLineError, match="line 2, field label: ''"):
        read_raw_labels(bad, 3)


@pytest.mark.parametrize(
    ("predictions", "labels", "message"),
    [
        ([0.1, 0.2], [1, 1], "all 2 labels are 1; the AUC needs both classes"),
        ([0.1, np.nan], [0, 1], "1 predictions are NaN or infinite"),
        ([0.1, 0.2], [0, 2], "label 2.0 is not valid; labels must be 0 or 1"),
        ([], [], "need two non-empty 1-D arrays"),
        ([0.1], [0, 1], "need two non-empty 1-D arrays"),
    ],
)
def test_evaluate_errors(predictions: list, labels: list, message: str):
    with pytest.raises(AccuracyLogError) as info:
        evaluate(np.array(predictions, np.float32), np.array(labels, np.float32), 1)
    assert message in str(info.value)


def test_bad_reference_auc(acc: Path):
    with pytest.raises(AccuracyLogError, match="reference AUC 0 is not valid"):
        accuracy_from_log(acc / "mlperf_log_accuracy.json", reference_auc=0)
