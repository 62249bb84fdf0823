# %% [markdown]
# # A longitudinal cohort
#
# Patients with a baseline CT and a follow-up CT 6 to 18 months later, built with the cohort API
# (`lk.cohort()`): every patient's time points by days from baseline, the follow-up intervals, the
# cohort itself, and its saved manifest re-loaded. Set `LAKE` to your lake; without it the
# longitudinal demo lake (synthetic patients imaged over years) is built in a temporary folder.

# %%
# %matplotlib inline
import os
import tempfile
from pathlib import Path

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

MIN_DAYS, MAX_DAYS = 180, 540  # the follow-up window, days after the baseline

# %% [markdown]
# ## Every patient's time points, from the first CT
#
# `baseline(modality("CT"))`: each patient's first study with a CT series (same-day studies ordered
# by time, then UID) is time point 1; every later study, of any modality, is a time point at its
# days from baseline. Dates are shifted per patient, so these intervals are exact.

# %%
time_points = lk.cohort().baseline(modality("CT")).studies()
lake.viz.swimmer(time_points, modality="modalities")

# %% [markdown]
# ## The follow-up intervals
#
# Days from the baseline CT to each later CT (`filter` keeps the CT series only, so the time points
# are CT studies); the shaded band is the follow-up window.

# %%
ct = lk.cohort().filter(modality("CT")).baseline()
intervals = ct.studies().filter(~pl.col("is_baseline"))
in_window = intervals.filter(pl.col("days_from_baseline").is_between(MIN_DAYS, MAX_DAYS)).height
print(f"{intervals.height} follow-up CTs, {in_window} of them {MIN_DAYS} to {MAX_DAYS} days after the baseline")
lake.viz.interval_histogram(intervals, column="days_from_baseline", window=(MIN_DAYS, MAX_DAYS))

# %% [markdown]
# ## The cohort: a follow-up CT in the window
#
# `follow_ups(MIN_DAYS, MAX_DAYS)` keeps the baseline and the later CTs in the window, and the
# patients that have one. The builder prints the one DuckDB query it runs (it runs as printed in
# `lake sql`).

# %%
cohort = ct.follow_ups(MIN_DAYS, MAX_DAYS)
patients = cohort.patients()
print(
    f"{patients.height} of {time_points['PatientID'].n_unique()} patients with a baseline CT "
    f"have a follow-up CT {MIN_DAYS} to {MAX_DAYS} days later"
)
patients

# %%
print(cohort.sql())

# %% [markdown]
# ## Reproducing the cohort
#
# `save` writes a manifest (JSON, outside the lake): the query, the Delta version of every table it
# read, the lake id, the key fingerprint, counts and a content hash of the rows. `lake.load_cohort`
# re-runs the query against exactly those versions (later ingests change nothing) and checks the hash.

# %%
studies = cohort.studies()
manifest_path = Path(tempfile.mkdtemp(prefix="lake-cohort-")) / "ct-follow-up.cohort.json"
manifest = cohort.save(manifest_path)
loaded = lake.load_cohort(manifest_path)
print("pinned versions:", manifest.versions)
print(f"re-loaded from the manifest: {loaded.frame.height} rows, the same as saved: {loaded.frame.equals(studies)}")
print(loaded.note() or "no member withdrawn since the cohort was saved")
