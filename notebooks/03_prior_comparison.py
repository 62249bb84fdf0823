# %% [markdown]
# # Today's study beside its prior
#
# Each CT study beside its prior (the `priors` view: the patient's latest earlier study of the same
# modality and body part), the two volumes side by side at the same anatomical position, found by
# patient coordinates (millimetres in the scanner's LPS frame), not by slice index: the prior may
# have other slice spacing, extent or offset. Both are shown in one window (level/width). Set
# `LAKE` to your lake; without it the longitudinal demo lake is built in a temporary folder.

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

LAKE = Path(os.environ.get("LAKE") or Path(tempfile.mkdtemp(prefix="lake-demo-")) / "lake")
if not (LAKE / "lake.json").exists():
    built = build_demo(LAKE, ArchiveSpec(patients=10), workers=2)
    print(f"built {LAKE}: {len(built.archive.patients)} synthetic patients, {built.summary.ingested} instances")
lk = lake.open(LAKE)

WINDOW = (40.0, 400.0)  # CT soft tissue: level 40 HU, width 400 HU

# %% [markdown]
# ## Studies with a prior, and a CT volume in each
#
# One snapshot holds the query and the pixels. The cohort keeps the CT series that form a regular
# volume; `with_priors()` puts each study beside its prior from the `priors` view, with the
# interval in days. Each study contributes its volume with the most slices.

# %%
snapshot = lk.snapshot()
cohort = snapshot.cohort().filter(modality("CT"), "is_volume").with_priors()
volumes = (
    cohort.series()
    .sort(["StudyInstanceUID", "distinct_positions", "SeriesInstanceUID"], descending=[False, True, False])
    .unique("StudyInstanceUID", keep="first", maintain_order=True)
    .select("StudyInstanceUID", "SeriesInstanceUID")
)
pairs = (
    cohort.studies()
    .filter(pl.col("PriorStudyInstanceUID").is_not_null())
    .join(volumes.rename({"SeriesInstanceUID": "current_series"}), on="StudyInstanceUID")
    .join(
        volumes.rename({"StudyInstanceUID": "PriorStudyInstanceUID", "SeriesInstanceUID": "prior_series"}),
        on="PriorStudyInstanceUID",
    )
    .sort(["interval_days", "StudyInstanceUID"], descending=[True, False])
)
print(f"{pairs.height} CT studies with a prior CT volume")
pairs.select("PatientID", "StudyDate", "PriorStudyDate", "interval_days", "time_point").head()

# %% [markdown]
# ## Side by side
#
# The pair with the longest interval. `shared_point` picks a point both volumes cover: the centre
# of the current slice in the middle of the stretch both span. Each panel says which slice was
# chosen and how far its plane lies from the point. The scanner's coordinates agree between studies
# as far as the patient lay alike on the table (the lake does not register images).

# %%
if pairs.height:
    pair = pairs.row(0, named=True)
    current = snapshot.volume(pair["current_series"])
    prior = snapshot.volume(pair["prior_series"])
    point = lake.viz.shared_point(current, prior)
    k_current, k_prior = lake.viz.nearest_slice(current, point), lake.viz.nearest_slice(prior, point)
    d_current = abs(lake.viz.slice_plane_distances(current, point)[k_current])
    d_prior = abs(lake.viz.slice_plane_distances(prior, point)[k_prior])
    print("point (LPS mm):", np.round(point, 1))
    print(f"current slice {k_current + 1} at {d_current:.1f} mm, prior slice {k_prior + 1} at {d_prior:.1f} mm")
    figure = lake.viz.side_by_side(
        current, prior, point, window=WINDOW, titles=("current", f"prior, {pair['interval_days']} days earlier")
    )
figure if pairs.height else None

# %% [markdown]
# Any point in patient coordinates works, e.g. a quarter of the way through the current volume:
# `affine` maps (slice, row, column) indices to LPS millimetres. Without a point, `side_by_side`
# uses the centre of the current's middle slice.

# %%
if pairs.height:
    slices, rows, columns = current.array.shape
    point = (current.affine @ np.asarray([(slices - 1) / 4, (rows - 1) / 2, (columns - 1) / 2, 1.0]))[:3]
    k_current, k_prior = lake.viz.nearest_slice(current, point), lake.viz.nearest_slice(prior, point)
    print(f"current slice {k_current + 1}, prior slice {k_prior + 1} (1-based, as the titles)")
    figure = lake.viz.side_by_side(current, prior, point, window=WINDOW)
figure if pairs.height else None

# %%
snapshot.close()
