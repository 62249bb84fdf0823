"""The pixel store: Zarr v3 arrays of frames, sharded, losslessly compressed.

Layout: ``pixels/<SeriesInstanceUID>/<group>`` where ``group`` is ``<rows>x<cols>x<samples>-<dtype>``
for the single-frame instances of a series that share a geometry (they append to one array), or
the SOP Instance UID for a multi-frame instance (one array of its own). Arrays are
``(frames, rows, cols[, samples])`` with one frame per chunk (a tile of 1024 x 1024 for frames over 2048
rows or columns) and ``shard_frames`` frames per shard
file, so a 300-slice series is a handful of files. The instances table records, per instance,
the array and its first frame; an array may be longer than its committed frames after a crash
(those frames are invisible and are overwritten by the next run).

The codec of each array is chosen when it is created (``auto``: measured on its first frames by
:func:`lake.pixels.codecs.measure_codecs`) and recorded in its attributes (``lake.codec``, with
``lake.codec_measured_bytes``). Every chunk an image codec encodes is decoded and compared first;
on a mismatch the array is rewritten with the generic codec and the event is recorded in
``lake.codec_fallback``. Each write is read back and compared, then the touched shard files are
hashed into the array's ``fixity.json`` (:mod:`lake.pixels.fixity`). Reads go through
:mod:`lake.pixels.fastread`, which decodes on every core.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from lake.crashpoints import crash_point
from lake.errors import CodecMismatchError, IntegrityError, NotInLakeError
from lake.pixels import fastread
from lake.pixels.codecs import GENERIC, PixelCodec, choose_codec, measure_codecs, zarr_codecs
from lake.pixels.fixity import record_checksums

log = logging.getLogger("lake.pixels")

CODECS = tuple(c.value for c in PixelCodec)


def array_key(series_uid: str, sop_uid: str, frames: np.ndarray) -> str:
    """Where an instance's frames go (see module docstring)."""
    if frames.shape[0] > 1:
        return f"{series_uid}/{sop_uid}"
    rows, cols = frames.shape[1], frames.shape[2]
    samples = frames.shape[3] if frames.ndim == 4 else 1
    return f"{series_uid}/{rows}x{cols}x{samples}-{frames.dtype.name}"


#: Frames with more rows or columns than this are stored in tiles of ``TILE`` x ``TILE`` (full
#: mammograms, large radiographs): tiles decode on every core, and a region reads only its tiles.
TILE_ABOVE = 2048
TILE = 1024
#: A shard holds up to ``shard_frames`` frames but no more than about this many raw bytes.
SHARD_RAW_BYTES = 512 * 1024 * 1024


def chunk_layout(
    frame_shape: tuple[int, ...], itemsize: int, shard_frames: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(chunk shape, shard shape) for frames of ``frame_shape``: one frame per chunk, or tiles."""
    rows, cols, *samples = frame_shape
    frame_bytes = rows * cols * itemsize * (samples[0] if samples else 1)
    frames = max(1, min(shard_frames, SHARD_RAW_BYTES // max(frame_bytes, 1)))
    if rows <= TILE_ABOVE and cols <= TILE_ABOVE:
        return (1, *frame_shape), (frames, *frame_shape)
    # a shard must be a whole number of chunks: round the frame up to whole tiles
    tiled = (-(-rows // TILE) * TILE, -(-cols // TILE) * TILE, *samples)
    return (1, TILE, TILE, *samples), (frames, *tiled)


class PixelStore:
    """Reads and writes frame arrays under one lake's ``pixels/`` folder."""

    def __init__(self, root: Path, shard_frames: int = 64, codec: str = PixelCodec.AUTO.value) -> None:
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

    def attributes(self, key: str) -> dict[str, Any]:
        """The ``lake`` attributes of an array (interpretation of the values, codec, fallbacks)."""
        attrs = self.metadata(key).get("attributes", {}).get("lake", {})
        return dict(attrs) if isinstance(attrs, dict) else {}

    def metadata(self, key: str) -> dict[str, Any]:
        """The array's ``zarr.json`` (shape, data_type, codecs, attributes)."""
        if not self.exists(key):
            raise NotInLakeError(f"no pixel array {key!r} in this lake")
        return fastread.metadata(self._path(key))

    def _create(self, path: Path, shape: tuple[int, ...], dtype: np.dtype[Any], codec: str, attributes: dict[str, Any]):
        serializer, compressors = zarr_codecs(codec, dtype)
        chunk, shard = chunk_layout(shape[1:], dtype.itemsize, self.shard_frames)
        return zarr.create_array(
            store=str(path),
            shape=shape,
            chunks=chunk,
            shards=shard,
            dtype=dtype,
            serializer=serializer if serializer is not None else "auto",
            compressors=compressors,
            fill_value=0,
            attributes={"lake": {**attributes, "codec": codec}},
            dimension_names=("frame", "row", "column", "sample")[: len(shape)],
        )

    def write(
        self, key: str, start: int, frames: np.ndarray, attributes: dict[str, Any], run: str | None = None
    ) -> None:
        """Write ``frames`` at ``start`` (creating or growing the array), verify, record checksums.

        Values are stored in native byte order (a big-endian source's ``>u4`` becomes ``uint32``):
        the codecs and readers work on native arrays, and the values are the same."""
        if not frames.dtype.isnative:
            frames = frames.astype(frames.dtype.newbyteorder("="))
        frame_shape = frames.shape[1:]
        path = self._path(key)
        needed = start + frames.shape[0]
        if self.exists(key):
            arr = zarr.open_array(store=str(path), mode="r+")
            if arr.shape[1:] != frame_shape or arr.dtype != frames.dtype:
                raise IntegrityError(
                    f"pixel array {key} holds {arr.shape[1:]} {arr.dtype}, not {frame_shape} {frames.dtype}"
                )
            if arr.shape[0] < needed:
                arr.resize((needed, *frame_shape))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            samples = frames.shape[3] if frames.ndim == 4 else 1
            codec = choose_codec(self.codec, frames.dtype, samples)
            if self.codec == PixelCodec.AUTO.value:
                codec, sizes = measure_codecs(frames)
                attributes = {**attributes, "codec_measured_bytes": sizes}
            arr = self._create(path, (needed, *frame_shape), frames.dtype, codec, attributes)
        try:
            arr[start:needed] = frames
        except CodecMismatchError:
            arr = self._fall_back(key, arr, start, frames, run)
        back = self.read_frames(key, range(start, needed))  # the reader every later read uses
        if not np.array_equal(back, frames):
            raise IntegrityError(f"pixel array {key}: frames {start}.. did not read back as written")
        per_shard = int((arr.shards or arr.chunks)[0])  # chunk_layout caps it for large frames
        first, last = start // per_shard, (needed - 1) // per_shard
        shards = [p for i in range(first, last + 1) for p in self._shard_files(path, i)]
        crash_point("pixels.before_checksums")
        record_checksums(path, [path / "zarr.json", *shards], run)

    def _shard_files(self, path: Path, index: int) -> list[Path]:
        folder = path / "c" / str(index)
        return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []

    def _fall_back(self, key: str, arr: zarr.Array, start: int, frames: np.ndarray, run: str | None) -> zarr.Array:
        """Rewrite the whole array with the generic codec after an image codec mismatch.

        Shards are written whole, so each one on disk is either the old verified content or the
        new verified content; reading the array back gives every committed frame.
        """
        found = arr.attrs.get("lake", {})
        attrs: dict[str, Any] = dict(found) if isinstance(found, dict) else {}
        failed = str(attrs.get("codec"))
        content = np.asarray(arr[:])
        content[start : start + frames.shape[0]] = frames
        log.warning("pixel codec %s failed its round trip check; array rewritten with %s", failed, GENERIC.value)
        earlier = attrs.pop("codec_fallback", [])
        fallbacks = [
            *(earlier if isinstance(earlier, list) else []),
            {"from": failed, "reason": "round_trip_mismatch", "run": run},
        ]
        attrs.pop("codec", None)
        path = self._path(key)
        tmp = path.with_name(path.name + ".fallback-tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        new = self._create(tmp, content.shape, content.dtype, GENERIC.value, {**attrs, "codec_fallback": fallbacks})
        new[:] = content
        if not np.array_equal(np.asarray(new[:]), content):
            raise IntegrityError(f"pixel array {key}: the fallback copy did not read back as written")
        old = path.with_name(path.name + ".fallback-old")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old)
        (path / "fixity.json").unlink(missing_ok=True)  # every shard is new: recorded again below
        arr = zarr.open_array(store=str(path), mode="r+")
        record_checksums(path, [p for p in (path / "c").rglob("*") if p.is_file()], run)
        return arr

    def read(self, key: str, start: int, count: int) -> np.ndarray:
        """Frames ``start .. start+count-1``, decoded on every core."""
        shape = self.metadata(key)["shape"]
        if start < 0 or count < 1 or start + count > shape[0]:
            raise NotInLakeError(f"pixel array {key!r} has no frames {start}..{start + count - 1}")
        return self.read_frames(key, range(start, start + count))

    def read_frames(self, key: str, frames: Sequence[int]) -> np.ndarray:
        """The given frames (indices into the array), in that order, decoded on every core."""
        shape = self.metadata(key)["shape"]
        if any(not 0 <= i < shape[0] for i in frames):
            raise NotInLakeError(f"pixel array {key!r} has frames 0..{shape[0] - 1} only")
        lay = fastread.layout(self._path(key))
        if lay is not None:
            return fastread.read(self._path(key), lay, frames)
        return np.asarray(self.open(key).get_orthogonal_selection(np.asarray(frames, dtype=np.int64)))

    def keys(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for meta in sorted(self.root.glob("*/*/zarr.json")):
            yield meta.parent.relative_to(self.root).as_posix()
