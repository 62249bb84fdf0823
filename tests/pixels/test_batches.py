"""Training arrays: fitted to a shape, labelled from the frame, and never more than N series held."""

from __future__ import annotations

import gc
import threading
import tracemalloc
import weakref
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import lake
from lake.errors import ColumnError, NotInLakeError
from lake.ingest import ingest
from lake.pixels.batches import bounded, crop, fit_to, iter_series, iter_slice_batches, resize, series_stack
from lake.testing.synthetic import make_cohort

# -- fitting to a shape ---------------------------------------------------------------------------


def test_resize_to_the_same_shape_is_the_identity_and_keeps_a_linear_ramp_linear() -> None:
    a = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    np.testing.assert_array_equal(resize(a, (2, 3, 4)), a.astype(np.float32))
    ramp = np.arange(8, dtype=np.float32)[None, :]  # a ramp sampled on pixel centres
    np.testing.assert_allclose(resize(ramp, (1, 4)), [[0.5, 2.5, 4.5, 6.5]])
    np.testing.assert_allclose(resize(np.asarray([[0.0, 4.0]]), (1, 4)), [[0.0, 1.0, 3.0, 4.0]])
    assert resize(a, (None, 6, 2)).shape == (2, 6, 2)


def test_crop_is_centred_and_pads_with_the_minimum() -> None:
    a = np.arange(1, 26, dtype=np.float32).reshape(5, 5)
    np.testing.assert_array_equal(crop(a, (3, 3)), a[1:4, 1:4])
    padded = crop(np.full((2, 2), 7.0), (4, 5))
    assert padded.shape == (4, 5)
    np.testing.assert_array_equal(padded[1:3, 1:3], 7.0)
    b = np.asarray([[1.0, 9.0]])
    np.testing.assert_array_equal(crop(b, (3, 2)), [[1.0, 1.0], [1.0, 9.0], [1.0, 1.0]])
    # the padding is the minimum of the whole array, even when cropping removed it
    np.testing.assert_array_equal(crop(np.asarray([[0.0, 5.0, 6.0]]), (2, 1)), [[5.0], [0.0]])


def test_fit_refuses_a_shape_of_other_rank() -> None:
    with pytest.raises(ValueError, match="does not fit an array of 3 axes"):
        fit_to(np.zeros((2, 2, 2)), (2, 2))


# -- the bound, counted with weak references to every array loaded ------------------------------


class Loads:
    """A loader that makes a fresh array per item and counts those still alive."""

    def __init__(self, size: int = 1000) -> None:
        self.size = size
        self.refs: list[weakref.ref[np.ndarray]] = []
        self.alive_at_load: list[int] = []
        self.lock = threading.Lock()
        self.prepared_on: set[int] = set()
        self.prepared = 0

    def alive(self) -> int:
        return sum(r() is not None for r in self.refs)

    def prepare(self, item: int) -> int:
        self.prepared_on.add(threading.get_ident())
        self.prepared += 1
        return item

    def load(self, item: int) -> np.ndarray:
        with self.lock:
            array = np.full(self.size, item, dtype=np.float32)
            self.refs.append(weakref.ref(array))
            self.alive_at_load.append(self.alive())
        return array


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
def test_bounded_never_holds_more_than_the_limit(limit: int) -> None:
    loads = Loads()
    seen, alive_at_yield, prepared_at_yield = [], [], []
    for item, array in bounded(range(12), loads.prepare, loads.load, limit):
        alive_at_yield.append(loads.alive())
        prepared_at_yield.append(loads.prepared)
        assert array[0] == item
        seen.append(item)
        del array  # the caller keeps nothing
    assert seen == list(range(12))
    assert len(loads.refs) == 12
    assert max(loads.alive_at_load) <= limit
    assert max(alive_at_yield) <= limit
    assert loads.prepared_on == {threading.get_ident()}  # queries stay on the caller's thread
    # it reads ahead: when the first series is handed out, limit - 1 more have been asked for
    assert prepared_at_yield[0] == limit
    assert prepared_at_yield == [min(limit + n, 12) for n in range(12)]


def test_a_loop_that_keeps_its_variable_holds_one_more() -> None:
    loads = Loads()
    for _item, _array in bounded(range(8), loads.prepare, loads.load, 2):
        pass
    assert max(loads.alive_at_load) <= 3


def test_closing_early_stops_reading() -> None:
    loads = Loads()
    gen = bounded(range(100), loads.prepare, loads.load, 3)
    next(gen)
    gen.close()
    assert len(loads.refs) <= 3  # the one handed out and at most two read ahead
    gc.collect()
    assert loads.alive() == 0


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        next(bounded([1], lambda x: x, lambda x: x, 0))


# -- against a lake --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lk(tmp_path_factory: pytest.TempPathFactory) -> lake.Lake:
    src = tmp_path_factory.mktemp("src")
    make_cohort(src, n_patients=3, studies_per_patient=2, n_images=4)
    root = tmp_path_factory.mktemp("lakes") / "batches"
    key = tmp_path_factory.mktemp("keys") / "batches.key"
    lake.init(root, key_file=key)
    ingest(root, [src], key_file=key, workers=1)
    return lake.open(root)


@pytest.fixture(scope="module")
def series(lk: lake.Lake) -> pl.DataFrame:
    frame = lk.sql(
        "SELECT SeriesInstanceUID, PatientID, StudyDate, row_number() OVER (ORDER BY SeriesInstanceUID) % 2 AS label "
        "FROM series WHERE stored_instance_count > 0 ORDER BY SeriesInstanceUID"
    )
    assert frame.height == 6
    return frame


def test_iter_series_yields_each_volume_fitted_with_its_labels(lk: lake.Lake, series: pl.DataFrame) -> None:
    out = list(iter_series(lk, series, ["label", "PatientID"], shape=(4, 16, 24)))
    assert [labels["SeriesInstanceUID"] for _, labels in out] == series["SeriesInstanceUID"].to_list()
    assert [labels["label"] for _, labels in out] == series["label"].to_list()
    assert [labels["PatientID"] for _, labels in out] == series["PatientID"].to_list()
    for (array, labels), uid in zip(out, series["SeriesInstanceUID"], strict=True):
        assert set(labels) == {"SeriesInstanceUID", "label", "PatientID"}
        assert array.dtype == np.float32 and array.shape == (4, 16, 24)
        np.testing.assert_allclose(array, resize(lk.volume(uid).hu(), (4, 16, 24)), rtol=1e-6)


def test_iter_series_window_and_crop(lk: lake.Lake, series: pl.DataFrame) -> None:
    uid = series["SeriesInstanceUID"][0]
    ((array, _),) = iter_series(lk, series.head(1), shape=(None, 20, 40), fit="crop", window=(0.0, 400.0))
    vol = lk.volume(uid)
    np.testing.assert_allclose(array, crop(vol.window(0.0, 400.0), (4, 20, 40)))
    assert array.min() >= 0.0 and array.max() <= 1.0


def test_slice_batches_are_full_but_the_last_and_label_every_slice(lk: lake.Lake, series: pl.DataFrame) -> None:
    batches = list(iter_slice_batches(lk, series, ["label"], batch_size=5, shape=(8, 8)))
    assert [b.shape for b, _ in batches] == [(5, 8, 8)] * 4 + [(4, 8, 8)]  # 6 series x 4 slices = 24
    uids = np.concatenate([labels["SeriesInstanceUID"] for _, labels in batches])
    index = np.concatenate([labels["slice_index"] for _, labels in batches])
    label = np.concatenate([labels["label"] for _, labels in batches])
    assert uids.tolist() == [u for u in series["SeriesInstanceUID"].to_list() for _ in range(4)]
    assert index.tolist() == [0, 1, 2, 3] * 6
    assert label.tolist() == [v for v in series["label"].to_list() for _ in range(4)]
    volumes = {u: resize(lk.volume(u).hu(), (None, 8, 8)) for u in series["SeriesInstanceUID"]}
    stacked = np.concatenate([b for b, _ in batches])
    for n, (u, k) in enumerate(zip(uids, index, strict=True)):
        np.testing.assert_allclose(stacked[n], volumes[str(u)][k], rtol=1e-6)
    assert len(list(iter_slice_batches(lk, series, batch_size=5, shape=(8, 8), drop_last=True))) == 4


def test_shuffled_batches_hold_every_slice_once(lk: lake.Lake, series: pl.DataFrame) -> None:
    batches = list(iter_slice_batches(lk, series, batch_size=7, shape=(8, 8), shuffle=True, seed=3))
    pairs = [
        (str(u), int(k))
        for _, labels in batches
        for u, k in zip(labels["SeriesInstanceUID"], labels["slice_index"], strict=True)
    ]
    assert sorted(pairs) == sorted((u, k) for u in series["SeriesInstanceUID"] for k in range(4))
    assert pairs != sorted(pairs)
    again = list(iter_slice_batches(lk, series, batch_size=7, shape=(8, 8), shuffle=True, seed=3))
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(batches, again, strict=True))  # seeded


def test_series_stack_is_lazy_one_chunk_per_series(lk: lake.Lake, series: pl.DataFrame) -> None:
    stack = series_stack(lk, series, (4, 16, 16))
    assert stack.shape == (6, 4, 16, 16) and stack.dtype == np.float32
    assert stack.numblocks == (6, 1, 1, 1)
    expected = [a for a, _ in iter_series(lk, series, shape=(4, 16, 16))]
    np.testing.assert_allclose(stack[2].compute(), expected[2])
    np.testing.assert_allclose(stack.mean(axis=(1, 2, 3)).compute(), [e.mean() for e in expected], rtol=1e-5)


def test_memory_stays_bounded_by_tracemalloc(lk: lake.Lake, series: pl.DataFrame) -> None:
    """24 series of 1.2 MB each pass through while at most a few are ever allocated at once."""
    many = pl.concat([series] * 4)  # a series listed again is read again
    shape = (8, 192, 192)
    size = int(np.prod(shape)) * 4
    list(iter_series(lk, series.head(1), shape=(2, 2, 2)))  # warm the caches and imports
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        count = 0
        for array, _ in iter_series(lk, many, shape=shape, max_in_memory=2):
            assert array.shape == shape
            count += 1
            del array
        peak = tracemalloc.get_traced_memory()[1] - base
        kept = [a for a, _ in iter_series(lk, many.head(6), shape=shape, max_in_memory=2)]
        kept_now = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert count == 24
    assert kept_now >= 6 * size  # the measurement sees the arrays
    # two series held, plus the transients of one fit (three arrays of the output size) on the
    # reading thread, plus slack: far below the 24 that went through
    assert peak < 6 * size, (peak / size, kept)


def test_missing_columns_and_series_are_named(lk: lake.Lake, series: pl.DataFrame) -> None:
    with pytest.raises(ColumnError, match="needs the column"):
        next(iter_series(lk, series, ["no_such_label"]))
    with pytest.raises(ColumnError, match="1 of 1 rows have no SeriesInstanceUID"):
        next(iter_series(lk, pl.DataFrame({"SeriesInstanceUID": [None]}, schema={"SeriesInstanceUID": pl.String})))
    with pytest.raises(NotInLakeError, match="no series"):
        next(iter_series(lk, pl.DataFrame({"SeriesInstanceUID": ["2.25.1"]})))


def test_no_files_written(lk: lake.Lake, series: pl.DataFrame, tmp_path: Path) -> None:
    before = sorted(p.relative_to(lk.root) for p in lk.root.rglob("*"))
    list(iter_slice_batches(lk, series, batch_size=4))
    series_stack(lk, series, (2, 2, 2)).compute()
    assert sorted(p.relative_to(lk.root) for p in lk.root.rglob("*")) == before
