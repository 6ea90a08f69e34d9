"""The HTML report of a run: the executed report notebook rendered by nbconvert without code."""

from __future__ import annotations

import os
from pathlib import Path

from dlrm_nb.fileio import atomic_output
from dlrm_nb.workbook.runs import (
    REPORT_NAME,
)


def render_report(executed_notebook: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """HTML of an executed report notebook, code hidden, written atomically (default:
    ``report.html`` beside the notebook)."""
    import nbformat
    from nbconvert import HTMLExporter

    executed_notebook = Path(executed_notebook)
    out = Path(out) if out else executed_notebook.parent / REPORT_NAME
    notebook = nbformat.read(executed_notebook, as_version=4)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(notebook)
    with atomic_output(out) as tmp:
        Path(tmp).write_text(body, encoding="utf-8")
    return out
