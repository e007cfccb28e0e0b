"""The one table renderer `dsp status`, run summaries and replay counts share."""

from __future__ import annotations

from processor.ops.text_table import render


def test_columns_are_padded_to_the_widest_cell_under_a_dashed_rule() -> None:
    """Two spaces between columns, a rule as wide as each column, no trailing spaces."""
    assert render(("route", "n"), [("mirror", "290"), ("a", "7")]).split("\n") == [
        "route   n",
        "------  ---",
        "mirror  290",
        "a       7",
    ]


def test_a_table_without_rows_is_its_header_and_rule() -> None:
    """Nothing to show still shows which columns there would be."""
    assert render(("shard", "owner"), []) == "shard  owner\n-----  -----"
