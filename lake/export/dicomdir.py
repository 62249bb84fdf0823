"""The DICOMDIR of a teaching set: pydicom's FileSet with PATIENT / STUDY / SERIES / IMAGE records.

pydicom's default record creators refuse an instance whose StudyID is empty, and the
de-identification profile empties it (Table E.1-1 action Z: StudyID may be an accession number).
The records here take every value from the instance and, only where a directory record needs a
value the instance no longer has (Type 1 in PS3.3 Table F.5-*), write a neutral one: StudyID is
the case number, SeriesNumber and InstanceNumber the position in the set. The instance files keep
their stored values unchanged.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydicom import Dataset
    from pydicom.fileset import FileInstance, FileSet

#: The record type of a SOP class (PS3.3 Table F.4-1); image storage classes are IMAGE.
_RECORD_TYPES = {
    "1.2.840.10008.5.1.4.1.1.88.11": "SR DOCUMENT",
    "1.2.840.10008.5.1.4.1.1.88.22": "SR DOCUMENT",
    "1.2.840.10008.5.1.4.1.1.88.33": "SR DOCUMENT",
    "1.2.840.10008.5.1.4.1.1.104.1": "ENCAP DOC",
}


def _record(record_type: str, ds: Dataset, keywords: tuple[str, ...]) -> Dataset:
    from pydicom import Dataset

    record = Dataset()
    record.DirectoryRecordType = record_type
    for keyword in keywords:
        if keyword in ds:
            setattr(record, keyword, ds[keyword].value)
    return record


def add_instance(fileset: FileSet, ds: Dataset, case: int, series: int, image: int) -> FileInstance:
    """Stage ``ds`` in ``fileset`` under its patient, study and series records (numbers from 1)."""
    from pydicom.fileset import RecordNode

    patient = _record("PATIENT", ds, ("PatientName", "PatientID"))
    patient.PatientName = ds.get("PatientName", "")
    study = _record("STUDY", ds, ("StudyDate", "StudyTime", "StudyDescription", "StudyInstanceUID", "StudyID"))
    study.AccessionNumber = ds.get("AccessionNumber", "")
    study.StudyDescription = ds.get("StudyDescription", "")  # Type 2 in the STUDY record
    for keyword, fallback in (("StudyDate", ""), ("StudyTime", ""), ("StudyID", str(case))):
        if not study.get(keyword):
            setattr(study, keyword, fallback)
    series_record = _record("SERIES", ds, ("Modality", "SeriesInstanceUID", "SeriesNumber"))
    if series_record.get("SeriesNumber") in (None, ""):
        series_record.SeriesNumber = series
    leaf_type = _RECORD_TYPES.get(str(ds.SOPClassUID), "IMAGE")
    leaf = _record(leaf_type, ds, ("InstanceNumber",))
    if leaf.get("InstanceNumber") in (None, ""):
        leaf.InstanceNumber = image
    leaf.ReferencedSOPInstanceUIDInFile = ds.SOPInstanceUID  # the leaf's key; add_custom fills the rest
    nodes = [RecordNode(r) for r in (patient, study, series_record, leaf)]
    for parent, child in itertools.pairwise(nodes):
        child.parent = parent
    return fileset.add_custom(ds, nodes[-1])
