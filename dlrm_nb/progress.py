"""Progress bars: widgets in JupyterLab, text in terminals and under papermill.

``progress`` arguments across the package accept a :data:`Progress` value: ``True`` or
``"auto"`` (``tqdm.auto``: a widget in a notebook front end, text elsewhere), ``"text"`` (plain
text on stderr; what the papermill pipeline asks for, so bars stream to the terminal and land
in the executed notebook as text), ``False`` or ``"off"`` (no bar).
"""

from __future__ import annotations

import sys
from typing import Any, Union

import tqdm.auto
import tqdm.std

from dlrm_nb.exceptions import DlrmNbError

#: ``True``/``False`` or a style name of :data:`PROGRESS_STYLES` (checked when a bar is made).
Progress = Union[bool, str]  # noqa: UP007 (kept readable in signatures)
PROGRESS_STYLES = ("auto", "text", "off")


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
    if style == "text":  # one bar at a time: nested bars need cursor movement, which logs cannot show
        return tqdm.std.tqdm(
            file=sys.stderr, mininterval=1.0, disable=kwargs.pop("leave", True) is False, **kwargs
        )
    return tqdm.auto.tqdm(disable=style == "off", **kwargs)
