"""Progress bars: widgets in JupyterLab, live bars in terminals, plain lines in logs.

``progress`` arguments across the package accept a :data:`Progress` value: ``True`` or
``"auto"`` (a widget in a Jupyter kernel with ipywidgets, a live bar on a terminal, lines
elsewhere), ``"text"`` (text on stderr: a live bar on a terminal, lines elsewhere; what the
papermill pipeline asks for, so bars stream to its output and land in the executed notebook as
text), ``False`` or ``"off"`` (no bar).

"Lines elsewhere": when stderr is not a terminal (papermill's kernel, ``> log 2>&1``, CI), a bar
prints a plain line when it starts, at most one every :data:`LOG_INTERVAL_S` seconds and one
when it ends, never a carriage-return redraw, so a log file reads line by line.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import MutableMapping, Sequence
from types import TracebackType
from typing import Any, TextIO, Union

import tqdm.auto  # first: it imports tqdm.autonotebook with its notebook-mode warning silenced
import tqdm.autonotebook
import tqdm.std

from dlrm_nb.exceptions import DlrmNbError

#: ``True``/``False`` or a style name of :data:`PROGRESS_STYLES` (checked when a bar is made).
Progress = Union[bool, str]  # noqa: UP007 (kept readable in signatures)
PROGRESS_STYLES = ("auto", "text", "off")
#: Seconds between two lines of a bar written to a log (not a terminal).
LOG_INTERVAL_S = 5.0
#: A bar in a log: no bar graphic (it needs redraws to mean anything), the counts and the rate.
LINE_FORMAT = "{desc}{percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
LINE_FORMAT_NO_TOTAL = "{desc}{n_fmt}{unit} [{elapsed}, {rate_fmt}{postfix}]"
_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def check_progress(progress: Progress) -> str:
    """The style name of ``progress``; refuses anything but a bool or one of PROGRESS_STYLES."""
    if isinstance(progress, bool):
        return "auto" if progress else "off"
    if progress not in PROGRESS_STYLES:
        raise DlrmNbError(f"progress {progress!r} is not valid; use one of {', '.join(PROGRESS_STYLES)}")
    return progress


def progress_bar(progress: Progress, **kwargs: Any) -> tqdm.std.tqdm:
    """A tqdm bar in the style ``progress`` asks for (kwargs go to tqdm)."""
    style = check_progress(progress)
    if style == "off":
        return tqdm.std.tqdm(disable=True, **kwargs)
    if style == "auto" and in_widget_kernel():
        return WidgetBar(**kwargs)
    stream = sys.stderr
    if style == "text" and kwargs.pop("leave", True) is False:
        # one bar at a time, the outer one: nested bars need cursor movement on a terminal
        return tqdm.std.tqdm(disable=True, **kwargs)
    if not is_terminal(stream):
        return LineBar(file=LineWriter(stream), **kwargs)
    if style == "text":
        kwargs.setdefault("mininterval", 1.0)
    return tqdm.std.tqdm(file=stream, **kwargs)


def in_widget_kernel() -> bool:
    """Whether bars show as widgets here: a Jupyter kernel with ipywidgets (tqdm.auto's choice)."""
    return tqdm.autonotebook.tqdm is not tqdm.std.tqdm


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal (where carriage returns redraw a line)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class WidgetBar(tqdm.auto.tqdm):
    """tqdm's widget in a notebook. One that ends without an error short of its total (a time
    budget, an estimate) ends full and green, not red as if it had failed."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None and not self.disable and self.total and 0 < self.n < self.total:
            self.total = self.n
            widgets: Sequence[Any] = getattr(getattr(self, "container", None), "children", ())
            if len(widgets) == 3:  # description, progress, numbers: the progress widget's maximum
                widgets[1].max = self.n
        super().__exit__(exc_type, exc_value, traceback)


class LineBar(tqdm.std.tqdm):
    """A tqdm bar for logs: a line when it starts, at most one every :data:`LOG_INTERVAL_S`
    seconds (counts and postfix changes alike) and one where it ended; no bar graphic."""

    _line_at: float | None = None  # when the last line was written
    _line_n: float | None = None  # the count it showed

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
        kwargs.setdefault("maxinterval", max(LOG_INTERVAL_S, 10.0))
        kwargs["leave"] = True  # a log keeps a bar's last line (there is nothing to redraw over it)
        super().__init__(*args, **kwargs)

    def refresh(
        self,
        nolock: bool = False,
        lock_args: tuple[bool | None, float | None] | tuple[bool | None] | None = None,
    ) -> None:
        """tqdm redraws on every postfix or description change too; a log waits its interval."""
        now = time.monotonic()
        if self._line_at is not None and now - self._line_at < self.mininterval:
            return
        self._line_at = now
        super().refresh(nolock=nolock, lock_args=lock_args)

    def display(self, msg: str | None = None, pos: int | None = None) -> None:
        if msg is None:
            self._line_n = self.n
        super().display(msg, pos)

    def close(self) -> None:
        if not self.disable and self._line_n == self.n:
            self.leave = False  # the last line already says where it ended: no second one
        super().close()

    @property
    def format_dict(self) -> MutableMapping[str, Any]:
        """tqdm's fields, with the line format that fits whether the total is known."""
        fields = super().format_dict
        if fields.get("bar_format") is None:
            line = LINE_FORMAT if fields.get("total") else LINE_FORMAT_NO_TOTAL
            prefix = f"{fields['prefix']}: " if fields.get("prefix") else ""
            fields["bar_format"] = line.replace("{desc}", prefix.replace("{", "{{").replace("}", "}}"))
        return fields


class LineWriter:
    """A file for tqdm that turns its redraws (carriage returns, cursor moves, padding) into
    whole lines, each written once."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._last = ""

    def write(self, text: str) -> int:
        for part in re.split(r"[\r\n]", _TERMINAL_CODES.sub("", text)):
            line = part.rstrip()
            if line and line != self._last:
                self.stream.write(line + "\n")
                self._last = line
        self.flush()
        return len(text)

    def flush(self) -> None:
        flush = getattr(self.stream, "flush", None)
        if flush is not None:
            flush()
