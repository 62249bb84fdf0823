"""Small builders shared by the de-identification tests (synthetic values only)."""

from __future__ import annotations

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

ROOT = "1.2.826.0.1.3680043.9.7777."
#: a value per VR, each recognisable and none a DICOM dummy
VALUES: dict[str, object] = {
    "AE": "AETITLE9",
    "AS": "045Y",
    "CS": "VALUEX",
    "DA": "19870601",
    "DT": "19870601123000.5+0200",
    "TM": "123000",
    "DS": "1.5",
    "IS": "7",
    "LO": "SOME VALUE",
    "SH": "SHORTV",
    "ST": "SOME TEXT",
    "LT": "LONG TEXT",
    "UT": "UNLIMITED TEXT",
    "UC": "UNLIMITED CHARS",
    "PN": "DOE^JANE",
    "UR": "http://example.invalid/x",
    "US": 7,
    "SS": 7,
    "UL": 7,
    "SL": 7,
    "FL": 1.5,
    "FD": 1.5,
}


def base(uid_suffix: str = "1") -> Dataset:
    """A minimal CT instance header with a patient identity."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ROOT + "9." + uid_suffix
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ROOT + "9." + uid_suffix
    ds.StudyInstanceUID = ROOT + "1"
    ds.SeriesInstanceUID = ROOT + "2"
    ds.PatientID = "MRN448100"
    ds.PatientName = "QUIXOTE^ALONSO"
    ds.Modality = "CT"
    return ds


def nest(ds: Dataset, depth: int) -> Dataset:
    """The item at ``depth`` inside chains of sequences Table E.1-1 does not list (kept, walked)."""
    chain = ("SharedFunctionalGroupsSequence", "PixelMeasuresSequence", "DerivationCodeSequence")
    item = ds
    for i in range(depth):
        inner = Dataset()
        setattr(item, chain[i % len(chain)], Sequence([inner]))
        item = inner
    return item


def at_depth(ds: Dataset, depth: int) -> Dataset:
    item = ds
    chain = ("SharedFunctionalGroupsSequence", "PixelMeasuresSequence", "DerivationCodeSequence")
    for i in range(depth):
        item = item[chain[i % len(chain)]].value[0]
    return item
