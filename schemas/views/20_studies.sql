-- view: studies
-- description: One row per study: modalities in study, counts, date, description, days from the patient's first study.
WITH s AS (
    SELECT
        StudyInstanceUID,
        any_value(PatientID) AS PatientID,
        min(StudyDate) AS StudyDate,
        min(StudyTime) AS StudyTime,
        any_value(StudyDescription) AS StudyDescription,
        any_value(PatientAge) AS PatientAge,
        any_value(PatientSex) AS PatientSex,
        list_sort(list_distinct(list(Modality))) AS modalities,
        count(DISTINCT SeriesInstanceUID) AS series_count,
        count(*) AS instance_count,
        sum(frame_count)::BIGINT AS frame_count,
        sum(pixel_bytes)::BIGINT AS pixel_bytes
    FROM instances
    GROUP BY StudyInstanceUID
)
SELECT
    *,
    date_diff('day', min(StudyDate) OVER (PARTITION BY PatientID), StudyDate) AS days_from_first_study
FROM s
