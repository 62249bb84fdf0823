"""``lake verify``: recompute every recorded checksum and check that tables and pixel arrays agree.

Checked: each Parquet file of each table's snapshot against the size in the Delta log and the
SHA-256 recorded at commit time (:mod:`lake.fixity`); each pixel shard and ``zarr.json`` against
its sidecar (:mod:`lake.pixels.fixity`); each instance row with pixels against its array (the
frames exist, read, and hash to the row's ``pixel_sha256``); each array on disk against the rows
(an array no row points to is an orphan, removed by ``lake vacuum``); each ``bulk`` value against
its ``bulk:<sha256>`` URI (the bytes re-hashed, the length compared), each such URI in
``header_json`` against the bulk rows of its instance, and each bulk row against the instances (a
row of an instance never committed is an orphan, removed by the next ``lake ingest`` or ``lake vacuum``).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import duckdb
import numpy as np

from lake import memory
from lake.catalog.tables import snapshot_files
from lake.config import LakePaths, read_config
from lake.fixity import verify_table_fixity
from lake.headers.bulk_uri import BULK_SCHEME
from lake.lock import write_lock
from lake.maintenance.orphans import orphan_arrays
from lake.pixels.fixity import verify_fixity
from lake.pixels.store import PixelStore
from lake.runs import append_run, new_run_id, utc_now


class ProblemKind(StrEnum):
    TABLE_FILE = "table_file"  # a Parquet file changed, is missing or was never checksummed
    PIXEL_FILE = "pixel_file"  # a shard or zarr.json changed, is missing or was never checksummed
    MISSING_ARRAY = "missing_array"  # a row points to an array that is not there
    MISSING_FRAMES = "missing_frames"  # the array is shorter than the row's frames
    UNREADABLE_FRAMES = "unreadable_frames"  # the frames cannot be decoded
    FRAME_MISMATCH = "frame_mismatch"  # the frames do not hash to the row's pixel_sha256
    ORPHAN_ARRAY = "orphan_array"  # an array no row points to
    UNREADABLE_TABLE = "unreadable_table"  # the instances snapshot cannot be read: rows not checked
    BULK_MISMATCH = "bulk_mismatch"  # a bulk value does not hash to its bulk:<sha256> (or not its length)
    MISSING_BULK = "missing_bulk"  # header_json references a bulk:<sha256> its instance has no row for
    ORPHAN_BULK = "orphan_bulk"  # bulk rows of an instance that is not in the instances table


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    where: str  # lake-relative file path, or a pixel array key
    detail: str = ""  # a status or error class name; never data

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.where}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class VerifyReport:
    run_id: str
    problems: list[Problem] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "ok": self.ok,
            "counts": dict(self.counts),
            "problems": Counter(p.kind.value for p in self.problems),
        }


def _quote_list(files: list[str]) -> str:
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"


#: Rows fetched from DuckDB at a time (a few hundred bytes each): the lake's rows are never all in memory.
FETCH_ROWS = 50_000


def _instance_pixels(paths: LakePaths) -> Iterator[tuple[str, int, int, str | None]]:
    """(array, first frame, frames, SHA-256) of every instance with pixels, by array and frame."""
    files = snapshot_files(paths.table("instances"))
    if not files:
        return
    with memory.connect("verify", ordered=False) as con:
        cursor = con.execute(
            f"SELECT pixel_array, pixel_frame_start, frame_count, pixel_sha256 FROM "
            f"read_parquet({_quote_list(files)}, union_by_name = true) "
            "WHERE pixel_array IS NOT NULL ORDER BY pixel_array, pixel_frame_start"
        )
        while rows := cursor.fetchmany(FETCH_ROWS):
            yield from ((str(a), int(s), int(n), h) for a, s, n, h in rows)


def _check_rows(
    rows: Iterable[tuple[str, int, int, str | None]],
    store: PixelStore,
    report: VerifyReport,
    arrays: set[str],
    on_row: Callable[[int], None] | None,
) -> None:
    """Each row's frames against its array (``arrays`` collects the keys seen)."""
    key_open, arr = "", None  # rows come by array: only the current one is open
    for key, start, count, sha in rows:
        if on_row:
            on_row(0)
        report.counts["instances_with_pixels"] += 1
        if key != key_open:
            key_open, arr = key, store.open(key) if store.exists(key) else None
            arrays.add(key)
            if arr is None:
                report.problems.append(Problem(ProblemKind.MISSING_ARRAY, f"pixels/{key}"))
        if arr is None:
            continue
        if start + count > arr.shape[0]:
            report.problems.append(Problem(ProblemKind.MISSING_FRAMES, f"pixels/{key}", f"frames {start}+{count}"))
            continue
        try:
            frames = np.ascontiguousarray(arr[start : start + count])
        except Exception as exc:  # a damaged shard: report it, check the rest
            report.problems.append(Problem(ProblemKind.UNREADABLE_FRAMES, f"pixels/{key}", type(exc).__name__))
            continue
        report.counts["frames_checked"] += count
        if sha and hashlib.sha256(frames.tobytes()).hexdigest() != sha:
            report.problems.append(Problem(ProblemKind.FRAME_MISMATCH, f"pixels/{key}", f"frames {start}+{count}"))


def check_consistency(
    paths: LakePaths, store: PixelStore, report: VerifyReport, on_row: Callable[[int], None] | None = None
) -> None:
    """Rows against arrays and arrays against rows; appends problems to ``report``.

    ``on_row(nbytes)`` is called once per instance row checked, for progress display.
    """
    arrays: set[str] = set()
    try:
        _check_rows(_instance_pixels(paths), store, report, arrays, on_row)
    except duckdb.Error as exc:  # a damaged Parquet file (also reported by its checksum)
        report.problems.append(Problem(ProblemKind.UNREADABLE_TABLE, "tables/instances", type(exc).__name__))
        return
    report.counts["arrays"] = len(arrays)
    for key in orphan_arrays(paths, arrays):
        report.problems.append(Problem(ProblemKind.ORPHAN_ARRAY, f"pixels/{key}"))


def _bulk_where(sop: str, tag_path: str) -> str:
    return f"tables/bulk/{sop}/{tag_path}"  # de-identified UID and a tag path: no value


def check_bulk(paths: LakePaths, report: VerifyReport) -> None:
    """Every bulk value re-hashed against its ``bulk:<sha256>``; every URI of ``header_json``
    resolved; every bulk row's instance committed. Appends problems to ``report``."""
    bulk_files = snapshot_files(paths.table("bulk"))
    instance_files = snapshot_files(paths.table("instances"))
    con = duckdb.connect(":memory:")
    try:
        rows = (
            con.execute(
                f"SELECT SOPInstanceUID, tag_path, sha256, length, value FROM "
                f"read_parquet({_quote_list(bulk_files)}, union_by_name = true)"
            ).fetchall()
            if bulk_files
            else []
        )
        pattern = BULK_SCHEME + "([0-9a-f]{64})"
        references = (
            con.execute(
                f"SELECT SOPInstanceUID, unnest(regexp_extract_all(header_json, '{pattern}', 1)) FROM "
                f"read_parquet({_quote_list(instance_files)}, union_by_name = true) "
                f"WHERE header_json LIKE '%{BULK_SCHEME}%'"
            ).fetchall()
            if instance_files
            else []
        )
        committed = (
            {
                str(u)
                for (u,) in con.execute(
                    f"SELECT SOPInstanceUID FROM read_parquet({_quote_list(instance_files)}, union_by_name = true)"
                ).fetchall()
            }
            if instance_files and rows
            else set()
        )
    except duckdb.Error as exc:  # a damaged Parquet file (also reported by its checksum)
        report.problems.append(Problem(ProblemKind.UNREADABLE_TABLE, "tables/bulk", type(exc).__name__))
        return
    check_bulk_rows(report, rows, references, committed)


def check_bulk_rows(
    report: VerifyReport,
    rows: Iterable[tuple[Any, ...]],
    references: Iterable[tuple[Any, ...]],
    committed: Container[str],
) -> None:
    """Re-hash each stored bulk value (``SOPInstanceUID, tag_path, sha256, length, value``), check
    each ``bulk:`` reference of ``header_json`` resolves, and report rows of uncommitted instances."""
    stored: set[tuple[str, str]] = set()
    orphans: set[str] = set()
    for sop, tag_path, sha, length, value in rows:
        report.counts["bulk_values"] += 1
        data = bytes(value) if value is not None else b""
        if hashlib.sha256(data).hexdigest() != sha or len(data) != length:
            report.problems.append(Problem(ProblemKind.BULK_MISMATCH, _bulk_where(sop, tag_path)))
        stored.add((str(sop), str(sha)))  # the reference resolves (to damaged bytes: reported above)
        if sop not in committed:
            orphans.add(str(sop))
    for sop, digest in references:
        report.counts["bulk_references"] += 1
        if (str(sop), str(digest)) not in stored:
            report.problems.append(
                Problem(ProblemKind.MISSING_BULK, f"tables/instances/{sop}", BULK_SCHEME + "<sha256>")
            )
    for sop in sorted(orphans):
        report.problems.append(Problem(ProblemKind.ORPHAN_BULK, f"tables/bulk/{sop}"))


def _verify(paths: LakePaths, run_id: str, on_row: Callable[[int], None] | None = None) -> VerifyReport:
    config = read_config(paths)
    report = VerifyReport(run_id)
    table_problems, checked = verify_table_fixity(paths)
    report.counts["table_files"] = checked
    report.problems += [Problem(ProblemKind.TABLE_FILE, p.path, p.status.value) for p in table_problems]
    pixel_problems = verify_fixity(paths)
    report.problems += [Problem(ProblemKind.PIXEL_FILE, p.path, p.status.value) for p in pixel_problems]
    store = PixelStore(paths.pixels, config.pixels.shard_frames, config.pixels.codec)
    check_consistency(paths, store, report, on_row)
    check_bulk(paths, report)
    return report


def verify(
    root: str | os.PathLike[str], record: bool = True, on_row: Callable[[int], None] | None = None
) -> VerifyReport:
    """Check the lake at ``root`` under its write lock; ``record`` adds the ``runs`` audit row.

    A lake in object storage (``s3://...``) is checked by :mod:`lake.maintenance.verify_objects`.
    Never raises for what it finds: the problems are in the report. Raises
    :class:`lake.errors.LakeNotFoundError` when ``root`` is not a lake.
    """
    paths = LakePaths(root)
    config = read_config(paths)  # not a lake: fail before creating a lock file in it
    if not paths.is_local:  # read-only checks through the storage (no lock, no runs row)
        from lake.maintenance.verify_objects import verify_objects

        return verify_objects(paths, new_run_id("V"), config.pixels.shard_frames, on_row)
    started = utc_now()
    run_id = new_run_id("V")
    with write_lock(paths.lock):
        report = _verify(paths, run_id, on_row)
        if record:
            counts = report.to_dict()
            append_run(paths, run_id, "verify", started, {}, counts, "ok" if report.ok else "failed")
    return report
