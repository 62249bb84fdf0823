-- view: timeline
-- description: One row per (patient, study) in time order, with the study's index and the interval to the previous study.
-- column: PatientID: Patient pseudonym.
-- column: StudyInstanceUID: The study.
-- column: StudyDate: Study date (shifted).
-- column: StudyTime: Study time of day.
-- column: modalities: Sorted distinct modalities in the study.
-- column: StudyDescription: Study description (cleaned).
-- column: study_index: 1 for the patient's first study, 2 for the next, ...
-- column: days_from_first_study: Days since the patient's first study.
-- column: days_since_previous_study: Days since the patient's previous study (NULL for the first).
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
