"""Promoted columns for acquisition, contrast and equipment, and the derived multi-frame geometry."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence

from lake.headers.flatten import contrast_used, promoted_row
from lake.headers.geometry import frame_geometry
from lake.headers.schema import load_table_schema
from lake.testing.rows import synthetic_instances
from tests import conftest


def _item(**values: object) -> Dataset:
    ds = Dataset()
    for k, v in values.items():
        setattr(ds, k, v)
    return ds


def test_acquisition_contrast_equipment_columns() -> None:
    ds = _item(
        SOPInstanceUID="2.25.9",
        Modality="CT",
        ReconstructionDiameter="350.0",
        SpiralPitchFactor="0.984",
        ScanOptions=["HELICAL MODE", "AXIAL"],
        AcquisitionMatrix=[256, 0, 0, 192],
        ImagerPixelSpacing=["0.139", "0.139"],
        ExposureIndex="412.5",
        ContrastBolusAgent="IOPAMIDOL",
        ContrastBolusVolume="80",
        ContrastFlowRate=["4.0", "2.0"],
        DateOfLastCalibration="20190102",
    )
    ds.RadiopharmaceuticalInformationSequence = Sequence(
        [
            _item(
                Radiopharmaceutical="Fluorodeoxyglucose",
                RadionuclideHalfLife="6586.2",
                RadionuclideCodeSequence=Sequence([_item(CodeMeaning="^18^Fluorine")]),
            )
        ]
    )
    row = promoted_row(ds, load_table_schema("instances"))
    assert row["ReconstructionDiameter"] == 350.0
    assert row["SpiralPitchFactor"] == pytest.approx(0.984)
    assert row["ScanOptions"] == "HELICAL MODE\\AXIAL"
    assert row["AcquisitionMatrix"] == [256, 0, 0, 192]
    assert row["ImagerPixelSpacing"] == [0.139, 0.139]
    assert row["ExposureIndex"] == 412.5
    assert row["ContrastBolusVolume"] == 80.0
    assert row["ContrastFlowRate"] == 4.0
    assert row["contrast_used"] is True
    assert row["Radiopharmaceutical"] == "Fluorodeoxyglucose"
    assert row["Radionuclide"] == "^18^Fluorine"
    assert row["RadionuclideHalfLife"] == pytest.approx(6586.2)
    assert str(row["DateOfLastCalibration"]) == "2019-01-02"
    # every value fits its column type
    schema = load_table_schema("instances")
    for column in schema.columns:
        pa.array([row.get(column.name)], column.arrow_type)


def test_contrast_used_ignores_empty_attributes() -> None:
    assert contrast_used(_item(ContrastBolusAgent="")) is False
    assert contrast_used(_item(Modality="CT")) is False
    enhanced = _item(SharedFunctionalGroupsSequence=Sequence([_item(ContrastBolusUsageSequence=Sequence([_item()]))]))
    assert contrast_used(enhanced) is True


def _enhanced(zs: list[float], tilt: float = 0.0) -> Dataset:
    c, s = math.cos(math.radians(tilt)), math.sin(math.radians(tilt))
    orientation = [1, 0, 0, 0, c, -s]
    ds = _item(NumberOfFrames=len(zs))
    ds.SharedFunctionalGroupsSequence = Sequence(
        [_item(PlaneOrientationSequence=Sequence([_item(ImageOrientationPatient=orientation)]))]
    )
    ds.PerFrameFunctionalGroupsSequence = Sequence(
        [_item(PlanePositionSequence=Sequence([_item(ImagePositionPatient=[0, 0, z])])) for z in zs]
    )
    return ds


def test_frame_geometry_of_enhanced_multiframe() -> None:
    regular = frame_geometry(_enhanced([0.0, 1.5, 3.0, 4.5]))
    assert regular == {"frame_slice_spacing": 1.5, "frame_slices_regular": True, "frame_slice_extent": 4.5}
    gap = frame_geometry(_enhanced([0.0, 1.5, 3.0, 6.0]))
    assert gap["frame_slices_regular"] is False and gap["frame_slice_spacing"] == pytest.approx(1.5)
    shuffled = frame_geometry(_enhanced([3.0, 0.0, 1.5]))  # frames need not be stored in order
    assert shuffled["frame_slices_regular"] is True
    tilted = frame_geometry(_enhanced([0.0, 2.0, 4.0], tilt=20.0))
    assert tilted["frame_slice_spacing"] == pytest.approx(2.0 * math.cos(math.radians(20.0)))
    assert frame_geometry(_item(NumberOfFrames=1)) == {}


def test_enhanced_ct_file_gets_frame_geometry() -> None:
    import pydicom

    ds = pydicom.dcmread(conftest.testdata("eCT_Supplemental.dcm"))
    row = promoted_row(ds, load_table_schema("instances"))
    assert row["frame_slice_spacing"] == pytest.approx(10.0)
    assert row["frame_slices_regular"] is True
    assert row["SliceThickness"] is not None  # from the shared functional groups


def test_synthetic_rows_generator_smoke() -> None:
    import json

    schema = load_table_schema("instances")
    chunks = list(synthetic_instances(4000, seed=3, chunk_rows=500))
    table = pa.concat_tables(chunks)
    assert len(table) >= 4000 and len(chunks) >= 2
    assert table.schema == schema.arrow_schema
    uids = table.column("SOPInstanceUID").to_pylist()
    assert len(set(uids)) == len(uids)
    header = json.loads(table.column("header_json")[0].as_py())
    assert header["00080018"]["Value"] == [uids[0]]
    assert header["00100020"]["Value"] == [table.column("PatientID")[0].as_py()]
    assert set(table.column("Modality").to_pylist()) <= {"CT", "MR", "PT", "CR", "DX", "US"}
    again = pa.concat_tables(synthetic_instances(4000, seed=3, chunk_rows=500))
    assert again.column("SOPInstanceUID").equals(table.column("SOPInstanceUID")), "same seed, same rows"
