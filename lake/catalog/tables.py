"""Delta Lake tables of a lake: atomic appends with the ``deltalake`` package, snapshot file lists.

Readers never use a Delta reader extension: DuckDB and polars read the Parquet files that the
current snapshot lists (``snapshot_files``). A Delta commit is one atomic log entry, so a reader
sees a whole batch or none of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import time as dt_time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deltalake import DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import TableNotFoundError

from lake.config import LakePaths
from lake.headers.schema import TableSchema

if TYPE_CHECKING:  # pyarrow loads where tables are written, not for a query
    import pyarrow as pa

WRITER = WriterProperties(compression="ZSTD", compression_level=3, max_row_group_size=128 * 1024)
TARGET_FILE_SIZE = 256 * 1024 * 1024


def to_arrow(rows: Sequence[dict[str, Any]], schema: TableSchema) -> pa.Table:
    """Rows (dicts) to an Arrow table with the schema's column order and types, sorted by ``sort_by``."""
    import pyarrow as pa

    arrow_schema = schema.arrow_schema
    times = set(schema.time_columns)

    def cell(row: dict[str, Any], name: str) -> Any:
        value = row.get(name)
        if name in times and isinstance(value, dt_time):
            return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond
        return value

    columns = {f.name: pa.array([cell(r, f.name) for r in rows], type=f.type) for f in arrow_schema}
    table = pa.table(columns, schema=arrow_schema)
    sort_keys = [(c, "ascending") for c in schema.sort_by if c in table.column_names]
    return table.sort_by(sort_keys) if sort_keys and len(table) else table


def open_table(path: Path | str, storage_options: dict[str, str] | None = None) -> DeltaTable | None:
    try:
        return DeltaTable(str(path), storage_options=storage_options)
    except TableNotFoundError:
        return None


def append(path: Path, table: pa.Table, description: str = "") -> None:
    """Append ``table`` in one atomic commit (creating the Delta table on first use).

    New columns merge into the table schema (schema evolution): earlier files are not rewritten.
    """
    if not len(table):
        return
    write_deltalake(
        str(path),
        table,
        mode="append",
        schema_mode="merge",
        writer_properties=WRITER,
        target_file_size=TARGET_FILE_SIZE,
        description=description or None,
    )


def snapshot_files(path: Path) -> list[str]:
    """Absolute paths of the Parquet files of the table's current version ([] if no table yet)."""
    return snapshot(path)[0]


def snapshot(path: Path) -> tuple[list[str], list[str]]:
    """(absolute Parquet file paths, column names) of the table's current version (([], []) if none)."""
    dt = open_table(path)
    if dt is None:
        return [], []
    files = [uri.removeprefix("file://") for uri in dt.file_uris()]
    return files, [f.name for f in dt.schema().fields]


def lake_snapshot(paths: LakePaths, name: str) -> tuple[list[str], list[str]]:
    """:func:`snapshot` of table ``name`` of a lake in a folder or object storage (``s3://`` file URIs)."""
    if paths.is_local:
        return snapshot(paths.table(name))
    dt = open_table(paths.table_uri(name), paths.storage_options())
    if dt is None:
        return [], []
    return list(dt.file_uris()), [f.name for f in dt.schema().fields]


def lake_table_version(paths: LakePaths, name: str) -> int | None:
    """:func:`table_version` of table ``name`` of a lake in a folder or object storage (one listing)."""
    if paths.is_local:
        return table_version(paths.table(name))
    log = paths.storage.list(f"{paths.table_key(name)}/_delta_log")
    stems = [info.path.rsplit("/", 1)[-1].split(".")[0] for info in log if info.path.endswith(".json")]
    versions = [int(stem) for stem in stems if stem.isdigit()]
    return max(versions) if versions else None


def table_version(path: Path) -> int | None:
    """Latest committed version, read from the log folder's names (cheap; no log replay)."""
    log = path / "_delta_log"
    if not log.is_dir():
        return None
    versions = [int(p.name.split(".")[0]) for p in log.glob("*.json") if p.name.split(".")[0].isdigit()]
    return max(versions) if versions else None


def arrow_schema_of(path: Path, fallback: TableSchema) -> pa.Schema:
    import pyarrow as pa

    dt = open_table(path)
    if dt is None:
        return fallback.arrow_schema
    return pa.schema(dt.schema().to_arrow())


def delete_where(path: Path, predicate: str) -> int:
    """Delete matching rows in one commit; returns the number of rows deleted."""
    dt = open_table(path)
    if dt is None:
        return 0
    metrics = dt.delete(predicate)
    return int(metrics.get("num_deleted_rows", 0))


def distinct_values(paths: Iterable[str], column: str) -> set[str]:
    """All distinct values of one string column across Parquet files (for de-duplication)."""
    import pyarrow.dataset as ds

    files = list(paths)
    if not files:
        return set()
    dataset = ds.dataset(files, format="parquet")
    if column not in dataset.schema.names:
        return set()
    col = dataset.to_table(columns=[column]).column(column)
    return {v for v in col.to_pylist() if v is not None}
