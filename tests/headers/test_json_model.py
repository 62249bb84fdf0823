"""lake.headers.json_model writes what pydicom's ``Dataset.to_json_dict`` writes, for every file."""

from __future__ import annotations

from pathlib import Path

import pydicom.data
import pytest
from pydicom import Dataset, dcmread
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from lake import diagnostics
from lake.headers.json_model import json_dict

SHIPPED = sorted((Path(pydicom.data.__file__).parent / "test_files").rglob("*.dcm"))  # no download


def _handler(elem: DataElement) -> str:
    return f"bulk:{int(elem.tag):08X}:{len(elem.value)}"


def _pydicom(ds: Dataset, threshold: int, handler: object) -> dict:
    return ds.to_json_dict(bulk_data_threshold=threshold, bulk_data_element_handler=handler, suppress_invalid_tags=True)


@pytest.mark.parametrize("threshold", [1024, 64])
@pytest.mark.parametrize("with_handler", [True, False])
def test_every_shipped_file_is_written_as_pydicom_writes_it(threshold: int, with_handler: bool) -> None:
    handler = _handler if with_handler else None
    compared = 0
    for path in SHIPPED:
        with diagnostics.capture():
            try:
                ds = dcmread(path, force=True)
                expected = _pydicom(ds, threshold, handler)
            except Exception:
                continue  # a file pydicom cannot write at all says nothing of this writer
            assert json_dict(ds, threshold, handler) == expected, path.name
        compared += 1
    assert compared >= 60


def test_values_of_every_kind() -> None:
    ds = Dataset()
    ds.PatientName = "Doe^Jane=ドウ^ジェーン=どう^じぇーん"
    ds.OtherPatientNames = ["A^B", "C^D=E^F"]
    ds.ReferringPhysicianName = ""
    ds.add_new(0x00081140, "SQ", Sequence([Dataset(), Dataset()]))  # two empty items
    ds.add_new(0x00209165, "AT", [0x00100010, 0x00100020])  # two tags
    ds.add_new(0x00209167, "AT", 0x00200032)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SliceThickness = "1.25"
    ds.PixelSpacing = ["0.5", "0.5"]
    ds.InstanceNumber = "7"
    ds.Rows = 8
    ds.add_new(0x00280106, "US or SS", 3)
    ds.add_new(0x00291010, "OB", b"\x01\x02" * 600)  # over the threshold
    ds.add_new(0x00291011, "OB", b"\x01\x02")
    ds.add_new(0x00291012, "OB", b"")
    ds.add_new(0x00291013, "UN", b"abc")
    ds.add_new(0x00181310, "US", [0, 8, 8, 0])
    ds.add_new(0x00189219, "FD", [1.5, 2.0])
    ds.StudyDescription = None
    inner = Dataset()
    inner.CodeValue = "T-D0050"
    inner.add_new(0x00291014, "OB", b"\x00" * 2000)
    ds.add_new(0x00082218, "SQ", Sequence([inner]))
    for threshold in (1024, 16):
        for handler in (_handler, None):
            assert json_dict(ds, threshold, handler) == _pydicom(ds, threshold, handler)


def _with_a_bad_value() -> Dataset:
    ds = Dataset()
    ds.PatientID = "P1"
    # a raw value that does not convert under strict reading (an IS that is not a number)
    ds[Tag(0x00200013)] = RawDataElement(Tag(0x00200013), "IS", 4, b"x1.5", 0, False, True)
    item = Dataset()
    item[Tag(0x00200013)] = RawDataElement(Tag(0x00200013), "IS", 4, b"x1.5", 0, False, True)
    ds.add_new(0x00082218, "SQ", Sequence([item]))
    return ds


def test_an_element_that_cannot_be_written_is_left_out_as_pydicom_leaves_it_out() -> None:
    with diagnostics.capture() as ours:
        written = json_dict(_with_a_bad_value(), 1024, None)
    with diagnostics.capture() as theirs:
        expected = _pydicom(_with_a_bad_value(), 1024, None)
    assert written == expected and "00100020" in written
    assert "00200013" not in written and "00082218" not in written  # the bad item loses its sequence
    assert ours.results() == theirs.results() and ours.codes()
