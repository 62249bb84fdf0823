"""Schemas are the one source of truth: docs/tables.md is generated from them and kept in sync."""

from __future__ import annotations

from pathlib import Path

from pydicom.datadict import tag_for_keyword

import lake
from lake.catalog import docs
from lake.catalog.macros import MACROS
from lake.catalog.query import view_definitions
from lake.cli import main
from lake.headers.schema import load_table_schema, table_names


def test_docs_tables_md_is_up_to_date() -> None:
    assert docs.DOCS_PATH.exists(), "run `lake docs` to generate docs/tables.md"
    assert docs.DOCS_PATH.read_text() == docs.render(), "docs/tables.md is out of date: run `lake docs`"


def test_docs_cover_every_column_view_and_macro() -> None:
    text = docs.render()
    for name in table_names():
        for column in load_table_schema(name).columns:
            assert f"| `{column.name}` |" in text
            assert column.description, f"{name}.{column.name} has no description"
    for view in view_definitions():
        assert f"## `{view.name}` (view)" in text
    for macro in MACROS:
        assert f"`{macro.name}(" in text


def test_every_view_column_is_described(tmp_path: Path) -> None:
    """The columns a view really returns (DESCRIBE on an empty lake) match its documented columns."""
    lk = lake.init(tmp_path / "lk")
    for view in view_definitions():
        actual = [r[0] for r in lk.sql(f"DESCRIBE {view.name}").rows()]
        documented = [name for name, _ in view.columns]
        assert actual == documented, f"view {view.name}: columns and `-- column:` lines differ"


def test_every_source_path_names_dicom_keywords() -> None:
    for name in table_names():
        for column in load_table_schema(name).columns:
            for path in column.sources:
                for keyword in path.split("."):
                    assert tag_for_keyword(keyword) is not None, f"{name}.{column.name}: {keyword} is not a keyword"


def test_docs_command_checks_and_writes(tmp_path: Path) -> None:
    out = tmp_path / "tables.md"
    assert main(["docs", "--check", "--output", str(out)]) == 1
    assert main(["docs", "--output", str(out)]) == 0
    assert main(["docs", "--check", "--output", str(out)]) == 0
    assert out.read_text() == docs.render()
