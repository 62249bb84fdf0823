"""The pixel store: Zarr v3 arrays of frames, sharded, losslessly compressed.

Layout: ``pixels/<SeriesInstanceUID>/<group>``. An ingest's worker writes each array whole and once
(:meth:`PixelStore.write_new`): one per (series, geometry, unit of work) holding the frames of that
unit's single-frame instances of the series, and one per multi-frame instance; ``group`` is
``<rows>x<cols>x<samples>-<dtype>.<digest>`` where the digest is of the stored frames' SHA-256s and
their instances' source references (:func:`frames_array_key`), so the name follows the pixels: a
re-processed, masked version of an instance never meets its first version's array. Lakes written
before 2026-12-02 also hold arrays that single-frame instances appended to
(``<rows>x<cols>x<samples>-<dtype>``, or the SOP Instance UID of a multi-frame instance,
:meth:`PixelStore.write`); readers follow the instances table's ``pixel_array`` and
``pixel_frame_start`` whatever the layout. Arrays are
``(frames, rows, cols[, samples])`` with one frame per chunk (a tile of 1024 x 1024 for frames over 2048
rows or columns) and ``shard_frames`` frames per shard
file, so a 300-slice series is a handful of files. The instances table records, per instance,
the array and its first frame; an array may hold frames no committed row points to (an instance
of its unit of work that was not stored: they are invisible), and an array no row points to is
removed by the next write (:mod:`lake.maintenance.orphans`).

The codec of each array is chosen when it is created (``auto``: measured on its first frames by
:func:`lake.pixels.codecs.measure_codecs`) and recorded in its attributes (``lake.codec``, with
``lake.codec_measured_bytes``). Every chunk an image codec encodes is decoded and compared first;
on a mismatch the array is rewritten with the generic codec and the event is recorded in
``lake.codec_fallback``. Each write is read back and compared, then the touched shard files are
hashed into the array's ``fixity.json`` (:mod:`lake.pixels.fixity`). Reads go through
:mod:`lake.pixels.fastread`, which decodes on every core.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from lake.crashpoints import crash_point
from lake.errors import CodecMismatchError, IntegrityError, NotInLakeError
from lake.pixels import fastread
from lake.pixels.codecs import GENERIC, PixelCodec, choose_codec, measure_codecs, zarr_codecs
from lake.pixels.fixity import SIDECAR, record_checksums
from lake.storage.lazy import fetch_array

log = logging.getLogger("lake.pixels")

CODECS = tuple(c.value for c in PixelCodec)


def geometry_name(frames: np.ndarray) -> str:
    """``<rows>x<cols>x<samples>-<dtype>`` of frames ``(n, rows, cols[, samples])``."""
    samples = frames.shape[3] if frames.ndim == 4 else 1
    return f"{frames.shape[1]}x{frames.shape[2]}x{samples}-{frames.dtype.name}"


def frames_array_key(series_uid: str, frames: np.ndarray, named_by: Sequence[str]) -> str:
    """The write-once array of ``frames``, named by a digest of ``named_by`` (the instances'
    ``pixel_sha256`` and source references, in order, and the array's attributes): two arrays of
    other content, or of other versions of an instance, never share a name."""
    digest = hashlib.sha256("\n".join(named_by).encode("utf-8")).hexdigest()[:24]
    return f"{series_uid}/{geometry_name(frames)}.{digest}"


#: Folder under ``pixels/`` where :meth:`PixelStore.write_new` builds an array before renaming it
#: into place (one level deeper than arrays, so no reader lists it); a dead writer's folder there is
#: an orphan (:mod:`lake.maintenance.orphans`).
WRITING = ".writing"


def array_key(series_uid: str, sop_uid: str, frames: np.ndarray) -> str:
    """Where an older lake appended an instance's frames (see module docstring)."""
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
        """The zarr array (its shape and attributes; read frames with :meth:`read`, which fetches a
        staged lake's shards first, :mod:`lake.storage.lazy`)."""
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
        path, files = self._write_frames(key, start, frames, attributes, run)
        crash_point("pixels.before_checksums")
        record_checksums(path, files, run)

    def write_new(self, key: str, frames: np.ndarray, attributes: dict[str, Any], run: str | None = None) -> bool:
        """Write the whole new array ``key`` once: built and verified under :data:`WRITING`, renamed
        into place, then checksummed. Returns False if ``key`` exists already: its name follows its
        content (:func:`frames_array_key`), so it holds these frames (a unit of work run twice).

        Several processes (an ingest's workers, Dask workers) may write arrays of one lake at once.
        A crash leaves a folder under :data:`WRITING`, or an array no committed row points to: both
        are removed by the next write under the lock (:mod:`lake.maintenance.orphans`)."""
        final = self._path(key)
        if self.exists(key):
            if not (final / SIDECAR).is_file():  # its writer died between the rename and the record
                fetch_array(final)
                record_checksums(final, _array_files(final), run)
            return False
        staging = self.root / WRITING / f"{os.getpid()}-{uuid.uuid4().hex}"
        built = staging / "array"
        self._write_frames_at(built, key, 0, frames, attributes, run)
        crash_point("pixels.before_checksums")
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(built, final)
        except OSError:
            if not self.exists(key):
                raise
            shutil.rmtree(staging, ignore_errors=True)
            return False  # another writer of the same content was first
        shutil.rmtree(staging, ignore_errors=True)
        (final / SIDECAR).unlink(missing_ok=True)  # a codec fallback recorded the staging paths
        record_checksums(final, _array_files(final), run)
        return True

    def discard_unfinished(self) -> None:
        """Remove what writers left under :data:`WRITING` (under the write lock, no writer running)."""
        shutil.rmtree(self.root / WRITING, ignore_errors=True)

    def discard(self, key: str) -> None:
        """Remove an array no committed row points to (under the write lock)."""
        path = self._path(key)
        shutil.rmtree(path, ignore_errors=True)
        if path.parent.is_dir() and not any(path.parent.iterdir()):
            path.parent.rmdir()

    def _write_frames(
        self, key: str, start: int, frames: np.ndarray, attributes: dict[str, Any], run: str | None
    ) -> tuple[Path, list[Path]]:
        return self._write_frames_at(self._path(key), key, start, frames, attributes, run)

    def _write_frames_at(
        self, path: Path, key: str, start: int, frames: np.ndarray, attributes: dict[str, Any], run: str | None
    ) -> tuple[Path, list[Path]]:
        """Write and verify ``frames`` at ``start`` of the array at ``path``; the files it touched."""
        if not frames.dtype.isnative:
            frames = frames.astype(frames.dtype.newbyteorder("="))
        frame_shape = frames.shape[1:]
        needed = start + frames.shape[0]
        if (path / "zarr.json").is_file():
            fetch_array(path)  # a staged lake's shards (lake.storage.lazy)
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
            arr = self._fall_back(path, key, arr, start, frames, run)
        back = self._read_at(path, key, range(start, needed))  # the reader every later read uses
        if not np.array_equal(back, frames):
            raise IntegrityError(f"pixel array {key}: frames {start}.. did not read back as written")
        per_shard = int((arr.shards or arr.chunks)[0])  # chunk_layout caps it for large frames
        first, last = start // per_shard, (needed - 1) // per_shard
        shards = [p for i in range(first, last + 1) for p in self._shard_files(path, i)]
        return path, [path / "zarr.json", *shards]

    def _shard_files(self, path: Path, index: int) -> list[Path]:
        folder = path / "c" / str(index)
        return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []

    def _fall_back(
        self, path: Path, key: str, arr: zarr.Array, start: int, frames: np.ndarray, run: str | None
    ) -> zarr.Array:
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
        return self._read_at(self._path(key), key, frames)

    def _read_at(self, path: Path, key: str, frames: Sequence[int]) -> np.ndarray:
        fetch_array(path)  # a staged lake's shards (lake.storage.lazy)
        lay = fastread.layout(path)
        if lay is not None:
            return fastread.read(path, lay, frames)
        arr = zarr.open_array(store=str(path), mode="r")
        return np.asarray(arr.get_orthogonal_selection(np.asarray(frames, dtype=np.int64)))

    def keys(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for meta in sorted(self.root.glob("*/*/zarr.json")):
            yield meta.parent.relative_to(self.root).as_posix()


def _array_files(path: Path) -> list[Path]:
    """An array folder's ``zarr.json`` and shard files (what its sidecar records)."""
    return [path / "zarr.json", *sorted(p for p in (path / "c").rglob("*") if p.is_file())]
