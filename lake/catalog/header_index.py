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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from lake.catalog import ordered
from lake.catalog.tables import snapshot_files, table_version
from lake.config import LakePaths
from lake.crashpoints import crash_point
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
        with pq.ParquetFile(path) as parquet:
            meta = parquet.metadata
            for i in range(meta.num_row_groups):
                stats = meta.row_group(i).column(0).statistics
                if stats is not None and stats.has_min_max and not stats.min <= uid <= stats.max:
                    continue
                # one thread: starting pyarrow's pool costs more than decoding 1,024 headers
                group = parquet.read_row_group(i, columns=["SOPInstanceUID", "header_json"], use_threads=False)
                # a Python scan of 1,024 UIDs: importing pyarrow.compute alone costs ~100 ms cold
                uids = group.column(0).to_pylist()
                if uid in uids:
                    return str(group.column(1)[uids.index(uid)].as_py())
    return None


def discard_ranges(paths: LakePaths) -> None:
    """Remove the range map (``lake forget``: it names UIDs, and is stale after the deletion)."""
    (paths.table(NAME) / RANGES).unlink(missing_ok=True)
    _cache.pop(paths.table(NAME), None)


def build(paths: LakePaths, on_rows: Callable[[int], None] | None = None) -> int:
    """Rewrite the index from the current instances snapshot (under the lake's write lock).

    Returns the rows written; writes the range map after the Delta commit.
    """
    table = paths.table(NAME)
    instances = snapshot_files(paths.table("instances"))
    if not instances:
        return 0
    schema = load_table_schema(NAME).arrow_schema
    with ordered.sorting_connection("header-index") as con:
        source = ordered.parquet_source(instances)
        rows = int(con.execute(f"SELECT count(*) FROM {source}").fetchall()[0][0])
        sizes = ordered.batching(instances, ROW_GROUP_ROWS, ["SOPInstanceUID", "header_json"])
        batches = ordered.sorted_batches(
            con,
            source,
            "SOPInstanceUID, header_json",
            ["SOPInstanceUID"],
            rows,
            sizes.row_bytes,
            sizes.batch_rows,
            where="SOPInstanceUID IS NOT NULL",
        )
        written = ordered.write_files(
            table,
            schema,
            (b.cast(schema) for b in batches),
            row_group_rows=sizes.row_group_rows,
            file_bytes=FILE_BYTES,
            stats_columns=("SOPInstanceUID",),
            on_rows=on_rows,
            compression="zstd",
            compression_level=3,
        )
    ordered.commit(table, schema, written, "lake optimize: header index")
    crash_point("optimize.before_ranges")
    _write_ranges(table, instances, written)
    return sum(w.rows for w in written)


def _write_ranges(table: Path, instances: list[str], written: list[ordered.WrittenFile]) -> None:
    files = []
    for w in written:
        # a file without statistics is searched for every UID
        first = str(w.minimum.get("SOPInstanceUID", ""))
        last = str(w.maximum.get("SOPInstanceUID", "\U0010ffff"))
        files.append({"path": w.path, "first": first, "last": last})
    doc = {
        "format": FORMAT,
        "version": table_version(table),
        "covers": sorted(os.path.basename(f) for f in instances),
        "files": files,
    }
    tmp = table / f".{RANGES}.tmp"
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    os.replace(tmp, table / RANGES)
