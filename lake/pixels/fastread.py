"""Reading frames straight from the shard files the store writes, decoded on every core.

zarr-python's generic sharding path costs more per chunk than decoding a 256x256 frame, so frame
reads go through this reader when an array has the store's own layout (a shard of whole frames,
index at the end checked by its CRC32C, one codec we know). It reads only the chunks asked for
and decodes them in a thread pool (the codecs release the GIL). Any other layout returns None and
the caller uses zarr. Tests check both paths give identical values.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_crc32c
import numcodecs
import numpy as np

from lake.errors import IntegrityError
from lake.pixels.codecs import IMAGE_CODEC_CLASSES

_MISSING = 2**64 - 1
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _forget_pool_in_child() -> None:
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()  # the parent's threads do not exist after a fork


os.register_at_fork(after_in_child=_forget_pool_in_child)


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="lake-pixels")
        return _pool


@dataclass(frozen=True)
class Layout:
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    shard_frames: int
    decode_into: Callable[[bytes, np.ndarray], None]  # one chunk's bytes -> into a chunk-shaped array
    fill_value: int | float
    tile: tuple[int, int]  # chunk rows and columns: the whole frame, or a tile of a large frame
    shard_tiles: tuple[int, int]  # chunks along rows and columns in one shard (>= tiles)

    @property
    def tiles(self) -> tuple[int, int]:
        """Tiles per frame along rows and columns (1, 1 for frame chunks)."""
        return -(-self.shape[1] // self.tile[0]), -(-self.shape[2] // self.tile[1])

    def shard_path(self, root: Path, shard: int) -> Path:
        return root.joinpath("c", str(shard), *(["0"] * (len(self.shape) - 1)))


def _decoder(codecs: list[dict[str, Any]], dtype: np.dtype[Any]) -> Callable[[bytes, np.ndarray], None] | None:
    """A function decoding one chunk into a chunk-shaped array (the output frame itself when a chunk is a frame)."""
    names = [c.get("name") for c in codecs]
    image = {cls.codec_name: cls for cls in IMAGE_CODEC_CLASSES.values()}
    if len(codecs) == 1 and names[0] in image:
        return image[str(names[0])].from_dict(codecs[0]).decode_into
    if len(codecs) != 2 or names[0] != "bytes":
        return None
    endian = (codecs[0].get("configuration") or {}).get("endian", "little")
    if dtype.itemsize > 1 and endian != "little":
        return None
    if names[1] == "blosc":
        return lambda data, out: numcodecs.blosc.decompress(data, dest=out)
    if names[1] == "zstd":
        zstd = numcodecs.Zstd()
        return lambda data, out: zstd.decode(data, out=out)
    return None


_cache: dict[str, tuple[tuple[int, int], dict[str, Any], Layout | None]] = {}


def _load(root: Path) -> tuple[dict[str, Any], Layout | None]:
    """``zarr.json`` and the layout, cached until the file changes (an array grows by resizing)."""
    stat = (root / "zarr.json").stat()
    version = (stat.st_mtime_ns, stat.st_size)
    hit = _cache.get(str(root))
    # A file changed within the last second may change again with the same mtime (coarse clocks).
    settled = time.time_ns() - stat.st_mtime_ns > 1_000_000_000
    if hit is not None and hit[0] == version and settled:
        return hit[1], hit[2]
    meta = json.loads((root / "zarr.json").read_text(encoding="utf-8"))
    found = _parse(meta)
    _cache[str(root)] = (version, meta, found)
    return meta, found


def metadata(root: Path) -> dict[str, Any]:
    """The array's ``zarr.json`` as a dict."""
    return _load(root)[0]


def layout(root: Path) -> Layout | None:
    """The array's layout if this reader handles it, else None."""
    return _load(root)[1]


def _parse(meta: dict[str, Any]) -> Layout | None:
    shape = tuple(meta["shape"])
    codecs = meta.get("codecs") or []
    encoding = meta.get("chunk_key_encoding", {})
    if len(codecs) != 1 or codecs[0].get("name") != "sharding_indexed":
        return None
    if encoding.get("name") != "default" or (encoding.get("configuration") or {}).get("separator", "/") != "/":
        return None
    config = codecs[0]["configuration"]
    shard_shape = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
    index = [c.get("name") for c in config.get("index_codecs", [])]
    chunk = tuple(config["chunk_shape"])
    if len(shape) < 3 or len(chunk) != len(shape) or len(shard_shape) != len(shape):
        return None
    whole_tiles = all(shard_shape[i] % chunk[i] == 0 and shard_shape[i] >= shape[i] for i in (1, 2))
    if (
        chunk[0] != 1
        or chunk[3:] != shape[3:]
        or shard_shape[3:] != shape[3:]
        or not whole_tiles  # one shard holds whole frames (all their tiles)
        or config.get("index_location", "end") != "end"
        or index != ["bytes", "crc32c"]
    ):
        return None
    try:
        dtype = np.dtype(meta["data_type"])
    except TypeError:
        return None
    decode = _decoder(config["codecs"], dtype)
    if decode is None or dtype.byteorder == ">":
        return None
    tiles = (shard_shape[1] // chunk[1], shard_shape[2] // chunk[2])
    return Layout(shape, dtype, shard_shape[0], decode, meta.get("fill_value", 0) or 0, (chunk[1], chunk[2]), tiles)


def _shard_index(path: Path, chunks: int) -> tuple[np.ndarray, Any] | None:
    """(offsets and lengths, open file) of a shard, or None when the shard file does not exist."""
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed by the caller)
    except FileNotFoundError:
        return None
    size = chunks * 16
    f.seek(-(size + 4), os.SEEK_END)
    raw = f.read(size + 4)
    if int.from_bytes(raw[-4:], "little") != google_crc32c.value(raw[:-4]):
        f.close()
        raise IntegrityError(f"the shard index of {path.name} in {path.parent} fails its checksum")
    return np.frombuffer(raw[:-4], dtype="<u8").reshape(chunks, 2), f


def read(root: Path, lay: Layout, frames: Sequence[int]) -> np.ndarray:
    """The given frames of the array at ``root``, in that order (the caller checks the bounds)."""
    frame_shape = lay.shape[1:]
    rows, cols = frame_shape[0], frame_shape[1]
    (tile_rows, tile_cols), (n_rows, n_cols) = lay.tile, lay.tiles
    # chunks of a shard are indexed in C order: frame, tile row, tile column
    per_frame, stride = lay.shard_tiles[0] * lay.shard_tiles[1], lay.shard_tiles[1]
    out = np.empty((len(frames), *frame_shape), dtype=lay.dtype)
    by_shard: dict[int, list[tuple[int, int]]] = {}
    for n, frame in enumerate(frames):
        by_shard.setdefault(frame // lay.shard_frames, []).append((n, frame))
    jobs: list[tuple[int, int, int, bytes]] = []  # (output frame, tile row, tile column, bytes)
    for shard, wanted in sorted(by_shard.items()):
        opened = _shard_index(lay.shard_path(root, shard), lay.shard_frames * per_frame)
        if opened is None:
            for n, _ in wanted:
                out[n] = lay.fill_value
            continue
        index, f = opened
        with f:
            for n, frame in sorted(wanted, key=lambda w: w[1]):
                for tr in range(n_rows):
                    for tc in range(n_cols):
                        entry = (frame - shard * lay.shard_frames) * per_frame + tr * stride + tc
                        offset, length = (int(v) for v in index[entry])
                        if offset == _MISSING:
                            out[n, tr * tile_rows : (tr + 1) * tile_rows, tc * tile_cols : (tc + 1) * tile_cols] = (
                                lay.fill_value
                            )
                            continue
                        f.seek(offset)
                        jobs.append((n, tr, tc, f.read(length)))

    whole = lay.tile == (rows, cols)

    def decode(job: tuple[int, int, int, bytes]) -> None:
        n, tr, tc, data = job
        if whole:
            lay.decode_into(data, out[n])  # straight into the output
            return
        tile = np.empty((tile_rows, tile_cols, *frame_shape[2:]), dtype=lay.dtype)
        lay.decode_into(data, tile)
        r0, c0 = tr * tile_rows, tc * tile_cols
        r1, c1 = min(r0 + tile_rows, rows), min(c0 + tile_cols, cols)
        out[n, r0:r1, c0:c1] = tile[: r1 - r0, : c1 - c0]

    if len(jobs) == 1:
        decode(jobs[0])
    else:
        for _ in _executor().map(decode, jobs):
            pass
    return out
