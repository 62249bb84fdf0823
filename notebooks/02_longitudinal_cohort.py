# %% [markdown]
# # A longitudinal cohort
#
# Patients with a baseline CT and a follow-up 6 to 18 months later: every patient's time points by
# days from baseline, the follow-up intervals, and the cohort itself as a table.
#
# Draft: the baseline, the follow-ups and the priors are written here in plain SQL over the
# `studies` view, so the notebook runs on any lake today; the cohort builder (`lk.cohort()`) and its
# saved manifests take their place when they land. Set `LAKE` to your lake; without it the demo
# lake is built in a temporary folder.

# %%
# %matplotlib inline
import os
import tempfile
from pathlib import Path

import lake
import lake.viz
from lake.catalog.query import snapshot_versions
from lake.demo import demo_sources
from lake.ingest import ingest

LAKE = Path(os.environ.get("LAKE") or Path(tempfile.mkdtemp(prefix="lake-demo-")) / "lake")
if not (LAKE / "lake.json").exists():
    ingest(LAKE, demo_sources(), workers=2)
lk = lake.open(LAKE)

BASELINE_MODALITY = "CT"
MIN_DAYS, MAX_DAYS = 180, 540  # the follow-up window, days after the baseline

# %% [markdown]
# ## Baseline and days from baseline
#
# The baseline is each patient's first study with a CT series (same-day studies ordered by time,
# then UID); every later study of the patient is a time point at its days from baseline. Dates are
# shifted per patient, so these intervals are exact.

# %%
TIME_POINTS = """
WITH ranked AS (
    SELECT PatientID, StudyInstanceUID, StudyDate,
           row_number() OVER (PARTITION BY PatientID
                              ORDER BY StudyDate, StudyTime NULLS LAST, StudyInstanceUID) AS n
    FROM studies WHERE list_contains(modalities, $modality) AND StudyDate IS NOT NULL
), baseline AS (
    SELECT PatientID, StudyInstanceUID AS baseline_study, StudyDate AS baseline_date FROM ranked WHERE n = 1
)
SELECT s.PatientID, s.StudyInstanceUID, s.StudyDate, s.modalities, s.StudyDescription,
       s.StudyInstanceUID = b.baseline_study AS is_baseline,
       date_diff('day', b.baseline_date, s.StudyDate) AS days_from_baseline
FROM studies s JOIN baseline b USING (PatientID)
WHERE s.StudyDate >= b.baseline_date
ORDER BY s.PatientID, days_from_baseline, s.StudyTime NULLS LAST, s.StudyInstanceUID
"""
time_points = lk.sql(TIME_POINTS, {"modality": BASELINE_MODALITY})
time_points.head(10)

# %%
lake.viz.swimmer(time_points, modality="modalities")

# %% [markdown]
# ## The cohort: a follow-up in the window
#
# Patients with at least one later study within `[MIN_DAYS, MAX_DAYS]` of their baseline, the
# first such study as their follow-up.

# %%
follow_ups = lk.sql(
    f"""
    WITH t AS ({TIME_POINTS})
    SELECT PatientID, StudyInstanceUID AS follow_up_study, days_from_baseline,
           row_number() OVER (PARTITION BY PatientID ORDER BY days_from_baseline, StudyInstanceUID) AS n
    FROM t WHERE NOT is_baseline AND days_from_baseline BETWEEN $min_days AND $max_days
    QUALIFY n = 1
    ORDER BY PatientID
    """,
    {"modality": BASELINE_MODALITY, "min_days": MIN_DAYS, "max_days": MAX_DAYS},
)
print(f"{follow_ups.height} of {time_points['PatientID'].n_unique()} patients with a baseline "
      f"{BASELINE_MODALITY} have a follow-up {MIN_DAYS} to {MAX_DAYS} days later")
follow_ups

# %% [markdown]
# ## Intervals between a study and its prior
#
# The prior of a study is the patient's most recent earlier study sharing a modality (a self-join
# of `studies`; the `priors` view will hold this). The histogram shades the follow-up window.

# %%
PRIORS = """
WITH pairs AS (
    SELECT s.PatientID, s.StudyInstanceUID, p.StudyInstanceUID AS prior_study,
           date_diff('day', p.StudyDate, s.StudyDate) AS interval_days,
           row_number() OVER (PARTITION BY s.StudyInstanceUID
                              ORDER BY p.StudyDate DESC, p.StudyTime DESC NULLS LAST, p.StudyInstanceUID DESC) AS n
    FROM studies s JOIN studies p
      ON p.PatientID = s.PatientID
     AND len(list_intersect(p.modalities, s.modalities)) > 0
     AND (p.StudyDate < s.StudyDate
          OR (p.StudyDate = s.StudyDate AND (coalesce(p.StudyTime, TIME '00:00') < coalesce(s.StudyTime, TIME '00:00')
              OR (coalesce(p.StudyTime, TIME '00:00') = coalesce(s.StudyTime, TIME '00:00')
                  AND p.StudyInstanceUID < s.StudyInstanceUID))))
)
SELECT s.PatientID, s.StudyInstanceUID, s.StudyDate, s.modalities, pairs.prior_study, pairs.interval_days
FROM studies s LEFT JOIN pairs ON pairs.StudyInstanceUID = s.StudyInstanceUID AND pairs.n = 1
ORDER BY s.PatientID, s.StudyDate, s.StudyTime NULLS LAST, s.StudyInstanceUID
"""
priors = lk.sql(PRIORS)
lake.viz.interval_histogram(priors, window=(MIN_DAYS, MAX_DAYS))

# %% [markdown]
# ## Reproducing the cohort
#
# The SQL above is the cohort's definition. Until `lk.cohort().save(PATH)` writes a manifest (the
# definition, the Delta version of every table read and a content hash of the result), keep the
# SQL and the table versions it ran on:

# %%
print(snapshot_versions(lk.paths))
