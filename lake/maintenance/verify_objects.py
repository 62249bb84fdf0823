"""``lake verify`` of a lake in object storage: the same checks as a folder's (:mod:`lake.maintenance.verify`),
every byte read through the lake's :class:`~lake.storage.Storage`.

- each Parquet file of each table's snapshot: its size against the Delta log, its SHA-256 against
  ``tables/<name>/_lake_fixity.json``;
- each pixel file (shards, ``zarr.json``) against its array's ``fixity.json``, files never recorded too;
- each instance row's frames read through zarr and hashed against ``pixel_sha256``; arrays no row points
  to; bulk values against their ``bulk:<sha256>`` and the instances.

Nothing is written (no lease and no ``runs`` row: a reader never stages the lake,
:mod:`lake.storage.staging`), so the report is the command's whole result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import duckdb

from lake.catalog.query import open_views
from lake.config import LakePaths
from lake.fixity import SIDECAR as TABLE_SIDECAR
from lake.headers.bulk_uri import BULK_SCHEME, STORED_BULK_VIEW
from lake.maintenance.orphans import retained_arrays
from lake.maintenance.verify import FETCH_ROWS, Problem, ProblemKind, VerifyReport, _check_rows, check_bulk_rows
from lake.pixels.fixity import SIDECAR as PIXEL_SIDECAR
from lake.pixels.objects import ObjectPixelStore
from lake.storage import Storage


def _sha256(storage: Storage, path: str) -> str:
    return hashlib.sha256(storage.read(path)).hexdigest()


def _table_sizes(paths: LakePaths, name: str) -> dict[str, int]:
    """Lake-relative path -> size of every file of the table's current snapshot (from the Delta log)."""
    from lake.catalog.tables import open_table

    dt = open_table(paths.table_uri(name), paths.storage_options())
    if dt is None:
        return {}
    actions = dt.get_add_actions(flatten=True)
    data = {column: actions.column(column).to_pylist() for column in ("path", "size_bytes")}
    return {f"{paths.table_key(name)}/{p}": int(s) for p, s in zip(data["path"], data["size_bytes"], strict=True)}


def check_table_files(paths: LakePaths, report: VerifyReport, listed: dict[str, int]) -> None:
    storage = paths.storage
    tables = sorted({p.split("/")[1] for p in listed if p.startswith("tables/") and "/_delta_log/" in p})
    for name in tables:
        sidecar = f"{paths.table_key(name)}/{TABLE_SIDECAR}"
        recorded: dict[str, Any] = json.loads(storage.read(sidecar))["files"] if sidecar in listed else {}
        for path, size in sorted(_table_sizes(paths, name).items()):
            report.counts["table_files"] += 1
            status = None
            if path not in listed:
                status = "missing"
            elif listed[path] != size:
                status = "size_mismatch"
            elif path not in recorded:
                status = "unrecorded"
            elif _sha256(storage, path) != recorded[path]["sha256"]:
                status = "changed"
            if status:
                report.problems.append(Problem(ProblemKind.TABLE_FILE, path, status))


def check_pixel_files(paths: LakePaths, report: VerifyReport, listed: dict[str, int]) -> None:
    storage = paths.storage
    recorded: dict[str, Any] = {}
    current: set[str] = set()
    for path in listed:
        parts = path.split("/")
        if parts[0] != "pixels" or len(parts) < 4:
            continue
        if len(parts) == 4 and parts[3] == PIXEL_SIDECAR:
            recorded.update(json.loads(storage.read(path))["files"])
        elif ((len(parts) == 4 and parts[3] == "zarr.json") or (len(parts) > 4 and parts[3] == "c")) and (
            f"{'/'.join(parts[:3])}/zarr.json" in listed
        ):
            current.add(path)
    for path, entry in sorted(recorded.items()):
        if path not in current:
            report.problems.append(Problem(ProblemKind.PIXEL_FILE, path, "missing"))
        elif _sha256(storage, path) != entry["sha256"]:
            report.problems.append(Problem(ProblemKind.PIXEL_FILE, path, "changed"))
    for path in sorted(current - set(recorded)):
        report.problems.append(Problem(ProblemKind.PIXEL_FILE, path, "unrecorded"))


def _rows(con: duckdb.DuckDBPyConnection) -> Iterator[tuple[str, int, int, str | None]]:
    cursor = con.execute(
        "SELECT pixel_array, pixel_frame_start, frame_count, pixel_sha256 FROM instances "
        "WHERE pixel_array IS NOT NULL ORDER BY pixel_array, pixel_frame_start"
    )
    while rows := cursor.fetchmany(FETCH_ROWS):
        yield from ((str(a), int(s), int(n), h) for a, s, n, h in rows)


def check_rows_and_bulk(
    paths: LakePaths, store: ObjectPixelStore, report: VerifyReport, on_row: Callable[[int], None] | None
) -> None:
    try:
        con = open_views(paths, use_materialised=False)[0]
    except (duckdb.Error, OSError, ValueError) as exc:  # a damaged Parquet file (also reported by its checksum)
        report.problems.append(Problem(ProblemKind.UNREADABLE_TABLE, "tables", type(exc).__name__))
        return
    try:
        arrays: set[str] = set()
        try:
            _check_rows(_rows(con), store, report, arrays, on_row)
        except (duckdb.Error, OSError, ValueError) as exc:
            report.problems.append(Problem(ProblemKind.UNREADABLE_TABLE, "tables/instances", type(exc).__name__))
            return
        report.counts["arrays"] = len(arrays)
        unused = set(store.keys()) - arrays
        if unused:  # an array an older kept version of the table points to is not an orphan
            unused -= retained_arrays(paths)
        for key in sorted(unused):
            report.problems.append(Problem(ProblemKind.ORPHAN_ARRAY, f"pixels/{key}"))
        _check_bulk(con, report)
    finally:
        con.close()


def _check_bulk(con: duckdb.DuckDBPyConnection, report: VerifyReport) -> None:
    try:
        rows = con.execute(f"SELECT SOPInstanceUID, tag_path, sha256, length, value FROM {STORED_BULK_VIEW}").fetchall()
        pattern = BULK_SCHEME + "([0-9a-f]{64})"
        references = con.execute(
            f"SELECT SOPInstanceUID, unnest(regexp_extract_all(header_json, '{pattern}', 1)) FROM instances "
            f"WHERE header_json LIKE '%{BULK_SCHEME}%'"
        ).fetchall()
        committed = (
            {str(u) for (u,) in con.execute("SELECT SOPInstanceUID FROM instances").fetchall()} if rows else set()
        )
    except (duckdb.Error, OSError, ValueError) as exc:
        report.problems.append(Problem(ProblemKind.UNREADABLE_TABLE, "tables/bulk", type(exc).__name__))
        return
    check_bulk_rows(report, rows, references, committed)


def verify_objects(
    paths: LakePaths, run_id: str, shard_frames: int, on_row: Callable[[int], None] | None = None
) -> VerifyReport:
    """Every check of ``lake verify`` on the lake in object storage at ``paths`` (one listing of the lake)."""
    report = VerifyReport(run_id)
    listed = {info.path: info.size for info in paths.storage.list()}
    check_table_files(paths, report, listed)
    check_pixel_files(paths, report, listed)
    store = ObjectPixelStore(paths.storage, shard_frames)
    check_rows_and_bulk(paths, store, report, on_row)
    return report
