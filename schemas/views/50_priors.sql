-- view: priors
-- description: One row per (study, modality) of each patient, beside the most recent earlier study of the same patient and modality (NULL for the first), with the interval in days. Local copy for the cohort tests; the priors part of issue 13 owns this file.
-- column: PatientID: Patient pseudonym.
-- column: StudyInstanceUID: The study.
-- column: StudyDate: Study date (shifted).
-- column: StudyTime: Study time of day.
-- column: Modality: A modality of the study.
-- column: BodyPartExamined: Body part examined (one of them, if several).
-- column: PriorStudyInstanceUID: The patient's previous study of this modality (NULL for the first).
-- column: PriorStudyDate: Date of that study (shifted).
-- column: interval_days: Days from the prior study to this one (NULL for the first).
-- column: time_point: 1-based rank of the study among the patient's studies of this modality.
WITH per_modality AS (
    SELECT
        PatientID,
        StudyInstanceUID,
        Modality,
        min(StudyDate) AS StudyDate,
        min(StudyTime) AS StudyTime,
        any_value(BodyPartExamined) AS BodyPartExamined
    FROM instances
    GROUP BY PatientID, StudyInstanceUID, Modality
)
SELECT
    PatientID,
    StudyInstanceUID,
    StudyDate,
    StudyTime,
    Modality,
    BodyPartExamined,
    lag(StudyInstanceUID) OVER w AS PriorStudyInstanceUID,
    lag(StudyDate) OVER w AS PriorStudyDate,
    date_diff('day', lag(StudyDate) OVER w, StudyDate) AS interval_days,
    row_number() OVER w AS time_point
FROM per_modality
WINDOW w AS (PARTITION BY PatientID, Modality ORDER BY StudyDate NULLS LAST, StudyTime NULLS LAST, StudyInstanceUID)
