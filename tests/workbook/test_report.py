"""Report pieces on partial run folders: what a run that stopped early, or a folder made by hand, holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlrm_nb.exceptions import DlrmNbError
from dlrm_nb.workbook.blocks import Note, Table, format_value
from dlrm_nb.workbook.figures import accuracy_figure, latency_figure, qps_search_figure
from dlrm_nb.workbook.index import index_rows, write_index
from dlrm_nb.workbook.pipeline import render_reports
from dlrm_nb.workbook.runs import load_run
from dlrm_nb.workbook.tables import headline, scenario_table


def _run(root: Path, name: str, run: dict | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "data.json").write_text(json.dumps({"source": "synthetic", "test_pairs": 10}))
    if run is not None:
        (folder / "run.json").write_text(json.dumps(run))
    return folder


def test_a_run_with_only_data_shows_notes_not_errors(tmp_path: Path) -> None:
    results = load_run(_run(tmp_path, "early"))
    assert isinstance(scenario_table(results), Table) and scenario_table(results).rows == []
    for piece in (latency_figure(results), qps_search_figure(results), accuracy_figure(results)):
        assert isinstance(piece, Note)
    assert headline(results).rows == [["run", "early"]]


def test_headline_and_index_take_missing_latencies_and_commits(tmp_path: Path) -> None:
    folder = _run(tmp_path, "no-git", {"git": {"commit": None, "dirty": None}, "status": "done"})
    offline = folder / "SingleStream" / "performance"
    offline.mkdir(parents=True)
    (offline / "metrics.json").write_text(
        json.dumps(
            {"scenario": "SingleStream", "latency_ns": {"p90": None, "p99": None}, "samples_per_s": None}
        )
    )
    results = load_run(folder)
    assert ["SingleStream p90 latency (ms)", None] in headline(results).rows
    row = index_rows([results]).rows[0]
    assert row[:2] == ["no-git", "done"]
    assert row[6] is None and row[-1] is None  # no p90, no commit: shown as dashes
    # beside it, a run with a commit and a p90: the same columns carry the values
    known = _run(
        tmp_path, "with-git", {"git": {"commit": "0123456789abcdef", "dirty": False}, "status": "done"}
    )
    single = known / "SingleStream" / "performance"
    single.mkdir(parents=True)
    (single / "metrics.json").write_text(
        json.dumps(
            {
                "scenario": "SingleStream",
                "latency_ns": {"p90": 2_500_000, "p99": None},
                "samples_per_s": 400.0,
            }
        )
    )
    assert ["SingleStream p90 latency (ms)", 2.5] in headline(load_run(known)).rows
    assert index_rows([load_run(known)]).rows[0][6] == 2.5
    assert index_rows([load_run(known)]).rows[0][-1] == "0123456789"  # the first 10 characters
    page = write_index(tmp_path).read_text()
    dashes = "<td>—</td>"
    assert (
        f"<tr><td>no-git</td><td>done</td>{dashes}<td>— / —</td>{dashes * 8}</tr>" in page
    )  # every missing figure a dash, the page written all the same
    assert f"<tr><td>with-git</td><td>done</td>{dashes}<td>— / —</td>{dashes * 2}<td>2.5</td>" in page
    assert "<td>0123456789</td></tr>" in page and "2 runs in" in page


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "report.html").write_text("my own page")
    with pytest.raises(DlrmNbError, match=r"is not a run folder .* give a results/<run-id> folder"):
        render_reports([tmp_path / "mine"], results=tmp_path)
    assert (tmp_path / "mine" / "report.html").read_text() == "my own page"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "—"),
        (True, "yes"),
        (1234567, "1,234,567"),
        (12345.678, "12,346"),
        (0.5, "0.5"),
        (3.14159, "3.14"),
    ],
)
def test_numbers_are_shown_for_people(value, shown: str) -> None:
    assert format_value(value) == shown
