"""Table schemas, read from ``schemas/tables/*.toml`` (the one source of truth for columns)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from lake.errors import SchemaError
from lake.resources import Traversable, schema_dir

if TYPE_CHECKING:
    import pyarrow as pa

TABLES_DIR = schema_dir("tables")  # package data (lake.resources)

#: The column types a schema may use (DuckDB's names).
TYPE_NAMES = frozenset(
    ("VARCHAR", "BIGINT", "DOUBLE", "BOOLEAN", "DATE", "TIME", "TIMESTAMP", "DOUBLE[]", "BIGINT[]", "VARCHAR[]", "BLOB")
)


@cache
def arrow_types() -> dict[str, pa.DataType]:
    """The Arrow type of each column type (pyarrow loads here: a query of the lake does not need it)."""
    import pyarrow as pa

    return {
        "VARCHAR": pa.string(),
        "BIGINT": pa.int64(),
        "DOUBLE": pa.float64(),
        "BOOLEAN": pa.bool_(),
        "DATE": pa.date32(),
        # Delta Lake has no TIME type: TM values are stored as microseconds since midnight and every
        # reader the lake builds (DuckDB views, lk.table) presents them as TIME again.
        "TIME": pa.int64(),
        "TIMESTAMP": pa.timestamp("us"),
        "DOUBLE[]": pa.list_(pa.float64()),
        "BIGINT[]": pa.list_(pa.int64()),
        "VARCHAR[]": pa.list_(pa.string()),
        "BLOB": pa.binary(),
    }


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str
    sources: tuple[str, ...]  # DICOM keyword paths, tried in order; empty for derived columns

    @property
    def arrow_type(self) -> pa.DataType:
        return arrow_types()[self.type]

    @property
    def is_time(self) -> bool:
        return self.type == "TIME"

    @property
    def derived(self) -> bool:
        return not self.sources


@dataclass(frozen=True)
class TableSchema:
    name: str
    description: str
    key: tuple[str, ...]
    sort_by: tuple[str, ...]
    columns: tuple[Column, ...]
    built_by: str = "ingest"  # "optimize": a derived table rebuilt by lake optimize (header_index)

    @property
    def arrow_schema(self) -> pa.Schema:
        import pyarrow as pa

        return pa.schema([pa.field(c.name, c.arrow_type) for c in self.columns])

    @property
    def time_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.is_time)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise SchemaError(f"table {self.name} has no column {name!r}")


@cache
def load_table_schema(name: str, directory: Traversable = TABLES_DIR) -> TableSchema:
    path = directory / f"{name}.toml"
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SchemaError(f"cannot read table schema {path}: {exc}") from exc
    columns = []
    seen = set()
    for raw in doc.get("columns", []):
        col_type = raw.get("type", "")
        if col_type not in TYPE_NAMES:
            raise SchemaError(f"{path}: column {raw.get('name')!r} has unknown type {col_type!r}")
        if raw["name"] in seen:
            raise SchemaError(f"{path}: column {raw['name']!r} is defined twice")
        seen.add(raw["name"])
        source = raw.get("source", raw["name"] if not raw.get("derived") else None)
        sources = () if raw.get("derived") else tuple(source if isinstance(source, list) else [source])
        columns.append(Column(raw["name"], col_type, raw.get("description", ""), sources))
    table = doc.get("table", {})
    return TableSchema(
        name=table.get("name", name),
        description=table.get("description", ""),
        key=tuple(table.get("key", [])),
        sort_by=tuple(table.get("sort_by", [])),
        columns=tuple(columns),
        built_by=str(table.get("built_by", "ingest")),
    )


def table_names(directory: Traversable = TABLES_DIR) -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in directory.iterdir() if p.name.endswith(".toml"))
