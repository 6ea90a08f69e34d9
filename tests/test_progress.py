"""Progress bars: live on a terminal, plain lines in a log, nothing when off."""

from __future__ import annotations

import io
import time

import pytest

from dlrm_nb import progress
from dlrm_nb.exceptions import DlrmNbError
from dlrm_nb.progress import check_progress, progress_bar


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _run(style: progress.Progress, stream: io.StringIO, monkeypatch, **kwargs) -> str:
    monkeypatch.setattr("sys.stderr", stream)
    with progress_bar(style, **kwargs) as bar:
        for _ in range(20_000):
            bar.update(1)
    return stream.getvalue()


@pytest.mark.parametrize("style", ["text", "auto", True])
def test_a_log_gets_a_few_whole_lines_and_no_carriage_returns(style, monkeypatch) -> None:
    log = _run(style, io.StringIO(), monkeypatch, total=20_000, desc="prepare", unit="day")
    assert "\r" not in log and "\x1b" not in log
    lines = log.splitlines()
    assert 2 <= len(lines) <= 3, lines  # start, end (and at most one in between: it took < 5 s)
    assert lines[0].startswith("prepare:   0% 0/20000")
    assert lines[-1].startswith("prepare: 100% 20000/20000 [")
    assert log.endswith("\n") and "" not in lines


def test_postfix_changes_wait_their_turn_and_the_end_is_one_line(monkeypatch) -> None:
    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)
    with progress_bar("text", total=3, desc="prepare", unit="day") as bar:
        for day in range(3):
            bar.set_postfix(lines=400 * (day + 1))
            bar.update(1)
    lines = log.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("prepare:   0% 0/3") and lines[1].startswith("prepare: 100% 3/3")
    assert lines[1].endswith("lines=1200]")


def test_a_bar_without_total_counts_with_its_unit(monkeypatch) -> None:
    log = _run("text", io.StringIO(), monkeypatch, desc="day 0", unit=" lines", unit_scale=True)
    assert log.splitlines()[-1].startswith("day 0: 20.0k lines [")


def test_a_log_line_comes_at_most_every_interval(monkeypatch) -> None:
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.05)
    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)
    started = time.perf_counter()
    with progress_bar("text", total=30, desc="slow") as bar:
        for _ in range(30):
            time.sleep(0.01)
            bar.update(1)
    seconds = time.perf_counter() - started
    lines = log.getvalue().splitlines()
    assert 3 <= len(lines) <= 2 + seconds / 0.05 + 1, lines
    assert lines[-1].startswith("slow: 100% 30/30")


def test_nested_bars_in_a_log_write_no_cursor_moves(monkeypatch) -> None:
    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)
    with progress_bar("auto", total=2, desc="outer") as outer:
        for day in range(2):
            with progress_bar("auto", total=3, desc=f"day {day}", leave=False) as inner:
                inner.update(3)
            outer.update(1)
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text
    assert "day 1: 100% 3/3" in text and text.splitlines()[-1].startswith("outer: 100% 2/2")


def test_a_terminal_keeps_the_live_bar(monkeypatch) -> None:
    screen = _run("text", Terminal(), monkeypatch, total=20_000, desc="prepare")
    assert screen.count("\r") >= 2 and "prepare: 100%|" in screen  # redrawn in place, with the bar


def test_off_prints_nothing_and_bad_styles_are_refused(monkeypatch) -> None:
    assert _run("off", io.StringIO(), monkeypatch, total=5) == ""
    assert _run(False, io.StringIO(), monkeypatch, total=5) == ""
    assert check_progress(True) == "auto"
    with pytest.raises(DlrmNbError, match="progress 'bars' is not valid; use one of auto, text, off"):
        progress_bar("bars")


def test_a_widget_bar_that_ends_early_without_an_error_ends_full() -> None:
    """A time budget not used up is not a failure (tqdm's widget turns red short of its total)."""
    with progress.WidgetBar(total=6, file=io.StringIO()) as bar:
        bar.update(4)
    assert bar.total == bar.n == 4
    with pytest.raises(KeyboardInterrupt), progress.WidgetBar(total=6, file=io.StringIO()) as stopped:
        stopped.update(4)
        raise KeyboardInterrupt
    assert stopped.total == 6
