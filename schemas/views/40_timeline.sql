-- view: timeline
-- description: One row per (patient, study) in time order, with the study's index and the interval to the previous study.
SELECT
    PatientID,
    StudyInstanceUID,
    StudyDate,
    StudyTime,
    modalities,
    StudyDescription,
    row_number() OVER w AS study_index,
    days_from_first_study,
    date_diff('day', lag(StudyDate) OVER w, StudyDate) AS days_since_previous_study
FROM studies
WINDOW w AS (PARTITION BY PatientID ORDER BY StudyDate NULLS LAST, StudyTime NULLS LAST, StudyInstanceUID)
