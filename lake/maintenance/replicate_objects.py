"""``lake replicate --lake s3://... --to DIR``: copy a lake in object storage to a folder, incrementally.

The order is a folder replica's (:mod:`lake.maintenance.replicate`): data files first, then the Delta
logs, checksum sidecars and ``zarr.json``, ``lake.json`` last, each written to a temporary name and
renamed, so an interrupted copy still shows the folder's previous snapshot. A copied file takes the
object's modification time, so the next copy skips objects of the same size and time (``checksum``:
of the same SHA-256). The replica manifest that a copy *to* object storage leaves
(``_lake_replica.json``) is not copied back: folder -> S3 -> folder gives the first folder's files.

Nothing is written to the lake in object storage (no lease, no ``runs`` row). A writer publishing
meanwhile (:mod:`lake.storage.staging`) may be copied in part; the copy is consistent again once the
same command runs after it, as for an interrupted copy.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from lake.config import CONFIG_NAME, LakePaths
from lake.maintenance import remote
from lake.maintenance.replicate import _TMP_SUFFIX, MirrorSummary, _files, _is_metadata
from lake.pixels.fixity import sha256_file
from lake.runs import new_run_id
from lake.storage import ObjectInfo, Storage

#: object storage files that are not the lake's (a replica manifest, the write lease)
NOT_COPIED = {remote.MANIFEST, "_lake_lease.json"}


def _same(info: ObjectInfo, dst: Path, checksum: bool, data: Callable[[], bytes]) -> bool:
    if not dst.is_file() or dst.stat().st_size != info.size:
        return False
    if checksum:
        return sha256_file(dst) == hashlib.sha256(data()).hexdigest()
    return dst.stat().st_mtime_ns == int(info.modified.timestamp() * 1e9)


def _reader(storage: Storage, rel: str) -> Callable[[], bytes]:
    """The object's bytes, read at the first call only."""

    @functools.cache
    def data() -> bytes:
        return storage.read(rel)

    return data


def pull(
    paths: LakePaths,
    target: Path,
    checksum: bool = False,
    on_file: Callable[[int], None] | None = None,
    objects: dict[str, ObjectInfo] | None = None,
) -> MirrorSummary:
    """Make the folder ``target`` a copy of the lake in object storage at ``paths`` (see the module);
    ``objects`` is the listing to copy (default: listed now)."""
    storage = paths.storage
    summary = MirrorSummary(new_run_id("C"))
    if objects is None:
        objects = {info.path: info for info in storage.list() if info.path.rsplit("/", 1)[-1] not in NOT_COPIED}
    ordered = sorted(objects, key=lambda rel: (_is_metadata(rel), rel.endswith(CONFIG_NAME), rel))
    target.mkdir(parents=True, exist_ok=True)
    for rel in ordered:
        info, dst = objects[rel], target / rel
        if on_file:
            on_file(info.size)
        data = _reader(storage, rel)
        if _same(info, dst, checksum, data):
            summary.unchanged += 1
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + _TMP_SUFFIX)
        tmp.write_bytes(data())
        stamp = int(info.modified.timestamp() * 1e9)
        os.utime(tmp, ns=(stamp, stamp))
        os.replace(tmp, dst)
        summary.copied += 1
        summary.bytes_copied += info.size
    for rel, path in sorted(_files(target).items(), reverse=True):
        if rel not in objects:
            path.unlink()
            summary.deleted += 1
    for dirpath, dirs, names in os.walk(target, topdown=False):
        if dirpath != str(target) and not dirs and not names:
            os.rmdir(dirpath)
    return summary
