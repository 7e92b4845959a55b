"""Tables for pages harness writes (the results page in Markdown, the HTML report): one writer, tabulate's, so both
escape and align their cells the same way. Cells are written as given: a figure formatted by the caller stays as
it was formatted (`0.950`, not `0.95`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tabulate import tabulate


def figure(value: Any, digits: int = 3) -> str:
    """A measured figure as a cell: `0.963`; empty when there is none."""
    return "" if value is None else f"{float(value):.{digits}f}"


def markdown_table(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A GitHub-flavoured Markdown table, as lines (a `|` inside a cell escaped, so it stays one cell)."""
    escaped = [["" if cell is None else str(cell).replace("|", "\\|") for cell in row] for row in rows]
    return _table(header, escaped, "github").splitlines()


def html_table(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table, every cell escaped (and without the spaces tabulate aligns its source with)."""
    return re.sub(r" +(</t[hd]>)", r"\1", _table(header, rows, "html"))


def _table(header: Sequence[Any], rows: Sequence[Sequence[Any]], style: str) -> str:
    cells = [["" if cell is None else str(cell) for cell in row] for row in rows]
    return tabulate(cells, headers=[str(h) for h in header], tablefmt=style, disable_numparse=True)
