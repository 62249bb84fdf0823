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

from lake.config import LakePaths
from lake.maintenance import remote
from lake.maintenance.replicate import MirrorSummary, copy_files
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
    listed = objects
    current: dict[str, Callable[[], bytes]] = {}  # the file being copied: its bytes read once, then dropped

    def reader(rel: str) -> Callable[[], bytes]:
        if rel not in current:
            current.clear()
            current[rel] = _reader(storage, rel)
        return current[rel]

    def write(rel: str, tmp: Path) -> None:
        tmp.write_bytes(reader(rel)())
        stamp = int(listed[rel].modified.timestamp() * 1e9)
        os.utime(tmp, ns=(stamp, stamp))

    target.mkdir(parents=True, exist_ok=True)
    copy_files(
        target,
        {rel: info.size for rel, info in listed.items()},
        lambda rel, dst: _same(listed[rel], dst, checksum, reader(rel)),
        write,
        summary,
        on_file,
    )
    return summary
