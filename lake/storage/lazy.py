"""Pixel shards of a staged lake, fetched from the object store when a command first reads them.

:mod:`lake.storage.staging` stages a lake's tables and every array's metadata (``zarr.json``, the
``fixity.json`` sidecar) but not its shard files (``pixels/<series>/<group>/c/...``: over 95% of a
lake's bytes). An ingest, ``forget`` or ``vacuum`` reads few of them: a re-read of instances stored
unread (:mod:`lake.review.reread`), the compaction of an array a correction or a ``forget`` emptied
in part (:func:`lake.maintenance.forget._compact`), an append to an array of a lake written before
2026-12-02. Each of those goes through :class:`lake.pixels.store.PixelStore`, which calls
:func:`fetch_array` on the array's folder first: when that folder is in a staged lake, the array's
shards still in the store are downloaded whole (with the object's modification time, so publishing
finds them unchanged). A shard that was never fetched is not published; it is deleted from the store
only with its array (the array's ``zarr.json`` gone from the staged folder).

The registry is per process: a staged command's worker processes write new arrays only
(:meth:`~lake.pixels.store.PixelStore.write_new`), which never read another array's shards.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lake.storage.base import ObjectInfo, Storage

#: ``pixels/<series>/<group>/c/...``: a shard (or chunk) file of an array
_ARRAY_PARTS = 3


def shard_array(rel: str) -> str | None:
    """The array folder (``pixels/<series>/<group>``) of a shard file's lake path, else ``None``."""
    parts = rel.split("/")
    if len(parts) > _ARRAY_PARTS + 1 and parts[0] == "pixels" and parts[_ARRAY_PARTS] == "c":
        return "/".join(parts[:_ARRAY_PARTS])
    return None


@dataclass
class StagingCounts:
    """What a staged write copied from the store (counts and bytes, never names)."""

    staged_files: int = 0
    staged_bytes: int = 0
    shards_left: int = 0  # shard files left in the store when staging
    shard_bytes_left: int = 0
    fetched_shards: int = 0  # of those, fetched because the command read their array
    fetched_bytes: int = 0


class LazyShards:
    """The shards of a staged folder still in the store, by array folder."""

    def __init__(self, storage: Storage, folder: Path, left: dict[str, list[ObjectInfo]], counts: StagingCounts):
        self.storage, self.folder, self.counts = storage, folder, counts
        self._left = left
        self._lock = threading.Lock()

    def unstaged(self) -> set[str]:
        """Lake paths of the shards not fetched (yet)."""
        with self._lock:
            return {info.path for infos in self._left.values() for info in infos}

    def fetch(self, array: str) -> None:
        """Download the shards of ``array`` (``pixels/<series>/<group>``) that are still in the store."""
        with self._lock:
            for info in self._left.pop(array, []):
                target = self.folder / info.path
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(target.name + ".lake-fetch-tmp")
                tmp.write_bytes(self.storage.read(info.path))
                stamp = int(info.modified.timestamp() * 1e9)
                os.utime(tmp, ns=(stamp, stamp))
                os.replace(tmp, target)
                self.counts.fetched_shards += 1
                self.counts.fetched_bytes += info.size


_STAGED: dict[Path, LazyShards] = {}


@contextmanager
def registered(lazy: LazyShards) -> Iterator[LazyShards]:
    """Make :func:`fetch_array` serve ``lazy.folder`` while the block runs."""
    root = lazy.folder.resolve()
    _STAGED[root] = lazy
    try:
        yield lazy
    finally:
        _STAGED.pop(root, None)


def fetch_array(array_dir: Path) -> None:
    """Bring the shards of the array at ``array_dir`` into a staged folder before it is read (nothing
    to do outside a staged write, or for an array whose shards are all here)."""
    if not _STAGED:
        return
    path = Path(array_dir).resolve()
    for root, lazy in _STAGED.items():
        if path.is_relative_to(root):
            lazy.fetch(path.relative_to(root).as_posix())
            return
