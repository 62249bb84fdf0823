"""``lake optimize`` merges the small pixel arrays of a series into few large ones.

An ingest's worker writes one array per (series, geometry, unit of work) and one per multi-frame
instance (:meth:`lake.pixels.store.PixelStore.write_new`), so a series ingested over several units or
runs is held by several arrays. Each of them has its own ``zarr.json``, ``fixity.json`` and at least
one shard file, and a volume read opens them all. Here the arrays of a series that hold fewer frames
than one shard (``pixels.shard_frames``) and read alike (the same frame shape, data type and reading
attributes: photometric interpretation, signedness, palette, bits) are copied into one new
write-once array per group, at most :data:`MERGE_RAW_BYTES` of frames each, with the frames in slice
order (InstanceNumber, then SOP Instance UID). The new array is named by its content like an
ingest's (:func:`lake.pixels.store.frames_array_key`), built under ``pixels/.writing``, read back,
compared and checksummed before it is renamed into place.

The rows then switch to it in one Delta ``MERGE`` of ``instances`` per :data:`COMMIT_ROWS` rows,
matched on (SOPInstanceUID, pixel_array). The old arrays stay while an older version of the table
that points to them is kept for time travel (a cohort pinned to it reads the same pixels), and go
with the next write after ``lake vacuum`` removed those versions' files
(:func:`lake.maintenance.orphans.retained_arrays`). A crash or Ctrl-C before the commit leaves the
new array unused (an orphan the next write removes) and the old ones in use; the same command again
finishes the job (the new array's name is the same, so it is not written twice). Frames no committed
row points to (an instance of a unit that was not stored) are not copied. The stored values are
unchanged: every instance's frames read the same before and after (``tests/pixels/test_merge.py``).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lake import memory
from lake.catalog.ordered import parquet_source
from lake.catalog.tables import open_table, snapshot_files
from lake.config import LakePaths
from lake.crashpoints import crash_point
from lake.errors import NotInLakeError
from lake.pixels.store import PixelStore, frames_array_key

logger = logging.getLogger(__name__)

#: A merged array holds at most about this many raw bytes of frames (it is built in memory).
MERGE_RAW_BYTES = 256 * 1024 * 1024
#: Rows switched to their merged arrays per Delta commit (bounds the memory of a commit's source).
COMMIT_ROWS = 100_000
ROWS_PER_BATCH = 8192
#: The array attributes a reader interprets the stored values by: arrays merge only when these agree.
READING_ATTRIBUTES = (
    "StoredPhotometricInterpretation",
    "PhotometricInterpretation",
    "signed",
    "palette",
    "SamplesPerPixel",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PlanarConfiguration",
)
#: Attributes of the measured codec of a source array: the merged array measures its own.
_CODEC_ATTRIBUTES = frozenset({"codec", "codec_measured_bytes", "codec_fallback"})
#: The commit message of a merge (not optimize's own: the table is compacted after it).
MERGE_COMMIT = "lake pixel arrays merged"
_ROW_COLUMNS = "SOPInstanceUID, pixel_array, pixel_frame_start, frame_count, pixel_sha256, source_ref"


@dataclass
class ArrayMerge:
    """What one merge did: small arrays merged, arrays written, rows and frames moved."""

    arrays_before: int = 0
    arrays_after: int = 0
    instances: int = 0
    frames: int = 0
    bytes: int = 0
    commits: int = 0
    skipped_series: int = 0  # a source array missing or unreadable: left for `lake verify` to report

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class _Plan:
    """Small source arrays of one series merged into one new array."""

    series: str
    sources: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Pending:
    """Rows switched to new arrays, not committed yet."""

    sops: list[str] = field(default_factory=list)
    old: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)


def merge_small_arrays(
    paths: LakePaths,
    store: PixelStore,
    run_id: str,
    on_frames: Callable[[int], None] | None = None,
    commit_rows: int = COMMIT_ROWS,
) -> ArrayMerge:
    """Merge the small arrays of every series (call under the write lock); see the module docstring."""
    summary = ArrayMerge()
    files = snapshot_files(paths.table("instances"))
    if not files:
        return summary
    with memory.connect("merge", ordered=True) as con:
        src = parquet_source(files)
        used = con.execute(
            f"SELECT pixel_array, sum(frame_count) FROM {src} WHERE pixel_array IS NOT NULL GROUP BY ALL"
        ).fetchall()
        plans = list(_plans(store, {str(a): int(n or 0) for a, n in used}))
        if not plans:
            return summary
        import pyarrow as pa

        members = pa.table(
            {
                "pixel_array": [key for plan in plans for key in plan.sources],
                "plan": [n for n, plan in enumerate(plans) for _key in plan.sources],
            }
        )
        con.register("merging", members)
        rows = con.sql(
            f"SELECT m.plan, {', '.join('i.' + c.strip() for c in _ROW_COLUMNS.split(','))} "
            f"FROM {src} AS i JOIN merging AS m USING (pixel_array) "
            "ORDER BY m.plan, i.InstanceNumber NULLS LAST, i.SOPInstanceUID, i.pixel_array"
        ).to_arrow_reader(ROWS_PER_BATCH)
        pending = _Pending()
        for plan in _with_rows(plans, rows):
            _merge(store, plan, run_id, summary, pending, on_frames)
            plan.rows = []
            if len(pending.sops) >= commit_rows:
                _commit(paths, pending, summary)
                pending = _Pending()
        _commit(paths, pending, summary)
    return summary


def _plans(store: PixelStore, used: dict[str, int]) -> Iterator[_Plan]:
    """The merges to do: per series, the small arrays that read alike, in groups of at most
    :data:`MERGE_RAW_BYTES` of the frames rows point to; a group of one is left as it is."""
    by_series: dict[str, list[str]] = defaultdict(list)
    for key in sorted(used):
        by_series[key.split("/", 1)[0]].append(key)
    for series, keys in by_series.items():
        if len(keys) < 2:
            continue
        alike: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for key in keys:
            try:
                meta = store.metadata(key)
            except (NotInLakeError, OSError, ValueError):
                continue  # a missing or broken array: `lake verify` reports it; nothing is merged with it
            shape = [int(n) for n in meta.get("shape", [])]
            if not shape or shape[0] >= store.shard_frames:
                continue
            attrs = meta.get("attributes", {}).get("lake", {})
            reading = {k: attrs.get(k) for k in READING_ATTRIBUTES} if isinstance(attrs, dict) else {}
            kind = json.dumps([shape[1:], meta.get("data_type"), reading], sort_keys=True, default=str)
            frame_bytes = int(np.prod(shape[1:])) * _itemsize(meta.get("data_type"))
            alike[kind].append((key, used[key] * frame_bytes))
        for group in alike.values():
            batch: list[str] = []
            held = 0
            for key, nbytes in group:
                if batch and held + nbytes > MERGE_RAW_BYTES:
                    if len(batch) > 1:
                        yield _Plan(series, batch)
                    batch, held = [], 0
                batch.append(key)
                held += nbytes
            if len(batch) > 1:
                yield _Plan(series, batch)


def _itemsize(data_type: object) -> int:
    try:
        return int(np.dtype(str(data_type)).itemsize)
    except TypeError:
        return 8


def _with_rows(plans: list[_Plan], reader: Any) -> Iterator[_Plan]:
    """Each plan with its rows, in plan order, from the rows streamed in record batches."""
    current: _Plan | None = None
    for batch in reader:
        for row in batch.to_pylist():
            plan = plans[int(row.pop("plan"))]
            if plan is not current:
                if current is not None:
                    yield current
                current = plan
            plan.rows.append(row)
    if current is not None:
        yield current


def _merge(
    store: PixelStore,
    plan: _Plan,
    run_id: str,
    summary: ArrayMerge,
    pending: _Pending,
    on_frames: Callable[[int], None] | None,
) -> None:
    """Write the plan's merged array (once) and queue its rows' switch to it."""
    wanted: dict[str, set[int]] = defaultdict(set)
    for row in plan.rows:
        first = int(row["pixel_frame_start"])
        wanted[row["pixel_array"]].update(range(first, first + int(row["frame_count"])))
    frames_of: dict[str, dict[int, np.ndarray]] = {}
    try:
        for key, indices in wanted.items():
            ordered = sorted(indices)
            frames_of[key] = dict(zip(ordered, store.read_frames(key, ordered), strict=True))
        attributes = store.attributes(str(plan.rows[0]["pixel_array"]))  # of its first instance, as an ingest's
    except (NotInLakeError, OSError, ValueError):
        logger.warning("a series' small pixel arrays were not merged: one of them could not be read")
        summary.skipped_series += 1
        return
    parts: list[np.ndarray] = []
    starts: list[int] = []
    start = 0
    for row in plan.rows:
        first = int(row["pixel_frame_start"])
        parts.extend(frames_of[row["pixel_array"]][i] for i in range(first, first + int(row["frame_count"])))
        starts.append(start)
        start += int(row["frame_count"])
    frames_of.clear()
    merged = np.stack(parts)
    parts.clear()
    attributes = {k: v for k, v in attributes.items() if k not in _CODEC_ATTRIBUTES}
    named_by = [f"{r['pixel_sha256']} {r['source_ref']}" for r in plan.rows]
    named_by += [json.dumps(attributes, sort_keys=True, default=str), "merged"]
    key = frames_array_key(plan.series, merged, named_by)
    store.write_new(key, merged, attributes, run=run_id)
    crash_point("merge.after_array")
    for row, start in zip(plan.rows, starts, strict=True):
        pending.sops.append(str(row["SOPInstanceUID"]))
        pending.old.append(str(row["pixel_array"]))
        pending.new.append(key)
        pending.starts.append(start)
    summary.arrays_before += len(plan.sources)
    summary.arrays_after += 1
    summary.instances += len(plan.rows)
    summary.frames += int(merged.shape[0])
    summary.bytes += int(merged.nbytes)
    if on_frames is not None:
        on_frames(int(merged.shape[0]))


def _commit(paths: LakePaths, pending: _Pending, summary: ArrayMerge) -> None:
    """Switch the pending rows to their new arrays in one Delta commit (the old arrays are retained
    with the table's older versions, see the module docstring)."""
    if not pending.sops:
        return
    import pyarrow as pa

    from lake.interrupts import deferred

    source = pa.table(
        {
            "SOPInstanceUID": pa.array(pending.sops, pa.string()),
            "old_array": pa.array(pending.old, pa.string()),
            "new_array": pa.array(pending.new, pa.string()),
            "new_start": pa.array(pending.starts, pa.int64()),
        }
    )
    dt = open_table(paths.table("instances"))
    assert dt is not None
    crash_point("merge.before_commit")
    with deferred():  # a signal waits for the commit
        dt.merge(
            source,
            predicate="t.SOPInstanceUID = s.SOPInstanceUID AND t.pixel_array = s.old_array",
            source_alias="s",
            target_alias="t",
            commit_properties=_commit_properties(),
        ).when_matched_update(updates={"pixel_array": "s.new_array", "pixel_frame_start": "s.new_start"}).execute()
        summary.commits += 1


def _commit_properties() -> Any:
    from deltalake import CommitProperties

    return CommitProperties(custom_metadata={"userMetadata": MERGE_COMMIT})
