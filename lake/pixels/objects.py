"""Reading the pixel arrays of a lake in object storage, through zarr v3's store on the lake's Storage.

A folder lake reads shards with :mod:`lake.pixels.fastread` (seeks in local files, decodes on every
core); in object storage zarr reads the same arrays through :meth:`lake.storage.Storage.zarr_store`
(one ranged GET for a shard's index, one per chunk). Arrays are not written here: a write to an
``s3://`` lake runs on a staged folder and is published (:mod:`lake.storage.staging`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import zarr

from lake.errors import FolderLakeOnlyError, NotInLakeError, StorageNotFoundError
from lake.pixels.codecs import PixelCodec
from lake.pixels.store import PixelStore
from lake.storage import Storage

PIXELS = "pixels"


class ObjectPixelStore(PixelStore):
    """The arrays under ``pixels/`` of a lake in object storage (read-only)."""

    def __init__(self, storage: Storage, shard_frames: int = 64, codec: str = PixelCodec.AUTO.value) -> None:
        self.storage = storage
        self.shard_frames = shard_frames
        self.codec = codec
        self._metadata: dict[str, dict[str, Any]] = {}
        self._arrays: dict[str, zarr.Array] = {}

    def _key(self, key: str, name: str = "") -> str:
        return "/".join(part for part in (PIXELS, key, name) if part)

    def exists(self, key: str) -> bool:
        return key in self._metadata or self.storage.exists(self._key(key, "zarr.json"))

    def metadata(self, key: str, fresh: bool = False) -> dict[str, Any]:
        """The array's ``zarr.json`` (read once per store; ``fresh`` reads it again)."""
        if fresh or key not in self._metadata:
            try:
                self._metadata[key] = json.loads(self.storage.read(self._key(key, "zarr.json")))
            except StorageNotFoundError:
                raise NotInLakeError(f"no pixel array {key!r} in this lake") from None
            self._arrays.pop(key, None)
        return self._metadata[key]

    def open(self, key: str) -> zarr.Array:
        """The array (opened once per store and metadata version: a random frame then costs its chunk's reads)."""
        self.metadata(key)  # NotInLakeError when absent
        arr = self._arrays.get(key)
        if arr is None:
            opened = zarr.open_array(store=self.storage.zarr_store(self._key(key)), mode="r")
            assert isinstance(opened, zarr.Array)
            arr = self._arrays[key] = opened
        return arr

    def read_frames(self, key: str, frames: Sequence[int]) -> np.ndarray:
        shape = self.metadata(key)["shape"]
        if any(not 0 <= i < shape[0] for i in frames):
            shape = self.metadata(key, fresh=True)["shape"]  # the array may have grown since
        if any(not 0 <= i < shape[0] for i in frames):
            raise NotInLakeError(f"pixel array {key!r} has frames 0..{shape[0] - 1} only")
        return np.asarray(self.open(key).get_orthogonal_selection(np.asarray(list(frames), dtype=np.int64)))

    def read(self, key: str, start: int, count: int) -> np.ndarray:
        if start < 0 or count < 1:
            raise NotInLakeError(f"pixel array {key!r} has no frames {start}..{start + count - 1}")
        return self.read_frames(key, range(start, start + count))

    def write(self, *args: Any, **kwargs: Any) -> None:
        raise FolderLakeOnlyError("writing pixel arrays", self.storage.url)

    def keys(self) -> Iterator[str]:
        found = (info.path for info in self.storage.list(PIXELS) if info.path.endswith("/zarr.json"))
        for path in found:
            parts = path.split("/")
            if len(parts) == 4:  # pixels/<series>/<group>/zarr.json
                yield f"{parts[1]}/{parts[2]}"
