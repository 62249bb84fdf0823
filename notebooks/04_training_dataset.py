# %% [markdown]
# # A dataset for training
#
# A cohort's series as fixed-shape arrays with labels from the tables: a numpy generator of
# volumes, batches of slices, and a lazy dask stack, all memory bounded (never more than
# `max_in_memory` series held; see `lake.pixels.batches`). The series are selected with the
# cohort API (`lk.cohort()`). Set `LAKE` to your lake; without it the longitudinal demo lake is
# built in a temporary folder.

# %%
# %matplotlib inline
import os
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

import lake
import lake.viz
from lake.cohorts import modality
from lake.demo import ArchiveSpec, build_demo
from lake.pixels.batches import iter_series, iter_slice_batches, series_stack

LAKE = Path(os.environ.get("LAKE") or Path(tempfile.mkdtemp(prefix="lake-demo-")) / "lake")
if not (LAKE / "lake.json").exists():
    built = build_demo(LAKE, ArchiveSpec(patients=10), workers=2)
    print(f"built {LAKE}: {len(built.archive.patients)} synthetic patients, {built.summary.ingested} instances")
lk = lake.open(LAKE)

SHAPE = (8, 64, 64)  # (z, y, x) every volume is resampled to

# %% [markdown]
# ## The series and their labels
#
# Regular CT and MR volumes (`is_volume`), labelled with the modality and whether the study is a
# follow-up (after the patient's baseline, the first study with such a series). The split keeps
# each patient on one side: every fifth patient, by pseudonym, is held out.

# %%
cohort = lk.cohort().filter(modality("CT", "MR"), "is_volume").baseline()
series = cohort.series().with_columns(follow_up=(~pl.col("is_baseline")).cast(pl.Int32))
held_out = series["PatientID"].unique().sort().gather_every(5)
series = series.with_columns(held_out=pl.col("PatientID").is_in(held_out.to_list()))
train = series.filter(~pl.col("held_out"))
print(f"{series.height} series ({series['follow_up'].sum()} follow-ups) of {series['PatientID'].n_unique()} patients, "
      f"{train.height} for training")  # fmt: skip
series.select("PatientID", "Modality", "distinct_positions", "time_point", "days_from_baseline", "follow_up").head()

# %% [markdown]
# ## One volume at a time
#
# `iter_series` yields `(array, labels)`: float32 modality values (HU for CT) resampled to `SHAPE`,
# and the row's label columns. It reads the next series on a background thread while the current
# one is used, and holds at most `max_in_memory` of them.

# %%
shapes = []
for array, labels in iter_series(lk, series, ["Modality", "follow_up"], shape=SHAPE, max_in_memory=2):
    shapes.append((array.shape, labels["Modality"], labels["follow_up"]))
    del array  # let the generator's bound hold
print(shapes[:5])

# %%
first = next(iter_series(lk, series.head(1), shape=SHAPE, window=(40.0, 400.0)), (None, None))[0]
lake.viz.montage(first, count=8) if first is not None else None

# %% [markdown]
# ## Batches of slices
#
# For a 2D model: fixed-size batches `(B, y, x)` with one label value per slice, shuffled by
# series and by slice within each series.

# %%
batches = slices = follow_up_slices = 0
for batch, labels in iter_slice_batches(
    lk, train, ["follow_up"], batch_size=16, shape=SHAPE[1:], shuffle=True, seed=0, window=(40.0, 400.0)
):
    if batches < 3:
        print(batch.shape, batch.dtype, "follow-up slices:", int(np.sum(labels["follow_up"])))
    batches += 1
    slices += len(batch)
    follow_up_slices += int(np.sum(labels["follow_up"]))
print(f"{batches} batches, {slices} slices of {train.height} series, {follow_up_slices} of them from follow-ups")

# %% [markdown]
# ## A dask stack
#
# `series_stack` is a lazy `(series, z, y, x)` array, one chunk per series: reductions stream
# through it, and row `i` of the frame is `stack[i]`.

# %%
stack = series_stack(lk, series, SHAPE)
print(stack)
if series.height:
    print("mean value per series (HU for CT):", np.round(stack.mean(axis=(1, 2, 3)).compute(), 1))
