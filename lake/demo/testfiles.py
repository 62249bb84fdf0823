"""The test-file demo: the DICOM files that the ``pydicom`` and ``pydicom-data`` packages ship, as they are."""

from __future__ import annotations

from pathlib import Path

from pydicom.data import get_testdata_file

#: The test-file demo's example query: instances per modality.
TEST_FILES_QUERY = """
SELECT Modality, count(DISTINCT PatientID) AS patients, count(DISTINCT StudyInstanceUID) AS studies,
       count(*) AS instances, sum(frame_count)::BIGINT AS frames
FROM instances GROUP BY Modality ORDER BY instances DESC, Modality
""".strip()


def demo_sources() -> list[Path]:
    """Folders of public test DICOM files installed with pip (never downloaded at run time)."""
    out = []
    ct = get_testdata_file("CT_small.dcm", download=False)
    if ct:
        out.append(Path(str(ct)).parent)
    extra = get_testdata_file("693_J2KR.dcm", download=False)  # from the pydicom-data package
    if extra:
        out.append(Path(str(extra)).parent)
    return out
