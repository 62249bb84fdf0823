"""``header_index``: every instance's header sorted by SOPInstanceUID, so a lookup stays fast at any size.

``instances`` is sorted by patient and study (what cohort queries need), so its min/max statistics
cannot prune a lookup by SOP Instance UID: at 10 million instances DuckDB checked the bloom filters
of every row group and took about 60 ms, warm or cold. ``lake optimize`` therefore also writes this
table, (SOPInstanceUID, header_json) sorted by UID in files of small row groups, and beside it a
range map ``_lake_ranges.json``::

    {"format": 1, "version": <header_index Delta version it describes>,
     "covers": [<instances file names the index was built from>],
     "files": [{"path": "part-...parquet", "first": "<uid>", "last": "<uid>"}, ...]}

A lookup reads the map, opens the one file whose range holds the UID, and reads the one row group
whose statistics hold it (a few ms at any size). Instances ingested after the last optimize are in
the instances files the map does not cover; those few files are searched next. Any later commit
to the index (``lake forget`` deletes rows) makes the map stale, and lookups fall back to a scan
of ``instances`` until the next optimize rebuilds both.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import CommitProperties
from deltalake import Schema as DeltaSchema
from deltalake.transaction import AddAction, create_table_with_add_actions

from lake.catalog.tables import open_table, snapshot_files, table_version
from lake.config import LakePaths
from lake.headers.schema import load_table_schema

NAME = "header_index"
RANGES = "_lake_ranges.json"
FORMAT = 1
#: 1,024 headers per row group: a lookup decompresses about 3 MB of DICOM JSON at most.
ROW_GROUP_ROWS = 1024
#: Files about this size keep each footer small (a cold lookup parses one footer, not the table's).
FILE_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class RangeMap:
    """What ``_lake_ranges.json`` says, for the index version it was written for."""

    table: Path
    covers: frozenset[str]
    files: tuple[tuple[str, str, str], ...]  # (first uid, last uid, path relative to the table)

    def files_for(self, uid: str) -> list[Path]:
        return [self.table / path for first, last, path in self.files if first <= uid <= last]


_cache: dict[Path, tuple[tuple[int, int, int | None], RangeMap | None]] = {}


def range_map(paths: LakePaths) -> RangeMap | None:
    """The index's range map, or None when there is no index or the map is stale."""
    table = paths.table(NAME)
    ranges = table / RANGES
    try:
        stat = ranges.stat()
    except FileNotFoundError:
        return None
    version = table_version(table)
    key = (stat.st_mtime_ns, stat.st_size, version)
    hit = _cache.get(table)
    if hit is not None and hit[0] == key:
        return hit[1]
    doc = json.loads(ranges.read_text(encoding="utf-8"))
    found: RangeMap | None = None
    if doc.get("format") == FORMAT and doc.get("version") == version:
        files = tuple((str(f["first"]), str(f["last"]), str(f["path"])) for f in doc["files"])
        found = RangeMap(table, frozenset(doc["covers"]), files)
    _cache[table] = (key, found)
    return found


def uncovered_instances_files(paths: LakePaths, ranges: RangeMap) -> list[str]:
    """Instances files of the current snapshot that the index was not built from."""
    return [f for f in snapshot_files(paths.table("instances")) if os.path.basename(f) not in ranges.covers]


def find(ranges: RangeMap, uid: str) -> str | None:
    """The header JSON of ``uid`` from the index, or None when the index does not hold it."""
    for path in ranges.files_for(uid):
        parquet = pq.ParquetFile(path)
        meta = parquet.metadata
        for i in range(meta.num_row_groups):
            stats = meta.row_group(i).column(0).statistics
            if stats is not None and stats.has_min_max and not stats.min <= uid <= stats.max:
                continue
            group = parquet.read_row_group(i, columns=["SOPInstanceUID", "header_json"])
            hit = group.filter(pc.equal(group["SOPInstanceUID"], uid))
            if hit.num_rows:
                return str(hit["header_json"][0].as_py())
    return None


def discard_ranges(paths: LakePaths) -> None:
    """Remove the range map (``lake forget``: it names UIDs, and is stale after the deletion)."""
    (paths.table(NAME) / RANGES).unlink(missing_ok=True)
    _cache.pop(paths.table(NAME), None)


def build(paths: LakePaths) -> int:
    """Rewrite the index from the current instances snapshot (under the lake's write lock).

    Returns the rows written; writes the range map after the Delta commit.
    """
    table = paths.table(NAME)
    instances = snapshot_files(paths.table("instances"))
    if not instances:
        return 0
    schema = load_table_schema(NAME).arrow_schema
    spill = tempfile.mkdtemp(prefix="lake-header-index-")  # DuckDB spills the sort here
    con = duckdb.connect(
        ":memory:",
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False, "temp_directory": spill},
    )
    try:
        file_list = ", ".join("'" + f.replace("'", "''") + "'" for f in instances)
        query = (
            f"SELECT SOPInstanceUID, header_json FROM read_parquet([{file_list}], union_by_name = true) "
            "WHERE SOPInstanceUID IS NOT NULL ORDER BY SOPInstanceUID"
        )
        reader = con.sql(query).to_arrow_reader(ROW_GROUP_ROWS)
        written = _write_sorted_files(table, schema, (b.cast(schema) for b in reader))
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    _commit(table, schema, [w.action for w in written])
    _write_ranges(table, instances, written)
    return sum(w.rows for w in written)


@dataclass
class _Written:
    path: str  # relative to the table
    first: str
    last: str
    rows: int
    action: AddAction


def _write_sorted_files(table: Path, schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> list[_Written]:
    """Parquet files in exactly the order of ``batches``.

    The ``deltalake`` writer processes batches in parallel and does not keep their order, which
    would give every file the whole UID range; these files are written here and committed as
    Delta add actions instead.
    """
    table.mkdir(parents=True, exist_ok=True)
    done: list[_Written] = []
    current: tuple[str, Any, pq.ParquetWriter] | None = None
    first = last = ""
    rows = 0

    def close() -> None:
        assert current is not None
        name, sink, writer = current
        writer.close()
        sink.close()
        size = (table / name).stat().st_size
        stats = {
            "numRecords": rows,
            "minValues": {"SOPInstanceUID": first},
            "maxValues": {"SOPInstanceUID": last},
            "nullCount": {"SOPInstanceUID": 0, "header_json": 0},
        }
        action = AddAction(name, size, {}, int(time.time() * 1000), True, json.dumps(stats))
        done.append(_Written(name, first, last, rows, action))

    for batch in batches:
        if not batch.num_rows:
            continue
        if current is None:
            name = f"part-{len(done):05d}-{uuid.uuid4()}-c000.zstd.parquet"
            sink = open(table / name, "wb")  # noqa: SIM115 (closed in close())
            writer = pq.ParquetWriter(sink, schema, compression="zstd", compression_level=3)
            current, first, rows = (name, sink, writer), str(batch.column(0)[0].as_py()), 0
        current[2].write_batch(batch, row_group_size=ROW_GROUP_ROWS)
        last = str(batch.column(0)[-1].as_py())
        rows += batch.num_rows
        if current[1].tell() >= FILE_BYTES:
            close()
            current = None
    if current is not None:
        close()
    return done


def _commit(table: Path, schema: pa.Schema, actions: list[AddAction]) -> None:
    """One Delta commit replacing the table's files with ``actions`` (creating the table if needed)."""
    properties = CommitProperties(custom_metadata={"userMetadata": "lake optimize: header index"})
    dt = open_table(table)
    if dt is None:
        create_table_with_add_actions(
            str(table), DeltaSchema.from_arrow(schema), actions, mode="overwrite", commit_properties=properties
        )
    else:
        dt.create_write_transaction(list(actions), mode="overwrite", schema=schema, commit_properties=properties)


def _write_ranges(table: Path, instances: list[str], written: list[_Written]) -> None:
    doc = {
        "format": FORMAT,
        "version": table_version(table),
        "covers": sorted(os.path.basename(f) for f in instances),
        "files": [{"path": w.path, "first": w.first, "last": w.last} for w in written],
    }
    tmp = table / f".{RANGES}.tmp"
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    os.replace(tmp, table / RANGES)
