# %% [markdown]
# # Today's study beside its prior
#
# For each CT study with an earlier CT of the same patient, the two volumes side by side at the
# same anatomical position, found by patient coordinates (millimetres in the scanner's LPS frame),
# not by slice index: the prior may have other slice spacing, extent or offset. Both are shown in
# one window (level/width).
#
# Draft: the prior is found with a self-join of `studies` in plain SQL; the `priors` view and
# `lk.cohort()` take its place when they land. Set `LAKE` to your lake; without it the demo lake
# is built in a temporary folder.

# %%
# %matplotlib inline
import os
import tempfile
from pathlib import Path

import numpy as np

import lake
import lake.viz
from lake.demo import demo_sources
from lake.ingest import ingest

LAKE = Path(os.environ.get("LAKE") or Path(tempfile.mkdtemp(prefix="lake-demo-")) / "lake")
if not (LAKE / "lake.json").exists():
    ingest(LAKE, demo_sources(), workers=2)
lk = lake.open(LAKE)

WINDOW = (40.0, 400.0)  # CT soft tissue: level 40 HU, width 400 HU

# %% [markdown]
# ## Studies with a prior, and a CT volume in each
#
# The prior is the patient's most recent earlier CT study (same-day studies ordered by time, then
# UID); each study contributes its CT series that forms a regular volume with the most slices.

# %%
pairs = lk.sql("""
WITH ct_studies AS (
    SELECT * FROM studies WHERE list_contains(modalities, 'CT')
), pairs AS (
    SELECT s.PatientID, s.StudyInstanceUID AS current_study, p.StudyInstanceUID AS prior_study,
           date_diff('day', p.StudyDate, s.StudyDate) AS interval_days,
           row_number() OVER (PARTITION BY s.StudyInstanceUID
                              ORDER BY p.StudyDate DESC, p.StudyTime DESC NULLS LAST, p.StudyInstanceUID DESC) AS n
    FROM ct_studies s JOIN ct_studies p
      ON p.PatientID = s.PatientID
     AND (p.StudyDate < s.StudyDate
          OR (p.StudyDate = s.StudyDate AND (coalesce(p.StudyTime, TIME '00:00') < coalesce(s.StudyTime, TIME '00:00')
              OR (coalesce(p.StudyTime, TIME '00:00') = coalesce(s.StudyTime, TIME '00:00')
                  AND p.StudyInstanceUID < s.StudyInstanceUID))))
), volumes AS (
    SELECT StudyInstanceUID, arg_max(SeriesInstanceUID, distinct_positions) AS series_uid
    FROM series WHERE Modality = 'CT' AND is_volume GROUP BY StudyInstanceUID
)
SELECT pairs.PatientID, current_study, prior_study, interval_days,
       c.series_uid AS current_series, p.series_uid AS prior_series
FROM pairs
JOIN volumes c ON c.StudyInstanceUID = pairs.current_study
JOIN volumes p ON p.StudyInstanceUID = pairs.prior_study
WHERE pairs.n = 1
ORDER BY interval_days DESC, current_study
""")
print(f"{pairs.height} CT studies with a prior CT volume")
pairs.head()

# %% [markdown]
# ## Side by side
#
# By default the position is the centre of the current volume's middle slice; each panel says
# which slice was chosen and how far its plane lies from that point. The scanner's coordinates
# agree between studies as far as the patient lay alike on the table (the lake does not register
# images).

# %%
if pairs.height:
    pair = pairs.row(0, named=True)
    current = lk.volume(pair["current_series"])
    prior = lk.volume(pair["prior_series"])
    figure = lake.viz.side_by_side(
        current, prior, window=WINDOW, titles=("current", f"prior, {pair['interval_days']} days earlier")
    )
figure if pairs.height else None

# %% [markdown]
# Any point in patient coordinates works, e.g. a quarter of the way through the current volume:
# `affine` maps (slice, row, column) indices to LPS millimetres.

# %%
if pairs.height:
    slices, rows, columns = current.array.shape
    point = (current.affine @ np.asarray([(slices - 1) / 4, (rows - 1) / 2, (columns - 1) / 2, 1.0]))[:3]
    print("point (LPS mm):", np.round(point, 1))
    print("current slice", lake.viz.nearest_slice(current, point), "prior slice", lake.viz.nearest_slice(prior, point))
    figure = lake.viz.side_by_side(current, prior, point, window=WINDOW)
figure if pairs.height else None
