"""lake.ingest.peek reads the attributes it is asked for as pydicom's reader reads them, or says it cannot."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom.data
import pytest
from pydicom import Dataset, dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from lake import diagnostics
from lake.deid.pixels import COST_KEYWORDS, expected_ocr_frames
from lake.ingest.peek import peek
from lake.ingest.run import OCR_FRAME_COST, work_cost

TAGS = [int(tag_for_keyword(k) or 0) for k in COST_KEYWORDS]
SHIPPED = sorted((Path(pydicom.data.__file__).parent / "test_files").rglob("*.dcm"))  # no download


def _values(ds: Dataset) -> dict[str, object]:
    return {k: (str(ds[k].value) if k in ds else None) for k in COST_KEYWORDS}


def _cost_by_pydicom(data: bytes) -> float:
    try:
        return 1.0 + OCR_FRAME_COST * expected_ocr_frames(_read(data))
    except Exception:
        return 1.0


def _read(data: bytes) -> Dataset:
    return dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=TAGS, force=True)


def test_every_shipped_file_peeks_as_pydicom_reads_it() -> None:
    walked = 0
    for path in SHIPPED:
        data = path.read_bytes()
        with diagnostics.capture():
            found = peek(data, TAGS)
            if found is None:
                continue
            walked += 1
            assert _values(found) == _values(_read(data)), path.name
    assert walked >= 60  # most of the files are little endian with a preamble


def _file(syntax: str, before: list[tuple[int, str, object]]) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    for tag, vr, value in before:
        ds.add_new(tag, vr, value)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "2.25.42"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.Modality = "OT"
    ds.InstanceNumber = "12"
    ds.Rows, ds.Columns = 300, 400
    ds.NumberOfFrames = "3"
    ds.BurnedInAnnotation = "YES"
    out = io.BytesIO()
    implicit, little = syntax == ImplicitVRLittleEndian, syntax != ExplicitVRBigEndian
    ds.save_as(out, enforce_file_format=True, implicit_vr=implicit, little_endian=little)
    return out.getvalue()


def _nested() -> Sequence:
    inner = Dataset()
    inner.CodeValue = "121322"
    item = Dataset()
    item.ReferencedSOPInstanceUID = "2.25.7"
    item.add_new(0x00400260, "SQ", Sequence([inner]))  # a sequence in the item
    return Sequence([item, Dataset()])


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_sequences_before_the_attributes_are_skipped(syntax: str) -> None:
    sequence = _nested()
    sequence.is_undefined_length = True  # written with delimiters (and its items too)
    for item in sequence:
        item.is_undefined_length_sequence_item = True
    data = _file(syntax, [(0x00081140, "SQ", sequence), (0x00091010, "OB", b"\x01" * 7)])
    found = peek(data, TAGS)
    assert found is not None and _values(found) == _values(_read(data))
    assert _values(found)["Rows"] == "300" and _values(found)["NumberOfFrames"] == "3"


def test_what_it_does_not_read_is_left_to_pydicom() -> None:
    assert peek(_file(ExplicitVRBigEndian, []), TAGS) is None
    whole = _file(ExplicitVRLittleEndian, [])
    assert peek(whole[128:], TAGS) is None  # no preamble
    at = whole.index(b"\x28\x00\x10\x00")  # Rows: the file ends inside its value
    assert peek(whole[: at + 9], TAGS) is None
    for data in (whole, whole[: at + 9], whole[128:]):  # walked or not, the cost is pydicom's
        assert work_cost(data) == _cost_by_pydicom(data)
    assert work_cost(whole) == 1.0 + OCR_FRAME_COST * 3 * 300 * 400 / 512**2
    assert peek(b"not dicom at all", TAGS) is None
