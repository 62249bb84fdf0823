-- view: patients
-- description: One row per patient pseudonym: studies, first and last (shifted) study dates, follow-up span, modalities seen.
-- column: PatientID: Patient pseudonym (keyed; stable across batches).
-- column: PatientSex: Patient's sex.
-- column: study_count: Studies of the patient.
-- column: series_count: Series of the patient.
-- column: instance_count: Instances of the patient.
-- column: first_study_date: First study date (shifted).
-- column: last_study_date: Last study date (shifted).
-- column: follow_up_days: Days from the first to the last study.
-- column: modalities: Sorted distinct modalities seen.
-- per series first, as in studies: distinct counts and the modality list over a few rows per
-- patient instead of every instance
WITH per_series AS (
    SELECT
        PatientID,
        StudyInstanceUID,
        SeriesInstanceUID,
        Modality,
        any_value(PatientSex) AS PatientSex,
        count(*) AS instance_count,
        min(StudyDate) AS first_study_date,
        max(StudyDate) AS last_study_date
    FROM instances
    GROUP BY PatientID, StudyInstanceUID, SeriesInstanceUID, Modality
)
SELECT
    PatientID,
    any_value(PatientSex) AS PatientSex,
    count(DISTINCT StudyInstanceUID) AS study_count,
    count(DISTINCT SeriesInstanceUID) AS series_count,
    sum(instance_count)::BIGINT AS instance_count,
    min(first_study_date) AS first_study_date,
    max(last_study_date) AS last_study_date,
    date_diff('day', min(first_study_date), max(last_study_date)) AS follow_up_days,
    list_sort(list_distinct(list(Modality))) AS modalities
FROM per_series
GROUP BY PatientID
