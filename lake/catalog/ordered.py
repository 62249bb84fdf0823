"""Rewrite a Delta table with rows in exactly a given order (``lake optimize``).

The ``deltalake`` writer processes a stream's batches in parallel and does not keep their order:
a sorted stream came out with row groups shuffled and some row groups mixing distant keys, so
min/max statistics pruned far less than the sort promised. Optimized files are therefore written
here with pyarrow, one after the other in stream order, and committed as Delta add actions in one
``overwrite`` commit (readers see the old snapshot or the new one, never a mix).
"""

from __future__ import annotations

import json
import math
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


#: Arrow holds a row in about this many times its uncompressed Parquet size (offsets, validity):
#: 1.5 measured on ``lake.testing.rows`` instances (4.3 KB in Arrow, 2.9 KB in Parquet).
ARROW_OVER_PARQUET = 1.5
_SAMPLED_FOOTERS = 8


def row_bytes(files: list[str], columns: list[str] | None = None) -> int:
    """About how many bytes one row of ``files`` (or of their ``columns``) takes in Arrow, from the
    uncompressed sizes in the first few footers (no data is read)."""
    total = rows = 0
    for path in files[:_SAMPLED_FOOTERS]:
        meta = pq.read_metadata(path)
        names = [meta.schema.column(i).path.split(".")[0] for i in range(meta.num_columns)]
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            total += sum(
                group.column(i).total_uncompressed_size
                for i in range(group.num_columns)
                if columns is None or names[i] in columns
            )
            rows += group.num_rows
    return max(1, int(total / max(rows, 1) * ARROW_OVER_PARQUET))


@dataclass(frozen=True)
class Batching:
    """Rows per Arrow batch read from DuckDB and per row group written, within the memory budget."""

    batch_rows: int
    row_group_rows: int
    row_bytes: int  # about, in Arrow


def batching(files: list[str], row_group_rows: int, columns: list[str] | None = None) -> Batching:
    """``row_group_rows`` and a batch size for rows of ``files``, both lowered to fit the budget
    (:mod:`lake.memory`; a row group is buffered whole before pyarrow writes it)."""
    budget = memory.current()
    size = row_bytes(files, columns)
    groups = budget.batch_rows(size, row_group_rows, memory.ROW_GROUP_SHARE)
    return Batching(budget.batch_rows(size, groups), groups, size)


#: DuckDB sorts a part of the table in memory in about this many times its Arrow size (measured
#: with DuckDB 2.0.1: a sort whose payload holds ``header_json`` does not spill, it fails).
SORT_OVERHEAD = 4
#: Sampled keys per part when choosing the parts' boundaries.
SAMPLE_PER_PART = 64
#: The share of the budget the one-pass split buffers (rows waiting for their range's file).
SPLIT_SHARE = 0.1
#: Range files only live until their range is sorted: Arrow IPC, fast to write and read back.
SPLIT_COMPRESSION = "lz4"
RANGE_COLUMN = "_lake_range"
#: From this many ranges on, they are split into files in one pass; below, each range is its own
#: query over the table. At 1 M synthetic instances one more query cost about 0.7 µs of CPU per
#: row of the table, the split about 17.5 µs per row whatever the ranges: even at about 25
#: ranges. Lower than that because real headers decompress slower than synthetic ones (whose
#: files are 40x smaller than their rows), and every extra query decompresses the table again.
SPLIT_FROM_PARTS = 16


def sorted_batches(
    con: duckdb.DuckDBPyConnection,
    source: str,
    select: str,
    order: list[str],
    rows: int,
    row_bytes: int,
    batch_rows: int,
    where: str = "",
) -> Iterator[pa.RecordBatch]:
    """``SELECT {select} FROM {source} [WHERE where] ORDER BY order`` (each column ``NULLS LAST``)
    as Arrow batches, within the memory budget.

    DuckDB's sort of wide rows (a few KB of ``header_json`` each) does not always spill: it failed
    at a limit of half the rows' size. So when the rows would not fit, they are cut into ranges of
    the first sort column (boundaries from a sample of its values) that each fit. A few ranges are
    each a query over ``source``; from :data:`SPLIT_FROM_PARTS` on, one pass over
    ``source`` appends every row to its range's Arrow file in a private spill folder
    (:func:`lake.memory.private_folder`: removed afterwards, or by the next command when this one
    was killed), then each range is read back, sorted by Arrow (the same order as DuckDB's: byte
    order for strings, NULLs last) and yielded, range after range: the concatenation is the one
    sorted result. Querying ``source`` once per range instead read the whole table once per range:
    3.9x the time of one sort at 10 M instances (about 70 ranges).
    """
    ordering = ", ".join(f'"{c}" NULLS LAST' for c in order)
    filters = [where] if where else []
    budget = memory.current().duckdb_bytes
    parts = 1 if budget is None or not order else math.ceil(rows * row_bytes * SORT_OVERHEAD / budget)
    if parts <= 1:
        condition = f" WHERE {' AND '.join(filters)}" if filters else ""
        query = f"SELECT {select} FROM {source}{condition}" + (f" ORDER BY {ordering}" if ordering else "")
        yield from con.sql(query).to_arrow_reader(batch_rows)
        return
    import pyarrow.compute as pc  # ~100 ms cold: not for header lookups, which import this module
    import pyarrow.ipc as ipc

    first = f'"{order[0]}"'
    bounds = _bounds(con, source, first, filters, parts)
    if parts < SPLIT_FROM_PARTS:
        for predicate, params in _predicates(first, bounds):
            condition = " AND ".join([*filters, predicate])
            query = f"SELECT {select} FROM {source} WHERE {condition} ORDER BY {ordering}"
            yield from con.sql(query, params=params).to_arrow_reader(batch_rows)
        return
    with memory.private_folder("optimize-ranges") as folder:
        files = _split(con, source, select, first, filters, bounds, folder, row_bytes, batch_rows)
        crash_point("optimize.after_split")
        keys = [(c, "ascending", "at_end") for c in order]
        for path in files:  # the ranges in order, then the NULLs (one thread: see _split)
            with pa.memory_map(str(path)) as source_file:
                part = ipc.open_file(source_file, options=ipc.IpcReadOptions(use_threads=False)).read_all()
            path.unlink()  # frees the disk as the sort goes
            part = part.take(pc.sort_indices(part, sort_keys=keys))
            yield from part.to_batches(batch_rows)
            del part


def _bounds(con: duckdb.DuckDBPyConnection, source: str, column: str, filters: list[str], parts: int) -> list[Any]:
    """Ascending values of ``column`` that cut its non-NULL values into about ``parts`` ranges."""
    condition = " AND ".join([*filters, f"{column} IS NOT NULL"])
    sample = [
        r[0]
        for r in con.execute(
            f"SELECT {column} FROM (SELECT {column} FROM {source} WHERE {condition} "
            f"USING SAMPLE reservoir({parts * SAMPLE_PER_PART} ROWS) REPEATABLE (17)) ORDER BY {column}"
        ).fetchall()
    ]
    bounds: list[Any] = []
    for i in range(1, parts):
        value = sample[min(len(sample) - 1, i * len(sample) // parts)] if sample else None
        if value is not None and (not bounds or value > bounds[-1]):
            bounds.append(value)
    return bounds


def _predicates(column: str, bounds: list[Any]) -> list[tuple[str, list[Any]]]:
    """The ranges :func:`_split` writes, in its order, as (predicate, parameters)."""
    out: list[tuple[str, list[Any]]] = []
    low: Any = None
    for bound in bounds:
        out.append((f"{column} <= ?", [bound]) if low is None else (f"{column} > ? AND {column} <= ?", [low, bound]))
        low = bound
    out.append((f"{column} IS NOT NULL", []) if low is None else (f"{column} > ?", [low]))
    out.append((f"{column} IS NULL", []))
    return out


def _split(
    con: duckdb.DuckDBPyConnection,
    source: str,
    select: str,
    column: str,
    filters: list[str],
    bounds: list[Any],
    folder: Path,
    row_bytes: int,
    batch_rows: int,
) -> list[Path]:
    """One pass over ``source``: the rows with ``column <= bounds[0]`` to the first Arrow file, the
    next range to the second..., those above the last bound next, NULLs last. Returns the files,
    in that order (a range without rows has none)."""
    import pyarrow.compute as pc
    import pyarrow.ipc as ipc

    cases = " ".join(f"WHEN {column} <= ? THEN {i}" for i in range(len(bounds)))
    above, nulls = len(bounds), len(bounds) + 1
    ranges = len(bounds) + 2
    part = f"CASE WHEN {column} IS NULL THEN {nulls} {cases} ELSE {above} END"
    condition = f" WHERE {' AND '.join(filters)}" if filters else ""
    query = f"SELECT {select}, ({part})::INTEGER AS {RANGE_COLUMN} FROM {source}{condition}"
    # rows wait per range until a few hundred have come: an Arrow file of tiny batches reads slowly
    flush_rows = max(256, memory.current().batch_rows(row_bytes, 1 << 30, SPLIT_SHARE) // ranges)
    # one thread: Arrow compresses (and decompresses) each buffer as a task of its pool, and the wake-ups
    # of those tiny tasks were a third of the CPU (system time); without them the header index at
    # 1 M rows split in 30 ranges builds in 13 s instead of 23-25 s (the same files)
    options = ipc.IpcWriteOptions(compression=SPLIT_COMPRESSION, use_threads=False)
    writers: dict[int, Any] = {}
    pending: dict[int, list[pa.RecordBatch]] = {}
    waiting: dict[int, int] = {}

    def write(index: int) -> None:
        batches = pending.pop(index)
        waiting.pop(index)
        writer = writers.get(index)
        if writer is None:
            path = str(folder / f"{index:05d}.arrow")
            writer = writers[index] = ipc.new_file(path, batches[0].schema, options=options)
        for b in batches:
            writer.write_batch(b)

    try:
        for batch in con.sql(query, params=bounds).to_arrow_reader(batch_rows):
            labels = batch.column(batch.num_columns - 1)
            batch = batch.drop_columns([RANGE_COLUMN]).take(pc.sort_indices(labels))
            counts = pc.value_counts(labels)
            start = 0
            for index, count in sorted(zip(counts.field(0).to_pylist(), counts.field(1).to_pylist(), strict=True)):
                pending.setdefault(index, []).append(batch.slice(start, count))
                waiting[index] = waiting.get(index, 0) + count
                start += count
                if waiting[index] >= flush_rows:
                    write(index)
        for index in list(pending):
            write(index)
    finally:
        for writer in writers.values():
            writer.close()
    return [folder / f"{index:05d}.arrow" for index in sorted(writers)]


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

    def open_file() -> tuple[str, Any, pq.ParquetWriter]:
        name = f"part-{len(done):05d}-{uuid.uuid4()}-c000.zstd.parquet"
        sink = open(table / name, "wb")  # noqa: SIM115 (closed in close())
        return name, sink, pq.ParquetWriter(sink, schema, **parquet_options)

    def flush(rows: int) -> None:
        """Write the first ``rows`` pending rows as one row group; keep the rest pending."""
        nonlocal pending, pending_rows, current
        if current is None:
            current = open_file()
        buffered = pa.Table.from_batches(pending, schema)
        current[2].write_table(buffered.slice(0, rows), row_group_size=row_group_rows)
        rest = buffered.slice(rows)
        pending, pending_rows = rest.to_batches(), rest.num_rows
        del buffered

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
        pending.append(batch)
        pending_rows += batch.num_rows
        if on_rows is not None:
            on_rows(batch.num_rows)
        while pending_rows >= row_group_rows:  # a row group's worth is pending (batches may be smaller)
            flush(row_group_rows)
            assert current is not None
            if current[1].tell() >= file_bytes:
                close()
                current = None
    if pending_rows:
        flush(pending_rows)
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
