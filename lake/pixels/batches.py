"""Training data from a cohort: series as fixed-shape arrays with labels, memory bounded.

A polars frame names the series (``SeriesInstanceUID``) and carries the label columns, e.g. from
``lk.sql("SELECT SeriesInstanceUID, PatientAge, label FROM series JOIN ...")``:

- :func:`iter_series` yields ``(array, labels)`` per series, the array ``float32`` modality values
  (HU for CT; or windowed to [0, 1]) fitted to ``shape`` (:class:`Fit`);
- :func:`iter_slice_batches` yields ``(batch, labels)`` of ``batch_size`` slices ``(B, y, x)``,
  labels as one numpy array per column;
- :func:`series_stack` is a lazy dask array ``(series, z, y, x)``, one chunk per series.

Memory: the generators hold at most ``max_in_memory`` series: the one handed out plus
``max_in_memory - 1`` read ahead on one background thread while the caller works (decoding itself
uses every core, :meth:`PixelStore.read_frames`). A ``for`` loop's variable keeps the previous
series alive until the next one is handed out, so a loop that does not ``del`` it peaks at one more.
Queries run on the calling thread (the lake's DuckDB connection is not shared between threads);
only pixel reads, the modality LUT and the fit run ahead.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from lake.errors import ColumnError, GeometryError, GeometryWarning
from lake.pixels.volume import Layout, apply_window, plan

if TYPE_CHECKING:
    import dask.array as da
    import polars as pl

    from lake.core import Lake
    from lake.pixels.store import PixelStore

P = TypeVar("P")
R = TypeVar("R")

Shape = tuple[int | None, ...]


class Fit(StrEnum):
    """How an array is brought to the requested shape (an axis given as ``None`` is kept)."""

    RESIZE = "resize"  # linear interpolation on pixel centres (aspect ratio not kept, no anti-aliasing)
    CROP = "crop"  # centred crop, padded with the array's minimum where it is smaller


def resize(array: np.ndarray, shape: Shape) -> np.ndarray:
    """Linear interpolation to ``shape`` (float32), axis by axis, on pixel centres.

    Output sample ``i`` of an axis of ``n`` values resized to ``m`` is taken at input position
    ``(i + 0.5) * n / m - 0.5`` (clipped to the ends), the convention of scikit-image and of
    PyTorch's ``align_corners=False``. Downsampling by large factors aliases: crop first.
    """
    out = np.asarray(array, dtype=np.float32)
    for axis, size in enumerate(shape):
        n = out.shape[axis]
        if size is None or size == n:
            continue
        where = np.clip((np.arange(size) + 0.5) * (n / size) - 0.5, 0.0, n - 1)
        low = np.floor(where).astype(np.intp)
        high = np.minimum(low + 1, n - 1)
        weight = (where - low).astype(np.float32).reshape([-1 if a == axis else 1 for a in range(out.ndim)])
        out = np.take(out, low, axis=axis) * (1 - weight) + np.take(out, high, axis=axis) * weight
    return out


def crop(array: np.ndarray, shape: Shape) -> np.ndarray:
    """Centred crop to ``shape`` (float32), padded with the array's minimum where it is smaller."""
    out = np.asarray(array, dtype=np.float32)
    fill = float(out.min()) if out.size else 0.0
    for axis, size in enumerate(shape):
        n = out.shape[axis]
        if size is None or size == n:
            continue
        if size < n:
            start = (n - size) // 2
            out = np.take(out, np.arange(start, start + size), axis=axis)
        else:
            before = (size - n) // 2
            pad = [(before, size - n - before) if a == axis else (0, 0) for a in range(out.ndim)]
            out = np.pad(out, pad, constant_values=fill)
    return out


def fit_to(array: np.ndarray, shape: Shape | None, fit: str | Fit = Fit.RESIZE) -> np.ndarray:
    """``array`` as float32 in ``shape`` (``None``: unchanged); raises ``ValueError`` for a bad shape."""
    if shape is None:
        return np.asarray(array, dtype=np.float32)
    if len(shape) != array.ndim or any(s is not None and s < 1 for s in shape):
        raise ValueError(f"shape {shape} does not fit an array of {array.ndim} axes (one positive size or None each)")
    return resize(array, shape) if Fit(fit) is Fit.RESIZE else crop(array, shape)


@dataclass(frozen=True)
class _Planned:
    """A series whose slice order and value transform are known (queried on the calling thread)."""

    row: dict[str, Any]
    layout: Layout


def _plan_series(lk: Lake, series_uid: str) -> Layout:
    from lake.pixels.api import series_frames

    layout = plan(series_frames(lk, series_uid))
    if layout.findings:  # warned here, on the caller's thread, as Lake.volume does
        text = "; ".join(map(str, layout.findings))
        warnings.warn(f"volume built from a series with irregular geometry: {text}", GeometryWarning, stacklevel=4)
    return layout


def _values(
    store: PixelStore, layout: Layout, shape: Shape | None, fit: str | Fit, window: tuple[float, float] | None
) -> np.ndarray:
    """The series' modality values (or windowed values) fitted to ``shape``: float32 ``(z, y, x)``."""
    from lake.pixels.api import read_frames

    raw = read_frames(store, layout.frames)
    if raw.ndim != 3:
        raise GeometryError("training arrays need grey frames; read colour series with lk.series_array(...)")
    values = raw.astype(np.float32)
    del raw
    slopes = np.asarray([f.slope for f in layout.frames], dtype=np.float32)
    intercepts = np.asarray([f.intercept for f in layout.frames], dtype=np.float32)
    if np.any(slopes != 1):
        values *= slopes[:, None, None]
    if np.any(intercepts != 0):
        values += intercepts[:, None, None]
    if window is not None:
        values = apply_window(values, *window)
    return fit_to(values, shape, fit)


def bounded(
    items: Iterable[P], prepare: Callable[[P], R], load: Callable[[R], Any], max_in_memory: int
) -> Iterator[tuple[P, Any]]:
    """``(item, load(prepare(item)))`` in order, at most ``max_in_memory`` loaded results held.

    ``prepare`` runs on the calling thread; with ``max_in_memory`` > 1, ``load`` runs on one
    background thread for up to ``max_in_memory - 1`` items ahead of the one handed out.
    """
    if max_in_memory < 1:
        raise ValueError(f"max_in_memory must be at least 1, not {max_in_memory}")
    if max_in_memory == 1:
        for item in items:
            yield item, load(prepare(item))
        return
    source = iter(items)
    pending: deque[tuple[P, Future[Any]]] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lake-batches") as pool:
        try:
            for item in source:
                pending.append((item, pool.submit(load, prepare(item))))
                if len(pending) == max_in_memory - 1:
                    break
            while pending:
                item, future = pending.popleft()
                result = future.result()
                del future  # the future holds the result too
                for nxt in source:  # one more read ahead while the caller works on this one
                    pending.append((nxt, pool.submit(load, prepare(nxt))))
                    break
                yield item, result
                del result
        finally:
            for _, future in pending:
                future.cancel()
            pending.clear()


def _rows(frame: pl.DataFrame, series_column: str, labels: Sequence[str], what: str) -> list[dict[str, Any]]:
    missing = [c for c in (series_column, *labels) if c not in frame.columns]
    if missing:
        raise ColumnError(
            f"{what} needs the column(s) {', '.join(missing)}; the frame has {', '.join(frame.columns) or 'none'}"
        )
    nulls = frame[series_column].null_count()
    if nulls:
        raise ColumnError(f"{what}: {nulls} of {frame.height} rows have no {series_column}; filter them first")
    return frame.select(series_column, *[c for c in labels if c != series_column]).to_dicts()


def iter_series(
    lk: Lake,
    frame: pl.DataFrame,
    labels: Sequence[str] = (),
    *,
    shape: tuple[int | None, int | None, int | None] | None = None,
    fit: str | Fit = Fit.RESIZE,
    window: tuple[float, float] | None = None,
    series_column: str = "SeriesInstanceUID",
    max_in_memory: int = 2,
) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """``(array, labels)`` for each row of ``frame``, in its order.

    ``array`` is float32 ``(z, y, x)`` in slice order (along the normal, as :meth:`Lake.volume`):
    modality values (HU for CT), or ``window`` = (center, width) applied to [0, 1], fitted to
    ``shape`` (``None`` keeps an axis). ``labels`` maps the series column and each of ``labels``
    to the row's values. At most ``max_in_memory`` series are held (see the module docstring).
    Raises :class:`ColumnError` for missing columns or null UIDs, :class:`NotInLakeError` for a
    series without stored pixels, :class:`GeometryError` for one that is not a single grey stack.
    """
    rows = _rows(frame, series_column, labels, "iter_series()")
    store = lk.pixel_store

    def prepare(row: dict[str, Any]) -> Layout:
        return _plan_series(lk, str(row[series_column]))

    def load(layout: Layout) -> np.ndarray:
        return _values(store, layout, shape, fit, window)

    for row, array in bounded(rows, prepare, load, max_in_memory):
        yield array, dict(row)
        del array


def iter_slice_batches(
    lk: Lake,
    frame: pl.DataFrame,
    labels: Sequence[str] = (),
    *,
    batch_size: int = 32,
    shape: tuple[int | None, int | None] | None = None,
    fit: str | Fit = Fit.RESIZE,
    window: tuple[float, float] | None = None,
    series_column: str = "SeriesInstanceUID",
    max_in_memory: int = 2,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Batches ``(B, y, x)`` float32 of ``batch_size`` slices with their labels, series after series.

    Each slice is fitted in plane to ``shape`` = (y, x). ``labels`` maps the series column, each
    of ``labels`` and ``"slice_index"`` (the slice's index in its series) to a numpy array of B
    values. ``shuffle`` orders the series and the slices within each series at random (``seed``),
    so a batch mixes series only where one ends. The last batch is smaller unless ``drop_last``.
    Memory: ``max_in_memory`` series plus the batch being filled. Raises as :func:`iter_series`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    rng = np.random.default_rng(seed)
    if shuffle:
        frame = frame[rng.permutation(frame.height).tolist()] if frame.height else frame
    names = [series_column, *[c for c in labels if c != series_column], "slice_index"]
    plane = None if shape is None else (None, *shape)
    batch: np.ndarray | None = None
    values: dict[str, list[Any]] = {n: [] for n in names}
    filled = 0
    for array, row in iter_series(
        lk, frame, labels, shape=plane, fit=fit, window=window, series_column=series_column, max_in_memory=max_in_memory
    ):
        order = rng.permutation(array.shape[0]) if shuffle else np.arange(array.shape[0])
        for k in order:
            if batch is None:
                batch = np.empty((batch_size, *array.shape[1:]), dtype=np.float32)
            elif batch.shape[1:] != array.shape[1:]:
                raise GeometryError(
                    f"slices of {array.shape[1:]} and {batch.shape[1:]} cannot share a batch; give shape=(y, x)"
                )
            batch[filled] = array[k]
            for name in names[:-1]:
                values[name].append(row[name])
            values["slice_index"].append(int(k))
            filled += 1
            if filled == batch_size:
                yield batch, {n: np.asarray(v) for n, v in values.items()}
                batch, values, filled = None, {n: [] for n in names}, 0
        del array
    if filled and batch is not None and not drop_last:
        yield batch[:filled], {n: np.asarray(v) for n, v in values.items()}


def series_stack(
    lk: Lake,
    frame: pl.DataFrame,
    shape: tuple[int, int, int],
    *,
    fit: str | Fit = Fit.RESIZE,
    window: tuple[float, float] | None = None,
    series_column: str = "SeriesInstanceUID",
) -> da.Array:
    """A lazy dask array ``(len(frame), *shape)`` float32, one chunk per series, rows in frame order.

    Values as :func:`iter_series`. The slice layouts are queried now (one query per series, on
    this thread); pixels are read when a chunk is computed, so memory follows dask's scheduler
    (a reduction over the stack holds a few chunks per worker thread). Labels stay in ``frame``:
    row ``i`` of the frame is ``stack[i]``.
    """
    import dask
    import dask.array as da

    rows = _rows(frame, series_column, (), "series_stack()")
    if len(shape) != 3 or any(s is None or s < 1 for s in shape):
        raise ValueError(f"series_stack() needs a full (z, y, x) shape of positive sizes, not {shape}")
    store = lk.pixel_store
    chunks = []
    for n, row in enumerate(rows):
        uid = str(row[series_column])
        layout = _plan_series(lk, uid)
        # a key of our own: dask would otherwise hash the store and the layout's arrays
        key = f"lake-series-{n}-{uid}-{'x'.join(map(str, shape))}-{Fit(fit).value}-{window}"
        task = dask.delayed(_values)(store, layout, shape, fit, window, dask_key_name=key)
        chunks.append(da.from_delayed(task, shape=shape, dtype=np.float32))
    if not chunks:
        return da.zeros((0, *shape), dtype=np.float32)
    return da.stack(chunks)
