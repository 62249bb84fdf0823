"""``lake optimize``: rewrite each table's snapshot as few large, sorted, well-indexed Parquet files.

Ingest appends one small file per batch and never rewrites old data. Optimize reads the current
snapshot, sorts it by the table's ``sort_by`` (patient, study, series, instance: one patient's rows
sit together, so DuckDB prunes row groups by min/max statistics), and writes it back in one Delta
``overwrite`` commit with zstd, page statistics and a bloom filter on the table's key (so a lookup
by SOPInstanceUID reads one row group). The old files stay on disk (readers holding the previous
snapshot keep working; a Delta vacuum removes them later) and the run is recorded in ``runs``.
Before ``instances`` is compacted, the small pixel arrays of each series are merged into one
(:mod:`lake.pixels.merge`: what a crashed write left is removed first; the rows switch to the merged
arrays in Delta commits of their own, which the compaction then folds in).
After ``instances`` it rebuilds the tables derived from it: ``header_index`` (lookups by UID,
:mod:`lake.catalog.header_index`) and ``series_summary`` (the ``series`` view materialised,
:mod:`lake.catalog.series_summary`), each only when it does not cover the current files already.

It works within the memory budget (:mod:`lake.memory`): DuckDB sorts within its share and
spills, a sort of wide rows that would not fit is cut into ranges of the first sort column
(:func:`lake.catalog.ordered.sorted_batches`), and the row groups buffered for the writer are sized
from the budget (128 Ki rows at the default budget; fewer only under a small one).

Ctrl-C or SIGTERM (in the main thread) stops it between two Delta commits: the tables rewritten so far
stay rewritten, the others are unchanged, the run is recorded with outcome ``interrupted`` and
:class:`lake.interrupts.Interrupted` is raised; the same command again completes the job.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lake.catalog import header_index, ordered, series_summary
from lake.catalog.tables import TARGET_FILE_SIZE, arrow_schema_of, open_table, snapshot_files
from lake.config import LakePaths
from lake.crashpoints import crash_point
from lake.headers.schema import TableSchema, load_table_schema, table_names
from lake.interrupts import Interrupted, deferred, signal_of, signals_raise
from lake.lock import write_lock
from lake.pixels.merge import ArrayMerge, merge_small_arrays
from lake.runs import append_run, new_run_id, utc_now

logger = logging.getLogger(__name__)

#: Rows per row group after optimize, sized for scans: lookups by SOPInstanceUID go through
#: ``header_index``. At 10 M instances 128 Ki-row groups (against 16 Ki) made every footer 8x smaller
#: (cold opens parse them) and the study aggregates 25% faster (``benchmarks/headers.py``).
OPTIMIZED_ROW_GROUP_ROWS = 128 * 1024
OPTIMIZE_COMMIT = "lake optimize"
BLOOM_FPP = 0.01
ZSTD_LEVEL = 6


@dataclass
class TableCompaction:
    table: str
    files_before: int
    files_after: int
    rows: int
    bytes_before: int
    bytes_after: int
    skipped: bool = False


@dataclass
class OptimizeSummary:
    run_id: str
    tables: list[TableCompaction] = field(default_factory=list)
    arrays: ArrayMerge | None = None  # the small pixel arrays merged (with ``instances``)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {t.table: {k: v for k, v in vars(t).items() if k != "table"} for t in self.tables}
        if self.arrays is not None:
            out[PIXEL_ARRAYS] = self.arrays.to_dict()
        return out


#: The key of the arrays merged in :meth:`OptimizeSummary.to_dict` (and the progress label).
PIXEL_ARRAYS = "pixel arrays"


def parquet_options(
    schema: TableSchema, columns: list[str], rows: int, row_group_rows: int = OPTIMIZED_ROW_GROUP_ROWS
) -> dict[str, Any]:
    """zstd, page-level statistics (column index), dictionaries, and a bloom filter on each key.

    Each row group has its own bloom filter, so it is sized for one row group's keys. Keys are
    unique, so they get no dictionary (it would only grow the file).
    """
    keys = [c for c in schema.key if c in columns]
    return {
        "compression": "zstd",
        "compression_level": ZSTD_LEVEL,
        "write_statistics": True,
        "write_page_index": True,
        "use_dictionary": [c for c in columns if c not in keys],
        "bloom_filter_options": {c: {"ndv": max(min(rows, row_group_rows), 1), "fpp": BLOOM_FPP} for c in keys},
    }


def _file_sizes(files: list[str]) -> int:
    return sum(os.path.getsize(f) for f in files if os.path.exists(f))


def _is_compact(path: Any) -> bool:
    """True when the latest commit is an optimize: nothing was appended or deleted since, so a
    rewrite would gain nothing (a large table stays several files of TARGET_FILE_SIZE)."""
    dt = open_table(path)
    if dt is None:
        return True
    history = dt.history(1)
    return bool(history) and OPTIMIZE_COMMIT in str(history[0].get("userMetadata", "") or "")


def compact_table(
    paths: LakePaths, name: str, force: bool = False, on_rows: Callable[[int], None] | None = None
) -> TableCompaction:
    """Rewrite one table's snapshot sorted and compacted (no-op when already one optimized file)."""
    schema = load_table_schema(name)
    path = paths.table(name)
    dt = open_table(path)
    files = [u.removeprefix("file://") for u in dt.file_uris()] if dt is not None else []
    before = _file_sizes(files)
    if not files or (not force and _is_compact(path)):
        return TableCompaction(name, len(files), len(files), 0, before, before, skipped=True)
    target = arrow_schema_of(path, schema)
    with ordered.sorting_connection("optimize") as con:
        source = ordered.parquet_source(files)
        rows = int(con.execute(f"SELECT count(*) FROM {source}").fetchall()[0][0])
        present = set(target.names)
        select = ", ".join(f'"{f.name}"' for f in target)
        sizes = ordered.batching(files, OPTIMIZED_ROW_GROUP_ROWS)  # smaller under a small memory budget
        batches = ordered.sorted_batches(
            con, source, select, [c for c in schema.sort_by if c in present], rows, sizes.row_bytes, sizes.batch_rows
        )
        # DuckDB's Arrow types can differ in width (e.g. string views); the Delta schema is the contract
        written = ordered.write_files(
            path,
            target,
            (b.cast(target) for b in batches),
            row_group_rows=sizes.row_group_rows,
            file_bytes=TARGET_FILE_SIZE,
            stats_columns=tuple(dict.fromkeys(c for c in (*schema.key, *schema.sort_by) if c in present)),
            on_rows=on_rows,
            **parquet_options(schema, target.names, rows, sizes.row_group_rows),
        )
        ordered.commit(path, target, written, OPTIMIZE_COMMIT)
    after_dt = open_table(path)
    after_files = [u.removeprefix("file://") for u in after_dt.file_uris()] if after_dt is not None else []
    return TableCompaction(name, len(files), len(after_files), rows, before, _file_sizes(after_files))


def rebuild_header_index(
    paths: LakePaths, force: bool = False, on_rows: Callable[[int], None] | None = None
) -> TableCompaction:
    """Rebuild ``header_index`` unless it already covers exactly the current instances files."""
    table = paths.table(header_index.NAME)
    before = snapshot_files(table)
    ranges = header_index.range_map(paths)
    current = {os.path.basename(f) for f in snapshot_files(paths.table("instances"))}
    if not force and ranges is not None and ranges.covers == current:
        size = _file_sizes(before)
        return TableCompaction(header_index.NAME, len(before), len(before), 0, size, size, skipped=True)
    rows = header_index.build(paths, on_rows)
    after = snapshot_files(table)
    return TableCompaction(header_index.NAME, len(before), len(after), rows, _file_sizes(before), _file_sizes(after))


def rebuild_series_summary(
    paths: LakePaths, force: bool = False, on_rows: Callable[[int], None] | None = None
) -> TableCompaction:
    """Rebuild ``series_summary`` unless it already covers exactly the current instances files."""
    table = paths.table(series_summary.NAME)
    before = snapshot_files(table)
    if not force and series_summary.is_current(paths):
        size = _file_sizes(before)
        return TableCompaction(series_summary.NAME, len(before), len(before), 0, size, size, skipped=True)
    rows = series_summary.build(paths, on_rows)
    after = snapshot_files(table)
    return TableCompaction(series_summary.NAME, len(before), len(after), rows, _file_sizes(before), _file_sizes(after))


def _merge_arrays(paths: LakePaths, run_id: str, on_frames: Callable[[int], None] | None) -> ArrayMerge:
    """Remove what a crashed write left, then merge the small pixel arrays (:mod:`lake.pixels.merge`)."""
    from lake.config import read_config
    from lake.maintenance.orphans import committed_arrays, remove_orphans
    from lake.pixels.store import PixelStore

    settings = read_config(paths).pixels
    store = PixelStore(paths.pixels, settings.shard_frames, settings.codec)
    store.discard_unfinished()
    remove_orphans(paths, committed_arrays(paths))
    return merge_small_arrays(paths, store, run_id, on_frames)


def optimize(
    root: str | os.PathLike[str],
    tables: list[str] | None = None,
    force: bool = False,
    on_rows: Callable[[str, int], None] | None = None,
) -> OptimizeSummary:
    """Compact and sort every table (or ``tables``) of the lake at ``root`` under its write lock.

    Records one ``runs`` row (operation ``optimize``) with the per-table file counts.
    ``on_rows(table, n)`` is called as rows are written, for progress display.
    """

    def rows_of(name: str) -> Callable[[int], None] | None:
        return None if on_rows is None else (lambda n: on_rows(name, n))

    paths = LakePaths(root)
    started = utc_now()
    summary = OptimizeSummary(run_id=new_run_id("O"))
    parameters = {"tables": tables or "all", "force": force, "row_group_rows": OPTIMIZED_ROW_GROUP_ROWS}

    def record(outcome: str) -> None:
        append_run(paths, summary.run_id, "optimize", started, parameters, summary.to_dict(), outcome)

    with signals_raise(), write_lock(paths.lock):
        recorded = False
        try:
            written = [t for t in table_names() if t != "runs" and load_table_schema(t).built_by == "ingest"]
            if "instances" in (tables or written):  # first: the switch of rows is a commit that compaction folds in
                summary.arrays = _merge_arrays(paths, summary.run_id, rows_of(PIXEL_ARRAYS))
            # not deferred: a table's rewrite may take minutes, and each commit is one Delta commit anyway
            for name in tables or written:
                summary.tables.append(compact_table(paths, name, force=force, on_rows=rows_of(name)))
                logger.info("optimized %s", name)
            if "instances" in (tables or written):
                summary.tables.append(rebuild_header_index(paths, force=force, on_rows=rows_of(header_index.NAME)))
                summary.tables.append(rebuild_series_summary(paths, force=force, on_rows=rows_of(series_summary.NAME)))
            crash_point("optimize.before_runs_row")
            with deferred():
                record("ok")
                recorded = True
        except KeyboardInterrupt as exc:
            if not recorded:  # else the signal came as the complete run was recorded: it is complete
                try:
                    with deferred():
                        record("interrupted")
                except Interrupted:
                    pass  # a second signal while recording: the row is written, and we stop anyway
                raise Interrupted(signal_of(exc)) from None
    return summary
