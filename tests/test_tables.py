"""The one table writer of the pages harness writes: cells as the caller formatted them, escaped for their page."""

from __future__ import annotations

import pytest

from harness.tables import figure, html_table, markdown_table

pytestmark = pytest.mark.fast  # the fast tier: no process started, no training (make test-fast)


def test_a_markdown_table_keeps_figures_as_formatted_and_a_pipe_inside_one_cell():
    lines = markdown_table(["stage", "f1_micro"], [["seed recipe", figure(0.95)], ["a | b", None]])
    assert len(lines) == 4 and lines[1].startswith("|--")
    assert [cell.strip() for cell in lines[2].strip("|").split("|")] == ["seed recipe", "0.950"]  # not 0.95
    assert lines[3].startswith("| a \\| b ") and lines[3].count(" | ") == 1  # still two cells


def test_an_html_table_escapes_every_cell_and_pads_none():
    table = html_table(["metric <i>"], [["<script>x</script>"], [figure(0.5, 1)]])
    assert "<th>metric &lt;i&gt;</th>" in table
    assert "<td>&lt;script&gt;x&lt;/script&gt;</td>" in table and "<td>0.5</td>" in table


def test_a_missing_figure_is_an_empty_cell():
    assert figure(None) == "" and figure(0.96285, 2) == "0.96"
