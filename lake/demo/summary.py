"""What the demo lake holds over time, in SQL over the ``studies`` view (readable by any DuckDB user).

Each query is (title, SQL); ``lake demo`` prints them in order, so the output ends with the
longitudinal summary. Intervals come from the shifted study dates (exact: a patient's dates all
move by the same offset). A study's prior is the patient's latest earlier study of the same
modality; same-day studies are ordered by time, then UID.
"""

from __future__ import annotations

#: Each study with the patient's study number, days from the patient's baseline (first study) and
#: days since its prior (latest earlier study of the same modality; NULL for the first of a modality).
_ORDERED = """
WITH s AS (
    SELECT PatientID, StudyInstanceUID, StudyDate, StudyTime, StudyDescription, modalities[1] AS Modality,
           row_number() OVER (PARTITION BY PatientID ORDER BY StudyDate, StudyTime, StudyInstanceUID) AS study_number,
           date_diff('day', min(StudyDate) OVER (PARTITION BY PatientID), StudyDate) AS days_from_baseline,
           date_diff('day', lag(StudyDate) OVER (
               PARTITION BY PatientID, modalities[1] ORDER BY StudyDate, StudyTime, StudyInstanceUID), StudyDate
           ) AS days_since_prior
    FROM studies
)"""

PATIENTS_QUERY = f"""{_ORDERED}
SELECT count(DISTINCT PatientID) AS patients,
       count(DISTINCT PatientID) FILTER (WHERE study_number = 2) AS with_follow_up,
       count(*) AS studies,
       round(count(*) / count(DISTINCT PatientID), 1) AS studies_per_patient,
       count(*) FILTER (WHERE days_since_prior IS NOT NULL) AS studies_with_prior,
       round(max(days_from_baseline) / 365.25, 1) AS longest_follow_up_years
FROM s""".strip()

STUDIES_PER_PATIENT_QUERY = """
SELECT studies AS studies_per_patient, count(*) AS patients,
       round(median(span_days) / 365.25, 1) AS median_follow_up_years,
       round(max(span_days) / 365.25, 1) AS max_follow_up_years
FROM (SELECT PatientID, count(*) AS studies, date_diff('day', min(StudyDate), max(StudyDate)) AS span_days
      FROM studies GROUP BY PatientID)
GROUP BY studies ORDER BY studies""".strip()

INTERVALS_QUERY = f"""{_ORDERED}
SELECT Modality, count(*) AS studies, count(DISTINCT PatientID) AS patients,
       count(*) FILTER (WHERE days_since_prior IS NULL) AS baselines,
       count(days_since_prior) AS follow_ups,
       min(days_since_prior) AS min_days_to_prior, median(days_since_prior)::BIGINT AS median_days_to_prior,
       max(days_since_prior) AS max_days_to_prior
FROM s GROUP BY Modality ORDER BY studies DESC, Modality""".strip()

#: One patient's history: the patient with the most studies (then the longest follow-up, then the pseudonym).
HISTORY_QUERY = f"""{_ORDERED},
longest AS (
    SELECT PatientID FROM s GROUP BY PatientID
    ORDER BY count(*) DESC, max(days_from_baseline) DESC, PatientID LIMIT 1
)
SELECT study_number, StudyDate, Modality, StudyDescription, days_from_baseline, days_since_prior
FROM s JOIN longest USING (PatientID) ORDER BY study_number""".strip()

SUMMARY_QUERIES: tuple[tuple[str, str], ...] = (
    ("studies by modality: baselines, follow-ups and days to the prior of the same modality", INTERVALS_QUERY),
    ("one patient's history (the patient with the most studies)", HISTORY_QUERY),
    ("studies per patient and follow-up span", STUDIES_PER_PATIENT_QUERY),
    ("the lake over time", PATIENTS_QUERY),
)
