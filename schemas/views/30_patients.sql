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
SELECT
    PatientID,
    any_value(PatientSex) AS PatientSex,
    count(DISTINCT StudyInstanceUID) AS study_count,
    count(DISTINCT SeriesInstanceUID) AS series_count,
    count(*) AS instance_count,
    min(StudyDate) AS first_study_date,
    max(StudyDate) AS last_study_date,
    date_diff('day', min(StudyDate), max(StudyDate)) AS follow_up_days,
    list_sort(list_distinct(list(Modality))) AS modalities
FROM instances
GROUP BY PatientID
