"""DuckDB over a lake: one view per Delta table (its current snapshot) and the derived views."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from functools import cache
from typing import Any

import duckdb
import pyarrow as pa

from lake.catalog.macros import install as install_macros
from lake.catalog.tables import empty_arrow, snapshot, table_version
from lake.config import LakePaths
from lake.headers.schema import TableSchema, load_table_schema, table_names
from lake.resources import schema_dir

VIEWS_DIR = schema_dir("views")  # package data (lake.resources)
_VIEW_NAME = re.compile(r"^--\s*view:\s*(\w+)", re.M)
_VIEW_DESC = re.compile(r"^--\s*description:\s*(.+)$", re.M)
_VIEW_COLUMN = re.compile(r"^--\s*column:\s*(\w+):\s*(.+)$", re.M)


@dataclass(frozen=True)
class ViewDefinition:
    name: str
    description: str
    sql: str
    columns: tuple[tuple[str, str], ...] = ()  # (name, description) from ``-- column: name: text``


@cache
def view_definitions() -> tuple[ViewDefinition, ...]:
    """Derived views from ``schemas/views/NN_name.sql`` in file-name order (later may use earlier)."""
    out = []
    for path in sorted((p for p in VIEWS_DIR.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name):
        text = path.read_text(encoding="utf-8")
        name = _VIEW_NAME.search(text)
        desc = _VIEW_DESC.search(text)
        out.append(
            ViewDefinition(
                name.group(1) if name else path.name.removesuffix(".sql").split("_", 1)[-1],
                desc.group(1) if desc else "",
                text,
                tuple((m.group(1), m.group(2).strip()) for m in _VIEW_COLUMN.finditer(text)),
            )
        )
    return tuple(out)


def _quote(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


def snapshot_versions(paths: LakePaths) -> dict[str, int | None]:
    return {name: table_version(paths.table(name)) for name in table_names()}


def _select_list(schema: TableSchema, stored: list[str] | None = None) -> str:
    """``*`` with TIME columns (stored as microseconds) presented as DuckDB TIME, and a typed NULL
    for each schema column the table's files do not have yet (a column added to ``schemas/`` after
    they were written: earlier data is never rewritten, and views and queries can name it)."""
    present = set(stored) if stored is not None else {c.name for c in schema.columns}
    times = [c for c in schema.time_columns if c in present]
    select = "*"
    if times:
        replaced = ", ".join(f"TIME '00:00:00' + to_microseconds({c}) AS {c}" for c in times)
        select = f"* REPLACE ({replaced})"
    missing = [c for c in schema.columns if c.name not in present]
    return select + "".join(f", NULL::{c.type} AS {c.name}" for c in missing)


def connect(paths: LakePaths, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a view per table and derived view.

    No extension is loaded or installed: the views read the snapshot's Parquet files directly.
    The ``dicom_*`` macros (:mod:`lake.catalog.macros`) reach any attribute in ``header_json``.
    """
    con = duckdb.connect(
        ":memory:",
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            # DuckDB spills large sorts to ./.tmp by default: never into the user's folder or a lake.
            "temp_directory": os.path.join(tempfile.gettempdir(), "lake-duckdb-spill"),
        },
    )
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    # footers (statistics, bloom filter offsets) are parsed once per connection, not per query
    con.execute("SET parquet_metadata_cache = true")
    install_macros(con)
    for name in table_names():
        schema = load_table_schema(name)
        files, stored = snapshot(paths.table(name))
        if files:
            file_list = ", ".join(_quote(f) for f in files)
            # Ingest appends files whose columns grow over time (union them by name); a table that
            # optimize writes whole has one schema, and binding it reads one footer, not all of them.
            union = "true" if schema.built_by == "ingest" else "false"
            source = f"read_parquet([{file_list}], union_by_name = {union})"
            select = _select_list(schema, stored)
        else:
            con.register(f"_empty_{name}", empty_arrow(schema))
            source = f"_empty_{name}"
            select = _select_list(schema)
        con.execute(f"CREATE VIEW {name} AS SELECT {select} FROM {source}")
    for view in view_definitions():
        con.execute(f"CREATE VIEW {view.name} AS {view.sql}")
    return con


def fetch_arrow(con: duckdb.DuckDBPyConnection, query: str, params: list[Any] | None = None) -> pa.Table:
    """Run ``query`` and return the whole result as Arrow (DuckDB 1.x and 2.x spell this differently)."""
    relation = con.sql(query, params=params or None)
    if relation is None:  # a statement without a result (DDL)
        return pa.table({})
    fetch = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table
    return fetch()


def fetch_rows(con: duckdb.DuckDBPyConnection, query: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Run ``query`` and fetch every row (leaving no unfinished result on the connection)."""
    return con.execute(query, params or []).fetchall()
