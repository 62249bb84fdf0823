"""Rewrite a Delta table with rows in exactly a given order (``lake optimize``).

The ``deltalake`` writer processes a stream's batches in parallel and does not keep their order:
a sorted stream came out with row groups shuffled and some row groups mixing distant keys, so
min/max statistics pruned far less than the sort promised. Optimized files are therefore written
here with pyarrow, one after the other in stream order, and committed as Delta add actions in one
``overwrite`` commit (readers see the old snapshot or the new one, never a mix).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties
from deltalake import Schema as DeltaSchema
from deltalake.transaction import AddAction, create_table_with_add_actions

from lake import memory
from lake.catalog.tables import open_table
from lake.crashpoints import crash_point


@contextmanager
def sorting_connection(purpose: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection within the memory budget (:mod:`lake.memory`) whose large sorts spill
    to a private temporary folder (never into the user's folder or the lake), removed afterwards.
    Results are ordered by ``ORDER BY`` alone (``preserve_insertion_order`` is off)."""
    with memory.connect(purpose, ordered=False) as con:
        yield con


def parquet_source(files: list[str]) -> str:
    """A ``read_parquet`` over ``files`` whose columns may differ (schema evolution)."""
    return "read_parquet([" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "], union_by_name = true)"


@dataclass(frozen=True)
class WrittenFile:
    path: str  # relative to the table folder
    rows: int
    size: int
    minimum: dict[str, Any]  # per statistics column, over the file
    maximum: dict[str, Any]

    def add_action(self) -> AddAction:
        stats = {"numRecords": self.rows, "minValues": self.minimum, "maxValues": self.maximum}
        return AddAction(self.path, self.size, {}, int(time.time() * 1000), True, json.dumps(stats, default=str))


def write_files(
    table: Path,
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    *,
    row_group_rows: int,
    file_bytes: int,
    stats_columns: tuple[str, ...],
    on_rows: Callable[[int], None] | None = None,
    **parquet_options: Any,
) -> list[WrittenFile]:
    """Parquet files in ``table`` holding ``batches`` in order: a new file once one reaches
    ``file_bytes``, row groups of ``row_group_rows``. Not committed (see :func:`commit`).
    ``on_rows(n)`` is called as rows are written, for progress display."""
    table.mkdir(parents=True, exist_ok=True)
    done: list[WrittenFile] = []
    current: tuple[str, Any, pq.ParquetWriter] | None = None
    pending: list[pa.RecordBatch] = []
    pending_rows = 0

    def flush() -> None:
        nonlocal pending, pending_rows
        if pending and current is not None:
            current[2].write_table(pa.Table.from_batches(pending, schema), row_group_size=row_group_rows)
        pending, pending_rows = [], 0

    def close() -> None:
        assert current is not None
        name, sink, writer = current
        writer.close()
        sink.close()
        meta = pq.read_metadata(table / name)
        names = [meta.schema.column(i).name for i in range(meta.num_columns)]
        lows: dict[str, Any] = {}
        highs: dict[str, Any] = {}
        for column in stats_columns:
            index = names.index(column)
            stats = [meta.row_group(i).column(index).statistics for i in range(meta.num_row_groups)]
            if stats and all(s is not None and s.has_min_max for s in stats):
                lows[column] = min(s.min for s in stats if s is not None)
                highs[column] = max(s.max for s in stats if s is not None)
        done.append(WrittenFile(name, meta.num_rows, (table / name).stat().st_size, lows, highs))
        crash_point("optimize.after_file")

    for batch in batches:
        if not batch.num_rows:
            continue
        if current is None:
            name = f"part-{len(done):05d}-{uuid.uuid4()}-c000.zstd.parquet"
            sink = open(table / name, "wb")  # noqa: SIM115 (closed in close())
            current = (name, sink, pq.ParquetWriter(sink, schema, **parquet_options))
        pending.append(batch)
        pending_rows += batch.num_rows
        if on_rows is not None:
            on_rows(batch.num_rows)
        if pending_rows >= row_group_rows:  # a row group's worth is pending (DuckDB sends batches of that size)
            flush()
            if current[1].tell() >= file_bytes:
                close()
                current = None
    flush()
    if current is not None:
        close()
    return done


def commit(table: Path, schema: pa.Schema, files: list[WrittenFile], user_metadata: str) -> None:
    """One Delta commit replacing the table's files with ``files`` (creating the table if needed)."""
    crash_point("optimize.before_commit")
    properties = CommitProperties(custom_metadata={"userMetadata": user_metadata})
    actions = [f.add_action() for f in files]
    dt = open_table(table)
    if dt is None:
        create_table_with_add_actions(
            str(table), DeltaSchema.from_arrow(schema), actions, mode="overwrite", commit_properties=properties
        )
    else:
        dt.create_write_transaction(list(actions), mode="overwrite", schema=schema, commit_properties=properties)
    crash_point("optimize.after_commit")
