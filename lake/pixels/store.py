"""The pixel store: Zarr v3 arrays of frames, sharded, losslessly compressed.

Layout: ``pixels/<SeriesInstanceUID>/<group>`` where ``group`` is ``<rows>x<cols>x<samples>-<dtype>``
for the single-frame instances of a series that share a geometry (they append to one array), or
the SOP Instance UID for a multi-frame instance (one array of its own). Arrays are
``(frames, rows, cols[, samples])`` with one frame per chunk and ``shard_frames`` frames per shard
file, so a 300-slice series is a handful of files. The instances table records, per instance,
the array and its first frame; an array may be longer than its committed frames after a crash
(those frames are invisible and are overwritten by the next run).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle

from lake.errors import IntegrityError, NotInLakeError

CODECS = ("blosc-zstd-bitshuffle", "blosc-zstd-shuffle")


def array_key(series_uid: str, sop_uid: str, frames: np.ndarray) -> str:
    """Where an instance's frames go (see module docstring)."""
    if frames.shape[0] > 1:
        return f"{series_uid}/{sop_uid}"
    rows, cols = frames.shape[1], frames.shape[2]
    samples = frames.shape[3] if frames.ndim == 4 else 1
    return f"{series_uid}/{rows}x{cols}x{samples}-{frames.dtype.name}"


def _compressor(codec: str, dtype: np.dtype[Any]) -> BloscCodec:
    if codec not in CODECS:
        raise ValueError(f"unknown pixel codec {codec!r}; choose one of {', '.join(CODECS)}")
    shuffle = BloscShuffle.bitshuffle if codec.endswith("bitshuffle") else BloscShuffle.shuffle
    return BloscCodec(cname="zstd", clevel=5, shuffle=shuffle, typesize=dtype.itemsize)


class PixelStore:
    """Reads and writes frame arrays under one lake's ``pixels/`` folder."""

    def __init__(self, root: Path, shard_frames: int = 64, codec: str = CODECS[0]) -> None:
        self.root = Path(root)
        self.shard_frames = shard_frames
        self.codec = codec

    def _path(self, key: str) -> Path:
        return self.root / key

    def exists(self, key: str) -> bool:
        return (self._path(key) / "zarr.json").is_file()

    def open(self, key: str) -> zarr.Array:
        if not self.exists(key):
            raise NotInLakeError(f"no pixel array {key!r} in this lake")
        arr = zarr.open_array(store=str(self._path(key)), mode="r")
        assert isinstance(arr, zarr.Array)
        return arr

    def write(self, key: str, start: int, frames: np.ndarray, attributes: dict[str, Any]) -> None:
        """Write ``frames`` at ``start`` (creating or growing the array) and verify the round trip."""
        frame_shape = frames.shape[1:]
        if self.exists(key):
            arr = zarr.open_array(store=str(self._path(key)), mode="r+")
            if arr.shape[1:] != frame_shape or arr.dtype != frames.dtype:
                raise IntegrityError(
                    f"pixel array {key} holds {arr.shape[1:]} {arr.dtype}, not {frame_shape} {frames.dtype}"
                )
            needed = start + frames.shape[0]
            if arr.shape[0] < needed:
                arr.resize((needed, *frame_shape))
        else:
            self._path(key).parent.mkdir(parents=True, exist_ok=True)
            arr = zarr.create_array(
                store=str(self._path(key)),
                shape=(start + frames.shape[0], *frame_shape),
                chunks=(1, *frame_shape),
                shards=(self.shard_frames, *frame_shape),
                dtype=frames.dtype,
                compressors=[_compressor(self.codec, frames.dtype)],
                fill_value=0,
                attributes={"lake": attributes},
                dimension_names=("frame", "row", "column", "sample")[: frames.ndim],
            )
        arr[start : start + frames.shape[0]] = frames
        back = arr[start : start + frames.shape[0]]
        if not np.array_equal(back, frames):
            raise IntegrityError(f"pixel array {key}: frames {start}.. did not read back as written")

    def read(self, key: str, start: int, count: int) -> np.ndarray:
        arr = self.open(key)
        if start + count > arr.shape[0]:
            raise NotInLakeError(f"pixel array {key!r} has no frames {start}..{start + count - 1}")
        out = arr[start : start + count]
        return np.asarray(out)

    def keys(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for meta in sorted(self.root.glob("*/*/zarr.json")):
            yield meta.parent.relative_to(self.root).as_posix()
