-- view: priors
-- description: One row per (study, modality) of each patient, beside its prior: the most recent earlier study of the same patient with that modality (and the same body part when both record one), the interval in days and the time point. The first study of a modality has no prior (NULL).
-- column: PatientID: Patient pseudonym.
-- column: StudyInstanceUID: The study.
-- column: StudyDate: Study date (shifted by the patient's offset).
-- column: StudyTime: Study time of day (NULL when not recorded).
-- column: Modality: The modality this row is about (a study with CT and PT series has a row for each).
-- column: BodyPartExamined: Body part examined by the study's series of that modality (the first in code point order when they differ; NULL when none records one).
-- column: PriorStudyInstanceUID: The prior: the latest earlier study of the patient with the same modality, and the same body part unless either side records none (NULL for the first).
-- column: PriorStudyDate: The prior's study date (shifted).
-- column: interval_days: Days from the prior's date to this study's date: exact, both dates carry the patient's one offset (0 for a same-day prior; NULL without a prior or a date).
-- column: time_point: 1-based rank of the study among the patient's studies of that modality (any body part).
-- Order: study date, then time, then Study Instance UID (so same-day studies are ordered
-- deterministically); a study without a date or time comes after those that have one, as in
-- timeline. Only the dates in the lake are used: nothing comes from the wall clock.
-- Rows without a Modality get a time point among themselves but no prior (no modality is shared).
-- The expensive part is the one aggregation over instances; the windows and the self-join run
-- over one row per (study, modality), a few per study.
WITH per_study AS (
    SELECT
        PatientID,
        StudyInstanceUID,
        Modality,
        min(StudyDate) AS StudyDate,
        min(StudyTime) AS StudyTime,
        min(BodyPartExamined) AS BodyPartExamined
    FROM instances
    GROUP BY PatientID, StudyInstanceUID, Modality
), ranked AS (
    SELECT
        *,
        row_number() OVER (
            PARTITION BY PatientID, Modality
            ORDER BY StudyDate NULLS LAST, StudyTime NULLS LAST, StudyInstanceUID
        ) AS time_point
    FROM per_study
), linked AS (
    -- the prior's time point: the previous one when this study records no body part; else the later
    -- of the previous study with the same body part and the latest previous one that records none
    SELECT
        *,
        CASE
            WHEN Modality IS NULL THEN NULL
            WHEN BodyPartExamined IS NULL THEN nullif(time_point - 1, 0)
            ELSE greatest(
                lag(time_point) OVER (PARTITION BY PatientID, Modality, BodyPartExamined ORDER BY time_point),
                max(CASE WHEN BodyPartExamined IS NULL THEN time_point END) OVER (
                    PARTITION BY PatientID, Modality ORDER BY time_point
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
                )
            )
        END AS prior_point
    FROM ranked
)
SELECT
    c.PatientID,
    c.StudyInstanceUID,
    c.StudyDate,
    c.StudyTime,
    c.Modality,
    c.BodyPartExamined,
    p.StudyInstanceUID AS PriorStudyInstanceUID,
    p.StudyDate AS PriorStudyDate,
    date_diff('day', p.StudyDate, c.StudyDate) AS interval_days,
    c.time_point
FROM linked c
LEFT JOIN ranked p ON p.PatientID = c.PatientID AND p.Modality = c.Modality AND p.time_point = c.prior_point
