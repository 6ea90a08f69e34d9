"""Parse what LoadGen writes in a run folder into a JSON-ready metrics dict.

* ``mlperf_log_summary.txt``: sections "MLPerf Results Summary" (scenario, mode, the scenario's
  headline number, ``Result is : VALID|INVALID``, ``... satisfied : Yes|NO`` lines,
  recommendations, early-stopping notes), "Additional Stats" (latencies in ns, QPS) and
  "Test Parameters Used"; then the warning and error counts. The printed fields differ per
  scenario; an AccuracyOnly run prints only the counts.
* ``mlperf_log_detail.txt``: one ``:::MLLOG {json}`` line per event; ``effective_*`` keys are the
  settings LoadGen used, entries whose ``metadata.is_error`` / ``is_warning`` is true are errors /
  warnings, ``result_*`` keys repeat the results.

Logs are checked before they are trusted (:func:`check_logs`): a log that is empty, ends in a cut
line, holds an entry that does not parse, or lacks what every complete log of its mode holds (a
full disk, a file size limit or a killed run cut it short) is an error naming the file and what
is missing, and no metrics come of it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from dlrm_nb.exceptions import LoadgenLogError

SUMMARY_NAME = "mlperf_log_summary.txt"
DETAIL_NAME = "mlperf_log_detail.txt"
ACCURACY_LOG_NAME = "mlperf_log_accuracy.json"
LATENCY_KEYS = ("min", "max", "mean", "p50", "p90", "p95", "p97", "p99", "p99.9")
MLLOG_PREFIX = ":::MLLOG "

_SECTIONS = {
    "MLPerf Results Summary": "results",
    "Additional Stats": "stats",
    "Test Parameters Used": "parameters",
}
_SEPARATOR = re.compile(r"^=+$")
_KEY_VALUE = re.compile(r"^(?P<key>[^:]*?)\s*:\s*(?P<value>.*?)\s*$")
_SATISFIED = re.compile(r"^(?P<name>.+?)\s+satisfied\s*:\s*(?P<flag>\w+)\s*$", re.IGNORECASE)
_COUNT = re.compile(r"^(?P<count>No|\d+)\s+(?P<what>warning|error)s?\s+encountered", re.IGNORECASE)
_MIN_MAX_MEAN = re.compile(r"^(?P<name>Min|Max|Mean) latency \(ns\)$")
_PERCENTILE = re.compile(r"^(?P<pct>[\d.]+) percentile latency \(ns\)$")
_DETAIL_PERCENTILE = re.compile(r"^result_(?P<pct>[\d.]+)_percentile_latency_ns$")
# Headline numbers that are sample rates, by scenario (SingleStream prints queries/s of 1 sample).
_RATE_LABELS = ("Samples per second", "Completed samples per second", "QPS w/ loadgen overhead")
#: What every complete detail log holds (``effective_`` settings), and in a mode that measures
#: performance also (``result_`` keys); LoadGen writes the results last.
DETAIL_SETTINGS_REQUIRED = ("scenario", "test_mode")
DETAIL_RESULTS_REQUIRED = ("result_validity", "result_query_count", "result_mean_latency_ns")
ACCURACY_MODE = "AccuracyOnly"
_TRUNCATED_HINT = (
    "LoadGen did not finish writing it (a full disk, a file size limit (ulimit -f) or a run "
    "that was killed); free space or raise the limit and run the test again"
)
_SHOWN_CHARS = 80


# ----------------------------------------------------------------------------- summary


def parse_summary(text: str) -> dict[str, Any]:
    """Parse the text of ``mlperf_log_summary.txt``.

    Returns ``{"sut_name", "scenario", "mode", "result", "constraints": {name: bool},
    "results": {label: number}, "recommendations": [str], "early_stopping": [str],
    "stats": {label: number}, "test_parameters": {key: value}, "warning_count", "error_count"}``;
    fields the text lacks are None or empty.
    """
    out: dict[str, Any] = {
        "sut_name": None,
        "scenario": None,
        "mode": None,
        "result": None,
        "constraints": {},
        "results": {},
        "recommendations": [],
        "early_stopping": [],
        "stats": {},
        "test_parameters": {},
        "warning_count": None,
        "error_count": None,
    }
    section, notes = None, None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or _SEPARATOR.match(line):
            notes = None
            continue
        if line in _SECTIONS:
            section, notes = _SECTIONS[line], None
            continue
        if _count_line(out, line):
            continue
        if section == "results":
            notes = _results_line(out, line, notes)
        elif section == "stats":
            _key_number(out["stats"], line)
        elif section == "parameters":
            _key_number(out["test_parameters"], line)
    return out


def _count_line(out: dict[str, Any], line: str) -> bool:
    """Record a ``N warnings/ERRORS encountered`` line; True when it was one."""
    match = _COUNT.match(line)
    if not match:
        return False
    count = 0 if match["count"].lower() == "no" else int(match["count"])
    out[f"{match['what'].lower()}_count"] = count
    return True


def _results_line(out: dict[str, Any], line: str, notes: str | None) -> str | None:
    """Parse one line of the results section; return the notes list being filled, if any."""
    if line == "Recommendations:":
        return "recommendations"
    if line == "Early Stopping Result:":
        return "early_stopping"
    if notes is not None:
        items = out[notes]
        if line.startswith("* ") or not items:
            items.append(line.removeprefix("* "))
        else:
            items[-1] = f"{items[-1]} {line}"  # a wrapped line continues the previous note
        return notes
    satisfied = _SATISFIED.match(line)
    if satisfied:
        out["constraints"][satisfied["name"]] = satisfied["flag"].lower() == "yes"
        return None
    match = _KEY_VALUE.match(line)
    if match:
        key, value = match["key"], match["value"]
        named = {"SUT name": "sut_name", "Scenario": "scenario", "Mode": "mode", "Result is": "result"}
        if key in named:
            out[named[key]] = value
        else:
            out["results"][key] = _number(value)
    return None


def _key_number(into: dict[str, Any], line: str) -> None:
    match = _KEY_VALUE.match(line)
    if match and match["value"]:
        into[match["key"]] = _number(match["value"])


def _number(text: str) -> int | float | str:
    """``text`` as an int or float when it is one, else unchanged."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _summary_latencies(stats: dict[str, Any]) -> dict[str, int | float]:
    """``{"min", ..., "p99.9"}`` from the Additional Stats labels (those present)."""
    out = {}
    for label, value in stats.items():
        named, pct = _MIN_MAX_MEAN.match(label), _PERCENTILE.match(label)
        if named:
            out[named["name"].lower()] = value
        elif pct:
            out[f"p{float(pct['pct']):g}"] = value
    return out


# ----------------------------------------------------------------------------- detail


def parse_detail(text: str) -> dict[str, Any]:
    """Parse the text of ``mlperf_log_detail.txt``.

    Returns ``{"effective_settings": {key without "effective_": value}, "results": {result_* and
    early_stopping_* keys: value}, "errors": [{"key", "value"}], "warnings": [{"key", "value"}],
    "entries": int, "unparsed_lines": int, "first_unparsed_line": line number or None,
    "cut_last_line": bool}`` (a truncated last line counts as unparsed; a text that does not end
    in a newline has a cut last line).
    """
    out: dict[str, Any] = {
        "effective_settings": {},
        "results": {},
        "errors": [],
        "warnings": [],
        "entries": 0,
        "unparsed_lines": 0,
        "first_unparsed_line": None,
        "cut_last_line": bool(text) and not text.endswith("\n"),
    }
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.startswith(MLLOG_PREFIX):
            continue
        try:
            entry = json.loads(line[len(MLLOG_PREFIX) :])
            key, value = entry["key"], entry.get("value")
        except (json.JSONDecodeError, KeyError, TypeError):
            out["unparsed_lines"] += 1
            out["first_unparsed_line"] = out["first_unparsed_line"] or number
            continue
        out["entries"] += 1
        _detail_entry(out, key, value, entry.get("metadata") or {})
    return out


def _detail_entry(out: dict[str, Any], key: str, value: Any, metadata: dict[str, Any]) -> None:
    if key.startswith("effective_"):
        out["effective_settings"][key.removeprefix("effective_")] = value
    elif key.startswith(("result_", "early_stopping_")):
        out["results"][key] = value
    if metadata.get("is_error"):
        out["errors"].append({"key": key, "value": value})
    if metadata.get("is_warning"):
        out["warnings"].append({"key": key, "value": value})


def _detail_latencies(results: dict[str, Any]) -> dict[str, Any]:
    out = {name: results.get(f"result_{name}_latency_ns") for name in ("min", "max", "mean")}
    for key, value in results.items():
        pct = _DETAIL_PERCENTILE.match(key)
        if pct:
            out[f"p{float(pct['pct']):g}"] = value
    return {k: v for k, v in out.items() if v is not None}


# ----------------------------------------------------------------------------- run folder


def read_run_logs(folder: str | os.PathLike) -> tuple[str, str]:
    """The texts of the summary and detail logs in ``folder``; errors name what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LoadgenLogError(
            f"run folder {folder} does not exist; give the folder LoadGen wrote its logs to"
        )
    texts = []
    for name in (SUMMARY_NAME, DETAIL_NAME):
        path = folder / name
        if not path.is_file():
            raise LoadgenLogError(
                f"{path} does not exist; LoadGen writes {SUMMARY_NAME} and {DETAIL_NAME} when a test "
                "ends (was the run interrupted, or is this the wrong folder?)"
            )
        texts.append(path.read_text(encoding="utf-8", errors="replace"))
    return texts[0], texts[1]


def parse_run(
    folder: str | os.PathLike,
    *,
    mean_pairs_per_sample: float | None = None,
    with_summary_text: bool = False,
) -> dict[str, Any]:
    """JSON-ready metrics of the LoadGen run in ``folder``.

    Keys: ``scenario``, ``mode``, ``valid`` (bool; None when the summary states no result, as
    in AccuracyOnly runs), ``result`` (``VALID``/``INVALID``/None), ``invalid_reasons`` (one
    ``"<constraint> not satisfied"`` per failed constraint), ``constraints`` {name: bool},
    ``recommendations``, ``early_stopping`` (notes as printed), ``metric`` ({"name", "value"}:
    the scenario's headline line, e.g. ``Samples per second``, or None), ``samples_per_s``
    (aggregated samples/s: Offline samples/s, Server completed samples/s, SingleStream QPS with
    LoadGen overhead; MultiStream prints no rate, so there it is samples per query / mean query
    latency), ``samples_per_s_source`` (the summary label it came from), ``pairs_per_s``
    (``samples_per_s * mean_pairs_per_sample`` when that is given), ``latency_ns``
    ({min, max, mean, p50, p90, p95, p97, p99, p99.9}: None where absent; per query for
    MultiStream), ``query_count``, ``stats``, ``test_parameters``, ``effective_settings``,
    ``errors``, ``warnings`` ([{"key", "value"}] from the detail log), ``error_count``,
    ``warning_count`` (as the summary states them), ``sut_name``, and ``summary_text`` when asked for.
    """
    summary_text, detail_text = read_run_logs(folder)
    summary, detail = parse_summary(summary_text), parse_detail(detail_text)
    check_logs(folder, summary_text, summary, detail_text, detail)
    effective = detail["effective_settings"]
    latencies = _summary_latencies(summary["stats"]) or _detail_latencies(detail["results"])
    samples_per_s, rate_source = _samples_per_s(summary, effective, latencies)
    result = summary["result"] or detail["results"].get("result_validity")
    metrics: dict[str, Any] = {
        "folder": os.fspath(folder),
        "sut_name": summary["sut_name"],
        "scenario": summary["scenario"] or effective.get("scenario"),
        "mode": summary["mode"] or effective.get("test_mode"),
        "valid": None if result is None else result == "VALID",
        "result": result,
        "invalid_reasons": [f"{name} not satisfied" for name, ok in summary["constraints"].items() if not ok],
        "constraints": summary["constraints"],
        "recommendations": summary["recommendations"],
        "early_stopping": summary["early_stopping"],
        "metric": _metric(summary["results"]),
        "samples_per_s": samples_per_s,
        "samples_per_s_source": rate_source,
        "mean_pairs_per_sample": mean_pairs_per_sample,
        "pairs_per_s": pairs_per_s(samples_per_s, mean_pairs_per_sample),
        "latency_ns": {key: latencies.get(key) for key in LATENCY_KEYS},
        "query_count": detail["results"].get("result_query_count"),
        "stats": summary["stats"],
        "test_parameters": summary["test_parameters"],
        "effective_settings": effective,
        "errors": detail["errors"],
        "warnings": detail["warnings"],
        "error_count": summary["error_count"],
        "warning_count": summary["warning_count"],
    }
    if with_summary_text:
        metrics["summary_text"] = summary_text
    return metrics


def check_logs(
    folder: str | os.PathLike,
    summary_text: str,
    summary: dict[str, Any],
    detail_text: str,
    detail: dict[str, Any],
) -> None:
    """Raise :class:`LoadgenLogError`, naming the file and what is missing, unless both logs
    are complete: not empty, LoadGen's, no cut last line, every entry parsed, and the keys
    every complete log of the run's mode holds."""
    summary_path, detail_path = Path(folder) / SUMMARY_NAME, Path(folder) / DETAIL_NAME
    for path, text in ((summary_path, summary_text), (detail_path, detail_text)):
        if not text.strip():
            raise LoadgenLogError(f"{path} is empty: {_TRUNCATED_HINT}")
    if summary["error_count"] is None and summary["scenario"] is None and not detail["entries"]:
        raise LoadgenLogError(f"{summary_path} and {DETAIL_NAME} are not LoadGen logs")
    _check_detail(detail_path, detail_text, detail)
    missing = _summary_missing(summary, detail["effective_settings"]["test_mode"])
    if missing:
        raise LoadgenLogError(
            f"{summary_path} is incomplete: it lacks {', '.join(missing)}; {_TRUNCATED_HINT}"
        )


def _check_detail(path: Path, text: str, detail: dict[str, Any]) -> None:
    lines = text.splitlines()
    if detail["cut_last_line"]:
        raise LoadgenLogError(
            f"{path} is truncated: its last line (line {len(lines)}) is cut short "
            f"({_shown(lines[-1])}); {_TRUNCATED_HINT}"
        )
    bad = detail["first_unparsed_line"]
    if bad is not None:
        raise LoadgenLogError(
            f"{path}, line {bad}: not a LoadGen log entry (JSON with a key) ({_shown(lines[bad - 1])}); "
            "the log is damaged; run the test again"
        )
    effective, results = detail["effective_settings"], detail["results"]
    missing = [f"effective_{key}" for key in DETAIL_SETTINGS_REQUIRED if key not in effective]
    if not missing and effective["test_mode"] != ACCURACY_MODE:
        missing = [key for key in DETAIL_RESULTS_REQUIRED if key not in results]
    if missing:
        raise LoadgenLogError(
            f"{path} is incomplete: it lacks {', '.join(missing)} ({detail['entries']} entries read); "
            f"{_TRUNCATED_HINT}"
        )


def _summary_missing(summary: dict[str, Any], test_mode: str) -> list[str]:
    """What a complete summary of a run in ``test_mode`` holds and this one lacks."""
    wanted = {"the warning count": summary["warning_count"], "the error count": summary["error_count"]}
    if test_mode != ACCURACY_MODE:
        wanted = {
            "Scenario": summary["scenario"],
            "Mode": summary["mode"],
            "Result is": summary["result"],
            "the result's number": _metric(summary["results"]),
            **wanted,
        }
    return [name for name, value in wanted.items() if value is None]


def _shown(text: str) -> str:
    return repr(text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…")


def _metric(results: dict[str, Any]) -> dict[str, Any] | None:
    """The first numeric line of the results section: the scenario's headline number."""
    for label, value in results.items():
        if isinstance(value, (int, float)):
            return {"name": label, "value": value}
    return None


def _samples_per_s(
    summary: dict[str, Any], effective: dict[str, Any], latencies: dict[str, Any]
) -> tuple[float | None, str | None]:
    """Aggregated samples per second and where the number comes from.

    A rate the summary prints, else (MultiStream, whose queries run one after another)
    ``samples_per_query * 1e9 / mean query latency``, the way LoadGen computes SingleStream's
    "QPS w/o loadgen overhead".
    """
    for label in _RATE_LABELS:
        for source in (summary["results"], summary["stats"]):
            value = source.get(label)
            if isinstance(value, (int, float)):
                return float(value), label
    per_query = effective.get("samples_per_query", summary["test_parameters"].get("samples_per_query"))
    mean = latencies.get("mean")
    if summary["scenario"] != "MultiStream" or not isinstance(per_query, int):
        return None, None
    if not isinstance(mean, (int, float)) or mean <= 0:
        return None, None
    return per_query * 1e9 / mean, "samples_per_query / Mean latency (no LoadGen overhead)"


def pairs_per_s(samples_per_s: float | None, mean_pairs_per_sample: float | None) -> float | None:
    """User-item pairs per second from aggregated samples per second (None if either is None)."""
    if mean_pairs_per_sample is None:
        return None
    if isinstance(mean_pairs_per_sample, bool) or not mean_pairs_per_sample > 0:
        raise LoadgenLogError(
            f"mean pairs per sample {mean_pairs_per_sample!r} is not valid; need a number > 0 "
            "(the mean length of the trace's samples, 270 for MLPerf's quantiles)"
        )
    return None if samples_per_s is None else samples_per_s * float(mean_pairs_per_sample)
