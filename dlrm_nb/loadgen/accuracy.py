"""AUC and accuracy from LoadGen's ``mlperf_log_accuracy.json``, as MLPerf's ``tools/accuracy-dlrm.py``.

The log is a JSON list of ``{"seq_id", "qsl_idx", "data", ...}``; ``data`` is the uppercase hex
of the response LoadGen received for one aggregated sample: little-endian float32
``[p0, y0, p1, y1, ...]`` (prediction, label per user-item pair). Entries are deduplicated by
``qsl_idx`` (the first one is kept), like upstream. A pair is "good" when
``round(prediction) == label`` with numpy's rounding (half to even, so 0.5 counts as 0).

Upstream's second mode reads a log of predictions only (``data`` = float32 ``[p0, p1, ...]``)
and takes the labels from the raw ``day_23`` file: the labels of sample ``qsl_idx`` are the first
column of the lines ``[start, end)`` of that sample's row of the aggregation trace.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from dlrm_nb.data.criteo import ACCURACY_TARGETS, REFERENCE_AUC
from dlrm_nb.data.rawtext import read_line_blocks
from dlrm_nb.exceptions import AccuracyLogError, AggregationError, InputFileError, MalformedLineError
from dlrm_nb.loadgen.aggregation import read_trace

RESPONSE_DTYPE = np.dtype("<f4")  # what LoadGen's response buffers hold
ROC_POINTS = 500  # most points of the ROC curve kept for plotting
_HEX_PER_FLOAT = 2 * RESPONSE_DTYPE.itemsize


# ----------------------------------------------------------------------------- responses


def encode_response(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Interleave ``predictions`` [B] and ``labels`` [B] into LoadGen's response layout:
    float32 ``[2B]`` = ``[p0, y0, p1, y1, ...]``."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.ndim != 1 or predictions.shape != labels.shape:
        raise AccuracyLogError(
            f"predictions of shape {predictions.shape} and labels of shape {labels.shape} cannot be "
            "encoded; need two 1-D arrays of the same length"
        )
    out = np.empty(2 * predictions.shape[0], dtype=RESPONSE_DTYPE)
    out[0::2] = predictions
    out[1::2] = labels
    return out


def decode_data(hex_data: str, *, with_labels: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode one entry's ``data``: ``(predictions float32 [B], labels float32 [B] or None)``."""
    if len(hex_data) % _HEX_PER_FLOAT:
        raise AccuracyLogError(
            f"data has {len(hex_data)} hex digits, not a whole number of float32 values "
            f"({_HEX_PER_FLOAT} each)"
        )
    try:
        raw = bytes.fromhex(hex_data)
    except ValueError as exc:
        raise AccuracyLogError(f"data is not hex ({exc}); need uppercase hex of float32 values") from exc
    values = np.frombuffer(raw, dtype=RESPONSE_DTYPE).astype(np.float32)
    if not with_labels:
        return values, None
    if values.size % 2:
        raise AccuracyLogError(
            f"data holds an odd number of float32 values ({values.size}); need [p0, y0, p1, y1, ...] pairs"
        )
    return values[0::2].copy(), values[1::2].copy()


# ----------------------------------------------------------------------------- reading logs


def read_log_entries(path: str | os.PathLike) -> list[tuple[int, str]]:
    """``(qsl_idx, hex data)`` of the first entry of each ``qsl_idx``, in log order.

    Raises :class:`AccuracyLogError` for a missing file, text that is not a JSON list, an empty
    list, or an entry without an integer ``qsl_idx`` >= 0 or a string ``data``.
    """
    path = Path(path)
    log = _load_json_list(path)
    seen: set[int] = set()
    entries = []
    for position, entry in enumerate(log):
        qsl_idx, data = _entry_fields(path, position, entry)
        if qsl_idx not in seen:
            seen.add(qsl_idx)
            entries.append((qsl_idx, data))
    return entries


def _load_json_list(path: Path) -> list:
    if not path.is_file():
        raise AccuracyLogError(
            f"accuracy log {path} does not exist; "
            "LoadGen writes mlperf_log_accuracy.json in AccuracyOnly mode"
        )
    try:
        with open(path, "rb") as f:
            log = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AccuracyLogError(
            f"accuracy log {path} is not valid JSON ({exc}); need LoadGen's JSON list"
        ) from exc
    if not isinstance(log, list):
        raise AccuracyLogError(
            f"accuracy log {path} holds a JSON {type(log).__name__}, not a list; "
            'need a list of {"seq_id", "qsl_idx", "data"} entries'
        )
    if not log:
        raise AccuracyLogError(
            f"accuracy log {path} holds no entries; a PerformanceOnly run writes an empty log, "
            "run LoadGen in AccuracyOnly mode"
        )
    return log


def _entry_fields(path: Path, position: int, entry: Any) -> tuple[int, str]:
    where = f"accuracy log {path}, entry {position}"
    if not isinstance(entry, dict):
        raise AccuracyLogError(f"{where} is a {type(entry).__name__}; need an object with qsl_idx and data")
    qsl_idx, data = entry.get("qsl_idx"), entry.get("data")
    if isinstance(qsl_idx, bool) or not isinstance(qsl_idx, int) or qsl_idx < 0:
        raise AccuracyLogError(f"{where}: qsl_idx {qsl_idx!r} is not valid; need an integer >= 0")
    if not isinstance(data, str):
        raise AccuracyLogError(
            f"{where} (qsl_idx {qsl_idx}) has no data string; need the hex of float32 values"
        )
    return qsl_idx, data


def _decode_entries(
    path: Path, entries: list[tuple[int, str]], per_pair: int
) -> tuple[np.ndarray, np.ndarray]:
    """All entries' float32 values back to back [sum of counts], and the pairs of each entry int64 [E]."""
    chunks, pairs = [], np.empty(len(entries), dtype=np.int64)
    for k, (qsl_idx, data) in enumerate(entries):
        where = f"accuracy log {path}, qsl_idx {qsl_idx}"
        if len(data) % _HEX_PER_FLOAT:
            raise AccuracyLogError(
                f"{where}: data has {len(data)} hex digits, not a whole number of float32 values "
                f"({_HEX_PER_FLOAT} digits each)"
            )
        n_values = len(data) // _HEX_PER_FLOAT
        if n_values % per_pair:
            raise AccuracyLogError(
                f"{where}: data holds an odd number of float32 values ({n_values}); need "
                "[p0, y0, p1, y1, ...] pairs (for a log of predictions only, give trace and day23_labels)"
            )
        try:
            chunks.append(bytes.fromhex(data))
        except ValueError as exc:
            raise AccuracyLogError(
                f"{where}: data is not hex ({exc}); need uppercase hex of float32 values"
            ) from exc
        pairs[k] = n_values // per_pair
    values = np.frombuffer(b"".join(chunks), dtype=RESPONSE_DTYPE).astype(np.float32)
    return values, pairs


def read_accuracy_log(
    path: str | os.PathLike,
    *,
    trace: str | os.PathLike | np.ndarray | None = None,
    day23_labels: str | os.PathLike | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Read a LoadGen accuracy log: ``(predictions float32 [N], labels float32 [N], queries)``.

    ``queries`` is the number of distinct ``qsl_idx`` (N counts their pairs), in log order.
    Without ``trace``/``day23_labels`` each entry holds ``[p, y]`` pairs. With both, entries hold
    predictions only and the labels come from ``day23_labels`` (a raw ``day_23`` file, plain or
    ``.gz``, whose first column is read, or an array of labels of the whole split) at the rows
    ``[start, end)`` of ``trace`` (a trace file or an int ``[S, 2]`` array) for each ``qsl_idx``:
    upstream's ``--day-23-file --aggregation-trace-file`` mode, valid without sub-sampling.
    """
    path = Path(path)
    if (trace is None) != (day23_labels is None):
        raise AccuracyLogError(
            "the labels of a predictions-only log need both trace and day23_labels; "
            "give both, or neither for a log of [prediction, label] pairs"
        )
    entries = read_log_entries(path)
    if trace is None:
        values, _ = _decode_entries(path, entries, per_pair=2)
        labels = values[1::2]
        odd = (labels != 0) & (labels != 1)
        if odd.any():
            raise AccuracyLogError(
                f"accuracy log {path}: {int(odd.sum()):,} values where labels belong are not 0 or 1 "
                f"(the first: {labels[odd][0].item()!r}); it looks like a log of predictions only: give "
                "trace and day23_labels (dlrm-nb accuracy: --aggregation-trace-file and --day-23-file)"
            )
        return values[0::2].copy(), labels.copy(), len(entries)
    assert day23_labels is not None  # given with trace (checked above)
    predictions, pairs = _decode_entries(path, entries, per_pair=1)
    rows = _trace_rows(path, _as_trace(trace), entries, pairs)
    labels = _split_labels(day23_labels, int(rows[:, 1].max()))
    return predictions, labels[_gather_index(rows)], len(entries)


def _as_trace(trace: str | os.PathLike | np.ndarray) -> np.ndarray:
    if isinstance(trace, np.ndarray):
        if trace.ndim != 2 or trace.shape[1] != 2 or trace.dtype.kind not in "iu" or not len(trace):
            raise AccuracyLogError(
                f"trace array of shape {trace.shape} and dtype {trace.dtype} is not valid; need int [S, 2]"
            )
        return trace.astype(np.int64, copy=False)
    try:
        return read_trace(trace)
    except AggregationError as exc:
        raise AccuracyLogError(str(exc)) from exc


def _trace_rows(
    path: Path, trace: np.ndarray, entries: list[tuple[int, str]], pairs: np.ndarray
) -> np.ndarray:
    """The trace rows int64 [E, 2] of the entries, checked against their prediction counts [E]."""
    qsl = np.fromiter((q for q, _ in entries), dtype=np.int64, count=len(entries))
    if qsl.max() >= len(trace):
        bad = int(qsl[qsl >= len(trace)][0])
        raise AccuracyLogError(
            f"accuracy log {path}: qsl_idx {bad} is beyond the trace's {len(trace)} samples; "
            "use the trace of the run that wrote the log"
        )
    rows = trace[qsl]
    mismatch = np.flatnonzero(rows[:, 1] - rows[:, 0] != pairs)
    if mismatch.size:
        k = int(mismatch[0])
        raise AccuracyLogError(
            f"accuracy log {path}: qsl_idx {int(qsl[k])} holds {int(pairs[k])} predictions but its trace row "
            f"[{int(rows[k, 0])}, {int(rows[k, 1])}) has {int(rows[k, 1] - rows[k, 0])} pairs; "
            "use the trace of the run that wrote the log"
        )
    return rows


def _gather_index(rows: np.ndarray) -> np.ndarray:
    """Row indices int64 [sum of lengths] covering each ``[start, end)`` of ``rows`` [E, 2] in order."""
    lengths = rows[:, 1] - rows[:, 0]
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(rows[:, 0] - first, lengths)


def _split_labels(source: str | os.PathLike | np.ndarray, n_rows: int) -> np.ndarray:
    """The labels float32 [>= n_rows] of the split's first ``n_rows`` rows."""
    if isinstance(source, np.ndarray):
        if source.ndim != 1 or source.shape[0] < n_rows:
            raise AccuracyLogError(
                f"day23_labels array of shape {source.shape} is not valid; "
                f"need 1-D with at least {n_rows} labels"
            )
        return source.astype(np.float32, copy=False)
    return read_raw_labels(source, n_rows).astype(np.float32)


def read_raw_labels(path: str | os.PathLike, n_lines: int) -> np.ndarray:
    """The labels (first column) of the first ``n_lines`` lines of a raw Criteo file: int8 [n_lines].

    Vectorized over blocks of lines; a label other than ``0``/``1`` raises
    :class:`~dlrm_nb.exceptions.MalformedLineError` naming the line, too few lines an
    :class:`~dlrm_nb.exceptions.InputFileError`.
    """
    out = np.empty(n_lines, dtype=np.int8)
    done = 0
    for first_line, n, block in read_line_blocks(path, max_lines=n_lines):
        out[done : done + n] = _block_labels(os.fspath(path), first_line, block)
        done += n
    if done < n_lines:
        raise InputFileError(
            f"{path} has {done} lines but the trace covers {n_lines} pairs; "
            "give the raw day_23 file of the test split (and no sub-sampling)"
        )
    return out


def _block_labels(path: str, first_line: int, block: bytearray) -> np.ndarray:
    """Labels int8 [lines] of a block of whole lines, each ended by ``\\n``."""
    buf = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(buf == ord("\n"))
    starts = np.concatenate([[0], ends[:-1] + 1])
    digit, after = buf[starts], buf[np.minimum(starts + 1, len(buf) - 1)]
    ok = ((digit == ord("0")) | (digit == ord("1"))) & ((after == ord("\t")) | (after == ord("\n")))
    ok &= ends > starts
    if not ok.all():
        k = int(np.flatnonzero(~ok)[0])
        line = bytes(block[starts[k] : ends[k]])
        value = line.split(b"\t", 1)[0].decode("utf-8", "replace")
        raise MalformedLineError(path, first_line + k, "label", value, "0 or 1")
    return (digit - ord("0")).astype(np.int8)


# ----------------------------------------------------------------------------- metrics


@dataclass(frozen=True, eq=False)
class AccuracyResult:
    """AUC and accuracy over all pairs of a log, and the MLPerf rule against ``reference_auc``.

    ``fpr``/``tpr``: float64 [<= ROC_POINTS] points of the ROC curve, for plotting.
    """

    auc: float
    accuracy: float
    good: int
    total: int
    queries: int
    reference_auc: float = REFERENCE_AUC
    fpr: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tpr: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def line(self) -> str:
        """Upstream's summary line, e.g. ``AUC=72.205%, accuracy=76.800%, good=384, total=500, queries=3``."""
        return (
            f"AUC={100.0 * self.auc:.3f}%, accuracy={100.0 * self.accuracy:.3f}%, "
            f"good={self.good}, total={self.total}, queries={self.queries}"
        )

    def targets(self) -> dict[str, dict[str, Any]]:
        """For each MLPerf target (``99%``, ``99.9%``): fraction, AUC threshold and whether it passed."""
        return {
            name: {
                "fraction": fraction,
                "threshold": fraction * self.reference_auc,
                "passed": self.auc >= fraction * self.reference_auc,
            }
            for name, fraction in ACCURACY_TARGETS.items()
        }

    def passed(self, target: str = "99%") -> bool:
        """Whether the AUC reaches ``target`` (a key of ``ACCURACY_TARGETS``) of the reference AUC."""
        if target not in ACCURACY_TARGETS:
            raise AccuracyLogError(
                f"accuracy target {target!r} is not valid; choose one of {list(ACCURACY_TARGETS)}"
            )
        return self.auc >= ACCURACY_TARGETS[target] * self.reference_auc

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of everything, the ROC points as lists."""
        return {
            "auc": self.auc,
            "accuracy": self.accuracy,
            "good": self.good,
            "total": self.total,
            "queries": self.queries,
            "reference_auc": self.reference_auc,
            "targets": self.targets(),
            "line": self.line(),
            "roc": {"fpr": self.fpr.tolist(), "tpr": self.tpr.tolist()},
        }


def evaluate(
    predictions: np.ndarray,
    labels: np.ndarray,
    queries: int,
    *,
    reference_auc: float = REFERENCE_AUC,
    roc_points: int = ROC_POINTS,
) -> AccuracyResult:
    """AUC (``sklearn.metrics.roc_auc_score``), accuracy and ROC points of ``predictions`` [N]
    against ``labels`` [N] (0/1)."""
    predictions, labels = _check_inputs(predictions, labels)
    if not math.isfinite(reference_auc) or not 0 < reference_auc <= 1:
        raise AccuracyLogError(f"reference AUC {reference_auc!r} is not valid; need a number in (0, 1]")
    good = int(np.count_nonzero(np.round(predictions) == labels))
    fpr, tpr, _ = roc_curve(labels, predictions)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(roc_points, len(fpr))).round().astype(np.int64))
    return AccuracyResult(
        auc=float(roc_auc_score(labels, predictions)),
        accuracy=good / len(labels),
        good=good,
        total=len(labels),
        queries=int(queries),
        reference_auc=float(reference_auc),
        fpr=fpr[keep],
        tpr=tpr[keep],
    )


def _check_inputs(predictions: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.ndim != 1 or predictions.shape != labels.shape or not len(labels):
        raise AccuracyLogError(
            f"predictions of shape {predictions.shape} and labels of shape {labels.shape} are not valid; "
            "need two non-empty 1-D arrays of the same length"
        )
    if not np.isfinite(predictions).all():
        bad = int(np.count_nonzero(~np.isfinite(predictions)))
        raise AccuracyLogError(f"{bad} predictions are NaN or infinite; need finite probabilities")
    not_binary = (labels != 0) & (labels != 1)
    if not_binary.any():
        raise AccuracyLogError(f"label {labels[not_binary][0].item()!r} is not valid; labels must be 0 or 1")
    if labels.min() == labels.max():
        raise AccuracyLogError(
            f"all {len(labels)} labels are {labels[0]:g}; the AUC needs both classes (use more samples)"
        )
    return predictions, labels


def accuracy_from_log(
    path: str | os.PathLike,
    *,
    trace: str | os.PathLike | np.ndarray | None = None,
    day23_labels: str | os.PathLike | np.ndarray | None = None,
    reference_auc: float = REFERENCE_AUC,
) -> AccuracyResult:
    """Read ``path`` (see :func:`read_accuracy_log`) and evaluate it."""
    predictions, labels, queries = read_accuracy_log(path, trace=trace, day23_labels=day23_labels)
    return evaluate(predictions, labels, queries, reference_auc=reference_auc)


def evaluate_log(
    path: str | os.PathLike,
    *,
    trace: str | os.PathLike | np.ndarray | None = None,
    day23_labels: str | os.PathLike | np.ndarray | None = None,
    reference_auc: float = REFERENCE_AUC,
) -> dict[str, Any]:
    """:func:`accuracy_from_log` as a JSON-ready dict (:meth:`AccuracyResult.to_dict`)."""
    return accuracy_from_log(
        path, trace=trace, day23_labels=day23_labels, reference_auc=reference_auc
    ).to_dict()
