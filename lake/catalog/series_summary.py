"""``series_summary``: the ``series`` view materialised by ``lake optimize``, kept exact for later ingests.

Computing the view means grouping every instance and measuring each series' slice positions: at
1 M instances it took 1.3 s, 30x the ``studies`` view (``benchmarks/headers.py``). ``lake optimize``
therefore writes the view's rows to this table and beside it ``_lake_covers.json``::

    {"format": 1, "version": <series_summary Delta version it describes>,
     "covers": [<instances file names the rows were computed from>]}

The ``series`` view (``schemas/views/10_series.sql``) reads two relations that
:func:`helper_views` defines for every connection:

- ``_series_materialised``: the stored rows of the series that no instances file written since
  holds (a series that gains instances in a later batch is measured again);
- ``_series_live_instances``: every instance of the other series, from which the view computes
  their rows as before.

When the map does not describe the current state (no optimize yet, a later commit to this table
such as ``lake forget``'s deletion, or a covered instances file gone from the snapshot because it
was rewritten), nothing is read from the table and the view computes every series live: the rows
are the same either way, only the time differs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lake import memory
from lake.catalog.tables import snapshot_files, table_version
from lake.config import LakePaths
from lake.crashpoints import crash_point
from lake.headers.schema import load_table_schema

if TYPE_CHECKING:  # loaded to write, not by every connection that defines the views
    import duckdb
    import pyarrow as pa

    from lake.catalog import ordered

NAME = "series_summary"
COVERS = "_lake_covers.json"
FORMAT = 1
#: One series per row, a few hundred bytes each: one row group holds a large lake's series.
ROW_GROUP_ROWS = 128 * 1024
FILE_BYTES = 256 * 1024 * 1024
#: About the bytes of one row in Arrow (a series' aggregates and slice positions).
SERIES_ROW_BYTES = 1024
MATERIALISED = "_series_materialised"
LIVE_INSTANCES = "_series_live_instances"


@dataclass(frozen=True)
class Coverage:
    """What the stored rows may stand for: the instances files they were computed from."""

    covers: frozenset[str]

    def uncovered(self, instances_files: list[str]) -> list[str] | None:
        """Instances files written since, or None when a covered file is gone (the rows are stale)."""
        names = {os.path.basename(f) for f in instances_files}
        if not self.covers <= names:
            return None
        return [f for f in instances_files if os.path.basename(f) not in self.covers]


def coverage(paths: LakePaths) -> Coverage | None:
    """The coverage map when it describes the table's current version, else None."""
    table = paths.table(NAME)
    try:
        doc = json.loads((table / COVERS).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    if doc.get("format") != FORMAT or doc.get("version") != table_version(table):
        return None
    return Coverage(frozenset(doc.get("covers", [])))


def _quote(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


def helper_views(paths: LakePaths, instances_files: list[str], use_materialised: bool = True) -> list[str]:
    """``CREATE VIEW`` statements for the two relations the ``series`` view reads (see the module)."""
    cover = coverage(paths) if use_materialised and instances_files else None
    uncovered = cover.uncovered(instances_files) if cover is not None else None
    if uncovered is None:  # no usable summary: every series computed from instances
        return [
            f"CREATE VIEW {MATERIALISED} AS SELECT * FROM {NAME} WHERE false",
            f"CREATE VIEW {LIVE_INSTANCES} AS SELECT * FROM instances",
        ]
    if not uncovered:
        return [
            f"CREATE VIEW {MATERIALISED} AS SELECT * FROM {NAME}",
            f"CREATE VIEW {LIVE_INSTANCES} AS SELECT * FROM instances WHERE false",
        ]
    # series that gained instances since: every one of their instances (old files included), live
    touched = (
        "SELECT DISTINCT SeriesInstanceUID FROM read_parquet("
        f"[{', '.join(_quote(f) for f in uncovered)}], union_by_name = true)"
    )
    return [
        f"CREATE VIEW {MATERIALISED} AS SELECT * FROM {NAME} WHERE SeriesInstanceUID NOT IN ({touched})",
        f"CREATE VIEW {LIVE_INSTANCES} AS SELECT * FROM instances WHERE SeriesInstanceUID IN ({touched})",
    ]


def is_current(paths: LakePaths) -> bool:
    """True when the stored rows cover exactly the current instances files (a rebuild would gain nothing)."""
    cover = coverage(paths)
    files = snapshot_files(paths.table("instances"))
    return cover is not None and cover.uncovered(files) == []


def build(paths: LakePaths, on_rows: Callable[[int], None] | None = None) -> int:
    """Rewrite the table from the current instances snapshot (under the lake's write lock).

    The rows come from the ``series`` view computed over every instance (nothing read from the
    previous summary). Returns the rows written; writes the coverage map after the Delta commit.
    """
    from lake.catalog import ordered  # pyarrow: loaded to write, not by every connection
    from lake.catalog.query import open_views  # query imports this module for its views

    table = paths.table(NAME)
    schema = load_table_schema(NAME).arrow_schema
    instances = snapshot_files(paths.table("instances"))
    if not instances:
        return 0
    # not query.SPILL_DIR, shared by every connection and never swept: a folder of this process,
    # which the next command removes if this one is killed (lake.memory)
    with memory.private_folder("series-summary") as spill:
        con = open_views(paths, use_materialised=False)[0]
        try:
            con.execute("SET temp_directory = '" + str(spill).replace("'", "''") + "'")
            written = _write(con, table, schema, on_rows)
        finally:
            con.close()
    ordered.commit(table, schema, written, "lake optimize: series summary")
    crash_point("optimize.before_series_covers")
    doc = {
        "format": FORMAT,
        "version": table_version(table),
        "covers": sorted(os.path.basename(f) for f in instances),
    }
    tmp = table / f".{COVERS}.tmp"
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    os.replace(tmp, table / COVERS)
    return sum(w.rows for w in written)


def _write(
    con: duckdb.DuckDBPyConnection, table: Path, schema: pa.Schema, on_rows: Callable[[int], None] | None
) -> list[ordered.WrittenFile]:
    """The ``series`` view's rows, sorted, as Parquet files in ``table`` (not committed)."""
    from lake.catalog import ordered

    order = ", ".join(f'"{c}" NULLS LAST' for c in load_table_schema(NAME).sort_by)
    # a series row is a few hundred bytes: a small budget only shrinks the batches
    batch = memory.current().batch_rows(SERIES_ROW_BYTES, ROW_GROUP_ROWS)
    reader = con.sql(f"SELECT * FROM series ORDER BY {order}").to_arrow_reader(batch)
    return ordered.write_files(
        table,
        schema,
        (b.cast(schema) for b in reader),
        row_group_rows=ROW_GROUP_ROWS,
        file_bytes=FILE_BYTES,
        stats_columns=("PatientID", "StudyInstanceUID", "SeriesInstanceUID"),
        on_rows=on_rows,
        compression="zstd",
        compression_level=6,
    )
