"""Display blocks: tables, markup, plots and notes that show themselves in a notebook
(``_repr_html_`` / ``_repr_png_``) and render into a page (``to_html``)."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure

DPI = 100


@dataclass
class Table:
    """A small HTML table: shows itself in a notebook and renders into a page.

    Columns of numbers are right-aligned, every other column (labels, names, reasons) left-aligned,
    the caption too; a table whose columns are all unnamed (label and value) has no header row.
    The alignment comes in a ``<style>`` scoped to the table's id (JupyterLab's and nbconvert's
    own rules right-align every cell)."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    caption: str = ""

    def to_html(self) -> str:
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in self.columns)
        head = f"<thead><tr>{head}</tr></thead>" if any(str(c) for c in self.columns) else ""
        body = "".join(
            "<tr>" + "".join(f"<td>{_cell(value)}</td>" for value in row) + "</tr>" for row in self.rows
        )
        caption = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        table = f"{caption}{head}<tbody>{body}</tbody>"
        name = "dlrm-nb-" + hashlib.sha1(table.encode()).hexdigest()[:10]
        return f'{self._style(name)}<table class="dlrm-nb" id="{name}">{table}</table>'

    def _style(self, name: str) -> str:
        """Left-aligned caption and text columns for the table with id ``name``."""
        left = [
            f"#{name} td:nth-child({i}), #{name} th:nth-child({i})"
            for i in range(1, len(self.columns) + 1)
            if not _numeric([row[i - 1] for row in self.rows if i - 1 < len(row)])
        ]
        rules = [f"#{name} caption {{ text-align: left; font-weight: 600; }}"]
        if left:
            rules.append(f"{', '.join(left)} {{ text-align: left; }}")
        return f"<style>{' '.join(rules)}</style>"

    def _repr_html_(self) -> str:
        return self.to_html()


def _numeric(values: Sequence[Any]) -> bool:
    """A column of numbers or percentages (missing values aside), shown right-aligned."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return bool(present) and all(_is_number(v) for v in present)


def _is_number(value: Any) -> bool:
    if isinstance(value, str):
        return re.fullmatch(r"[-+]?[\d,.]+ ?%?", value) is not None
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    if isinstance(value, Markup):
        return value.text
    return html.escape(format_value(value))


@dataclass(frozen=True)
class Markup:
    """HTML shown as is: in a table cell (links, badges) or on its own in a notebook."""

    text: str

    def _repr_html_(self) -> str:
        return self.text


def format_value(value: Any) -> str:
    """Numbers for people: thousands separators, 3 significant decimals, ``—`` for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0 or abs(value) >= 100:
            return f"{value:,.0f}" if abs(value) >= 100 else "0"
        return f"{value:,.3g}" if abs(value) >= 0.01 else f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    return str(value)


@dataclass
class Plot:
    """A matplotlib figure that shows itself as PNG in a notebook and embeds into a page."""

    figure: Figure

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
        return buffer.getvalue()

    def _repr_png_(self) -> bytes:
        return self.png()

    def to_html(self) -> str:
        data = base64.b64encode(self.png()).decode("ascii")
        return f'<img class="dlrm-nb-plot" src="data:image/png;base64,{data}"/>'


@dataclass
class Note:
    """A line of text in a notebook (for 'nothing to show')."""

    text: str

    def _repr_html_(self) -> str:
        return f"<p><em>{html.escape(self.text)}</em></p>"

    def to_html(self) -> str:
        return self._repr_html_()
