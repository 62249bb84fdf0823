# %% [markdown]
# # Exploring a lake
#
# This notebook opens a lake, asks the questions researchers ask first (who is in it, which studies,
# how they line up in time, what was turned away and why), and looks at the pixels. Set `LAKE` to
# your lake's folder; without it, the notebook builds the longitudinal demo lake (synthetic patients
# imaged over years, made from the DICOM files that `pydicom` and `pydicom-data` ship) in a
# temporary folder (never inside the repository).

# %%
# %matplotlib inline
import os
import tempfile
from pathlib import Path

import polars as pl

import lake
import lake.viz
from lake.demo import ArchiveSpec, build_demo

LAKE = Path(os.environ.get("LAKE") or Path(tempfile.mkdtemp(prefix="lake-demo-")) / "lake")
if not (LAKE / "lake.json").exists():
    built = build_demo(LAKE, ArchiveSpec(patients=10), workers=2)
    print(f"built {LAKE}: {len(built.archive.patients)} synthetic patients, {built.summary.ingested} instances")
lk = lake.open(LAKE)
lk.info()

# %% [markdown]
# ## What is in it
#
# `lk.sql` runs one read-only DuckDB query over the tables and views and returns a polars
# DataFrame; `lk.table` is a lazy polars frame over the same data.

# %%
lk.sql("""
SELECT Modality, count(DISTINCT PatientID) AS patients, count(DISTINCT StudyInstanceUID) AS studies,
       count(*) AS instances, count(*) FILTER (WHERE pixel_status = 'stored') AS with_pixels
FROM instances GROUP BY Modality ORDER BY instances DESC
""")

# %%
(
    lk.table("instances")
    .group_by("pixel_status", "pixel_reason")
    .agg(pl.len().alias("instances"))
    .sort("instances", descending=True)
    .collect()
)

# %% [markdown]
# ## What was rejected, and why
#
# Every input file is accounted for: `seen = ingested + duplicates + rejected`. The `rejects` table
# has one row per file that did not become an instance, with the stage where it failed and a reason
# code, never its path or a value from it (those are in the vault's run log, beside the key).

# %%
rejected = lk.sql("""
SELECT stage, reason, count(*) AS files, sum(source_bytes) AS bytes
FROM rejects GROUP BY ALL ORDER BY files DESC, stage, reason
""")
print(rejected)

# %% [markdown]
# ## Patients over time
#
# Dates are shifted per patient by a keyed offset, so intervals between a patient's studies are
# exact while calendar dates are not.

# %%
lk.sql("SELECT * FROM timeline ORDER BY PatientID, study_index LIMIT 10")

# %%
lk.table("patients").sort("study_count", descending=True).head(5).collect()

# %%
time_points = lk.sql("""
SELECT PatientID, days_from_first_study AS days_from_baseline, modalities FROM studies
WHERE days_from_first_study IS NOT NULL  -- a study without a date has no place in time
""")
lake.viz.swimmer(time_points, modality="modalities")

# %% [markdown]
# ## Pixels
#
# The grey series with the most stored frames, as a lazy dask array and as a montage of its slices.

# %%
series = lk.sql("""
SELECT SeriesInstanceUID, Modality, frame_count, is_volume FROM series
WHERE stored_instance_count > 0 AND Modality IN ('CT', 'MR', 'PT', 'NM')
ORDER BY frame_count DESC, SeriesInstanceUID LIMIT 1
""")
series

# %%
if series.height:
    arr = lk.series_array(series["SeriesInstanceUID"][0])  # lazy dask array, frames in slice order
    print(arr)
    figure = lake.viz.montage(arr.compute() if arr.ndim == 3 else arr[..., 0].compute(), count=9)
figure if series.height else None

# %%
uid = lk.sql("""
SELECT SOPInstanceUID FROM instances WHERE pixel_status = 'stored'
ORDER BY Modality = 'CT' DESC, SOPInstanceUID LIMIT 1
""")[0, 0]
frame = lk.pixels(uid, frame=0)
header = lk.header(uid)  # the whole de-identified header (DICOM JSON model)
print(frame.shape, frame.dtype, "header elements:", len(header))
