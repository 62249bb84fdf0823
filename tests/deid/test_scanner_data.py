"""Real scanner headers (../shared/data/dicom, skipped when absent): identifiers go, technique stays."""

from __future__ import annotations

import json
import warnings

import pydicom
import pytest

from lake.deid.engine import Deidentifier
from lake.deid.profile import DEFAULT_RESEARCH_OPTIONS, Profile
from lake.keys import LakeKey
from tests.conftest import shared_dicom

TECHNICAL = (
    "Manufacturer",
    "ManufacturerModelName",
    "Modality",
    "PixelSpacing",
    "SliceThickness",
    "RepetitionTime",
    "EchoTime",
    "FlipAngle",
    "MagneticFieldStrength",
    "KVP",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "Rows",
    "Columns",
    "ConvolutionKernel",
    "SeriesDescription",
)
IDENTIFYING = ("AccessionNumber", "InstitutionName", "StationName", "DeviceSerialNumber", "PatientID", "StudyID")


@pytest.mark.shared_data
@pytest.mark.parametrize("folder", ["dcm_qa_deident", "dcm_qa_nih", "dcm_qa_ct"])
def test_scanner_headers(folder: str, key: LakeKey) -> None:
    files = sorted(p for p in shared_dicom(folder).rglob("*") if p.is_file())[::10][:12]
    deid = Deidentifier(key, Profile(DEFAULT_RESEARCH_OPTIONS))
    checked = 0
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception:
                continue
            before = {k: ds.get(k) for k in TECHNICAL + IDENTIFYING}
            uids = [str(ds.SOPInstanceUID), str(ds.StudyInstanceUID)]
            out = deid.deidentify(ds).dataset
            text = json.dumps(out.to_json_dict(bulk_data_threshold=10**9, bulk_data_element_handler=lambda e: ""))
        for k in TECHNICAL:
            if before[k] is not None:
                assert out.get(k) == before[k], (path.name, k)
        for k in IDENTIFYING:
            value = str(before[k] or "")
            if len(value) >= 6 and not value.startswith("P-"):
                assert value not in text, (path.name, k)
        assert not any(uid in text for uid in uids)
        private = [e.tag for e in out if e.tag.is_private and not e.tag.is_private_creator]
        assert all(((t.group << 16) | (t.element >> 8)) in out for t in private)  # every kept one has its creator
        assert all(out[t].VR != "UN" for t in private)
        checked += 1
    assert checked
