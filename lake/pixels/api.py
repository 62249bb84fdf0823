"""What :class:`lake.Lake` offers for pixels: frames, lazy series arrays, volumes, previews."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np

from lake.catalog.query import fetch_rows, snapshot_versions
from lake.errors import GeometryError, NotInLakeError, PixelDataError
from lake.pixels.decode import to_rgb
from lake.pixels.frames import SERIES_FRAMES_SQL, frame_refs
from lake.pixels.render import montage as tile
from lake.pixels.render import png, shrink, to_display
from lake.pixels.store import PixelStore
from lake.pixels.volume import (
    FrameRef,
    Volume,
    plan,
    plan_timepoints,
    split_stacks,
    volume_4d,
    volume_from,
    window_or_default,
)

if TYPE_CHECKING:
    from lake.core import Lake

_COLOUR = frozenset({"RGB", "PALETTE COLOR", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_422", "YBR_PARTIAL_420"})


_SERIES_CACHED = 256


def _versions(lk: Lake) -> dict[str, int | None]:
    """The table versions ``lk`` reads: a snapshot's pinned ones (no look-up: on object storage a look-up
    lists every table's log), else the latest."""
    from lake.catalog.snapshot import Snapshot

    pinned = lk  # a Snapshot reaches here cast as a Lake (lake.catalog.snapshot)
    return dict(pinned.versions) if isinstance(pinned, Snapshot) else snapshot_versions(lk.paths)


class _SeriesFrames:
    """Frame references of recently read series, valid for one set of table versions.

    Reading the same volume again (a training loop, a notebook re-running a cell) then skips the
    query, which costs as much as decoding a small series.
    """

    def __init__(self) -> None:
        self.versions: dict[str, int | None] = {}
        self.by_series: dict[str, list[FrameRef]] = {}

    def get(self, lk: Lake, series_uid: str) -> list[FrameRef]:
        versions = _versions(lk)
        if versions != self.versions or len(self.by_series) >= _SERIES_CACHED:
            self.versions, self.by_series = versions, {}
        refs = self.by_series.get(series_uid)
        if refs is None:
            refs = self.by_series[series_uid] = _query_series_frames(lk, series_uid)
        return list(refs)


_series_frames: weakref.WeakKeyDictionary[Lake, _SeriesFrames] = weakref.WeakKeyDictionary()


def series_frames(lk: Lake, series_uid: str) -> list[FrameRef]:
    """Every stored frame of a series with its geometry; raises :class:`NotInLakeError`."""
    return _series_frames.setdefault(lk, _SeriesFrames()).get(lk, series_uid)


def _query_series_frames(lk: Lake, series_uid: str) -> list[FrameRef]:
    con = lk.connection()
    cursor = con.execute(SERIES_FRAMES_SQL, [series_uid])
    names = [d[0] for d in cursor.description or []]
    rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    if not rows:
        raise NotInLakeError(f"no series {series_uid} with stored pixels in this lake")
    return frame_refs(rows)


def read_frames(store: PixelStore, refs: list[FrameRef]) -> np.ndarray:
    """Stored values of ``refs`` in their order, decoded on every core."""
    keys = list(dict.fromkeys(r.array for r in refs))
    shapes = {tuple(store.metadata(k)["shape"][1:]) for k in keys}
    if len(shapes) > 1:
        raise PixelDataError(f"the frames have different shapes {sorted(shapes)}; read instances one by one")
    if len(keys) == 1:
        return store.read_frames(keys[0], [r.index for r in refs])
    parts = {k: store.read_frames(k, [r.index for r in refs if r.array == k]) for k in keys}
    taken = dict.fromkeys(keys, 0)
    first = parts[keys[0]]
    out = np.empty((len(refs), *first.shape[1:]), dtype=first.dtype)
    for n, ref in enumerate(refs):
        out[n] = parts[ref.array][taken[ref.array]]
        taken[ref.array] += 1
    return out


def slice_order(refs: list[FrameRef]) -> list[FrameRef]:
    """Frames along the slice normal, stack after stack (e.g. the time points of an fMRI run);
    by (InstanceNumber, frame) when frames have no positions."""
    if any(r.position is None or r.orientation is None for r in refs):
        return sorted(refs, key=lambda r: r.order)
    return [f for stack in split_stacks(refs)[1] for f in stack]


class _FrameSource:
    """Array-like over one stored array for dask: slices of frames through the store's fast reader."""

    def __init__(self, store: PixelStore, key: str) -> None:
        meta = store.metadata(key)
        self.store, self.key = store, key
        self.shape = tuple(int(n) for n in meta["shape"])
        self.dtype = np.dtype(meta["data_type"])
        self.ndim = len(self.shape)

    def __getitem__(self, selection: Any) -> np.ndarray:
        selection = selection if isinstance(selection, tuple) else (selection,)
        first = selection[0]
        frames = range(*first.indices(self.shape[0])) if isinstance(first, slice) else [int(first)]
        if len(frames) == 0:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)[(slice(None), *selection[1:])]
        values = self.store.read_frames(self.key, list(frames))
        return values[(slice(None), *selection[1:])] if isinstance(first, slice) else values[(0, *selection[1:])]


def series_array(lk: Lake, series_uid: str) -> da.Array:
    """A lazy dask array ``(frames, rows, cols[, samples])`` of stored values in slice order
    (see :func:`slice_order`), one chunk per frame."""
    refs = slice_order(series_frames(lk, series_uid))
    parts: dict[str, da.Array] = {}
    for key in dict.fromkeys(r.array for r in refs):
        source = _FrameSource(lk.pixel_store, key)
        name = f"lake-pixels-{key}-{source.shape[0]}"
        parts[key] = da.from_array(source, chunks=(1, *source.shape[1:]), asarray=False, fancy=False, name=name)
    shapes = {p.shape[1:] for p in parts.values()}
    if len(shapes) > 1:
        raise PixelDataError(f"the series' frames have different shapes {sorted(shapes)}; read instances one by one")
    keys = list(parts)
    offsets = np.cumsum([0] + [parts[k].shape[0] for k in keys])
    base = {k: int(offsets[i]) for i, k in enumerate(keys)}
    joined = da.concatenate([parts[k] for k in keys], axis=0) if len(keys) > 1 else parts[keys[0]]
    return joined[np.asarray([base[r.array] + r.index for r in refs])]


def volume(
    lk: Lake, series_uid: str, stack: int | None = None, strict: bool = False, timepoints: bool = False
) -> Volume:
    """The series as a :class:`Volume` (see :mod:`lake.pixels.volume`; ``timepoints``: its stacks
    as the time points of a 4-D volume; Siemens mosaics split into slices); raises :class:`GeometryError`."""
    from lake.pixels.mosaic import mosaic_info, read_tiles, tiles

    def read(refs: list[FrameRef]) -> np.ndarray:
        return read_frames(lk.pixel_store, refs)

    refs = series_frames(lk, series_uid)
    info = mosaic_info(lk, series_uid, read)
    if info is not None:
        refs = tiles(refs, info)
    if timepoints:
        layouts = plan_timepoints(refs)
        array = read_tiles(read, [f for lay in layouts for f in lay.frames])
    else:
        layouts = [plan(refs, stack=stack)]
        array = read_tiles(read, layouts[0].frames)
    if array.ndim != 3:
        raise GeometryError("a volume needs grey frames; read colour series with series_array(...)")
    return volume_4d(layouts, array, strict=strict) if timepoints else volume_from(layouts[0], array, strict=strict)


_LOCATIONS_SQL = (
    "SELECT SOPInstanceUID, pixel_array, pixel_frame_start, frame_count FROM instances "
    "WHERE pixel_array IS NOT NULL AND SeriesInstanceUID = "
    "(SELECT SeriesInstanceUID FROM instances WHERE SOPInstanceUID = ? LIMIT 1)"
)


class _Locations:
    """Where each instance's frames are, fetched a series at a time.

    Random frames of the same series (a training loop's pattern) then cost one dict lookup instead
    of one query each. Valid for one set of table versions; cleared when any table changes.
    """

    def __init__(self) -> None:
        self.versions: dict[str, int | None] = {}
        self.by_sop: dict[str, tuple[str, int, int]] = {}
        self.series_loaded = 0

    def get(self, lk: Lake, sop_instance_uid: str) -> tuple[str, int, int]:
        versions = _versions(lk)
        if versions != self.versions or self.series_loaded >= _SERIES_CACHED:
            self.versions, self.by_sop, self.series_loaded = versions, {}, 0
        found = self.by_sop.get(sop_instance_uid)
        if found is None:
            for sop, array, start, count in fetch_rows(lk.connection(), _LOCATIONS_SQL, [sop_instance_uid]):
                self.by_sop[str(sop)] = (str(array), int(start), int(count))
            self.series_loaded += 1
            found = self.by_sop.get(sop_instance_uid)
        if found is None:
            array, start, count, _ = lk._pixel_location(sop_instance_uid)  # raises with the reason
            found = (array, start, count)
        return found


_locations: weakref.WeakKeyDictionary[Lake, _Locations] = weakref.WeakKeyDictionary()


def instance_pixels(lk: Lake, sop_instance_uid: str, frame: int | None, rgb: bool) -> np.ndarray:
    """Stored values of an instance (``rgb``: converted with the array's photometric attributes)."""
    array, start, count = _locations.setdefault(lk, _Locations()).get(lk, sop_instance_uid)
    if frame is not None and not 0 <= frame < count:
        raise NotInLakeError(f"instance {sop_instance_uid} has frames 0..{count - 1}, not {frame}")
    store = lk.pixel_store
    values = store.read(array, start, count) if frame is None else store.read(array, start + frame, 1)[0]
    return to_rgb(values, lk.pixel_store.attributes(array)) if rgb else values


def _display_frames(lk: Lake, uid: str, count: int) -> list[np.ndarray]:
    """Up to ``count`` evenly spaced display frames (uint8) of a series or an instance."""
    rows = fetch_rows(lk.connection(), "SELECT pixel_array FROM instances WHERE SOPInstanceUID = ? LIMIT 1", [uid])
    is_instance = bool(rows) and rows[0][0] is not None
    refs = frame_refs_for_instance(lk, uid) if is_instance else slice_order(series_frames(lk, uid))
    picks = np.unique(np.linspace(0, len(refs) - 1, min(count, len(refs))).round().astype(int))
    if count == 1:
        picks = np.asarray([len(refs) // 2])
    chosen = [refs[int(i)] for i in picks]
    values = read_frames(lk.pixel_store, chosen)
    attrs = lk.pixel_store.attributes(chosen[0].array)
    photometric = str(attrs.get("StoredPhotometricInterpretation") or attrs.get("PhotometricInterpretation") or "")
    if photometric in _COLOUR:
        return [to_display(to_rgb(frame, attrs)) for frame in values]
    modality = [
        f.astype(np.float32) * np.float32(r.slope) + np.float32(r.intercept)
        for r, f in zip(chosen, values, strict=True)
    ]
    # Without a stored window, one window from all shown frames keeps them comparable.
    shared = window_or_default(np.stack(modality), None, None, None)
    invert = photometric == "MONOCHROME1"
    return [to_display(m, r.window or shared, invert=invert) for r, m in zip(chosen, modality, strict=True)]


def frame_refs_for_instance(lk: Lake, sop_instance_uid: str) -> list[FrameRef]:
    cursor = lk.connection().execute(
        SERIES_FRAMES_SQL.replace("SeriesInstanceUID = ?", "SOPInstanceUID = ?"), [sop_instance_uid]
    )
    names = [d[0] for d in cursor.description or []]
    rows: list[dict[str, Any]] = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    if not rows:
        raise NotInLakeError(f"instance {sop_instance_uid} has no stored pixels in this lake")
    return frame_refs(rows)


def thumbnail(lk: Lake, uid: str, max_size: int = 256) -> bytes:
    """PNG bytes: the windowed middle slice of a series, or the middle frame of an instance."""
    return png(shrink(_display_frames(lk, uid, 1)[0], max_size))


def montage(lk: Lake, uid: str, count: int = 16, max_size: int = 128, columns: int | None = None) -> np.ndarray:
    """A uint8 grid of ``count`` evenly spaced windowed slices (encode with ``lake.pixels.render.png``)."""
    return tile([shrink(f, max_size) for f in _display_frames(lk, uid, count)], columns=columns)
