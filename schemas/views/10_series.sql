-- view: series
-- description: One row per series: counts, modality, body part, description, pixel geometry and storage.
SELECT
    SeriesInstanceUID,
    any_value(StudyInstanceUID) AS StudyInstanceUID,
    any_value(PatientID) AS PatientID,
    any_value(Modality) AS Modality,
    min(SeriesNumber) AS SeriesNumber,
    any_value(SeriesDescription) AS SeriesDescription,
    any_value(BodyPartExamined) AS BodyPartExamined,
    min(SeriesDate) AS SeriesDate,
    min(StudyDate) AS StudyDate,
    any_value(FrameOfReferenceUID) AS FrameOfReferenceUID,
    any_value(Manufacturer) AS Manufacturer,
    any_value(ManufacturerModelName) AS ManufacturerModelName,
    count(*) AS instance_count,
    sum(frame_count)::BIGINT AS frame_count,
    count(*) FILTER (WHERE pixel_status = 'stored') AS stored_instance_count,
    sum(pixel_bytes)::BIGINT AS pixel_bytes,
    any_value(Rows) AS Rows,
    any_value(Columns) AS Columns,
    any_value(PixelSpacing) AS PixelSpacing,
    any_value(SliceThickness) AS SliceThickness,
    any_value(ImageOrientationPatient) AS ImageOrientationPatient,
    min(AcquisitionDateTime) AS first_acquisition,
    max(AcquisitionDateTime) AS last_acquisition
FROM instances
GROUP BY SeriesInstanceUID
