-- view: patients
-- description: One row per patient pseudonym: studies, first and last (shifted) study dates, follow-up span, modalities seen.
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
