"""Writes to a lake in object storage: stage the lake in a local folder, run the folder command there,
publish what changed.

    with staged_lake("s3://bucket/lakes/one") as folder:   # the write lease held throughout
        ingest(folder, sources)                           # the ordinary folder code, flock and all

1. The lake's write lease is taken (:mod:`lake.storage.lease`): one writer at a time, on any store.
2. What the command reads is copied into a new private temporary folder: the tables, ``lake.json``,
   and each pixel array's metadata (``zarr.json``, the ``fixity.json`` sidecar), not its shard files
   (over 95% of a lake's bytes; an array without a sidecar is copied whole). An array whose frames
   the command reads (a re-read, a compaction after a correction or ``lake forget``, an append to an
   array of an older lake) has its shards fetched first by :class:`~lake.pixels.store.PixelStore`
   (:mod:`lake.storage.lazy`). No lake yet: an empty folder, so an ingest creates the lake.
3. The block runs the folder command on it.
4. Only when the block ends without an exception, what changed is published: new and changed data
   files first (Parquet, pixel shards), then the metadata that makes them visible (``zarr.json`` and
   fixity sidecars, the Delta logs with ``instances`` last, ``lake.json`` last of all). Every new Delta
   commit file is looked up first (one found: :class:`~lake.errors.StorageConflictError`, nothing
   published) and then written with put-if-absent (as delta-rs's conditional put does), so a commit
   that another writer made meanwhile is never overwritten. Files the command removed (``lake
   forget`` vacuums and purges log history, an array deleted or compacted) are deleted from the store
   last; a shard never staged is deleted only with its array (its ``zarr.json`` gone from the folder).
5. The lease is released and the folder removed, whatever happened.

The CLI stages ``init``, ``ingest``, ``forget``, ``vacuum``, ``optimize``, ``review`` and ``export
teaching`` this way (:data:`lake.cli.common.STAGED_COMMANDS`); ``restore`` stages every shard too
(``whole``: it compares every file with the replica's by SHA-256). :func:`local_view` serves
``audit-phi``, which reads every file but the shards: the same copy without a lease, nothing published.

A publish cut short (a killed process) leaves what a folder ingest killed between its pixel and its
row commits leaves: data no committed row points to, which the next write removes
(``tests/storage/test_s3_lake.py`` kills an ingest at ``staging.before_metadata``,
``tests/storage/test_s3_staging.py`` a correction there and at ``staging.before_deletions``; the killed
writer's lease holds the lake until it expires, and its temporary folder stays in ``TMPDIR``). The
cost of a command is its tables and array metadata plus the arrays it reads: an ingest of 3 patients
into the 40-patient demo lake stages 0.8 MB (369 files) instead of the whole 47.4 MB (546 files),
4.8 s instead of 7.4 s on moto (``benchmarks/storage.py``, 2026-12-02).
The tables are still copied whole; a lake whose tables are too large to stage should be written in
a folder and replicated (``lake replicate --to s3://...``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from pathlib import Path

from lake.crashpoints import crash_point
from lake.errors import StorageConflictError
from lake.storage.base import ObjectInfo, Storage
from lake.storage.lazy import LazyShards, StagingCounts, registered, shard_array
from lake.storage.lease import LEASE_PATH, hold_lease

STAGING_PREFIX = "lake-staging-"


def _order(rel: str) -> tuple[int, str]:
    """Publish order: data, array and fixity metadata, table logs, instances' log, lake.json."""
    from lake.config import CONFIG_NAME
    from lake.maintenance.replicate import _is_metadata

    if rel == CONFIG_NAME:
        return 4, rel
    if rel.startswith("tables/instances/_delta_log/"):
        return 3, rel
    if "/_delta_log/" in f"/{rel}":
        return 2, rel
    return (1 if _is_metadata(rel) or rel.endswith("_lake_fixity.json") else 0), rel


def _stamp(info: ObjectInfo) -> int:
    return int(info.modified.timestamp() * 1e9)


def _is_commit(rel: str) -> bool:
    """A Delta commit file (``tables/<name>/_delta_log/<version>.json``)."""
    name = rel.rsplit("/", 1)[-1]
    return "/_delta_log/" in f"/{rel}" and name.endswith(".json") and name.split(".")[0].isdigit()


def _conflict(storage: Storage, rel: str, done: str) -> StorageConflictError:
    return StorageConflictError(
        f"another writer committed {rel} to the lake at {storage.url} meanwhile ({done}); run the command again"
    )


def publish(
    storage: Storage, folder: Path, before: dict[str, ObjectInfo], unstaged: AbstractSet[str] = frozenset()
) -> dict[str, int]:
    """Upload what changed in ``folder`` since it was staged from ``before`` (see the module); counts.
    ``unstaged``: files of ``before`` left in the store (pixel shards), deleted only with their array."""
    from lake.maintenance.replicate import _files

    counts = {"published": 0, "unchanged": 0, "deleted": 0, "bytes_published": 0}
    now = _files(folder)
    commits = [rel for rel in now if rel not in before and _is_commit(rel)]
    for rel in commits:  # checked before anything is published (put-if-absent below closes the race)
        if storage.exists(rel):
            raise _conflict(storage, rel, "nothing was published")
    data_done = False
    for rel in sorted(now, key=_order):
        if not data_done and _order(rel)[0] > 0:
            crash_point("staging.before_metadata")  # every data file is up, nothing points to them yet
            data_done = True
        path = now[rel]
        st = path.stat()
        seen = before.get(rel)
        if seen is not None and seen.size == st.st_size and _stamp(seen) == st.st_mtime_ns:
            counts["unchanged"] += 1
            continue
        data = path.read_bytes()
        if rel in commits:
            if storage.create(rel, data) is None and storage.read(rel) != data:
                raise _conflict(storage, rel, "the data files before it were published, unreferenced")
        else:
            storage.write(rel, data)
        counts["published"] += 1
        counts["bytes_published"] += st.st_size
    crash_point("staging.before_deletions")
    for rel in sorted(set(before) - set(now), key=_order, reverse=True):
        array = shard_array(rel) if rel in unstaged else None
        if array is not None and f"{array}/zarr.json" in now:
            continue  # never staged: its array is still there
        storage.delete(rel)
        counts["deleted"] += 1
    return counts


def _staged_part(
    objects: dict[str, ObjectInfo], whole: bool = False
) -> tuple[dict[str, ObjectInfo], dict[str, list[ObjectInfo]]]:
    """What is copied into the folder, and the shards left in the store by array folder: every shard of
    an array with a fixity sidecar (an array without one is staged whole: its checksums are recorded
    from the files on disk, :meth:`lake.pixels.store.PixelStore.write_new`)."""
    from lake.pixels.fixity import SIDECAR

    left: dict[str, list[ObjectInfo]] = {}
    staged: dict[str, ObjectInfo] = {}
    for rel, info in objects.items():
        array = shard_array(rel)
        if array is not None and not whole and f"{array}/{SIDECAR}" in objects:
            left.setdefault(array, []).append(info)
        else:
            staged[rel] = info
    return staged, left


@contextmanager
def staged_lake(
    location: str,
    lease_timeout: float | None = None,
    on_message: Callable[[str], None] | None = None,
    counts: StagingCounts | None = None,
    whole: bool = False,
) -> Iterator[Path]:
    """A local folder holding the lake at ``location`` (object storage) for a write (see the module);
    ``on_message`` hears what was staged and what was published (counts and sizes only); ``counts``,
    when given, is filled in with what was copied from the store; ``whole`` stages every pixel shard
    too (as staging did before 2026-12-02: ``benchmarks/storage.py`` compares the two)."""
    say = on_message or (lambda _message: None)
    counted = counts if counts is not None else StagingCounts()
    from lake.config import CONFIG_NAME, LakePaths
    from lake.maintenance.replicate_objects import NOT_COPIED, pull

    paths = LakePaths(location)
    storage = paths.storage
    with hold_lease(storage, timeout=lease_timeout) as lease:
        folder = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX))
        os.chmod(folder, 0o700)
        try:
            before = {i.path: i for i in storage.list() if i.path.rsplit("/", 1)[-1] not in NOT_COPIED}
            staged, left = _staged_part(before, whole)
            counted.staged_files, counted.staged_bytes = len(staged), sum(i.size for i in staged.values())
            counted.shards_left = sum(len(infos) for infos in left.values())
            counted.shard_bytes_left = sum(i.size for infos in left.values() for i in infos)
            if before:
                pull(paths, folder, objects=staged)
                say(
                    f"staged the lake from {storage.url} in a temporary folder: {len(staged)} files, "
                    f"{counted.staged_bytes / 1e6:.1f} MB ({counted.shards_left} pixel shard files, "
                    f"{counted.shard_bytes_left / 1e6:.1f} MB, stay in the store until read)"
                )
            lazy = LazyShards(storage, folder, left, counted)
            with registered(lazy):
                yield folder
            lease.check()
            if counted.fetched_shards:
                say(f"fetched {counted.fetched_shards} pixel shard files ({counted.fetched_bytes / 1e6:.1f} MB) read")
            done = publish(storage, folder, before, lazy.unstaged())
            say(
                f"published to {storage.url}: {done['published']} files ({done['bytes_published'] / 1e6:.1f} MB), "
                f"{done['deleted']} deleted, {done['unchanged']} unchanged"
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    if not before and not storage.exists(CONFIG_NAME):  # nothing was made: leave no lease behind either
        storage.delete(LEASE_PATH)


@contextmanager
def local_view(location: str, on_message: Callable[[str], None] | None = None) -> Iterator[Path]:
    """A local folder holding the tables, ``lake.json`` and array metadata of the lake at ``location``
    (object storage), for a command that reads every file but the pixel shards (``lake audit-phi``).
    Each shard is an empty file of its name (fetched whole if the command reads its array,
    :mod:`lake.storage.lazy`); no lease is taken and nothing is published: a writer that publishes
    meanwhile may be seen in part, as by any reader that lists files one by one."""
    say = on_message or (lambda _message: None)
    from lake.config import LakePaths
    from lake.errors import LakeNotFoundError
    from lake.maintenance.replicate_objects import NOT_COPIED, pull

    paths = LakePaths(location)
    if not paths.exists():
        raise LakeNotFoundError(location)
    storage = paths.storage
    folder = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX))
    os.chmod(folder, 0o700)
    try:
        listed = {i.path: i for i in storage.list() if i.path.rsplit("/", 1)[-1] not in NOT_COPIED}
        staged, left = _staged_part(listed)
        pull(paths, folder, objects=staged)
        for infos in left.values():
            for info in infos:
                (folder / info.path).parent.mkdir(parents=True, exist_ok=True)
                (folder / info.path).touch()
        size = sum(i.size for i in staged.values()) / 1e6
        say(
            f"copied the lake's tables and metadata from {storage.url} to a temporary folder: "
            f"{len(staged)} files, {size:.1f} MB"
        )
        with registered(LazyShards(storage, folder, left, StagingCounts())):
            yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
